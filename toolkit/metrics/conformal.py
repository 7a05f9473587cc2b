"""Split conformal prediction sets for classifiers: LAC (THR), APS and RAPS.

A conformity score ``s(x, y)`` (larger = the label fits worse) is computed on n held-out
in-distribution calibration examples; ``qhat`` is the ``k``-th smallest of those scores,
``k = ceil((n + 1)(1 - alpha))`` -- the empirical quantile at level ``k / n`` without
interpolation (``np.quantile(..., method="inverted_cdf")``), ``+inf`` when ``k > n``.
For a new exchangeable example the set ``{y : s(x, y) <= qhat}`` then contains the true
label with probability at least ``1 - alpha`` (and at most ``1 - alpha + 1/(n + 1)``
when the scores have no ties). Vovk et al. (2005); Lei et al. (2018); Angelopoulos &
Bates (2021), "A gentle introduction to conformal prediction". (``np.quantile(...,
method="higher")`` at the same level is the ``(k+1)``-th smallest for ``k < n``: valid
but conservative.)

Scores, with ``pi`` the softmax probabilities sorted decreasingly (stable order on
ties), ``o(y)`` the 1-based rank of class y, ``rho(y)`` the mass of the classes ranked
above y and ``u ~ U(0, 1)`` one draw per example:

- ``lac`` (THR): ``s = 1 - p_y``. Sadinle, Lei & Wasserman (2019). Sets may be empty.
- ``aps``: ``s = rho(y) + u p_y`` (randomized, the default) or ``rho(y) + p_y``. Romano,
  Sesia & Candes (2020), "Classification with valid and adaptive coverage".
- ``raps``: the APS score plus ``lam * max(o(y) - k_reg, 0)``. Angelopoulos, Bates,
  Malik & Jordan (2021), "Uncertainty sets for image classifiers using conformal
  prediction".

The randomized APS/RAPS set is ``{y : s(x, y, u) <= qhat}`` (exact coverage; may be
empty). The non-randomized set also includes the class ranked just after the last one
with ``s <= qhat`` (the reference RAPS code's ``sizes_base``), so it is never empty and
still contains ``{y : s(x, y) <= qhat}``. Randomness comes from a typed key
(``jax.random.key``); ``key=None`` means ``jax.random.key(0)``, so results are
reproducible.
"""

from __future__ import annotations

import functools
import math
import numbers
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from toolkit.metrics._checks import check_logits, check_logits_labels, is_concrete

__all__ = ["CONFORMAL_METHODS", "conformal_metrics", "conformal_threshold", "prediction_sets"]

CONFORMAL_METHODS = ("lac", "aps", "raps")
RAPS_DEFAULTS = {"k_reg": 1, "lam": 0.01}
_PROB_SUM_TOLERANCE = 1e-3


def _check_method(
    method: Any, k_reg: Any, lam: Any, randomized: Any
) -> tuple[str, int, float, bool]:
    """(method, k_reg, lam, randomized) with the method's defaults filled in."""
    if method not in CONFORMAL_METHODS:
        raise ValueError(f"method must be one of {CONFORMAL_METHODS}, got {method!r}")
    if method != "raps":
        for name, value in (("k_reg", k_reg), ("lam", lam)):
            if value is not None:
                raise ValueError(f"{name}={value!r} applies to method 'raps' only, not {method!r}")
        k_reg, lam = 0, 0.0
    else:
        k_reg = RAPS_DEFAULTS["k_reg"] if k_reg is None else k_reg
        lam = RAPS_DEFAULTS["lam"] if lam is None else lam
        if isinstance(k_reg, bool) or not isinstance(k_reg, int | np.integer) or k_reg < 0:
            raise ValueError(f"k_reg must be an int >= 0, got {k_reg!r}")
        if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0.0 <= lam < math.inf:
            raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if randomized is None:
        randomized = method != "lac"
    if not isinstance(randomized, bool | np.bool_):
        raise ValueError(f"randomized must be True, False or None, got {randomized!r}")
    if randomized and method == "lac":
        raise ValueError("randomized=True applies to methods 'aps' and 'raps', not 'lac'")
    return method, int(k_reg), float(lam), bool(randomized)


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be a number in (0, 1) (the miscoverage level), got {alpha!r}")
    return float(alpha)


def _check_key(key: Any, randomized: bool) -> jax.Array | None:
    if not randomized:
        return None
    if key is None:
        return jax.random.key(0)
    if not (
        isinstance(key, jax.Array)
        and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        and key.shape == ()
    ):
        raise ValueError(
            "key must be one typed PRNG key from jax.random.key(seed) (randomized APS/RAPS "
            f"draw u ~ U(0, 1) per example), got {getattr(key, 'dtype', type(key).__name__)} "
            f"of shape {getattr(key, 'shape', None)}; or pass randomized=False"
        )
    return key


def _check_probs(probs: Any, name: str) -> jax.Array:
    """(N, C) probabilities: finite, in [0, 1], rows summing to 1 (checked when concrete)."""
    probs = check_logits(probs, name=name)
    if is_concrete(probs):
        host = np.asarray(probs, dtype=np.float64)
        if (host < 0).any() or (host > 1).any():
            raise ValueError(
                f"{name} must be probabilities in [0, 1] (softmax of the logits), got values "
                f"in [{host.min():.4g}, {host.max():.4g}]"
            )
        sums = host.sum(axis=1)
        bad = np.abs(sums - 1.0) > _PROB_SUM_TOLERANCE
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"{name} rows must sum to 1 (softmax of the logits); row {row} sums to "
                f"{sums[row]:.6g}"
            )
    return probs


def _quantile_rank(n: int, alpha: float) -> int:
    """``k = ceil((n + 1)(1 - alpha))`` in exact arithmetic on alpha's decimal value."""
    return math.ceil((n + 1) * (1 - Fraction(repr(alpha))))


@functools.partial(jax.jit, static_argnames=("method", "k_reg", "lam", "randomized"))
def _class_scores(
    probs: jax.Array, u: jax.Array, method: str, k_reg: int, lam: float, randomized: bool
) -> tuple[jax.Array, jax.Array]:
    """Conformity score of every class (N, C), and of the class ranked just above each
    (``-inf`` for the top class), both in class order."""
    if method == "lac":
        scores = 1.0 - probs
        return scores, jnp.full_like(scores, -jnp.inf)
    order = jnp.argsort(-probs, axis=1, stable=True)
    ranks = jnp.argsort(order, axis=1)  # 0-based rank of each class
    sorted_p = jnp.take_along_axis(probs, order, axis=1)
    above = jnp.cumsum(sorted_p, axis=1) - sorted_p  # rho: mass ranked strictly above
    weight = u[:, None] if randomized else 1.0
    penalty = lam * jnp.maximum(jnp.arange(1, probs.shape[1] + 1, dtype=probs.dtype) - k_reg, 0)
    sorted_scores = above + weight * sorted_p + penalty
    previous = jnp.concatenate(
        [jnp.full_like(sorted_scores[:, :1], -jnp.inf), sorted_scores[:, :-1]], axis=1
    )
    back = functools.partial(jnp.take_along_axis, indices=ranks, axis=1)
    return back(sorted_scores), back(previous)


def _uniforms(key: jax.Array | None, n: int, dtype: jnp.dtype) -> jax.Array:
    return jnp.ones((n,), dtype) if key is None else jax.random.uniform(key, (n,), dtype)


@functools.partial(jax.jit, static_argnames=("method", "k_reg", "lam", "randomized", "rank"))
def _threshold(probs, labels, u, method, k_reg, lam, randomized, rank):
    scores, _ = _class_scores(probs, u, method, k_reg, lam, randomized)
    true_scores = jnp.take_along_axis(scores, labels[:, None], axis=1)[:, 0]
    if rank > true_scores.shape[0]:
        return jnp.array(jnp.inf, true_scores.dtype)
    return jnp.sort(true_scores)[rank - 1]


def conformal_threshold(
    probs_cal: ArrayLike,
    labels_cal: ArrayLike,
    *,
    method: str,
    alpha: float,
    key: jax.Array | None = None,
    k_reg: int | None = None,
    lam: float | None = None,
    randomized: bool | None = None,
) -> jax.Array:
    """Split-conformal threshold ``qhat`` (0-d) from ID calibration probabilities and labels.

    ``qhat`` is the ``ceil((n + 1)(1 - alpha))``-th smallest conformity score of the true
    labels (module docstring; ``+inf`` when that exceeds n, i.e. ``alpha < 1/(n + 1)``).
    ``method`` is one of ``CONFORMAL_METHODS``; ``randomized`` defaults to True for
    ``aps``/``raps`` (u drawn from ``key``) and must stay off for ``lac``; ``k_reg``
    (default 1) and ``lam`` (default 0.01) are RAPS's regularisation and are refused for
    the other methods. Calibrate on validation data disjoint from what the sets are used on.
    """
    method, k_reg, lam, randomized = _check_method(method, k_reg, lam, randomized)
    alpha = _check_alpha(alpha)
    probs_cal, labels_cal = check_logits_labels(
        probs_cal, labels_cal, names=("probs_cal", "labels_cal")
    )
    _check_probs(probs_cal, "probs_cal")
    key = _check_key(key, randomized)
    n = probs_cal.shape[0]
    u = _uniforms(key, n, probs_cal.dtype)
    return _threshold(
        probs_cal, labels_cal, u, method, k_reg, lam, randomized, _quantile_rank(n, alpha)
    )


def prediction_sets(
    probs: ArrayLike,
    qhat: ArrayLike,
    *,
    method: str,
    key: jax.Array | None = None,
    k_reg: int | None = None,
    lam: float | None = None,
    randomized: bool | None = None,
) -> jax.Array:
    """(M, C) bool: class c is in example m's conformal set at threshold ``qhat``.

    Pass the method options used for :func:`conformal_threshold`; with ``randomized`` the
    ``key`` draws the test examples' u and should differ from the calibration key.
    Sets: ``{y : s(x, y) <= qhat}``, plus the next-ranked class when APS/RAPS is not
    randomized (never empty then); see the module docstring.
    """
    method, k_reg, lam, randomized = _check_method(method, k_reg, lam, randomized)
    probs = _check_probs(probs, "probs")
    qhat = jnp.asarray(qhat)
    if qhat.shape != () or not jnp.issubdtype(qhat.dtype, jnp.floating):
        raise ValueError(
            f"qhat must be a 0-d float (from conformal_threshold), got dtype {qhat.dtype} "
            f"and shape {qhat.shape}"
        )
    if is_concrete(qhat) and np.isnan(np.asarray(qhat)):
        raise ValueError("qhat is NaN; it must come from conformal_threshold")
    key = _check_key(key, randomized)
    u = _uniforms(key, probs.shape[0], probs.dtype)
    return _sets(probs, qhat.astype(probs.dtype), u, method, k_reg, lam, randomized)


@functools.partial(jax.jit, static_argnames=("method", "k_reg", "lam", "randomized"))
def _sets(probs, qhat, u, method, k_reg, lam, randomized):
    scores, previous = _class_scores(probs, u, method, k_reg, lam, randomized)
    if method == "lac" or randomized:
        return scores <= qhat
    return previous <= qhat  # the top class (previous = -inf) is always in


def conformal_metrics(
    probs_cal: ArrayLike,
    labels_cal: ArrayLike,
    probs: ArrayLike,
    labels: ArrayLike,
    *,
    method: str,
    alpha: float = 0.1,
    key: jax.Array | None = None,
    **kw: Any,
) -> dict[str, jax.Array]:
    """Empirical coverage and mean set size (0-d arrays) of split-conformal sets.

    Calibrates ``qhat`` on ``(probs_cal, labels_cal)`` (ID validation) with
    :func:`conformal_threshold`, builds the sets of ``probs`` with :func:`prediction_sets`
    and returns ``{"coverage": mean 1[label in set], "set_size": mean |set|}``. ``kw``:
    ``k_reg``, ``lam``, ``randomized``. The key is split into a calibration and a test key.
    Under shift the coverage of ID-calibrated sets falls below ``1 - alpha``.
    """
    unknown = sorted(set(kw) - {"k_reg", "lam", "randomized"})
    if unknown:
        raise ValueError(
            f"unknown conformal option(s) {unknown}; valid: 'k_reg', 'lam', 'randomized'"
        )
    method, k_reg, lam, randomized = _check_method(
        method, kw.get("k_reg"), kw.get("lam"), kw.get("randomized")
    )
    alpha = _check_alpha(alpha)
    probs_cal, labels_cal = check_logits_labels(
        probs_cal, labels_cal, names=("probs_cal", "labels_cal")
    )
    _check_probs(probs_cal, "probs_cal")
    probs, labels = check_logits_labels(probs, labels, names=("probs", "labels"))
    _check_probs(probs, "probs")
    if probs_cal.shape[1] != probs.shape[1]:
        raise ValueError(
            f"probs has {probs.shape[1]} classes but probs_cal has {probs_cal.shape[1]}; both "
            "must come from the same classifier"
        )
    key = _check_key(key, randomized)
    key_cal, key_test = (None, None) if key is None else tuple(jax.random.split(key))
    options = (method, k_reg, lam, randomized)
    u_cal = _uniforms(key_cal, probs_cal.shape[0], probs_cal.dtype)
    rank = _quantile_rank(probs_cal.shape[0], alpha)
    qhat = _threshold(probs_cal, labels_cal, u_cal, *options, rank)
    u = _uniforms(key_test, probs.shape[0], probs.dtype)
    sets = _sets(probs, qhat.astype(probs.dtype), u, *options)
    covered = jnp.take_along_axis(sets, labels[:, None], axis=1)[:, 0]
    return {
        "coverage": jnp.mean(covered.astype(probs.dtype)),
        "set_size": jnp.mean(jnp.sum(sets, axis=1).astype(probs.dtype)),
    }
