"""MNIST-C (Mu & Gilmer 2019) on real 28x28 MNIST (``mnist5k``): three models x 3 seeds.

Every model is evaluated on the 15 MNIST-C corruptions at MNIST-C's own fixed severity
each (the released dataset's settings, ``tk.shifts.MNIST_C``: rows ``mnist_c/<name>``,
a named family), and beside them on the same 15 corruptions at the toolkit's severities
1-5 (rows of kind "shift", which the corrupted-accuracy means average). The models: the
MLP, LeNet-5 (LeCun et al. 1998) and the toolkit's CNN, cross-entropy, Adam at lr 1e-3,
batch 128, 1,500 steps (48 epochs of the 4,000 training images, 10 % of them held out
for validation and temperature scaling). The far-OOD sets are Gaussian and uniform noise.

    python -m experiments.sweep --config experiments/configs/mnist_c.py
    python -m experiments.sweep --config experiments/configs/mnist_c.py:quick

The quick variant trains the MLP once for 300 steps and evaluates the MNIST-C family
only (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import ml_collections

import toolkit as tk
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product

MODELS = ("mlp", "lenet5", "cnn")
VARIANTS = ("", "quick")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(map(repr, VARIANTS))}")
    quick = variant == "quick"
    config = base_config("mnist_c" + ("_quick" if quick else ""), dataset="mnist5k")
    config.train.learning_rate = 1e-3
    config.train.batch_size = 128
    config.train.steps = 300 if quick else 1500
    config.models = ("mlp",) if quick else MODELS
    config.seeds = 1 if quick else 3
    config.evals = {"mnist_c": {"type": "mnist_c"}}
    if not quick:
        config.evals["shifts"] = {"type": "shifts", "names": tuple(tk.shifts.MNIST_C)}
        config.evals["ood"] = {"type": "ood", "names": ("gaussian_noise", "uniform_noise")}
    return config


def sweep(config: ml_collections.ConfigDict) -> list[dict]:
    return product(model=list(config.models), seed=range(config.seeds))
