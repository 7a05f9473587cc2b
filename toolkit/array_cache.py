"""Arrays cached on disk across processes: one ``.npz`` file per entry, keyed by a spec.

    path = entry_path("evalsets", {"kind": "noise", "severity": 3})
    arrays = load(path, ("x", "y"))          # None: missing, damaged or incomplete
    if arrays is None:
        save(path, x=x, y=y)                  # atomic: readers never see half a file

Entries live under :func:`cache_root` (``$TOOLKIT_CACHE_DIR``, default
``~/.cache/toolkit``), one folder per kind, named by a hash of the spec, so an entry is
found again by whoever asks with the same spec, in any process. Files hold plain numpy
arrays (no pickle). Nothing is evicted: delete a folder to reclaim its space.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cache_root", "entry_path", "load", "save"]


def cache_root() -> Path:
    """``$TOOLKIT_CACHE_DIR``, else ``~/.cache/toolkit`` (the toolkit's caches live here)."""
    root = os.environ.get("TOOLKIT_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "toolkit").expanduser()


def entry_path(kind: str, spec: Mapping[str, Any]) -> Path:
    """Where the entry for ``spec`` (JSON-serialisable) lives: ``<root>/<kind>/<hash>.npz``."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / kind / f"{digest}.npz"


def save(path: Path, **arrays: np.ndarray) -> None:
    """Writes ``arrays`` atomically (temporary file in the same folder, fsync, rename); a
    failed write leaves no temporary file and no entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` of the entry at ``path``, or None when it is missing, unreadable
    or lacks one of them (the caller then builds the entry again)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
