"""Losses that are robust to label noise: bounded, symmetric or normalized ones.

Notation: z = logits (B, C), y = the true class, p = softmax(z), p_y = p[y],
e_y = the one-hot target, CE = -log p_y.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toolkit.losses.base import (
    check_inputs,
    check_range,
    log_one_minus_true_prob,
    one_hot,
    register,
    true_class,
)

__all__ = ["arctan", "gce", "mae", "nce_rce", "sce"]


def _reverse_cross_entropy(logits: jax.Array, labels: jax.Array, log_zero: float) -> jax.Array:
    """``RCE = -sum_j p_j log e_j`` with ``log 0 := A``, which is ``-A (1 - p_y)``."""
    return -log_zero * jnp.exp(log_one_minus_true_prob(logits, labels))


@register("mae", description="Mean absolute error of the softmax, 2 (1 - p_y) (Ghosh et al. 2017).")
def mae(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """MAE on probabilities ``L = sum_j |p_j - e_j| = 2 (1 - p_y)``, in [0, 2].

    Symmetric (``sum_k L(z, k)`` is constant), hence tolerant to uniform label noise.
    ``1 - p_y`` comes from the other classes' mass, exact when p_y is near 1.
    Reference: Ghosh, Kumar & Sastry 2017, "Robust loss functions under label noise for
    deep neural networks".
    """
    check_inputs("mae", logits, labels)
    return 2.0 * jnp.exp(log_one_minus_true_prob(logits, labels))


# Zhang & Sabuncu 2018: q in (0, 1], from near CE (q -> 0) to MAE (q = 1); they use q = 0.7.
@register(
    "gce",
    description="Generalized cross-entropy (1 - p_y^q) / q (Zhang & Sabuncu 2018).",
    search_space={"q": ("uniform", 0.1, 1.0)},
)
def gce(logits: jax.Array, labels: jax.Array, *, q: float = 0.7) -> jax.Array:
    """Generalized cross-entropy (L_q loss) ``L = (1 - p_y^q) / q`` for q in (0, 1].

    Interpolates between CE (limit q -> 0) and MAE / 2 (q = 1). Computed as
    ``-expm1(q log p_y) / q`` so that small q keeps full precision.
    Reference: Zhang & Sabuncu 2018, "Generalized cross entropy loss for training deep
    neural networks with noisy labels" (q = 0.7).
    """
    check_inputs("gce", logits, labels)
    check_range("gce", "q", q, low=0.0, high=1.0, low_open=True)
    log_p_y = true_class(jax.nn.log_softmax(logits, axis=-1), labels)
    return -jnp.expm1(q * log_p_y) / q


# Wang et al. 2019: alpha = 0.1, beta = 1 (CIFAR-10) to alpha = 6, beta = 0.1 (CIFAR-100);
# weights are scale-like, hence log-uniform over those ranges.
@register(
    "sce",
    description="Symmetric cross-entropy alpha CE + beta RCE (Wang et al. 2019).",
    search_space={"alpha": ("loguniform", 0.01, 10.0), "beta": ("loguniform", 0.1, 10.0)},
)
def sce(
    logits: jax.Array,
    labels: jax.Array,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = -4.0,
) -> jax.Array:
    """Symmetric cross-entropy ``L = alpha CE + beta RCE``.

    ``RCE = -sum_j p_j log e_j`` with ``log 0`` clipped to ``A = log_zero``, which is
    ``-A (1 - p_y)``. The paper sets A = -4; the authors' code clamps the one-hot target
    at 1e-4 instead, i.e. ``log_zero = log(1e-4) ~ -9.21``.
    Reference: Wang et al. 2019, "Symmetric cross entropy for robust learning with noisy
    labels" (A = -4; alpha = 0.1, beta = 1 for CIFAR-10).
    """
    check_inputs("sce", logits, labels)
    check_range("sce", "alpha", alpha, low=0.0)
    check_range("sce", "beta", beta, low=0.0)
    check_range("sce", "log_zero", log_zero, high=0.0, high_open=True)
    ce = true_class(-jax.nn.log_softmax(logits, axis=-1), labels)
    return alpha * ce + beta * _reverse_cross_entropy(logits, labels, log_zero)


# Ma et al. 2020 tune alpha, beta per dataset: alpha = beta = 1 (CIFAR-10), alpha = 10,
# beta = 0.1 (CIFAR-100); log-uniform over a decade either side of 1.
@register(
    "nce_rce",
    description="Active-passive loss alpha NCE + beta RCE (Ma et al. 2020).",
    search_space={"alpha": ("loguniform", 0.1, 10.0), "beta": ("loguniform", 0.1, 10.0)},
)
def nce_rce(
    logits: jax.Array,
    labels: jax.Array,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    log_zero: float = -4.0,
) -> jax.Array:
    """Normalized CE plus reverse CE, ``L = alpha NCE + beta RCE``.

    ``NCE = log p_y / sum_j log p_j`` (CE divided by its sum over all labels, in [0, 1]),
    ``RCE = -A (1 - p_y)`` as in :func:`sce` with ``A = log_zero``. The denominator is at
    least ``C log C`` (Jensen), so the ratio is always defined.
    Reference: Ma et al. 2020, "Normalized loss functions for deep learning with noisy
    labels" (NCE, and the active-passive loss NCE+RCE).
    """
    check_inputs("nce_rce", logits, labels)
    check_range("nce_rce", "alpha", alpha, low=0.0)
    check_range("nce_rce", "beta", beta, low=0.0)
    check_range("nce_rce", "log_zero", log_zero, high=0.0, high_open=True)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    nce = true_class(log_p, labels) / jnp.sum(log_p, axis=-1)
    return alpha * nce + beta * _reverse_cross_entropy(logits, labels, log_zero)


@register("arctan", description="Mean over classes of arctan(p_j - e_j)^2.")
def arctan(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Arctan error ``L = (1/C) sum_j arctan(p_j - e_j)^2`` (the arctan, squared).

    A bounded, Brier-like loss on the probabilities: arctan(d) ~ d for small d, and it
    flattens the penalty of confident mistakes (|p_j - e_j| near 1) slightly.
    Reference: no single canonical paper; this follows the toolkit's reference notes
    (docs: "mean over classes of arctan(p - y)^2"), read as the square of the arctan.
    """
    check_inputs("arctan", logits, labels)
    probs = jax.nn.softmax(logits, axis=-1)
    return jnp.mean(jnp.square(jnp.arctan(probs - one_hot(logits, labels))), axis=-1)
