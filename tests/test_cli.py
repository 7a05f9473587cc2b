"""The sweep and report commands as a researcher uses them: --dry_run, --help with a
config's fields, config paths from the current directory, --yes for huge sweeps, and the
report's progress lines."""

import shutil
from pathlib import Path

import pytest

from experiments import report as report_cli
from experiments import sweep as sweep_cli
from toolkit.sweep import execute as execute_module
from toolkit.sweep import runner

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product


def get_config(variant=""):
    config = base_config("cli", dataset="digits")
    config.train.update({"model": "linear", "steps": 30, "batch_size": 32})
    config.seeds = 3
    config.evals = {"shifts": {"names": ("gaussian_noise",), "severities": (2,)}}
    return config


def sweep(config):
    return product(loss=("softmax_cross_entropy", "softmax_focal"), seed=range(config.seeds))
"""


def refuse(*args, **kwargs):
    raise AssertionError("training started")


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "cli.py").write_text(CONFIG)
    monkeypatch.chdir(folder)  # config paths are read from the current directory
    monkeypatch.setattr(execute_module, "train_population", refuse)
    return folder


def test_dry_run_lists_the_runs_and_steps_and_writes_nothing(config_dir, capsys, compiles):
    results = config_dir / "results"
    argv = ["--config", "cli.py", "--results_dir", str(results), "--dry_run", "--config.seeds=2"]
    assert sweep_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "experiment 'cli': 4 runs, 120 steps" in out
    assert out.count("linear/adam") == 4 and "softmax_focal" in out
    assert "evaluations: shifts" in out
    assert not results.exists() and compiles == []


def test_help_documents_overrides_and_lists_the_configs_fields(config_dir, capsys):
    assert sweep_cli.main(["--help"]) == 0
    general = capsys.readouterr().out
    assert "--config.FIELD=VALUE" in general and "--dry_run" in general and "--yes" in general
    assert sweep_cli.main(["--config", "cli.py", "--help"]) == 0
    fields = capsys.readouterr().out
    assert "--config.seeds=3" in fields and "--config.train.steps=30" in fields
    assert sweep_cli.main([]) == 2  # no config: the usage, on stderr


def test_a_sweep_of_more_runs_than_the_limit_needs_yes(config_dir, capsys, monkeypatch):
    monkeypatch.setattr(runner, "MAX_TRIALS", 5)
    results = config_dir / "results"
    assert sweep_cli.main(["--config", "cli.py", "--results_dir", str(results)]) == 2
    assert "plans 6 runs, more than 5: check the grid with --dry_run, then pass --yes" in (
        capsys.readouterr().err
    )
    assert not results.exists()


def test_the_report_says_what_it_is_doing(tmp_path, capsys):
    results = tmp_path / "label_noise"
    shutil.copytree(ROOT / "results" / "label_noise", results)
    report_cli.main([str(results), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith(f"reading {results}") and err[0].startswith("[  0.")
    assert any(line.endswith("made summary.csv") for line in err)
    assert err[-1].endswith(
        f"writing {len(list((tmp_path / 'report').iterdir()))} files to {tmp_path / 'report'}"
    )


def test_the_report_refuses_an_output_it_cannot_write_before_building(tmp_path, capsys):
    results = tmp_path / "label_noise"
    shutil.copytree(ROOT / "results" / "label_noise", results)
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit) as exited:
        report_cli.main([str(results), "--out", str(tmp_path / "taken" / "report")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"'{tmp_path / 'taken'}' is a file" in err and "reading" not in err


def test_console_scripts_run_the_commands():
    """pyproject's scripts (installed with the package): each prints its usage."""
    import importlib.metadata
    import subprocess

    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["toolkit-sweep"] == "experiments.sweep:main"
    assert scripts["toolkit-evaluate"] == "experiments.evaluate:main"
    assert scripts["toolkit-report"] == "experiments.report:cli"
    for name in ("toolkit-sweep", "toolkit-evaluate", "toolkit-report"):
        done = subprocess.run([name, "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "usage:" in done.stdout, (name, done.stderr[-500:])
