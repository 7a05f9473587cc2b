"""Shift cells that destroy the label for every model are flagged and left out of the means.

p-values are checked against ``scipy.stats.binomtest``; the report's per-run means against
numpy means over the rows that remain.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import Experiment

from toolkit.report import build_report
from toolkit.report.validity import drop_cells, invalid_cells

N = 1000


def cell_rows(eval_set, severity, correct, *, kind="shift", status="finished"):
    return [
        {
            "run_id": f"r{i}",
            "eval_set": eval_set,
            "kind": kind,
            "severity": severity,
            "num_examples": N,
            "accuracy": k / N,
            "status": status,
        }
        for i, k in enumerate(correct)
    ]


def binomial_p(k: int) -> float:
    return stats.binomtest(k, N, 0.1, alternative="greater").pvalue


def test_a_cell_is_flagged_when_no_run_beats_chance_after_holm():
    rows = pd.DataFrame(
        cell_rows("invert", 5, [100, 95, 104, 99, 90])  # all at chance
        + cell_rows("rotate", 5, [100, 95, 140, 99, 90])  # one run far above chance
        + cell_rows("single", 1, [118])  # p ~ 0.03 < 0.05 / 1: above chance
        + cell_rows("many", 1, [118] * 20)  # the same p >= 0.05 / 20: not
        + cell_rows("collapsed", 2, [100, 100])
        + cell_rows("collapsed", 2, [500], status="diverged")  # not a finished run
        + cell_rows("set_like", 1, [100], kind="set")  # not a shift cell
    )
    cells = invalid_cells(rows, 10)
    assert list(zip(cells["eval_set"], cells["severity"], strict=True)) == [
        ("collapsed", 2),
        ("invert", 5),
        ("many", 1),
    ]
    assert binomial_p(118) < 0.05 < 20 * binomial_p(118)  # the case Holm decides
    got = cells.set_index("eval_set")
    assert got.loc["invert", "p_value"] == pytest.approx(binomial_p(104), rel=1e-9)
    assert got.loc["many", "p_value"] == pytest.approx(binomial_p(118), rel=1e-9)
    assert got.loc["many", "runs"] == 20 and got.loc["collapsed", "runs"] == 2
    assert got.loc["invert", "best_accuracy"] == pytest.approx(0.104)
    assert "chance (10 %)" in got.loc["invert", "reason"]


def test_drop_cells_removes_only_the_flagged_shift_rows():
    rows = pd.DataFrame(
        cell_rows("invert", 5, [100, 95])
        + cell_rows("invert", 4, [300, 300])
        + cell_rows("invert", 5, [100], kind="set")
    )
    kept = drop_cells(rows, invalid_cells(rows, 10))
    assert sorted(zip(kept["eval_set"], kept["severity"], kept["kind"], strict=True)) == [
        ("invert", 4, "shift"),
        ("invert", 4, "shift"),
        ("invert", 5, "set"),
    ]


@pytest.mark.parametrize("bad", [1, 0, 2.5, True, None])
def test_bad_class_counts_are_refused(bad):
    with pytest.raises(ValueError, match=f"num_classes must be an int >= 2, got {bad!r}"):
        invalid_cells(pd.DataFrame(cell_rows("invert", 5, [100])), bad)


def test_the_report_leaves_flagged_cells_out_of_the_means(tmp_path):
    exp = Experiment(tmp_path)
    for seed in range(2):
        exp.add_run("mlp", "softmax_cross_entropy", seed)
    lines = [json.loads(line) for line in exp.lines]
    for row in lines:  # translate 3 at chance for every run (e.g. a 1x1 image)
        if (row["eval_set"], row["severity"]) == ("translate", 3):
            row["accuracy"] = 0.1
    exp.lines = [json.dumps(row) for row in lines]
    report = build_report(exp.write(truncated_tail=False), figures=False)

    assert "| translate | 3 | 2 | 10.0 |" in report.blocks["invalid_cells"]
    frame = pd.DataFrame(lines)
    shift = frame[frame["kind"] == "shift"]
    kept = shift[~((shift["eval_set"] == "translate") & (shift["severity"] == 3))]
    runs = pd.read_csv(pd.io.common.StringIO(report.files["runs.csv"])).set_index("run_id")
    expected = kept.groupby("run_id")["accuracy"].mean()
    np.testing.assert_allclose(runs.loc[expected.index, "corrupted_accuracy"], expected, rtol=1e-5)
    assert (runs["num_shift_rows"] == len(kept) // 2).all()
    per_shift = pd.read_csv(pd.io.common.StringIO(report.files["shift_accuracy.csv"]))
    assert ((per_shift["eval_set"] == "translate") & (per_shift["severity"] == 3)).any()
    assert "Shift cells left out of the means" in report.files["report.md"]


def test_without_the_dataset_no_cell_is_flagged_and_the_report_says_why(tmp_path):
    exp = Experiment(tmp_path)
    exp.add_run("mlp", "softmax_cross_entropy", 0)
    exp.lines = [line.replace('"mnist1d"', '"no_such_dataset"') for line in exp.lines]
    results = exp.write(truncated_tail=False)
    for config in (results / "runs").glob("*/config.json"):
        config.write_text(config.read_text().replace('"mnist1d"', '"no_such_dataset"'))
    report = build_report(results, figures=False)
    assert report.blocks["invalid_cells"].startswith("No shift cell was checked: dataset")
    assert "'no_such_dataset'" in report.blocks["invalid_cells"]


def test_a_cell_is_one_datasets_shift_with_that_datasets_chance():
    """Two datasets with one shift name: the cell is flagged only where no run beats that
    dataset's chance (1/10 vs 1/2), and only its rows are dropped."""
    correct = [200, 190, 150]  # of N = 1000: far above 1/10, far below 1/2
    ten = pd.DataFrame(cell_rows("gaussian_noise", 3, correct)).assign(dataset="ten")
    two = pd.DataFrame(cell_rows("gaussian_noise", 3, correct)).assign(dataset="two")
    rows = pd.concat([ten, two], ignore_index=True)
    cells = invalid_cells(rows, {"ten": 10, "two": 2})
    assert cells[["dataset", "eval_set", "severity"]].values.tolist() == [
        ["two", "gaussian_noise", 3]
    ]
    assert cells["chance"].tolist() == [0.5]
    kept = drop_cells(rows, cells)
    assert set(kept["dataset"]) == {"ten"} and len(kept) == 3
