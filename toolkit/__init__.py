"""A functional JAX toolkit for asking which architecture, loss and optimizer hold up
when the data shifts.

    import toolkit as tk
    ds = tk.data.load("mnist1d")
    run = tk.train(ds, model="cnn", loss="softmax_cross_entropy", optimizer="adam",
                   learning_rate=1e-2, batch_size=100, steps=6000, seed=0)
    tk.evaluate(run, ds.test)

Submodules are imported on first use, so ``import toolkit`` stays fast (TensorFlow
Datasets and Flax load only when needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "array_cache",
    "augment",
    "attributions",
    "compilation_cache",
    "data",
    "distributed",
    "evaluation",
    "losses",
    "metrics",
    "models",
    "ood",
    "optimizers",
    "population",
    "registry",
    "report",
    "results",
    "shifts",
    "shuffle",
    "store",
    "sweep",
    "train_step",
    "training",
    "writers",
)
_ATTRS = {
    "train": ("toolkit.training", "train"),
    "Run": ("toolkit.training", "Run"),
    "TrainConfig": ("toolkit.training", "TrainConfig"),
    "evaluate": ("toolkit.evaluation", "evaluate"),
    "ensemble": ("toolkit.ensembles", "ensemble"),
    "train_population": ("toolkit.training", "train_population"),
    "predict": ("toolkit.evaluation", "predict"),
    "load_run": ("toolkit.results", "load_run"),
    "load_results": ("toolkit.results", "load_results"),
    # The optimizers' learning-rate schedules, public at the top level.
    "schedules": ("toolkit.optimizers", "schedules"),
}

__all__ = [*_SUBMODULES, *_ATTRS]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"toolkit.{name}")
    if name in _ATTRS:
        module, attr = _ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
