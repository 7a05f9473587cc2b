"""Muon and schedule-free AdamW (``optax.contrib``), and the parameters to evaluate at."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
from optax.contrib import MuonDimensionNumbers, ScheduleFreeState

from toolkit.optimizers.base import register
from toolkit.optimizers.schedules import concrete_float

__all__ = ["eval_params"]

# -- matrix-aware and schedule-free -----------------------------------------------------
# flax.linen.MultiHeadDotProductAttention projects in -> (heads, head_dim) with these.
_HEAD_PROJECTIONS = ("query", "key", "value")
# Flax's names for offsets and gains, which are never matrices (attention biases are 2-D).
_NOT_MATRICES = ("bias", "scale")


def _key_name(entry: Any) -> str:
    return str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", ""))))


def _muon_dimension_numbers(reshape_kernels: bool) -> Callable[[Any], Any]:
    """Which leaves Muon orthogonalises, and as what matrix; None sends a leaf to AdamW.

    Leaves of rank < 2, biases and gains (flax names "bias", "scale"; attention biases are
    (heads, head_dim)) and embedding tables (a name containing "embed": lookups, not
    linear maps) take AdamW, as Jordan et al. recommend. A rank-2 leaf is an (in, out)
    matrix. With ``reshape_kernels``, a higher-rank kernel becomes the matrix of the linear
    map it applies: a flax conv kernel (*window, in, out) is (prod(window) * in, out), the
    convolution as a matmul on patches (Jordan et al.'s convnet setup), and so is an
    attention output kernel (heads, head_dim, out); an attention query/key/value kernel
    (in, heads, head_dim) is (in, heads * head_dim). Without it they take AdamW (optax's
    default rule: only rank-2 leaves are matrices).
    """

    def spec(path: tuple[Any, ...], x: jax.Array) -> MuonDimensionNumbers | None:
        names = [_key_name(entry) for entry in path]
        name = names[-1] if names else ""
        if x.ndim < 2 or name in _NOT_MATRICES or "embed" in name:
            return None
        if x.ndim > 2 and not reshape_kernels:
            return None
        if x.ndim > 2 and len(names) > 1 and names[-2] in _HEAD_PROJECTIONS:
            return MuonDimensionNumbers(reduction_axis=0, output_axis=tuple(range(1, x.ndim)))
        return MuonDimensionNumbers(reduction_axis=tuple(range(x.ndim - 1)), output_axis=-1)

    return lambda params: jax.tree_util.tree_map_with_path(spec, params)


@register(
    "muon",
    weight_decay="decoupled",
    description="Muon: orthogonalised momentum for matrices, AdamW for the rest.",
    # Jordan et al. 2024 use 0.02 with beta = 0.95 (orthogonalised steps have unit scale).
    search_space={
        "learning_rate": ("loguniform", 2e-3, 2e-1),
        "beta": ("choice", 0.9, 0.95),
        "weight_decay": ("loguniform", 1e-5, 1e-1),
    },
)
def muon(
    *,
    learning_rate: Any = 0.02,
    beta: float = 0.95,
    ns_steps: int = 5,
    nesterov: bool = True,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    reshape_kernels: bool = True,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """For each matrix W: m <- beta m + (1 - beta) g; W <- W - eta_t (s NS(m~) + lambda W),
    with m~ the (Nesterov, bias-corrected) momentum, NS ``ns_steps`` Newton-Schulz steps
    towards the orthogonal polar factor U V^T and s = sqrt(max(1, fan_out / fan_in)).
    Other leaves take Nesterov AdamW(eta_t, adam_b1, adam_b2, lambda); both parts share
    the learning rate (optax's choice). Which leaves are
    matrices, and how higher-rank kernels are flattened, is set by ``reshape_kernels``
    (see ``_muon_dimension_numbers``); a classifier's last Dense kernel counts as a matrix
    although Jordan et al. give that layer to AdamW.

    Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024
    (kellerjordan.github.io/posts/muon); ``optax.contrib.muon``.
    """
    return optax.contrib.muon(
        learning_rate,
        ns_steps=ns_steps,
        beta=beta,
        weight_decay=weight_decay,
        nesterov=nesterov,
        adam_b1=adam_b1,
        adam_b2=adam_b2,
        adam_weight_decay=weight_decay,
        muon_weight_dimension_numbers=_muon_dimension_numbers(reshape_kernels),
    )


@register(
    "schedule_free_adamw",
    weight_decay="decoupled",
    description="Schedule-free AdamW; evaluate at eval_params(opt_state, params).",
    # Defazio et al. 2024 use rates somewhat above AdamW's (default 2.5e-3 here).
    search_space={
        "learning_rate": ("loguniform", 2.5e-4, 5e-2),
        "b1": ("choice", 0.9, 0.95),
        "weight_decay": ("loguniform", 1e-5, 1e-1),
    },
)
def schedule_free_adamw(
    *,
    learning_rate: Any = 2.5e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_lr_power: float = 2.0,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """z <- z - eta_t (g(y) / (sqrt(v_hat) + eps) + lambda y); x <- (1 - c) x + c z with
    c = eta_t^2 / sum eta_i^2; y = (1 - b1) z + b1 x. Training steps at y (the params the
    optimizer returns); evaluate at x = ``eval_params``. Meant for a constant schedule
    with warmup, not a decaying one.

    Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    if concrete_float("b1", b1) == 0.0:
        raise ValueError("schedule_free_adamw needs b1 > 0 (eval params divide by b1), got 0")
    return optax.contrib.schedule_free_adamw(
        learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
        weight_lr_power=weight_lr_power,
    )  # fmt: skip


# -- evaluation parameters --------------------------------------------------------------
def eval_params(opt_state: optax.OptState, params: optax.Params) -> optax.Params:
    """The parameters to evaluate a model at: schedule-free's average x, else ``params``.

    Finds the ``ScheduleFreeState`` wherever it sits in ``opt_state`` (chains, clipping)
    and returns ``optax.contrib.schedule_free_eval_params``, x = (y - (1 - b1) z) / b1;
    any other state returns ``params`` unchanged. For a population stacked on a leading
    axis, call it inside the same ``jax.vmap`` as the train step (b1 is per member).
    """
    found = optax.tree.get_all_with_path(
        opt_state,
        "ScheduleFreeState",
        filtering=lambda _, value: isinstance(value, ScheduleFreeState),
    )
    if not found:
        return params
    if len(found) > 1:
        paths = ", ".join(jax.tree_util.keystr(path) for path, _ in found)
        raise ValueError(f"eval_params: several schedule-free states in opt_state at {paths}")
    return optax.contrib.schedule_free_eval_params(found[0][1], params)
