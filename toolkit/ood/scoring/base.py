"""The post-hoc OOD scorer registry, its data containers and ``fit_scorer``.

A scorer is fitted once on in-distribution TRAINING data (a :class:`Reference`) and then
maps a :class:`Batch` (logits, and where it needs them features or inputs) to (N,) scores,
HIGHER = MORE IN-DISTRIBUTION, the convention of :mod:`toolkit.metrics.ood`::

    fitted = fit_scorer("knn", reference, k=50)
    scores = fitted(Batch(logits=z, features=h))

Each registry entry is ``fit(reference, *, **hparams) -> score_fn`` with ``score_fn(batch)
-> (N,)``; its defaults are its hyperparameters and its meta says what it needs beyond
logits (``needs``) and which values validation search tries (``grid``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit.registry import Registry

__all__ = [
    "NEEDS",
    "Batch",
    "Fitted",
    "InapplicableError",
    "Reference",
    "ScorerRegistry",
    "fit_scorer",
    "register",
    "scorers",
]

NEEDS = ("features", "head", "train", "inputs")
"""What a scorer may need beyond logits: penultimate ``features``, the classifier ``head``
(W, b), ``train`` statistics fitted on ID training features/labels, or the ``inputs`` with a
differentiable ``logits_fn``."""


class InapplicableError(ValueError):
    """A hyperparameter value that the data cannot take (k above the number of training
    examples, a principal dimension not below the feature size): validation search skips
    such grid points and says so in its table."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """In-distribution TRAINING data a scorer's statistics are fitted on.

    ``features`` (N, D) penultimate features, ``logits`` (N, C), ``labels`` (N,) int class
    indices, ``head`` ``(W (D, C), b (C,))`` the final Dense layer (logits = features @ W + b).
    Fields a scorer does not use may be None.
    """

    features: Any = None
    logits: Any = None
    labels: Any = None
    head: tuple[Any, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Batch:
    """What is scored: ``logits`` (N, C); ``features`` (N, D) or None; ``inputs`` (N, ...)
    or None with ``logits_fn`` (x -> logits, differentiable; for ODIN) or None."""

    logits: Any
    features: Any = None
    inputs: Any = None
    logits_fn: Callable[[Any], Any] | None = None


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A scorer fitted on a reference: ``fitted(batch) -> (N,)`` scores, higher = more ID."""

    name: str
    hparams: Mapping[str, Any]
    needs: tuple[str, ...]
    score_fn: Callable[[Batch], jax.Array] = dataclasses.field(repr=False)

    def __call__(self, batch: Batch) -> jax.Array:
        check_batch(self.name, self.needs, batch)
        return self.score_fn(batch)


class ScorerRegistry(Registry):
    """A Registry whose ``register`` also takes what a scorer ``needs`` and its ``grid``."""

    def register(
        self, name: str, *, needs: tuple[str, ...], grid: Mapping[str, tuple], description: str
    ):
        """Registers ``fit(reference, *, **hparams) -> score_fn`` under ``name``; ``needs``
        is a subset of :data:`NEEDS`, ``grid`` maps hyperparameters to the values
        validation search tries (all checked before anything is registered)."""
        bad = sorted(set(needs) - set(NEEDS))
        if bad:
            raise ValueError(f"ood scorer {name!r}: needs {bad} not among {NEEDS}")

        def decorator(factory):
            params = inspect.signature(factory).parameters
            unknown = [k for k in grid if k not in params or params[k].default is params[k].empty]
            if unknown or any(not values for values in grid.values()):
                raise ValueError(
                    f"ood scorer {name!r}: every grid key must be a hyperparameter (a keyword "
                    f"with a default) with at least one value; got grid {dict(grid)!r}"
                )
            self.add(
                name,
                factory,
                description=description,
                meta={"needs": tuple(needs), "grid": {k: tuple(v) for k, v in grid.items()}},
            )
            for key, values in grid.items():
                for value in values:
                    self.hparams(name, **{key: value})
            return factory

        return decorator


scorers = ScorerRegistry("ood scorer", build=functools.partial, typed=True)
register = scorers.register

# -- checks ---------------------------------------------------------------------------


def as_matrix(x: Any, what: str, *, rows: int | None = None, cols: int | None = None) -> jax.Array:
    """``x`` as a finite (rows, cols) float array (>= float32), else a ValueError naming it."""
    x = jnp.asarray(x)
    if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{what} must be a 2-D float array, got shape {x.shape} dtype {x.dtype}")
    if x.shape[0] == 0 or (rows is not None and x.shape[0] != rows):
        want = f"{rows} rows" if rows is not None else "at least one row"
        raise ValueError(f"{what} must have {want}, got shape {x.shape}")
    if cols is not None and x.shape[1] != cols:
        raise ValueError(f"{what} must have {cols} columns, got shape {x.shape}")
    if not isinstance(x, jax.core.Tracer) and not np.isfinite(np.asarray(x)).all():
        raise ValueError(f"{what} contain NaN or inf")
    return x if x.dtype != jnp.float16 and x.dtype != jnp.bfloat16 else x.astype(jnp.float32)


def check_reference(name: str, reference: Reference | None, *, use: tuple[str, ...]) -> None:
    """Raises when ``reference`` lacks a field in ``use`` (of features/logits/labels/head)."""
    missing = [f for f in use if reference is None or getattr(reference, f) is None]
    if missing:
        got = "no reference" if reference is None else f"a Reference without {missing}"
        raise ValueError(
            f"ood scorer {name!r} needs {scorers.entry(name).meta['needs']}: it is fitted on a "
            f"Reference with {list(use)} of the ID training data, got {got}"
        )


def reference_arrays(name: str, reference: Reference, use: tuple[str, ...]) -> dict[str, Any]:
    """The fields ``use`` of ``reference`` checked against each other's shapes."""
    check_reference(name, reference, use=use)
    out: dict[str, Any] = {}
    n = d = c = None
    if "features" in use:
        out["features"] = f = as_matrix(reference.features, f"{name}: reference.features")
        n, d = f.shape
    if "logits" in use:
        out["logits"] = z = as_matrix(reference.logits, f"{name}: reference.logits", rows=n)
        n, c = z.shape
    if "labels" in use:
        y = jnp.asarray(reference.labels)
        if y.ndim != 1 or (n is not None and y.shape[0] != n):
            raise ValueError(f"{name}: reference.labels must have shape ({n},), got {y.shape}")
        if not jnp.issubdtype(y.dtype, jnp.integer) or (y.size and int(y.min()) < 0):
            raise ValueError(f"{name}: reference.labels must be int class indices >= 0")
        out["labels"] = y
    if "head" in use:
        if not isinstance(reference.head, tuple | list) or len(reference.head) != 2:
            raise ValueError(
                f"{name}: reference.head must be a pair (W, b), got {reference.head!r}"
            )
        w = as_matrix(reference.head[0], f"{name}: head W (D, C)", rows=d, cols=c)
        b = jnp.asarray(reference.head[1])
        if b.shape != (w.shape[1],) or not jnp.issubdtype(b.dtype, jnp.floating):
            raise ValueError(f"{name}: head b must be a float ({w.shape[1]},) array, got {b.shape}")
        out["head"] = (w, b.astype(w.dtype))
    return out


def check_batch(name: str, needs: tuple[str, ...], batch: Batch) -> None:
    """Raises when ``batch`` lacks what scorer ``name`` needs (features, inputs, logits_fn)."""
    if not isinstance(batch, Batch):
        raise TypeError(f"ood scorer {name!r} scores a Batch, got {type(batch).__name__}")
    if "features" in needs and batch.features is None:
        raise ValueError(f"ood scorer {name!r} needs {needs}: the Batch has no features")
    if "inputs" in needs and (batch.inputs is None or batch.logits_fn is None):
        raise ValueError(
            f"ood scorer {name!r} needs {needs}: the Batch needs inputs and a differentiable "
            f"logits_fn, got inputs={'None' if batch.inputs is None else 'given'}, "
            f"logits_fn={batch.logits_fn!r}"
        )


def check_range(
    name: str, key: str, value: Any, low: float, high: float, *, closed: str = "neither"
) -> float:
    """``value`` as a float in (low, high) (``closed`` "low"/"high"/"both" includes ends)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        lo_ok = value >= low if closed in ("low", "both") else value > low
        hi_ok = value <= high if closed in ("high", "both") else value < high
        ok = lo_ok and hi_ok
    if not ok:
        lb = "[" if closed in ("low", "both") else "("
        hb = "]" if closed in ("high", "both") else ")"
        raise ValueError(f"ood scorer {name!r}: {key}={value!r} must be in {lb}{low}, {high}{hb}")
    return float(value)


def fit_scorer(name: str, reference: Reference | None, **hparams: Any) -> Fitted:
    """Fits scorer ``name`` on ``reference`` (ID training data; None for scorers whose
    needs lack "train" and "head"): returns ``fitted(batch) -> (N,)`` scores, higher = more
    in-distribution. Unknown names, bad hyperparameters and missing needs raise first."""
    entry = scorers.entry(name)
    full = scorers.hparams(name, **hparams)
    needs = entry.meta["needs"]
    if ("train" in needs or "head" in needs) and reference is None:
        raise ValueError(
            f"ood scorer {name!r} needs {needs}: pass a Reference of the ID training data "
            f"(features, logits, labels, head), got None"
        )
    score_fn = entry.factory(reference, **full)
    return Fitted(name, full, needs, score_fn)
