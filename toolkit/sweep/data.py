"""A trial's training data: the dataset (cached per process) and its data axes applied.

Order: ``validation_fraction`` first (a stratified validation split carved from train,
:func:`toolkit.data.with_validation` with the fixed seed :data:`VALIDATION_SEED`), then
``imbalance`` (Cao et al. 2019 long tail) and ``train_size`` (stratified subset) on the
rest, all with fixed keys so that every seed and every member of a population trains and
validates on the same examples; then ``label_noise`` drawn from the trial's seed, so that
seeds also average over noise draws. The noise is applied to the training labels and, with
a key of its own, to the validation labels: a practitioner holds out part of the labels
they have, which are noisy, so selection and recalibration see noisy labels too.
Everything is a function of the trial, hence of its run id (:func:`training_data`).
"""

from __future__ import annotations

import functools
import json
import zlib
from typing import Any, NamedTuple

import jax
import numpy as np

from toolkit import data
from toolkit.data import Dataset, Split, axes
from toolkit.data.validation import validation_counts, with_validation

__all__ = [
    "VALIDATION_SEED",
    "TrainingData",
    "effective_train_size",
    "load_dataset",
    "training_data",
]

# tk.data.with_validation's default seed: a notebook calling it with the sweep's fraction
# gets the sweep's validation split.
VALIDATION_SEED = 0


def _key(name: str, seed: int = 0) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()))


@functools.lru_cache(maxsize=8)
def _load(name: str, kwargs_json: str) -> Dataset:
    return data.load(name, **json.loads(kwargs_json))


def load_dataset(name: str, kwargs: dict[str, Any]) -> Dataset:
    """``tk.data.load(name, **kwargs)``, loaded once per process."""
    return _load(name, json.dumps(kwargs, sort_keys=True))


def effective_train_size(
    num_classes: int, class_counts: np.ndarray, data_axes: dict[str, Any]
) -> int:
    """Training examples left after ``validation_fraction``, ``imbalance`` and
    ``train_size`` (no data drawn); raises ValueError for axes the data cannot meet."""
    class_counts = np.asarray(class_counts)
    fraction = float(data_axes.get("validation_fraction") or 0.0)
    if fraction:
        class_counts = class_counts - validation_counts(class_counts, fraction)
    size = int(class_counts.sum())
    if data_axes.get("imbalance") is not None:
        n_max = int(class_counts.min())
        c = np.arange(num_classes)
        size = int(
            np.floor(n_max * float(data_axes["imbalance"]) ** (-c / (num_classes - 1))).sum()
        )
    train_size = data_axes.get("train_size")
    if train_size is not None:
        if (
            isinstance(train_size, bool)
            or not isinstance(train_size, int)
            or not 0 < train_size <= size
        ):
            raise ValueError(
                f"train_size must be an int in 1..{size} (the training examples available), "
                f"got {train_size!r}"
            )
        size = train_size
    return size


class TrainingData(NamedTuple):
    """A trial's data: the training examples, their (noisy) training labels, the validation
    split with its (noisy) labels or None, and the realised training label-noise rate."""

    split: Split
    labels: np.ndarray
    validation: Split | None
    noise: float


def training_data(dataset: Dataset, data_axes: dict[str, Any], *, seed: int) -> TrainingData:
    """The trial's training and validation data (module docstring for the order and keys)."""
    fraction = float(data_axes.get("validation_fraction") or 0.0)
    validation = None
    if fraction:
        dataset = with_validation(dataset, fraction, seed=VALIDATION_SEED)
        validation = dataset.validation
    split = _subset(dataset, data_axes)
    labels, noise = _noisy(split.y, data_axes, key=_key("label_noise", seed), dataset=dataset)
    if validation is not None:
        val_key = _key("validation_label_noise", seed)
        val_labels, _ = _noisy(validation.y, data_axes, key=val_key, dataset=dataset)
        validation = Split(validation.x, val_labels)
    return TrainingData(split, labels, validation, noise)


def _subset(dataset: Dataset, data_axes: dict[str, Any]) -> Split:
    """The training split after ``imbalance`` then ``train_size`` (fixed keys)."""
    split = dataset.train
    if data_axes.get("imbalance") is not None:
        split = axes.imbalance(
            split, data_axes["imbalance"], key=_key("imbalance"), num_classes=dataset.num_classes
        ).split
    if data_axes.get("train_size") is not None:
        split = axes.subsample(split, int(data_axes["train_size"]), key=_key("train_size"))
    return split


def _noisy(
    labels: np.ndarray, data_axes: dict[str, Any], *, key: jax.Array, dataset: Dataset
) -> tuple[np.ndarray, float]:
    """``labels`` with the trial's label noise drawn from ``key``, and the realised rate."""
    rate = float(data_axes.get("label_noise") or 0.0)
    if rate == 0.0:
        return labels, 0.0
    noisy = axes.label_noise(
        labels,
        rate,
        key=key,
        num_classes=dataset.num_classes,
        kind=data_axes["label_noise_kind"],
    )
    return np.asarray(noisy.labels, np.int32), float(noisy.rate)
