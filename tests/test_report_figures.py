"""Figures of a report, checked on the committed label-noise results (7 losses x 4 rates x
3 seeds): fixed colours, legends beside the data, no empty panels, 95 % intervals and the
tables' ECE, against numbers recomputed from the raw evals.jsonl with numpy/scipy."""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from scipy import stats

from toolkit.report import (
    ReportWarning,
    accuracy_line,
    aggregate,
    analysis,
    build_report,
    load_results,
    per_run,
    plots,
)
from toolkit.report.palette import COLORS, loss_colors, model_colors, palette

RESULTS = Path(__file__).resolve().parents[1] / "results" / "label_noise"


@pytest.fixture(scope="module")
def loaded():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        df = load_results(RESULTS)
    return df, per_run(df)


@pytest.fixture(scope="module")
def report():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        return build_report(RESULTS)


@pytest.fixture(scope="module")
def raw_rows():
    return [json.loads(line) for line in (RESULTS / "evals.jsonl").read_text().splitlines()]


def figures(report) -> dict[str, Figure]:
    return {name: fig for name, fig in report.files.items() if isinstance(fig, Figure)}


def legends(fig: Figure):
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]


def entry_colors(legend) -> dict[str, str]:
    """label -> hex colour of each coloured legend entry (markers, lines, patches)."""
    out = {}
    for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
        color = handle.get_color() if hasattr(handle, "get_color") else handle.get_facecolor()
        out[text.get_text()] = to_hex(color)
    return out


def test_palette_keys_colours_on_the_registry_not_on_the_subset():
    everything = loss_colors(["gce(q=0.7)", "mae", "softmax_cross_entropy", "brier"])
    two = loss_colors(["softmax_cross_entropy", "gce(q=0.7)"])
    assert two["gce(q=0.7)"] == everything["gce(q=0.7)"]
    assert two["softmax_cross_entropy"] == everything["softmax_cross_entropy"]
    assert model_colors(["cnn"])["cnn"] == model_colors(["mlp", "gru", "cnn"])["cnn"]
    # Labels that are not bare registry entries take the slots after the registry's, so
    # 28 (loss, rate) labels and the 17 losses never share a colour.
    from toolkit.losses import losses

    labels = [f"{loss}, label_noise={r}" for loss in losses.names()[:7] for r in (0, 0.2, 0.4, 0.6)]
    mixed = loss_colors([*labels, *losses.names()])
    assert len(set(mixed.values())) == len(mixed) == 28 + len(losses.names())
    assert len(set(map(to_hex, COLORS))) == len(COLORS) == 60
    # Two settings of one loss in one figure: neither may take the loss's registry colour
    # alone, and they differ.
    pair = palette(["gce(q=0.7)", "gce(q=0.5)", "mae"], ["gce", "mae"])
    assert pair["gce(q=0.7)"] != pair["gce(q=0.5)"] and COLORS[0] not in pair.values()
    assert pair["mae"] == COLORS[1]
    with pytest.raises(ValueError, match="60 distinct colours"):
        palette([f"x{i}" for i in range(61)], [])


def test_a_loss_has_one_colour_in_every_figure_and_legends_never_repeat_one(report):
    seen: dict[str, set[str]] = defaultdict(set)
    for name, fig in figures(report).items():
        for legend in legends(fig):
            colors = entry_colors(legend)
            neutral = ("#000000", "#808080", "#cccccc")  # fit line, y = x, model markers
            coloured = {k: v for k, v in colors.items() if v not in neutral}
            if "reliability" not in name:
                assert len(set(coloured.values())) == len(coloured), (name, coloured)
            for label, color in colors.items():
                seen[label].add(color)
    assert seen["gce(q=0.7)"] and seen["softmax_cross_entropy"]  # checked across figures
    assert {label: c for label, c in seen.items() if len(c) > 1} == {}


def test_a_figure_of_a_subset_keeps_the_reports_colours(loaded, report):
    _, runs = loaded
    groups = aggregate(runs)
    subset = groups[groups["loss"].isin(["gce", "mae"])]
    alone = entry_colors(plots.label_noise_curves(subset).legends[0])
    in_report = entry_colors(report.files["label_noise.png"].legends[0])
    assert set(alone) == {"gce(q=0.7)", "mae"}
    assert all(alone[label] == in_report[label] for label in alone)


def _figure_boxes(fig: Figure):
    fig.draw_without_rendering()
    inverse = fig.transFigure.inverted()
    data_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    axes = [ax.get_window_extent().transformed(inverse) for ax in data_axes]
    boxes = [legend.get_window_extent().transformed(inverse) for legend in legends(fig)]
    return data_axes, axes, boxes


def _overlap(a, b) -> float:
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _extra_figures(loaded) -> dict[str, Figure]:
    df, runs = loaded
    table = analysis.effective_robustness(accuracy_line(runs), runs)
    curves = analysis.metric_vs_severity(df, runs, "ece")
    return {
        "effective_robustness": analysis.effective_robustness_figure(table),
        "ood_auroc": analysis.ood_auroc_figure(analysis.ood_auroc(df, runs)),
        "ece_vs_severity": analysis.severity_figure(curves, "ece"),
    }


def test_legends_stand_outside_the_data_and_no_panel_is_empty(report, loaded):
    checked = 0
    for name, fig in {**figures(report), **_extra_figures(loaded)}.items():
        data_axes, axes, boxes = _figure_boxes(fig)
        for box in boxes:
            for ax_box in axes:
                assert _overlap(box, ax_box) == 0.0, f"{name}: legend over a panel"
            assert box.x0 >= 0 and box.y0 >= -0.01 and box.x1 <= 1.01, f"{name}: legend cut"
            checked += 1
        for ax in data_axes:
            drawn = ax.lines or ax.collections or ax.patches or ax.images or ax.texts
            assert ax.get_visible() and drawn, f"{name}: empty panel {ax.get_title()!r}"
    assert checked >= 6


def test_dot_plot_intervals_are_t_intervals_over_seeds(report, raw_rows):
    fig = report.files["loss_comparison.png"]
    ax = fig.axes[0]  # clean accuracy; one row per (loss, rate)
    rows = [t.get_text() for t in ax.get_yticklabels()]
    label = "softmax_cross_entropy, label_noise=0.4"
    y = rows.index(label)
    truth = [
        r["accuracy"]
        for r in raw_rows
        if r["eval_set"] == "clean" and r["loss"] == "softmax_cross_entropy"
        and r["label_noise"] == 0.4
    ]  # fmt: skip
    n = len(truth)
    half = stats.t.ppf(0.975, n - 1) * np.std(truth, ddof=1) / np.sqrt(n)
    (container,) = ax.containers  # one architecture
    segments = container.lines[2][0].get_segments()
    (segment,) = [s for s in segments if abs(s[0][1] - y) < 0.5]
    assert 100 * np.mean(truth) == pytest.approx((segment[0][0] + segment[1][0]) / 2, rel=1e-6)
    assert 100 * half == pytest.approx((segment[1][0] - segment[0][0]) / 2, rel=1e-6)
    assert "t(0.975, n-1)" in fig.get_suptitle()
    assert not ax.patches  # dots, no bars from zero


def test_reliability_titles_use_the_tables_ece(report, raw_rows):
    fig = report.files["reliability_cnn.png"]
    titles = {ax.get_title().split("\n")[0]: ax.get_title() for ax in fig.axes}
    clean = [r for r in raw_rows if r["eval_set"] == "clean" and r["loss"] == "gce"]
    for rate in (0.0, 0.6):
        ece = np.mean([r["ece"] for r in clean if r["label_noise"] == rate])
        title = titles[f"gce(q=0.7), label_noise={rate:g}"]
        assert f"ECE {100 * ece:.2f}% (mean of 3 seeds)" in title
    assert "per-run ECE, mean over seeds" in fig.get_suptitle()


def test_heatmap_colour_scale_covers_the_data_and_chance(loaded, raw_rows):
    df, runs = loaded
    table = analysis.ood_auroc(df, runs)
    fig = analysis.ood_auroc_figure(table)
    values = defaultdict(list)  # per run: mean over OOD sets, then over seeds
    for r in raw_rows:
        if r["kind"] == "ood":
            values[r["run_id"]].append(r["auroc_msp"])
    per_run_mean = [100 * np.mean(v) for v in values.values()]
    (image,) = fig.axes[0].images
    norm = image.norm
    data = np.asarray(image.get_array())
    assert norm.vmin <= data.min() and norm.vmax >= data.max()
    assert norm.vmin < 50 < norm.vmax and norm.vcenter == 50
    # Below-chance AUROCs exist in these results and get their own side of the scale.
    assert min(per_run_mean) < 50 and data.min() < 50
    assert norm(data.min()) < 0.5 < norm(data.max())
