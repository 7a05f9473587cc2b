"""The results layout on disk: atomic files, locked JSONL appends, run dirs and readers.

::

    <experiment>/sweep.json                 the resolved sweep config
    <experiment>/runs/<run_id>/config.json  the trial
    <experiment>/runs/<run_id>/metrics.jsonl training curve, one row per chunk
    <experiment>/runs/<run_id>/checkpoint/  orbax checkpoints (see ``checkpoint``)
    <experiment>/runs/<run_id>/provenance.json
    <experiment>/runs/<run_id>/done         written last: the run is finished (its final
                                            step and the (eval_set, severity) keys of its rows)
    <experiment>/runs/<run_id>/lock         who is training the run (fcntl lock)
    <experiment>/evals.jsonl                one evaluation row per line

Crash safety: whole files are written to a temporary file in the same directory, fsynced
and renamed over the target (``os.replace`` is atomic on POSIX), so a reader sees the old
or the new file, never half of one. JSONL rows are appended as whole lines in one
``write`` under an exclusive ``fcntl.flock``; a line cut short by a crash is isolated by a
newline before the next append, and readers skip it with a warning. Nothing is pickled.

A ``done`` marker counts only when it parses and every eval row it lists is in
``evals.jsonl`` (:func:`finished_run_ids`); a run whose marker fails that is unfinished for
readers, and the runner redoes it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
import socket
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "RunDir",
    "RunLock",
    "append_jsonl",
    "atomic_write_json",
    "done_run_ids",
    "finished_run_ids",
    "json_safe",
    "missing_evals",
    "now",
    "read_evals",
    "read_json",
    "read_jsonl",
    "row_keys",
    "why_incomplete",
]

EVALS = "evals.jsonl"
EVAL_KEY = ("run_id", "eval_set", "severity")


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def json_safe(value: Any) -> Any:
    """NaN and infinities to None (JSON has no NaN); numpy scalars to Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _dumps(value: Any) -> str:
    return json.dumps(json_safe(value), allow_nan=False, sort_keys=False)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are 0600


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` atomically: temp file in the same dir, fsync, rename.

    The file gets the permissions a plain ``open(path, "w")`` would give (umask applied),
    so results stay readable by the collaborators that could read the directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write_text(path, json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any | None:
    """The parsed file, or None when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def append_jsonl(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Appends ``rows`` as whole lines in one write, under an exclusive ``fcntl.flock``.

    If the file ends in a partial line (a writer died mid-line), a newline is written
    first so that the partial line stays on its own and readers can skip it.
    """
    data = "".join(_dumps(row) + "\n" for row in rows).encode()
    if not data:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the flock


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a JSONL file; truncated or unparseable lines are skipped with a warning."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    rows, lines = [], data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            where = "truncated last line" if number == len(lines) else f"bad line {number}"
            warnings.warn(f"{path}: skipping {where}: {line[:60]!r}", stacklevel=2)
            continue
        rows.append(row)
    return rows


class RunLock:
    """An exclusive, non-blocking ``fcntl.flock`` on ``path`` that records the holder.

    The kernel drops a flock when its holder dies, so a lock left by a killed process is
    free again at once (a "stale" lock file is simply reacquired); the file's content (pid,
    host, time) is for people. Two sweep processes, or two machines sharing the directory
    over NFSv4 (whose locks Linux maps flock onto), never hold the same run at once.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True if this process now holds the lock; False if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        holder = _dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode() + b"\n", 0)
        self._fd = fd
        return True

    def holder(self) -> dict[str, Any] | None:
        return read_json(self.path)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class RunDir:
    """Paths and readers/writers of one run's directory."""

    def __init__(self, experiment_dir: str | os.PathLike, run_id: str):
        self.run_id = run_id
        self.path = Path(experiment_dir) / "runs" / run_id
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoint = self.path / "checkpoint"
        self.provenance = self.path / "provenance.json"
        self.done = self.path / "done"
        self.lock = RunLock(self.path / "lock")

    def done_marker(self) -> dict[str, Any] | None:
        """The done marker's content, or None if the run is not finished."""
        marker = read_json(self.done)
        return marker if isinstance(marker, dict) and "finished" in marker else None

    def is_done(self) -> bool:
        return self.done_marker() is not None

    def write_done(
        self,
        diverged_step: int | None,
        *,
        step: int | None = None,
        evals: Iterable[tuple[str, int]] = (),
    ) -> None:
        """The marker: when, the divergence step, the final step (the checkpoint to evaluate
        later) and the ``(eval_set, severity)`` keys of the rows just appended."""
        marker = {
            "finished": now(),
            "diverged_step": diverged_step,
            "step": step,
            "evals": [[name, int(severity)] for name, severity in evals],
        }
        atomic_write_json(self.done, marker)

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics)

    def keep_metrics_until(self, step: int) -> None:
        """Keeps the curve's rows up to ``step`` (the checkpoint a resume starts from): the
        rows in file order while their steps increase, dropping later (and repeated) ones."""
        if not self.metrics.exists():
            return
        rows, last = [], 0
        for row in read_jsonl(self.metrics):
            at = row.get("step")
            if not isinstance(at, int) or not last < at <= step:
                break
            rows.append(row)
            last = at
        atomic_write_text(self.metrics, "".join(_dumps(r) + "\n" for r in rows))


def run_dirs(experiment_dir: str | os.PathLike) -> Iterator[RunDir]:
    runs = Path(experiment_dir) / "runs"
    if runs.is_dir():
        for path in sorted(runs.iterdir()):
            if path.is_dir():
                yield RunDir(experiment_dir, path.name)


def done_run_ids(experiment_dir: str | os.PathLike) -> set[str]:
    """Runs with a readable ``done`` marker (see :func:`finished_run_ids` for complete ones)."""
    return {run.run_id for run in run_dirs(experiment_dir) if run.is_done()}


def missing_evals(marker: Mapping[str, Any], keys: set[tuple[str, int]]) -> list[list]:
    """The ``(eval_set, severity)`` pairs a done marker lists that are not among ``keys``
    (markers written before the list existed list none)."""
    listed = marker.get("evals") or []
    if not isinstance(listed, list):
        return [listed]
    missing = []
    for pair in listed:
        try:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise TypeError
            key = (str(pair[0]), int(pair[1]))
        except (TypeError, ValueError):
            key = None  # a malformed entry: the marker was not written by the runner
        if key not in keys:
            missing.append(pair)
    return missing


def row_keys(rows: Iterable[Mapping[str, Any]]) -> dict[str, set[tuple[str, int]]]:
    """``{run_id: {(eval_set, severity), ...}}`` of well-formed rows."""
    keys: dict[str, set[tuple[str, int]]] = {}
    for row in rows:
        try:
            key = (str(row["eval_set"]), int(row["severity"]))
        except (KeyError, TypeError, ValueError):
            continue
        keys.setdefault(str(row.get("run_id")), set()).add(key)
    return keys


def finished_run_ids(
    experiment_dir: str | os.PathLike, rows: list[dict] | None = None
) -> tuple[set[str], dict[str, str]]:
    """``(finished, incomplete)``: runs whose done marker parses and whose listed eval rows
    are all in ``evals.jsonl`` (``rows``, read if not given), and ``{run_id: why}`` for
    runs with a marker that fails that (e.g. rows lost from ``evals.jsonl``)."""
    if rows is None:
        rows = read_jsonl(Path(experiment_dir) / EVALS)
    keys = row_keys(rows)
    finished, incomplete = set(), {}
    for run in run_dirs(experiment_dir):
        marker = run.done_marker()
        if marker is None:
            continue
        problem = why_incomplete(marker, keys.get(run.run_id, set()))
        if problem:
            incomplete[run.run_id] = problem
        else:
            finished.add(run.run_id)
    return finished, incomplete


def why_incomplete(marker: Mapping[str, Any], keys: set[tuple[str, int]]) -> str | None:
    """Why a done marker does not stand for a finished run given its rows' ``keys``
    (:func:`row_keys`), or None when every row it lists is there."""
    missing = missing_evals(marker, keys)
    if not missing:
        return None
    return (
        f"its done marker lists {len(missing)} eval row(s) missing from {EVALS}, e.g. {missing[0]}"
    )


def read_evals(experiment_dir: str | os.PathLike, *, done_only: bool = True) -> list[dict]:
    """``evals.jsonl`` as rows: the last row per (run_id, eval_set, severity) key wins;
    rows of runs that are not finished (:func:`finished_run_ids`) are skipped (with a
    warning) unless ``done_only=False``."""
    rows = read_jsonl(Path(experiment_dir) / EVALS)
    latest = {tuple(row.get(k) for k in EVAL_KEY): row for row in rows}
    kept = list(latest.values())
    if done_only:
        done, _ = finished_run_ids(experiment_dir, rows)
        unfinished = {row.get("run_id") for row in kept} - done
        if unfinished:
            warnings.warn(
                f"{experiment_dir}: skipping eval rows of {len(unfinished)} run(s) without a "
                f"complete done marker",
                stacklevel=2,
            )
            kept = [row for row in kept if row.get("run_id") in done]
    return kept
