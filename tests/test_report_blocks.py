"""README blocks: ``<!-- report:NAME -->`` ... ``<!-- /report:NAME -->`` filled from the
report, everything else left byte for byte; and the command that refreshes them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments import report as report_cli
from toolkit.report import BlockError, block_names, fill_blocks

RESULTS = Path(__file__).resolve().parents[1] / "results" / "label_noise"

README = """# x

Intro with <!-- not a block --> and 12.3 typed.

<!-- report:table -->
stale
<!-- /report:table -->

Slope <!-- report:fact -->old<!-- /report:fact --> and more.
"""


def test_fill_replaces_only_between_the_markers():
    blocks = {"table": "| a |\n|---|\n| 1 |\n", "fact": "slope 0.42", "unused": "x"}
    out = fill_blocks(README, blocks)
    assert out == README.replace("stale", "| a |\n|---|\n| 1 |").replace(">old<", ">slope 0.42<")
    assert fill_blocks(out, blocks) == out  # idempotent
    assert block_names(out) == ["table", "fact"]
    quoted = "Blocks stand between `<!-- report:NAME -->` and `<!-- /report:NAME -->`.\n"
    assert fill_blocks(quoted + out, blocks) == quoted + out


def test_unknown_block_names_the_valid_ones():
    with pytest.raises(BlockError, match=r"unknown report block 'fact'.*valid blocks: table"):
        fill_blocks(README, {"table": "t"})


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- report:a -->x", "'a' is never closed"),
        ("<!-- report:a -->x<!-- /report:b -->", "closing marker of 'b'"),
        ("<!-- /report:a -->", "closing marker of 'a'"),
        ("<!-- report:a --><!-- report:b --><!-- /report:b --><!-- /report:a -->", "inside"),
    ],
)
def test_unpaired_markers_are_errors(text, message):
    with pytest.raises(BlockError, match=message):
        fill_blocks(text, {"a": "1", "b": "2"})


def test_a_readme_elsewhere_names_the_experiment_and_only_its_blocks_are_filled():
    text = (
        "<!-- report:exp/fact -->old<!-- /report:exp/fact --> "
        "<!-- report:other/fact -->keep<!-- /report:other/fact -->"
    )
    out = fill_blocks(text, {"fact": "new"}, experiment="exp")
    assert out == text.replace(">old<", ">new<")
    with pytest.raises(BlockError, match="valid blocks: exp/fact"):
        fill_blocks(text.replace("exp/fact", "exp/nope"), {"fact": "new"}, experiment="exp")
    with pytest.raises(BlockError, match="unknown report block 'exp/fact'"):
        fill_blocks(text, {"fact": "new"})  # in a results README every block is its own


@pytest.fixture
def results_copy(tmp_path):
    target = tmp_path / "label_noise"
    shutil.copytree(RESULTS, target, ignore=shutil.ignore_patterns("report", "README.md"))
    return target


def _truth(results: Path, loss: str, noise: float) -> tuple[float, float]:
    """Mean and SE (ddof=1) over seeds of the clean test accuracy, from the raw rows."""
    rows = [json.loads(line) for line in (results / "evals.jsonl").read_text().splitlines()]
    acc = [
        r["accuracy"]
        for r in rows
        if r["eval_set"] == "clean" and r["loss"] == loss and r["label_noise"] == noise
    ]
    return 100 * np.mean(acc), 100 * np.std(acc, ddof=1) / np.sqrt(len(acc))


def test_the_command_refreshes_the_readme_and_another_readmes_blocks(results_copy, tmp_path):
    outside = "Prose 99.9 %, untouched.\n"
    readme = results_copy / "README.md"
    readme.write_text(
        f"{outside}<!-- report:label_noise -->\n<!-- /report:label_noise -->\n"
        "Runs: <!-- report:runs -->?<!-- /report:runs -->\n"
    )
    top = tmp_path / "TOP.md"
    top.write_text(
        "Fit: <!-- report:label_noise/line_fit -->?<!-- /report:label_noise/line_fit -->"
    )
    paths = report_cli.main([str(results_copy), "--readme", str(top)])
    assert readme in paths and top in paths
    text = readme.read_text()
    assert text.startswith(outside)
    mean, se = _truth(results_copy, "gce", 0.6)
    assert "| cnn | gce(q=0.7) |" in text and f"{mean:.2f} +/- {se:.2f}" in text
    runs = len(list((results_copy / "runs").glob("*/done")))
    assert f"-->{runs} runs (finished {runs}; 0 failed)" in text
    assert "slope" in top.read_text() and "R^2" in top.read_text()
    assert "`label_noise`" in (results_copy / "report" / "README.md").read_text()


def test_an_unknown_block_stops_the_command_before_anything_is_written(results_copy, capsys):
    readme = results_copy / "README.md"
    readme.write_text("<!-- report:pivot_id_acc -->\n<!-- /report:pivot_id_acc -->\n")
    with pytest.raises(SystemExit) as exit_info:
        report_cli.main([str(results_copy)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown report block 'pivot_id_acc'" in err and "pivot_id_accuracy" in err
    assert not (results_copy / "report").exists()
    assert readme.read_text() == "<!-- report:pivot_id_acc -->\n<!-- /report:pivot_id_acc -->\n"
