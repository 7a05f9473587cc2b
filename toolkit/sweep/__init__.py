"""Sweeps: one config of architectures x losses x optimizers x seeds x data axes, run
resumably into one results directory, evaluated under shift.

    python -m experiments.sweep --config experiments/configs/loss_comparison.py:quick

    from toolkit import sweep
    config, sweep_fn = sweep.load_config("experiments/configs/label_noise.py", {"seeds": 1})
    result = sweep.run_sweep(config, sweep_fn, results_dir="results")
    rows = sweep.read_evals(result.experiment_dir)

Modules: ``config`` (grids, random search, run ids), ``checks`` (validation before
compute), ``checkpoint`` (orbax), ``execute`` (one trial), ``executors`` (inline,
process, submitit, population), ``runner`` (``run_sweep``), ``tuning`` (tuned sweeps:
trials per cell, then seeds at the selected hyperparameters), ``cli``, ``evals`` (a
config's ``evals`` entries as :mod:`toolkit.evaluation` sets), ``records`` (a trial's
``evals.jsonl`` rows) and ``reevaluation`` (finished runs evaluated again). Files are read
and written through :mod:`toolkit.store`.

Attributes load on first use, so worker processes can configure XLA before JAX starts.
"""

from __future__ import annotations

import importlib
from typing import Any

_ATTRS = {
    "SweepConfigError": "toolkit.sweep.config",
    "Trial": "toolkit.sweep.config",
    "expand": "toolkit.sweep.config",
    "product": "toolkit.sweep.search",
    "random_search": "toolkit.sweep.search",
    "run_id_of": "toolkit.sweep.config",
    "load_config": "toolkit.sweep.cli",
    "apply_overrides": "toolkit.sweep.cli",
    "read_evals": "toolkit.store",
    "read_jsonl": "toolkit.store",
    "RunDir": "toolkit.store",
    "plan": "toolkit.sweep.runner",
    "run_sweep": "toolkit.sweep.runner",
    "SweepResult": "toolkit.sweep.runner",
    "evaluations": "toolkit.sweep.evals",
    "executors": "toolkit.sweep.executors",
    "reevaluate": "toolkit.sweep.reevaluation",
}

__all__ = sorted(_ATTRS)


def __getattr__(name: str) -> Any:
    if name in _ATTRS:
        return getattr(importlib.import_module(_ATTRS[name]), name)
    raise AttributeError(f"module 'toolkit.sweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
