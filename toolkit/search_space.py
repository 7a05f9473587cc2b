"""Search-space distributions: how a hyperparameter is drawn in random search and tuning.

A search space maps a hyperparameter name to ``(distribution, *args)``, e.g.
``{"learning_rate": ("loguniform", 1e-4, 3e-2), "gamma": ("uniform", 0.0, 5.0)}``.
Registry entries declare one beside their defaults (:mod:`toolkit.registry`), and the
sweep's random search and tuning draw from them (:mod:`toolkit.sweep.search`,
:mod:`toolkit.sweep.tuning`). This module imports nothing from the toolkit, so the
registry can check spaces at registration without an import cycle.
"""

from __future__ import annotations

import difflib
import math
import numbers
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DESCRIPTIONS", "check_space", "check_spec", "distributions", "draw", "draw_trial"]


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _randint(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.integers(low, high, endpoint=True))


def _choice(rng: np.random.Generator, *values: Any) -> Any:
    return values[int(rng.integers(len(values)))]


distributions: dict[str, Callable[..., Any]] = {
    "uniform": _uniform,
    "loguniform": _loguniform,
    "randint": _randint,
    "choice": _choice,
}
"""Name -> sampler ``(rng, *args) -> value``."""

DESCRIPTIONS = {
    "uniform": "Uniform on [low, high).",
    "loguniform": "Log-uniform on [low, high): exp(U(log low, log high)), 0 < low.",
    "randint": "Uniform integer in [low, high] (both included).",
    "choice": "One of the listed values, uniformly.",
}


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _problem(kind: str, args: tuple) -> str | None:
    """Why ``args`` are not valid arguments of distribution ``kind`` (None: they are)."""
    if kind == "choice":
        return None if args else "choice needs at least one value"
    if len(args) != 2:
        return f"{kind} needs two bounds (low, high), got {len(args)} argument(s)"
    low, high = args
    if kind == "randint":
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in args):
            return f"randint needs integer bounds, got ({low!r}, {high!r})"
        return None if low <= high else f"randint needs low <= high, got ({low}, {high})"
    if not (_real(low) and _real(high)) or not (math.isfinite(low) and math.isfinite(high)):
        return f"{kind} needs finite real bounds, got ({low!r}, {high!r})"
    if kind == "loguniform" and low <= 0:
        return f"loguniform needs positive bounds, got ({low}, {high})"
    return None if low < high else f"{kind} needs low < high, got ({low}, {high})"


def check_spec(name: str, spec: Any) -> tuple:
    """``spec`` as a tuple ``(distribution, *args)``; a ValueError names ``name``, the bad
    spec and the valid distributions otherwise."""
    valid = ", ".join(distributions)
    if not isinstance(spec, Sequence) or isinstance(spec, str) or not spec:
        raise ValueError(
            f"search space entry {name!r} must be (distribution, *args), e.g. "
            f"('loguniform', 1e-4, 1e-1); got {spec!r}. Distributions: {valid}"
        )
    kind, *args = spec
    if kind not in distributions:
        match = difflib.get_close_matches(str(kind), list(distributions), n=1, cutoff=0.5)
        hint = f" Did you mean {match[0]!r}?" if match else ""
        raise ValueError(
            f"search space entry {name!r}: unknown distribution {kind!r}.{hint} "
            f"Distributions: {valid}"
        )
    problem = _problem(kind, tuple(args))
    if problem:
        raise ValueError(f"search space entry {name!r}: {problem}")
    return (kind, *args)


def check_space(space: Mapping[str, Any], hparams: Sequence[str], *, owner: str) -> dict:
    """``space`` checked: every key one of ``hparams``, every value a valid spec.

    ``owner`` names what declares the space in errors (e.g. "loss 'gce'").
    """
    if not isinstance(space, Mapping):
        raise ValueError(f"{owner}: search_space must be a mapping, got {space!r}")
    out = {}
    for name, spec in space.items():
        if name not in hparams:
            valid = ", ".join(sorted(hparams)) or "none"
            raise ValueError(
                f"{owner}: search space names {name!r}, which is not one of its "
                f"hyperparameters ({valid})"
            )
        out[name] = check_spec(f"{owner}: {name}", spec)
    return out


def draw(name: str, spec: Any, rng: np.random.Generator) -> Any:
    """One value of ``spec`` (checked first) from ``rng``."""
    kind, *args = check_spec(name, spec)
    return distributions[kind](rng, *args)


def draw_trial(name: str, spec: Any, *, seed: int, index: int) -> Any:
    """Value ``index`` of hyperparameter ``name``, from its own generator
    ``np.random.default_rng([seed, crc32(name), index])``: it depends on the name and the
    index alone, so adding trials, seeds or other hyperparameters never changes it (the
    protocol of init2winit's random search)."""
    return draw(name, spec, np.random.default_rng([seed, zlib.crc32(name.encode()), index]))
