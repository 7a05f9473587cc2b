"""In-memory classification datasets: host arrays that go to device in one transfer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["Dataset", "Split"]


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: ``x`` float32 of shape (N, *input_shape), ``y`` int32 labels of shape (N,).

    Integer inputs (uint8 images, 0-255) are refused rather than cast unscaled; labels must
    fit in int32, and float labels must be whole numbers (3.0 is class 3; 2.5 is refused,
    not truncated).
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        x, y = np.asarray(self.x), np.asarray(self.y)
        if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
            top = np.iinfo(x.dtype).max if np.issubdtype(x.dtype, np.unsignedinteger) else 255
            raise TypeError(
                f"x has dtype {x.dtype} (integer images?); the models read floats, so scale "
                f"them first, e.g. x.astype(np.float32) / {top} for [0, 1] (as tk.data.load "
                f"does), or x.astype(np.float32) to keep the raw values"
            )
        low, high = np.iinfo(np.int32).min, np.iinfo(np.int32).max
        if np.issubdtype(y.dtype, np.integer) and y.size and (y.min() < low or y.max() > high):
            first = int(np.flatnonzero((y < low) | (y > high))[0])
            raise ValueError(
                f"labels must be class indices; y[{first}] = {y[first]} does not fit in int32"
            )
        if np.issubdtype(y.dtype, np.floating) and not (y == np.round(y)).all():
            bad = np.flatnonzero(y != np.round(y))
            raise ValueError(
                f"labels must be whole class indices; y has {bad.size} non-integral values, "
                f"the first y[{bad[0]}] = {y[bad[0]]} (pass integer labels)"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.ascontiguousarray(y, dtype=np.int32)
        if x.shape[0] != y.shape[0] or y.ndim != 1:
            raise ValueError(f"x has {x.shape[0]} examples but y has shape {y.shape}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index: np.ndarray | slice) -> Split:
        """A sub-split by index (e.g. a learning-curve subset)."""
        return Split(self.x[index], self.y[index])


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A classification dataset with its metadata.

    ``input_shape`` is one example's shape: ``(L,)`` or ``(L, C)`` for sequences,
    ``(H, W, C)`` for images. ``info`` holds how it was made (generator arguments,
    source, split seed) so that a run's provenance can record it.
    """

    name: str
    train: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    validation: Split | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def is_image(self) -> bool:
        """True for (H, W, C) examples; sequences are (L,) or (L, C)."""
        return len(self.input_shape) == 3

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )
