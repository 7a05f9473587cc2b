"""Sequence shifts (toolkit.shifts.sequence) against numpy / scipy / the MNIST-1D generator."""

import functools
import itertools
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toolkit
from toolkit import shifts
from toolkit.data.mnist1d_raw import global_numpy_seed, raw_mnist1d, raw_stats
from toolkit.data.offline import mnist1d_arrays
from toolkit.evaluation.regenerated import mnist1d_shifted_test, regenerated_kinds

SEQUENCE_SHIFTS = [
    n for n in shifts.names() if shifts.shifts.entry(n).meta["applies_to"] == "sequence"
]
RAW_STD = 0.15468  # std of the raw default MNIST-1D, checked against the generator below
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def x_clean():
    return jnp.asarray(toolkit.data.load("mnist1d").test.x[:64])


@pytest.fixture(scope="module")
def x_random():
    """Generic values (all distinct) for exact comparisons with numpy; the shape of x_clean,
    so that both share the compiled shifts."""
    return jnp.asarray(np.random.default_rng(0).standard_normal((64, 40)), dtype=jnp.float32)


def test_registered_sequence_shifts():
    assert set(SEQUENCE_SHIFTS) == {
        "translation",
        "time_scale",
        "linear_shear",
        "iid_noise",
        "correlated_noise",
        "shuffle",
    }
    for name in SEQUENCE_SHIFTS:
        assert shifts.shifts.entry(name).description


@pytest.mark.parametrize("name", SEQUENCE_SHIFTS)
def test_identity_at_severity_zero(name, x_clean):
    np.testing.assert_array_equal(shifts.get(name)(x_clean, key=KEY, severity=0), x_clean)
    np.testing.assert_array_equal(shifts.apply(name, x_clean, key=KEY, severity=0), x_clean)


@pytest.mark.parametrize("name", SEQUENCE_SHIFTS)
def test_distance_to_clean_grows_with_severity(name, x_clean):
    dist = [
        float(
            jnp.linalg.norm(
                shifts.apply(name, x_clean, key=KEY, severity=s) - x_clean, axis=1
            ).mean()
        )
        for s in range(6)
    ]
    assert dist[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(dist)), dist


@pytest.mark.parametrize("name", SEQUENCE_SHIFTS)
def test_deterministic_jit_vmap_and_channels(name, x_clean):
    fn = functools.partial(shifts.get(name), severity=3)
    out = fn(x_clean, key=KEY)
    assert out.shape == x_clean.shape and out.dtype == x_clean.dtype
    np.testing.assert_array_equal(fn(x_clean, key=KEY), out)
    assert not np.allclose(fn(x_clean, key=jax.random.key(1)), out)
    # one compile checks both: jit of a vmap over keys equals the per-key calls
    keys = jax.random.split(jax.random.key(2), 3)
    stacked = jax.jit(jax.vmap(lambda k: fn(x_clean, key=k)))(keys)
    for i in range(3):
        np.testing.assert_allclose(stacked[i], fn(x_clean, key=keys[i]), atol=1e-5)
    # (N, L, 1) is the same data as (N, L); (N, L, 2) keeps its shape.
    np.testing.assert_array_equal(fn(x_clean[..., None], key=KEY)[..., 0], out)
    assert fn(jnp.stack([x_clean, -x_clean], axis=-1), key=KEY).shape == (64, 40, 2)


@pytest.mark.parametrize("name", SEQUENCE_SHIFTS)
def test_bad_input_raises(name, x_clean):
    with pytest.raises(ValueError, match="severity"):
        shifts.apply(name, x_clean, key=KEY, severity=6)
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        shifts.get(name)(x_clean[0], key=KEY, severity=1)
    with pytest.raises(ValueError, match="applies to sequence"):
        shifts.apply(name, jnp.zeros((2, 8, 8, 1)), key=KEY, severity=1)


def _zero_filled_roll(row, k):
    out = np.roll(row, k)
    if k > 0:
        out[:k] = 0
    else:
        out[k:] = 0
    return out


@pytest.mark.parametrize("severity,most", [(1, 2), (3, 8), (5, 20)])
def test_translation_is_np_roll(severity, most, x_random):
    """Each row is np.roll by 1..K positions (either way); "constant" zeroes what wrapped."""
    x = np.asarray(x_random)
    out = np.asarray(shifts.apply("translation", x_random, key=KEY, severity=severity))
    out_c = np.asarray(
        shifts.apply("translation", x_random, key=KEY, severity=severity, mode="constant")
    )
    for row_out, row_c, row in zip(out, out_c, x, strict=True):
        ks = [
            k
            for m in range(1, most + 1)
            for k in (m, -m)
            if np.array_equal(row_out, np.roll(row, k))
        ]
        assert ks, "not a roll by 1..K positions"
        assert any(np.array_equal(row_c, _zero_filled_roll(row, k)) for k in ks)


def test_translation_bad_mode(x_random):
    with pytest.raises(ValueError, match="'reflect'"):
        shifts.apply("translation", x_random, key=KEY, severity=1, mode="reflect")


@pytest.mark.parametrize("severity,factor", [(2, 1.3), (5, 2.0)])
def test_time_scale_is_linear_resampling(severity, factor, x_random):
    out = np.asarray(shifts.apply("time_scale", x_random, key=KEY, severity=severity))
    pos = np.arange(40.0)
    centre = 19.5
    for row_out, row in zip(out, np.asarray(x_random), strict=True):
        candidates = [
            np.interp(centre + (pos - centre) / f, pos, row, left=0.0, right=0.0)
            for f in (factor, 1.0 / factor)
        ]
        assert min(np.abs(row_out - c).max() for c in candidates) < 1e-5


def test_shuffle_full_and_partial(x_random):
    x = np.asarray(x_random)
    out = np.asarray(shifts.apply("shuffle", x_random, key=KEY, severity=5))
    np.testing.assert_array_equal(np.sort(out, axis=1), np.sort(x, axis=1))
    assert np.all(out != x)  # every position moves at severity 5
    perm = np.array([int(np.flatnonzero(x[0] == v)[0]) for v in out[0]])
    np.testing.assert_array_equal(out, x[:, perm])  # one permutation for the whole batch
    for severity, moved in [(1, 2), (2, 4), (3, 10), (4, 20)]:
        out = np.asarray(shifts.apply("shuffle", x_random, key=KEY, severity=severity))
        assert np.all((out != x).sum(axis=1) == moved)
        np.testing.assert_array_equal(np.sort(out, axis=1), np.sort(x, axis=1))


def test_linear_shear_adds_the_generator_ramp(x_random):
    diff = np.asarray(shifts.apply("linear_shear", x_random, key=KEY, severity=5) - x_random)
    coeff = 3 * 0.75 / 2 / RAW_STD  # 3x the generator's largest shear coefficient
    ramp = np.linspace(-0.5, 0.5, 40)
    for row in diff:
        assert min(np.abs(row - coeff * ramp).max(), np.abs(row + coeff * ramp).max()) < 1e-4


def test_iid_noise_std(x_clean):
    noise = np.asarray(shifts.apply("iid_noise", x_clean, key=KEY, severity=5) - x_clean)
    sigma = 6 * 0.02 / RAW_STD
    assert abs(noise.std() / sigma - 1) < 0.05
    assert abs(np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]) < 0.06


def test_correlated_noise_matches_generator_corr_noise(x_clean):
    """Marginal std = the generator's corr noise (mult 1 at severity 4) in standardized units;
    lag-1 correlation of a Gaussian smoothing of width s: exp(-1 / (4 s^2))."""
    from mnist1d.transform import corr_noise_like

    with global_numpy_seed(0):  # corr_noise_like draws from numpy's global RNG
        generator_std = np.std([corr_noise_like(np.zeros(72), 0.25) for _ in range(4000)])
    noise = np.asarray(shifts.apply("correlated_noise", x_clean, key=KEY, severity=4) - x_clean)
    assert abs(noise.std() / (generator_std / RAW_STD) - 1) < 0.06
    lag1 = np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]
    assert abs(lag1 - np.exp(-1 / (4 * (2 * 39 / 71) ** 2))) < 0.04


def test_raw_std_matches_generator():
    t = mnist1d_arrays(num_samples=200)["t"]  # the generator returns t / std(raw)
    np.testing.assert_allclose(
        np.linspace(-5, 5, 40) / 6 / t, raw_stats(num_samples=200)[1], rtol=1e-5
    )
    assert abs(raw_stats()[1] - RAW_STD) < 1e-5
    assert abs(shifts.sequence.ops.MNIST1D_RAW_STD - RAW_STD) < 1e-5


def test_raw_generation_replicates_make_dataset():
    raw = raw_mnist1d(num_samples=300)
    ref = mnist1d_arrays(num_samples=300)
    x = (raw.x - raw.x.mean()) / raw.x.std()
    np.testing.assert_allclose(x[: raw.num_train], ref["x"], atol=1e-5)
    np.testing.assert_allclose(x[raw.num_train :], ref["x_test"], atol=1e-5)
    np.testing.assert_array_equal(raw.y[raw.num_train :], ref["y_test"])


@pytest.mark.parametrize("kind", regenerated_kinds())
def test_regenerated_test_sets(kind):
    clean = mnist1d_shifted_test(kind, 0, num_samples=300)
    shifted = mnist1d_shifted_test(kind, 5, num_samples=300)
    assert shifted.x.shape == clean.x.shape == (60, 40)
    assert np.abs(shifted.x - clean.x).mean() > 0.05
    if kind != "translation":  # the others keep the generator's random stream: paired sets
        np.testing.assert_array_equal(shifted.y, clean.y)


def test_regenerated_standardization():
    ref = mnist1d_arrays(num_samples=300)
    clean = mnist1d_shifted_test("iid_noise", 0, num_samples=300)
    np.testing.assert_allclose(clean.x, ref["x_test"], atol=1e-5)
    # a permutation of positions keeps the dataset's mean and std: both conventions agree
    own = mnist1d_shifted_test("shuffle", 5, num_samples=300, standardize="self")
    np.testing.assert_allclose(
        mnist1d_shifted_test("shuffle", 5, num_samples=300).x, own.x, atol=1e-5
    )
    # in clean coordinates more noise means more variance; self-standardized it is rescaled
    noisy = mnist1d_shifted_test("iid_noise", 5, num_samples=300)
    assert noisy.x.std() > clean.x.std() * 1.05


def test_regenerated_errors():
    with pytest.raises(ValueError, match="valid: translation"):
        mnist1d_shifted_test("rotate", 1)
    with pytest.raises(ValueError, match="no severity 3; valid: 0, 5"):
        mnist1d_shifted_test("shuffle", 3)
    with pytest.raises(ValueError, match="'iid_noise_scale' is set by"):
        mnist1d_shifted_test("iid_noise", 2, iid_noise_scale=0.1)
    with pytest.raises(ValueError, match="standardize"):
        mnist1d_shifted_test("iid_noise", 2, standardize="train")
    with pytest.raises(ValueError, match="unknown MNIST-1D generator argument"):
        mnist1d_shifted_test("iid_noise", 2, noise=0.1)


def test_raw_stats_are_computed_once_then_read_from_disk(tmp_path, monkeypatch):
    from toolkit.data import mnist1d_raw as generator

    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TOOLKIT_CACHE", raising=False)
    calls = []
    generate = generator.raw_mnist1d

    def counting(**args):
        calls.append(args)
        return generate(**args)

    monkeypatch.setattr(generator, "raw_mnist1d", counting)
    first = raw_stats(num_samples=200)
    assert raw_stats(num_samples=200) == first and len(calls) == 1
    raw = generate(num_samples=200).x  # the generator's own array, its numpy statistics
    assert first == (float(raw.mean()), float(raw.std()))
    raw_stats(num_samples=300)  # other arguments: computed, in an entry of its own
    assert len(calls) == 2
    assert len(list((tmp_path / "evalsets").glob("*.npz"))) == 2
    # A new process reads the entry: there the generator fails if it is called at all.
    script = (
        "from toolkit.data import mnist1d_raw as generator\n"
        "def fail(**_): raise AssertionError('generated again')\n"
        "generator.raw_mnist1d = fail\n"
        "print(repr(generator.raw_stats(num_samples=200)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(toolkit.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == repr(first)
