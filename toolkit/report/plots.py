"""Figures of a report, drawn with matplotlib's object API on the Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot``, so no global
backend or figure state is touched and nothing needs a display. Every function returns a
Figure; :func:`save` writes it as PNG. A loss (an architecture) has one colour in every
figure (:mod:`toolkit.report.palette`), legends stand outside the data axes, a figure has
no empty panel, and estimates are dots with 95 % confidence intervals (Student t over
seeds), not bars from zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats as scipy_stats
from scipy.special import ndtri

from toolkit.report.curves import LineFit, pooled_reliability
from toolkit.report.palette import loss_colors, model_colors
from toolkit.report.stats import series_labels

__all__ = [
    "accuracy_on_the_line",
    "accuracy_vs_severity",
    "ci95",
    "dot_panels",
    "label_noise_curves",
    "loss_comparison",
    "reliability_diagrams",
    "save",
]

CI = "95 % CI = mean +/- t(0.975, n-1) x SE over seeds"


def save(fig: Figure, target: str | Path | BinaryIO) -> None:
    """Writes ``fig`` as a PNG at 120 dpi to a path or binary file."""
    fig.savefig(target, format="png", dpi=120, bbox_inches="tight")


def ci95(se, n) -> np.ndarray:
    """Half-width of the 95 % Student-t interval of a mean: ``t(0.975, n-1) * se``; NaN
    where ``n < 2`` (no spread to estimate)."""
    se, n = np.asarray(se, np.float64), np.asarray(n, np.float64)
    t = scipy_stats.t.ppf(0.975, np.where(n >= 2, n - 1, np.nan))
    return t * se


def _panels(count: int, *, width: float = 4.6, height: float = 3.6, cols: int = 3, **kwargs):
    """``count`` panels in rows of ``cols``; the unused cells of the last row are removed
    (an empty panel reads as missing data)."""
    cols = max(1, min(cols, count))
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs).ravel()
    for ax in axes[count:]:
        fig.delaxes(ax)
    return fig, axes[:count]


def figure_legend(fig: Figure, axes, *, title: str | None = None, handles=None) -> None:
    """One legend for the whole figure, beside the panels (never over data), the figure
    widened (heightened) by the legend's measured size so the panels keep theirs. Entries:
    ``handles`` in their order, or those of every panel, each label once, sorted (colours
    are fixed per label, so one legend serves all panels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if handles is None:
        found = [h for ax in axes for h in ax.get_legend_handles_labels()[0]]
        handles = sorted(found, key=lambda h: h.get_label())
    unique = {}
    for handle in handles:
        unique.setdefault(handle.get_label(), handle)
    if not unique:  # e.g. every group of every panel diverged
        return
    columns = 1 if len(unique) <= 30 else 2
    legend = fig.legend(list(unique.values()), list(unique), loc="outside right center",
                        fontsize=7, title=title, title_fontsize=7, ncols=columns)  # fmt: skip
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)  # a renderer to measure text with; savefig draws with Agg anyway
    size = legend.get_window_extent(fig.canvas.get_renderer())
    fig.set_figwidth(fig.get_figwidth() + size.width / fig.dpi + 0.2)
    # Taller than the legend by the title and axis-label margins, so it stays below the title.
    fig.set_figheight(max(fig.get_figheight(), size.height / fig.dpi + 1.2))


def _band(ax, x, mean, se, color, label) -> None:
    x, mean, se = (np.asarray(v, np.float64) for v in (x, mean, se))
    ax.plot(x, 100 * mean, marker="o", ms=4, color=color, label=label)
    ok = np.isfinite(se)
    if ok.any():
        lo, hi = 100 * (mean - se), 100 * (mean + se)
        ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=0.2, linewidth=0)


def _note_diverged(ax, groups: pd.DataFrame, labels: pd.Series) -> None:
    dead = groups["n"] == 0
    if dead.any():
        text = "all seeds diverged:\n" + "\n".join(labels[dead])
        ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=7, va="bottom", color="0.3")


def severity_panels(
    curves: pd.DataFrame,
    metric: str,
    label_of: Mapping[str, str],
    *,
    ylabel: str,
    title: str,
    xlabel: str = "severity (0 = clean test set)",
    colors: Mapping[str, tuple] | None = None,
) -> Figure:
    """``metric`` (a fraction, drawn in percent) vs severity: one panel per model, a line
    per group labelled by ``label_of[group_id]``, mean +/- SE band over seeds; groups whose
    seeds all diverged are named in their panel. ``curves`` has one row per (group,
    severity) with ``<metric>_mean``, ``_se``, ``_n`` and the group's ``n``. ``colors``
    maps labels to colours (default :func:`~toolkit.report.palette.loss_colors`)."""
    groups = curves.drop_duplicates("group_id")
    colors = colors or loss_colors(label_of.values())
    models = sorted(curves["model"].astype(str).unique())
    fig, axes = _panels(len(models))
    for ax, model in zip(axes, models, strict=True):
        rows = curves[curves["model"].astype(str) == model]
        for group_id, line in rows.groupby("group_id", sort=False):
            line = line[line[f"{metric}_n"] > 0].sort_values("severity")
            if len(line):
                label = label_of[group_id]
                mean, se = line[f"{metric}_mean"], line[f"{metric}_se"]
                _band(ax, line["severity"], mean, se, colors[label], label)
        model_groups = groups[groups["model"].astype(str) == model]
        _note_diverged(ax, model_groups, model_groups["group_id"].map(label_of))
        ax.set(title=model, xlabel=xlabel, ylabel=ylabel)
        ax.set_xticks(sorted(rows["severity"].unique()))
        ax.grid(alpha=0.3)
    figure_legend(fig, axes, title="loss")
    fig.suptitle(title)
    return fig


def accuracy_vs_severity(curves: pd.DataFrame, colors: Mapping[str, tuple] | None = None) -> Figure:
    """Accuracy vs severity, averaged over shifts: one panel per model, a line per loss
    (variant), mean +/- SE band over seeds; severity 0 is the clean test set."""
    groups = curves.drop_duplicates("group_id")
    label_of = dict(zip(groups["group_id"], series_labels(groups), strict=True))
    return severity_panels(
        curves,
        "accuracy",
        label_of,
        ylabel="accuracy (%)",
        title="Accuracy vs shift severity (mean over shifts; band = +/- 1 SE over seeds)",
        colors=colors,
    )


def _probit_ticks(ax, lo: float, hi: float) -> None:
    ticks = np.array([0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99])
    ticks = ticks[(ndtri(ticks) >= lo) & (ndtri(ticks) <= hi)]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ndtri(ticks), [f"{100 * t:g}" for t in ticks])


def draw_reliability(ax, pooled: Mapping[str, np.ndarray]) -> None:
    """One reliability diagram from :func:`pooled_reliability`'s output: bars = accuracy
    per confidence bin, hatched = the gap to the bin's mean confidence, dashed = perfect
    calibration."""
    bins = len(pooled["count"])
    centers = (np.arange(bins) + 0.5) / bins
    used = pooled["count"] > 0
    acc, conf = pooled["accuracy"][used], pooled["confidence"][used]
    ax.bar(centers[used], acc, width=1 / bins, color="tab:blue", edgecolor="k",
           linewidth=0.4, label="accuracy")  # fmt: skip
    ax.bar(centers[used], conf - acc, bottom=acc, width=1 / bins, fill=False, hatch="///",
           edgecolor="tab:red", linewidth=0.6, label="gap to confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], color="0.4", linestyle="--", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")


def _dot(color, marker, label):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, marker=marker, linestyle="", markeredgecolor="k",
                  markeredgewidth=0.4, label=label)  # fmt: skip


def accuracy_on_the_line(
    fit: LineFit, runs: pd.DataFrame, colors: Mapping[str, tuple] | None = None
) -> Figure:
    """Clean vs mean corrupted accuracy per run on probit axes with the fitted line.

    Each point is one non-diverged run (colour = loss, marker = model); the line is the
    probit least-squares fit of Miller et al. (2021); the dotted line is y = x.
    """
    points = fit.runs.merge(runs[["run_id", "model"]], on="run_id")
    groups = runs.drop_duplicates("group_id")
    label_of = dict(zip(groups["group_id"], series_labels(groups, exclude=("model",)), strict=True))
    points["label"] = points["group_id"].map(label_of)
    colors = colors or loss_colors(points["label"])
    markers = dict(zip(sorted(points["model"].unique()), "osD^v<>ph*", strict=False))
    from toolkit.metrics.robustness import PROBIT_EPS as eps

    x = ndtri(np.clip(points["id_accuracy"].to_numpy(), eps, 1 - eps))
    y = ndtri(np.clip(points["corrupted_accuracy"].to_numpy(), eps, 1 - eps))
    fig = Figure(figsize=(7.5, 6), layout="constrained")
    ax = fig.subplots()
    for (label, model), idx in points.groupby(["label", "model"]).groups.items():
        where = points.index.get_indexer(idx)
        ax.scatter(x[where], y[where], color=colors[label], marker=markers[model], s=30,
                   edgecolor="k", linewidth=0.4)  # fmt: skip
    lo = min(x.min(), y.min()) - 0.25
    hi = max(x.max(), y.max()) + 0.25
    grid = np.linspace(lo, hi, 50)
    fit_label = (
        f"probit fit: slope {fit.slope:.2f}, intercept {fit.intercept:.2f}, "
        f"R$^2$ {fit.r2:.2f} ({fit.num_points} runs)"
    )
    (line,) = ax.plot(grid, fit.slope * grid + fit.intercept, color="k", label=fit_label)
    (diagonal,) = ax.plot(grid, grid, color="0.5", linestyle=":", label="y = x")
    ax.set(xlim=(lo, hi), ylim=(lo, hi))
    _probit_ticks(ax, lo, hi)
    ax.set_xlabel("clean (ID) test accuracy (%, probit scale)")
    ax.set_ylabel("mean corrupted accuracy (%, probit scale)")
    ax.set_title(f"Accuracy on the line: one point per run\n{fit_label}", fontsize=10)
    ax.grid(alpha=0.3)
    # One entry per loss (colour) and one per model (marker), not one per pair: 17 losses
    # x 3 models would bury the plot under 51 entries.
    used = sorted(set(points["label"]))
    handles = [line, diagonal, *(_dot(colors[label], "o", label) for label in used)]
    if len(markers) > 1:
        handles += [_dot("0.8", marker, model) for model, marker in markers.items()]
    figure_legend(fig, [ax], handles=handles)
    return fig


def reliability_diagrams(df: pd.DataFrame, runs: pd.DataFrame, model: str) -> Figure | None:
    """Reliability diagrams of ``model`` on the clean test set: one panel per loss, bins
    pooled over the non-diverged seeds (``curves.pooled_reliability``); None without bins.

    The ECE in each title is the tables' definition: each run's own ECE on the clean test
    set (``id_ece``), mean over the seeds, not the ECE of the pooled bins.
    """
    if "reliability" not in df:
        return None
    mine = runs[(runs["model"].astype(str) == model)]
    labels = series_labels(runs.drop_duplicates("group_id"))
    label_of = dict(zip(runs.drop_duplicates("group_id")["group_id"], labels, strict=True))
    clean = df[(df["kind"] == "clean") & ~df["diverged"]].set_index("run_id")["reliability"]
    panels = []
    for group_id, rows in mine.groupby("group_id", sort=False):
        healthy = rows[~rows["diverged"]]
        pooled = pooled_reliability(clean.reindex(healthy["run_id"]).tolist())
        if pooled is not None:
            ece = healthy["id_ece"].mean()
            panels.append((label_of[group_id], pooled, len(healthy), ece))
    if not panels:
        return None
    fig, axes = _panels(len(panels), width=3.4, height=3.4, cols=4)
    for ax, (label, pooled, n, ece) in zip(axes, sorted(panels, key=lambda p: p[0]), strict=True):
        draw_reliability(ax, pooled)
        seeds = f"{n} seed{'s' if n != 1 else ''}"
        ax.set_title(f"{label}\nECE {100 * ece:.2f}% (mean of {seeds})", fontsize=9)
    figure_legend(fig, axes[:1])
    fig.suptitle(
        f"Reliability on the clean test set: {model} (bars: bins pooled over seeds; "
        "ECE: per-run ECE, mean over seeds, as in the tables)"
    )
    return fig


def dot_panels(
    groups: pd.DataFrame,
    metrics: Sequence[str],
    *,
    titles: Sequence[str],
    xlabel: str,
    colors: Mapping[str, tuple] | None = None,
    reference: float | None = None,
) -> Figure:
    """One panel per metric: a row per loss (series label), a dot per model (colour =
    architecture) at the mean over seeds with its 95 % t interval; the axis spans the data,
    not zero. ``groups`` is :func:`~toolkit.report.stats.aggregate` output with
    ``<metric>_mean``/``_se``/``_n``; metrics are fractions, drawn x100. ``reference``
    draws a vertical line (e.g. 0 for effective robustness)."""
    labels = series_labels(groups).to_numpy()
    rows = sorted(set(labels))
    models = sorted(groups["model"].astype(str).unique())
    colors = colors or model_colors(models)
    step = 0.8 / len(models)
    height = 0.14 * len(rows) * max(len(models), 2) + 1.6
    fig, axes = _panels(len(metrics), width=4.0, height=height, cols=len(metrics), sharey=True)
    fig.set_figwidth(fig.get_figwidth() + 0.06 * max(map(len, rows)))  # the row labels
    position = {label: i for i, label in enumerate(rows)}
    for ax, metric, title in zip(axes, metrics, titles, strict=True):
        for j, model in enumerate(models):
            mine = (groups["model"].astype(str) == model).to_numpy()
            y = np.array([position[x] for x in labels[mine]]) - 0.4 + (j + 0.5) * step
            mean = 100 * groups.loc[mine, f"{metric}_mean"].to_numpy(np.float64)
            half = 100 * ci95(groups.loc[mine, f"{metric}_se"], groups.loc[mine, f"{metric}_n"])
            ax.errorbar(mean, y, xerr=np.where(np.isfinite(half), half, 0), fmt="o", ms=4,
                        color=colors[model], capsize=2, elinewidth=1, label=model)  # fmt: skip
            for yy, row in zip(y, groups[mine].itertuples(), strict=True):
                if row.n == 0:
                    text = f"{model}: diverged ({row.n_diverged}/{row.n_runs})"
                    ax.text(0.01, yy, text, transform=ax.get_yaxis_transform(), fontsize=6,
                            va="center")  # fmt: skip
        if reference is not None:
            ax.axvline(reference, color="k", linewidth=0.8)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.tick_params(axis="y", labelleft=ax is axes[0])
        ax.set(title=title, xlabel=xlabel)
        ax.grid(axis="x", alpha=0.3)
    figure_legend(fig, axes, title="architecture")
    return fig


def loss_comparison(groups: pd.DataFrame, colors: Mapping[str, tuple] | None = None) -> Figure:
    """Clean and mean corrupted accuracy per loss: dots per architecture with 95 % CIs."""
    metrics = [m for m in ("id_accuracy", "corrupted_accuracy") if groups[f"{m}_n"].sum() > 0]
    metrics = metrics or ["id_accuracy"]  # every run diverged: the panel names them
    titles = {"id_accuracy": "clean (ID) test set", "corrupted_accuracy": "mean corrupted"}
    fig = dot_panels(groups, metrics, titles=[titles[m] for m in metrics],
                     xlabel="accuracy (%)", colors=colors)  # fmt: skip
    fig.suptitle(f"Accuracy per loss and architecture ({CI})", fontsize=10)
    return fig


def calibration(groups: pd.DataFrame) -> Figure | None:
    """Mean corrupted ECE per loss, raw and after temperature scaling (the temperature
    fitted on each run's clean validation split): dots per architecture with 95 % CIs. None
    when no run has a validation split (nothing was recalibrated)."""
    if groups["corrupted_ece_ts_n"].sum() == 0:
        return None
    metrics = ("corrupted_ece", "corrupted_ece_ts")
    titles = ("raw", "after temperature scaling")
    fig = dot_panels(groups, metrics, titles=titles, xlabel="mean corrupted ECE (%)")
    fig.suptitle(f"Calibration under shift per loss and architecture ({CI})", fontsize=10)
    return fig


def label_noise_curves(groups: pd.DataFrame, colors: Mapping[str, tuple] | None = None) -> Figure:
    """Clean test accuracy vs training label-noise rate: panel per model, line per loss."""
    labels = series_labels(groups, exclude=("label_noise",))
    colors = colors or loss_colors(labels)
    models = sorted(groups["model"].astype(str).unique())
    fig, axes = _panels(len(models))
    frame = groups.assign(series=labels.to_numpy())
    for ax, model in zip(axes, models, strict=True):
        rows = frame[frame["model"].astype(str) == model]
        for label, line in rows.groupby("series", sort=False):
            line = line[line["id_accuracy_n"] > 0].sort_values("label_noise")
            if len(line):
                mean, se = line["id_accuracy_mean"], line["id_accuracy_se"]
                _band(ax, line["label_noise"], mean, se, colors[label], label)
        _note_diverged(ax, rows, rows["series"] + rows["label_noise"].map(" (noise {:g})".format))
        ax.set(title=model, xlabel="training label-noise rate", ylabel="clean test accuracy (%)")
        ax.grid(alpha=0.3)
    figure_legend(fig, axes, title="loss")
    fig.suptitle("Clean test accuracy vs label noise (band = +/- 1 SE over seeds)")
    return fig
