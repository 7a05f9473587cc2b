"""Read one experiment's results directory into a tidy pandas DataFrame.

The layout (written by the sweep runner) is ``<dir>/runs/<run_id>/done`` markers plus an
append-only ``<dir>/evals.jsonl`` with one flat JSON object per (run, eval_set, severity).
Only rows of runs with a ``done`` marker are kept: a run without one (or with a torn one)
was interrupted and its rows may be partial; so is a run whose marker lists eval rows that
are missing from ``evals.jsonl`` (rows lost after the fact), which is skipped whole. A
re-evaluation appends rows with the same (run_id, eval_set, severity) key; the last one
wins. A truncated last line (a writer killed mid-append) and unparsable lines are skipped
with a :class:`ReportWarning`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit.sweep import storage

__all__ = [
    "CONFIG_KEYS",
    "KEY",
    "METRICS",
    "ReportError",
    "ReportWarning",
    "finished_runs",
    "load_results",
    "loss_label",
    "read_jsonl",
]

KEY = ("run_id", "eval_set", "severity")
"""A row's identity: a re-evaluation replaces the row with the same key."""

REQUIRED = ("run_id", "eval_set", "kind", "severity")

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
        for score in ("msp", "max_logit", "energy", "entropy")
    ),
)


class ReportError(ValueError):
    """A results directory that cannot be reported on (missing, empty, no finished runs)."""


class ReportWarning(UserWarning):
    """Rows skipped while reading a results directory."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON objects of a JSONL file, one per line; bad lines are skipped with a warning.

    A last line without its newline is a write cut short unless it parses as a whole JSON
    object (a cut JSON object never does); the writer starts its next append on a new line.
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    rows = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            what = (
                f"a truncated last line {number} ({len(raw)} bytes, no newline)"
                if number == len(lines)
                else f"unparsable line {number}: {err}"
            )
            warnings.warn(f"{path}: skipped {what}", ReportWarning, stacklevel=2)
            continue
        if not isinstance(row, dict):
            warnings.warn(
                f"{path}: skipped line {number}: a JSON {type(row).__name__}, not an object",
                ReportWarning,
                stacklevel=2,
            )
            continue
        rows.append(row)
    return rows


def finished_runs(results_dir: Path) -> dict[str, dict[str, Any]]:
    """``{run_id: done marker}`` for every readable ``runs/<run_id>/done`` in ``results_dir``.

    The runner writes markers atomically, so an unreadable one is damage: that run is not
    finished (the runner redoes it), and it is skipped with a warning.
    """
    done = {}
    for marker in sorted(Path(results_dir).glob("runs/*/done")):
        try:
            info = json.loads(marker.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            info = None
        if not isinstance(info, dict):
            warnings.warn(
                f"{marker}: unreadable done marker; run skipped as unfinished",
                ReportWarning,
                stacklevel=2,
            )
            continue
        done[marker.parent.name] = info
    return done


def _incomplete(done: Mapping[str, Mapping[str, Any]], rows: list[dict]) -> dict[str, list]:
    """``{run_id: [missing (eval_set, severity), ...]}`` of finished runs whose marker lists
    rows that ``rows`` lack (markers without a list are taken as complete)."""
    have = storage.row_keys(rows)
    out = {}
    for run_id, marker in done.items():
        missing = storage.missing_evals(marker, have.get(run_id, set()))
        if missing:
            out[run_id] = missing
    return out


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
    if not (results_dir / "evals.jsonl").is_file():
        raise ReportError(
            f"{str(results_dir)!r} has no evals.jsonl: no run of this experiment has been "
            "evaluated yet (expected the layout results/<experiment>/{runs/<run_id>/done, "
            "evals.jsonl})"
        )


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """Evaluation rows of the finished runs of one experiment, one row per key.

    Returns a DataFrame with the evals.jsonl fields (see the sweep spec): config fields,
    ``seed``, ``diverged``, ``eval_set``, ``kind``, ``severity`` and the metric columns
    (float, NaN for null), sorted by run_id, kind, eval_set, severity. Hyperparameter
    mappings become canonical JSON strings; ``loss_label`` is :func:`loss_label` and
    ``variant`` falls back to it where the runner wrote none. ``diverged`` is true when
    the row or the run's ``done`` marker (``diverged_step`` not null) says so.

    Raises:
      ReportError: the directory or its evals.jsonl is missing, or no row belongs to a
        run with a ``done`` marker.
    """
    results_dir = Path(results_dir)
    _check_dir(results_dir)
    done = finished_runs(results_dir)
    rows = read_jsonl(results_dir / "evals.jsonl")
    kept, malformed = [], 0
    for row in rows:
        if any(row.get(k) is None for k in REQUIRED):
            malformed += 1
        else:
            kept.append(row)
    if malformed:
        warnings.warn(
            f"{results_dir}/evals.jsonl: skipped {malformed} rows without one of {REQUIRED}",
            ReportWarning,
            stacklevel=2,
        )
    unfinished = sorted({r["run_id"] for r in kept if r["run_id"] not in done})
    if unfinished:
        count = sum(r["run_id"] not in done for r in kept)
        warnings.warn(
            f"{results_dir}: skipped {count} rows of {len(unfinished)} run(s) without a done "
            f"marker (unfinished or interrupted): {', '.join(unfinished)}",
            ReportWarning,
            stacklevel=2,
        )
    kept = [r for r in kept if r["run_id"] in done]
    incomplete = _incomplete(done, kept)
    if incomplete:
        warnings.warn(
            f"{results_dir}: skipped {len(incomplete)} finished run(s) whose done marker lists "
            f"eval rows missing from evals.jsonl (rows lost; rerun the sweep to redo them): "
            + ", ".join(f"{r} (e.g. {m[0]})" for r, m in sorted(incomplete.items())),
            ReportWarning,
            stacklevel=2,
        )
        kept = [r for r in kept if r["run_id"] not in incomplete]
    if not kept:
        raise ReportError(
            f"{str(results_dir)!r} has no evaluation rows of finished runs "
            f"({len(done)} runs with a done marker, {len(rows)} rows in evals.jsonl)"
        )
    df = pd.DataFrame(kept)
    df["severity"] = df["severity"].astype(int)
    # Last row wins: a re-evaluation is appended after the rows it replaces.
    df = df.drop_duplicates(subset=list(KEY), keep="last")
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
