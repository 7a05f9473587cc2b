"""Test hooks for the reliability tests: crash points and an event log. Inert unless the
environment variables below are set (a plain sweep never sets them).

``TOOLKIT_CRASH_AT="name[:count]"`` makes this process SIGKILL itself the ``count``-th time
(default: the first) it passes crash point ``name``; SIGKILL, like a power cut or the OOM
killer, runs no cleanup, so the files are left exactly as they were. The points:

* ``train_chunk``: after a training chunk's curve row (and any checkpoint) is written.
* ``checkpoint_write``: inside an orbax save, after its files are written to the
  temporary directory and before the rename that commits the step.
* ``before_evals``: a run is trained and checkpointed; its evaluation rows are not written.
* ``evals_append``: in the middle of the ``evals.jsonl`` append: half the bytes are
  written (and fsynced), then the process dies.
* ``after_evals``: the evaluation rows are appended; ``provenance.json`` and ``done`` are not.

``TOOLKIT_EVENT_LOG=<path>`` appends one JSON line per training start
(``{"event": "train_start", "run_id": ..., "step": <resumed from>, "pid", "time"}``), so a
test can count the training starts of each run across processes.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

__all__ = [
    "CRASH_ENV",
    "CRASH_POINTS",
    "EVENT_ENV",
    "armed",
    "crash_point",
    "due",
    "kill",
    "log_event",
]

CRASH_ENV = "TOOLKIT_CRASH_AT"
EVENT_ENV = "TOOLKIT_EVENT_LOG"
CRASH_POINTS = ("train_chunk", "checkpoint_write", "before_evals", "evals_append", "after_evals")
_passes: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(CRASH_ENV, "")
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in CRASH_POINTS or (count and not count.isdigit()):
        raise ValueError(
            f"{CRASH_ENV}={spec!r}: expected name[:count] with name one of "
            f"{', '.join(CRASH_POINTS)} and count a positive int"
        )
    return name, int(count or 1)


def armed(name: str) -> bool:
    """Whether ``TOOLKIT_CRASH_AT`` names crash point ``name`` (passes are not counted)."""
    target = _target()
    return target is not None and target[0] == name


def kill() -> None:
    """SIGKILLs this process: no ``finally``, no atexit, no flush of Python buffers."""
    os.kill(os.getpid(), signal.SIGKILL)


def due(name: str) -> bool:
    """Counts a pass through crash point ``name``; True on the pass that should crash."""
    if not armed(name):
        return False
    _passes[name] = _passes.get(name, 0) + 1
    return _passes[name] == _target()[1]


def crash_point(name: str) -> None:
    """Dies here if ``TOOLKIT_CRASH_AT`` names this point and this pass."""
    if due(name):
        kill()


def log_event(event: str, **fields: Any) -> None:
    """Appends ``{"event": event, "pid": ..., **fields}`` to ``$TOOLKIT_EVENT_LOG`` if set."""
    path = os.environ.get(EVENT_ENV)
    if not path:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), "time": time.time(), **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one short O_APPEND write: whole lines across processes
    finally:
        os.close(fd)
