"""Loaded datasets kept on disk, so that a later process reads one file instead of TFDS.

Reading a prepared TFDS dataset deserializes every example in Python (and decodes every
PNG of an image dataset), a cost that grows with the dataset and that every sweep worker,
the sweep process that checks a config and every notebook kernel would pay again
(``python -m benchmarks.data_load`` measures it). So each load stores what it read as one
``.npz`` entry of :mod:`toolkit.array_cache` (``datasets/`` under ``$TOOLKIT_CACHE_DIR``):
both splits' inputs in their stored dtype (resized when asked, before scaling to [0, 1]),
the labels and the :class:`~toolkit.data.Dataset`'s metadata. The next load with the same
arguments reads that file, without importing TFDS for the toolkit's own datasets.

The key is the load call (builder and its arguments or TFDS name, absolute data dir, split
specs, ``max_examples``, ``image_size``), the installed versions of TFDS (and of Pillow when
resizing) from package metadata, a hash of ``toolkit.data``'s source (what reads, scales
and describes the data) and :data:`FORMAT`. The entry records the prepared dataset's
folder with the name, size and modification time of each file in it: an entry whose folder
no longer holds exactly those files (the dataset was prepared again, or deleted) is not
used, and the load reads TFDS and rewrites it; so is a damaged entry. Nothing is cached
while ``tfds.testing.mock_data`` serves fake examples, for a builder with no files, or under
``TOOLKIT_CACHE=0``. An entry is about the size of the raw inputs (CIFAR-10: 184 MB).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import array_cache
from toolkit.data.dataset import Dataset, Split

__all__ = ["FORMAT", "KIND", "Decoded", "cached", "key", "under_mock_data"]

FORMAT = 1  # bump to drop every entry (editing toolkit.data already changes the key)
KIND = "datasets"
_SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Decoded:
    """What a load read: each split's inputs in their stored dtype and int32 labels, the
    divisor that scales the inputs to [0, 1] (None keeps them), the dataset's metadata."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    scale: float | None
    name: str
    num_classes: int
    class_names: tuple[str, ...]
    info: dict[str, Any]

    def dataset(self) -> Dataset:
        def split(x: np.ndarray, y: np.ndarray) -> Split:
            x = x.astype(np.float32, copy=False)
            return Split(x / np.float32(self.scale) if self.scale is not None else x, y)

        return Dataset(
            name=self.name,
            train=split(*self.splits["train"]),
            test=split(*self.splits["test"]),
            num_classes=self.num_classes,
            class_names=tuple(self.class_names),
            info=self.info,
        )


def under_mock_data() -> bool:
    """Whether ``tfds.testing.mock_data`` has replaced the builders' read methods."""
    if "tensorflow_datasets" not in sys.modules:  # mock data needs TFDS imported
        return False
    import tensorflow_datasets as tfds

    builder = tfds.core.DatasetBuilder
    return any(
        getattr(getattr(builder, name), "__module__", "").startswith("tensorflow_datasets.testing")
        for name in ("as_data_source", "as_dataset")
    )


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _code_fingerprint() -> str:
    """A hash of every module of ``toolkit.data`` (this package's folder)."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def key(**call: Any) -> dict[str, Any] | None:
    """The key of one load call; None where nothing may be cached (caches off, TFDS not
    installed, mock data served)."""
    if not array_cache.enabled() or under_mock_data():
        return None
    versions = {"tfds": _version("tensorflow-datasets")}
    if versions["tfds"] is None:
        return None
    if call.get("image_size") is not None:
        versions["pillow"] = _version("pillow")
    return {"format": FORMAT, "call": call, "versions": versions, "code": _code_fingerprint()}


def _folder_files(folder: str) -> list[list[Any]] | None:
    """``[name, size, mtime_ns]`` of each file in ``folder``; None if it has none."""
    try:
        entries = [e for e in os.scandir(folder) if e.is_file()]
    except OSError:
        return None
    stats = [[e.name, e.stat().st_size, e.stat().st_mtime_ns] for e in entries]
    return sorted(stats) or None


def _read(path: Path | None) -> Dataset | None:
    names = [f"{s}_{a}" for s in _SPLITS for a in "xy"]
    arrays = array_cache.load(path, [*names, "meta"])
    if arrays is None:
        return None
    try:
        meta = json.loads(str(arrays["meta"]))
        if _folder_files(meta["folder"]) != meta["files"]:
            return None
        splits = {s: (arrays[f"{s}_x"], arrays[f"{s}_y"]) for s in _SPLITS}
        fields = ("scale", "name", "num_classes", "class_names", "info")
        return Decoded(splits, **{f: meta[f] for f in fields}).dataset()
    except (ValueError, KeyError, TypeError):  # damaged or from another layout
        return None


def _write(path: Path | None, decoded: Decoded, folder: str) -> None:
    files = _folder_files(folder)
    if path is None or files is None:
        return
    fields = {f.name: getattr(decoded, f.name) for f in dataclasses.fields(Decoded)}
    meta = {**fields, "class_names": list(decoded.class_names), "folder": folder, "files": files}
    del meta["splits"]
    try:
        text = json.dumps(meta)
    except TypeError:  # metadata JSON cannot hold: read it through TFDS each time
        return
    if json.loads(text)["info"] != decoded.info:  # e.g. a tuple would come back a list
        return
    arrays = {f"{s}_{a}": v for s in _SPLITS for a, v in zip("xy", decoded.splits[s], strict=True)}
    array_cache.save_or_warn(path, "dataset", meta=np.asarray(text), **arrays)


def cached(call: dict[str, Any], read: Callable[[], tuple[Decoded, Any]]) -> Dataset:
    """The dataset that ``call`` loaded before, from its entry; else ``read()`` (a
    :class:`Decoded` and the TFDS builder it came from), stored for the next load."""
    spec = key(**call)
    path = None if spec is None else array_cache.entry_path(KIND, spec)
    dataset = _read(path)
    if dataset is None:
        decoded, builder = read()
        _write(path, decoded, os.path.realpath(os.fspath(builder.data_dir)))
        dataset = decoded.dataset()
    return dataset
