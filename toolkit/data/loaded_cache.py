"""The toolkit's own datasets kept on disk as loaded, so that a process reads them without
importing TensorFlow Datasets.

Loading ``mnist1d`` from its prepared TFDS files costs about 0.6 s per process even when
:mod:`toolkit.data.decoded_cache` has its arrays: 0.45 s of it is ``import
tensorflow_datasets`` (which imports its whole core, Hugging Face wrapper included), the
rest building the builder and reading its metadata. Every sweep worker, the sweep process
that checks a config, and every notebook kernel paid it. So a load of a toolkit builder
(``mnist1d``, ``digits``, ``mnist5k``) stores the :class:`~toolkit.data.Dataset` it
returned (its float32 arrays and its metadata) as an ``.npz`` entry of
:mod:`toolkit.array_cache` (``loaded/`` under ``$TOOLKIT_CACHE_DIR``), and the next load
with the same arguments reads that file instead, TFDS not imported.

The key holds the builder, its arguments, the data dir, ``max_examples``, the installed
TFDS version (from the package metadata, without importing it), a hash of the source of
``toolkit.data`` (what reads, scales and describes the data: editing it makes new entries)
and :data:`FORMAT`. The entry records the prepared dataset's folder with the name, size and
modification time of each file in it; an entry whose folder no longer holds exactly those
files (the dataset was prepared again, or deleted) is not used, and the load goes through
TFDS and rewrites it. A damaged entry is treated as missing. Off, as the decoded cache,
under ``TOOLKIT_DATA_CACHE=0`` and while ``tfds.testing.mock_data`` serves fake examples.
An entry is the size of the float32 arrays (MNIST-1D 0.8 MB, ``mnist5k`` 16 MB) and is
never evicted: delete ``loaded/`` to reclaim the space.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import array_cache
from toolkit.data import decoded_cache
from toolkit.data.dataset import Dataset, Split

__all__ = ["FORMAT", "KIND", "read", "spec", "write"]

FORMAT = 1  # bump to drop every entry (editing toolkit.data already changes the key)
KIND = "loaded"
_ARRAYS = ("train_x", "train_y", "test_x", "test_y", "meta")


@functools.cache
def _code_fingerprint() -> str:
    """A hash of every module of ``toolkit.data`` (this package's folder)."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _tfds_version() -> str | None:
    try:
        return importlib.metadata.version("tensorflow-datasets")
    except importlib.metadata.PackageNotFoundError:
        return None


def spec(**call: Any) -> dict[str, Any] | None:
    """The key of one load call (builder, arguments, data dir, ...); None where nothing
    may be cached: the cache is off, TFDS is missing, or mock data is being served."""
    if not decoded_cache.enabled():
        return None
    # Mock data can only be active once TFDS is imported; asking imports it.
    if "tensorflow_datasets" in sys.modules and decoded_cache.under_mock_data():
        return None
    version = _tfds_version()
    if version is None:
        return None
    return {"format": FORMAT, "call": call, "tfds": version, "code": _code_fingerprint()}


def read(key: dict[str, Any] | None) -> Dataset | None:
    """The dataset stored under ``key``, if its prepared files are unchanged; else None."""
    if key is None:
        return None
    arrays = array_cache.load(array_cache.entry_path(KIND, key), _ARRAYS)
    if arrays is None:
        return None
    try:
        meta = json.loads(str(arrays["meta"]))
        if decoded_cache.folder_files(meta["folder"]) != meta["files"]:
            return None
        return Dataset(
            name=meta["name"],
            train=Split(arrays["train_x"], arrays["train_y"]),
            test=Split(arrays["test_x"], arrays["test_y"]),
            num_classes=int(meta["num_classes"]),
            class_names=tuple(meta["class_names"]),
            info=meta["info"],
        )
    except (ValueError, KeyError, TypeError):  # damaged or from another layout
        return None


def write(key: dict[str, Any] | None, dataset: Dataset, folder: str) -> None:
    """Stores ``dataset``, read from the prepared files in ``folder``, under ``key``."""
    if key is None or dataset.validation is not None:
        return
    files = decoded_cache.folder_files(folder)  # scanned only for a load that is cached
    if files is None:
        return
    try:
        meta = json.dumps({
            "name": dataset.name,
            "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names),
            "info": dict(dataset.info),
            "folder": folder,
            "files": files,
        })  # fmt: skip
    except TypeError:  # metadata JSON cannot hold: load it through TFDS each time
        return
    if json.loads(meta)["info"] != dict(dataset.info):  # e.g. a tuple would come back a list
        return
    path = array_cache.entry_path(KIND, key)
    try:
        array_cache.save(
            path,
            train_x=dataset.train.x,
            train_y=dataset.train.y,
            test_x=dataset.test.x,
            test_y=dataset.test.y,
            meta=np.asarray(meta),
        )
    except OSError as error:  # a read-only or full cache folder: the data was still read
        warnings.warn(f"could not cache the loaded dataset in {path}: {error}", stacklevel=3)
