"""The SGD family and the adaptive optimizers (optax's), registered by name."""

from __future__ import annotations

from typing import Any

import optax

from toolkit.optimizers.base import coupled_l2, is_zero, register


# -- SGD family ------------------------------------------------------------------------
@register("sgd", weight_decay="l2", description="Plain stochastic gradient descent.")
def sgd(*, learning_rate: Any = 0.01, weight_decay: Any = 0.0) -> optax.GradientTransformation:
    """p <- p - eta_t (g + lambda p) (Robbins & Monro 1951)."""
    return coupled_l2(weight_decay, optax.sgd(learning_rate))


@register("momentum", weight_decay="l2", description="SGD with heavy-ball momentum.")
def momentum(
    *, learning_rate: Any = 0.01, momentum: float = 0.9, weight_decay: Any = 0.0
) -> optax.GradientTransformation:
    """m <- mu m + g; p <- p - eta_t m (Polyak 1964; optax/PyTorch form, no dampening)."""
    return coupled_l2(weight_decay, optax.sgd(learning_rate, momentum=momentum))


@register("nesterov", weight_decay="l2", description="SGD with Nesterov momentum.")
def nesterov(
    *, learning_rate: Any = 0.01, momentum: float = 0.9, weight_decay: Any = 0.0
) -> optax.GradientTransformation:
    """m <- mu m + g; p <- p - eta_t (g + mu m) (Nesterov 1983; Sutskever et al. 2013)."""
    return coupled_l2(weight_decay, optax.sgd(learning_rate, momentum=momentum, nesterov=True))


# -- adaptive ---------------------------------------------------------------------------
@register("adam", weight_decay="l2", description="Adam; weight_decay is coupled L2.")
def adam(
    *,
    learning_rate: Any = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """p <- p - eta_t m_hat / (sqrt(v_hat) + eps), bias-corrected moments of g + lambda p.

    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return coupled_l2(weight_decay, optax.adam(learning_rate, b1=b1, b2=b2, eps=eps))


@register("adamw", weight_decay="decoupled", description="Adam with decoupled weight decay.")
def adamw(
    *,
    learning_rate: Any = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: Any = 1e-4,
) -> optax.GradientTransformation:
    """p <- p - eta_t (m_hat / (sqrt(v_hat) + eps) + lambda p).

    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (optax's
    default lambda = 1e-4).
    """
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


@register("lamb", weight_decay="decoupled", description="LAMB: layer-wise trust-ratio Adam.")
def lamb(
    *,
    learning_rate: Any = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """r = m_hat / (sqrt(v_hat) + eps) + lambda p; p <- p - eta_t (||p|| / ||r||) r per leaf.

    You et al., "Large Batch Optimization for Deep Learning", ICLR 2020.
    """
    return optax.lamb(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


@register("lion", weight_decay="decoupled", description="Lion: signed momentum (Chen 2023).")
def lion(
    *, learning_rate: Any = 1e-4, b1: float = 0.9, b2: float = 0.99, weight_decay: Any = 1e-3
) -> optax.GradientTransformation:
    """p <- p - eta_t (sign(b1 m + (1 - b1) g) + lambda p); m <- b2 m + (1 - b2) g.

    Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023 (use a
    rate 3-10x below AdamW's and a decay 3-10x above; defaults are optax's).
    """
    return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


@register("rmsprop", weight_decay="l2", description="RMSProp; weight_decay is coupled L2.")
def rmsprop(
    *,
    learning_rate: Any = 1e-3,
    decay: float = 0.9,
    eps: float = 1e-8,
    centered: bool = False,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """v <- d v + (1 - d) g^2; p <- p - eta_t g / sqrt(v + eps) (Tieleman & Hinton 2012)."""
    return coupled_l2(
        weight_decay, optax.rmsprop(learning_rate, decay=decay, eps=eps, centered=centered)
    )


@register(
    "adafactor",
    weight_decay="decoupled_unscaled",
    description="Adafactor: factored second moments, relative step size.",
)
def adafactor(
    *,
    learning_rate: Any = 1e-2,
    decay_rate: float = 0.8,
    clipping_threshold: float | None = 1.0,
    multiply_by_parameter_scale: bool = True,
    min_dim_size_to_factor: int = 128,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """Adam-like step with row/column-factored v, update RMS clipped at ``clipping_threshold``
    and scaled by max(RMS(p), 1e-3); decay p <- p - lambda p is not scaled by eta_t.

    Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
    ICML 2018. Matrices with both sides below ``min_dim_size_to_factor`` keep a full v.
    """
    return optax.adafactor(
        learning_rate,
        min_dim_size_to_factor=min_dim_size_to_factor,
        decay_rate=decay_rate,
        clipping_threshold=clipping_threshold,
        multiply_by_parameter_scale=multiply_by_parameter_scale,
        weight_decay_rate=None if is_zero(weight_decay) else weight_decay,
    )
