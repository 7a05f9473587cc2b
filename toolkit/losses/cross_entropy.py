"""Cross-entropy and its reweighted relatives: label smoothing, focal, Poly-1, LogitNorm.

Notation for every docstring: z = logits (B, C), y = the true class, p = softmax(z),
p_y = p[y], e_y = the one-hot target. All losses return one value per example (B,).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from optax import losses as optax_losses

from toolkit.losses.base import (
    check_inputs,
    check_range,
    log_one_minus_true_prob,
    one_hot,
    register,
    true_class,
)

__all__ = [
    "label_smoothing",
    "logitnorm",
    "poly1",
    "sigmoid_cross_entropy",
    "sigmoid_focal",
    "softmax_cross_entropy",
    "softmax_focal",
]


@register("softmax_cross_entropy", description="Softmax cross-entropy -log p_y.")
def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy, ``CE = -log p_y = logsumexp(z) - z_y``.

    Wraps ``optax.losses.softmax_cross_entropy_with_integer_labels``.
    Reference: Bridle 1990, "Probabilistic interpretation of feedforward classification
    network outputs".
    """
    check_inputs("softmax_cross_entropy", logits, labels)
    return optax_losses.softmax_cross_entropy_with_integer_labels(logits, labels)


# Szegedy et al. 2016 use s = 0.1; the range reaches a few times that, still well below the
# s = (C - 1) / C that makes the target uniform.
@register(
    "label_smoothing",
    description="Cross-entropy against label-smoothed targets.",
    search_space={"smoothing": ("uniform", 0.0, 0.3)},
)
def label_smoothing(logits: jax.Array, labels: jax.Array, *, smoothing: float = 0.1) -> jax.Array:
    """Cross-entropy against smoothed targets ``q = (1 - s) e_y + s / C``.

    ``L = -sum_j q_j log p_j = (1 - s) CE + s * mean_j(-log p_j)``; ``s = 0`` is CE.
    Wraps ``optax.losses.smooth_labels`` and ``optax.losses.softmax_cross_entropy``.
    Reference: Szegedy et al. 2016, "Rethinking the Inception architecture", sec. 7.
    """
    check_inputs("label_smoothing", logits, labels)
    check_range("label_smoothing", "smoothing", smoothing, low=0.0, high=1.0)
    targets = optax_losses.smooth_labels(one_hot(logits, labels), smoothing)
    return optax_losses.softmax_cross_entropy(logits, targets)


@register("sigmoid_cross_entropy", description="One-vs-all sigmoid cross-entropy, summed.")
def sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """One-vs-all binary cross-entropy on one-hot targets, summed over classes.

    ``L = -sum_j [e_j log sigmoid(z_j) + (1 - e_j) log sigmoid(-z_j)]``.
    Wraps ``optax.losses.sigmoid_binary_cross_entropy`` (log-sigmoid form, stable).
    Reference: e.g. Beyer et al. 2020, "Are we done with ImageNet?" (sigmoid loss).
    """
    check_inputs("sigmoid_cross_entropy", logits, labels)
    per_class = optax_losses.sigmoid_binary_cross_entropy(logits, one_hot(logits, labels))
    return jnp.sum(per_class, axis=-1)


def _alpha_t(loss: str, alpha, logits: jax.Array, labels: jax.Array) -> jax.Array | float:
    """The class weight of the true class: a scalar, or ``alpha[y]`` for a (C,) vector."""
    if alpha is None:
        return 1.0
    if np.ndim(alpha) == 0:
        check_range(loss, "alpha", alpha, low=0.0)
        return alpha
    alpha = jnp.asarray(alpha, dtype=logits.dtype)
    if alpha.shape != logits.shape[-1:]:
        raise ValueError(
            f"loss {loss!r}: alpha must be None, a scalar or one weight per class "
            f"(shape {logits.shape[-1:]}), got shape {alpha.shape}"
        )
    if not isinstance(alpha, jax.core.Tracer) and bool(jnp.any(alpha < 0)):
        raise ValueError(f"loss {loss!r}: alpha weights must be >= 0, got {alpha}")
    return alpha[labels]


# Lin et al. 2017, Table 1b, vary gamma over [0, 5]; Mukhoti et al. 2020 (calibration) use 3
# to 5. alpha (per-class weights) is not tuned.
@register(
    "softmax_focal",
    description="Focal loss on the softmax (Lin et al. 2017).",
    search_space={"gamma": ("uniform", 0.0, 5.0)},
)
def softmax_focal(
    logits: jax.Array,
    labels: jax.Array,
    *,
    gamma: float = 2.0,
    alpha: float | jax.Array | None = None,
) -> jax.Array:
    """Multi-class focal loss ``FL = -alpha_t (1 - p_y)^gamma log p_y`` on the softmax.

    ``alpha`` is None (alpha_t = 1), a scalar, or a (C,) vector of per-class weights
    (alpha_t = alpha[y]). ``gamma = 0`` and ``alpha = None`` give CE. The factor
    ``(1 - p_y)^gamma`` is ``exp(gamma * log(1 - p_y))`` with ``log(1 - p_y)`` taken from
    the other classes' logsumexp, so value and gradient stay finite when p_y rounds to 1,
    also for gamma < 1. (optax has only the sigmoid focal loss.)
    Reference: Lin et al. 2017, "Focal loss for dense object detection", eq. 5.
    """
    check_inputs("softmax_focal", logits, labels)
    check_range("softmax_focal", "gamma", gamma, low=0.0)
    log_p_y = true_class(jax.nn.log_softmax(logits, axis=-1), labels)
    modulator = jnp.exp(gamma * log_one_minus_true_prob(logits, labels))
    return -_alpha_t("softmax_focal", alpha, logits, labels) * modulator * log_p_y


# Lin et al. 2017, Table 1a/b: gamma over [0, 5], alpha from 0.1 to 0.9 (0.25 is the detection
# setting, where negatives dominate; 0.5 weighs both sides equally).
@register(
    "sigmoid_focal",
    description="One-vs-all sigmoid focal loss, summed (optax).",
    search_space={"gamma": ("uniform", 0.0, 5.0), "alpha": ("uniform", 0.1, 0.9)},
)
def sigmoid_focal(
    logits: jax.Array, labels: jax.Array, *, gamma: float = 2.0, alpha: float | None = 0.25
) -> jax.Array:
    """One-vs-all focal loss on one-hot targets, summed over classes.

    ``L = sum_j -alpha_t (1 - p_t)^gamma log p_t`` with ``p = sigmoid(z_j)``,
    ``p_t = p`` and ``alpha_t = alpha`` for the true class, ``p_t = 1 - p`` and
    ``alpha_t = 1 - alpha`` for the others (``alpha = None``: no weighting).
    Wraps ``optax.losses.sigmoid_focal_loss``.
    Reference: Lin et al. 2017, "Focal loss for dense object detection" (RetinaNet:
    gamma = 2, alpha = 0.25).
    """
    check_inputs("sigmoid_focal", logits, labels)
    check_range("sigmoid_focal", "gamma", gamma, low=0.0)
    if alpha is not None:
        check_range("sigmoid_focal", "alpha", alpha, low=0.0, high=1.0)
    per_class = optax_losses.sigmoid_focal_loss(
        logits, one_hot(logits, labels), alpha=alpha, gamma=gamma
    )
    return jnp.sum(per_class, axis=-1)


# Leng et al. 2022 keep epsilon >= -1 and find positive values best (epsilon = 2 on ImageNet).
@register(
    "poly1",
    description="Poly-1 loss CE + epsilon (1 - p_y) (Leng et al. 2022).",
    search_space={"epsilon": ("uniform", -1.0, 4.0)},
)
def poly1(logits: jax.Array, labels: jax.Array, *, epsilon: float = 1.0) -> jax.Array:
    """Poly-1 loss ``L = CE + epsilon (1 - p_y)``; ``epsilon = 0`` is CE.

    Wraps ``optax.losses.poly_loss_cross_entropy``.
    Reference: Leng et al. 2022, "PolyLoss: a polynomial expansion perspective of
    classification loss functions".
    """
    check_inputs("poly1", logits, labels)
    # The paper keeps epsilon >= -1 so the leading coefficient (1 + epsilon) stays >= 0.
    check_range("poly1", "epsilon", epsilon, low=-1.0)
    return optax_losses.poly_loss_cross_entropy(logits, one_hot(logits, labels), epsilon=epsilon)


def _safe_norm(x: jax.Array) -> jax.Array:
    """Euclidean norm over the last axis with a zero (not NaN) gradient at x = 0."""
    squared = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


# Wei et al. 2022 tune tau on validation data (0.04 for CIFAR-10); a decade either side of it,
# log-uniform since tau scales the logits.
@register(
    "logitnorm",
    description="Cross-entropy on L2-normalized logits (Wei et al. 2022).",
    search_space={"tau": ("loguniform", 0.004, 0.4)},
)
def logitnorm(
    logits: jax.Array, labels: jax.Array, *, tau: float = 0.04, eps: float = 1e-7
) -> jax.Array:
    """LogitNorm: CE on ``z / (tau (||z||_2 + eps))``.

    The normalized logits lie in [-1/tau, 1/tau], which bounds the confidence the loss
    can push towards. ``eps`` (1e-7 as in the authors' code) guards ``z = 0``.
    Reference: Wei et al. 2022, "Mitigating neural network overconfidence with logit
    normalization" (tau = 0.04 for CIFAR-10).
    """
    check_inputs("logitnorm", logits, labels)
    check_range("logitnorm", "tau", tau, low=0.0, low_open=True)
    check_range("logitnorm", "eps", eps, low=0.0, low_open=True)
    normalized = logits / ((_safe_norm(logits) + eps) * tau)
    return optax_losses.softmax_cross_entropy_with_integer_labels(normalized, labels)
