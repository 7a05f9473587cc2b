"""Training-time augmentation under corruption: no augmentation, random crops, AugMix and
AugMix with its Jensen-Shannon consistency loss (Hendrycks et al. 2020), LeNet-5 on the
8x8 scikit-learn digits, 3 seeds each.

AugMix's operations here are the toolkit's rotate, shear and translate (AugMix's own
geometric ones), so the evaluation leaves them out, and scale with them (an affine map
too): the model is tested on the 16 other image corruptions at severities 1-5, none of
which it saw in training, as AugMix's ImageNet-C protocol requires. Crops pad by 1 pixel
(an 8x8 digit has little room); flips are off (digits are not mirror-invariant).

    python -m experiments.sweep --config experiments/configs/augmentation.py
    python -m experiments.sweep --config experiments/configs/augmentation.py:quick
"""

from __future__ import annotations

import ml_collections

import toolkit as tk
from toolkit.augment import AUGMIX_OPS
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product

VARIANTS = ("", "quick")
AUGMENTATIONS = (
    {"augment": None},
    {"augment": "crop", "augment_hparams": {"padding": 1}},
    {"augment": "augmix"},
    {"augment": "augmix_jsd"},
)
HELD_OUT_OF_EVALUATION = (*AUGMIX_OPS, "scale")  # seen in training (or an affine map like them)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(map(repr, VARIANTS))}")
    quick = variant == "quick"
    config = base_config("augmentation" + ("_quick" if quick else ""), dataset="digits")
    config.train.model = "lenet5"
    config.train.learning_rate = 3e-3
    config.train.batch_size = 64
    config.train.steps = 150 if quick else 600
    config.seeds = 1 if quick else 3
    config.augmentations = AUGMENTATIONS[::2] if quick else AUGMENTATIONS
    unseen = tuple(
        name
        for name in tk.shifts.names()
        if tk.shifts.shifts.entry(name).meta["applies_to"] == "image"
        and name not in HELD_OUT_OF_EVALUATION
    )
    config.evals = {
        "shifts": {"names": unseen, "severities": (3,) if quick else (1, 2, 3, 4, 5)},
        "ood": {"names": ("sklearn_patches", "gaussian_noise", "uniform_noise")},
    }
    return config


def sweep(config: ml_collections.ConfigDict) -> list[dict]:
    return product(augmentation=list(config.augmentations), seed=range(config.seeds))
