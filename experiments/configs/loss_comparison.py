"""Every registered classification loss x {mlp, cnn, gru} on MNIST-1D, each tuned with the
same budget, then 5 seeds at the selected hyperparameters.

The protocol (toolkit.sweep.tuning, toolkit.selection): 10 % of the training set is held
out for validation (stratified); every (architecture, loss) cell gets 8 tuning trials of
Adam's learning rate and the loss's own hyperparameters (trial 0: the config's values,
Adam at lr 1e-2 and the registry defaults; trials 1-7 drawn from the registries' search
spaces), the ``id_val`` rule picks the trial
with the best clean validation accuracy, and that trial is trained at seeds 0-4 (the tuning
runs use seed 1000 and are not among them). The report also shows what ``oracle`` (best
shifted-validation accuracy, an upper bound) picks; its seed runs are trained by the quick
variant only, to keep the full run near an hour on 2 cores. Batch 100 for 2,000 steps
(the MNIST-1D reference setup, Greydanus 2020, trains 6,000). Evaluated on every sequence
shift at severities 1-5, on the MNIST-1D test sets regenerated with shifted generator
arguments and against the sequence far-OOD sets; calibration raw and after temperature
scaling on the validation split.

Variants: ``small`` (8 losses, 4 trials, 3 seeds: the README's main job), ``quick`` (3
losses x 2 architectures, 3 trials, 2 seeds, 300 steps: CI's end-to-end check) and
``untuned`` (every loss at Adam lr 1e-2 and its registry defaults, no validation split, 5
seeds: the recipe of the committed results/loss_comparison, the ``default`` rule). Their
wall times are in results/benchmarks/sweep_wall.md.

    python -m experiments.sweep --config experiments/configs/loss_comparison.py
    python -m experiments.sweep --config experiments/configs/loss_comparison.py:small
    python -m experiments.sweep --config experiments/configs/loss_comparison.py:quick
    python -m experiments.sweep --config experiments/configs/loss_comparison.py:untuned
"""

from __future__ import annotations

import ml_collections

import toolkit as tk
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product

MODELS = ("mlp", "cnn", "gru")
STEPS = {"mlp": 2000, "cnn": 2000, "gru": 2000}
VARIANTS = ("", "small", "quick", "untuned")
# The small variant's losses: cross-entropy and one of each family (smoothing, focusing,
# polynomial, robust to noise, bounded, margin).
SMALL_LOSSES = (
    "softmax_cross_entropy",
    "label_smoothing",
    "softmax_focal",
    "poly1",
    "gce",
    "nce_rce",
    "brier",
    "multiclass_hinge",
)
QUICK_LOSSES = ("softmax_cross_entropy", "softmax_focal", "label_smoothing")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(map(repr, VARIANTS))}")
    quick = variant == "quick"
    # "untuned" is the recipe of the committed results/loss_comparison: every loss at Adam lr
    # 1e-2 and its registry defaults, no validation split, 5 seeds.
    name = {"": "loss_comparison_tuned", "untuned": "loss_comparison"}
    config = base_config(name.get(variant, f"loss_comparison_{variant}"), dataset="mnist1d")
    config.train.learning_rate = 1e-2  # trial 0's; the others draw it from adam's space
    config.train.batch_size = 100
    config.models = ("mlp", "cnn") if quick else MODELS
    every = tuple(tk.losses.names())
    config.losses = {"small": SMALL_LOSSES, "quick": QUICK_LOSSES}.get(variant, every)
    config.seeds = {"small": 3, "quick": 2}.get(variant, 5)
    config.tune.trials = {"": 8, "small": 4, "quick": 3, "untuned": 0}[variant]
    if variant == "untuned":
        config.data_axes.validation_fraction = 0.0
    config.tune.over = ("learning_rate", "loss")
    # oracle's picks cost seed runs of their own; the quick variant checks both rules
    config.tune.select = ("id_val", "oracle") if quick else ("id_val",)
    config.steps = ml_collections.ConfigDict({m: 300 if quick else STEPS[m] for m in MODELS})
    severities = (3,) if quick else (1, 2, 3, 4, 5)
    config.evals = {
        "shifts": {"type": "shifts", "names": "all", "severities": severities},
        "regenerated": {"type": "mnist1d_regenerated", "kinds": "all", "severities": severities},
        "ood": {"type": "ood", "names": "all"},
    }
    return config


def sweep(config: ml_collections.ConfigDict) -> list[dict]:
    models = [{"model": m, "steps": config.steps[m]} for m in config.models]
    return product(model=models, loss=config.losses, seed=range(config.seeds))
