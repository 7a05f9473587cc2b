"""Losses against independent float64 numpy references, hand-computed values and limits.

The references live in ``tests/losses_reference.py`` and are written from the papers'
formulas without the toolkit or JAX.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from losses_reference import REFERENCES, tempered_softmax

import toolkit as tk
from toolkit.registry import InvalidHyperparameterError, UnknownNameError

NAMES = tk.losses.names()
_rng = np.random.default_rng(0)

# Ordinary logits and large ones (random at scale 1e3 plus hand-made extremes: true class
# far ahead, far behind, an exact tie at +1e4, all zeros), stacked into one batch so that
# each loss compiles once.
ORDINARY_Z = (3.0 * _rng.normal(size=(6, 5))).astype(np.float32)
ORDINARY_Y = np.array([0, 1, 2, 3, 4, 0], dtype=np.int32)
EXTREME_ROWS = [
    [1e4, -1e4, -1e4, 0.0, 5.0],
    [1e4, -1e4, 1e4, -3.0, 0.0],
    [-1e4, 1e4, 1e4, 0.0, -1e4],
    [0.0, 0.0, 0.0, 0.0, 0.0],
]
LARGE_Z = np.concatenate([1e3 * _rng.normal(size=(3, 5)), EXTREME_ROWS]).astype(np.float32)
LARGE_Y = np.array([0, 3, 1, 0, 0, 3, 2], dtype=np.int32)
Z = np.concatenate([ORDINARY_Z, LARGE_Z])
Y = np.concatenate([ORDINARY_Y, LARGE_Y])
ORDINARY = slice(0, len(ORDINARY_Y))

# Non-default hyperparameters, so each reference is checked beyond its defaults.
NON_DEFAULT = [
    ("label_smoothing", {"smoothing": 0.3}),
    ("softmax_focal", {"gamma": 0.5, "alpha": 0.25}),
    ("softmax_focal", {"gamma": 3.0, "alpha": (0.1, 0.2, 0.3, 0.2, 0.2)}),
    ("sigmoid_focal", {"gamma": 1.0, "alpha": None}),
    ("poly1", {"epsilon": -0.5}),
    ("logitnorm", {"tau": 0.5}),
    ("multiclass_hinge", {"margin": 2.5}),
    ("squared_hinge", {"margin": 0.5}),
    ("squared_error", {"k": 3.0, "M": 5.0}),
    ("gce", {"q": 0.3}),
    ("sce", {"alpha": 0.5, "beta": 2.0, "log_zero": math.log(1e-4)}),
    ("nce_rce", {"alpha": 10.0, "beta": 0.1}),
    ("bi_tempered", {"t1": 0.5, "t2": 2.0, "smoothing": 0.1, "num_iters": 30}),
    ("bi_tempered", {"t1": 1.0, "t2": 1.5}),
    ("bi_tempered", {"t1": 0.7, "t2": 1.0, "smoothing": 0.2}),
]


def _assert_close(out, expected, z, rtol=2e-5):
    """Float32 logits of size |z| carry an absolute resolution of about eps32 * |z|, which
    bounds how well any float32 loss (e.g. optax's ``logsumexp(z) - z_y``) can match."""
    out, expected = np.asarray(out, np.float64), np.asarray(expected, np.float64)
    row_scale = np.max(np.abs(np.asarray(z, np.float64)), axis=-1)
    atol = 1e-5 + 4 * np.finfo(np.float32).eps * row_scale
    bad = ~(np.abs(out - expected) <= atol + rtol * np.abs(expected))
    assert not bad.any(), f"rows {np.flatnonzero(bad)}: got {out[bad]}, expected {expected[bad]}"


def _reference(name, z, y, **overrides):
    # Overrides may hold reference-only values (num_iters=None: the exact normalizer),
    # which the library's hyperparameter check refuses.
    hparams = {**tk.losses.losses.hparams(name), **overrides}
    return REFERENCES[name](np.asarray(z, np.float64), np.asarray(y), **hparams)


def _loss(name, z, y, **overrides):
    return tk.losses.get(name, **overrides)(jnp.asarray(z), jnp.asarray(y))


@functools.cache
def _compiled(name, overrides=()):
    """jit(value_and_grad) of the summed loss; also returns the per-example values."""
    fn = tk.losses.get(name, **dict(overrides))

    def total(z, y):
        values = fn(z, y)
        return jnp.sum(values), values

    return jax.jit(jax.value_and_grad(total, has_aux=True))


def _values_and_grads(name, **overrides):
    (_, values), grads = _compiled(name, tuple(sorted(overrides.items())))(Z, Y)
    return np.asarray(values), np.asarray(grads), values.dtype


def _numerical_grad(name, z, y, overrides, h=1e-5):
    """Central differences of the float64 reference's summed loss."""
    z = np.asarray(z, np.float64)
    grad = np.zeros_like(z)
    for idx in np.ndindex(*z.shape):
        step = np.zeros_like(z)
        step[idx] = h
        plus = _reference(name, z + step, y, **overrides).sum()
        minus = _reference(name, z - step, y, **overrides).sum()
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def test_every_loss_has_a_reference():
    assert sorted(NAMES) == sorted(REFERENCES)


@pytest.mark.parametrize("name", NAMES)
def test_matches_reference(name):
    values, _, dtype = _values_and_grads(name)
    assert values.shape == Y.shape and dtype == jnp.float32
    _assert_close(values, _reference(name, Z, Y), Z)


@pytest.mark.parametrize(("name", "overrides"), NON_DEFAULT, ids=lambda v: str(v))
def test_matches_reference_non_default(name, overrides):
    values, grads, _ = _values_and_grads(name, **overrides)
    _assert_close(values, _reference(name, Z, Y, **overrides), Z)
    assert np.isfinite(grads).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients(name):
    """Finite everywhere (extremes included) and equal to the reference's slope."""
    _, grads, _ = _values_and_grads(name)
    assert grads.shape == Z.shape and np.isfinite(grads).all()
    # bi_tempered's closed-form gradient assumes an exactly normalized tempered softmax,
    # so its slope is taken from the reference with the exact (root-found) normalizer.
    overrides = {"num_iters": None} if name == "bi_tempered" else {}
    expected = _numerical_grad(name, Z[ORDINARY], Y[ORDINARY], overrides)
    np.testing.assert_allclose(grads[ORDINARY], expected, rtol=1e-3, atol=5e-5)


@pytest.mark.parametrize("name", NAMES)
def test_jit_matches_eager(name):
    values, _, _ = _values_and_grads(name)
    np.testing.assert_allclose(_loss(name, Z, Y), values, rtol=1e-6, atol=1e-6)


# -- hand-computed values: z = (0, ln 2, 0) gives p = (1/4, 1/2, 1/4) ----------------------
LN2 = math.log(2.0)
HAND_Z = np.array([[0.0, LN2, 0.0]], dtype=np.float32)
HAND_CASES = [
    # (name, overrides, label, value worked out by hand)
    ("softmax_cross_entropy", {}, 1, LN2),
    ("softmax_cross_entropy", {}, 0, 2 * LN2),
    ("label_smoothing", {"smoothing": 0.3}, 1, 0.2 * 2 * LN2 + 0.8 * LN2),  # q = .1, .8, .1
    ("softmax_focal", {"gamma": 2.0}, 0, (3 / 4) ** 2 * 2 * LN2),
    ("softmax_focal", {"gamma": 2.0, "alpha": 0.25}, 1, 0.25 * (1 / 2) ** 2 * LN2),
    ("poly1", {"epsilon": 1.0}, 1, LN2 + 0.5),
    ("mae", {}, 1, 1.0),
    ("mae", {}, 0, 1.5),
    ("gce", {"q": 0.5}, 1, (1 - math.sqrt(0.5)) / 0.5),
    ("brier", {}, 1, 3 / 8),
    ("sce", {}, 1, 0.1 * LN2 + 4 * 0.5),
    ("nce_rce", {}, 1, LN2 / (5 * LN2) + 4 * 0.5),  # sum_j -log p_j = 2 ln4 + ln2
    ("arctan", {}, 1, (2 * math.atan(0.25) ** 2 + math.atan(0.5) ** 2) / 3),
    ("multiclass_hinge", {}, 0, 1 + LN2),
    ("multiclass_hinge", {}, 1, 1 - LN2),
    ("squared_hinge", {}, 0, (1 + LN2) ** 2),
    ("squared_error", {}, 1, (LN2 - 1) ** 2 / 3),
    ("squared_error", {"k": 2.0, "M": 3.0}, 0, (2 * 9 + LN2**2) / 3),
]


@pytest.mark.parametrize(("name", "overrides", "label", "expected"), HAND_CASES)
def test_hand_computed(name, overrides, label, expected):
    out = _loss(name, HAND_Z, np.array([label], np.int32), **overrides)
    np.testing.assert_allclose(out, [expected], rtol=1e-6)


def test_hand_computed_sigmoid_and_logitnorm():
    zeros = np.zeros((1, 3), np.float32)
    label = np.array([0], np.int32)
    # Every sigmoid is 1/2: three binary CEs of ln 2.
    np.testing.assert_allclose(_loss("sigmoid_cross_entropy", zeros, label), [3 * LN2], rtol=1e-6)
    # Focal weight (1/2)^2 on each; alpha 0.25 for the true class, 0.75 for the two others.
    focal = (0.25 + 2 * 0.75) * 0.25 * LN2
    np.testing.assert_allclose(_loss("sigmoid_focal", zeros, label), [focal], rtol=1e-6)
    # ||(3, 4, 0)|| = 5; with tau = 0.5 the normalized logits are (1.2, 1.6, 0).
    z = np.array([[3.0, 4.0, 0.0]], np.float32)
    expected = math.log(math.exp(1.2) + math.exp(1.6) + 1.0) - 1.6
    out = _loss("logitnorm", z, np.array([1], np.int32), tau=0.5)
    np.testing.assert_allclose(out, [expected], rtol=1e-6)


# -- limits that reduce to cross-entropy ---------------------------------------------------
@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("softmax_focal", {"gamma": 0.0}),
        ("poly1", {"epsilon": 0.0}),
        ("label_smoothing", {"smoothing": 0.0}),
        ("bi_tempered", {"t1": 1.0, "t2": 1.0}),
    ],
)
def test_reduces_to_cross_entropy(name, overrides):
    ce = REFERENCES["softmax_cross_entropy"](np.asarray(Z, np.float64), Y)
    _assert_close(_values_and_grads(name, **overrides)[0], ce, Z)


def test_gce_approaches_cross_entropy_as_q_goes_to_zero():
    ce = REFERENCES["softmax_cross_entropy"](np.asarray(ORDINARY_Z, np.float64), ORDINARY_Y)
    errors = [
        np.max(np.abs(np.asarray(_loss("gce", ORDINARY_Z, ORDINARY_Y, q=q)) - ce) / ce)
        for q in (0.1, 0.01, 0.001)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2
    # q = 1 is MAE / 2 = 1 - p_y.
    p_y = np.exp(-ce)
    np.testing.assert_allclose(_loss("gce", ORDINARY_Z, ORDINARY_Y, q=1.0), 1 - p_y, rtol=1e-5)


def test_sigmoid_focal_without_focusing_is_sigmoid_cross_entropy():
    expected = REFERENCES["sigmoid_cross_entropy"](np.asarray(Z, np.float64), Y)
    _assert_close(_values_and_grads("sigmoid_focal", gamma=0.0, alpha=None)[0], expected, Z)


# -- bi-tempered: published numbers (google/bi-tempered-loss tests) and normalization ------
GOOGLE_Z = np.array([[-0.5, 0.1, 2.0], [0.1, 1.5, -5.0], [4.0, -3.0, -6.0]], np.float32)


def test_bi_tempered_published_values():
    probs = tk.losses.tempered_softmax(jnp.asarray(GOOGLE_Z), 4.0)
    expected_probs = [
        [0.3205458, 0.32714278, 0.3523402],
        [0.3430056, 0.36491093, 0.29220778],
        [0.41369352, 0.30534995, 0.28299212],
    ]
    np.testing.assert_allclose(probs, expected_probs, atol=1e-6)
    out = _loss("bi_tempered", GOOGLE_Z, np.array([0, 1, 2]), t1=0.5, t2=1.5, smoothing=0.1)
    np.testing.assert_allclose(out, [0.76652711, 0.08627685, 1.35443510], atol=1e-5)


@pytest.mark.parametrize("t", [1.2, 2.0])
def test_tempered_softmax_is_normalized(t):
    probs = tk.losses.tempered_softmax(jnp.asarray(ORDINARY_Z), t, num_iters=30)
    np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, rtol=1e-5)
    exact = tempered_softmax(np.asarray(ORDINARY_Z, np.float64), t)  # brentq root
    np.testing.assert_allclose(probs, exact, rtol=1e-4, atol=1e-6)


# -- errors -----------------------------------------------------------------------------
def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="softmax_focall") as info:
        tk.losses.get("softmax_focall")
    message = str(info.value)
    assert "Did you mean 'softmax_focal'" in message
    assert all(name in message for name in NAMES)


def test_unknown_hyperparameter():
    with pytest.raises(InvalidHyperparameterError, match=r"'gama'.*Did you mean 'gamma'"):
        tk.losses.get("softmax_focal", gama=1.0)
    with pytest.raises(InvalidHyperparameterError, match="none"):
        tk.losses.get("brier", smoothing=0.1)


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [
        ("gce", {"q": 0.0}, r"q must be in \(0, 1\], got 0.0"),
        ("gce", {"q": 1.5}, r"q must be in \(0, 1\]"),
        ("softmax_focal", {"gamma": -1.0}, "gamma"),
        ("softmax_focal", {"alpha": (0.5, 0.5)}, r"one weight per class \(shape \(5,\)\)"),
        ("softmax_focal", {"alpha": (0.5, -0.5, 0.0, 0.0, 0.0)}, "alpha weights must be >= 0"),
        ("logitnorm", {"tau": 0.0}, "tau"),
        ("multiclass_hinge", {"margin": -1.0}, "margin"),
        ("label_smoothing", {"smoothing": 1.5}, "smoothing"),
        ("sce", {"log_zero": 1.0}, "log_zero"),
        ("bi_tempered", {"t2": 0.8}, "t2 must be >= 1.*got t2=0.8"),
        ("bi_tempered", {"t1": 1.5}, r"t1 must be in \[0, 1\]"),
        ("bi_tempered", {"smoothing": 0.9}, "smoothing must be in"),
        ("bi_tempered", {"num_iters": 0}, r"num_iters=0 .*must be a positive int"),
    ],
)
def test_bad_hyperparameter_values(name, overrides, match):
    with pytest.raises(ValueError, match=match):
        _loss(name, ORDINARY_Z, ORDINARY_Y, **overrides)


def test_bad_inputs():
    fn = tk.losses.get("softmax_cross_entropy")
    z, y = jnp.asarray(ORDINARY_Z), jnp.asarray(ORDINARY_Y)
    with pytest.raises(ValueError, match=r"shape \(batch, num_classes\).*got shape \(5,\)"):
        fn(z[0], y[0])
    with pytest.raises(ValueError, match=r"num_classes >= 2"):
        fn(z[:, :1], y)
    with pytest.raises(ValueError, match=r"labels must be .* shape \(6,\)"):
        fn(z, y[:3])
    with pytest.raises(TypeError, match="integer class indices, got dtype float32"):
        fn(z, y.astype(jnp.float32))
    with pytest.raises(TypeError, match="logits must be floating point"):
        fn(y[:, None] * jnp.ones((1, 5), jnp.int32), y)
    with pytest.raises(TypeError, match="t1 must be a Python float"):
        tk.losses.get("bi_tempered", t1=jnp.asarray(0.5))(z, y)


# -- the sweep's pattern: one loss per population member, picked by index ---------------
def test_switch_over_losses_inside_vmap():
    """Each member gets its own loss by index and its own batch (rows of Z permuted)."""
    fns = [tk.losses.get(name) for name in NAMES]
    order = [np.random.default_rng(i).permutation(len(Y)) for i in range(len(fns))]
    member_z = np.stack([Z[o] for o in order])
    member_y = np.stack([Y[o] for o in order])

    def member_loss(index, z, y):
        values = jax.lax.switch(index, fns, z, y)
        return jnp.sum(values), values

    sweep = jax.jit(jax.vmap(jax.value_and_grad(member_loss, argnums=1, has_aux=True)))
    (_, values), grads = sweep(jnp.arange(len(fns)), member_z, member_y)
    for i, name in enumerate(NAMES):
        (_, direct_values), direct_grads = _compiled(name)(member_z[i], member_y[i])
        np.testing.assert_allclose(values[i], direct_values, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(grads[i], direct_grads, rtol=1e-4, atol=1e-6, err_msg=name)
