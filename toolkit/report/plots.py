"""Figures of a report, drawn with matplotlib's object API on the Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot``, so no global
backend or figure state is touched and nothing needs a display. Every function returns a
Figure; :func:`save` writes it as PNG. Colours are fixed per series label across panels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.special import ndtri

from toolkit.report.curves import LineFit, pooled_reliability
from toolkit.report.stats import series_labels

__all__ = [
    "accuracy_on_the_line",
    "accuracy_vs_severity",
    "label_noise_curves",
    "loss_comparison",
    "reliability_diagrams",
    "save",
]


def save(fig: Figure, target: str | Path | BinaryIO) -> None:
    """Writes ``fig`` as a PNG at 120 dpi to a path or binary file."""
    fig.savefig(target, format="png", dpi=120, bbox_inches="tight")


def _colors(labels: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    unique = list(dict.fromkeys(labels))
    cmap = colormaps["tab10" if len(unique) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(unique)}


def _panels(count: int, *, width: float = 4.6, height: float = 3.6, cols: int = 3):
    cols = max(1, min(cols, count))
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _band(ax, x, mean, se, color, label) -> None:
    x, mean, se = (np.asarray(v, np.float64) for v in (x, mean, se))
    ax.plot(x, 100 * mean, marker="o", ms=4, color=color, label=label)
    ok = np.isfinite(se)
    if ok.any():
        lo, hi = 100 * (mean - se), 100 * (mean + se)
        ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=0.2, linewidth=0)


MAX_INSIDE_LEGEND = 8  # more entries than this go beside the panel, not over the lines


def _legend(ax, **kwargs) -> None:
    handles = ax.get_legend_handles_labels()[0]
    if not handles:  # a panel whose groups all diverged has no lines
        return
    if len(handles) <= MAX_INSIDE_LEGEND:
        ax.legend(fontsize=7, title_fontsize=7, **kwargs)
        return
    kwargs.pop("loc", None)
    _legend_beside(ax, handles, **kwargs)


def _legend_beside(ax, handles, **kwargs) -> None:
    """The legend beside the panel, and the figure widened by about the legend's width so
    the panel keeps its size (constrained layout makes room for legends outside the axes)."""
    labels = [h.get_label() for h in handles]
    columns = 1 if len(handles) <= 30 else 2
    ax.legend(handles=handles, fontsize=6, title_fontsize=6, loc="upper left",
              bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, ncols=columns, **kwargs)  # fmt: skip
    fig, rows = ax.figure, ax.get_subplotspec().get_geometry()[0]
    longest = max(len(label) for label in labels)
    fig.set_figwidth(fig.get_figwidth() + columns * (0.055 * longest + 0.5) / rows)
    tall = 0.12 * math.ceil(len(handles) / columns) + 1.0  # inches the legend needs
    fig.set_figheight(max(fig.get_figheight(), rows * tall))


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
) -> Figure:
    """``metric`` (a fraction, drawn in percent) vs severity: one panel per model, a line
    per group labelled by ``label_of[group_id]``, mean +/- SE band over seeds; groups whose
    seeds all diverged are named in their panel. ``curves`` has one row per (group,
    severity) with ``<metric>_mean``, ``_se``, ``_n`` and the group's ``n``."""
    groups = curves.drop_duplicates("group_id")
    colors = _colors(list(label_of.values()))
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
        _legend(ax, title="loss")
    fig.suptitle(title)
    return fig


def accuracy_vs_severity(curves: pd.DataFrame) -> Figure:
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


def accuracy_on_the_line(fit: LineFit, runs: pd.DataFrame) -> Figure:
    """Clean vs mean corrupted accuracy per run on probit axes with the fitted line.

    Each point is one non-diverged run (colour = loss, marker = model); the line is the
    probit least-squares fit of Miller et al. (2021); the dotted line is y = x.
    """
    points = fit.runs.merge(runs[["run_id", "model"]], on="run_id")
    groups = runs.drop_duplicates("group_id")
    label_of = dict(zip(groups["group_id"], series_labels(groups, exclude=("model",)), strict=True))
    points["label"] = points["group_id"].map(label_of)
    colors = _colors(points["label"].tolist())
    markers = dict(zip(sorted(points["model"].unique()), "osD^v<>ph*", strict=False))
    from toolkit.metrics.robustness import PROBIT_EPS as eps

    x = ndtri(np.clip(points["id_accuracy"].to_numpy(), eps, 1 - eps))
    y = ndtri(np.clip(points["corrupted_accuracy"].to_numpy(), eps, 1 - eps))
    fig = Figure(figsize=(7.5, 6), layout="constrained")
    ax = fig.subplots()
    for (label, model), idx in points.groupby(["label", "model"]).groups.items():
        ax.scatter(
            x[points.index.get_indexer(idx)],
            y[points.index.get_indexer(idx)],
            color=colors[label],
            marker=markers[model],
            s=30,
            edgecolor="k",
            linewidth=0.4,
        )
    lo = min(x.min(), y.min()) - 0.25
    hi = max(x.max(), y.max()) + 0.25
    grid = np.linspace(lo, hi, 50)
    ax.plot(
        grid,
        fit.slope * grid + fit.intercept,
        color="k",
        label=f"probit fit: slope {fit.slope:.2f}, intercept {fit.intercept:.2f}, "
        f"R$^2$ {fit.r2:.2f} ({fit.num_points} runs)",
    )
    ax.plot(grid, grid, color="0.5", linestyle=":", label="y = x")
    ax.set(xlim=(lo, hi), ylim=(lo, hi))
    _probit_ticks(ax, lo, hi)
    ax.set_xlabel("clean (ID) test accuracy (%, probit scale)")
    ax.set_ylabel("mean corrupted accuracy (%, probit scale)")
    ax.set_title("Accuracy on the line: one point per run")
    ax.grid(alpha=0.3)
    # One entry per loss (colour) and one per model (marker), not one per pair: 17 losses
    # x 3 models would bury the plot under 51 entries.
    from matplotlib.lines import Line2D

    def dot(color, marker, label):
        return Line2D([], [], color=color, marker=marker, linestyle="", markeredgecolor="k",
                      markeredgewidth=0.4, label=label)  # fmt: skip

    handles = [*ax.get_legend_handles_labels()[0]]
    handles += [dot(colors[label], "o", label) for label in sorted(colors)]
    if len(markers) > 1:
        handles += [dot("0.8", marker, model) for model, marker in markers.items()]
    if len(handles) > MAX_INSIDE_LEGEND:
        _legend_beside(ax, handles)
    else:
        ax.legend(handles=handles, fontsize=7, loc="upper left")
    return fig


def reliability_diagrams(df: pd.DataFrame, runs: pd.DataFrame, model: str) -> Figure | None:
    """Reliability diagrams of ``model`` on the clean test set: one panel per loss, bins
    pooled over the non-diverged seeds (``curves.pooled_reliability``); None without bins."""
    if "reliability" not in df:
        return None
    mine = runs[(runs["model"].astype(str) == model)]
    labels = series_labels(runs.drop_duplicates("group_id"))
    label_of = dict(zip(runs.drop_duplicates("group_id")["group_id"], labels, strict=True))
    clean = df[(df["kind"] == "clean") & ~df["diverged"]].set_index("run_id")["reliability"]
    panels = []
    for group_id, rows in mine.groupby("group_id", sort=False):
        healthy = rows.loc[~rows["diverged"], "run_id"]
        pooled = pooled_reliability(clean.reindex(healthy).tolist())
        if pooled is not None:
            panels.append((label_of[group_id], pooled, len(healthy)))
    if not panels:
        return None
    fig, axes = _panels(len(panels), width=3.4, height=3.4, cols=4)
    for ax, (label, pooled, n) in zip(axes, sorted(panels, key=lambda p: p[0]), strict=True):
        draw_reliability(ax, pooled)
        ax.set_title(
            f"{label}\nECE {100 * pooled['ece']:.1f}% ({n} seed{'s' if n != 1 else ''})", fontsize=9
        )
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Reliability on the clean test set: {model} (bins pooled over seeds)")
    return fig


def loss_comparison(groups: pd.DataFrame) -> Figure:
    """Clean and mean corrupted accuracy per loss, one panel per model, +/- 1 SE bars."""
    labels = series_labels(groups)
    models = sorted(groups["model"].astype(str).unique())
    fig, axes = _panels(len(models), width=max(4.6, 0.9 * labels.nunique() + 1.5), cols=2)
    for ax, model in zip(axes, models, strict=True):
        mine = groups["model"].astype(str) == model
        rows, names = groups[mine], labels[mine].tolist()
        pos = np.arange(len(rows))
        for offset, metric, color, name in (
            (-0.2, "id_accuracy", "tab:blue", "clean (ID)"),
            (0.2, "corrupted_accuracy", "tab:orange", "mean corrupted"),
        ):
            mean = 100 * rows[f"{metric}_mean"].to_numpy(np.float64)
            se = 100 * rows[f"{metric}_se"].to_numpy(np.float64)  # NaN (n = 1): no bar
            # NaN means (no such rows) draw no bar rather than a bar at 0.
            ax.bar(pos + offset, mean, 0.4, yerr=se, capsize=3, color=color, label=name)
        for i, (_, row) in enumerate(rows.iterrows()):
            if row["n"] == 0:
                ax.text(
                    i,
                    1,
                    f"diverged\n({row['n_diverged']}/{row['n_runs']})",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
        ax.set_xticks(pos, names, rotation=30, ha="right", fontsize=8)
        # Fixed limits: NaN bars (diverged) would otherwise be cropped by the autoscale.
        ax.set(title=model, ylabel="accuracy (%)", ylim=(0, 100), xlim=(-0.6, len(rows) - 0.4))
        ax.grid(axis="y", alpha=0.3)
        _legend(ax)
    fig.suptitle("Clean vs mean corrupted accuracy per loss (error bars = +/- 1 SE over seeds)")
    return fig


def label_noise_curves(groups: pd.DataFrame) -> Figure:
    """Clean test accuracy vs training label-noise rate: panel per model, line per loss."""
    labels = series_labels(groups, exclude=("label_noise",))
    colors = _colors(labels.tolist())
    models = sorted(groups["model"].astype(str).unique())
    fig, axes = _panels(len(models))
    frame = groups.assign(series=labels.to_numpy())
    for ax, model in zip(axes, models, strict=True):
        rows = frame[frame["model"].astype(str) == model]
        for label, line in rows.groupby("series", sort=False):
            line = line[line["id_accuracy_n"] > 0].sort_values("label_noise")
            if len(line):
                _band(
                    ax,
                    line["label_noise"],
                    line["id_accuracy_mean"],
                    line["id_accuracy_se"],
                    colors[label],
                    label,
                )
        _note_diverged(ax, rows, rows["series"] + rows["label_noise"].map(" (noise {:g})".format))
        ax.set(title=model, xlabel="training label-noise rate", ylabel="clean test accuracy (%)")
        ax.grid(alpha=0.3)
        _legend(ax, title="loss")
    fig.suptitle("Clean test accuracy vs label noise (band = +/- 1 SE over seeds)")
    return fig
