"""The toolkit's on-disk caches: one folder, one switch, ``.npz`` entries keyed by a spec.

    path = entry_path("evalsets", {"kind": "noise", "severity": 3})   # None when off
    arrays = load(path, ("x", "y"))          # None: off, missing, damaged or incomplete
    if arrays is None:
        save_or_warn(path, "evaluation set", x=x, y=y)   # atomic; warns if it cannot

Entries live under :func:`cache_root` (``$TOOLKIT_CACHE_DIR``, default
``~/.cache/toolkit``), one folder per kind of artefact (``datasets/``, ``evalsets/``;
JAX's compiled programs in ``jax_cache/``), named by a hash of the spec, so an entry is
found again by whoever asks with the same spec, in any process. ``TOOLKIT_CACHE=0`` turns
them all off (:func:`enabled`, read at each call). Files hold plain numpy arrays (no
pickle). Nothing is evicted: delete a folder to reclaim its space.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.store.files import atomic_write

__all__ = [
    "SWITCH",
    "cache_root",
    "enabled",
    "entry_path",
    "load",
    "location",
    "save",
    "save_or_warn",
]

SWITCH = "TOOLKIT_CACHE"


def cache_root() -> Path:
    """``$TOOLKIT_CACHE_DIR``, else ``~/.cache/toolkit`` (the toolkit's caches live here)."""
    root = os.environ.get("TOOLKIT_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "toolkit").expanduser()


def enabled() -> bool:
    """False when ``$TOOLKIT_CACHE`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def location() -> str | None:
    """The cache folder in use, None when off: in-process copies of entries are keyed on it
    too, so that they follow ``$TOOLKIT_CACHE_DIR`` and ``$TOOLKIT_CACHE``."""
    return str(cache_root()) if enabled() else None


def entry_path(kind: str, spec: Mapping[str, Any]) -> Path | None:
    """Where the entry for ``spec`` (JSON-serialisable) lives, ``<root>/<kind>/<hash>.npz``;
    None when the caches are off."""
    if not enabled():
        return None
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / kind / f"{digest}.npz"


def save(path: Path, **arrays: np.ndarray) -> None:
    """Writes ``arrays`` atomically (:func:`toolkit.store.atomic_write`); a failed write
    leaves no temporary file and no entry."""
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def save_or_warn(path: Path | None, what: str, **arrays: np.ndarray) -> None:
    """:func:`save`, or a warning naming ``what`` where the folder cannot be written (read-only,
    full): the caller has the arrays and goes on without the entry. Nothing when off."""
    if path is None:
        return
    try:
        save(path, **arrays)
    except OSError as error:
        warnings.warn(f"could not cache the {what} in {path}: {error}", stacklevel=3)


def load(path: Path | None, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` of the entry at ``path``, or None when the caches are off or it
    is missing, unreadable or lacks one of them (the caller then builds the entry again)."""
    if path is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
