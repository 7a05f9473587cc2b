"""Figures of attributions: maps on their inputs, and the model-randomization curves.

Built on ``matplotlib.figure.Figure`` (no pyplot state). Each map is scaled by its own
largest magnitude, so colours compare positions within a panel, not across panels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["attribution_grid", "randomization_figure"]


def _draw(ax, x: np.ndarray, attribution: np.ndarray) -> None:
    scale = float(np.max(np.abs(attribution))) or 1.0
    a = attribution / scale
    if x.ndim == 1:  # a sequence: the map as a colour strip behind the signal
        lo, hi = float(x.min()), float(x.max())
        pad = 0.1 * (hi - lo or 1.0)
        extent = (-0.5, len(x) - 0.5, lo - pad, hi + pad)
        ax.imshow(a[None], aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, extent=extent)
        ax.plot(np.arange(len(x)), x, color="k", linewidth=1.2)
        ax.set_ylim(extent[2], extent[3])
    else:  # an image (H, W, C): the map summed over channels, the image as contours
        image = x.mean(axis=-1)
        ax.imshow(a.sum(axis=-1), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.contour(image, levels=[0.5 * (image.min() + image.max())], colors="k", linewidths=0.6)
    ax.set_xticks([])
    ax.set_yticks([])


def attribution_grid(
    panels: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], *, title: str = ""
) -> Figure:
    """A grid of attribution maps: rows are the outer keys (e.g. methods), columns the
    inner keys (e.g. "CE, clean"); each cell is ``(input, attribution)`` of one example,
    both of the input's shape ((L,) sequence or (H, W, C) image). Red = the attribution
    pushes the target logit up, blue = down, scaled per panel."""
    rows = list(panels)
    cols = list(dict.fromkeys(c for row in panels.values() for c in row))
    fig = Figure(figsize=(2.6 * len(cols), 1.5 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            if col not in panels[row]:
                ax.set_visible(False)
                continue
            x, attribution = (np.asarray(v, np.float64) for v in panels[row][col])
            if x.shape != attribution.shape:
                raise ValueError(f"{row}/{col}: input {x.shape} vs attribution {attribution.shape}")
            _draw(ax, x, attribution)
            if i == 0:
                ax.set_title(col, fontsize=9)
            if j == 0:
                ax.set_ylabel(row.replace("_", " "), fontsize=8)
    fig.suptitle(title or "Attributions (red +, blue -, scaled per panel)", fontsize=10)
    return fig


def randomization_figure(table: pd.DataFrame) -> Figure:
    """Spearman correlation with the trained model's attributions as layers are
    re-initialized from the top (``attributions.model_randomization``), a line per method,
    +/- 1 SE over examples; as in Adebayo et al. (2018), Fig. 2."""
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    for method, rows in table.groupby("method", sort=False):
        rows = rows.sort_values("stage")
        ax.errorbar(
            rows["stage"],
            rows["spearman"],
            yerr=rows["spearman_se"].fillna(0),
            marker="o",
            ms=4,
            capsize=2,
            label=method,
        )
    stages = table.drop_duplicates("stage").sort_values("stage")
    pairs = zip(stages["stage"], stages["randomized"], strict=True)
    names = ["trained" if stage == 0 else f"+{layer}" for stage, layer in pairs]
    ax.set_xticks(stages["stage"], names, rotation=30, ha="right", fontsize=8)
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set(ylim=(-0.3, 1.05), xlabel="layers re-initialized (cumulative, from the top)")
    ax.set_ylabel("Spearman rank correlation\nwith the trained model's map")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Model-randomization sanity check (Adebayo et al. 2018)", fontsize=10)
    return fig
