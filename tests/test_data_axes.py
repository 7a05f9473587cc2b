"""Training-side axes (toolkit.data.axes) and label shift (toolkit.data.label_shift)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from toolkit.data import Split
from toolkit.data.axes import imbalance, label_noise, subsample
from toolkit.data.label_shift import label_shift

KEY = jax.random.key(0)
# Patrini et al. (2017) MNIST flips, written out by hand.
PATRINI = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}


def _split(counts):
    """Class c has counts[c] examples; x[:, 0] is the example's index, so rows are traceable."""
    y = np.repeat(np.arange(len(counts)), counts)
    x = np.stack([np.arange(len(y)), y, -np.arange(len(y))], axis=1).astype(np.float32)
    return Split(x, y)


def _assert_rows_from(part, whole, *, unique=True):
    index = part.x[:, 0].astype(int)
    np.testing.assert_array_equal(whole.x[index], part.x)
    np.testing.assert_array_equal(whole.y[index], part.y)
    if unique:
        assert len(np.unique(index)) == len(index)


# ---------------------------------------------------------------- subsample
def test_subsample_is_stratified():
    whole = _split([50 + 10 * c for c in range(10)])  # 950 examples, uneven classes
    part = subsample(whole, 200, key=KEY)
    assert len(part) == 200
    _assert_rows_from(part, whole)
    share = 200 * np.bincount(whole.y) / len(whole)
    counts = np.bincount(part.y, minlength=10)
    assert np.all((counts == np.floor(share)) | (counts == np.ceil(share))), (counts, share)
    assert not np.array_equal(subsample(whole, 200, key=jax.random.key(1)).x, part.x)
    np.testing.assert_array_equal(subsample(whole, 200, key=KEY).x, part.x)


@pytest.mark.parametrize("size", [0, 951, 2.5, True])
def test_subsample_bad_size(size):
    with pytest.raises(ValueError, match=f"size must be an int in 1..950.*{size!r}"):
        subsample(_split([50 + 10 * c for c in range(10)]), size, key=KEY)


# ---------------------------------------------------------------- label noise
@pytest.fixture(scope="module")
def labels():
    return jnp.asarray(np.arange(20000) % 10, dtype=jnp.int32)


def _binomial_ok(k, n, p):
    """Two-sided binomial test at 1e-3 (scipy)."""
    return stats.binomtest(int(k), int(n), p).pvalue > 1e-3


def test_symmetric_noise(labels):
    noisy, flipped, rate = label_noise(labels, 0.3, key=KEY, num_classes=10)
    y, z, f = np.asarray(labels), np.asarray(noisy), np.asarray(flipped)
    np.testing.assert_array_equal(f, z != y)
    assert _binomial_ok(f.sum(), len(y), 0.3)
    assert float(rate) == pytest.approx(f.mean())
    # the new label is never the true one and uniform over the 9 others
    offsets = (z[f] - y[f]) % 10
    assert offsets.min() >= 1
    assert stats.chisquare(np.bincount(offsets, minlength=10)[1:]).pvalue > 1e-3


def test_asymmetric_noise_follows_patrini_map(labels):
    noisy, flipped, _ = label_noise(labels, 0.4, key=KEY, num_classes=10, kind="asymmetric")
    y, z, f = np.asarray(labels), np.asarray(noisy), np.asarray(flipped)
    for c in range(10):
        in_c = y == c
        if c in PATRINI:
            assert set(np.unique(z[in_c])) == {c, PATRINI[c]}
            assert _binomial_ok(f[in_c].sum(), in_c.sum(), 0.4)
        else:
            assert not f[in_c].any()
    custom, *_ = label_noise(
        labels,
        0.5,
        key=KEY,
        num_classes=10,
        kind="asymmetric",
        mapping=(1, 0, 2, 3, 4, 5, 6, 7, 8, 9),
    )
    assert set(np.unique(np.asarray(custom)[y == 0])) == {0, 1}


def test_pairflip_noise(labels):
    noisy, flipped, _ = label_noise(labels, 0.2, key=KEY, num_classes=10, kind="pairflip")
    y, z, f = np.asarray(labels), np.asarray(noisy), np.asarray(flipped)
    np.testing.assert_array_equal(z[f], (y[f] + 1) % 10)
    assert _binomial_ok(f.sum(), len(y), 0.2)


@pytest.mark.parametrize("kind", ["symmetric", "asymmetric", "pairflip"])
def test_label_noise_jit_matches_eager(kind, labels):
    fn = functools.partial(label_noise, rate=0.25, num_classes=10, kind=kind)
    eager = fn(labels, key=KEY)
    jitted = jax.jit(lambda y, k: fn(y, key=k))(labels, KEY)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_array_equal(a, b)
    assert eager.labels.shape == (20000,) and eager.labels.dtype == jnp.int32


def test_zero_rate_is_identity(labels):
    noisy, flipped, rate = label_noise(labels, 0.0, key=KEY, num_classes=10)
    np.testing.assert_array_equal(noisy, labels)
    assert not np.asarray(flipped).any() and float(rate) == 0.0


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_label_noise_bad_rate(rate, labels):
    with pytest.raises(ValueError, match=rf"in \[0, 1\), got {rate}"):
        label_noise(labels, rate, key=KEY, num_classes=10)


def test_label_noise_bad_arguments(labels):
    with pytest.raises(ValueError, match="'uniform'"):
        label_noise(labels, 0.1, key=KEY, num_classes=10, kind="uniform")
    with pytest.raises(ValueError, match="needs a mapping for num_classes=5"):
        label_noise(labels % 5, 0.1, key=KEY, num_classes=5, kind="asymmetric")
    with pytest.raises(ValueError, match="mapping must give"):
        label_noise(labels, 0.1, key=KEY, num_classes=10, kind="asymmetric", mapping=(0, 1))


# ---------------------------------------------------------------- imbalance
def test_imbalance_counts_follow_ldam_profile():
    whole = _split([100] * 10)
    part, counts = imbalance(whole, 10.0, key=KEY)
    # Cao et al. (2019): n_c = int(n_max * ratio^(-c / (C - 1))), by hand for n_max 100
    expected = [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(np.bincount(part.y, minlength=10), expected)
    _assert_rows_from(part, whole)
    balanced, counts = imbalance(_split([30, 20, 25]), 1.0, key=KEY)
    np.testing.assert_array_equal(counts, [20, 20, 20])  # n_max = the smallest class
    assert len(balanced) == 60


@pytest.mark.parametrize("ratio", [0.5, -1, "ten"])
def test_imbalance_bad_ratio(ratio):
    with pytest.raises(ValueError, match=f"ratio must be a number >= 1.*{ratio!r}"):
        imbalance(_split([10, 10]), ratio, key=KEY)


# ---------------------------------------------------------------- label shift
def test_dirichlet_label_shift_matches_priors():
    whole = _split([100] * 10)
    part, priors, counts = label_shift(whole, key=KEY, kind="dirichlet", alpha=1.0)
    assert priors.shape == (10,) and priors.sum() == pytest.approx(1.0)
    _assert_rows_from(part, whole)
    realised = np.bincount(part.y, minlength=10)
    np.testing.assert_array_equal(realised, counts)
    assert np.all(np.abs(realised - len(part) * priors) < 1)
    assert stats.chisquare(realised, len(part) * priors).pvalue > 0.99
    # size=None: the largest set without repeats, min_c floor(n_c / q_c)
    assert len(part) == int(np.min(np.floor(100 / priors)))


def test_dirichlet_priors_have_dirichlet_moments():
    """Symmetric Dirichlet(alpha), C classes: mean 1/C, var (1/C)(1 - 1/C) / (C alpha + 1)."""
    whole = _split([100] * 10)
    draws = np.stack(
        [
            label_shift(whole, key=jax.random.key(i), alpha=2.0, size=10, replace=True).priors
            for i in range(400)
        ]
    )
    np.testing.assert_allclose(draws.mean(axis=0), 0.1, atol=0.01)
    assert draws.var() == pytest.approx(0.1 * 0.9 / 21, rel=0.15)


def test_one_class_heavy_label_shift():
    whole = _split([100] * 10)
    part, priors, counts = label_shift(
        whole, key=KEY, kind="one_class_heavy", heavy_class=3, heavy_fraction=0.5
    )
    np.testing.assert_allclose(priors, [0.5 / 9] * 3 + [0.5] + [0.5 / 9] * 6)
    assert len(part) == 200 and counts[3] == 100  # all of class 3, 11 or 12 of the others
    assert set(counts[np.arange(10) != 3]) <= {11, 12}
    _assert_rows_from(part, whole)
    big, _, counts = label_shift(
        whole, key=KEY, kind="one_class_heavy", heavy_class=3, size=2000, replace=True
    )
    assert len(big) == 2000 and counts[3] == 1000
    _assert_rows_from(big, whole, unique=False)


def test_label_shift_errors():
    whole = _split([100] * 10)
    with pytest.raises(ValueError, match="at most 200 without replacement"):
        label_shift(whole, key=KEY, kind="one_class_heavy", size=1000)
    with pytest.raises(ValueError, match="'uniform'"):
        label_shift(whole, key=KEY, kind="uniform")
    with pytest.raises(ValueError, match="alpha must be positive"):
        label_shift(whole, key=KEY, alpha=0.0)
    with pytest.raises(ValueError, match=r"heavy_fraction must be in \[0, 1\], got 1.5"):
        label_shift(whole, key=KEY, kind="one_class_heavy", heavy_fraction=1.5)
    with pytest.raises(ValueError, match=r"heavy_class must be in 0\.\.9, got 10"):
        label_shift(whole, key=KEY, kind="one_class_heavy", heavy_class=10)
    with pytest.raises(ValueError, match="class 9 has prior"):
        label_shift(_split([100] * 9 + [0]), key=KEY, num_classes=10)
    with pytest.raises(TypeError, match="typed key"):
        label_shift(whole, key=jax.random.PRNGKey(0))
