"""One entry point for every method, on a trained :class:`~toolkit.training.Run` or any
``fn(x) -> logits``: ``attribute("integrated_gradients", run, x, steps=64)``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from toolkit.attributions.methods import METHODS, check_target, logit_shape

__all__ = ["attribute", "needs_key"]


def needs_key(method: str) -> bool:
    """Whether ``method`` draws random numbers (and so takes ``key=``)."""
    return bool(METHODS.entry(method).meta.get("needs_key", False))


def _is_run(model: Any) -> bool:
    # A bound Linen module has .variables too; a Run is anything else with both.
    if isinstance(model, nn.Module):
        return False
    return hasattr(model, "model") and hasattr(model, "variables")


@dataclasses.dataclass(frozen=True)
class _ModuleLogits:
    """Logits of a Flax module in inference mode; hashable, so jit can key on it."""

    module: Any

    def __call__(self, variables: Mapping, batch: jax.Array) -> jax.Array:
        return self.module.apply(variables, batch, train=False)


@dataclasses.dataclass(frozen=True)
class _FnLogits:
    """A plain ``fn(x) -> logits`` (hashed by identity) in the same calling convention."""

    fn: Callable[[jax.Array], jax.Array]

    def __call__(self, variables: None, batch: jax.Array) -> jax.Array:
        del variables
        return self.fn(batch)


@functools.partial(jax.jit, static_argnames=("method", "logits", "static"))
def _attribute(variables, x, target, dynamic, key, *, method, logits, static):
    extra = {} if key is None else {"key": key}
    fn = functools.partial(logits, variables)
    return METHODS.get(method, **dict(static), **dynamic)(fn, x, target, **extra)


def attribute(
    method: str,
    model: Any,
    x: Any,
    target: Any = None,
    *,
    key: jax.Array | None = None,
    variables: Mapping | None = None,
    **hparams: Any,
) -> jax.Array:
    """Attributions (shape of ``x``) of ``method`` for the target logit of ``model``.

    Args:
      method: a name in :data:`METHODS` (``METHODS.names()``).
      model: a trained Run (anything with ``.model`` and ``.variables``), a Flax module
        together with ``variables=``, or a function ``x -> logits`` (B, C).
      x: a batch of inputs (B, ...).
      target: int or (B,) ints; default the predicted class.
      key: typed PRNG key, required by the methods that draw noise (``needs_key``).
      **hparams: the method's hyperparameters (e.g. ``steps=``, ``num_samples=``).

    Runs under one ``jax.jit`` per (method, model, hyperparameters, shapes): a Run or
    module is applied in inference mode with its variables as arguments, so new weights
    (e.g. a randomized model) reuse the compiled program; a function is keyed by identity.
    Names and hyperparameters are checked before any compute.
    """
    METHODS.hparams(method, **hparams)  # unknown method / hyperparameter: clear error first
    if needs_key(method) and key is None:
        raise TypeError(f"attribution method {method!r} draws noise: pass key=jax.random.key(...)")
    if not needs_key(method) and key is not None:
        raise TypeError(f"attribution method {method!r} is deterministic and takes no key")
    x = jnp.asarray(x, jnp.float32)
    if isinstance(model, nn.Module) and variables is None:
        raise TypeError("a Flax module needs its variables: attribute(..., variables=...)")
    if _is_run(model):
        logits, variables = _ModuleLogits(model.model), model.variables
    elif variables is not None:
        logits = _ModuleLogits(model)
    elif callable(model):
        logits = _FnLogits(model)
    else:
        raise TypeError(
            "model must be a Run, a Flax module with variables=, or a function x -> logits; "
            f"got {type(model).__name__}"
        )
    # Checked here, on concrete values: inside jit the target is traced.
    batch, classes = logit_shape(method, functools.partial(logits, variables), x)
    if target is not None:
        target = check_target(target, batch, classes)
    # Arrays (a baseline) are traced arguments; numbers and strings are compile-time constants.
    static, dynamic = {}, {}
    for name, value in hparams.items():
        if isinstance(value, list | tuple):
            value = np.asarray(value, np.float32)
        (dynamic if isinstance(value, jax.Array | np.ndarray) else static)[name] = value
    return _attribute(
        variables,
        x,
        target,
        dynamic,
        key,
        method=method,
        logits=logits,
        static=tuple(sorted(static.items())),
    )
