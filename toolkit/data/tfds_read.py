"""Reads a prepared TFDS split into host arrays: inputs in their stored dtype, int32 labels.

Two read paths:

* ``"data_source"`` -- ``builder.as_data_source`` over array_record files: random access,
  read in chunks with ``__getitems__``, no TensorFlow needed.
* ``"tf.data"`` -- ``builder.as_dataset`` (what ``tfds.load`` returns) for datasets prepared
  in another format (tfrecord); needs TensorFlow. Batched in fixed chunks, never
  ``batch_size=-1`` (which under ``tfds.testing.mock_data`` aborts the process).

Integer inputs are to be scaled to [0, 1] by :func:`input_scale`: the dataset's
``pixel_max`` metadata when it has one (the toolkit's digits: 16), else the largest value
of their dtype (255 for uint8 images). Float inputs are kept as stored.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from typing import Any
from unittest import mock

import numpy as np

__all__ = [
    "CHUNK",
    "choose_reader",
    "feature_keys",
    "input_scale",
    "read_split",
    "tensorflow_available",
]

CHUNK = 1024  # examples decoded per batched read
READERS = ("data_source", "tf.data")


def tensorflow_available() -> bool:
    """Whether ``import tensorflow`` would find a module (without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


def choose_reader(builder: Any) -> str:
    """``"data_source"`` when the prepared files are array_record, else ``"tf.data"`` if TF imports.

    Parquet is never read: TFDS 4.9.10 drops rows from it.
    """
    formats = {f.value for f in builder.info.available_file_formats()}
    if "array_record" in formats:
        return "data_source"
    again = (
        "prepare the dataset again in the array_record format, into another data_dir: "
        f"tfds build {builder.name} --data_dir=<dir> --file_format=array_record"
    )
    if formats == {"parquet"}:
        raise RuntimeError(
            f"{builder.info.full_name} is prepared at {builder.data_dir} as parquet, which "
            f"TFDS 4.9.10 reads with missing rows; {again}"
        )
    if tensorflow_available():
        return "tf.data"
    raise RuntimeError(
        f"{builder.info.full_name} is prepared at {builder.data_dir} in the "
        f"{', '.join(sorted(formats)) or 'unknown'} format, which only TensorFlow can read here, "
        "and TensorFlow is not installed. Either install it (pip install 'toolkit[tensorflow]') "
        f"or {again}"
    )


def feature_keys(info: Any, name: str) -> tuple[str, str]:
    """The (input, label) feature names: the supervised keys, else ``image``/``label``.

    The label must be a ``ClassLabel`` (it gives the number of classes and their names).
    """
    import tensorflow_datasets as tfds

    features = info.features
    keys = info.supervised_keys
    if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        x_key, y_key = keys
    else:
        x_key, y_key = "image", "label"
    if x_key not in features or y_key not in features:
        raise ValueError(
            f"dataset {name!r} is not an (input, label) classification dataset: its features are "
            f"{', '.join(features.keys())} and its supervised keys {keys!r}"
        )
    if not isinstance(features[y_key], tfds.features.ClassLabel):
        raise ValueError(
            f"dataset {name!r}: label feature {y_key!r} is {type(features[y_key]).__name__}, "
            "not a ClassLabel, so it is not a classification dataset"
        )
    if not isinstance(features[x_key], (tfds.features.Image, tfds.features.Tensor)):
        raise ValueError(
            f"dataset {name!r}: input feature {x_key!r} is {type(features[x_key]).__name__}, "
            "not an image or tensor"
        )
    return x_key, y_key


def input_scale(info: Any, x_key: str) -> float | None:
    """What the inputs ``x_key`` are divided by to lie in [0, 1]; None keeps them."""
    import tensorflow_datasets as tfds

    feature = info.features[x_key]
    metadata = info.metadata or {}
    if "pixel_max" in metadata:
        return float(metadata["pixel_max"])
    dtype = np.dtype(feature.np_dtype)
    if isinstance(feature, tfds.features.Image) and np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return None


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of an (H, W, C) uint8 image with PIL."""
    from PIL import Image

    if image.shape[:2] == size:
        return image
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"image_size resizes uint8 images with 1, 3 or 4 channels; got {image.dtype} "
            f"{image.shape}"
        )
    squeeze = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return out[..., None] if squeeze else out


def _stack(xs: Sequence[np.ndarray] | np.ndarray, image_size: tuple[int, int] | None) -> np.ndarray:
    """One chunk's inputs as one array in their stored dtype, resized first if asked."""
    if image_size is not None:
        xs = [_resize(np.asarray(x), image_size) for x in xs]
    try:
        return np.stack(xs) if not isinstance(xs, np.ndarray) else xs
    except ValueError as e:
        shapes = sorted({np.shape(x) for x in xs})[:3]
        raise ValueError(
            f"examples have different shapes (e.g. {shapes}); pass image_size=(H, W) to resize"
        ) from e


def _data_source_chunks(
    source: Any, n: int, x_key: str, y_key: str
) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
    # tfds.testing.mock_data (4.9.10) installs __getitems__ on its mock data source without
    # binding it, so batched reads fail there; its per-example __getitem__ works.
    if isinstance(getattr(source, "data_source", None), mock.NonCallableMock):

        def get_many(keys):
            return [source[k] for k in keys]
    else:
        get_many = source.__getitems__
    for start in range(0, n, CHUNK):
        items = get_many(list(range(start, min(n, start + CHUNK))))
        yield [it[x_key] for it in items], np.asarray([it[y_key] for it in items])


def _tf_chunks(
    builder: Any, split: str, x_key: str, y_key: str, max_examples: int | None, static: bool
) -> Iterator[tuple[Any, np.ndarray]]:
    import tensorflow_datasets as tfds

    # No auto-cache: a cached dataset cut short by take() makes TF warn and discard it.
    read_config = tfds.ReadConfig(try_autocache=False)
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)
    if max_examples is not None:
        ds = ds.take(max_examples)
    if static:
        for batch in tfds.as_numpy(ds.batch(CHUNK)):
            yield batch[x_key], np.asarray(batch[y_key])
        return
    xs, ys = [], []  # variable-shape inputs cannot be batched before resizing
    for ex in tfds.as_numpy(ds):
        xs.append(ex[x_key])
        ys.append(ex[y_key])
        if len(xs) == CHUNK:
            yield xs, np.asarray(ys)
            xs, ys = [], []
    if xs:
        yield xs, np.asarray(ys)


def _collect(
    chunks: Iterator[tuple[Any, np.ndarray]],
    n: int | None,
    image_size: tuple[int, int] | None,
    shape: tuple[int | None, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Joins chunks into (inputs in their stored dtype, int32 labels); with a known size
    ``n`` fills one array (no second copy)."""
    xs, ys = [], []
    x_all = y_all = None
    pos = 0
    for x_chunk, y_chunk in chunks:
        x_chunk = _stack(x_chunk, image_size)
        if n is not None:
            if x_all is None:
                x_all = np.empty((n, *x_chunk.shape[1:]), x_chunk.dtype)
                y_all = np.empty((n,), np.int32)
            x_all[pos : pos + len(x_chunk)] = x_chunk
            y_all[pos : pos + len(x_chunk)] = y_chunk
        else:
            xs.append(x_chunk)
            ys.append(y_chunk.astype(np.int32))
        pos += len(x_chunk)
    if x_all is None and xs:
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    if x_all is None:  # an empty split: keep the input shape where it is known
        x_all = np.zeros((0, *(d or 0 for d in shape)), np.float32)
        y_all = np.zeros((0,), np.int32)
    return x_all, y_all


def read_split(
    builder: Any,
    split: str,
    *,
    reader: str,
    x_key: str,
    y_key: str,
    max_examples: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads ``split`` (a TFDS split spec, e.g. ``"test"`` or ``"train[:80%]"``): its inputs
    in their stored dtype (resized to ``image_size`` when given) and int32 labels.

    Only the first ``max_examples`` examples are read when it is given.
    """
    if reader not in READERS:
        raise ValueError(f"unknown reader {reader!r}; valid: {', '.join(READERS)}")
    feature = builder.info.features[x_key]
    shape = tuple(feature.shape)
    if image_size is not None:
        shape = (*image_size, *shape[2:])
    if reader == "data_source":
        source = builder.as_data_source(split=split)
        n = len(source) if max_examples is None else min(len(source), max_examples)
        chunks = _data_source_chunks(source, n, x_key, y_key)
    else:
        n = None
        static = all(d is not None for d in feature.shape)  # batchable before resizing
        chunks = _tf_chunks(builder, split, x_key, y_key, max_examples, static)
    return _collect(chunks, n, image_size, shape)
