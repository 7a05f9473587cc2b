"""The SGD family and the adaptive optimizers (optax's), registered by name."""

from __future__ import annotations

from typing import Any

import optax

from toolkit.optimizers.base import coupled_l2, is_zero, register

# Search spaces (log-uniform for scale-like values). Learning rates: about a decade and a half
# around each optimizer's usual values. Weight decay: coupled L2 (added to the gradient) is
# used around 5e-4 (He et al. 2016 on CIFAR); decoupled decay multiplies the learning rate,
# so its values are larger (Loshchilov & Hutter 2019; AdamW is often run at 1e-2 to 1e-1).
L2_DECAY = ("loguniform", 1e-6, 1e-2)
DECOUPLED_DECAY = ("loguniform", 1e-5, 1e-1)
SGD_SPACE = {"learning_rate": ("loguniform", 1e-3, 1.0), "weight_decay": L2_DECAY}
# Heavy-ball and Nesterov momentum: 0.9 is standard; Sutskever et al. 2013 go up to 0.99.
MOMENTUM_SPACE = {**SGD_SPACE, "momentum": ("uniform", 0.8, 0.99)}
# Adam: Kingma & Ba use 1e-3; b2 0.999 (theirs), 0.99 or 0.98 (shorter memory, as in
# transformers) are the common choices.
ADAM_LR = ("loguniform", 1e-4, 3e-2)
ADAM_B2 = ("choice", 0.98, 0.99, 0.999)


# -- SGD family ------------------------------------------------------------------------
@register(
    "sgd",
    weight_decay="l2",
    description="Plain stochastic gradient descent.",
    search_space=SGD_SPACE,
)
def sgd(*, learning_rate: Any = 0.01, weight_decay: Any = 0.0) -> optax.GradientTransformation:
    """p <- p - eta_t (g + lambda p) (Robbins & Monro 1951)."""
    return coupled_l2(weight_decay, optax.sgd(learning_rate))


@register(
    "momentum",
    weight_decay="l2",
    description="SGD with heavy-ball momentum.",
    search_space=MOMENTUM_SPACE,
)
def momentum(
    *, learning_rate: Any = 0.01, momentum: float = 0.9, weight_decay: Any = 0.0
) -> optax.GradientTransformation:
    """m <- mu m + g; p <- p - eta_t m (Polyak 1964; optax/PyTorch form, no dampening)."""
    return coupled_l2(weight_decay, optax.sgd(learning_rate, momentum=momentum))


@register(
    "nesterov",
    weight_decay="l2",
    description="SGD with Nesterov momentum.",
    search_space=MOMENTUM_SPACE,
)
def nesterov(
    *, learning_rate: Any = 0.01, momentum: float = 0.9, weight_decay: Any = 0.0
) -> optax.GradientTransformation:
    """m <- mu m + g; p <- p - eta_t (g + mu m) (Nesterov 1983; Sutskever et al. 2013)."""
    return coupled_l2(weight_decay, optax.sgd(learning_rate, momentum=momentum, nesterov=True))


# -- adaptive ---------------------------------------------------------------------------
@register(
    "adam",
    weight_decay="l2",
    description="Adam; weight_decay is coupled L2.",
    search_space={"learning_rate": ADAM_LR, "b2": ADAM_B2, "weight_decay": L2_DECAY},
)
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


@register(
    "adamw",
    weight_decay="decoupled",
    description="Adam with decoupled weight decay.",
    search_space={"learning_rate": ADAM_LR, "b2": ADAM_B2, "weight_decay": DECOUPLED_DECAY},
)
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


@register(
    "lamb",
    weight_decay="decoupled",
    description="LAMB: layer-wise trust-ratio Adam.",
    search_space={"learning_rate": ADAM_LR, "b2": ADAM_B2, "weight_decay": DECOUPLED_DECAY},
)
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


# Chen et al. 2023: a rate 3-10x below AdamW's, a decay 3-10x above.
@register(
    "lion",
    weight_decay="decoupled",
    description="Lion: signed momentum (Chen 2023).",
    search_space={
        "learning_rate": ("loguniform", 1e-5, 3e-3),
        "b2": ("choice", 0.98, 0.99),
        "weight_decay": ("loguniform", 1e-4, 1.0),
    },
)
def lion(
    *, learning_rate: Any = 1e-4, b1: float = 0.9, b2: float = 0.99, weight_decay: Any = 1e-3
) -> optax.GradientTransformation:
    """p <- p - eta_t (sign(b1 m + (1 - b1) g) + lambda p); m <- b2 m + (1 - b2) g.

    Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023 (use a
    rate 3-10x below AdamW's and a decay 3-10x above; defaults are optax's).
    """
    return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


@register(
    "rmsprop",
    weight_decay="l2",
    description="RMSProp; weight_decay is coupled L2.",
    search_space={
        "learning_rate": ("loguniform", 1e-5, 1e-2),
        "decay": ("uniform", 0.8, 0.99),
        "weight_decay": L2_DECAY,
    },
)
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
    # Relative steps (scaled by the parameters' RMS): Shazeer & Stern use 1e-2; the decay is
    # not scaled by the rate, so it is small.
    search_space={
        "learning_rate": ("loguniform", 1e-3, 1e-1),
        "weight_decay": ("loguniform", 1e-7, 1e-3),
    },
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
