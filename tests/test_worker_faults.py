"""Sweep workers that die, and the numerics a sweep's runs are computed with (issue #27,
points 7 and 15).

A worker killed from outside (as by the out-of-memory killer) costs only the run it held:
that run is retried once on a fresh worker, and every other run goes on. Sweeps run in a
fresh process (``python -m experiments.sweep``), as a user runs them, so a test loss stays
out of this one's registry and the kill comes from outside the sweep.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit import store

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
import multiprocessing
import os
import signal

import optax

import toolkit as tk
from toolkit.sweep.defaults import base_config


@tk.losses.register("dying", description="Kills its sweep worker as it is traced (a test loss).")
def dying(logits, labels):
    if multiprocessing.parent_process() is not None:  # a worker, not the sweep process
        with open(os.environ["DYING_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\n")
        os.kill(os.getpid(), signal.SIGKILL)
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


def get_config(variant=""):
    config = base_config("faults", dataset="mnist1d")
    config.dataset_kwargs = {"num_samples": 300}
    steps = {"": 40, "long": 600}[variant]
    config.train.update(
        {"model": "linear", "steps": steps, "batch_size": 20, "log_every": steps // 4}
    )
    config.executor = "process"
    config.workers = 2
    config.checkpoint_every = 1
    config.checkpoint_interval_s = 0.0
    config.losses = ("softmax_cross_entropy",) if variant else ("softmax_cross_entropy", "dying")
    config.evals = {}
    return config


def sweep(config):
    runs = [{"loss": "softmax_cross_entropy", "seed": seed} for seed in range(3)]
    return runs + [{"loss": "dying", "seed": 0}] * ("dying" in config.losses)
"""


def start(tmp_path, variant=""):
    """The sweep command in a fresh process; returns it and its stderr's path."""
    config = tmp_path / "faults.py"
    config.write_text(CONFIG)
    spec = f"{config}:{variant}" if variant else str(config)
    command = [sys.executable, "-m", "experiments.sweep", "--config", spec,
               "--results_dir", str(tmp_path / "results"), "--no_progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOOLKIT_CACHE_DIR": str(tmp_path / "cache"),
           "DYING_LOG": str(tmp_path / "dying.log")}  # fmt: skip
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    return process, log


def holders(experiment: Path, sweep_pid: int) -> dict[str, int]:
    """``{run_id: pid}`` of the runs a worker (not the sweep process) holds or last held."""
    found = {}
    for lock in experiment.glob("runs/*/lock"):
        try:
            pid = json.loads(lock.read_text())["pid"]
        except (OSError, ValueError, KeyError):  # being written
            continue
        if pid != sweep_pid:
            found[lock.parent.name] = pid
    return found


@pytest.mark.slow
def test_a_worker_killed_from_outside_costs_no_run(tmp_path):
    # Before: the pool broke and all 3 runs were reported "failed: worker died", the two
    # the killed worker never held among them.
    process, log = start(tmp_path, "long")
    experiment = tmp_path / "results" / "faults"
    killed = None
    try:  # no deadline but the process's own: on a loaded machine workers start slowly
        while killed is None and process.poll() is None:
            running = {
                run_id: pid
                for run_id, pid in holders(experiment, process.pid).items()
                if not (experiment / "runs" / run_id / "done").exists()
            }
            if running:
                killed = min(running.items())
                os.kill(killed[1], signal.SIGKILL)  # as the out-of-memory killer does
            time.sleep(0.02)
        assert process.wait(timeout=1800) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:  # its workers die with it (die_with_parent)
            process.kill()
            process.wait()
    assert killed is not None, "no worker was seen holding a run"
    text = log.read_text()
    assert "trained 3, skipped 0 (done), locked by another process 0, failed 0" in text, text
    assert store.done_run_ids(experiment) == {r.path.name for r in store.run_dirs(experiment)}
    # The killed worker's run was finished by another worker.
    run_id, pid = killed
    assert holders(experiment, process.pid)[run_id] != pid


@pytest.mark.slow
def test_a_run_that_kills_its_worker_fails_alone_after_one_retry(tmp_path):
    process, log = start(tmp_path)
    try:
        assert process.wait(timeout=1800) == 1, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "trained 3, skipped 0 (done), locked by another process 0, failed 1" in text, text
    assert "died twice" in text and "fresh worker" in text, text
    # Two workers died in it: the first try and one retry on a fresh worker.
    pids = (tmp_path / "dying.log").read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]
    experiment = tmp_path / "results" / "faults"
    losses = {
        run.path.name: json.loads(run.config.read_text())["train"]["loss"]
        for run in store.run_dirs(experiment)
    }
    done = store.done_run_ids(experiment)
    assert {losses[r] for r in done} == {"softmax_cross_entropy"} and len(done) == 3
    assert [losses[r] for r in set(losses) - done] == ["dying"]


NUMERICS_CONFIG = """
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product


def get_config(variant=""):
    config = base_config("numerics", dataset="mnist1d")
    config.dataset_kwargs = {"num_samples": 300}
    config.train.update({"model": "linear", "steps": 20, "batch_size": 20, "log_every": 10})
    config.executor = variant or "process"
    config.workers = 1
    config.evals = {}
    return config


def sweep(config):
    return product(seed=[0])
"""


@pytest.mark.slow
def test_a_sweep_is_not_continued_with_other_numerics(tmp_path, compiles):
    # Before: a directory begun with the process executor (single-threaded workers) was
    # continued with inline (this process's multi-threaded XLA pool) without a word, so
    # the same run ids held numbers of both kinds.
    from toolkit.sweep.cli import load_config
    from toolkit.sweep.config import SweepConfigError
    from toolkit.sweep.runner import run_sweep

    spec = tmp_path / "numerics.py"
    spec.write_text(NUMERICS_CONFIG)
    results = tmp_path / "results"
    run_sweep(*load_config(str(spec)), results_dir=results, progress=False)
    experiment = results / "numerics"
    recorded = json.loads((experiment / store.SWEEP).read_text())["numerics"]
    assert recorded["executor"] == "process" and recorded["backend"] == "cpu"
    assert recorded["xla_cpu_threads"] == 1 and recorded["xla_cpu_multi_thread_eigen"] is False
    (run,) = store.run_dirs(experiment)
    # The worker that trained the run records its own, the same settings.
    in_worker = json.loads(run.provenance.read_text())["numerics"]
    assert {k: in_worker[k] for k in ("xla_cpu_threads", "xla_cpu_multi_thread_eigen")} == {
        "xla_cpu_threads": 1,
        "xla_cpu_multi_thread_eigen": False,
    }
    assert in_worker["jax"] == recorded["jax"] == jax_version()

    before = {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file()}
    compiles.clear()
    with pytest.raises(SweepConfigError) as refused:
        run_sweep(*load_config(f"{spec}:inline"), results_dir=results, progress=False)
    message = str(refused.value)
    assert "'process'" in message and "'inline'" in message, message
    assert "xla_cpu_multi_thread_eigen False there, True here" in message, message
    assert "--config.executor=process" in message and "new --results_dir" in message, message
    assert compiles == []  # refused before any compute
    assert {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file()} == before

    # The same executor continues it (everything is done: nothing to train).
    summary = run_sweep(*load_config(str(spec)), results_dir=results, progress=False)
    assert summary.count("skipped") == 1
    # A directory written before the record existed is continued, and gets the record.
    payload = json.loads((experiment / store.SWEEP).read_text())
    del payload["numerics"]
    (experiment / store.SWEEP).write_text(json.dumps(payload))
    summary = run_sweep(*load_config(f"{spec}:inline"), results_dir=results, progress=False)
    assert summary.count("skipped") == 1
    recorded = json.loads((experiment / store.SWEEP).read_text())["numerics"]
    assert recorded["executor"] == "inline" and recorded["xla_cpu_multi_thread_eigen"] is True


def jax_version():
    from importlib.metadata import version

    return version("jax")


def test_vmapped_populations_and_runs_alone_are_not_mixed(tmp_path, compiles):
    """A directory begun with the population executor (members fused under vmap) is not
    continued inline (each run alone), and a rerun keeps naming the executor it began with."""
    from toolkit.sweep.cli import load_config
    from toolkit.sweep.config import SweepConfigError
    from toolkit.sweep.runner import run_sweep

    spec = tmp_path / "numerics.py"
    spec.write_text(NUMERICS_CONFIG.replace("product(seed=[0])", "product(seed=[0, 1])"))
    results = tmp_path / "results"
    run_sweep(*load_config(f"{spec}:population"), results_dir=results, progress=False)
    experiment = results / "numerics"
    compiles.clear()
    with pytest.raises(SweepConfigError, match="vmapped True there, False here"):
        run_sweep(*load_config(f"{spec}:inline"), results_dir=results, progress=False)
    assert compiles == []
    run_sweep(*load_config(f"{spec}:population"), results_dir=results, progress=False)
    assert json.loads((experiment / store.SWEEP).read_text())["numerics"]["executor"] == (
        "population"
    )
