"""The report's uncertainty sections: OOD scorers, single model vs MC dropout vs ensemble,
conformal coverage under shift and selective classification.

Each section appears when the rows hold its columns (a config's ``ood`` entry with
``scorers`` beyond the four logit scores, ``mc_dropout``, ``ensemble``, ``conformal``,
``selective``;
:mod:`toolkit.sweep.eval_methods`). Values are means with standard errors over seeds (over
runs), per dataset and architecture; an ensemble row is one per configuration.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from toolkit.metrics import OOD_SCORES
from toolkit.report.tables import markdown_table

__all__ = ["sections"]

_CONFORMAL = re.compile(r"^coverage_(\w+)$")
_SELECTIVE = re.compile(r"^aurc_(\w+)$")
_SCORER = re.compile(r"^auroc_(\w+)$")
PREDICTOR_METRICS = ("accuracy", "nll", "ece", "ece_ts")


def _keys(df: pd.DataFrame) -> list[str]:
    return [c for c in ("dataset", "model") if c in df and df[c].nunique() > 0]


def _mean_se(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    se = values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.{digits}f} ± {se:.{digits}f}"


def _markdown(frame: pd.DataFrame) -> str:
    return markdown_table(frame)


def _scorers(df: pd.DataFrame) -> list[str]:
    ood = df[df["kind"] == "ood"]
    return [m.group(1) for c in ood if (m := _SCORER.match(c)) and ood[c].notna().any()]


def _ood_table(df: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    ood = df[(df["kind"] == "ood") & (df["predictor"] == "single")]
    scorers = _scorers(ood)
    # The four logit scores every sweep reports are in the summary tables already.
    if ood.empty or set(scorers) <= set(OOD_SCORES):
        return None
    keys, sets = _keys(ood), sorted(ood["eval_set"].unique())
    table = []
    for group, frame in ood.groupby(keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        for scorer in scorers:
            column = f"{metric}_{scorer}"
            if column not in frame or frame[column].isna().all():
                continue
            row = dict(zip(keys, group, strict=True)) | {"scorer": scorer}
            for name in sets:
                row[name] = _mean_se(frame.loc[frame["eval_set"] == name, column])
            table.append(row)
    return pd.DataFrame(table) if table else None


def _predictor_table(df: pd.DataFrame) -> pd.DataFrame | None:
    if df["predictor"].nunique() < 2:
        return None
    labelled = df[df["kind"].isin(("clean", "shift"))]
    keys, table = _keys(labelled), []
    for group, frame in labelled.groupby([*keys, "predictor"], sort=True):
        row = dict(zip([*keys, "predictor"], group, strict=True))
        size = frame.get("ensemble_size")
        if row["predictor"] == "ensemble" and size is not None and size.notna().any():
            row["predictor"] = f"ensemble of {int(size.max())}"
        for kind, label in (("clean", "clean"), ("shift", "shifted")):
            rows = frame[frame["kind"] == kind]
            # Per run (per ensemble): the mean over the shifted sets, then over runs.
            per_run = rows.groupby("run_id")[list(PREDICTOR_METRICS)].mean()
            for metric in PREDICTOR_METRICS:
                row[f"{label} {metric}"] = _mean_se(per_run[metric])
        table.append(row)
    return pd.DataFrame(table)


def _conformal_table(df: pd.DataFrame) -> pd.DataFrame | None:
    labelled = df[df["kind"].isin(("clean", "shift")) & (df["predictor"] == "single")]
    methods = [m.group(1) for c in labelled if (m := _CONFORMAL.match(c))]
    methods = [m for m in methods if labelled[f"coverage_{m}"].notna().any()]
    if not methods:
        return None
    keys, table = _keys(labelled), []
    for group, frame in labelled.groupby(keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        for method in methods:
            row = dict(zip(keys, group, strict=True)) | {"method": method}
            for severity in sorted(frame["severity"].unique()):
                rows = frame[frame["severity"] == severity]
                per_run = rows.groupby("run_id")[[f"coverage_{method}", f"set_size_{method}"]]
                per_run = per_run.mean()
                label = "clean" if severity == 0 else f"severity {severity}"
                row[label] = (
                    f"{_mean_se(per_run[f'coverage_{method}'])} "
                    f"({per_run[f'set_size_{method}'].mean():.2f})"
                )
            table.append(row)
    return pd.DataFrame(table)


def _selective_table(df: pd.DataFrame) -> pd.DataFrame | None:
    labelled = df[df["kind"].isin(("clean", "shift")) & (df["predictor"] == "single")]
    scores = [m.group(1) for c in labelled if (m := _SELECTIVE.match(c))]
    scores = [s for s in scores if labelled[f"aurc_{s}"].notna().any()]
    if not scores:
        return None
    keys, table = _keys(labelled), []
    for group, frame in labelled.groupby(keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        for kind, label in (("clean", "clean"), ("shift", "shifted")):
            rows = frame[frame["kind"] == kind]
            per_run = rows.groupby("run_id")[[f"aurc_{s}" for s in scores]].mean()
            row = dict(zip(keys, group, strict=True)) | {"set": label}
            row |= {s: _mean_se(per_run[f"aurc_{s}"], 4) for s in scores}
            table.append(row)
    return pd.DataFrame(table)


def sections(report, md: list[str], df: pd.DataFrame) -> None:
    """Adds the uncertainty sections that ``df`` (test rows of one checkpoint, every
    predictor) has data for: tables, their CSVs and README blocks."""
    if "predictor" not in df:
        df = df.assign(predictor="single")
    for metric, title, note in (
        ("auroc", "AUROC", "higher is better"),
        (
            "fpr_at_95_tpr",
            "FPR@95 (ID positive)",
            "the fraction of OOD inputs accepted at 95 % ID recall, Liang et al. 2018; "
            "lower is better. The OpenOOD convention (OOD positive: the fraction of ID "
            "inputs rejected at 95 % OOD recall) is in the CSV as fpr_at_95_tpr_ood",
        ),
    ):
        table = _ood_table(df, metric)
        if table is not None:
            name = f"ood_scorers_{metric}"
            report.add(f"{name}.csv", table, f"OOD detection {title} per scorer and set")
            report.blocks[name] = _markdown(table)
            md.append(
                f"## OOD scorers: {title}\n\nMean ± SE over seeds; {note}. Scorer "
                "hyperparameters were chosen on validation OOD sets disjoint from these.\n\n"
                + report.blocks[name]
            )
    for name, builder, title, description in (
        (
            "predictors",
            _predictor_table,
            "Single model, MC dropout and deep ensemble",
            "Mean ± SE over runs (one ensemble per configuration); shifted: the mean over "
            "every shift and severity; ece_ts after temperature scaling on validation.",
        ),
        (
            "conformal",
            _conformal_table,
            "Conformal coverage under shift",
            "Empirical coverage of the prediction sets calibrated on the ID validation split "
            "(mean ± SE over seeds, mean set size in brackets), per severity averaged over "
            "shifts. The target is 1 - alpha in distribution; shift breaks exchangeability.",
        ),
        (
            "selective",
            _selective_table,
            "Selective classification (AURC)",
            "Area under the risk-coverage curve per confidence score (Geifman et al. 2019); "
            "lower is better. Mean ± SE over seeds.",
        ),
    ):
        table = builder(df)
        if table is not None:
            report.add(f"{name}.csv", table, title)
            report.blocks[name] = _markdown(table)
            md.append(f"## {title}\n\n{description}\n\n{report.blocks[name]}")
