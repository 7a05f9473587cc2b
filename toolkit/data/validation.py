"""A held-out validation split carved from the training split, for every choice a run makes.

Model selection, early stopping and temperature scaling must not look at the test set
(Guo et al. 2017 fit the temperature on held-out data; Gulrajani & Lopez-Paz 2021 select on
held-out in-distribution data). :func:`with_validation` sets aside a stratified, seeded
fraction of the training examples: the validation split keeps the training class
proportions, and the same seed gives the same split on any machine.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from toolkit.data.checks import check_split
from toolkit.data.dataset import Dataset

__all__ = ["validation_counts", "with_validation"]


def _check_fraction(fraction) -> float:
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float | np.floating)
        or not 0.0 < float(fraction) < 1.0
    ):
        raise ValueError(f"validation fraction must be a number in (0, 1), got {fraction!r}")
    return float(fraction)


def validation_counts(class_counts, fraction: float) -> np.ndarray:
    """Validation examples per class: ``round(fraction * n_c)`` (half up), at least 1 and
    at most ``n_c - 1`` (so that the class stays in training); 0 for an absent class.

    Raises ValueError, naming the class, when a present class has a single example: it
    cannot be in both splits.
    """
    fraction = _check_fraction(fraction)
    counts = np.asarray(class_counts, dtype=np.int64)
    held = np.zeros_like(counts)
    for c, n in enumerate(counts.tolist()):
        if n == 0:
            continue
        if n < 2:
            raise ValueError(
                f"class {c} has {n} training example; a stratified validation split needs at "
                f"least 2 per class (one for training, one for validation)"
            )
        held[c] = min(max(1, math.floor(fraction * n + 0.5)), n - 1)
    return held


def with_validation(dataset: Dataset, fraction: float = 0.1, *, seed: int = 0) -> Dataset:
    """``dataset`` with a validation split carved from its training split.

    Class ``c`` contributes ``validation_counts(...)[c]`` examples (``round(fraction * n_c)``,
    at least 1, at most ``n_c - 1``), drawn without replacement by
    ``np.random.default_rng(seed)``; the rest stay in ``train``, in their original order,
    and ``test`` is unchanged. ``info["validation"]`` records the fraction and seed.

    Raises ValueError for ``fraction`` outside (0, 1), a dataset that already has a
    validation split, training data :func:`~toolkit.data.checks.check_split` refuses, or a
    class with a single training example.
    """
    fraction = _check_fraction(fraction)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if dataset.validation is not None:
        raise ValueError(
            f"dataset {dataset.name!r} already has a validation split "
            f"({len(dataset.validation)} examples); carve one from a dataset without"
        )
    check_split(dataset.train, dataset.num_classes)
    y = dataset.train.y
    counts = np.bincount(y, minlength=dataset.num_classes)
    held = validation_counts(counts, fraction)
    rng = np.random.default_rng(int(seed))
    chosen = [
        rng.choice(np.flatnonzero(y == c), size=int(k), replace=False)
        for c, k in enumerate(held.tolist())
    ]
    mask = np.zeros(len(y), bool)
    mask[np.concatenate(chosen)] = True
    info = {**dataset.info, "validation": {"fraction": fraction, "seed": int(seed)}}
    return dataclasses.replace(
        dataset,
        train=dataset.train.take(np.flatnonzero(~mask)),
        validation=dataset.train.take(np.flatnonzero(mask)),
        info=info,
    )
