"""Decoded TFDS splits kept on disk, so that a process loads arrays instead of decoding.

Reading a prepared TFDS split deserializes every example in Python (and decodes every PNG
of an image dataset): measured here (``benchmarks/data_load.py``), 0.25-0.34 s for
MNIST-1D's 5,000 sequences and 1.0 s for ``mnist5k``'s 5,000 28x28 images, so at that
rate some 14 s for MNIST's 70,000 (not measured: it is not prepared here). Every
process that loads the dataset pays that again: the sweep process that checks a config,
each of its workers, every notebook kernel. So the first read of a split stores what it
decoded (inputs in their stored dtype, resized when asked, before scaling to [0, 1]; the
labels) as an ``.npz`` entry of :mod:`toolkit.array_cache` (``decoded/`` under
``$TOOLKIT_CACHE_DIR``, default ``~/.cache/toolkit``), and later reads load that file.

The key holds everything the arrays depend on: the prepared dataset's folder and the name,
size and modification time of each file in it (re-preparing the dataset, or preparing
another one into that folder, gives a new key), the split spec, the reader, the feature
names, ``max_examples``, ``image_size``, and the versions of TFDS and (when resizing)
Pillow. A damaged entry is read again from TFDS and rewritten.

Not cached: reads under ``tfds.testing.mock_data`` (random examples served in place of
the files) and builders with no files in their folder. ``TOOLKIT_DATA_CACHE=0`` turns the
cache off. Entries are never evicted; an entry is about the size of the dataset's raw
inputs (CIFAR-10: 184 MB), so delete ``decoded/`` to reclaim the space.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from toolkit import array_cache

__all__ = [
    "ENV",
    "FORMAT",
    "cached",
    "enabled",
    "folder_files",
    "prepared_folder",
    "spec",
    "under_mock_data",
]

ENV = "TOOLKIT_DATA_CACHE"
FORMAT = 1  # bump when what an entry holds changes, so old entries are not read
KIND = "decoded"


def enabled() -> bool:
    """False when ``$TOOLKIT_DATA_CACHE`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def under_mock_data() -> bool:
    """Whether ``tfds.testing.mock_data`` has replaced the builders' read methods."""
    import tensorflow_datasets as tfds

    builder = tfds.core.DatasetBuilder
    return any(
        getattr(getattr(builder, name), "__module__", "").startswith("tensorflow_datasets.testing")
        for name in ("as_data_source", "as_dataset")
    )


def folder_files(folder: str) -> list[list[Any]] | None:
    """``[name, size, mtime_ns]`` of each file in ``folder``; None if it has none."""
    try:
        entries = [e for e in os.scandir(folder) if e.is_file()]
    except OSError:
        return None
    stats = [[e.name, e.stat().st_size, e.stat().st_mtime_ns] for e in entries]
    return sorted(stats) or None


def prepared_folder(builder: Any) -> str:
    """The real path of the folder that holds ``builder``'s prepared files."""
    return os.path.realpath(os.fspath(builder.data_dir))


def spec(builder: Any, **read: Any) -> dict[str, Any] | None:
    """The cache key of reading ``builder`` with the ``read`` options (split, reader,
    feature names, ``max_examples``, ``image_size``); None where nothing may be cached."""
    if not enabled() or under_mock_data():
        return None
    folder = prepared_folder(builder)
    files = folder_files(folder)
    if files is None:
        return None
    import tensorflow_datasets as tfds

    versions = {"tfds": tfds.__version__}
    if read.get("image_size") is not None:
        import PIL

        versions["pillow"] = PIL.__version__
    return {"format": FORMAT, "folder": folder, "files": files, "versions": versions, **read}


def cached(
    key: dict[str, Any] | None, decode: Callable[[], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of the entry ``key``, else ``decode()`` (stored under ``key`` unless None)."""
    if key is None:
        return decode()
    path = array_cache.entry_path(KIND, key)
    arrays = array_cache.load(path, ("x", "y"))
    if arrays is not None and len(arrays["x"]) == len(arrays["y"]):
        return arrays["x"], arrays["y"]
    x, y = decode()
    try:
        array_cache.save(path, x=x, y=y)
    except OSError as error:  # a read-only or full cache folder: the data was still read
        warnings.warn(f"could not cache the decoded split in {path}: {error}", stacklevel=3)
    return x, y
