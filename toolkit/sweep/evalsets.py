"""Named evaluation sets built from a trial's dataset, cached on disk across processes.

Regenerating one shifted MNIST-1D test set runs the whole generator (about a second and a
half on one core), and building the ``tk.shifts`` corruptions of a test split runs each
shift op by op (scikit-learn digits, 20 shifts x 5 severities: 29.6 s the first time,
6.3 s on a warm compilation cache, nearly 700 small programs). Every worker of a sweep,
and every later invocation, needs the same sets, so they are cached as ``.npz`` files
(numpy arrays, no pickle) under ``$TOOLKIT_CACHE_DIR`` (default ``~/.cache/toolkit``).
Workers that start together split the building: each builds the sets no other worker is
building (non-blocking file locks), then waits for the rest.

A shifted set's key holds a hash of the clean test inputs (:func:`array_fingerprint`) and
of the code that computes the shift (:func:`shift_code_fingerprint`: every module of
``toolkit.shifts``, the module that defines the shift, and the JAX version), so an edited
shift or re-prepared data gets new entries. Entries are float32 like the sets themselves:
about 0.1 MB per digits test set (359 images), 31 MB per 10,000-image MNIST set. Delete
``evalsets/`` under the cache directory to reclaim the space.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import array_cache
from toolkit.data import Split

__all__ = [
    "array_fingerprint",
    "cached_sets",
    "regenerated_args",
    "regenerated_sets",
    "shift_code_fingerprint",
]

# Dataset arguments that do not change the generated data.
_NOT_GENERATOR = ("data_dir", "max_examples")


def regenerated_args(dataset_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The clean dataset's MNIST-1D generator arguments from a trial's dataset kwargs."""
    return {k: v for k, v in dataset_kwargs.items() if k not in _NOT_GENERATOR}


def _path(spec: dict[str, Any]) -> Path:
    return array_cache.entry_path("evalsets", spec)


def _save(path: Path, split: Split) -> None:
    array_cache.save(path, x=split.x, y=split.y)


def _load(path: Path) -> Split | None:
    arrays = array_cache.load(path, ("x", "y"))
    return None if arrays is None else Split(arrays["x"], arrays["y"])


def cached_sets(specs: Sequence[dict[str, Any]], build: Callable[..., Split]) -> list[Split]:
    """``build(**spec)`` for each spec, through the disk cache (built once per machine)."""
    paths = [_path(spec) for spec in specs]
    results: list[Split | None] = [_load(p) for p in paths]
    for blocking in (False, True):
        for i, path in enumerate(paths):
            if results[i] is not None:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".lock"), "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    continue  # another process builds it; come back after the others
                results[i] = _load(path)
                if results[i] is None:
                    results[i] = build(**specs[i])
                    _save(path, results[i])
    return [r for r in results if r is not None]


@functools.lru_cache(maxsize=4)
def _regenerated(key: str) -> tuple[Split, ...]:
    from toolkit.shifts.sequence.regenerated import mnist1d_shifted_test

    specs = json.loads(key)
    return tuple(cached_sets(specs, mnist1d_shifted_test))


def regenerated_sets(
    pairs: Sequence[tuple[str, int]], standardize: str, dataset_kwargs: dict[str, Any]
) -> list[Split]:
    """Regenerated MNIST-1D test sets, one per ``(kind, severity)``, in order."""
    args = regenerated_args(dataset_kwargs)
    specs = [{"kind": k, "severity": s, "standardize": standardize, **args} for k, s in pairs]
    return list(_regenerated(json.dumps(specs, sort_keys=True)))


def array_fingerprint(x: np.ndarray) -> str:
    """A hash of an array's bytes, dtype and shape."""
    x = np.ascontiguousarray(x)
    digest = hashlib.blake2b(memoryview(x).cast("B"), digest_size=16)
    digest.update(f"{x.dtype.str} {x.shape}".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=256)
def shift_code_fingerprint(name: str) -> str:
    """A hash of the code behind shift ``name``: every module of ``toolkit.shifts`` (the
    shifts share helpers), the module that defines it (e.g. a config file's own shift),
    and the JAX and jaxlib versions (random bits and kernels)."""
    import jax
    import jaxlib

    from toolkit import shifts

    files = sorted(Path(shifts.__file__).parent.rglob("*.py"))
    source = inspect.getsourcefile(inspect.unwrap(shifts.shifts.entry(name).factory))
    if source is not None and Path(source) not in files:
        files.append(Path(source))
    digest = hashlib.blake2b(f"{jax.__version__} {jaxlib.__version__}".encode(), digest_size=16)
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()
