"""Views for the notebooks: any metric vs severity, effective robustness and OOD-detection
AUROC per loss, and figures of a single run's ``tk.evaluate`` table.

Built on the report's definitions (``stats.per_run``/``aggregate``: mean +/- SE over the
seeds of a group, diverged runs left out) and drawn like ``report.plots`` (matplotlib's
object API, no pyplot state)::

    df = report.load_results(path); runs = report.per_run(df)
    analysis.metric_vs_severity(df, runs, "ece")     # ECE under shift, per group
    analysis.ood_auroc(df, runs)                     # AUROC per OOD score, per group
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from toolkit.metrics import OOD_SCORES
from toolkit.report.curves import LineFit, pooled_reliability, severity_curves, with_run_config
from toolkit.report.palette import palette
from toolkit.report.plots import (
    CI,
    _panels,
    dot_panels,
    draw_reliability,
    figure_legend,
    severity_panels,
)
from toolkit.report.stats import aggregate, series_labels

__all__ = [
    "effective_robustness",
    "effective_robustness_figure",
    "examples_figure",
    "metric_vs_severity",
    "ood_auroc",
    "ood_auroc_figure",
    "reliability_figure",
    "severity_figure",
    "shift_table_figure",
]

_PERCENT = {"accuracy": "accuracy (%)", "ece": "ECE (%)"}


def _labels_per_model(groups: pd.DataFrame) -> dict[str, str]:
    """``group_id -> label`` with the config keys that vary within each model's groups:
    across models the model hyperparameters always differ, which says nothing per panel."""
    label_of = {}
    for _, mine in groups.groupby(groups["model"].astype(str), sort=False):
        label_of |= dict(zip(mine["group_id"], series_labels(mine), strict=True))
    return label_of


def metric_vs_severity(df: pd.DataFrame, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` vs shift severity per group: mean +/- SE over seeds
    (:func:`toolkit.report.curves.severity_curves` for any metric in the rows)."""
    if metric not in df:
        raise ValueError(f"no metric {metric!r} in the rows; columns: {', '.join(df.columns)}")
    return severity_curves(df, runs, metric)


def severity_figure(curves: pd.DataFrame, metric: str, *, title: str = "") -> Figure:
    """``metric`` (a fraction, shown in percent) vs severity from :func:`metric_vs_severity`:
    one panel per model, a line per loss, band = +/- 1 SE over seeds."""
    return severity_panels(
        curves,
        metric,
        _labels_per_model(curves.drop_duplicates("group_id")),
        ylabel=_PERCENT.get(metric, metric),
        title=title or f"{metric} vs shift severity (mean over shifts; +/- 1 SE over seeds)",
        xlabel="severity (0 = clean)",
    )


def effective_robustness(fit: LineFit, runs: pd.DataFrame) -> pd.DataFrame:
    """Each group's effective robustness against ``fit`` (Miller et al. 2021): per run the
    corrupted accuracy minus the line's prediction at its clean accuracy (accuracy units),
    then mean +/- SE over seeds (``effective_robustness_mean``/``_se``/``_n``)."""
    scored = runs.merge(fit.runs[["run_id", "effective_robustness"]], on="run_id", how="left")
    return aggregate(scored, ["effective_robustness"])


def effective_robustness_figure(table: pd.DataFrame) -> Figure:
    """Effective robustness per loss in percentage points, from :func:`effective_robustness`:
    a row per loss, a dot per architecture with its 95 % t interval over seeds, and the
    line (0) for reference."""
    fig = dot_panels(table, ["effective_robustness"], titles=["effective robustness"],
                     xlabel="points above the probit line", reference=0.0)  # fmt: skip
    fig.suptitle(f"Effective robustness ({CI})", fontsize=10)
    return fig


def ood_auroc(
    df: pd.DataFrame, runs: pd.DataFrame, scores: Sequence[str] = OOD_SCORES
) -> pd.DataFrame:
    """Far-OOD detection AUROC per group and score: per run the mean over its OOD sets,
    then mean +/- SE over seeds. Columns ``auroc_<score>_mean``/``_se``/``_n``; empty
    without OOD rows."""
    ood = df[df["kind"] == "ood"]
    if ood.empty:
        return pd.DataFrame()
    columns = [f"auroc_{s}" for s in scores]
    missing = [c for c in columns if c not in ood]
    if missing:
        raise ValueError(f"no OOD score column {missing[0]!r}; valid scores: {OOD_SCORES}")
    per_run = ood.groupby("run_id", as_index=False)[columns].mean()
    return aggregate(with_run_config(per_run, runs), columns)


def ood_auroc_figure(table: pd.DataFrame, scores: Sequence[str] = OOD_SCORES) -> Figure:
    """Heat map of OOD AUROC (%) from :func:`ood_auroc`: one panel per model, loss (rows)
    x score (columns), each cell annotated. The colour scale is diverging around chance
    (50 %) and spans the data, so AUROCs below chance (the score ranks OOD inputs as more
    in-distribution) stand out instead of clipping to chance."""
    from matplotlib.colors import TwoSlopeNorm

    labels = table["group_id"].map(_labels_per_model(table))
    models = sorted(table["model"].astype(str).unique())
    columns = [f"auroc_{s}_mean" for s in scores]
    data = 100 * table[columns].to_numpy(np.float64)
    finite = data[np.isfinite(data)]
    lo = min(float(finite.min()) if finite.size else 50.0, 49.5)
    hi = max(float(finite.max()) if finite.size else 50.0, 50.5)
    norm = TwoSlopeNorm(vcenter=50.0, vmin=lo, vmax=hi)
    height = 0.3 * table["model"].value_counts().max() + 1.6
    fig, axes = _panels(len(models), width=0.6 * len(scores) + 3.4, height=height, cols=3)
    for ax, model in zip(axes, models, strict=True):
        mine = (table["model"].astype(str) == model).to_numpy()
        values = data[mine]
        image = ax.imshow(values, norm=norm, cmap="RdBu_r", aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                strong = abs(norm(value) - 0.5) > 0.3  # dark cell: white text
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="w" if strong else "k")  # fmt: skip
        ax.set_xticks(range(len(scores)), scores, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(int(mine.sum())), labels[mine].tolist(), fontsize=8)
        ax.set_title(model)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="AUROC (%); 50 = chance")
    fig.suptitle("Far-OOD detection AUROC per score (mean over OOD sets and seeds)")
    return fig


def shift_table_figure(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Accuracy and ECE vs severity, a line per shift, from one run's ``tk.evaluate`` table
    (rows of kind ``clean`` and ``shift``); the clean value is the dashed line."""
    clean = table[table["kind"] == "clean"].iloc[0]
    shifts = table[table["kind"] == "shift"]
    colors = palette(shifts["eval_set"].unique(), ())
    fig, axes = _panels(2, width=4.8, height=3.6, cols=2)
    for ax, metric in zip(axes, ("accuracy", "ece"), strict=True):
        for name, rows in shifts.groupby("eval_set"):
            rows = rows.sort_values("severity")
            ax.plot(
                rows["severity"],
                100 * rows[metric],
                marker="o",
                ms=3.5,
                color=colors[name],
                label=name,
            )
        ax.axhline(100 * clean[metric], color="k", linestyle="--", linewidth=1, label="clean")
        ax.set(xlabel="severity", ylabel=_PERCENT[metric])
        ax.set_xticks(sorted(shifts["severity"].unique()))
        ax.grid(alpha=0.3)
    figure_legend(fig, axes)
    fig.suptitle(title or "Accuracy and calibration error under each shift")
    return fig


def reliability_figure(diagrams: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """Reliability diagrams side by side, one per named ``tk.metrics.reliability_diagram``
    output: bars = accuracy per confidence bin, hatched = gap to the bin's confidence."""
    fig, axes = _panels(len(diagrams), width=3.4, height=3.4, cols=4)
    for ax, (name, diagram) in zip(axes, diagrams.items(), strict=True):
        # JSON-like lists, as the sweep stores them, so the pooling rule is the report's own.
        pooled = pooled_reliability([{k: np.asarray(v).tolist() for k, v in diagram.items()}])
        draw_reliability(ax, pooled)
        ax.set_title(f"{name}\nECE {100 * pooled['ece']:.1f}%", fontsize=9)
    figure_legend(fig, axes[:1])
    fig.suptitle("Reliability diagrams (15 equal-width confidence bins)")
    return fig


def examples_figure(split, *, per_class: int = 1, title: str = "") -> Figure:
    """The first ``per_class`` sequences (N, L) of each class of ``split``, a panel per class."""
    classes = np.unique(split.y)
    fig, axes = _panels(len(classes), width=2.2, height=1.6, cols=5)
    for ax, label in zip(axes, classes, strict=True):
        for x in split.x[split.y == label][:per_class]:
            ax.plot(np.asarray(x).reshape(len(x), -1), color="k", linewidth=1)
        ax.set_title(f"class {label}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "Examples per class")
    return fig
