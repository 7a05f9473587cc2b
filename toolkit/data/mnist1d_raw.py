"""Raw (unstandardized) MNIST-1D, generated step by step as ``mnist1d.data.make_dataset`` does.

``make_dataset`` standardizes each dataset by its own scalar mean and standard deviation,
which a regenerated (shifted) test set must not do: a model trained on the clean set saw
inputs ``(raw - mean_clean) / std_clean``, so a shifted set is only comparable in those same
coordinates. The generator does not return its mean, so this module repeats its loop
(same seed, same order of random draws, same templates and ``mnist1d.transform.transform``)
and stops before the standardization. ``tests/test_shifts_sequence.py`` checks that the
result standardized by its own statistics equals ``toolkit.data.offline.mnist1d_arrays``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from toolkit import array_cache
from toolkit.data.offline import validate_mnist1d_args

__all__ = [
    "RawMNIST1D",
    "generator_fingerprint",
    "generator_namespace",
    "global_numpy_seed",
    "raw_mnist1d",
    "raw_stats",
]


class RawMNIST1D(NamedTuple):
    """Generator output before standardization: ``x`` (N, L) float64, ``y`` (N,), train size."""

    x: np.ndarray
    y: np.ndarray
    num_train: int


def generator_namespace(args: dict[str, Any]) -> Any:
    """The attribute-style ``args`` object that ``mnist1d.transform.transform`` reads."""
    from mnist1d.utils import ObjectView

    return ObjectView(dict(args))


@contextlib.contextmanager
def global_numpy_seed(seed: int) -> Iterator[None]:
    """Seeds numpy's global RNG (mnist1d draws from it) and restores the caller's state after."""
    # mnist1d draws from the legacy global RNG; nothing else can drive it.
    saved = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(saved)  # noqa: NPY002


def raw_mnist1d(**generator_args) -> RawMNIST1D:
    """MNIST-1D exactly as ``make_dataset`` builds it, minus the final standardization.

    Draw order (which fixes every example given ``seed``): for each class in 0..9,
    ``num_samples // 10`` calls of ``transform``; then the permutation of the batch; then,
    when ``shuffle_seq``, one permutation of the ``final_seq_length`` positions.
    """
    from mnist1d.data import get_templates
    from mnist1d.transform import transform

    args = validate_mnist1d_args(**generator_args)
    ns = generator_namespace(args)
    templates = get_templates()
    per_class = args["num_samples"] // len(templates["y"])
    xs, ys = [], []
    with global_numpy_seed(args["seed"]):
        for label, template in zip(templates["y"], templates["x"], strict=True):
            for _ in range(per_class):
                xs.append(transform(template, templates["t"], ns)[0])
                ys.append(label)
        order = np.random.permutation(len(ys))  # noqa: NPY002  (make_dataset's draw)
        x = np.stack(xs)[order]
        y = np.asarray(ys, dtype=np.int32)[order]
        if args["shuffle_seq"]:
            x = x[..., np.random.permutation(args["final_seq_length"])]  # noqa: NPY002
    return RawMNIST1D(x, y, int(len(ys) * args["train_split"]))


def generator_fingerprint() -> dict[str, Any]:
    """What generated MNIST-1D depends on besides its arguments: a hash of the generator's
    code (this module and the argument defaults) and the packages that draw the examples."""
    from toolkit.data import offline

    digest = hashlib.blake2b(digest_size=16)
    for module in (__file__, offline.__file__):
        digest.update(Path(module).read_bytes())
    # From the installed metadata: importing mnist1d is slow (pyplot, scipy.interpolate).
    versions = {name: importlib.metadata.version(name) for name in ("mnist1d", "numpy", "scipy")}
    return {"code": digest.hexdigest(), "versions": versions}


def _stats_spec(args: dict[str, Any]) -> dict[str, Any]:
    """What the statistics depend on: the arguments and :func:`generator_fingerprint`."""
    return {"raw_stats": args, **generator_fingerprint()}


def raw_stats(**generator_args) -> tuple[float, float]:
    """``(mean, std)`` by which ``make_dataset`` standardizes the dataset of these arguments.

    They are scalars over the whole generated array (train and test together), as in
    ``mnist1d.data.make_dataset``. Computing them means generating that whole array (slow),
    which every regenerated test set and the unseen-template OOD
    set need, so they are kept with the evaluation sets (``evalsets/`` of
    :mod:`toolkit.array_cache`), keyed on the arguments, this module's and the argument
    defaults' code, and the versions of mnist1d, numpy and scipy; and in this process,
    keyed on that entry too (with the caches off, a sweep worker building 20 regenerated
    sets would otherwise generate the array 20 times).
    """
    args = validate_mnist1d_args(**generator_args)
    path = array_cache.entry_path("evalsets", _stats_spec(args))
    return _raw_stats(json.dumps(args, sort_keys=True), path)


@functools.lru_cache(maxsize=16)
def _raw_stats(args_json: str, path: Path | None) -> tuple[float, float]:
    cached = array_cache.load(path, ("stats",))
    if cached is not None and cached["stats"].shape == (2,):
        return float(cached["stats"][0]), float(cached["stats"][1])
    raw = raw_mnist1d(**json.loads(args_json))
    stats = float(raw.x.mean()), float(raw.x.std())
    array_cache.save_or_warn(path, "MNIST-1D raw stats", stats=np.asarray(stats, np.float64))
    return stats
