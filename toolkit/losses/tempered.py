"""The bi-tempered logistic loss and its tempered logarithm, exponential and softmax.

Amid, Warmuth, Anil & Koren 2019, "Robust bi-tempered logistic loss based on Bregman
divergences" (NeurIPS). Tempered functions, for temperature t (t = 1 gives log / exp):

    log_t(x) = (x^(1-t) - 1) / (1 - t)
    exp_t(x) = [1 + (1 - t) x]_+^(1/(1-t))

The tempered softmax is ``p_j = exp_t(z_j - lambda_t(z))`` with the normalizer
``lambda_t`` chosen so that ``sum_j p_j = 1``. For t > 1 (heavy tails) it is found with
the paper's fixed-point iteration (Algorithm 1, as in google/bi-tempered-loss); the
compact-support case t < 1 needs a bisection instead and is not provided.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from toolkit.losses.base import check_inputs, check_range, check_static, one_hot, register

__all__ = ["bi_tempered", "exp_t", "log_t", "tempered_log_softmax", "tempered_softmax"]


def log_t(x: jax.Array, t: float) -> jax.Array:
    """Tempered logarithm ``log_t(x) = (x^(1-t) - 1) / (1 - t)``; ``log`` at t = 1.

    Written as ``expm1((1 - t) log x) / (1 - t)`` to keep precision for t near 1.
    """
    if t == 1.0:
        return jnp.log(x)
    return jnp.expm1((1.0 - t) * jnp.log(x)) / (1.0 - t)


def exp_t(x: jax.Array, t: float) -> jax.Array:
    """Tempered exponential ``exp_t(x) = [1 + (1 - t) x]_+^(1/(1-t))``; ``exp`` at t = 1.

    Written as ``exp(log1p((1 - t) x) / (1 - t))`` to keep precision for t near 1. Where
    ``1 + (1 - t) x <= 0`` it is 0 for t < 1 (compact support) and +inf for t > 1 (the pole).
    """
    if t == 1.0:
        return jnp.exp(x)
    base = (1.0 - t) * x
    inside = base > -1.0
    value = jnp.exp(jnp.log1p(jnp.where(inside, base, 0.0)) / (1.0 - t))
    return jnp.where(inside, value, 0.0 if t < 1.0 else jnp.inf)


def _check_temperature(where: str, name: str, t: float, num_iters: int) -> None:
    check_static(where, name, t)
    check_static(where, "num_iters", num_iters, kind=int)
    if not t >= 1.0:
        raise ValueError(
            f"loss {where!r}: {name} must be >= 1 (tail-heavy tempered softmax, normalized "
            f"by the fixed-point iteration); {name} < 1 needs a bisection that is not "
            f"provided, got {name}={t!r}"
        )
    if num_iters < 1:
        raise ValueError(f"loss {where!r}: num_iters must be >= 1, got {num_iters!r}")


def _normalizer(logits: jax.Array, t: float, num_iters: int) -> jax.Array:
    """``lambda_t(z)`` (B, 1) for t > 1 by the fixed-point iteration of Amid et al.

    With ``a0 = z - max z``, iterate ``Z = sum_j exp_t(a_j)``, ``a = a0 * Z^(1-t)``; then
    ``lambda = max z - log_t(1/Z) = max z + (Z^(t-1) - 1) / (t - 1)``.
    """
    mu = jnp.max(logits, axis=-1, keepdims=True)
    a0 = logits - mu

    def step(_, a):
        partition = jnp.sum(exp_t(a, t), axis=-1, keepdims=True)
        return a0 * partition ** (1.0 - t)

    a = jax.lax.fori_loop(0, num_iters, step, a0)
    partition = jnp.sum(exp_t(a, t), axis=-1, keepdims=True)
    return mu - log_t(1.0 / partition, t)


def tempered_log_softmax(logits: jax.Array, t: float, num_iters: int = 5) -> jax.Array:
    """``log p`` of the tempered softmax, (B, C), for a Python float t >= 1.

    For t > 1, ``log exp_t(u) = log1p((1 - t) u) / (1 - t)`` with ``u = z - lambda <= 0``,
    finite for any finite logits; t = 1 is ``jax.nn.log_softmax``.
    """
    _check_temperature("tempered_softmax", "t", t, num_iters)
    if t == 1.0:
        return jax.nn.log_softmax(logits, axis=-1)
    # lambda >= max z, so u <= 0; the clamp only removes rounding above 0 (keeps p <= 1).
    u = jnp.minimum(logits - _normalizer(logits, t, num_iters), 0.0)
    return jnp.log1p((1.0 - t) * u) / (1.0 - t)


def tempered_softmax(logits: jax.Array, t: float, num_iters: int = 5) -> jax.Array:
    """Tempered softmax ``p_j = exp_t(z_j - lambda_t(z))`` (B, C), for t >= 1."""
    return jnp.exp(tempered_log_softmax(logits, t, num_iters))


def _smoothed_targets(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
    """Google's smoothing: mass ``s`` spread over the C - 1 wrong classes.

    ``y = (1 - C s / (C - 1)) e_y + s / (C - 1)``: the true class gets 1 - s.
    """
    num_classes = logits.shape[-1]
    scale = 1.0 - num_classes / (num_classes - 1) * smoothing
    return scale * one_hot(logits, labels) + smoothing / (num_classes - 1)


def _bi_tempered_forward(logits, labels, t1, t2, smoothing, num_iters):
    targets = _smoothed_targets(logits, labels, smoothing)
    log_p = tempered_log_softmax(logits, t2, num_iters)
    log_t1_p = log_p if t1 == 1.0 else jnp.expm1((1.0 - t1) * log_p) / (1.0 - t1)
    positive = targets > 0
    # y log_t1(y) -> 0 as y -> 0; the inner where keeps log(0) out of the graph.
    safe_targets = jnp.where(positive, targets, 1.0)
    targets_log_t1 = jnp.where(positive, targets * log_t(safe_targets, t1), 0.0)
    power = 2.0 - t1
    per_class = (
        targets_log_t1 - targets * log_t1_p - (targets**power - jnp.exp(power * log_p)) / power
    )
    return jnp.sum(per_class, axis=-1), (targets, log_p)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _bi_tempered(logits, labels, t1, t2, smoothing, num_iters):
    return _bi_tempered_forward(logits, labels, t1, t2, smoothing, num_iters)[0]


def _bi_tempered_fwd(logits, labels, t1, t2, smoothing, num_iters):
    loss, residuals = _bi_tempered_forward(logits, labels, t1, t2, smoothing, num_iters)
    return loss, (residuals, labels)


def _bi_tempered_bwd(t1, t2, smoothing, num_iters, residuals, g):
    """The paper's closed-form gradient (as in google/bi-tempered-loss).

    ``d L / d z = (p - y) p^(t2-t1) - e * sum_k (p_k - y_k) p_k^(t2-t1)`` with the escort
    distribution ``e = p^t2 / sum_k p_k^t2`` (= softmax(t2 log p), computed stably).
    """
    (targets, log_p), labels = residuals
    delta = (jnp.exp(log_p) - targets) * jnp.exp((t2 - t1) * log_p)
    escort = jax.nn.softmax(t2 * log_p, axis=-1)
    grad = delta - escort * jnp.sum(delta, axis=-1, keepdims=True)
    # Integer labels have no tangent space: their cotangent is float0 zeros.
    labels_cotangent = jnp.zeros(labels.shape, dtype=jax.dtypes.float0)
    return g[:, None] * grad, labels_cotangent


_bi_tempered.defvjp(_bi_tempered_fwd, _bi_tempered_bwd)


# Amid et al. 2019: t1 < 1 bounds the loss, t2 > 1 gives heavy tails (e.g. t1 = 0.8, t2 = 1.2);
# t2 stays <= 1.5, where the default 5 normalizer iterations are accurate (see the docstring).
@register(
    "bi_tempered",
    description="Bi-tempered logistic loss (Amid et al. 2019).",
    search_space={"t1": ("uniform", 0.5, 1.0), "t2": ("uniform", 1.0, 1.5)},
)
def bi_tempered(
    logits: jax.Array,
    labels: jax.Array,
    *,
    t1: float = 0.8,
    t2: float = 1.2,
    smoothing: float = 0.0,
    num_iters: int = 5,
) -> jax.Array:
    """Bi-tempered logistic loss, a Bregman divergence between tempered distributions.

    ``p = tempered_softmax_{t2}(z)`` and, with targets y,

        L = sum_j [ y_j (log_t1 y_j - log_t1 p_j) - (y_j^(2-t1) - p_j^(2-t1)) / (2 - t1) ]

    t1 in [0, 1] bounds the loss (t1 < 1), t2 >= 1 gives heavy tails (t2 > 1); t1 = t2 = 1
    is softmax cross-entropy. ``smoothing`` s moves mass s from the true class to the
    others evenly (Google's convention). The gradient is the paper's closed form (a
    custom VJP), as in the reference code. t1, t2, smoothing and num_iters select code
    paths and must be Python numbers (static under jit; not vmappable).

    Accuracy: ``num_iters = 5`` (the reference's default) leaves the normalizer off by
    about 1e-5 at t2 = 1.2 but up to ~1e-1 at t2 = 2 on logits of scale 1-10; 20
    iterations bring both below 1e-6. Raise ``num_iters`` for large t2.
    Reference: Amid et al. 2019, "Robust bi-tempered logistic loss based on Bregman
    divergences", Algorithm 1; code: github.com/google/bi-tempered-loss.
    """
    check_inputs("bi_tempered", logits, labels)
    check_static("bi_tempered", "t1", t1)
    check_static("bi_tempered", "smoothing", smoothing)
    check_range("bi_tempered", "t1", t1, low=0.0, high=1.0)
    _check_temperature("bi_tempered", "t2", t2, num_iters)
    num_classes = logits.shape[-1]
    # Beyond (C - 1) / C the true class would get less target mass than the others.
    max_smoothing = (num_classes - 1) / num_classes
    check_range("bi_tempered", "smoothing", smoothing, low=0.0, high=max_smoothing)
    return _bi_tempered(logits, labels, float(t1), float(t2), float(smoothing), int(num_iters))
