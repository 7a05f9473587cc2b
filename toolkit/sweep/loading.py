"""A finished sweep run back in memory: its trial, dataset, training data and the
:class:`~toolkit.run.Run` restored from its final checkpoint (re-evaluation and
``tk.load_run`` both read runs this way)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from toolkit import store
from toolkit.data import Dataset
from toolkit.sweep.checkpoint import Checkpoints, saved_layouts
from toolkit.sweep.config import Trial
from toolkit.sweep.data import TrainingData, load_dataset, training_data
from toolkit.training import Run, build_model

__all__ = ["FinishedRun", "RunUnavailableError", "restore_finished"]


class RunUnavailableError(ValueError):
    """A finished run that cannot be restored (its final checkpoint missing or unreadable)."""


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    trial: Trial
    dataset: Dataset
    data: TrainingData
    run: Run


def restore_finished(run_dir: store.RunDir, trial: Trial, marker: Mapping[str, Any]) -> FinishedRun:
    """The run of ``run_dir`` at the final step its done ``marker`` names (the newest
    checkpoint for markers of older sweeps), never an earlier one. ``run.info`` holds
    ``diverged_step`` and ``best_step``; ``run.best`` is its best-validation state when it
    trained with a validation split.

    Raises:
      RunUnavailableError: that checkpoint is missing or unreadable.
    """
    dataset = load_dataset(trial.dataset, dict(trial.dataset_kwargs))
    config = trial.train_config()
    data = training_data(dataset, dict(trial.data_axes), seed=trial.train["seed"])
    checkpoints = Checkpoints(run_dir.checkpoint)
    has_best = data.validation is not None  # its states keep the best-validation state
    abstract = saved_layouts(config, dataset.num_classes, dataset.input_shape, best=has_best)
    final = marker.get("step")  # absent in markers of older sweeps: the newest step
    if final is None:
        steps = checkpoints.steps()
        final = max(steps) if steps else None
    state = None if final is None else checkpoints.restore(abstract, step=int(final))
    checkpoints.close()
    if state is None:
        raise RunUnavailableError(f"final checkpoint (step {final}) missing or unreadable")
    model = build_model(config, dataset.num_classes)
    info = {k: marker.get(k) for k in ("diverged_step", "best_step")}
    info["input_shape"] = tuple(dataset.input_shape)
    run = Run(config, model, state, run_dir.read_metrics(), info)
    return FinishedRun(trial, dataset, data, run)
