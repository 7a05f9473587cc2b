"""The loss registry and the checks and helpers every loss shares.

A loss is a pure function ``loss(logits, labels, *, **hparams) -> (B,)`` (optax style:
per example, unreduced): ``logits`` is (B, C) float with C >= 2, ``labels`` is (B,)
integer class indices. Hyperparameter defaults come from the signature, so
``losses.get(name, **overrides)`` is a ``functools.partial`` that jit, vmap and
``jax.lax.switch`` accept as is.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit.registry import Registry

__all__ = [
    "check_inputs",
    "check_range",
    "check_static",
    "log_one_minus_true_prob",
    "losses",
    "one_hot",
    "register",
    "true_class",
]

losses = Registry("loss", build=functools.partial, typed=True)


def register(
    name: str,
    *,
    description: str,
    defaults: Mapping[str, Any] | None = None,
    search_space: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., jax.Array]], Callable[..., jax.Array]]:
    """Registers a loss ``fn(logits, labels, *, **hparams) -> (B,)`` under ``name``, with
    the ranges a tuned sweep draws its hyperparameters from (``search_space``)."""
    return losses.register(
        name, description=description, defaults=defaults, search_space=search_space
    )


def check_inputs(loss: str, logits: jax.Array, labels: jax.Array) -> None:
    """Raises unless ``logits`` is (B, C) float with C >= 2 and ``labels`` is (B,) int.

    Shapes and dtypes are static under jit, so this runs once per trace, before compute.
    """
    logits_shape, labels_shape = jnp.shape(logits), jnp.shape(labels)
    if len(logits_shape) != 2 or logits_shape[-1] < 2:
        raise ValueError(
            f"loss {loss!r}: logits must have shape (batch, num_classes) with "
            f"num_classes >= 2, got shape {logits_shape}"
        )
    if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
        raise TypeError(
            f"loss {loss!r}: logits must be floating point, got {jnp.result_type(logits)}"
        )
    if labels_shape != logits_shape[:1]:
        raise ValueError(
            f"loss {loss!r}: labels must be integer class indices of shape "
            f"{logits_shape[:1]} to match logits {logits_shape}, got shape {labels_shape}"
        )
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(
            f"loss {loss!r}: labels must be integer class indices, got dtype "
            f"{jnp.result_type(labels)} (one-hot or soft labels are not accepted)"
        )


def _is_concrete_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_range(
    loss: str,
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raises when a concrete hyperparameter lies outside its interval.

    Traced values (a hyperparameter swept under vmap) cannot be checked and pass.
    """
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, bool) or not (_is_concrete_number(value) or np.ndim(value) == 0):
        raise TypeError(f"loss {loss!r}: {name} must be a real number, got {value!r}")
    v = float(value)
    ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok or math.isnan(v):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"loss {loss!r}: {name} must be in {interval}, got {value!r}")


def check_static(loss: str, name: str, value: Any, kind: type = float) -> None:
    """Raises unless ``value`` is a plain Python number (it selects code paths at trace time)."""
    wanted = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise TypeError(
            f"loss {loss!r}: {name} must be a Python {kind.__name__} (it is static under jit), "
            f"got {value!r}"
        )


def one_hot(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """One-hot targets (B, C) in the dtype of ``logits``."""
    return jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)


def true_class(values: jax.Array, labels: jax.Array) -> jax.Array:
    """``values[b, labels[b]]`` for every row b: shape (B,)."""
    return jnp.take_along_axis(values, labels[:, None], axis=-1)[:, 0]


def log_one_minus_true_prob(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``log(1 - p_y)`` computed as ``logsumexp_{j != y} z_j - logsumexp_j z_j``.

    Writing ``1 - p_y`` as the mass of the other classes keeps it exact (and its
    gradient finite) when ``p_y`` rounds to 1, where ``log1p(-p_y)`` would be -inf.
    """
    others = jnp.arange(logits.shape[-1]) != labels[:, None]
    return jax.nn.logsumexp(logits, axis=-1, where=others) - jax.nn.logsumexp(logits, axis=-1)
