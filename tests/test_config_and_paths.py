"""Config files and results paths (issue #27, points 8 and 10), through the command line.

Misspelled fields inside a config file, and errors of any type its code raises, give one
error line (naming the field's closest valid name, or the file and line) before any compute
and before anything is written. A results directory that is a file, or cannot be written,
is refused before any compute; a finished sweep reruns on a read-only copy.

Read-only is simulated so that the kernel refuses the writes: ``chmod a-w`` for a normal
user, and for root (whom permission bits do not stop) a read-only bind mount in a private
mount namespace (``unshare -m``); the command then runs in a subprocess. Where neither
makes the directory unwritable the tests skip.
"""

from pathlib import Path

import pytest
from test_bad_input import refuse

from experiments import sweep as sweep_cli
from toolkit.sweep import execute as execute_module

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product


def get_config(variant=""):
    config = base_config("tiny", dataset="mnist1d")
    config.dataset_kwargs = {"num_samples": 300}
    config.train.update({"model": "linear", "steps": 20, "batch_size": 20, "log_every": 10})
    config.executor = "inline"
    config.seeds = 1
    config.evals = {"shifts": {"names": ("iid_noise",), "severities": (2,)}}
    # EXTRA
    return config


def sweep(config):
    # SWEEP
    return product(seed=range(config.seeds))
"""


def config_file(tmp_path: Path, extra: str = "", sweep: str = "", top: str = "") -> Path:
    path = tmp_path / "config.py"
    text = top + CONFIG.replace("# EXTRA", extra).replace("# SWEEP", sweep)
    path.write_text(text)
    return path


def cli(capsys, argv):
    """``(exit status, error lines, stderr)`` of ``python -m experiments.sweep argv``."""
    status = sweep_cli.main([*argv, "--no_progress"])
    err = capsys.readouterr().err
    return status, [line for line in err.splitlines() if line.startswith("error:")], err


# -- point 8: config files ----------------------------------------------------------------

# name -> (line added to get_config, the bad field, the closest valid one)
MISSPELLED = {
    "executor": ('config.exector = "process"', "config.exector", "'executor'"),
    "evals": ('config.evalz = {"ood": {"names": ("gaussian_noise",)}}', "config.evalz", "'evals'"),
    "workers": ("config.worker = 2", "config.worker", "'workers'"),
    # a field of the sweep's own that sweep(config) does not read: seeds is read
    "own field": ("config.seed = 3", "config.seed", "'seeds'"),
    "tune": ("config.tune.trails = 4", "config.tune.trails", "'trials'"),
}


@pytest.mark.parametrize("case", list(MISSPELLED))
def test_misspelled_field_in_config_file(case, tmp_path, capsys, monkeypatch, compiles):
    extra, bad, valid = MISSPELLED[case]
    monkeypatch.setattr(execute_module, "train_population", refuse)
    path = config_file(tmp_path, extra)
    status, errors, _ = cli(capsys, ["--config", str(path), "--results_dir", str(tmp_path / "r")])
    assert status == 2 and len(errors) == 1, errors
    assert bad in errors[0] and f"did you mean {valid}" in errors[0], errors[0]
    assert not (tmp_path / "r").exists()  # nothing written
    assert compiles == []


def test_fields_read_by_sweep_are_accepted(tmp_path, capsys, monkeypatch):
    """A field of the sweep's own is fine when sweep(config) reads it, also via get()."""
    from toolkit.sweep import load_config, plan

    path = config_file(tmp_path, "config.models = ('linear',)", "_ = config.get('models')")
    trials, _ = plan(*load_config(str(path)))
    assert len(trials) == 1


def test_unread_field_unlike_any_name_is_warned_about(tmp_path):
    """A field of the file's own that this sweep does not read (a config file may serve
    several sweeps) is not an error, but it is not silent either."""
    from toolkit.sweep import load_config, plan

    path = config_file(tmp_path, "config.noise_rates = (0.1, 0.2)")
    with pytest.warns(UserWarning, match=r"config\.noise_rates is set but nothing reads it"):
        trials, _ = plan(*load_config(str(path)))
    assert len(trials) == 1


# name -> (where the error is raised: top of file / get_config / sweep, the code, type, line)
RAISES = {
    "RuntimeError in get_config": ("extra", "raise RuntimeError('no GPU here')", "RuntimeError"),
    "OSError in get_config": ("extra", "open('/nonexistent/x.txt')", "FileNotFoundError"),
    "OSError at import": ("top", "raise OSError('cannot mount')\n", "OSError"),
    "RuntimeError in sweep": ("sweep", "raise RuntimeError('boom')", "RuntimeError"),
    "ZeroDivisionError in sweep": ("sweep", "1 / 0", "ZeroDivisionError"),
}


@pytest.mark.parametrize("case", list(RAISES))
def test_config_file_raising_gives_one_line(case, tmp_path, capsys, monkeypatch, compiles):
    where, code, kind = RAISES[case]
    monkeypatch.setattr(execute_module, "train_population", refuse)
    path = config_file(tmp_path, **{where: code})
    line = 1 + next(i for i, s in enumerate(path.read_text().splitlines()) if code.strip() in s)
    status, errors, err = cli(capsys, ["--config", str(path), "--results_dir", str(tmp_path / "r")])
    assert status == 2 and len(errors) == 1, err
    assert f"{kind} at {path} line {line}" in errors[0], errors[0]
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()
    assert compiles == []
