"""Every registered architecture x 3 losses x 3 seeds on images, under corruption.

The scikit-learn 8x8 digits (1,437 train / 360 test): a full sweep over 28x28 mnist5k would
take hours on 2 CPU cores (ResNet-20 trains at tens of steps per second there), so digits
keeps the whole sweep near 15 minutes; ``--config.dataset=mnist5k`` runs the same sweep on
real 28x28 MNIST digits where time allows. Losses: cross-entropy, focal (Lin et al. 2017)
and label smoothing (Szegedy et al. 2016). Adam at lr 1e-3, batch 128, STEPS[model] steps.
Evaluated on every image corruption in ``tk.shifts`` at severities 1-5 and against three
far-OOD sets (scikit-learn image patches, Gaussian and uniform noise).

Cost, measured on the 2-core CPU: the full 90 runs with cold caches took 1,102 CPU-seconds
(21.5 minutes of wall time while other jobs loaded the machine), about 10-11 minutes on 2
idle cores; ResNet-20 and AlexNet account for half of it.

    python -m experiments.sweep --config experiments/configs/architecture_sweep.py
    python -m experiments.sweep --config experiments/configs/architecture_sweep.py:quick
"""

from __future__ import annotations

import ml_collections

import toolkit as tk
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product

LOSSES = ("softmax_cross_entropy", "softmax_focal", "label_smoothing")
# Steps per model, about 5-15 s of single-threaded training each on digits (1,437 train
# examples, 11 steps per epoch at batch 128): the slow convolutional nets get fewer steps,
# still 18+ epochs (AlexNet and ResNet-20 train at tens of steps per second on one core).
STEPS = {
    "linear": 1000,
    "mlp": 1000,
    "cnn": 1000,
    "lenet5": 600,
    "alexnet": 300,
    "resnet": 200,
    "rnn": 1000,
    "lstm": 1000,
    "gru": 1000,
    "transformer": 400,
}
QUICK_STEPS = 150
# Every registered architecture once: cnn_nnx is cnn written as a Flax NNX module.
ARCHITECTURES = tuple(name for name in tk.models.names() if name != "cnn_nnx")
VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(map(repr, VARIANTS))}")
    quick = variant == "quick"
    config = base_config("architecture_sweep" + ("_quick" if quick else ""), dataset="digits")
    # Untuned and trained on the whole training split (no validation split, so no
    # temperature-scaled metrics or selection), as its committed results in results/ were.
    config.data_axes.validation_fraction = 0.0
    config.train.learning_rate = 1e-3
    config.train.batch_size = 128
    config.models = ("mlp", "cnn", "gru") if quick else ARCHITECTURES
    config.losses = ("softmax_cross_entropy",) if quick else LOSSES
    config.seeds = 1 if quick else 3
    config.steps = ml_collections.ConfigDict(
        {m: QUICK_STEPS if quick else STEPS.get(m, 500) for m in tk.models.names()}
    )
    image_shifts = tuple(
        n for n in tk.shifts.names() if tk.shifts.shifts.entry(n).meta["applies_to"] == "image"
    )
    config.evals = {
        "shifts": {
            "type": "shifts",
            "names": image_shifts,
            "severities": (3,) if quick else (1, 2, 3, 4, 5),
        },
        "ood": {"type": "ood", "names": ("sklearn_patches", "gaussian_noise", "uniform_noise")},
    }
    return config


def sweep(config: ml_collections.ConfigDict) -> list[dict]:
    models = [{"model": m, "steps": config.steps[m]} for m in config.models]
    return product(model=models, loss=config.losses, seed=range(config.seeds))
