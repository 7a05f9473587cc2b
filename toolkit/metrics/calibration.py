"""Calibration: expected calibration error, reliability diagrams, temperature scaling.

Binning convention (shared by :func:`ece` and :func:`reliability_diagram`): ``num_bins``
equal-width bins with edges ``e_b = b / num_bins`` (``jnp.linspace(0, 1, num_bins + 1)``);
bin ``b`` holds the examples whose top-1 confidence lies in ``(e_b, e_{b+1}]``, and the
first bin is closed on the left, ``[0, e_1]``, so a confidence of exactly 0 is counted.
This is the ``lo < conf <= hi`` rule of Guo et al. (2017)'s reference code; since the
top-1 softmax probability is at least 1/C, the closed left end only matters for
hand-made inputs.
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from toolkit.metrics._checks import check_logits, check_logits_labels, check_num_bins, is_concrete

__all__ = ["apply_temperature", "ece", "fit_temperature", "reliability_diagram"]


@functools.partial(jax.jit, static_argnames="num_bins")
def _bin_sums(
    logits: jax.Array, labels: jax.Array, num_bins: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Per-bin (edges, count, sum of confidences, number correct) of top-1 predictions."""
    confidence = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype)
    edges = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=logits.dtype)
    # side="left" puts conf == e_{b+1} into bin b, i.e. bins are (lo, hi]; conf == 0 gives
    # -1, which the clip folds into the first bin.
    index = jnp.clip(jnp.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    count = jax.ops.segment_sum(jnp.ones_like(confidence), index, num_segments=num_bins)
    conf_sum = jax.ops.segment_sum(confidence, index, num_segments=num_bins)
    correct_sum = jax.ops.segment_sum(correct, index, num_segments=num_bins)
    return edges, count, conf_sum, correct_sum


def ece(logits: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> jax.Array:
    """Expected calibration error of the top-1 prediction, a fraction in [0, 1].

    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` over ``num_bins`` equal-width confidence
    bins (module docstring: bins are ``(lo, hi]``, the first also holds 0), where
    ``acc_b`` and ``conf_b`` are the accuracy and mean top-1 softmax probability of the
    ``n_b`` examples in bin b; empty bins contribute 0. Naeini et al. (2015); Guo et al.
    (2017), "On calibration of modern neural networks"; 15 bins as in Ovadia et al. (2019).
    Multiply by 100 for the percentages papers print.
    """
    num_bins = check_num_bins(num_bins)
    return _ece(*check_logits_labels(logits, labels), num_bins)


@functools.partial(jax.jit, static_argnames="num_bins")
def _ece(logits: jax.Array, labels: jax.Array, num_bins: int) -> jax.Array:
    _, _, conf_sum, correct_sum = _bin_sums(logits, labels, num_bins)
    # n_b/N * |acc_b - conf_b| = |correct_b - conf_sum_b| / N: no division by empty bins.
    return jnp.sum(jnp.abs(correct_sum - conf_sum)) / logits.shape[0]


def reliability_diagram(
    logits: ArrayLike, labels: ArrayLike, num_bins: int = 15
) -> dict[str, jax.Array]:
    """Per-bin statistics for a reliability diagram (Guo et al. 2017, Fig. 1).

    Returns a dict of arrays, binned as :func:`ece` does:

    - ``bin_edges`` (num_bins + 1,): ``linspace(0, 1, num_bins + 1)``;
    - ``bin_confidence`` (num_bins,): mean top-1 confidence in the bin;
    - ``bin_accuracy`` (num_bins,): fraction of correct top-1 predictions in the bin;
    - ``bin_count`` (num_bins,) int32: examples in the bin.

    Empty bins have ``bin_count == 0`` and confidence and accuracy 0 (never NaN); mask
    them with ``bin_count > 0`` when plotting. ``ece == sum(bin_count / N *
    |bin_accuracy - bin_confidence|)``.
    """
    num_bins = check_num_bins(num_bins)
    return _diagram(*check_logits_labels(logits, labels), num_bins)


@functools.partial(jax.jit, static_argnames="num_bins")
def _diagram(logits: jax.Array, labels: jax.Array, num_bins: int) -> dict[str, jax.Array]:
    edges, count, conf_sum, correct_sum = _bin_sums(logits, labels, num_bins)
    safe = jnp.maximum(count, 1.0)
    return {
        "bin_edges": edges,
        "bin_confidence": jnp.where(count > 0, conf_sum / safe, 0.0),
        "bin_accuracy": jnp.where(count > 0, correct_sum / safe, 0.0),
        "bin_count": count.astype(jnp.int32),
    }


def apply_temperature(logits: ArrayLike, t: ArrayLike) -> jax.Array:
    """Temperature-scaled logits ``z / t`` (Guo et al. 2017); ``t > 1`` softens predictions.

    The argmax, hence accuracy, is unchanged for any ``t > 0``. ``t`` must be a positive
    finite scalar (checked when concrete).
    """
    logits = check_logits(logits)
    t = jnp.asarray(t)
    if t.ndim != 0:
        raise ValueError(f"temperature t must be a scalar, got shape {t.shape}")
    if is_concrete(t) and not (np.isfinite(float(t)) and float(t) > 0):
        raise ValueError(f"temperature t must be positive and finite, got {float(t)!r}")
    return _divide(logits, t.astype(logits.dtype))


@jax.jit
def _divide(logits: jax.Array, t: jax.Array) -> jax.Array:
    return logits / t


def _nll_at_log_temperature(log_t: float, logits: np.ndarray, labels: np.ndarray) -> float:
    import scipy.special  # host-side only; imported here to keep sweep workers' start-up short

    log_p = scipy.special.log_softmax(logits * math.exp(-log_t), axis=-1)
    return float(-np.mean(log_p[np.arange(labels.shape[0]), labels]))


def fit_temperature(
    logits: ArrayLike, labels: ArrayLike, *, bounds: tuple[float, float] = (1e-2, 1e2)
) -> float:
    """Temperature scaling (Guo et al. 2017): the T minimising validation NLL.

    ``T* = argmin_T -(1/N) sum_i log softmax(z_i / T)_{y_i}``, searched over ``log T`` in
    ``log(bounds)`` with SciPy's bounded Brent method (``minimize_scalar``) in float64 on
    the host. NLL is convex in ``1/T`` (a log-sum-exp of linear functions minus a linear
    one), hence unimodal in ``log T``, so the 1-D search finds the global minimum.

    Fit on a held-out validation split, never on the test set, then use
    :func:`apply_temperature`. Logits drawn from a calibrated model give T close to 1;
    ``c * z`` for calibrated ``z`` gives T close to ``c``.

    Degenerate cases: when every row of ``logits`` is constant the NLL does not depend on
    T and 1.0 is returned; when the minimum lies at a bound (e.g. perfectly separated
    validation data, where NLL keeps falling as T -> 0) the bound is returned with a
    ``RuntimeWarning``. Runs on the host: not jit-able.
    """
    logits, labels = check_logits_labels(logits, labels)
    if not is_concrete(logits, labels):
        raise ValueError("fit_temperature runs on the host (SciPy); call it outside jax.jit")
    lo, hi = (float(b) for b in bounds)
    if not 0 < lo < hi < math.inf:
        raise ValueError(f"bounds must satisfy 0 < lo < hi < inf, got {bounds!r}")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if np.all(z.max(axis=-1) == z.min(axis=-1)):
        return 1.0
    log_lo, log_hi = math.log(lo), math.log(hi)
    import scipy.optimize  # see _nll_at_log_temperature

    result = scipy.optimize.minimize_scalar(
        _nll_at_log_temperature,
        bounds=(log_lo, log_hi),
        args=(z, y),
        method="bounded",
        options={"xatol": 1e-8},
    )
    log_t, best = float(result.x), float(result.fun)
    # The NLL can flatten out in float64 before reaching a bound (separable data gives
    # exactly 0 for small T), so a bound that does as well as the optimum wins.
    for bound in (log_lo, log_hi):
        if _nll_at_log_temperature(bound, z, y) <= best:
            log_t = bound
    if min(log_t - log_lo, log_hi - log_t) < 1e-4:
        warnings.warn(
            f"fit_temperature: the NLL minimum lies at the search bound T={math.exp(log_t):.4g} "
            f"(bounds {bounds}); the validation logits may be perfectly separated or "
            "uninformative, so the fitted temperature is not meaningful",
            RuntimeWarning,
            stacklevel=2,
        )
    return math.exp(log_t)
