"""Crash-safe files: atomic writes, locked JSONL appends, tolerant readers, a run lock.

Whole files are written to a temporary file in the same directory, fsynced and renamed
over the target (``os.replace`` is atomic on POSIX), so a reader sees the old or the new
file, never half of one. JSONL rows are appended as whole lines in one ``write`` under an
exclusive ``fcntl.flock``; a line cut short by a crash is isolated by a newline before the
next append, and readers skip it with a :class:`ResultsWarning`. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import json
import math
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "ResultsWarning",
    "RunLock",
    "append_jsonl",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "file_lock",
    "json_safe",
    "nearest_existing",
    "now",
    "read_json",
    "read_jsonl",
    "replace_dir",
    "why_not_writable",
]


class ResultsWarning(UserWarning):
    """Lines, rows or runs of a results directory skipped as damaged or unfinished."""


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


def dumps(value: Any) -> str:
    """One JSON line (no newline): :func:`json_safe` values, keys in their order."""
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


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Writes ``path`` atomically: ``write(handle)`` fills a temporary file in the same
    directory, which is fsynced and renamed over ``path``; a failed write leaves neither.

    The file gets the permissions a plain ``open(path, "w")`` would give (umask applied),
    so results stay readable by the collaborators that could read the directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write` of ``text`` (UTF-8)."""
    atomic_write(path, lambda handle: handle.write(text.encode()))


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``fcntl.flock`` on ``path`` for the block; yields whether it is held
    (False only with ``blocking=False`` while another process holds it). For work done
    once by whichever process comes first (preparing a dataset, building an eval set);
    :class:`RunLock` is the lock a run is trained under."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # opened to lock, never written
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write_text(path, json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n")


def _held_dir(parent: Path, prefix: str) -> tuple[Path, int]:
    """A new directory in ``parent`` and an fd holding an exclusive ``fcntl.flock`` on it
    (Linux locks directories as it does files): the mark of a live writer, dropped when it
    dies. Made again if another writer's :func:`_remove_stale` removed it before the lock."""
    while True:
        path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return path, fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _remove_stale(directory: Path) -> None:
    """Removes the temporary directories :func:`replace_dir` left beside ``directory`` when
    killed: those whose flock no process holds (a concurrent writer's live one is held)."""
    for kind in ("tmp", "old"):
        for leftover in directory.parent.glob(f".{glob.escape(directory.name)}.{kind}-*"):
            try:
                fd = os.open(leftover, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:  # gone meanwhile, or not a directory
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live replace_dir holds it
            else:
                shutil.rmtree(leftover, ignore_errors=True)
            finally:
                os.close(fd)


def replace_dir(directory: str | os.PathLike, files: Mapping[str, bytes]) -> list[Path]:
    """Makes ``directory`` hold exactly ``files`` (``{name: content}``), replacing it whole.

    The files are written and fsynced in a temporary directory beside it, which then takes
    its place, so a reader never sees a mix of old and new files. rename(2) cannot replace
    a non-empty directory, so an old one is first moved aside and removed afterwards. The
    temporary directories are flocked while in use, so the ones a killed writer left are
    told from a concurrent writer's and removed first. Returns the written paths, sorted.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(directory)
    tmp, fd = _held_dir(directory.parent, f".{directory.name}.tmp-")
    held = [fd]
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; results are for everyone to read
        for name, content in files.items():
            with open(tmp / name, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        old = None
        if directory.exists():
            old, fd = _held_dir(directory.parent, f".{directory.name}.old-")
            held.append(fd)
            os.replace(directory, old / directory.name)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for fd in held:
            os.close(fd)
    return sorted(directory / name for name in files)


def read_json(path: str | os.PathLike) -> Any | None:
    """The parsed file, or None when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _locked_append_fd(path: Path) -> int:
    """An fd of ``path`` (created if missing) under an exclusive ``fcntl.flock``, opened
    again if the file was replaced (:func:`append_jsonl` with ``replace``) while waiting."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _without(data: bytes, replace: Callable[[dict], bool]) -> bytes:
    """The whole JSON-object lines of ``data`` that ``replace`` does not select."""
    kept = []
    for raw in data.split(b"\n"):
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # blank, or a line cut short by a killed writer
        if isinstance(row, dict) and not replace(row):
            kept.append(raw + b"\n")
    return b"".join(kept)


def append_jsonl(
    path: str | os.PathLike,
    rows: Iterable[Mapping[str, Any]],
    *,
    replace: Callable[[dict], bool] | None = None,
    hints: Iterable[bytes] = (),
) -> None:
    """Appends ``rows`` as whole lines in one write, under an exclusive ``fcntl.flock``.

    If the file ends in a partial line (a writer died mid-line), a newline is written
    first so that the partial line stays on its own and readers can skip it. With
    ``replace``, the lines whose row it selects and the lines that do not parse are removed
    in the same locked step, by writing the file anew (:func:`atomic_write`); that happens
    only when the file holds one of ``hints`` (bytes every selected line contains) or ends
    in a partial line, so an ordinary append never reads the rows.
    """
    data = "".join(dumps(row) + "\n" for row in rows).encode()
    if not data:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _locked_append_fd(path)
    try:
        size = os.fstat(fd).st_size
        torn = size and os.pread(fd, 1, size - 1) != b"\n"
        if replace is not None:
            old = os.pread(fd, size, 0) if size else b""
            if torn or any(hint in old for hint in hints):
                atomic_write(path, lambda handle: handle.write(_without(old, replace) + data))
                return  # waiting appenders find the new file (_locked_append_fd)
        if torn:
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the flock


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per line ([] if it is missing).

    A line that is not a JSON object is skipped with a :class:`ResultsWarning`: a last line
    without its newline is a write cut short unless it parses as a whole object (a cut
    object never does); the writer starts its next append on a new line.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    rows = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            what = (
                f"a truncated last line {number} ({len(raw)} bytes, no newline)"
                if number == len(lines)
                else f"unparsable line {number}: {err}"
            )
            warnings.warn(f"{path}: skipped {what}", ResultsWarning, stacklevel=2)
            continue
        if not isinstance(row, dict):
            warnings.warn(
                f"{path}: skipped line {number}: a JSON {type(row).__name__}, not an object",
                ResultsWarning,
                stacklevel=2,
            )
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
        holder = dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now()})
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


def why_not_writable(directory: str | os.PathLike) -> str | None:
    """Why no file can be made in ``directory`` (the OS's words), or None when one can:
    tried by making and removing one, the answer the writes that follow would get
    (permissions, ACLs, a read-only mount), where ``os.access`` says yes to root."""
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".write-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as error:
        return error.strerror or str(error)
    return None


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path`` if it exists, else its nearest existing ancestor: where making ``path``
    would start, and so what to check before writing (a file there: nothing can be made)."""
    path = Path(path)
    return next(p for p in (path, *path.parents) if p.exists())
