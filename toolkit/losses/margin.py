"""Margin losses on the raw logits: the Crammer-Singer hinge and its square.

Notation: z = logits (B, C), y = the true class, m = the margin.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from optax import losses as optax_losses

from toolkit.losses.base import check_inputs, check_range, register

__all__ = ["multiclass_hinge", "squared_hinge"]


def _crammer_singer(loss: str, logits: jax.Array, labels: jax.Array, margin: float) -> jax.Array:
    """``max_j (z_j + m [j != y]) - z_y`` (>= 0, the j = y term gives 0).

    optax's hinge has margin 1; the hinge is positively homogeneous, so
    ``m * h_1(z / m) = max_j (z_j + m [j != y]) - z_y`` for any m > 0.
    """
    check_inputs(loss, logits, labels)
    check_range(loss, "margin", margin, low=0.0, low_open=True)
    return margin * optax_losses.multiclass_hinge_loss(logits / margin, labels)


# The margin sets the logit scale the hinge asks for (Crammer & Singer 2001 use m = 1); it is
# scale-like, so log-uniform a decade either side of 1.
MARGIN_SPACE = {"margin": ("loguniform", 0.1, 10.0)}


@register(
    "multiclass_hinge",
    description="Crammer-Singer multi-class hinge loss.",
    search_space=MARGIN_SPACE,
)
def multiclass_hinge(logits: jax.Array, labels: jax.Array, *, margin: float = 1.0) -> jax.Array:
    """Crammer-Singer hinge ``L = max(0, m + max_{j != y} z_j - z_y)``.

    Equivalently ``max_j (z_j + m [j != y]) - z_y``. Wraps
    ``optax.losses.multiclass_hinge_loss`` (margin 1) by rescaling the logits.
    Reference: Crammer & Singer 2001, "On the algorithmic implementation of multiclass
    kernel-based vector machines".
    """
    return _crammer_singer("multiclass_hinge", logits, labels, margin)


@register(
    "squared_hinge", description="Squared Crammer-Singer hinge loss.", search_space=MARGIN_SPACE
)
def squared_hinge(logits: jax.Array, labels: jax.Array, *, margin: float = 1.0) -> jax.Array:
    """Squared Crammer-Singer hinge ``L = max(0, m + max_{j != y} z_j - z_y)^2``.

    This is the square of ``multiclass_hinge`` (one hinge per example, on the worst
    competing class), not the one-vs-all sum ``sum_j max(0, 1 - s_j z_j)^2``. Squared,
    the gradient goes to zero continuously as the margin is reached.
    Reference: Crammer & Singer 2001, "On the algorithmic implementation of multiclass
    kernel-based vector machines" (the hinge that is squared here).
    """
    return jnp.square(_crammer_singer("squared_hinge", logits, labels, margin))
