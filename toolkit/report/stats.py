"""Per-run summaries and mean +/- standard error over the seeds of each configuration.

A *group* is every run that agrees on the config fields in ``CONFIG_KEYS`` (all but the
seed): its runs are the seeds the statistics average over. Runs are counted per group and
status (finished, diverged, collapsed), and only finished runs enter a mean: a group
without a finished run has no mean.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from toolkit.report.load import CONFIG_KEYS

__all__ = [
    "CALIBRATION",
    "RUN_METRICS",
    "STATUSES",
    "SUMMARY_OOD_SCORES",
    "aggregate",
    "finished",
    "group_keys",
    "key_strings",
    "mean_se",
    "per_run",
    "run_groups",
    "series_labels",
    "status_counts",
    "varying_keys",
]

SUMMARY_OOD_SCORES = ("msp", "energy")
"""OOD scores whose AUROC (averaged over the OOD sets) the report shows."""

CALIBRATION = ("nll", "ece", "brier")
"""Calibration metrics reported raw and temperature-scaled (``<metric>_ts``)."""
_ROW_METRICS = ("accuracy", *(f"{m}{ts}" for m in CALIBRATION for ts in ("", "_ts")))

RUN_METRICS = (
    *(f"id_{m}" for m in _ROW_METRICS),
    *(f"corrupted_{m}" for m in _ROW_METRICS),
    *(f"ood_auroc_{score}" for score in SUMMARY_OOD_SCORES),
    "temperature",
)
"""Columns of :func:`per_run` that :func:`aggregate` averages."""

STATUSES = ("finished", "diverged", "collapsed")
"""Run statuses of the rows (failed runs have none); only finished runs are averaged."""
_TAGS = ("cell", "trial", "role")

_REDUNDANT = ("loss", "loss_hparams")  # already spelled out by the loss label
LABELS = ("variant", "loss_label")
"""Per-group labels carried along (not grouped on: see ``CONFIG_KEYS``)."""


def mean_se(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, standard error and count of the finite values.

    ``SE = s / sqrt(n)`` with ``s`` the sample standard deviation (``ddof=1``); SE is NaN
    for ``n = 1`` and the mean is NaN for ``n = 0``.
    """
    x = np.asarray(list(values), dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    se = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(x.mean()), se, n


def group_keys(df: pd.DataFrame) -> list[str]:
    """The config fields of ``CONFIG_KEYS`` present in ``df`` (the seed excluded)."""
    return [k for k in CONFIG_KEYS if k in df.columns]


def carried(df: pd.DataFrame) -> list[str]:
    """Group keys plus the label columns present in ``df``."""
    return [*group_keys(df), *(k for k in LABELS if k in df.columns)]


def key_strings(df: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """One string per row of ``df``: JSON of its ``keys`` values (NaN as null)."""
    # JSON of the values, not a groupby on the raw columns: NaN keys (train_size null)
    # would otherwise drop rows or fail to compare.
    records = df[list(keys)].astype(object).where(df[list(keys)].notna(), None)
    return pd.Series(
        [json.dumps(list(r), default=str) for r in records.itertuples(index=False)],
        index=df.index,
    )


def run_groups(df: pd.DataFrame) -> pd.Series:
    """``{run_id: group_id}`` of the runs in the rows ``df`` (as :func:`per_run` sets it)."""
    first = df.groupby("run_id", sort=True).first()
    return key_strings(first, group_keys(df))


def _mean_by_run(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows or rows.empty:
        return pd.Series(dtype=np.float64)
    return rows.groupby("run_id")[column].mean()


def per_run(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: config, seed, status and the run-level metrics.

    ``df`` holds the rows of one split and checkpoint (the report's: test, final).

    - ``id_<m>`` for m in accuracy, nll, nll_ts, ece, ece_ts, brier, brier_ts: the
      ``clean`` row; ``id_num_examples`` its size.
    - ``corrupted_<m>``: mean over all ``shift`` rows of the run, i.e. over every shift x
      severity evaluated (each pair weighs the same).
    - ``ood_auroc_<score>``: AUROC of the score, mean over the run's ``ood`` rows.
    - ``temperature``: the run's fitted temperature (NaN without a validation split).
    - ``num_shift_rows``, ``num_ood_sets``: how many rows those means cover.
    - ``train_accuracy``, ``max_class_fraction`` (clean row), ``best_step``,
      ``diverged_step``, ``cell``, ``trial``, ``role``.

    Metrics of runs whose ``status`` is not finished are NaN. ``group_id`` identifies the
    run's group.
    """
    keys = group_keys(df)
    first = df.groupby("run_id", sort=True).first()
    extra = [c for c in ("status", *_TAGS) if c in first]
    runs = first[[*carried(df), "seed", "diverged", *extra]].copy()
    if "status" not in runs:
        runs["status"] = np.where(runs["diverged"], "diverged", "finished")
    clean = df[df["kind"] == "clean"].set_index("run_id")
    shift = df[df["kind"] == "shift"]
    for metric in _ROW_METRICS:
        runs[f"id_{metric}"] = _column(clean, metric).reindex(runs.index)
        runs[f"corrupted_{metric}"] = _mean_by_run(shift, metric).reindex(runs.index)
    runs["id_num_examples"] = _column(clean, "num_examples").reindex(runs.index)
    runs["temperature"] = _mean_by_run(df, "temperature").reindex(runs.index)
    ood = df[df["kind"] == "ood"]
    for score in SUMMARY_OOD_SCORES:
        column = f"auroc_{score}"
        runs[f"ood_auroc_{score}"] = _mean_by_run(ood, column).reindex(runs.index)
    runs["num_shift_rows"] = shift.groupby("run_id").size().reindex(runs.index).fillna(0)
    runs["num_ood_sets"] = ood.groupby("run_id").size().reindex(runs.index).fillna(0)
    runs[["num_shift_rows", "num_ood_sets"]] = runs[["num_shift_rows", "num_ood_sets"]].astype(int)
    runs["max_class_fraction"] = _column(clean, "max_class_fraction").reindex(runs.index)
    for column in ("train_accuracy", "best_step", "diverged_step"):
        runs[column] = first[column] if column in first else np.nan
    runs.loc[runs["status"] != "finished", list(RUN_METRICS)] = np.nan
    runs = runs.reset_index()
    runs["group_id"] = key_strings(runs, keys)
    return runs


def _column(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows:
        return pd.Series(np.nan, index=rows.index, dtype=np.float64)
    return pd.to_numeric(rows[column], errors="coerce").astype(np.float64)


def finished(runs: pd.DataFrame) -> pd.Series:
    """Which rows of ``runs`` (a frame with ``status`` or ``diverged``) count in means."""
    if "status" in runs:
        return runs["status"] == "finished"
    return ~runs["diverged"].astype(bool)


def aggregate(
    runs: pd.DataFrame, metrics: Sequence[str] = RUN_METRICS, *, by: Sequence[str] = ()
) -> pd.DataFrame:
    """Mean +/- SE over the finished runs of each group (and of each value of ``by``).

    ``runs`` holds one row per run (or per run and ``by`` value) with ``group_id``,
    ``status`` (or ``diverged``) and the config keys. Returns one row per group with the
    config keys, ``n_runs``, ``n_<status>`` for each of :data:`STATUSES`, ``n`` (runs in
    the means: finished) and for each metric ``<metric>_mean``, ``<metric>_se``,
    ``<metric>_n`` (finite values averaged). With ``id_accuracy`` and ``id_num_examples``
    in ``runs``, ``id_accuracy_binomial_se`` is the test set's binomial SE at the mean
    accuracy p, sqrt(p (1 - p) / n_test): the noise of one fixed test set, which the SE
    over seeds does not see.
    """
    keys = group_keys(runs)
    runs = runs.assign(_status=np.where(finished(runs), "finished", _statuses(runs)))
    out = []
    for _, rows in runs.groupby(["group_id", *by], sort=False, dropna=False):
        first = rows.iloc[0]
        record = {k: first[k] for k in (*keys, *by)}
        for label in LABELS:  # seeds labelled at different times may disagree: take the mode
            if label in rows:
                record[label] = Counter(rows[label].astype(str)).most_common(1)[0][0]
        record["group_id"] = first["group_id"]
        record["n_runs"] = int(rows["run_id"].nunique())
        for status in STATUSES:
            record[f"n_{status}"] = int(rows.loc[rows["_status"] == status, "run_id"].nunique())
        record["n"] = record["n_finished"]
        healthy = rows[rows["_status"] == "finished"]
        for metric in metrics:
            mean, se, n = mean_se(healthy[metric]) if metric in healthy else (np.nan, np.nan, 0)
            record |= {f"{metric}_mean": mean, f"{metric}_se": se, f"{metric}_n": n}
            if metric == "id_accuracy" and "id_num_examples" in healthy:
                size = healthy["id_num_examples"].median()
                record["id_accuracy_binomial_se"] = float(np.sqrt(mean * (1 - mean) / size))
        out.append(record)
    frame = pd.DataFrame(out)
    sort = [k for k in ("model", "loss_label", "label_noise", *by) if k in frame]
    return frame.sort_values(sort, kind="stable").reset_index(drop=True)


def _statuses(runs: pd.DataFrame) -> pd.Series:
    if "status" in runs:
        return runs["status"].astype(str)
    return pd.Series("diverged", index=runs.index)


def status_counts(row: pd.Series) -> str:
    """``k/n`` finished runs of an :func:`aggregate` row, with the others named:
    ``5/5``, ``4/5 (1 collapsed)``."""
    others = [f"{row[f'n_{s}']} {s}" for s in STATUSES[1:] if row.get(f"n_{s}", 0) > 0]
    text = f"{row['n']}/{row['n_runs']}"
    return f"{text} ({', '.join(others)})" if others else text


def varying_keys(groups: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Config keys (not ``model`` nor ``exclude``) that take > 1 value among the groups of
    one model.

    Per model, because a key that differs only between models (each model's own
    ``model_hparams``) says nothing the model name does not already say.
    """
    keys = [k for k in group_keys(groups) if k not in ("model", *exclude)]
    if "model" not in groups or groups.empty:
        return [k for k in keys if groups[k].astype(str).nunique() > 1]
    per_model = groups[keys].astype(str).groupby(groups["model"].astype(str))
    return [k for k in keys if (per_model[k].nunique() > 1).any()]


def _format_value(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def series_labels(groups: pd.DataFrame, exclude: Sequence[str] = ()) -> pd.Series:
    """A short label per group: the loss label (``loss(hparams)``) plus the other config
    keys that vary across ``groups``.

    The runner's ``variant`` is not used: it may carry a swept key (``noise=0.2``) that a
    view puts on an axis. ``loss`` and ``loss_hparams`` are left out unless two groups
    of one model would otherwise share a label; ``exclude`` keys (e.g. ``label_noise`` for
    a plot whose x axis it is) are never added.
    """
    extra = varying_keys(groups, exclude)

    def build(keys: Sequence[str]) -> pd.Series:
        def one(row: pd.Series) -> str:
            parts = [f"{k}={_format_value(row[k])}" for k in keys]
            return ", ".join([str(row["loss_label"]), *parts])

        return groups.apply(one, axis=1) if len(groups) else pd.Series(dtype=str)

    labels = build([k for k in extra if k not in _REDUNDANT])
    # Groups that differ only in an excluded key share a label by design.
    identity = [groups[k].astype(str) for k in ("model", *exclude) if k in groups]
    clash = pd.concat([*identity, labels.rename("label")], axis=1).duplicated().any()
    return build(extra) if clash else labels
