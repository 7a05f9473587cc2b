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

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_bad_input import refuse, snapshot

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


# -- point 10: results directories --------------------------------------------------------


@pytest.mark.parametrize("where", ["results_dir", "below results_dir", "experiment"])
def test_results_dir_through_a_file(where, tmp_path, capsys, monkeypatch, compiles):
    monkeypatch.setattr(execute_module, "train_population", refuse)
    file = tmp_path / "results"
    results = {"results_dir": file, "below results_dir": file / "sub", "experiment": tmp_path}
    if where == "experiment":
        file = tmp_path / "tiny"  # where the experiment's directory would be
    file.write_text("a file\n")
    path = config_file(tmp_path)
    status, errors, _ = cli(capsys, ["--config", str(path), "--results_dir", str(results[where])])
    assert status == 2 and len(errors) == 1, errors
    assert f"{str(file)!r} is a file, not a directory" in errors[0], errors[0]
    assert file.read_text() == "a file\n"
    assert compiles == []


def test_evaluate_of_a_file(tmp_path, capsys):
    from experiments import evaluate

    file = tmp_path / "tiny"
    file.write_text("a file\n")
    assert evaluate.main([str(file), "--shifts", "iid_noise", "--no_progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {str(file)!r} is a file, not an experiment directory"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A results directory holding the finished tiny sweep, and its config file."""
    root = tmp_path_factory.mktemp("finished")
    path = config_file(root)
    assert sweep_cli.main(["--config", str(path), "--results_dir", str(root / "results")]) == 0
    return root / "results", path


def test_rerun_of_finished_sweep_writes_nothing(finished, tmp_path, capsys, monkeypatch):
    """sweep.json is rewritten only when its content changes (main rewrote it every time)."""
    results = shutil.copytree(finished[0], tmp_path / "results")
    before = snapshot(results)
    monkeypatch.setattr(execute_module, "train_population", refuse)
    status, errors, err = cli(capsys, ["--config", str(finished[1]), "--results_dir", str(results)])
    assert status == 0 and not errors, err
    assert "skipped 1 (done)" in err
    assert snapshot(results) == before


# The command in a subprocess that counts compiles and refuses training and restores.
DRIVER = textwrap.dedent(
    """
    import sys
    import jax.monitoring

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None
    )

    def refuse(*args, **kwargs):
        raise AssertionError("computed")

    from toolkit.sweep import execute, reevaluation
    execute.train_population = reevaluation.Checkpoints = reevaluation.evaluate_trial = refuse
    from experiments import evaluate, sweep
    status = {"sweep": sweep.main, "evaluate": evaluate.main}[sys.argv[1]](sys.argv[2:])
    print(f"compiles: {len(compiles)}", file=sys.stderr)
    sys.exit(status)
    """
)


PROBE = """
try:
    open(__import__("sys").argv[1], "w")
except OSError:
    print("refused")
"""


def _refused(prefix: list[str], directory: Path) -> bool:
    """Whether a process started with ``prefix`` is refused a write under ``directory``."""
    probe = [*prefix, sys.executable, "-c", PROBE, str(directory / "probe")]
    return subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "refused"


@pytest.fixture
def read_only():
    """``run(directory, command, *args)``: the driver's ``command`` in a subprocess that
    cannot write under ``directory``: its write permission bits removed, which stops any
    process without CAP_DAC_OVERRIDE; else (root) a read-only bind mount of it in a private
    mount namespace. Skips where neither stops a write (checked by trying one)."""
    made = []

    def run(directory: Path, *args: str) -> subprocess.CompletedProcess:
        made.append(directory)
        for path in [directory, *directory.rglob("*")]:
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        prefix = []
        if not _refused(prefix, directory):
            script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
            prefix = ["unshare", "-m", "sh", "-c", script, str(directory)]
            if shutil.which("unshare") is None or not _refused(prefix, directory):
                pytest.skip(f"{directory} stays writable here (no read-only simulation)")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [*prefix, sys.executable, "-c", DRIVER, *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)

    yield run
    for directory in made:
        for path in [directory, *directory.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_unfinished_sweep_on_read_only_dir_is_refused(tmp_path, read_only):
    results = tmp_path / "results"
    (results / "tiny").mkdir(parents=True)
    path = config_file(tmp_path)
    done = read_only(results, "sweep", "--config", str(path), "--results_dir", str(results))
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert f"results directory {str(results / 'tiny')!r} is not writable" in errors[0]
    assert "compiles: 0" in done.stderr and "Traceback" not in done.stderr
    assert list((results / "tiny").iterdir()) == []


def test_finished_sweep_reruns_on_read_only_copy(finished, tmp_path, read_only):
    results = shutil.copytree(finished[0], tmp_path / "results")
    argv = ["--config", str(finished[1]), "--results_dir", str(results), "--no_progress"]
    done = read_only(results, "sweep", *argv)
    assert done.returncode == 0, done.stderr
    assert "1 runs; trained 0, skipped 1 (done)" in done.stderr
    assert "compiles: 0" in done.stderr


def test_evaluate_on_read_only_dir_is_refused_before_compute(finished, tmp_path, read_only):
    results = shutil.copytree(finished[0], tmp_path / "results")
    argv = [str(results / "tiny"), "--shifts", "iid_noise", "--severities", "1", "--no_progress"]
    done = read_only(results, "evaluate", *argv)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert f"results directory {str(results / 'tiny')!r} is not writable" in errors[0]
    assert "compiles: 0" in done.stderr and "Traceback" not in done.stderr


def test_what_sweep_sets_on_its_config_stays_set_and_counts_as_read():
    import warnings

    from toolkit.sweep.cli import sweep_specs
    from toolkit.sweep.defaults import base_config

    config = base_config("kept", dataset="digits")
    config.seeds = 2

    def sweep(config):
        config.seeds = 3  # top level and nested writes reach the config itself
        config.train.steps = 5
        return [{"seed": s} for s in range(config.seeds)]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # seeds is read: no warning
        specs = sweep_specs(config, sweep)
    assert len(specs) == 3 and config.seeds == 3 and config.train.steps == 5
    assert type(config).__name__ == "ConfigDict"
