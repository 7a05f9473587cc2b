"""The numbers in the committed results READMEs are the report's: every
``<!-- report:NAME -->`` block equals what the report builds from the committed
evals.jsonl now (tables only, no figures; one build per results directory)."""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import pytest

from toolkit.report import ReportWarning, block_names, build_report, fill_blocks

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.parent.name for p in (ROOT / "results").glob("*/evals.jsonl"))
REGENERATE = "python -m experiments.report results/{name}"


@functools.cache
def blocks_of(name: str) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        return build_report(ROOT / "results" / name, figures=False).blocks


def test_every_committed_experiment_is_checked():
    assert {"loss_comparison", "architecture_sweep", "label_noise"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_results_readme_blocks_match_the_report(name):
    path = ROOT / "results" / name / "README.md"
    text = path.read_text()
    assert len(block_names(text)) >= 3, f"{path} cites no report block"
    fresh = fill_blocks(text, blocks_of(name), source=str(path))
    assert fresh == text, f"{path} is stale: run `{REGENERATE.format(name=name)}`"


def test_top_level_readme_cites_the_reports_numbers():
    path = ROOT / "README.md"
    text = path.read_text()
    experiments = sorted({n.split("/")[0] for n in block_names(text) if "/" in n})
    assert experiments == ["loss_comparison"]
    for name in experiments:
        fresh = fill_blocks(text, blocks_of(name), experiment=name, source=str(path))
        command = f"{REGENERATE.format(name=name)} --readme README.md"
        assert fresh == text, f"{path} is stale: run `{command}`"
    caption = text.split("## Features")[0]
    outside = re.sub(r"<!-- report:(\S+) -->.*?<!-- /report:\1 -->", "", caption, flags=re.S)
    assert "R^2" not in outside  # the caption's fit statistics stand in a block
