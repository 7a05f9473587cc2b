"""Markdown and CSV tables of mean +/- standard error over seeds.

Cells read ``mean +/- SE`` (SE = sample std / sqrt(n)); the SE is left out when one seed
is in the mean. Only finished runs are averaged: a group whose runs all diverged reads
``diverged (k/n)``, one with some unfinished runs gets `` [k/n diverged]`` (or collapsed)
in pivot cells and the summary's ``finished`` column reads ``k/n`` with the others named.
CSVs hold the raw numbers (accuracies, ECE and AUROC as fractions, not percent) with
``_mean``, ``_se`` and ``_n`` columns.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pandas as pd

from toolkit.report.curves import LineFit
from toolkit.report.stats import (
    STATUSES,
    aggregate,
    group_keys,
    series_labels,
    status_counts,
    varying_keys,
)

__all__ = [
    "METRIC_SPECS",
    "MetricSpec",
    "cell",
    "effective_robustness_table",
    "label_noise_table",
    "markdown_table",
    "pivot_table",
    "set_tables",
    "status_table",
    "summary_table",
]


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """How a metric is shown: header, multiplier for display (100 = percent), decimals."""

    header: str
    scale: float = 100.0
    digits: int = 2


METRIC_SPECS = {
    "id_accuracy": MetricSpec("ID acc (%)"),
    "id_nll": MetricSpec("ID NLL", 1.0, 3),
    "id_nll_ts": MetricSpec("ID NLL TS", 1.0, 3),
    "id_ece": MetricSpec("ID ECE (%)"),
    "id_ece_ts": MetricSpec("ID ECE TS (%)"),
    "id_brier": MetricSpec("ID Brier", 1.0, 4),
    "id_brier_ts": MetricSpec("ID Brier TS", 1.0, 4),
    "corrupted_accuracy": MetricSpec("mean corrupted acc (%)"),
    "corrupted_nll": MetricSpec("mean corrupted NLL", 1.0, 3),
    "corrupted_nll_ts": MetricSpec("mean corrupted NLL TS", 1.0, 3),
    "corrupted_ece": MetricSpec("mean corrupted ECE (%)"),
    "corrupted_ece_ts": MetricSpec("mean corrupted ECE TS (%)"),
    "corrupted_brier": MetricSpec("mean corrupted Brier", 1.0, 4),
    "corrupted_brier_ts": MetricSpec("mean corrupted Brier TS", 1.0, 4),
    "ood_auroc_msp": MetricSpec("OOD AUROC msp (%)"),
    "ood_auroc_energy": MetricSpec("OOD AUROC energy (%)"),
    "temperature": MetricSpec("temperature", 1.0, 3),
    "accuracy": MetricSpec("accuracy (%)"),
    "effective_robustness": MetricSpec("effective robustness (points)"),
}

PIVOT_METRICS = (
    "id_accuracy",
    "corrupted_accuracy",
    "id_ece",
    "ood_auroc_msp",
    "id_ece_ts",
    "corrupted_ece",
    "corrupted_ece_ts",
)


def cell(mean: float, se: float, n: int, spec: MetricSpec) -> str:
    """``mean +/- se`` scaled and rounded per ``spec``; SE blank for n = 1, empty for n = 0."""
    if n == 0 or not math.isfinite(mean):
        return ""
    text = f"{mean * spec.scale:.{spec.digits}f}"
    if n > 1 and math.isfinite(se):
        text += f" +/- {se * spec.scale:.{spec.digits}f}"
    return text


def _unfinished(row: pd.Series) -> list[str]:
    """``k/n status`` for each status but finished that some of the group's runs have."""
    counts = [(s, int(row.get(f"n_{s}", 0))) for s in STATUSES[1:]]
    return [f"{k}/{row['n_runs']} {s}" for s, k in counts if k > 0]


def _group_cell(row: pd.Series, metric: str, spec: MetricSpec, *, note_diverged: bool) -> str:
    unfinished = _unfinished(row)
    if row["n"] == 0 and unfinished:
        if len(unfinished) == 1:  # e.g. "diverged (2/2)"
            fraction, status = unfinished[0].split(" ")
            return f"{status} ({fraction})"
        return f"no finished run ({', '.join(unfinished)})"
    n = int(row[f"{metric}_n"])
    text = cell(row[f"{metric}_mean"], row[f"{metric}_se"], n, spec)
    if text and n < row["n"]:
        text += f" (n={n})"  # some healthy runs lack this metric (e.g. no OOD rows)
    if text and note_diverged and unfinished:
        text += f" [{', '.join(unfinished)}]"
    return text


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of ``frame`` (cells as given; ``|`` escaped)."""

    def esc(value) -> str:
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        return str(text).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(esc(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(esc(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _labels(groups: pd.DataFrame, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """``model``, ``loss`` (loss label), the runner's ``variant`` where it says more than
    the loss label, and the config keys that vary across groups, as strings."""
    shown = groups[["model", "loss_label"]].astype(str).rename(columns={"loss_label": "loss"})
    if (groups["variant"].astype(str) != shown["loss"]).any():
        shown["variant"] = groups["variant"].astype(str)
    for key in varying_keys(groups, ("loss", "loss_hparams", *exclude)):
        shown[key] = groups[key].astype(str)
    return shown


def _present(groups: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if f"{m}_n" in groups and groups[f"{m}_n"].sum() > 0]


def _csv_columns(groups: pd.DataFrame) -> pd.DataFrame:
    return groups.drop(columns=["group_id"], errors="ignore")


def summary_table(groups: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Per-group headline metrics: Markdown (display units) and the CSV frame (raw).

    ``finished`` reads ``k/n`` runs finished, the others named by status; beside the ID
    accuracy stands the test set's binomial SE (``id_accuracy_binomial_se``)."""
    shown = _labels(groups)
    shown["finished"] = [status_counts(row) for _, row in groups.iterrows()]
    for metric in _present(groups, METRIC_SPECS):
        spec = METRIC_SPECS[metric]
        shown[spec.header] = [
            _group_cell(row, metric, spec, note_diverged=False) for _, row in groups.iterrows()
        ]
        if metric == "id_accuracy" and "id_accuracy_binomial_se" in groups:
            shown["ID acc binomial SE (%)"] = [
                cell(se, float("nan"), int(n), spec)
                for se, n in zip(groups["id_accuracy_binomial_se"], groups["n"], strict=True)
            ]
    return markdown_table(shown), _csv_columns(groups)


def status_table(runs: pd.DataFrame, failed: pd.DataFrame) -> str | None:
    """The runs that are not averaged: unfinished runs (from ``runs``, :func:`per_run`;
    config = the loss and the config keys that vary between runs) with why (final train
    accuracy, the clean test set's largest predicted-class fraction, the divergence step),
    and failed runs (``failed``, from their ``error.json``); None when every run finished."""
    bad = runs[runs["status"] != "finished"]
    parts = []
    if not bad.empty:
        groups = runs.drop_duplicates("group_id")
        label_of = dict(zip(groups["group_id"], series_labels(groups), strict=True))
        shown = bad[["run_id", "model"]].assign(
            config=bad["group_id"].map(label_of), seed=bad["seed"]
        )
        if "role" in bad and bad["role"].notna().any():
            shown = shown.assign(role=bad["role"], trial=bad["trial"])
        shown = shown.assign(
            status=bad["status"],
            **{
                "train acc (%)": [
                    cell(v, float("nan"), 1, METRIC_SPECS["accuracy"])
                    for v in bad["train_accuracy"]
                ],
                "max class fraction (%)": [
                    cell(v, float("nan"), 1, METRIC_SPECS["accuracy"])
                    for v in bad["max_class_fraction"]
                ],
                "diverged at step": [_step(v) for v in bad["diverged_step"]],
            },
        )
        parts.append(markdown_table(shown.astype(str).replace({"<NA>": "", "nan": ""})))
    if not failed.empty:
        shown = failed[["run_id", "model", "loss", "seed", "type", "message"]]
        parts.append(
            f"Failed runs (no rows; from `runs/<run_id>/error.json`):\n\n{markdown_table(shown)}"
        )
    return "\n".join(parts) or None


def _step(value) -> str:
    return "" if pd.isna(value) else str(int(value))


def pivot_table(groups: pd.DataFrame, metric: str) -> tuple[str, pd.DataFrame] | None:
    """``metric`` as loss (rows) x architecture (columns); None when no group has it.

    Rows are the series labels (``loss(hparams)`` plus the varying config keys but the
    model).
    """
    if metric not in _present(groups, [metric]):
        return None
    spec = METRIC_SPECS[metric]
    frame = groups.assign(
        row_label=series_labels(groups).to_numpy(),
        text=[_group_cell(row, metric, spec, note_diverged=True) for _, row in groups.iterrows()],
    )
    shown = frame.pivot(index="row_label", columns="model", values="text").fillna("")
    shown = shown.reset_index().rename(columns={"row_label": "loss"})
    shown.columns.name = None
    values = [f"{metric}_mean", f"{metric}_se", f"{metric}_n", "n_diverged", "n_runs"]
    raw = frame.pivot(index="row_label", columns="model", values=values)
    raw.columns = [f"{model}_{value}" for value, model in raw.columns]
    raw = raw[sorted(raw.columns)].reset_index().rename(columns={"row_label": "loss"})
    return markdown_table(shown), raw


def set_tables(sets: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Accuracy per eval set and severity (from ``curves.set_accuracy``): one Markdown
    table per eval set (groups x severities) and one long CSV frame."""
    spec = METRIC_SPECS["accuracy"]
    parts = []
    groups = sets.drop_duplicates("group_id")
    label_of = dict(zip(groups["group_id"], series_labels(groups), strict=True))
    for name, rows in sets.groupby("eval_set", sort=True):
        rows = rows.assign(row_label=rows["group_id"].map(label_of))
        rows = rows.assign(
            text=[
                _group_cell(row, "accuracy", spec, note_diverged=True) for _, row in rows.iterrows()
            ]
        )
        shown = rows.pivot(index=["model", "row_label"], columns="severity", values="text")
        shown.columns = [f"severity {s}" if s else "accuracy (%)" for s in shown.columns]
        shown = shown.reset_index().rename(columns={"row_label": "loss"})
        parts.append(f"### {name}\n\n{markdown_table(shown.fillna(''))}")
    return "\n".join(parts), _csv_columns(sets)


def effective_robustness_table(fit: LineFit, runs: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Mean +/- SE over seeds of each group's effective robustness against ``fit``."""
    scored = runs.merge(fit.runs[["run_id", "effective_robustness"]], on="run_id", how="left")
    groups = aggregate(scored, ["effective_robustness"])
    spec = METRIC_SPECS["effective_robustness"]
    shown = _labels(groups)
    shown["n"] = groups["n"].astype(str)
    shown[spec.header] = [
        _group_cell(row, "effective_robustness", spec, note_diverged=True)
        for _, row in groups.iterrows()
    ]
    raw = _csv_columns(groups).assign(
        line_slope=fit.slope, line_intercept=fit.intercept, line_r2=fit.r2
    )
    return markdown_table(shown), raw


def label_noise_table(
    groups: pd.DataFrame, metric: str = "id_accuracy"
) -> tuple[str, pd.DataFrame] | None:
    """``metric`` (default clean test accuracy) vs label-noise rate per loss; None with a
    single noise rate or without the metric."""
    if groups["label_noise"].nunique() < 2 or metric not in _present(groups, [metric]):
        return None
    spec = METRIC_SPECS[metric]
    frame = groups.assign(
        row_label=series_labels(groups, exclude=("label_noise",)).to_numpy(),
        text=[_group_cell(row, metric, spec, note_diverged=True) for _, row in groups.iterrows()],
    )
    shown = frame.pivot(index=["model", "row_label"], columns="label_noise", values="text")
    shown.columns = [f"noise {rate:g}" for rate in shown.columns]
    shown = shown.reset_index().rename(columns={"row_label": "loss"}).fillna("")
    keep = [*group_keys(groups), "n_runs", "n_diverged", "n"]
    raw = frame[[*keep, f"{metric}_mean", f"{metric}_se", f"{metric}_n"]]
    return markdown_table(shown), raw.assign(series=frame["row_label"])
