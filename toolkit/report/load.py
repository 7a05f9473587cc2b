"""Read one experiment's results directory into a tidy pandas DataFrame.

The rows are those of :func:`toolkit.store.read_evals`: the last row per (run_id,
checkpoint, split, eval_set, severity) of the runs whose ``done`` marker is intact; damaged
lines, malformed rows and rows of unfinished runs are skipped with a
:class:`ReportWarning`. This module shapes them into columns and reads nothing but the store.
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

__all__ = [
    "CONFIG_KEYS",
    "METRICS",
    "ReportError",
    "ReportWarning",
    "finished_runs",
    "load_results",
    "loss_label",
    "read_jsonl",
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
)
"""Row fields that (besides the seed) determine training; runs that agree on all of those
present are seeds of one group. The labels ``group`` and ``variant`` are not among them: the
runner derives them from the whole sweep, so a sweep extended later may label new seeds of
the same configuration differently."""

_MAPPING_KEYS = ("dataset_kwargs", "model_hparams", "loss_hparams", "optimizer_hparams")

METRICS = (
    "accuracy",
    "nll",
    "brier",
    "ece",
    "misclassification_auroc",
    *(
        f"{metric}_{score}"
        for metric in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr")
        for score in OOD_SCORES
    ),
)


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


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """Evaluation rows of the finished runs of one experiment, one row per key.

    The final checkpoint's rows on the test split (rows of older sweeps, which lack
    ``checkpoint`` and ``split``, are those). Returns a DataFrame with the evals.jsonl
    fields (see the sweep spec): config fields,
    ``seed``, ``diverged``, ``eval_set``, ``kind``, ``severity`` and the metric columns
    (float, NaN for null), sorted by run_id, kind, eval_set, severity. Hyperparameter
    mappings become canonical JSON strings; ``loss_label`` is :func:`loss_label` and
    ``variant`` falls back to it where the runner wrote none. ``diverged`` is true when
    the row or the run's ``done`` marker (``diverged_step`` not null) says so.

    Raises:
      ReportError: the directory or its evals.jsonl is missing, or no row belongs to a
        finished run.
    """
    results_dir = Path(results_dir)
    _check_dir(results_dir)
    done = store.done_markers(results_dir)
    rows = store.read_eval_rows(results_dir)
    kept = store.read_evals(results_dir, rows=rows)
    if not kept:
        raise ReportError(
            f"{str(results_dir)!r} has no evaluation rows of finished runs "
            f"({len(done)} runs with a done marker, {len(rows)} rows in {store.EVALS})"
        )
    df = pd.DataFrame(kept)
    for column, default in store.KEY_DEFAULTS.items():  # rows of older sweeps lack them
        df[column] = df[column].fillna(default) if column in df else default
    # The tables are of the final checkpoint on the test split (validation rows: selection).
    df = df[(df["checkpoint"] == "final") & (df["split"] == "test")].reset_index(drop=True)
    df["severity"] = df["severity"].astype(int)
    return _normalize(df, done)


def _normalize(df: pd.DataFrame, done: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    for key in ("model", "loss", "dataset"):
        if key not in df:
            df[key] = "unknown"
    for key in _MAPPING_KEYS:
        df[key] = df[key].map(_canonical) if key in df else "{}"
    df["loss_label"] = [
        loss_label(a, b) for a, b in zip(df["loss"], df["loss_hparams"], strict=True)
    ]
    if "variant" not in df:
        df["variant"] = None
    df["variant"] = df["variant"].fillna(df["loss_label"])
    for metric in (*METRICS, "label_noise", "learning_rate"):
        if metric in df:
            df[metric] = pd.to_numeric(df[metric], errors="coerce").astype(np.float64)
    if "label_noise" not in df:
        df["label_noise"] = 0.0
    if "seed" not in df:
        df["seed"] = -1
    flagged = df["diverged"].fillna(False).astype(bool) if "diverged" in df else False
    marker = df["run_id"].map(lambda r: done[r].get("diverged_step") is not None)
    df["diverged"] = flagged | marker
    # One diverged row marks the whole run.
    df["diverged"] = df.groupby("run_id")["diverged"].transform("any")
    return df.sort_values(["run_id", "kind", "eval_set", "severity"]).reset_index(drop=True)
