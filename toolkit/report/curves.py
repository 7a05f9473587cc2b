"""Derived views of the rows: accuracy per shift and severity, accuracy on the line, and
reliability bins pooled over seeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pandas as pd

from toolkit.report.stats import aggregate, carried, finished

__all__ = [
    "LineFit",
    "accuracy_line",
    "pooled_reliability",
    "set_accuracy",
    "severity_curves",
    "with_run_config",
]


def with_run_config(rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Attaches each run's group_id, config keys, diverged flag and status to ``rows``."""
    status = ["status"] if "status" in runs else []
    config = runs[["run_id", "group_id", *carried(runs), "diverged", *status]]
    return rows.merge(config, on="run_id", how="inner")


def set_accuracy(df: pd.DataFrame, runs: pd.DataFrame, kind: str = "shift") -> pd.DataFrame:
    """Accuracy on each eval set of ``kind`` at each severity: mean +/- SE over seeds.

    ``kind`` is "shift" (shifts x severities 1..5) or "set" (named extra test sets,
    severity 0). One row per (group, ``eval_set``, ``severity``) with ``accuracy_mean``,
    ``_se``, ``_n`` and ``n_diverged`` (diverged runs are left out of the mean).
    """
    rows = df.loc[df["kind"] == kind, ["run_id", "eval_set", "severity", "accuracy"]]
    if rows.empty:
        return pd.DataFrame()
    rows = with_run_config(rows, runs)
    return aggregate(rows, ["accuracy"], by=["eval_set", "severity"])


def severity_curves(df: pd.DataFrame, runs: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """``metric`` (accuracy by default) vs severity averaged over shifts, mean +/- SE over
    seeds.

    For each run and severity ``s >= 1`` the metric is first averaged over the shifts
    evaluated at ``s``; severity 0 is the clean test set's. Then mean +/- SE over the
    group's non-diverged seeds: one row per (group, ``severity``) with ``<metric>_mean``,
    ``_se``, ``_n``; empty without shifts.
    """
    shift = df[df["kind"] == "shift"]
    if shift.empty:
        return pd.DataFrame()
    per_severity = shift.groupby(["run_id", "severity"], as_index=False)[metric].mean()
    clean = df.loc[df["kind"] == "clean", ["run_id", metric]].assign(severity=0)
    rows = with_run_config(pd.concat([clean, per_severity], ignore_index=True), runs)
    return aggregate(rows, [metric], by=["severity"])


@dataclasses.dataclass(frozen=True)
class LineFit:
    """Probit-probit least-squares line of shifted vs clean accuracy over runs."""

    slope: float
    intercept: float
    r2: float
    num_points: int
    runs: pd.DataFrame
    """The fitted runs (run_id, group_id, id_accuracy, corrupted_accuracy) with
    ``effective_robustness``: corrupted accuracy above the line (accuracy units)."""


def accuracy_line(runs: pd.DataFrame) -> LineFit | str:
    """Accuracy on the line (Miller et al. 2021) across all finished runs.

    Each point is one run: x = its clean (ID) test accuracy, y = its mean corrupted
    accuracy (mean over every shift x severity). The line is fitted in probit space by
    ``tk.metrics.accuracy_on_the_line`` over all runs of the experiment, and each run's
    effective robustness is ``tk.metrics.effective_robustness`` against that line (so
    it is relative to this experiment's own trend, not to an external baseline set).

    Returns the fit, or a string saying why no line can be fitted (fewer than two runs
    with both accuracies, or all clean accuracies equal).
    """
    from toolkit import metrics

    cols = ["run_id", "group_id", "id_accuracy", "corrupted_accuracy"]
    points = runs.loc[finished(runs), cols].dropna()
    if len(points) < 2:
        return f"needs >= 2 finished runs with clean and shift rows, got {len(points)}"
    id_acc = points["id_accuracy"].to_numpy(np.float32)
    ood_acc = points["corrupted_accuracy"].to_numpy(np.float32)
    try:
        fit = metrics.accuracy_on_the_line(id_acc, ood_acc)
    except ValueError as err:
        return str(err)
    points = points.assign(
        effective_robustness=np.asarray(
            metrics.effective_robustness(id_acc, ood_acc, fit), np.float64
        )
    )
    return LineFit(
        slope=float(fit["slope"]),
        intercept=float(fit["intercept"]),
        r2=float(fit["r2"]),
        num_points=len(points),
        runs=points.reset_index(drop=True),
    )


def pooled_reliability(reliabilities: Iterable[dict | None]) -> dict[str, np.ndarray] | None:
    """Reliability-diagram bins pooled over runs (e.g. the seeds of one group).

    Counts are summed and each bin's confidence and accuracy are the count-weighted means,
    ``conf_b = sum_r n_rb conf_rb / sum_r n_rb``, which equals the diagram of the pooled
    predictions (Guo et al. 2017). Returns ``confidence``, ``accuracy``, ``count`` (bins)
    and the pooled ``ece = sum_b n_b |acc_b - conf_b| / sum_b n_b``; ``None`` when no run
    has bins.
    """
    items = [r for r in reliabilities if isinstance(r, dict) and r.get("bin_count")]
    if not items:
        return None
    sizes = {len(r["bin_count"]) for r in items}
    if len(sizes) != 1:
        raise ValueError(f"reliability bins of different lengths cannot be pooled: {sizes}")
    counts = np.array([r["bin_count"] for r in items], np.float64)
    count = counts.sum(axis=0)
    conf = (np.array([r["bin_confidence"] for r in items], np.float64) * counts).sum(axis=0)
    acc = (np.array([r["bin_accuracy"] for r in items], np.float64) * counts).sum(axis=0)
    safe = np.maximum(count, 1.0)
    confidence, accuracy = conf / safe, acc / safe
    ece = float(np.sum(count * np.abs(accuracy - confidence)) / max(count.sum(), 1.0))
    return {"confidence": confidence, "accuracy": accuracy, "count": count, "ece": ece}
