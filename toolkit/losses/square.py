"""Square losses: on the logits (Hui & Belkin) and on the probabilities (Brier).

Notation: z = logits (B, C), y = the true class, p = softmax(z), e_y = the one-hot target.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from optax import losses as optax_losses

from toolkit.losses.base import check_inputs, check_range, one_hot, register

__all__ = ["brier", "squared_error"]


# Hui & Belkin 2021 use k = M = 1 for few classes and up to k = 15, M = 30 (ImageNet).
@register(
    "squared_error",
    description="Square loss on the logits, rescaled (Hui & Belkin 2021).",
    search_space={"k": ("loguniform", 1.0, 15.0), "M": ("loguniform", 1.0, 30.0)},
)
def squared_error(
    logits: jax.Array, labels: jax.Array, *, k: float = 1.0, M: float = 1.0
) -> jax.Array:
    """Rescaled square loss on the logits, averaged over classes.

    ``L = (1/C) [k (z_y - M)^2 + sum_{j != y} z_j^2]``; ``k = M = 1`` is the plain mean
    squared error to the one-hot target. ``k`` weights the true class and ``M`` is its
    target value (the paper uses k > 1, M > 1 for many classes).
    Wraps ``optax.losses.squared_error``.
    Reference: Hui & Belkin 2021, "Evaluation of neural architectures trained with square
    loss vs cross-entropy in classification tasks" (rescaled square loss).
    """
    check_inputs("squared_error", logits, labels)
    check_range("squared_error", "k", k, low=0.0, low_open=True)
    target = one_hot(logits, labels)
    per_class = optax_losses.squared_error(logits, M * target)
    weight = 1.0 + (k - 1.0) * target
    return jnp.mean(weight * per_class, axis=-1)


@register("brier", description="Brier score: squared error of the softmax, summed over classes.")
def brier(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Brier score ``L = sum_j (p_j - e_j)^2``, in [0, 2].

    Wraps ``optax.losses.squared_error`` on the softmax probabilities.
    Reference: Brier 1950, "Verification of forecasts expressed in terms of probability".
    """
    check_inputs("brier", logits, labels)
    probs = jax.nn.softmax(logits, axis=-1)
    return jnp.sum(optax_losses.squared_error(probs, one_hot(logits, labels)), axis=-1)
