"""tk.data.with_validation: a stratified, seeded validation split carved from train."""

import collections

import numpy as np
import pytest

import toolkit as tk
from toolkit.data import Dataset, Split


def _dataset(counts, *, validation=None):
    """Class c has counts[c] training examples; x[:, 0] is the row's index (traceable)."""
    y = np.repeat(np.arange(len(counts)), counts)
    x = np.stack([np.arange(len(y)), y, 2 * np.arange(len(y))], axis=1).astype(np.float32)
    test = Split(-np.ones((4, 3)), np.zeros(4, np.int32))
    return Dataset("toy", Split(x, y), test, len(counts), (), validation=validation)


def _rows(split):
    return collections.Counter(map(tuple, np.c_[split.x, split.y].tolist()))


def test_counts_per_class_are_rounded_shares():
    # 0.1 x (20, 15, 25, 7, 2, 3): 2, 1.5 -> 2, 2.5 -> 3, 0.7 -> 1, 0.2 -> 1 (at least 1), 0.3 -> 1
    ds = tk.data.with_validation(_dataset([20, 15, 25, 7, 2, 3]), 0.1, seed=0)
    np.testing.assert_array_equal(np.bincount(ds.validation.y, minlength=6), [2, 2, 3, 1, 1, 1])
    np.testing.assert_array_equal(np.bincount(ds.train.y, minlength=6), [18, 13, 22, 6, 1, 2])
    # 0.5 x (4, 3, 10): 2, 1.5 -> 2, 5; and 0.9 x 2 = 1.8 -> 2 leaves none: capped at 1
    ds = tk.data.with_validation(_dataset([4, 3, 10, 2]), 0.5, seed=1)
    np.testing.assert_array_equal(np.bincount(ds.validation.y), [2, 2, 5, 1])
    ds = tk.data.with_validation(_dataset([2, 10]), 0.9, seed=1)
    np.testing.assert_array_equal(np.bincount(ds.validation.y), [1, 9])


def test_splits_partition_train_and_keep_test():
    whole = _dataset([30, 12, 41, 5])
    ds = tk.data.with_validation(whole, 0.25, seed=3)
    train_ids, val_ids = ds.train.x[:, 0], ds.validation.x[:, 0]
    assert not set(train_ids) & set(val_ids)
    assert _rows(ds.train) + _rows(ds.validation) == _rows(whole.train)
    assert list(train_ids) == sorted(train_ids)  # the rest keep their order
    assert ds.test is whole.test
    assert ds.info["validation"] == {"fraction": 0.25, "seed": 3}
    assert (ds.name, ds.num_classes) == (whole.name, whole.num_classes)


def test_seeded():
    whole = _dataset([30, 12, 41, 5])
    a = tk.data.with_validation(whole, 0.2, seed=7)
    b = tk.data.with_validation(whole, 0.2, seed=7)
    c = tk.data.with_validation(whole, 0.2, seed=8)
    np.testing.assert_array_equal(a.validation.x, b.validation.x)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert set(a.validation.x[:, 0]) != set(c.validation.x[:, 0])
    np.testing.assert_array_equal(np.bincount(a.validation.y), np.bincount(c.validation.y))


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, -0.1, 1.5, "0.1", True, None])
def test_bad_fraction_is_named(fraction):
    with pytest.raises(ValueError, match=rf"\(0, 1\), got {fraction!r}"):
        tk.data.with_validation(_dataset([5, 5]), fraction)


def test_existing_validation_split_is_refused():
    held = Split(np.zeros((3, 3)), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="already has a validation split \\(3 examples\\)"):
        tk.data.with_validation(_dataset([5, 5], validation=held), 0.1)


def test_class_too_small_is_named():
    with pytest.raises(ValueError, match="class 2 has 1 training example"):
        tk.data.with_validation(_dataset([5, 5, 1]), 0.1)
    # an absent class is no error: it has nothing to split
    ds = tk.data.with_validation(_dataset([5, 0, 5]), 0.2)
    np.testing.assert_array_equal(np.bincount(ds.validation.y, minlength=3), [1, 0, 1])


# ---------------------------------------------------------------- the sweep's data axes
def _rows_of(split):
    return {tuple(r) for r in split.x.tolist()}


def test_sweep_carves_validation_first_then_subsets_the_rest():
    from toolkit.sweep.data import training_data

    whole = _dataset([60, 45, 50, 70])
    reference = tk.data.with_validation(whole, 0.2, seed=0)
    axes = {"validation_fraction": 0.2, "train_size": 100, "label_noise": 0.0}
    data = training_data(whole, axes, seed=3)
    np.testing.assert_array_equal(data.validation.x, reference.validation.x)
    np.testing.assert_array_equal(data.validation.y, reference.validation.y)
    assert len(data.split) == 100 and _rows_of(data.split) <= _rows_of(reference.train)
    np.testing.assert_array_equal(data.labels, data.split.y)
    # the same split for every seed of the sweep
    other = training_data(whole, axes, seed=4)
    np.testing.assert_array_equal(other.validation.x, data.validation.x)
    # 0.0 opts out: no validation split, the whole training split
    none = training_data(whole, {"validation_fraction": 0.0, "label_noise": 0.0}, seed=3)
    assert none.validation is None and len(none.split) == 225


def test_sweep_validation_labels_carry_the_label_noise():
    from toolkit.sweep.data import training_data

    whole = _dataset([400, 400, 400, 400])
    clean = tk.data.with_validation(whole, 0.5, seed=0).validation
    axes = {"validation_fraction": 0.5, "label_noise": 0.4, "label_noise_kind": "symmetric"}
    a, b = training_data(whole, axes, seed=0), training_data(whole, axes, seed=1)
    flipped = a.validation.y != clean.y
    # 800 validation labels each flipped with probability 0.4: 320 +/- 14 (4 SD: 56)
    assert abs(int(flipped.sum()) - 320) < 56
    np.testing.assert_array_equal(a.validation.x, clean.x)
    assert (a.validation.y != b.validation.y).any()  # seeds draw their own noise
    assert abs(a.noise - 0.4) < 0.05 and abs(float(np.mean(a.labels != a.split.y)) - 0.4) < 0.05
