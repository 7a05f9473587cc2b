"""Evaluation sets (shifted, regenerated, far-OOD), cached on disk across processes.

Building the ``tk.shifts`` corruptions of a test split runs each image shift op by op
(scikit-learn digits, 20 shifts x 5 severities: 29.6 s the first time, 6.3 s on a warm
compilation cache, nearly 700 small programs), and regenerating a shifted MNIST-1D test
set runs the whole generator (about a second and a half on one core). Every worker of a
sweep, every later sweep and every notebook that evaluates a run under shift needs the same
sets, so :func:`cached_sets`, the one way every set is built, keeps them as entries of
:mod:`toolkit.array_cache` (``evalsets/`` under ``$TOOLKIT_CACHE_DIR``; off with
``TOOLKIT_CACHE=0``). Processes that start together split the building: each builds the
sets no other process is building (non-blocking file locks), then waits for the rest.

A shifted set's key (:func:`shifted_sets`) holds a hash of the clean inputs
(:func:`array_fingerprint`), the PRNG key, the shift's name and severity, and a hash of the
code that computes the shift (:func:`shift_code_fingerprint`: every module of
``toolkit.shifts``, the module that defines the shift, and the JAX version), so an edited
shift or other data gets new entries; far-OOD sets (:func:`ood_set`) are keyed on
:func:`ood_code_fingerprint`. Entries are float32 like the sets themselves: about 0.1 MB
per digits test set (359 images), 31 MB per 10,000-image MNIST set. Where the cache folder
cannot be written, a warning says so and the sets are built in memory.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import inspect
import json
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit import array_cache
from toolkit.data import Split
from toolkit.store.files import file_lock

__all__ = [
    "array_fingerprint",
    "cached_sets",
    "ood_code_fingerprint",
    "ood_set",
    "set_key",
    "shift_code_fingerprint",
    "shifted_set",
    "shifted_sets",
]


KIND = "evalsets"


def _path(spec: dict[str, Any]) -> Path | None:
    return array_cache.entry_path(KIND, spec)


def _save(path: Path, split: Split) -> None:
    array_cache.save(path, x=split.x, y=split.y)


def _load(path: Path) -> Split | None:
    arrays = array_cache.load(path, ("x", "y"))
    return None if arrays is None else Split(arrays["x"], arrays["y"])


# Sets kept in this process by ``cached_sets(..., keep=True)`` (a sweep worker evaluates many
# runs on the same sets: reading 100 shifted MNIST sets back for every run would read 3 GB),
# keyed on the cache folder in use and the entry's spec; the least recently used go first.
_KEPT: collections.OrderedDict[tuple[str | None, str], Split] = collections.OrderedDict()
KEEP_MAX = 256


def cached_sets(
    specs: Sequence[dict[str, Any]], build: Callable[..., Split], *, keep: bool = False
) -> list[Split]:
    """``build(**spec)`` for each spec, through the disk cache (built once per machine);
    with ``keep``, also kept in this process (up to ``KEEP_MAX`` sets)."""
    if not keep:
        return _disk_cached_sets(specs, build)
    keys = [(array_cache.location(), json.dumps(spec, sort_keys=True)) for spec in specs]
    missing = [i for i, k in enumerate(keys) if k not in _KEPT]
    built = _disk_cached_sets([specs[i] for i in missing], build) if missing else []
    for i, split in zip(missing, built, strict=True):
        _KEPT[keys[i]] = split
    results = []
    for k in keys:
        _KEPT.move_to_end(k)
        results.append(_KEPT[k])
    while len(_KEPT) > max(KEEP_MAX, len(keys)):
        _KEPT.popitem(last=False)
    return results


def _disk_cached_sets(specs: Sequence[dict[str, Any]], build: Callable[..., Split]) -> list[Split]:
    if not array_cache.enabled():
        return [build(**spec) for spec in specs]
    paths = [_path(spec) for spec in specs]
    results: list[Split | None] = [_load(p) for p in paths]
    try:
        for blocking in (False, True):
            for i, path in enumerate(paths):
                if results[i] is not None:
                    continue
                with file_lock(path.with_suffix(".lock"), blocking=blocking) as held:
                    if not held:
                        continue  # another process builds it; come back after the others
                    results[i] = _load(path)
                    if results[i] is None:
                        results[i] = build(**specs[i])
                        _save(path, results[i])
    except OSError as error:  # a read-only or full cache folder: the sets are still built
        warnings.warn(
            f"could not cache evaluation sets in {paths[0].parent}: {error}", stacklevel=2
        )
        results = [r if r is not None else build(**s) for r, s in zip(results, specs, strict=True)]
    return [r for r in results if r is not None]


def array_fingerprint(x: np.ndarray) -> str:
    """A hash of an array's bytes, dtype and shape."""
    x = np.ascontiguousarray(x)
    digest = hashlib.blake2b(memoryview(x).cast("B"), digest_size=16)
    digest.update(f"{x.dtype.str} {x.shape}".encode())
    return digest.hexdigest()


def _code_fingerprint(factory: Callable, folders: Sequence[Path], versions: str) -> str:
    """A hash of ``versions`` and of every module under ``folders`` plus the one that
    defines ``factory`` (e.g. a config file's own shift or OOD set)."""
    files = sorted(path for folder in folders for path in folder.rglob("*.py"))
    source = inspect.getsourcefile(inspect.unwrap(factory))
    if source is not None and Path(source) not in files:
        files.append(Path(source))
    digest = hashlib.blake2b(versions.encode(), digest_size=16)
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _jax_versions() -> str:
    import jaxlib

    return f"{jax.__version__} {jaxlib.__version__}"


def shift_code_fingerprint(name: str) -> str:
    """A hash of the code behind shift ``name``: every module of ``toolkit.shifts`` (the
    shifts share helpers), the module that defines it (e.g. a config file's own shift),
    and the JAX and jaxlib versions (random bits and kernels)."""
    from toolkit import shifts

    factory = shifts.shifts.entry(name).factory
    return _code_fingerprint(factory, [Path(shifts.__file__).parent], _jax_versions())


# What the registered far-OOD sets are built with besides JAX: numpy and scipy, the MNIST-1D
# generator (unseen templates) and scikit-learn's sample images read with Pillow (patches).
_OOD_PACKAGES = ("numpy", "scipy", "mnist1d", "scikit-learn", "pillow")


def ood_code_fingerprint(name: str) -> str:
    """A hash of the code behind far-OOD set ``name``: every module of ``toolkit.ood`` and
    ``toolkit.data`` (the MNIST-1D generator and its arguments), the module that defines
    it, and the versions of JAX and of the packages the sets are built with."""
    from toolkit import data, ood

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "none"

    folders = [Path(module.__file__).parent for module in (ood, data)]
    versions = " ".join([_jax_versions(), *(f"{p}={version(p)}" for p in _OOD_PACKAGES)])
    return _code_fingerprint(ood.ood_sets.entry(name).factory, folders, versions)


def set_key(key: jax.Array, name: str) -> jax.Array:
    """The key the evaluation set ``name`` (a shift, a generated OOD set) draws from:
    ``fold_in(key, crc32(name))``, stable across processes (unlike ``hash``); every
    severity of a shift uses it, so they corrupt with the same noise."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()))


def _key_spec(key: jax.Array) -> tuple[str, tuple[int, ...]]:
    """A typed PRNG key as (impl name, key data): what a cache key holds of it."""
    return str(jax.random.key_impl(key)), tuple(np.asarray(jax.random.key_data(key)).tolist())


def shifted_set(split: Split, name: str, severity: int, *, key: jax.Array) -> Split:
    """``split`` with shift ``name`` at ``severity`` applied to its inputs (labels kept)."""
    from toolkit import shifts

    x = shifts.apply(name, jnp.asarray(split.x), key=set_key(key, name), severity=severity)
    return Split(np.asarray(x), split.y)


def shifted_sets(
    split: Split, pairs: Sequence[tuple[str, int]], *, key: jax.Array, keep: bool = False
) -> list[Split]:
    """:func:`shifted_set` for each ``(name, severity)`` pair, through the disk cache.

    Equal to building them in memory; the labels are always ``split``'s own (the key hashes
    only the inputs, which are all a shift reads).
    """
    data = array_fingerprint(np.asarray(split.x))
    impl, key_data = _key_spec(key)
    key_spec = {"impl": impl, "data": list(key_data)}
    specs = [
        {
            "shift": name,
            "severity": int(severity),
            "key": key_spec,
            "data": data,
            "code": shift_code_fingerprint(name),
        }
        for name, severity in pairs
    ]

    def build(shift: str, severity: int, **_: Any) -> Split:
        return shifted_set(split, shift, severity, key=key)

    return [Split(s.x, split.y) for s in cached_sets(specs, build, keep=keep)]


def ood_set(name: str, shape: tuple[int, ...], *, key: jax.Array, num: int) -> np.ndarray:
    """``tk.ood.load_ood(name, shape, key=key, num=num)`` through the disk cache.

    A sweep evaluates every run against the same far-OOD sets (one fixed key), and the
    generated ones are not cheap: ``mnist1d_unseen_templates`` imports the MNIST-1D
    generator (about 1.5 s) and runs it in numpy (about 0.7 s for 1,000 sequences), which
    a sweep worker paid for every run. The key holds the name, shape, size, PRNG key and
    :func:`ood_code_fingerprint`.
    """
    from toolkit import ood

    shape = tuple(int(d) for d in shape)
    impl, key_data = _key_spec(key)
    spec = {
        "ood": name,
        "shape": list(shape),
        "num": int(num),
        "key": {"impl": impl, "data": list(key_data)},
        "code": ood_code_fingerprint(name),
    }

    def build(**_: Any) -> Split:
        x = np.asarray(ood.load_ood(name, shape, key=key, num=int(num)))
        return Split(x, np.zeros(len(x), np.int32))  # unlabelled: the cache stores splits

    (split,) = cached_sets([spec], build)
    return split.x
