"""Gradient-based attributions of a classifier's logit, as pure, jit-able JAX functions.

Every method has the signature ``method(fn, x, target=None, **hparams) -> (B, ...)``:
``fn`` maps a batch of inputs (B, ...) to logits (B, C); ``x`` is a batch of inputs; the
attribution has the shape of ``x`` and explains the logit ``fn(x)[b, target[b]]``. ``target``
is an int (one class for every example) or (B,) ints and defaults to the predicted class.
Each example is differentiated on its own (``jax.vmap`` over examples of ``jax.grad`` of a
batch-of-one call), so the attributions never mix examples, whatever ``fn`` does.

Methods (registered in :data:`METHODS`):

- ``vanilla_gradient``: ``dF_c/dx`` (saliency; Simonyan et al. 2014).
- ``gradient_x_input``: ``x * dF_c/dx`` (Shrikumar et al. 2016).
- ``integrated_gradients``: ``(x - x') * int_0^1 dF_c/dx (x' + a (x - x')) da`` by a
  quadrature rule with ``steps`` intervals (Sundararajan et al. 2017).
- ``smoothgrad``: the mean gradient at ``x + N(0, sigma^2)`` (Smilkov et al. 2017).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit.registry import Registry

__all__ = [
    "METHODS",
    "RULES",
    "check_target",
    "gradient_x_input",
    "integrated_gradients",
    "logit_shape",
    "quadrature",
    "resolve_target",
    "smoothgrad",
    "vanilla_gradient",
]

ApplyFn = Callable[[jax.Array], jax.Array]

METHODS = Registry("attribution method", build=functools.partial)
"""Attribution methods by name; ``METHODS.get(name, **hparams)`` is a partial of the method."""

RULES = ("trapezoid", "midpoint", "left", "right")
"""Quadrature rules for the path integral of integrated gradients."""


def _register(*, description: str, meta: dict | None = None):
    """Registers a method with its keyword hyperparameters as defaults; ``target`` is an
    input (given per call), not a hyperparameter, so it is left out of them."""

    def decorator(method: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
        params = inspect.signature(method).parameters.values()
        defaults = {
            p.name: p.default
            for p in params
            if p.kind is p.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
        }
        return METHODS.register(description=description, defaults=defaults, meta=meta)(method)

    return decorator


def _check_count(method: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{method}: {name} must be a positive int, got {value!r}")
    return int(value)


def logit_shape(method: str, fn: ApplyFn, x: jax.Array) -> tuple[int, int]:
    """``(B, C)`` of ``fn(x)`` from an abstract evaluation (no compute)."""
    if x.ndim < 2:
        raise ValueError(
            f"{method}: x must be a batch of inputs (B, ...) with a leading batch axis, "
            f"got shape {x.shape}; use x[None] for a single example"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{method}: x must be floating point, got {x.dtype}")
    out = jax.eval_shape(fn, x)
    if len(out.shape) != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"{method}: fn must map inputs {x.shape} to logits (B, C) with B = {x.shape[0]}, "
            f"got {out.shape}"
        )
    return out.shape


def check_target(target: Any, batch: int, classes: int) -> jax.Array:
    """``target`` as (B,) int32; raises for a float dtype, a wrong shape or (when concrete)
    a class outside ``[0, classes)``."""
    target = jnp.asarray(target)
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"target must be integer class indices, got dtype {target.dtype}")
    if target.ndim > 1 or (target.ndim == 1 and target.shape[0] != batch):
        raise ValueError(f"target must be an int or have shape ({batch},), got {target.shape}")
    if not isinstance(target, jax.core.Tracer):
        bad = np.asarray((target < 0) | (target >= classes))
        if bad.any():
            value = np.asarray(target).reshape(-1)[np.argmax(bad.reshape(-1))]
            raise ValueError(f"target classes must be in [0, {classes}), got {value}")
    return jnp.broadcast_to(target.astype(jnp.int32), (batch,))


def resolve_target(fn: ApplyFn, x: jax.Array, target: Any = None) -> jax.Array:
    """The class explained for each example: ``target`` as (B,) int32 (checked by
    :func:`check_target`), or the argmax of ``fn(x)`` when ``target`` is None."""
    batch, classes = logit_shape("attribution", fn, x)
    if target is None:
        return jnp.argmax(fn(x), axis=-1).astype(jnp.int32)
    return check_target(target, batch, classes)


def _per_example_grad(fn: ApplyFn) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(x_i, c_i) -> dF_c(x_i)/dx_i`` for one example."""

    def logit(xi: jax.Array, ci: jax.Array) -> jax.Array:
        return fn(xi[None])[0, ci]

    return jax.grad(logit)


def _gradients(fn: ApplyFn, x: jax.Array, target: jax.Array) -> jax.Array:
    return jax.vmap(_per_example_grad(fn))(x, target)


@_register(description="Gradient of the target logit w.r.t. x (Simonyan et al. 2014).")
def vanilla_gradient(fn: ApplyFn, x: jax.Array, target: Any = None) -> jax.Array:
    """Saliency ``A = dF_c(x)/dx``, with ``F_c`` the target logit.

    Reference: Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional networks:
    visualising image classification models and saliency maps" (they show ``|A|``).
    """
    x = jnp.asarray(x)
    return _gradients(fn, x, resolve_target(fn, x, target))


@_register(description="Input times the gradient of the target logit (Shrikumar 2016).")
def gradient_x_input(fn: ApplyFn, x: jax.Array, target: Any = None) -> jax.Array:
    """``A = x * dF_c(x)/dx`` (elementwise).

    Equals integrated gradients with a zero baseline for a linear model.
    Reference: Shrikumar et al. 2016, "Not just a black box: learning important features
    through propagating activation differences".
    """
    x = jnp.asarray(x)
    return x * _gradients(fn, x, resolve_target(fn, x, target))


def quadrature(steps: int, rule: str = "trapezoid") -> tuple[jax.Array, jax.Array]:
    """Nodes ``a_k`` in [0, 1] and weights ``w_k`` with ``sum_k w_k g(a_k) ~ int_0^1 g``.

    ``trapezoid``: ``steps + 1`` nodes ``k / steps``, weights ``1 / steps`` halved at the
    ends (error O(steps^-2) for smooth g). ``midpoint``: nodes ``(k + 1/2) / steps``;
    ``left``/``right``: Riemann sums at ``k / steps`` for k < steps / k >= 1 (O(1/steps)).
    """
    steps = _check_count("integrated_gradients", "steps", steps)
    if rule not in RULES:
        raise ValueError(f"unknown quadrature rule {rule!r}; valid rules: {', '.join(RULES)}")
    k = jnp.arange(steps + 1, dtype=jnp.float32)
    if rule == "trapezoid":
        weights = jnp.full((steps + 1,), 1.0 / steps, jnp.float32)
        return k / steps, weights.at[0].mul(0.5).at[-1].mul(0.5)
    nodes = {"midpoint": (k[:-1] + 0.5) / steps, "left": k[:-1] / steps, "right": k[1:] / steps}
    return nodes[rule], jnp.full((steps,), 1.0 / steps, jnp.float32)


@_register(
    description="Path integral of gradients from a baseline to x (Sundararajan et al. 2017)."
)
def integrated_gradients(
    fn: ApplyFn,
    x: jax.Array,
    target: Any = None,
    *,
    baseline: jax.Array | float | None = None,
    steps: int = 50,
    rule: str = "trapezoid",
) -> jax.Array:
    """``IG_i = (x_i - x'_i) * int_0^1 dF_c(x' + a (x - x'))/dx_i da``.

    The integral is ``sum_k w_k grad(x' + a_k (x - x'))`` over the nodes and weights of
    :func:`quadrature` (``steps`` intervals, ``rule``). Completeness (the paper's Prop. 1):
    ``sum_i IG_i = F_c(x) - F_c(x')`` up to the quadrature error, which shrinks as
    ``steps`` grows; for a linear model ``IG = (x - x') * W[:, c]`` exactly.

    Args:
      baseline: ``x'``, broadcastable to ``x`` (one example's shape or the batch's);
        default zeros (for standardized inputs: the mean input).
      steps: number of intervals of the quadrature (the paper suggests 20 to 300).
      rule: one of :data:`RULES`.

    Reference: Sundararajan, Taly & Yan 2017, "Axiomatic attribution for deep networks".
    """
    alphas, weights = quadrature(steps, rule)
    x = jnp.asarray(x)
    baseline = jnp.zeros_like(x) if baseline is None else jnp.asarray(baseline, x.dtype)
    try:
        baseline = jnp.broadcast_to(baseline, x.shape)
    except ValueError:
        raise ValueError(
            f"integrated_gradients: baseline of shape {baseline.shape} does not broadcast to "
            f"x of shape {x.shape}"
        ) from None
    target = resolve_target(fn, x, target)
    grad = _per_example_grad(fn)

    def one(xi: jax.Array, bi: jax.Array, ci: jax.Array) -> jax.Array:
        path = bi + alphas.reshape(-1, *([1] * xi.ndim)) * (xi - bi)
        grads = jax.vmap(grad, in_axes=(0, None))(path, ci)
        return (xi - bi) * jnp.tensordot(weights, grads, axes=1)

    return jax.vmap(one)(x, baseline, target)


def _is_typed_key(key: Any) -> bool:
    return isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


@_register(
    description="Mean gradient over Gaussian-noised copies of x (Smilkov et al. 2017).",
    meta={"needs_key": True},
)
def smoothgrad(
    fn: ApplyFn,
    x: jax.Array,
    target: Any = None,
    *,
    key: jax.Array,
    num_samples: int = 50,
    noise_scale: float = 0.15,
) -> jax.Array:
    """``A = (1/n) sum_k dF_c(x + e_k)/dx``, ``e_k ~ N(0, sigma^2 I)`` i.i.d.

    ``sigma = noise_scale * (max(x) - min(x))`` per example: the paper's noise level is a
    fraction of the input range (10-20 % worked best). ``noise_scale = 0`` gives the vanilla
    gradient. The same ``key`` gives the same attributions.

    Args:
      key: a typed PRNG key (``jax.random.key``), keyword-only.
      num_samples: n, the number of noisy copies (the paper uses 50).
      noise_scale: sigma as a fraction of each example's value range, >= 0.

    Reference: Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise".
    """
    num_samples = _check_count("smoothgrad", "num_samples", num_samples)
    if not _is_typed_key(key):
        raise TypeError(
            f"smoothgrad: key must be a typed PRNG key from jax.random.key(seed), got {key!r}"
        )
    if isinstance(noise_scale, numbers.Real) and not (
        math.isfinite(noise_scale) and noise_scale >= 0
    ):
        raise ValueError(f"smoothgrad: noise_scale must be finite and >= 0, got {noise_scale!r}")
    x = jnp.asarray(x)
    target = resolve_target(fn, x, target)
    axes = tuple(range(1, x.ndim))
    sigma = noise_scale * (jnp.max(x, axis=axes) - jnp.min(x, axis=axes))
    noise = jax.random.normal(key, (num_samples, *x.shape), x.dtype)
    noise = noise * sigma.reshape(1, -1, *([1] * (x.ndim - 1))).astype(x.dtype)
    grads = jax.vmap(lambda e: _gradients(fn, x + e, target))(noise)
    return jnp.mean(grads, axis=0)
