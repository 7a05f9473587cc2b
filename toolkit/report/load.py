"""Read one experiment's results directory into a tidy pandas DataFrame.

The rows are those of :func:`toolkit.store.read_evals`: the last row per row key of the
runs whose ``done`` marker is intact; damaged lines, malformed rows and rows of unfinished
runs are skipped with a :class:`ReportWarning`. Rows written before the protocol columns
existed (split, checkpoint, status, ...) get their defaults
(:func:`toolkit.selection.with_row_defaults`). Failed runs have no rows: :func:`failed_runs`
reads their ``error.json``. This module shapes rows into columns and reads nothing but the
store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit import store
from toolkit.metrics import OOD_SCORES
from toolkit.selection import with_row_defaults

__all__ = [
    "CHECKPOINTS",
    "CONFIG_KEYS",
    "MAPPING_KEYS",
    "METRICS",
    "PREDICTORS",
    "SPLITS",
    "ReportError",
    "ReportWarning",
    "failed_runs",
    "finished_runs",
    "load_results",
    "loss_label",
    "read_jsonl",
    "run_configs",
    "trained_config",
]

ReportWarning = store.ResultsWarning  # rows skipped while reading a results directory
finished_runs = store.done_markers
read_jsonl = store.read_jsonl

CONFIG_KEYS = (
    "dataset",
    "dataset_kwargs",
    "model",
    "model_hparams",
    "loss",
    "loss_hparams",
    "optimizer",
    "optimizer_hparams",
    "learning_rate",
    "schedule",
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "batch_size",
    "steps",
    "label_noise",
    "label_noise_kind",
    "train_size",
    "imbalance",
    "validation_fraction",
    "augment",
    "augment_hparams",
)
"""Row fields that (besides the seed) determine training; runs that agree on all of those
present are seeds of one group. The labels ``group`` and ``variant`` are not among them: the
runner derives them from the whole sweep, so a sweep extended later may label new seeds of
the same configuration differently."""

MAPPING_KEYS = (
    "dataset_kwargs",
    "model_hparams",
    "loss_hparams",
    "optimizer_hparams",
    "augment_hparams",
)

_PROTOCOL_METRICS = (
    "nll_ts",
    "brier_ts",
    "ece_ts",
    "temperature",
    "max_class_fraction",
    "train_accuracy",
)
"""Columns of the evaluation protocol that rows written before it lack (NaN there)."""

METRICS = (
    "accuracy",
    "nll",
    "brier",
    "ece",
    *_PROTOCOL_METRICS,
    "misclassification_auroc",
    *(
        f"{metric}_{score}"
        for metric in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr")
        for score in OOD_SCORES
    ),
)


SPLITS = ("test", "validation")
PREDICTORS = ("single", "mc_dropout", "ensemble")
"""Which data a row's set was built from."""
CHECKPOINTS = {
    "final": "the weights at the last training step",
    "best": "the best-validation-accuracy weights kept during training",
}
"""Which weights a row evaluated."""


class ReportError(ValueError):
    """A results directory that cannot be reported on (missing, empty, no finished runs)."""


def _canonical(value: Any) -> str:
    """A mapping as sorted, compact JSON, so hyperparameter dicts can be grouped on."""
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "{}"
    return str(value)


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def loss_label(loss: str, loss_hparams: str) -> str:
    """``loss(k=v,...)`` from the loss name and its canonical-JSON hyperparameters (None
    values left out), e.g. ``softmax_focal(gamma=2)``."""
    hparams = {k: v for k, v in json.loads(loss_hparams).items() if v is not None}
    inner = ",".join(f"{k}={_short(v)}" for k, v in sorted(hparams.items()))
    return f"{loss}({inner})" if inner else str(loss)


def _check_dir(results_dir: Path) -> None:
    if not results_dir.exists():
        raise ReportError(f"results directory {str(results_dir)!r} does not exist")
    if not results_dir.is_dir():
        raise ReportError(f"{str(results_dir)!r} is not a directory")
    if not (results_dir / store.EVALS).is_file():
        raise ReportError(
            f"{str(results_dir)!r} has no {store.EVALS}: no run of this experiment has been "
            "evaluated yet (expected the layout results/<experiment>/{runs/<run_id>/done, "
            f"{store.EVALS}}})"
        )


def load_results(
    results_dir: str | Path,
    *,
    split: str | None = "test",
    checkpoint: str | None = "final",
    predictor: str | None = "single",
) -> pd.DataFrame:
    """Evaluation rows of the finished runs of one experiment, one row per key.

    By default the rows of the ``test`` split evaluated at the ``final`` checkpoint (what
    tables and figures show); ``checkpoint="best"`` gives the best-validation weights' rows,
    ``split="validation"`` the validation rows, None every value. ``predictor`` is
    "single" (the runs themselves), "mc_dropout" (their MC-dropout averages), "ensemble"
    (the deep ensembles of a configuration's seeds) or None for all.

    Returns a DataFrame with the evals.jsonl fields (see the sweep spec): config fields,
    ``seed``, ``diverged``, ``eval_set``, ``kind``, ``severity``, the metric columns
    (float, NaN for null; the protocol's ``*_ts``, ``temperature``, ``max_class_fraction``
    and ``train_accuracy`` NaN on old rows), ``split`` and ``checkpoint`` (old rows: "test",
    "final"), ``status`` (one per run and checkpoint; old rows: "diverged"/"finished"), ``trial``,
    ``best_step``, ``diverged_step`` (nullable ints), ``cell`` and ``role`` (None for
    untuned sweeps), sorted by run_id, checkpoint, split, kind, eval_set, severity.
    Hyperparameter mappings become canonical JSON strings; ``loss_label`` is
    :func:`loss_label` and ``variant`` falls back to it where the runner wrote none.
    ``diverged`` is true when the row or the run's ``done`` marker (``diverged_step`` not
    null) says so.

    Raises:
      ValueError: ``split`` or ``checkpoint`` is not one of the protocol's values.
      ReportError: the directory or its evals.jsonl is missing, or no row of ``split`` and
        ``checkpoint`` belongs to a finished run.
    """
    for name, value, valid in (
        ("split", split, SPLITS),
        ("checkpoint", checkpoint, CHECKPOINTS),
        ("predictor", predictor, PREDICTORS),
    ):
        if value is not None and value not in valid:
            raise ValueError(f"{name} {value!r} is not one of {[*valid, None]}")
    results_dir = Path(results_dir)
    _check_dir(results_dir)
    done = store.done_markers(results_dir)
    rows = store.read_eval_rows(results_dir)
    kept = store.read_evals(results_dir, rows=rows)
    # Checkpoints are not the report's (nor committed): only the run's record is checked.
    store.warn_missing(results_dir, {row["run_id"] for row in kept}, checkpoint=False)
    if not kept:
        raise ReportError(
            f"{str(results_dir)!r} has no evaluation rows of finished runs "
            f"({len(done)} runs with a done marker, {len(rows)} rows in {store.EVALS})"
        )
    df = pd.DataFrame(kept)
    for column, default in store.KEY_DEFAULTS.items():  # rows of older sweeps lack them
        df[column] = df[column].fillna(default) if column in df else default
    df["severity"] = df["severity"].astype(int)
    df = _normalize(df, done)
    for column, value in (("split", split), ("checkpoint", checkpoint), ("predictor", predictor)):
        if value is not None:
            df = df[df[column] == value]
    if df.empty:
        raise ReportError(
            f"{str(results_dir)!r} has no {split or 'any'} rows of checkpoint "
            f"{checkpoint or 'any'!r} of finished runs"
        )
    return df.reset_index(drop=True)


def run_configs(results_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{run_id: its config.json}`` of the run directories whose config reads."""
    configs = {}
    for run in store.run_dirs(results_dir):
        config = store.read_json(run.config)
        if isinstance(config, Mapping):
            configs[run.run_id] = dict(config)
    return configs


def trained_config(config: Mapping[str, Any]) -> str:
    """What a run trained, seed excluded, as canonical JSON: its dataset, dataset_kwargs,
    data_axes and train config (every field, also those rows lack, e.g. weight_decay)."""
    train = {k: v for k, v in (config.get("train") or {}).items() if k != "seed"}
    keys = ("dataset", "dataset_kwargs", "data_axes")
    trained = {k: config.get(k) for k in keys} | {"train": train}
    return json.dumps(trained, sort_keys=True, separators=(",", ":"), default=str)


def _normalize(df: pd.DataFrame, done: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    for key in ("model", "loss", "dataset"):
        if key not in df:
            df[key] = "unknown"
    for key in MAPPING_KEYS:
        df[key] = df[key].map(_canonical) if key in df else "{}"
    if "augment" in df:  # only rows of runs trained with an augmentation carry it
        df["augment"] = df["augment"].astype(object).where(df["augment"].notna(), "none")
    df["loss_label"] = [
        loss_label(a, b) for a, b in zip(df["loss"], df["loss_hparams"], strict=True)
    ]
    if "variant" not in df:
        df["variant"] = None
    df["variant"] = df["variant"].fillna(df["loss_label"])
    for metric in (*METRICS, "label_noise", "learning_rate"):
        if metric in df:
            df[metric] = pd.to_numeric(df[metric], errors="coerce").astype(np.float64)
        elif metric in _PROTOCOL_METRICS:
            df[metric] = np.nan
    for column in ("trial", "best_step", "diverged_step"):
        values = pd.to_numeric(df[column], errors="coerce") if column in df else np.nan
        df[column] = pd.Series(values, index=df.index, dtype="Float64").astype("Int64")
    for column in ("cell", "role"):
        df[column] = (
            df[column].astype(object).where(df[column].notna(), None) if column in df else None
        )
    if "label_noise" not in df:
        df["label_noise"] = 0.0
    if "seed" not in df:
        df["seed"] = -1
    flagged = df["diverged"].fillna(False).astype(bool) if "diverged" in df else False
    marker = df["run_id"].map(lambda r: done[r].get("diverged_step") is not None)
    df["diverged"] = flagged | marker
    # One diverged row marks the whole run.
    df["diverged"] = df.groupby("run_id")["diverged"].transform("any")
    df = with_row_defaults(df)
    # One status per run and checkpoint (its rows agree; a diverged flag wins over an older
    # "finished"): a run's best-validation state may be healthy where its final one is not.
    df["status"] = df.groupby(["run_id", "checkpoint"])["status"].transform("first").astype(str)
    df.loc[df["diverged"], "status"] = "diverged"
    df["diverged"] = df["status"] == "diverged"
    order = ["run_id", "checkpoint", "split", "kind", "eval_set", "severity"]
    return df.sort_values(order).reset_index(drop=True)


def failed_runs(results_dir: str | Path) -> pd.DataFrame:
    """Runs that raised: one row per ``runs/<run_id>/error.json`` of a run without a
    ``done`` marker, with ``run_id``, ``type``, ``message``, ``time`` and the run's
    ``model``, ``loss`` and ``seed`` from its ``config.json`` (None where unreadable)."""
    out = []
    for run in store.run_dirs(results_dir):
        error = store.read_json(run.path / "error.json")
        if not isinstance(error, Mapping) or run.is_done():
            continue
        config = store.read_json(run.config)
        train = config.get("train", {}) if isinstance(config, Mapping) else {}
        train = train if isinstance(train, Mapping) else {}
        out.append(
            {"run_id": run.run_id}
            | {k: error.get(k) for k in ("type", "message", "time")}
            | {k: train.get(k) for k in ("model", "loss", "seed")}
        )
    columns = ["run_id", "type", "message", "time", "model", "loss", "seed"]
    return pd.DataFrame(out, columns=columns)
