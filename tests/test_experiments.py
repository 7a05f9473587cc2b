"""End-to-end: the MNIST-1D table script, quick on every run and in full in the slow group;
the shipped sweeps' quick variants through their README commands (slow group)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments import mnist1d_table

ROOT = Path(__file__).resolve().parents[1]


def test_table_script_writes_markdown_and_csv(tmp_path):
    mnist1d_table.main(
        ["--models", "linear", "cnn", "--seeds", "2", "--steps", "60", "--out", str(tmp_path)]
    )
    df = pd.read_csv(tmp_path / "mnist1d_table.csv")
    assert list(df["model"]) == ["linear", "linear", "cnn", "cnn"]
    assert list(df["params"]) == [410, 410, 5210, 5210]  # the reference parameter counts
    assert df["test_accuracy"].between(10, 100).all()
    text = (tmp_path / "mnist1d_table.md").read_text()
    assert "python -m experiments.mnist1d_table --models linear cnn" in text
    assert "| cnn | 5,210 |" in text and "| 94 |" in text
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary files


def test_bad_arguments_are_rejected_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        mnist1d_table.main(["--models", "resnet", "--out", str(tmp_path)])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_reference_cnn_reaches_the_published_accuracy(tmp_path):
    """The published CNN (94%) at the reference settings, one seed, within 3 points."""
    mnist1d_table.main(["--models", "cnn", "--seeds", "1", "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "mnist1d_table.csv")
    assert df["test_accuracy"].iloc[0] == pytest.approx(94.0, abs=3.0)


SHIPPED = sorted(
    p.stem for p in (ROOT / "experiments" / "configs").glob("*.py") if p.stem != "__init__"
)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_quick_variant_runs_end_to_end_with_the_readme_commands(name, tmp_path):
    """Each shipped sweep's quick variant, through the two commands its README gives: every
    planned run finishes, trains above chance, and the report covers every configuration."""
    from toolkit.sweep.cli import load_config
    from toolkit.sweep.runner import plan

    config_spec = f"experiments/configs/{name}.py:quick"
    config, sweep_fn = load_config(str(ROOT / config_spec))
    trials, _ = plan(config, sweep_fn)
    # No cache dir of their own: the tests' (conftest), so they reuse what others compiled.
    results = tmp_path / "results"
    sweep = [sys.executable, "-m", "experiments.sweep", "--config", config_spec,
             "--results_dir", str(results), "--no_progress"]  # fmt: skip
    done = subprocess.run(sweep, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = results / config.experiment
    report = [sys.executable, "-m", "experiments.report", str(experiment)]
    done = subprocess.run(report, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    finished = sorted(p.parent.name for p in (experiment / "runs").glob("*/done"))
    tuning = json.loads((experiment / "sweep.json").read_text()).get("tuning")
    seed_runs = [r["run_id"] for r in tuning["seed_runs"]] if tuning else []
    assert finished == sorted({t.run_id for t in trials} | set(seed_runs))
    rows = pd.read_json(experiment / "evals.jsonl", lines=True)
    test = rows[(rows["split"] == "test") & (rows["checkpoint"] == "final")]
    if "predictor" in test:  # the runs themselves, not their MC-dropout or ensemble rows
        test = test[test["predictor"].isna()]
    clean = test[test["eval_set"] == "clean"].set_index("run_id")["accuracy"]
    assert sorted(clean.index) == finished
    assert (clean > 0.2).all(), clean  # 10 classes: chance is 0.1
    summary = pd.read_csv(experiment / "report" / "summary.csv")
    assert (experiment / "report" / "report.md").stat().st_size > 0
    if not tuning:
        assert summary["n"].sum() == len(trials) and set(summary["selection"]) == {"default"}
        return
    # A tuned sweep (trials=3): validation rows, recalibration, a pick per rule and cell, the
    # seed runs of each pick averaged under its rule, significance against cross-entropy.
    rules = tuple(config.tune.select)
    cells = {t.tags["cell"] for t in trials}
    assert len(trials) == config.tune.trials * len(cells)
    assert set(rows["split"]) == {"test", "validation"} and set(rows["checkpoint"]) == {
        "final",
        "best",
    }
    assert test[test["kind"] != "ood"]["nll_ts"].notna().all()
    picks = pd.read_csv(experiment / "report" / "selection.csv")
    assert len(picks) == len(rules) * len(cells) and set(picks["selection"]) == set(rules)
    assert set(summary["selection"]) == set(rules)
    for rule in rules:
        assert summary[summary["selection"] == rule]["n"].sum() == len(cells) * config.seeds
    assert (experiment / "report" / "calibration.png").stat().st_size > 0  # raw and scaled ECE
    significance = pd.read_csv(experiment / "report" / "significance.csv")
    assert {"p_value", "p_holm", "significant"} <= set(significance.columns)
    tested = significance.dropna(subset=["p_value"])  # a constant difference has no t-test
    assert not tested.empty and (tested["p_holm"] >= tested["p_value"]).all()
