"""Learning-rate schedules by name, built on ``optax.schedules``.

Every schedule takes the same three keywords (plus options of its own), so an optimizer
or a sweep can swap schedule names::

    sched = tk.schedules.get("cosine", learning_rate=0.1, total_steps=1000)
    sched(0), sched(500), sched(1000)          # 0.1, 0.05, 0.0

* ``learning_rate`` -- the peak value; a Python float or a (possibly traced) JAX scalar,
  so a population can ``jax.vmap`` over it. With the default 1.0 the schedule is a
  multiplier.
* ``total_steps`` -- the step at which a decaying schedule reaches its end value;
  decaying schedules (``meta["decays"]``) raise without it, ``constant`` ignores it.
* ``warmup_steps`` -- a linear warmup from 0 (``init_value`` for ``warmup_cosine``) to
  ``learning_rate`` over the first steps; any decay then runs over the remaining
  ``total_steps - warmup_steps`` steps. ``cosine`` is the pure cosine (SGDR) curve and
  refuses a warmup: that is ``warmup_cosine``.

Schedules return float arrays and work under ``jax_numpy_dtype_promotion="strict"``.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toolkit.registry import Registry

__all__ = ["describe", "entry", "get", "hparams", "names", "register", "schedules"]

schedules = Registry("schedule", typed=True)
names = schedules.names
entry = schedules.entry
hparams = schedules.hparams
describe = schedules.describe
get = schedules.get


# -- argument checks (shared with the optimizers) ---------------------------------------
def concrete_float(name: str, value: Any) -> float | None:
    """``value`` as a float, or None when it is traced (its value is unknown until run).

    Raises a TypeError naming ``name`` for non-numeric or non-scalar values.
    """
    if isinstance(value, jax.core.Tracer):
        if jnp.ndim(value) != 0:
            raise TypeError(f"{name} must be a scalar, got a traced array of shape {value.shape}")
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real | np.ndarray | jax.Array):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if np.ndim(value) != 0:
        raise TypeError(f"{name} must be a scalar, got an array of shape {np.shape(value)}")
    return float(value)


def check_positive(name: str, value: Any) -> None:
    """Raises unless ``value`` is a finite number > 0 (traced values pass unchecked)."""
    v = concrete_float(name, value)
    if v is not None and not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    """Raises unless ``value`` is a finite number >= 0 (traced values pass unchecked)."""
    v = concrete_float(name, value)
    if v is not None and not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_steps(schedule: str, total_steps: Any, warmup_steps: Any, *, decays: bool) -> None:
    """Step counts are static Python ints: they fix the shape of the schedule."""
    for label, value in (("total_steps", total_steps), ("warmup_steps", warmup_steps)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral)
        ):
            raise TypeError(f"schedule {schedule!r}: {label} must be an int, got {value!r}")
    if warmup_steps < 0:
        raise ValueError(f"schedule {schedule!r}: warmup_steps must be >= 0, got {warmup_steps}")
    if total_steps is None:
        if decays:
            raise ValueError(
                f"schedule {schedule!r} decays over the run and needs total_steps "
                f"(a positive int), got total_steps=None"
            )
        return
    if total_steps <= 0:
        raise ValueError(f"schedule {schedule!r}: total_steps must be > 0, got {total_steps}")
    if warmup_steps > total_steps or (decays and warmup_steps == total_steps):
        relation = "<" if decays else "<="
        raise ValueError(
            f"schedule {schedule!r}: warmup_steps ({warmup_steps}) must be {relation} "
            f"total_steps ({total_steps})"
        )


def _strict_safe(schedule: optax.Schedule) -> optax.Schedule:
    """Evaluates an optax schedule under standard dtype promotion.

    optax mixes Python floats with the int32 step count (e.g. ``cos(pi * count / T)``) and
    multiplies bool masks into floats, which ``jax_numpy_dtype_promotion="strict"``
    rejects; the promotions involved are the intended ones (int32 count -> float32).
    """

    @functools.wraps(schedule)
    def wrapped(count: jax.typing.ArrayLike) -> jax.Array:
        with jax.numpy_dtype_promotion("standard"):
            return jnp.asarray(schedule(count))

    return wrapped


def _with_warmup(
    decay: optax.Schedule, learning_rate: Any, warmup_steps: int, init_value: float = 0.0
) -> optax.Schedule:
    """Linear warmup init_value -> learning_rate over ``warmup_steps``, then ``decay``.

    ``optax.join_schedules`` restarts the count at the boundary, so ``decay`` starts at 0.
    """
    if warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(init_value, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, decay], [warmup_steps])


def register(name: str, *, description: str, decays: bool) -> Callable[[Callable], Callable]:
    """Decorator: registers ``factory(*, learning_rate, total_steps, warmup_steps, **own)``,
    which returns an ``optax.Schedule``, behind argument checks and strict-promotion safety.

    ``decays`` says whether it needs ``total_steps`` (``entry(name).meta["decays"]``).
    ``functools.wraps`` keeps the factory's signature visible to the registry, which reads
    the defaults from it and rejects unknown hyperparameters.
    """

    def decorator(factory: Callable[..., optax.Schedule]) -> Callable[..., optax.Schedule]:
        @functools.wraps(factory)
        def build(**hparams: Any) -> optax.Schedule:
            hparams = {**schedules.entry(name).defaults, **hparams}
            check_positive("learning_rate", hparams["learning_rate"])
            _check_steps(name, hparams["total_steps"], hparams["warmup_steps"], decays=decays)
            # Own options (end_value, init_value, pct_start, ...) are rates or fractions.
            shared = ("learning_rate", "total_steps", "warmup_steps")
            for key in sorted(hparams.keys() - set(shared)):
                check_nonnegative(f"schedule {name!r}: {key}", hparams[key])
            return _strict_safe(factory(**hparams))

        schedules.add(name, build, description=description, meta={"decays": decays})
        return build

    return decorator


# -- the schedules ----------------------------------------------------------------------
@register("constant", decays=False, description="Constant learning rate, after an optional warmup.")
def constant(
    *, learning_rate: Any = 1.0, total_steps: int | None = None, warmup_steps: int = 0
) -> optax.Schedule:
    """eta_t = eta * min(1, t / W) (W = warmup_steps; W = 0 gives eta throughout).

    ``total_steps`` is only checked against ``warmup_steps``. Linear warmup then constant
    is the schedule recommended for schedule-free optimizers (Defazio et al. 2024).
    """
    del total_steps
    return _with_warmup(optax.constant_schedule(learning_rate), learning_rate, warmup_steps)


@register("cosine", decays=True, description="Cosine decay to end_value (SGDR, no warmup).")
def cosine(
    *,
    learning_rate: Any = 1.0,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    end_value: float = 0.0,
) -> optax.Schedule:
    """eta_t = e + (eta - e) * (1 + cos(pi * min(t, T) / T)) / 2, e = end_value, T = total_steps.

    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
    For a warmup use ``warmup_cosine``.
    """
    if warmup_steps:
        raise ValueError(
            f"schedule 'cosine' has no warmup, got warmup_steps={warmup_steps}; "
            f"use schedule 'warmup_cosine'"
        )
    span = optax.cosine_decay_schedule(1.0, total_steps)
    return lambda count: end_value + (learning_rate - end_value) * span(count)


@register(
    "warmup_cosine",
    decays=True,
    description="Linear warmup from init_value, then cosine decay to end_value.",
)
def warmup_cosine(
    *,
    learning_rate: Any = 1.0,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    init_value: float = 0.0,
    end_value: float = 0.0,
) -> optax.Schedule:
    """eta_t = i + (eta - i) t / W for t < W, then e + (eta - e)(1 + cos(pi s / (T - W))) / 2.

    s = min(t - W, T - W); i = init_value, e = end_value, W = warmup_steps, T = total_steps
    (the warmup counts towards T, as in ``optax.warmup_cosine_decay_schedule``; that
    function compares the peak with 0 in Python, so it cannot take a traced rate and
    the two pieces are joined here instead). Goyal et al. 2017 (warmup); Loshchilov &
    Hutter 2017 (cosine).
    """
    span = optax.cosine_decay_schedule(1.0, total_steps - warmup_steps)
    decay = lambda count: end_value + (learning_rate - end_value) * span(count)
    return _with_warmup(decay, learning_rate, warmup_steps, init_value)


@register(
    "linear",
    decays=True,
    description="Linear decay to end_value (default 0), after an optional warmup.",
)
def linear(
    *,
    learning_rate: Any = 1.0,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    end_value: float = 0.0,
) -> optax.Schedule:
    """eta_t = eta + (e - eta) * min(t - W, T - W) / (T - W) after the warmup (t >= W).

    e = end_value, W = warmup_steps, T = total_steps; the "linear warmup, linear decay"
    schedule of BERT (Devlin et al. 2019) when W > 0.
    """
    decay = optax.linear_schedule(learning_rate, end_value, total_steps - warmup_steps)
    return _with_warmup(decay, learning_rate, warmup_steps)


@register(
    "one_cycle",
    decays=True,
    description="One-cycle: cosine rise to the peak, cosine fall far below (Smith 2017).",
)
def one_cycle(
    *,
    learning_rate: Any = 1.0,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> optax.Schedule:
    """eta/d -> eta over the first a = floor(p T) steps, then eta -> eta/(d f) until T, each
    a half cosine (d = div_factor, f = final_div_factor, p = pct_start).

    warmup_steps > 0 sets the rise length a = W instead. Built like
    ``optax.cosine_onecycle_schedule`` but from the integer a, since floor((W / T) * T)
    can round to W - 1. Smith & Topin, "Super-Convergence", 2017 (arXiv:1708.07120).
    """
    if not 0.0 < pct_start < 1.0:
        raise ValueError(f"schedule 'one_cycle': pct_start must be in (0, 1), got {pct_start}")
    for label, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
        check_positive(f"schedule 'one_cycle': {label}", value)
    rise = warmup_steps or int(pct_start * total_steps)
    if not 0 < rise < total_steps:
        raise ValueError(
            f"schedule 'one_cycle': the rise takes {rise} of total_steps={total_steps} steps; "
            f"it needs 0 < rise < total_steps"
        )
    return optax.piecewise_interpolate_schedule(
        "cosine",
        learning_rate / div_factor,
        {rise: div_factor, total_steps: 1.0 / (div_factor * final_div_factor)},
    )
