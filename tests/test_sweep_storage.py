"""The results store: atomic writes, locked JSONL appends, run locks across processes,
readers that skip partial data, and orbax checkpoints that restore real TrainStates."""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolkit import store
from toolkit.sweep.checkpoint import Checkpoints, abstract_state
from toolkit.sweep.execute import SaveSchedule
from toolkit.training import TrainConfig, TrainState, build_model, build_optimizer, init_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python(code: str, **kwargs) -> subprocess.Popen:
    """A fresh interpreter running ``code`` with the repo importable (no JAX imported)."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, **kwargs)


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    store.atomic_write_json(path, {"x": 1, "nan": float("nan")})
    assert json.loads(path.read_text()) == {"x": 1, "nan": None}

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.atomic_write_json(path, {"x": 2})
    # The old content survives a failed write, and the temporary file is cleaned up.
    assert json.loads(path.read_text()) == {"x": 1, "nan": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_jsonl_skips_truncated_line_and_appends_after_it(tmp_path):
    path = tmp_path / "rows.jsonl"
    store.append_jsonl(path, [{"a": 1, "b": float("inf")}, {"a": 2, "b": np.float32(0.5)}])
    with open(path, "ab") as handle:  # a writer died mid-line
        handle.write(b'{"a": 3, "b"')
    with pytest.warns(UserWarning, match="truncated last line"):
        assert store.read_jsonl(path) == [{"a": 1, "b": None}, {"a": 2, "b": 0.5}]
    store.append_jsonl(path, [{"a": 4}])
    # The partial line is isolated on its own line; the new row is intact.
    assert path.read_bytes().count(b"\n") == 4
    with pytest.warns(UserWarning, match="unparsable line 3"):
        assert [r["a"] for r in store.read_jsonl(path)] == [1, 2, 4]


def test_concurrent_appends_from_two_processes_keep_every_line_whole(tmp_path):
    path = tmp_path / "rows.jsonl"
    code = f"""
        import sys
        from toolkit.store import append_jsonl
        for i in range(200):
            append_jsonl({str(path)!r}, [{{"writer": sys.argv[1], "i": i, "pad": "x" * 5000}}])
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), name],
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    rows = store.read_jsonl(path)
    assert len(rows) == 400
    for writer in ("a", "b"):
        assert [r["i"] for r in rows if r["writer"] == writer] == list(range(200))


def test_run_lock_excludes_a_live_holder_and_reclaims_a_dead_one(tmp_path):
    lock_path = tmp_path / "run" / "lock"
    holder = python(
        f"""
        import sys, time
        from toolkit.store import RunLock
        lock = RunLock({str(lock_path)!r})
        assert lock.acquire()
        print("held", flush=True)
        time.sleep(60)
        """,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = store.RunLock(lock_path)
        assert not lock.acquire()
        assert lock.holder()["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without cleaning up: its lock file (with its pid) is stale.
    assert json.loads(lock_path.read_text())["pid"] == holder.pid
    lock = store.RunLock(lock_path)
    assert lock.acquire()
    assert lock.holder()["pid"] == os.getpid()
    # Within one process a second handle is excluded too (flock is per open file).
    assert not store.RunLock(lock_path).acquire()
    lock.release()
    assert store.RunLock(lock_path).acquire()


def test_read_evals_keeps_last_row_per_key_and_only_done_runs(tmp_path):
    rows = [
        {"run_id": "r1", "eval_set": "clean", "kind": "clean", "severity": 0, "accuracy": 0.1},
        {"run_id": "r1", "eval_set": "rotate", "kind": "shift", "severity": 2, "accuracy": 0.2},
        {"run_id": "r2", "eval_set": "clean", "kind": "clean", "severity": 0, "accuracy": 0.3},
        # re-evaluated
        {"run_id": "r1", "eval_set": "clean", "kind": "clean", "severity": 0, "accuracy": 0.4},
    ]
    store.append_jsonl(tmp_path / "evals.jsonl", rows)
    store.RunDir(tmp_path, "r1").write_done(None)
    (tmp_path / "runs" / "r2").mkdir()  # r2 never finished
    with pytest.warns(UserWarning, match="1 run"):
        kept = store.read_evals(tmp_path)
    assert sorted((r["eval_set"], r["accuracy"]) for r in kept) == [("clean", 0.4), ("rotate", 0.2)]
    assert len(store.read_evals(tmp_path, done_only=False)) == 3


def test_row_key_has_checkpoint_and_split_and_old_rows_and_markers_still_read(tmp_path):
    """Rows of one set on the test and validation splits, final and best checkpoints, are
    four rows; an old row (no checkpoint, no split) is the final checkpoint on the test set,
    so a re-evaluation's new-style row replaces it; old markers list [eval_set, severity]."""

    def row(accuracy, **key):
        return {"run_id": "r1", "eval_set": "clean", "kind": "clean", "severity": 0,
                "accuracy": accuracy, **key}  # fmt: skip

    rows = [
        row(0.1),  # an old row
        row(0.2, checkpoint="best", split="test"),
        row(0.3, checkpoint="final", split="validation"),
        row(0.4, checkpoint="best", split="validation"),
        row(0.5, checkpoint="final", split="test"),  # re-evaluated: replaces the old row
        # The MC-dropout average of the same run, set and checkpoint: a row of its own.
        row(0.6, checkpoint="final", split="test", predictor="mc_dropout"),
    ]
    store.append_jsonl(tmp_path / "evals.jsonl", rows)
    run = store.RunDir(tmp_path, "r1")
    run.write_done(None, evals=[store.row_key(r)[1:] for r in rows[1:]], status="finished")
    marker = run.done_marker()
    assert marker["status"] == "finished"
    assert sorted(marker["evals"]) == [
        ["best", "test", "clean", 0],
        ["best", "validation", "clean", 0],
        ["final", "test", "clean", 0],
        ["final", "test", "clean", 0, "mc_dropout"],
        ["final", "validation", "clean", 0],
    ]
    kept = store.read_evals(tmp_path)
    assert sorted(r["accuracy"] for r in kept) == [0.2, 0.3, 0.4, 0.5, 0.6]
    assert store.EVAL_KEY == (
        "run_id", "checkpoint", "split", "eval_set", "severity", "predictor"
    )  # fmt: skip
    # The MC row's marker entry is not satisfied by the single model's row.
    mc_marker = {"finished": "now", "evals": [["final", "test", "clean", 0, "mc_dropout"]]}
    assert store.missing_evals(mc_marker, store.row_keys(rows[:5])["r1"]) == [
        ["final", "test", "clean", 0, "mc_dropout"]
    ]
    assert store.missing_evals(mc_marker, store.row_keys(rows)["r1"]) == []

    # An old marker ([eval_set, severity]) is satisfied by an old row, and by a new one.
    old = {"finished": "then", "evals": [["clean", 0]]}
    assert store.missing_evals(old, store.row_keys([rows[0]])["r1"]) == []
    assert store.missing_evals(old, store.row_keys([rows[4]])["r1"]) == []
    assert store.missing_evals(old, store.row_keys([rows[2]])["r1"]) == [["clean", 0]]
    new = {"finished": "now", "evals": [["best", "validation", "clean", 0], ["clean"]]}
    assert store.missing_evals(new, store.row_keys(rows)["r1"]) == [["clean"]]  # malformed
    # A lost validation row makes the run incomplete.
    (tmp_path / "evals.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows if r.get("split") != "validation")
    )
    finished, incomplete = store.finished_run_ids(tmp_path)
    assert not finished and "2 eval row(s) missing" in incomplete["r1"]


def saved_chunks(every, interval_s, chunk_seconds, chunks=12):
    now = [0.0]
    schedule = SaveSchedule(every, interval_s, clock=lambda: now[0])
    saved = []
    for chunk in range(1, chunks + 1):
        now[0] += chunk_seconds
        if schedule.due():
            saved.append(chunk)
    return saved


def test_save_schedule_spaces_checkpoints_by_chunks_and_seconds():
    # 3 s chunks, every 2nd chunk, 10 s apart: chunk 2 ends at 6 s (too early), 4 at 12 s
    # (save), 6 at 18 s (6 s after it), 8 at 24 s (save), 10 at 30 s, 12 at 36 s (save).
    assert saved_chunks(every=2, interval_s=10.0, chunk_seconds=3.0) == [4, 8, 12]
    assert saved_chunks(every=2, interval_s=0.0, chunk_seconds=3.0) == [2, 4, 6, 8, 10, 12]
    assert saved_chunks(every=5, interval_s=0.0, chunk_seconds=0.0) == [5, 10]
    assert saved_chunks(every=1, interval_s=60.0, chunk_seconds=0.05) == []
    # Long chunks: the interval has always passed, so the chunk count decides.
    assert saved_chunks(every=3, interval_s=1.0, chunk_seconds=5.0) == [3, 6, 9, 12]


def test_keep_metrics_until_drops_rows_after_the_checkpoint(tmp_path):
    run = store.RunDir(tmp_path, "r")
    store.append_jsonl(run.metrics, [{"step": s, "loss": 1.0 / s} for s in (10, 20, 30)])
    run.keep_metrics_until(20)
    assert [r["step"] for r in run.read_metrics()] == [10, 20]
    assert not run.is_done()
    run.done.write_text("{not json")  # a torn marker is not a finished run
    assert not run.is_done()


TINY = TrainConfig(model="linear", optimizer="adam", batch_size=4, steps=3)


def tiny_state(seed: int, step: int) -> TrainState:
    model, tx = build_model(TINY, 3), build_optimizer(TINY)
    state = init_state(model, tx, jnp.zeros((4, 5)), key=jax.random.key(seed))
    return state.replace(step=jnp.asarray(step, jnp.int32))


# Reading a damaged checkpoint makes tensorstore call back into orbax's already-closed
# event loop ("Event loop is closed", ignored by Python); the restore itself fails cleanly.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_checkpoint_restores_a_trainstate_and_falls_back_past_a_damaged_step(tmp_path):
    checkpoints = Checkpoints(tmp_path / "ckpt")
    abstract = abstract_state(TINY, 3, (5,))
    assert checkpoints.restore(abstract) is None
    older, newer = tiny_state(1, 10), tiny_state(2, 20)
    checkpoints.save(older)
    checkpoints.save(newer)
    checkpoints.save(newer)  # a step already saved is left alone
    assert checkpoints.steps() == [10, 20]
    restored = checkpoints.restore(abstract)
    # The real pytree types come back (TrainState, optax states), not nested dicts.
    assert isinstance(restored, TrainState)
    assert jax.tree.structure(restored) == jax.tree.structure(newer)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(newer), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    for path in glob.glob(str(tmp_path / "ckpt" / "20" / "**" / "d" / "*"), recursive=True):
        with open(path, "r+b") as handle:  # truncate the array data of step 20
            handle.truncate(os.path.getsize(path) // 2)
    checkpoints.close()
    with pytest.warns(UserWarning, match="step 20 is unreadable"):
        restored = Checkpoints(tmp_path / "ckpt").restore(abstract)
    assert int(restored.step) == 10
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(older), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert Checkpoints(tmp_path / "ckpt").steps() == [10]  # the damaged step is gone


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    # mkstemp creates 0600 files: results shared on a cluster would be unreadable to the
    # rest of the group. A plain open() (umask applied) is the reference.
    from toolkit.store import atomic_write_text

    atomic_write_text(tmp_path / "atomic.json", "{}")
    with open(tmp_path / "plain.json", "w") as handle:
        handle.write("{}")
    mode = (tmp_path / "atomic.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.json").stat().st_mode & 0o777


def test_file_lock_excludes_a_second_holder_until_released(tmp_path):
    """flock locks belong to an open file: a second holder (here a second open of the same
    file, as another process would) is refused without blocking, then gets it."""
    path = tmp_path / "sub" / "x.lock"
    with store.file_lock(path) as first:
        assert first and path.exists()
        with store.file_lock(path, blocking=False) as second:
            assert not second
    with store.file_lock(path, blocking=False) as third:
        assert third
    assert path.read_bytes() == b""  # a lock file, never written
