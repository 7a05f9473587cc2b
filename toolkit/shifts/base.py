"""The shift registry and the checked entry point ``apply``.

A shift is a pure function ``shift(x, *, key, severity, **hparams) -> x_shifted`` over a
whole batch: ``x`` is (N, H, W, C) for image shifts and (N, L) or (N, L, C) for sequence
shifts, the output has the same shape and dtype. ``severity`` is a Python int in 0..5
(static under jit; 0 is the identity); ``key`` is a typed ``jax.random.key``. Shifts are
jit-able and vmap-able (e.g. over keys or over stacked test sets).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from toolkit.registry import Registry

__all__ = [
    "APPLIES_TO",
    "SEVERITIES",
    "apply",
    "check_applies",
    "check_severity",
    "register",
    "shifts",
]

SEVERITIES = (1, 2, 3, 4, 5)
APPLIES_TO = ("image", "sequence")

shifts = Registry("shift", build=functools.partial)


def register(name: str, *, applies_to: str, description: str, defaults=None):
    """Registers a shift for ``"image"`` (N, H, W, C) or ``"sequence"`` (N, L[, C]) data."""
    if applies_to not in APPLIES_TO:
        raise ValueError(f"applies_to must be one of {APPLIES_TO}, got {applies_to!r}")
    return shifts.register(
        name, description=description, defaults=defaults, meta={"applies_to": applies_to}
    )


def check_severity(severity: Any) -> int:
    """Severity must be a Python int in 0..5 (0 = identity)."""
    if isinstance(severity, bool | np.bool_) or not isinstance(severity, int | np.integer):
        raise ValueError(f"severity must be an int in 0..5 (0 = identity), got {severity!r}")
    if not 0 <= severity <= 5:
        raise ValueError(f"severity must be an int in 0..5 (0 = identity), got {severity!r}")
    return int(severity)


def data_kind(x_shape: tuple[int, ...]) -> str:
    """'image' for (N, H, W, C) batches, 'sequence' for (N, L) or (N, L, C)."""
    return "image" if len(x_shape) == 4 else "sequence"


def check_applies(name: str, x_shape: tuple[int, ...]) -> None:
    """Raises when shift ``name`` does not apply to a batch of shape ``x_shape``."""
    entry = shifts.entry(name)
    kind = data_kind(tuple(x_shape))
    wanted = entry.meta["applies_to"]
    if wanted != kind:
        valid = [n for n in shifts.names() if shifts.entry(n).meta["applies_to"] == kind]
        raise ValueError(
            f"shift {name!r} applies to {wanted} data, but the batch has shape {tuple(x_shape)} "
            f"({kind} data). Shifts for {kind} data: {', '.join(valid)}"
        )


def apply(name: str, x: jax.Array, *, key: jax.Array, severity: int, **hparams) -> jax.Array:
    """Applies shift ``name`` to batch ``x`` after checking the name, severity and data rank."""
    check_severity(severity)
    fn = shifts.get(name, **hparams)
    check_applies(name, x.shape)
    if severity == 0:
        return x
    return fn(x, key=key, severity=severity)
