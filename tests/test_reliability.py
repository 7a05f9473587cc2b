"""Reliability of the sweep runner (issue 7): a sweep SIGKILLed at every crash point and at
random times, then rerun with the same command, ends with exactly the rows of an
uninterrupted sweep; damaged and partial files are detected and their run redone; two
sweeps at once train each run once; diverging population members are recorded and
reported as diverged; the same config gives the same numbers; nothing is unpickled or
evaluated from a results directory.

The reference for every comparison is an uninterrupted sweep run in a fresh process.
Faults come from ``tests/sweep_faults.py``, which runs the sweep command with toolkit
functions patched to die at a crash point and to log every training start, in every
process (the killed ones included).
"""

import ast
import io
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import sweep_faults

import toolkit as tk
from experiments import sweep as sweep_cli
from toolkit import store
from toolkit.report import ReportError, build_report, load_results
from toolkit.sweep.checkpoint import Checkpoints, abstract_state
from toolkit.sweep.config import Trial
from toolkit.sweep.reevaluation import reevaluate
from toolkit.training import TrainConfig, build_model, build_optimizer, init_state

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product


def get_config(variant=""):
    config = base_config("tiny", dataset="mnist1d")
    # 240 train (24 of them the validation split), 60 test examples
    config.dataset_kwargs = {"num_samples": 300}
    config.train.update(
        {"model": "linear", "learning_rate": 1e-2, "steps": 40, "batch_size": 20, "log_every": 10}
    )
    config.executor = "inline"
    config.checkpoint_every = 2  # checkpoints at steps 20 and 40
    config.checkpoint_interval_s = 0.0
    config.seeds = 2
    config.evals = {"shifts": {"names": ("iid_noise",), "severities": (2,)}}
    return config


def sweep(config):
    return product(seed=range(config.seeds))
"""
STEPS, CHECKPOINTS = [10, 20, 30, 40], [20, 40]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    (root / "tiny.py").write_text(CONFIG)
    return SimpleNamespace(root=root, config=root / "tiny.py", cache=root / "cache")


def argv(space, results, *extra):
    return ["--config", str(space.config), "--results_dir", str(results), "--no_progress", *extra]


def start(space, results, events, *extra, crash=None):
    """``python -m experiments.sweep`` in a fresh process, its training starts logged to
    ``events`` (and SIGKILLed at ``crash``) by ``tests/sweep_faults.py``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOOLKIT_CACHE_DIR": str(space.cache)}
    log = open(events.with_suffix(".stderr"), "ab")
    command = [sys.executable, sweep_faults.__file__, "--events", str(events)]
    command += ["--crash", crash] if crash else []
    command += ["--", *argv(space, results, *extra)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    log.close()
    return process


def finish(process, events, timeout=300):
    code = process.wait(timeout=timeout)
    return code, events.with_suffix(".stderr").read_text(errors="replace")[-3000:]


def rerun(space, results, events, monkeypatch, *extra):
    """The same command again, in this process (same XLA flags, so the same numbers)."""
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(space.cache))
    sweep_faults.log_starts(events, monkeypatch.setattr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged files are reported with warnings
        assert sweep_cli.main(argv(space, results, *extra)) == 0


def starts(events, since=0.0):
    """``{run_id: [resumed-from step, ...]}`` of the training starts logged after ``since``."""
    out = {}
    for row in store.read_jsonl(events):
        if row["event"] == "train_start" and row["time"] >= since:
            out.setdefault(row["run_id"], []).append(row["step"])
    return out


@pytest.fixture(scope="module")
def reference(space):
    """An uninterrupted sweep in a fresh process: the rows every test compares with."""
    results, events = space.root / "reference", space.root / "reference.events"
    code, log = finish(start(space, results, events), events)
    assert code == 0, log
    experiment = results / "tiny"
    runs = sorted(store.run_dirs(experiment), key=seed_of)
    assert [seed_of(r) for r in runs] == [0, 1] and all(r.is_done() for r in runs)
    return SimpleNamespace(dir=experiment, ids=[r.run_id for r in runs])


@pytest.fixture(scope="module")
def busy_seconds(space, reference):
    """Seconds from the first training start to the exit of a sweep with warm caches (the
    reference's own run is slower: it compiles and prepares the dataset)."""
    results, events = space.root / "warm", space.root / "warm.events"
    code, log = finish(start(space, results, events), events)
    assert code == 0, log
    return time.time() - min(r["time"] for r in store.read_jsonl(events))


def seed_of(run: store.RunDir) -> int:
    return json.loads(run.config.read_text())["train"]["seed"]


def quiet(function, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args)


def rows_by_key(experiment):
    rows = quiet(store.read_evals, experiment)
    # (run_id, checkpoint, split, set, severity, predictor)
    return {store.row_key(r): r for r in rows}


def curve(run: store.RunDir):
    """Steps, losses and accuracies of the training curve (not its timings)."""
    return [(r["step"], r["loss"], r["accuracy"]) for r in quiet(run.read_metrics)]


def assert_same_results(experiment, reference):
    """Exactly the reference's rows (every metric and bin, bit for bit on CPU), curves and
    report DataFrame, with no key read twice."""
    mine, theirs = rows_by_key(experiment), rows_by_key(reference)
    assert mine.keys() == theirs.keys()
    for key, row in mine.items():
        assert row == theirs[key], key
    for run in store.run_dirs(reference):
        mine = store.RunDir(experiment, run.run_id)
        assert curve(mine) == curve(run)
        assert [s for s, *_ in curve(run)] == STEPS
        assert Checkpoints(mine.checkpoint).steps() == CHECKPOINTS
        for a, b in zip(leaves(final_state(mine)), leaves(final_state(run)), strict=True):
            np.testing.assert_array_equal(a, b)
    df = quiet(load_results, experiment)
    assert not df.duplicated(["run_id", "checkpoint", "split", "eval_set", "severity"]).any()
    pd.testing.assert_frame_equal(df, quiet(load_results, reference))


def final_state(run: store.RunDir):
    cfg = Trial.from_json(json.loads(run.config.read_text())).train_config()
    checkpoints = Checkpoints(run.checkpoint)
    state = checkpoints.restore(abstract_state(cfg, 10, (40,), best=True), step=cfg.steps)
    checkpoints.close()
    return state


def leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def copy_of(experiment, tmp_path):
    target = tmp_path / "results" / experiment.name
    shutil.copytree(experiment, target)
    return target


def reported_runs(experiment) -> set[str]:
    """The runs whose rows the report reads now (none if it has nothing to read)."""
    try:
        return set(quiet(load_results, experiment)["run_id"])
    except ReportError:
        return set()


# -- kill and resume ---------------------------------------------------------------------------

# Crash point (n-th pass in the process) -> the step each run resumes from in the rerun (a run
# absent was finished and must not be trained again). Run 0 saves checkpoints 1-2, run 1 3-4.
CRASHES = {
    "train_chunk:3": {0: 20, 1: 0},  # run 0 after step 30: back to its step-20 checkpoint
    "checkpoint_write:1": {0: 0, 1: 0},  # run 0's first save, files written, not renamed
    "checkpoint_write:4": {1: 20},  # run 1's final save
    "before_evals:1": {0: 40, 1: 0},  # run 0 trained, no rows yet: evaluate, do not train
    "evals_append:1": {0: 40, 1: 0},  # half of run 0's rows written
    "after_evals:2": {1: 40},  # run 1's rows appended, no done marker
    "train_chunk:6": {1: 20},  # run 1 after step 20
}


def test_every_crash_point_is_killed_at_and_a_bad_spec_is_refused():
    assert {crash.partition(":")[0] for crash in CRASHES} == set(sweep_faults.POINTS)
    with pytest.raises(ValueError, match=r"'train_chunks:2'.*train_chunk, checkpoint_write"):
        sweep_faults.parse("train_chunks:2")
    with pytest.raises(ValueError, match=r"'after_evals:0'"):
        sweep_faults.parse("after_evals:0")
    assert sweep_faults.parse("after_evals:3") == ("after_evals", 3)
    assert sweep_faults.parse("before_evals") == ("before_evals", 1)


@pytest.mark.slow
@pytest.mark.parametrize("crash", list(CRASHES))
def test_sigkill_at_a_crash_point_then_rerun_gives_the_uninterrupted_rows(
    crash, space, reference, tmp_path, monkeypatch
):
    results, events = tmp_path / "results", tmp_path / "events.jsonl"
    code, log = finish(start(space, results, events, crash=crash), events)
    assert code == -signal.SIGKILL, log
    experiment = results / "tiny"
    runs = [store.RunDir(experiment, run_id) for run_id in reference.ids]
    expected = {reference.ids[i]: [step] for i, step in CRASHES[crash].items()}
    done_before = {r.run_id for r in runs if r.is_done()}
    assert done_before == set(reference.ids) - set(expected)
    # The kill left what its point says, and readers see only the finished runs.
    point = crash.partition(":")[0]
    if point == "checkpoint_write":
        pending = glob_tmp(experiment)
        assert pending and any(p.is_file() for d in pending for p in d.rglob("*"))
    if point == "evals_append":
        assert not (experiment / store.EVALS).read_bytes().endswith(b"\n")
    assert reported_runs(experiment) <= done_before

    since = time.time()
    rerun(space, results, events, monkeypatch)
    assert starts(events, since) == expected
    assert all(r.is_done() for r in runs)
    assert_same_results(experiment, reference.dir)


def glob_tmp(experiment):
    return [p for p in experiment.glob("runs/*/checkpoint/*") if "tmp" in p.name and p.is_dir()]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sigkill_at_a_random_time_then_rerun_gives_the_uninterrupted_rows(
    seed, space, reference, busy_seconds, tmp_path, monkeypatch
):
    results, events = tmp_path / "results", tmp_path / "events.jsonl"
    process = start(space, results, events)
    while not events.exists() and process.poll() is None:  # wait for training to start
        time.sleep(0.01)
    time.sleep(np.random.default_rng(seed).uniform(0.0, busy_seconds))
    process.send_signal(signal.SIGKILL)
    code, log = finish(process, events)
    assert code in (0, -signal.SIGKILL), log
    experiment = results / "tiny"
    runs = [store.RunDir(experiment, run_id) for run_id in reference.ids]
    # A run resumes from its newest committed checkpoint; a finished one is not touched.
    expected = {
        r.run_id: [max(Checkpoints(r.checkpoint).steps(), default=0)]
        for r in runs
        if not r.is_done()
    }
    assert reported_runs(experiment) <= {r.run_id for r in runs if r.is_done()}
    since = time.time()
    rerun(space, results, events, monkeypatch)
    assert starts(events, since) == expected
    assert_same_results(experiment, reference.dir)


# -- partial and damaged files -----------------------------------------------------------------


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def damage_checkpoint(run: store.RunDir, step: int) -> None:
    """Cuts every array file and the metadata of one orbax step."""
    files = [p for p in (run.checkpoint / str(step)).rglob("*") if p.is_file()]
    for path in files:
        if path.parent.name == "d" or path.name.startswith(("_METADATA", "manifest")):
            cut(path, 0.3)


def drop_eval_rows(experiment, run_id):
    """Rows lost from evals.jsonl: the run's iid_noise test row is gone, its done marker
    stays."""
    path = experiment / store.EVALS
    lines = path.read_text().splitlines(keepends=True)
    lost = (run_id, "final", "test", "iid_noise", 2, "single")
    kept = [x for x in lines if store.row_key(json.loads(x)) != lost]
    assert len(kept) == len(lines) - 1
    path.write_text("".join(kept))


def mid_file_bad_line(experiment, run_id):
    """A torn line in the middle of evals.jsonl, and the run's rows after it lost."""
    path = experiment / store.EVALS
    lines = path.read_text().splitlines(keepends=True)
    mine = [x for x in lines if run_id in x]
    others = [x for x in lines if run_id not in x]
    path.write_text(mine[0][: len(mine[0]) // 2] + "\n" + "".join(others))


# name -> (damage to run 0 of a finished copy, the step run 0 resumes from)
PARTIAL = {
    "no_done_marker": (lambda e, r: r.done.unlink(), 40),
    "torn_done_marker": (lambda e, r: cut(r.done), 40),
    "done_marker_but_rows_missing": (lambda e, r: drop_eval_rows(e, r.run_id), 40),
    "torn_line_mid_evals_and_rows_lost": (lambda e, r: mid_file_bad_line(e, r.run_id), 40),
    "empty_config_json": (lambda e, r: r.config.write_text(""), 40),
    "garbled_config_json": (lambda e, r: cut(r.config), 40),
    "config_json_of_another_run": (
        lambda e, r: shutil.copy(
            next(x for x in store.run_dirs(e) if x.run_id != r.run_id).config, r.config
        ),
        40,
    ),
    # The step-40 curve row is cut: the curve covers step 30, so training resumes at 20.
    "unfinished_truncated_metrics_line": (
        lambda e, r: (r.done.unlink(), r.metrics.write_bytes(r.metrics.read_bytes()[:-9])),
        20,
    ),
    "unfinished_truncated_final_checkpoint": (
        lambda e, r: (r.done.unlink(), damage_checkpoint(r, 40)),
        20,
    ),
    "unfinished_every_checkpoint_truncated": (
        lambda e, r: (r.done.unlink(), damage_checkpoint(r, 40), damage_checkpoint(r, 20)),
        0,
    ),
}


# Reading a damaged checkpoint makes tensorstore call back into orbax's already-closed
# event loop ("Event loop is closed", ignored by Python); the restore itself fails cleanly.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("case", list(PARTIAL))
def test_partial_file_is_detected_never_reported_and_its_run_redone(
    case, space, reference, tmp_path, monkeypatch
):
    experiment = copy_of(reference.dir, tmp_path)
    damaged, intact = (store.RunDir(experiment, run_id) for run_id in reference.ids)
    damage, resume_step = PARTIAL[case]
    damage(experiment, damaged)
    if "config_json" in case:  # the rows are intact; the record of the run is not
        pd.testing.assert_frame_equal(
            quiet(load_results, experiment), quiet(load_results, reference.dir)
        )
    else:
        assert damaged.run_id not in reported_runs(experiment)
    events = tmp_path / "events.jsonl"
    rerun(space, experiment.parent, events, monkeypatch)
    assert starts(events) == {damaged.run_id: [resume_step]}  # the other run is not touched
    assert damaged.is_done() and intact.is_done()
    record = json.loads(damaged.config.read_text())
    assert record == json.loads(
        (reference.dir / "runs" / damaged.run_id / "config.json").read_text()
    )
    assert_same_results(experiment, reference.dir)


def test_report_skips_a_run_whose_done_marker_lists_missing_rows(reference, tmp_path):
    experiment = copy_of(reference.dir, tmp_path)
    drop_eval_rows(experiment, reference.ids[0])
    with pytest.warns(tk.report.ReportWarning, match="missing from evals.jsonl"):
        df = load_results(experiment)
    assert set(df["run_id"]) == {reference.ids[1]}
    with pytest.warns(UserWarning, match="missing from evals.jsonl"):
        assert {r["run_id"] for r in store.read_evals(experiment)} == {reference.ids[1]}


# Reading a damaged checkpoint makes tensorstore call back into orbax's closed event loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_reevaluation_uses_only_the_final_checkpoint_and_changes_nothing(reference, tmp_path):
    """A finished run whose final checkpoint is damaged is skipped, not evaluated from its
    older checkpoint (a different model) nor has its files deleted."""
    experiment = copy_of(reference.dir, tmp_path)
    damaged, intact = (store.RunDir(experiment, run_id) for run_id in reference.ids)
    damage_checkpoint(damaged, 40)
    before = sorted(p.relative_to(experiment) for p in damaged.path.rglob("*"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = reevaluate(
            experiment,
            {"more": {"type": "shifts", "names": ("shuffle",), "severities": (5,)}},
            progress=False,
        )
    messages = [str(w.message) for w in caught]
    assert any("step 40 is unreadable" in m for m in messages)
    assert any("final checkpoint (step 40)" in m and "not re-evaluated" in m for m in messages)
    # the intact run's clean and new shuffle rows, test and validation, final and best
    assert written == 8
    rows = quiet(store.read_jsonl, experiment / store.EVALS)
    assert {r["run_id"] for r in rows if r["eval_set"] == "shuffle"} == {intact.run_id}
    assert sorted(p.relative_to(experiment) for p in damaged.path.rglob("*")) == before


def test_every_file_write_in_the_runner_and_report_is_atomic_or_a_locked_append():
    """Static check: writes to files happen only in the helpers that write atomically
    (temporary file, fsync, rename), append whole lines under a lock, or write inside a
    temporary directory that is renamed into place."""
    allowed = {
        "toolkit/store/files.py": {"atomic_write", "append_jsonl", "replace_dir", "acquire"},
        "toolkit/array_cache.py": {"save"},
        "toolkit/report/plots.py": {"save"},
    }
    writes = re.compile(
        r"\.write_(text|bytes)\(|np\.save|\.savefig\(|json\.dump\(|os\.p?write\("
        r"|\.to_csv\((?!\s*index=)|open\([^)]*[\"'][wax]b?\+?[\"']"
    )
    files = [*ROOT.glob("toolkit/sweep/*.py"), *ROOT.glob("toolkit/report/*.py")]
    files += ROOT.glob("toolkit/store/*.py")
    files += [ROOT / "experiments" / f"{n}.py" for n in ("sweep", "evaluate", "report")]
    files.append(ROOT / "toolkit" / "array_cache.py")  # the sweep's cached evaluation sets
    found: dict[str, set] = {}
    for path in files:
        name, text = str(path.relative_to(ROOT)), path.read_text()
        functions = [
            n
            for n in ast.walk(ast.parse(text))
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        for number, line in enumerate(text.splitlines(), start=1):
            if writes.search(line.split("#")[0]):
                around = [f for f in functions if f.lineno <= number <= f.end_lineno]
                inner = max(around, key=lambda f: f.lineno).name if around else "<module>"
                found.setdefault(name, set()).add(inner)
    assert found["toolkit/store/files.py"] >= {"atomic_write", "append_jsonl", "replace_dir"}
    for name, functions in found.items():
        assert functions <= allowed.get(name, set()), (name, functions)


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_sweeps_started_at_once_train_every_run_exactly_once(space, reference, tmp_path):
    results, events = tmp_path / "results", tmp_path / "events.jsonl"
    extra = ("--config.seeds=3",)
    processes = [start(space, results, events, *extra) for _ in range(2)]
    for process in processes:
        code, log = finish(process, events)
        assert code == 0, log
    experiment = results / "tiny"
    runs = list(store.run_dirs(experiment))
    assert len(runs) == 3 and all(r.is_done() for r in runs)
    assert starts(events) == {r.run_id: [0] for r in runs}  # one start each, from scratch
    rows = rows_by_key(experiment)
    # clean and iid_noise@2 on the test and validation splits, final and best checkpoints
    assert len(rows) == 3 * 2 * 4
    theirs = rows_by_key(reference.dir)
    assert {k: v for k, v in rows.items() if k in theirs} == theirs
    for line in (experiment / store.EVALS).read_text().splitlines():
        json.loads(line)  # no torn or interleaved line
    assert len((experiment / store.EVALS).read_text().splitlines()) == 24


def test_stale_locks_of_dead_processes_are_reclaimed(space, reference, tmp_path, monkeypatch):
    experiment = copy_of(reference.dir, tmp_path)
    forged, orphaned = (store.RunDir(experiment, run_id) for run_id in reference.ids)
    for run in (forged, orphaned):
        run.done.unlink()
    # A lock file naming a process that is gone (never flocked by anyone alive) ...
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    forged.lock.path.write_text(json.dumps({"pid": int(dead.stdout), "host": "elsewhere"}))
    # ... and an flock whose holder was SIGKILLed while holding it.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom toolkit.store import RunLock\n"
            f"assert RunLock({str(orphaned.lock.path)!r}).acquire()\nprint('held', flush=True)\n"
            "time.sleep(600)",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    assert not store.RunLock(orphaned.lock.path).acquire()  # held while it lives
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    events = tmp_path / "events.jsonl"
    rerun(space, experiment.parent, events, monkeypatch)
    assert starts(events) == {forged.run_id: [40], orphaned.run_id: [40]}
    assert_same_results(experiment, reference.dir)


# -- divergence --------------------------------------------------------------------------------

DIVERGING = """
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product


def get_config(variant=""):
    config = base_config("diverging", dataset="mnist1d")
    config.dataset_kwargs = {"num_samples": 300}
    # No validation split: the numpy reference descends on the whole training split.
    config.data_axes.validation_fraction = 0.0
    # Full-batch gradient descent on the square loss: the batch order cannot matter, and
    # at learning rate 10 the iterates grow geometrically until they overflow.
    config.train.update({"model": "linear", "loss": "squared_error", "optimizer": "sgd",
                         "steps": 40, "batch_size": 240, "log_every": 10})
    config.executor = "population"
    config.evals = {"shifts": {"names": ("iid_noise",), "severities": (2,)}}
    return config


def sweep(config):
    # lr 0.3 trains (above chance within 40 steps: not collapsed); lr 10 diverges
    return product(learning_rate=(10.0, 0.3), seed=(0, 1))
"""


def numpy_divergence_step(x, y, seed, learning_rate, steps):
    """Full-batch GD on ``mean_b mean_c (z - onehot)^2`` (Hui & Belkin's square loss,
    k = M = 1) for ``z = x W + b`` in float32,
    from the trainer's documented init (``init`` key of ``split(key(seed), 3)``); the first
    step whose loss or gradient is not finite, or None."""
    cfg = TrainConfig(model="linear", loss="squared_error", optimizer="sgd", batch_size=len(x))
    key = jax.random.split(jax.random.key(seed), 3)[0]
    state = init_state(build_model(cfg, 10), build_optimizer(cfg), jnp.asarray(x), key=key)
    w, b = (np.asarray(state.params["head"][k]) for k in ("kernel", "bias"))
    target = np.eye(10, dtype=np.float32)[y]
    lr = np.float32(learning_rate)
    with np.errstate(all="ignore"):
        for step in range(steps):
            z = x @ w + b
            # Per example the mean over classes, then the batch mean, in that order (float32
            # overflow near the end depends on the order of the sums).
            loss = np.mean(np.mean((z - target) ** 2, axis=-1))
            grad = (np.float32(2.0 / (10 * len(x))) * (z - target)).astype(np.float32)
            gw, gb = x.T @ grad, grad.sum(0)
            if not (np.isfinite(loss) and np.isfinite(gw).all() and np.isfinite(gb).all()):
                return step
            w, b = w - lr * gw, b - lr * gb
    return None


def test_population_with_diverging_members_records_and_reports_them(space, tmp_path, monkeypatch):
    config = tmp_path / "diverging.py"
    config.write_text(DIVERGING)
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(space.cache))
    results = tmp_path / "results"
    assert (
        sweep_cli.main(["--config", str(config), "--results_dir", str(results), "--no_progress"])
        == 0
    )
    experiment = results / "diverging"
    ds = tk.data.load("mnist1d", num_samples=300)
    runs = {}
    for run in store.run_dirs(experiment):
        train = json.loads(run.config.read_text())["train"]
        runs[train["learning_rate"], train["seed"]] = run
    assert len(runs) == 4
    rows = rows_by_key(experiment)
    for (lr, seed), run in runs.items():
        marker = run.done_marker()
        expected = numpy_divergence_step(ds.train.x, ds.train.y, seed, lr, 40)
        assert (expected is not None) == (lr == 10.0)  # lr 10 really diverges, 0.3 does not
        assert marker["diverged_step"] == expected
        mine = [r for k, r in rows.items() if k[0] == run.run_id]
        assert len(mine) == 2 and all(r["diverged_step"] == expected for r in mine)
        steps = [r["step"] for r in run.read_metrics()]
        if expected is None:  # the healthy ones trained on to the end, like solo runs
            assert steps == STEPS and all(r["accuracy"] is not None for r in mine)
            cfg = Trial.from_json(json.loads(run.config.read_text())).train_config()
            state = Checkpoints(run.checkpoint).restore(abstract_state(cfg, 10, (40,)))
            solo = tk.train(ds, verbose=False, devices=1, **cfg.to_dict())
            for got, want in zip(
                jax.tree.leaves(state.params), jax.tree.leaves(solo.params), strict=True
            ):
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
        else:  # stopped in the chunk where it diverged; no metric of a frozen model
            assert steps == [s for s in STEPS if s - 10 <= expected]
            assert all(r["accuracy"] is None and r["nll"] is None for r in mine)

    df = load_results(experiment)
    diverged = df.groupby("run_id")["diverged"].first()
    assert sorted(diverged[diverged].index) == sorted(
        r.run_id for (lr, _), r in runs.items() if lr == 10.0
    )
    assert df.loc[df["diverged"], "accuracy"].isna().all()
    report = build_report(experiment)
    summary = pd.read_csv(io.StringIO(report.files["summary.csv"]))
    by_lr = summary.set_index("learning_rate")
    assert by_lr.loc[10.0, "n_diverged"] == 2 and by_lr.loc[10.0, "n"] == 0
    assert np.isnan(by_lr.loc[10.0, "id_accuracy_mean"])
    healthy = [
        r["accuracy"] for k, r in rows.items() if k[2:4] == ("test", "clean") and r["accuracy"]
    ]
    assert by_lr.loc[0.3, "id_accuracy_mean"] == pytest.approx(np.mean(healthy), abs=1e-6)
    assert by_lr.loc[0.3, "n_diverged"] == 0 and by_lr.loc[0.3, "n"] == 2
    table = report.files["report.md"]
    diverged = "| 0/2 (2 diverged) |"  # finished k/n, the others named
    lines = [x for x in table.splitlines() if x.startswith("| linear") and diverged in x]
    assert len(lines) == 1 and "diverged (2/2)" in lines[0]
    assert not re.search(r"\b10\.00\b", lines[0])  # never a constant predictor's 10%


# -- determinism -------------------------------------------------------------------------------


def test_the_same_config_run_again_gives_identical_numbers(space, reference, tmp_path, monkeypatch):
    """A second sweep of the reference's config, in this process and into another
    directory, trains every run from scratch and gives bit-identical rows, curves and final
    checkpoints (CPU)."""
    events = tmp_path / "events.jsonl"
    rerun(space, tmp_path / "again", events, monkeypatch)
    assert starts(events) == {run_id: [0] for run_id in reference.ids}
    assert_same_results(tmp_path / "again" / "tiny", reference.dir)


# -- no code execution from data ----------------------------------------------------------------

FORBIDDEN = {
    "pickle": re.compile(r"\bimport (c)?pickle\b|\bpickle\.\w|\bimport (dill|cloudpickle)\b"),
    "np.load with pickles": re.compile(r"allow_pickle\s*=\s*True"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
    "unsafe yaml": re.compile(r"yaml\.(unsafe_)?load\s*\((?![^)]*SafeLoader)"),
    "torch.load": re.compile(r"torch\.load\s*\("),
    "shell": re.compile(r"shell\s*=\s*True|os\.system\s*\("),
}


def test_no_source_file_unpickles_or_evaluates_data():
    files = [*ROOT.glob("toolkit/**/*.py"), *ROOT.glob("experiments/**/*.py")]
    assert len(files) > 50
    offences = [
        f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        for what, pattern in FORBIDDEN.items()
        if pattern.search(line.split("#")[0])
    ]
    assert offences == []
    # The patterns do catch what they are meant to.
    assert FORBIDDEN["eval/exec"].search("x = eval(text)")
    assert not FORBIDDEN["eval/exec"].search("ast.literal_eval(text); loader.exec_module(m)")
    assert FORBIDDEN["np.load with pickles"].search("np.load(f, allow_pickle=True)")
    assert FORBIDDEN["pickle"].search("state = pickle.loads(blob)")
    assert not FORBIDDEN["pickle"].search("Nothing is written as a pickle.")


def test_results_and_checkpoints_load_with_pickle_disabled(reference, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    experiment = copy_of(reference.dir, tmp_path)
    run = store.RunDir(experiment, reference.ids[0])
    cfg = Trial.from_json(json.loads(run.config.read_text())).train_config()
    state = Checkpoints(run.checkpoint).restore(abstract_state(cfg, 10, (40,), best=True))
    assert int(state.step) == 40
    # clean, iid_noise@2 on test and validation, final and best checkpoints
    assert len(rows_by_key(experiment)) == 16
    assert len(quiet(load_results, experiment)) == 4  # the report's: the test rows
    assert (
        reevaluate(
            experiment,
            {"s": {"type": "shifts", "names": ("shuffle",), "severities": (5,)}},
            progress=False,
        )
        == 16  # clean and shuffle rows of both runs on test and validation, final and best
    )


def test_a_malicious_results_directory_is_read_as_data_never_run(
    space, reference, tmp_path, monkeypatch
):
    experiment = copy_of(reference.dir, tmp_path)
    sentinel = tmp_path / "PWNED"
    code = f"__import__('pathlib').Path({str(sentinel)!r}).touch()"
    run = store.RunDir(experiment, reference.ids[0])
    record = json.loads(run.config.read_text())
    record["train"] |= {"model": code, "loss": code, "model_hparams": {code: code}}
    run.config.write_text(json.dumps(record))
    # A foreign run directory: its record, marker and rows are code strings too.
    fake = store.RunDir(experiment, "0123456789abcdef")
    fake.path.mkdir()
    fake.config.write_text(json.dumps({**record, "run_id": fake.run_id, "dataset": code}))
    fake.done.write_text(json.dumps({"finished": code, "diverged_step": None, "step": code}))
    row = rows_by_key(experiment)[reference.ids[1], "final", "test", "clean", 0, "single"]
    row = {**row, "run_id": fake.run_id}
    with open(experiment / store.EVALS, "a") as handle:
        handle.write(
            json.dumps(row | {"model": code, "variant": code, "loss_hparams": {code: 1}}) + "\n"
        )

    events = tmp_path / "events.jsonl"
    rerun(space, experiment.parent, events, monkeypatch)  # run 0's record is redone
    assert starts(events) == {run.run_id: [40]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reevaluate(
            experiment,
            {"s": {"type": "shifts", "names": ("shuffle",), "severities": (5,)}},
            progress=False,
        )
    assert any(
        fake.run_id in str(w.message) and "not re-evaluated" in str(w.message) for w in caught
    )
    df = quiet(load_results, experiment)
    assert code in set(df["model"])  # shown as the text it is
    quiet(build_report, experiment)
    assert not sentinel.exists()


WORKER_SCRIPT = """
import multiprocessing, os, time
from concurrent.futures import ProcessPoolExecutor
from toolkit.sweep.workers import die_with_parent

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent)
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl death signal is Linux's")
def test_workers_die_with_a_sigkilled_sweep(tmp_path):
    # A sweep killed with SIGKILL cannot shut its pool down; its workers must not live on
    # as orphans that keep training (and holding run locks) behind the rerun's back.
    script = tmp_path / "pool.py"
    script.write_text(WORKER_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), f"worker {worker} outlived its killed sweep"
    finally:
        parent.kill()


EXITING_WORKER_SCRIPT = """
import atexit, gc, multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
from toolkit.sweep.workers import init_worker, worker_flags


def leave_traces(out):
    def at_exit():
        open(os.path.join(out, "exit_handler"), "w").close()
        # Only the interpreter's teardown collects garbage after the exit handlers.
        gc.callbacks.append(
            lambda phase, info: phase == "stop" and open(os.path.join(out, "teardown"), "w")
        )

    atexit.register(at_exit)
    print("buffered output", end="")  # a pipe: block-buffered until the worker exits
    return os.getpid()


if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=init_worker,
                             initargs=(worker_flags(),)) as pool:
        pool.submit(leave_traces, sys.argv[1]).result()
"""


def test_a_worker_runs_its_exit_handlers_then_skips_the_teardown(tmp_path):
    # Freeing JAX's modules one by one at exit costs each worker ~0.35 s of CPU, which a
    # sweep waits for when it shuts its pool down; everything before that must still run.
    script = tmp_path / "pool.py"
    script.write_text(EXITING_WORKER_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "buffered output"  # flushed
    assert (tmp_path / "exit_handler").exists()  # registered after the worker started
    assert not (tmp_path / "teardown").exists()
