"""Sweep results in a notebook: a run as a :class:`~toolkit.run.Run`, an experiment's
rows as a table with hyperparameters in their own columns.

    run = tk.load_run("results/loss_comparison/runs/0252a4ec190b1403")
    tk.evaluate(run, tk.data.load("mnist1d").test, shifts=["iid_noise"])
    df = tk.load_results("results/loss_comparison")
    df.groupby(["model", "loss_hparams.gamma"])["accuracy"].mean()
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from toolkit import store
from toolkit.report.load import MAPPING_KEYS
from toolkit.report.load import load_results as load_rows
from toolkit.run import Run
from toolkit.sweep.config import trial_from_record
from toolkit.sweep.loading import restore_finished

__all__ = ["load_results", "load_run"]

CHECKPOINTS = ("final", "best")


def load_run(path: str | os.PathLike, *, checkpoint: str = "final") -> Run:
    """The finished run in run directory ``path`` (``results/<experiment>/runs/<run_id>``)
    at its ``final`` checkpoint or, for a run trained with a validation split, its
    ``best``-validation one: config, params, model state, curve and info
    (``diverged_step``, ``best_step``, ``input_shape``). Its dataset is loaded to rebuild
    the model, as the sweep did.

    Raises:
      ValueError: ``path`` is not a finished run's directory (no ``config.json`` or
        ``done`` marker), its final checkpoint is missing, or ``checkpoint`` is unknown or
        ``best`` for a run without a validation split.
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint {checkpoint!r} is not one of {CHECKPOINTS}")
    path = Path(path)
    run_dir = store.RunDir(path.parent.parent, path.name)
    if path.parent.name != "runs" or not run_dir.config.is_file():
        raise ValueError(
            f"{str(path)!r} is not a sweep run directory (results/<experiment>/runs/<run_id> "
            f"with a config.json)"
        )
    marker = run_dir.done_marker()
    if marker is None:
        raise ValueError(f"{str(path)!r} is not finished (no done marker): rerun its sweep")
    trial = trial_from_record(store.read_json(run_dir.config), run_dir.run_id)
    run = restore_finished(run_dir, trial, marker).run
    if checkpoint == "best":
        if run.best is None:
            raise ValueError(f"{str(path)!r} trained without a validation split: no best state")
        return run.best
    return run


def load_results(
    experiment_dir: str | os.PathLike,
    *,
    split: str | None = "test",
    checkpoint: str | None = "final",
    predictor: str | None = "single",
) -> pd.DataFrame:
    """The tidy table of an experiment's finished runs (the report's rows: one per run,
    checkpoint, split, eval set and severity; ``split``/``checkpoint`` None for all;
    ``predictor`` "single", "mc_dropout", "ensemble" or None for all), with
    each hyperparameter in its own column, ``loss_hparams.gamma`` beside ``loss_hparams``
    (sorted JSON, for grouping by the whole mapping)."""
    df = load_rows(experiment_dir, split=split, checkpoint=checkpoint, predictor=predictor)
    for column in MAPPING_KEYS:
        if column not in df:
            continue
        values = pd.json_normalize([json.loads(v) for v in df[column]])
        values.columns = [f"{column}.{name}" for name in values.columns]
        df = pd.concat([df, values.set_index(df.index)], axis=1)
    return df
