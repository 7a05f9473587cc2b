"""Named evaluation sets built from a trial's dataset, cached on disk across processes.

Regenerating one shifted MNIST-1D test set runs the whole generator (about a second and a
half on one core), and every worker of a sweep needs the same sets, so they are cached as
``.npz`` files (numpy arrays, no pickle) under ``$TOOLKIT_CACHE_DIR`` (default
``~/.cache/toolkit``). Workers that start together split the building: each builds the
sets no other worker is building (non-blocking file locks), then waits for the rest.
"""

from __future__ import annotations

import fcntl
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toolkit import array_cache
from toolkit.data import Split

__all__ = ["cached_sets", "regenerated_args", "regenerated_sets"]

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
