"""Faults injected into a sweep from outside the toolkit, for the reliability tests.

``python tests/sweep_faults.py --events PATH [--crash name[:count]] -- <sweep arguments>``
runs ``python -m experiments.sweep <sweep arguments>`` after patching toolkit functions in
this process (the reliability configs use the ``inline`` executor, so every run is
trained here), with two kinds of hooks:

* every training start is appended to ``PATH`` as one JSON line
  ``{"event": "train_start", "run_id", "step": <resumed from>, "pid", "time"}``, so a test
  counts the starts of each run across processes, killed ones included;
* ``--crash name[:count]`` SIGKILLs the process the ``count``-th time (default: the first)
  it passes point ``name``. SIGKILL, like a power cut or the OOM killer, runs no cleanup,
  so the files are left exactly as they were. The points:

  - ``train_chunk``: after a training chunk's curve row (and any checkpoint) is written;
  - ``checkpoint_write``: inside an orbax save, after its files are written to the
    temporary directory and before the rename that commits the step;
  - ``before_evals``: a run is trained and checkpointed; its evaluation rows are not written;
  - ``evals_append``: in the middle of the ``evals.jsonl`` append: half the bytes are
    written (and fsynced), then the process dies;
  - ``after_evals``: the evaluation rows are appended; ``provenance.json`` and ``done`` are
    not.

A test in the same process installs the event log alone with :func:`log_starts`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POINTS = ("train_chunk", "checkpoint_write", "before_evals", "evals_append", "after_evals")
Patch = Callable[[Any, str, Any], None]  # setattr, or pytest's monkeypatch.setattr


def kill() -> None:
    """SIGKILLs this process: no ``finally``, no atexit, no flush of Python buffers."""
    os.kill(os.getpid(), signal.SIGKILL)


def parse(spec: str) -> tuple[str, int]:
    """``"name[:count]"`` -> ``(name, count)``; a bad spec names the valid points."""
    name, _, count = spec.partition(":")
    if name not in POINTS or (count and not (count.isdigit() and int(count) > 0)):
        raise ValueError(
            f"crash {spec!r}: expected name[:count] with name one of "
            f"{', '.join(POINTS)} and count a positive int"
        )
    return name, int(count or 1)


def log_starts(events: str | os.PathLike, patch: Patch = setattr) -> None:
    """Appends a ``train_start`` line to ``events`` each time a run is set to train: after
    its checkpoint is restored (``step`` 0 when it starts from scratch)."""
    from toolkit.sweep import execute

    restore = getattr(execute.restore, "__wrapped__", execute.restore)

    @functools.wraps(restore)
    def logged(trial, run_dir, dataset, **options):
        checkpoints, state = restore(trial, run_dir, dataset, **options)
        step = int(state.step) if state is not None else 0
        row = {"event": "train_start", "run_id": trial.run_id, "step": step}
        line = json.dumps({**row, "pid": os.getpid(), "time": time.time()}) + "\n"
        fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one short O_APPEND write: whole lines across processes
        finally:
            os.close(fd)
        return checkpoints, state

    patch(execute, "restore", logged)


@contextlib.contextmanager
def dying_halfway_through_writes_to(path: Path):
    """Inside: the first ``os.write`` to ``path`` writes half its bytes, fsyncs and dies."""
    write = os.write

    def half(fd, data):
        if not (path.exists() and os.path.samestat(os.fstat(fd), os.stat(path))):
            return write(fd, data)
        write(fd, bytes(data[: len(data) // 2]))
        os.fsync(fd)
        kill()

    os.write = half
    try:
        yield
    finally:
        os.write = write


def arm(spec: str) -> None:
    """Makes this process SIGKILL itself at crash point ``spec`` (``name[:count]``)."""
    import orbax.checkpoint as ocp

    from toolkit import store
    from toolkit.sweep import execute

    name, count = parse(spec)
    passes = 0

    def due() -> bool:
        nonlocal passes
        passes += 1
        return passes == count

    if name == "train_chunk":
        recorded = execute.Recorder.__call__

        def record_chunk(self, row, state, *, save):
            recorded(self, row, state, save=save)
            if row is not None and due():  # None: a diverged population member, no write
                kill()

        execute.Recorder.__call__ = record_chunk
    elif name == "checkpoint_write":
        # Orbax's default on a local disk: the files go to a temporary directory that
        # ``finalize`` renames into place. It finalises the item directory inside the
        # step's, then the step's own (named by the step number): one pass per checkpoint.
        atomic = ocp.path.atomicity.AtomicRenameTemporaryPath
        finalize = atomic.finalize

        async def crash_before_commit(self, *args, **kwargs):
            if self.get_final().name.isdigit() and due():
                kill()
            return await finalize(self, *args, **kwargs)

        atomic.finalize = crash_before_commit
    elif name == "before_evals":
        record = execute.record

        def crash_then_record(*args, **kwargs):
            if due():
                kill()
            return record(*args, **kwargs)

        execute.record = crash_then_record
    else:  # evals_append, after_evals: around the append of a run's eval rows
        append = store.append_evals

        def append_rows(experiment_dir, rows, **options):
            if name == "evals_append" and due():
                with dying_halfway_through_writes_to(Path(experiment_dir) / store.EVALS):
                    append(experiment_dir, rows, **options)
            append(experiment_dir, rows, **options)
            if name == "after_evals" and due():
                kill()

        store.append_evals = append_rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", required=True, help="where training starts are logged")
    parser.add_argument("--crash", help="name[:count] of the crash point to die at")
    parser.add_argument("sweep", nargs=argparse.REMAINDER, help="-- then the sweep's arguments")
    args = parser.parse_args(argv)
    sweep_args = args.sweep[1:] if args.sweep[:1] == ["--"] else args.sweep
    log_starts(args.events)
    if args.crash:
        arm(args.crash)
    from experiments import sweep

    return sweep.main(sweep_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
