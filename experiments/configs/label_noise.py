"""Robust losses under symmetric label noise on MNIST-1D: losses x noise rate x 3 seeds.

Symmetric noise (each training label flipped with probability ``rate`` to one of the 9
other classes; Zhang & Sabuncu 2018's protocol) at rates 0, 0.2, 0.4 and 0.6, drawn per
seed; the test set stays clean. Losses: cross-entropy and the noise-robust GCE (Zhang &
Sabuncu 2018), SCE (Wang et al. 2019), MAE (Ghosh et al. 2017), NCE+RCE (Ma et al. 2020),
bi-tempered (Amid et al. 2019) and label smoothing. The reference CNN, Adam at lr 1e-2,
batch 100. Evaluated on the clean test set, sequence shifts at severities 1, 3, 5 and the
sequence far-OOD sets. 6,000 steps (the MNIST-1D reference budget, 150 epochs) leave time
for cross-entropy to memorise the noise, the effect robust losses are meant to resist.

Cost, measured on the 2-core CPU (shared with other jobs): one seed (28 runs) took 235
CPU-seconds with cold caches, so the full 84 runs take about 6 minutes on 2 idle cores.

    python -m experiments.sweep --config experiments/configs/label_noise.py
    python -m experiments.sweep --config experiments/configs/label_noise.py:quick
"""

from __future__ import annotations

import ml_collections

from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product

LOSSES = ("softmax_cross_entropy", "gce", "sce", "mae", "nce_rce", "bi_tempered", "label_smoothing")
RATES = (0.0, 0.2, 0.4, 0.6)
VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(map(repr, VARIANTS))}")
    quick = variant == "quick"
    config = base_config("label_noise" + ("_quick" if quick else ""), dataset="mnist1d")
    # Untuned and trained on the whole training split (no validation split, so no
    # temperature-scaled metrics or selection), as its committed results in results/ were.
    config.data_axes.validation_fraction = 0.0
    config.train.model = "cnn"
    config.train.learning_rate = 1e-2
    config.train.batch_size = 100
    config.train.steps = 300 if quick else 6000
    config.losses = ("softmax_cross_entropy", "gce", "sce") if quick else LOSSES
    config.noise_rates = (0.0, 0.4) if quick else RATES
    config.seeds = 1 if quick else 3
    config.evals = {
        "shifts": {"type": "shifts", "names": "all", "severities": (3,) if quick else (1, 3, 5)},
        "ood": {"type": "ood", "names": "all"},
    }
    return config


def sweep(config: ml_collections.ConfigDict) -> list[dict]:
    return product(loss=config.losses, label_noise=config.noise_rates, seed=range(config.seeds))
