"""Uncertainty and OOD methods compared across architectures under graded shift.

MNIST-1D (MLP, CNN, GRU) and the 8x8 scikit-learn digits (MLP, CNN, LeNet-5), each trained
with cross-entropy and dropout 0.1 at 5 seeds (Adam, lr 1e-2 on MNIST-1D and 3e-3 on
digits, batch 100, a 10 % validation split). Every run is evaluated as

* a single model, scored by every post-hoc OOD scorer of ``tk.ood.scorers`` (MSP,
  max-logit, energy, entropy, ODIN, MDS, RMDS, KNN, ReAct, ASH, ViM, GEN, DICE): feature
  statistics from the training split, hyperparameters chosen on the validation split
  against ``uniform_noise``, which is never a test OOD set (OpenOOD v1.5's protocol);
* its MC-dropout average of 10 passes (Gal & Ghahramani 2016);
* and the 5 seeds of each architecture as a deep ensemble (Lakshminarayanan et al. 2017);

on the clean test set and every shift of its dataset at severities 1-5 (accuracy, NLL, ECE
raw and after temperature scaling), with split-conformal sets (LAC, APS, RAPS at alpha 0.1,
calibrated on the validation split) and AURC per confidence score on every labelled set.

    python -m experiments.sweep --config experiments/configs/ood_methods.py
    python -m experiments.sweep --config experiments/configs/ood_methods.py:quick

Variants ``baseline`` (the four logit scores only, no MC dropout, conformal sets, AURC or
ensembles) and ``scorers`` (baseline plus every scorer) measure what the methods cost
(``python -m benchmarks.ood_cost``).
"""

from __future__ import annotations

import ml_collections

from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product

VARIANTS = ("", "quick", "baseline", "scorers")
MODELS = {"mnist1d": ("mlp", "cnn", "gru"), "digits": ("mlp", "cnn", "lenet5")}
STEPS = {"mnist1d": 2000, "digits": 600}
LEARNING_RATES = {"mnist1d": 1e-2, "digits": 3e-3}
VALIDATION_OOD = "uniform_noise"  # chooses scorer hyperparameters; never a test OOD set


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(map(repr, VARIANTS))}")
    quick = variant == "quick"
    config = base_config("_".join(filter(None, ("ood_methods", variant))), dataset="mnist1d")
    config.train.batch_size = 100
    config.datasets = ("mnist1d", "digits")
    config.models = ml_collections.ConfigDict({d: m[:2] if quick else m for d, m in MODELS.items()})
    config.steps = ml_collections.ConfigDict({d: 200 if quick else s for d, s in STEPS.items()})
    config.seeds = 2 if quick else 5
    config.dropout = 0.1
    severities = (3,) if quick else (1, 2, 3, 4, 5)
    config.evals = {
        "shifts": {"type": "shifts", "names": "all", "severities": severities},
        "ood": {
            "type": "ood",
            "names": "all",  # every OOD set of the dataset's kind but the validation one
            "scorers": "all",
            "validation": (VALIDATION_OOD,),
        },
        "conformal": {"type": "conformal", "methods": ("lac", "aps", "raps"), "alpha": 0.1},
        "selective": {"type": "selective", "scores": ("msp", "max_logit", "energy", "entropy")},
        "mc_dropout": {"type": "mc_dropout", "samples": 4 if quick else 10},
        "ensemble": {"type": "ensemble"},
    }
    if variant in ("baseline", "scorers"):
        del config.evals["conformal"], config.evals["selective"]
        del config.evals["mc_dropout"], config.evals["ensemble"]
        if variant == "baseline":
            del config.evals["ood"]["scorers"]
    return config


def sweep(config: ml_collections.ConfigDict) -> list[dict]:
    trials = []
    for dataset in config.datasets:
        for model in config.models[dataset]:
            point = {
                "dataset": dataset,
                "model": model,
                "model_hparams": {"dropout": config.dropout},
                "steps": config.steps[dataset],
                "learning_rate": LEARNING_RATES[dataset],
            }
            trials += product(point=[point], seed=range(config.seeds))
    return trials
