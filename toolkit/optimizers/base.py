"""The optimizer registry: the shared options (schedule, clipping, weight decay) around
each optimizer's own factory, and :func:`register` to add one (see :mod:`toolkit.optimizers`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax

from toolkit.optimizers import schedules
from toolkit.optimizers.schedules import check_nonnegative, check_positive, concrete_float
from toolkit.registry import Registry

__all__ = ["WEIGHT_DECAY_KINDS", "coupled_l2", "is_zero", "optimizers", "register"]

# Options every optimizer takes; its factory (in classic, contrib) takes the rest.
_COMMON = {
    "schedule": "constant",
    "schedule_hparams": None,
    "total_steps": None,
    "warmup_steps": 0,
    "grad_clip": None,
}
# Decay rates of moving averages: must lie in [0, 1).
_UNIT_INTERVAL = ("b1", "b2", "momentum", "beta", "decay", "adam_b1", "adam_b2")


def _standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` with init and update traced under standard dtype promotion (see module doc)."""
    tx = optax.with_extra_args_support(tx)

    def init(params: optax.Params) -> optax.OptState:
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(
        updates: optax.Updates, state: optax.OptState, params: optax.Params | None = None, **extra
    ) -> tuple[optax.Updates, optax.OptState]:
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra)

    return optax.GradientTransformationExtraArgs(init, update)


def _build(
    factory: Callable[..., optax.GradientTransformation],
    *,
    learning_rate: Any,
    weight_decay: Any,
    schedule: str,
    schedule_hparams: dict[str, Any] | None,
    total_steps: int | None,
    warmup_steps: int,
    grad_clip: Any,
    **own: Any,
) -> optax.GradientTransformation:
    """Checks the options, builds the schedule, the optimizer, then clipping in front."""
    check_nonnegative("weight_decay", weight_decay)
    if grad_clip is not None:
        check_positive("grad_clip", grad_clip)
    for key in _UNIT_INTERVAL:
        value = concrete_float(key, own[key]) if own.get(key) is not None else None
        if value is not None and not 0.0 <= value < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {own[key]!r}")
    lr = schedules.get(
        schedule,
        learning_rate=learning_rate,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        **(schedule_hparams or {}),
    )
    tx = factory(learning_rate=lr, weight_decay=weight_decay, **own)
    if grad_clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
    return _standard_promotion(tx)


optimizers = Registry("optimizer", build=_build, typed=True)


WEIGHT_DECAY_KINDS = ("l2", "decoupled", "decoupled_unscaled")


def register(
    name: str,
    *,
    description: str,
    weight_decay: str,
    search_space: Mapping[str, Any] | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator: registers ``factory(*, learning_rate, weight_decay, **own)`` under ``name``.

    ``learning_rate`` arrives as a schedule, and the shared options (schedule, warmup,
    gradient clipping) are applied around the factory, so a new optimizer only builds its
    own transformation. ``weight_decay`` says how the factory applies it, one of
    ``WEIGHT_DECAY_KINDS`` (see the module docstring). ``search_space``: the ranges a tuned
    sweep draws the hyperparameters from; every optimizer declares ``learning_rate``
    (log-uniform, a range suited to it) and ``weight_decay`` (log-uniform, on the scale of
    how it applies decay).
    """
    if weight_decay not in WEIGHT_DECAY_KINDS:
        raise ValueError(f"weight_decay must be one of {WEIGHT_DECAY_KINDS}, got {weight_decay!r}")

    def decorator(factory: Callable[..., optax.GradientTransformation]) -> Callable:
        own = {
            k: p.default
            for k, p in inspect.signature(factory).parameters.items()
            if p.default is not p.empty
        }
        optimizers.add(
            name,
            factory,
            description=description,
            defaults={**own, **_COMMON},
            meta={"weight_decay": weight_decay},
            search_space=search_space,
        )
        return factory

    return decorator


def is_zero(value: Any) -> bool:
    """True only for a concrete 0 (a traced value may be anything)."""
    return concrete_float("weight_decay", value) == 0.0


def coupled_l2(weight_decay: Any, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Adds weight_decay * p to the gradient before ``tx`` (coupled L2 regularisation)."""
    if is_zero(weight_decay):
        return tx
    return optax.chain(optax.add_decayed_weights(weight_decay), tx)
