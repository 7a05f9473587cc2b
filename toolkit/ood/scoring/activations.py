"""Scorers that reshape the features or the head before an energy score: ReAct, ASH-S
and DICE. Each returns ``logsumexp_c(W^T h' + b)_c`` on modified features h' or a masked
W (Liu et al. 2020's energy, T = 1). Grids follow OpenOOD v1.5's postprocessor sweeps
(Zhang et al. 2023).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from toolkit.ood.scoring.base import (
    Batch,
    InapplicableError,
    as_matrix,
    check_range,
    reference_arrays,
    register,
)

__all__ = ["ash_s"]


@jax.jit
def _head_energy(h: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    return jax.nn.logsumexp(h @ w + b, axis=1)


def _batch_features(name: str, batch: Batch, w: jax.Array) -> jax.Array:
    return as_matrix(batch.features, f"{name}: batch.features", cols=w.shape[0])


@register(
    "react",
    needs=("features", "head", "train"),
    grid={"percentile": (85.0, 90.0, 95.0, 99.0)},
    description="Energy after clipping features at a training percentile (Sun et al. 2021).",
)
def fit_react(reference, *, percentile: float = 90.0):
    """ReAct (Sun, Guo & Li 2021, "ReAct: Out-of-distribution detection with rectified
    activations"): ``h' = min(h, c)`` with c the ``percentile``-th percentile of all
    training activations (linear interpolation, numpy's default), then energy."""
    check_range("react", "percentile", percentile, 0.0, 100.0, closed="high")
    arrays = reference_arrays("react", reference, ("features", "head"))
    w, b = arrays["head"]
    clip = jnp.percentile(arrays["features"].reshape(-1), percentile)

    def score(batch: Batch) -> jax.Array:
        return _head_energy(jnp.minimum(_batch_features("react", batch, w), clip), w, b)

    return score


@functools.partial(jax.jit, static_argnames="keep")
def ash_s(h: jax.Array, keep: int) -> jax.Array:
    """ASH-S: keep each row's ``keep`` largest activations (zero the rest) and scale them by
    ``exp(s1 / s2)``, s1 and s2 the row's sums before and after pruning."""
    values, index = jax.lax.top_k(h, keep)
    rows = jnp.arange(h.shape[0])[:, None]
    pruned = jnp.zeros_like(h).at[rows, index].set(values)
    s1, s2 = jnp.sum(h, axis=1), jnp.sum(values, axis=1)
    scale = jnp.where(s2 != 0, s1 / jnp.where(s2 != 0, s2, 1.0), 0.0)
    return pruned * jnp.exp(scale)[:, None]


@register(
    "ash",
    needs=("features", "head"),
    grid={"percentile": (65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0)},
    description="Energy after per-example pruning and scaling, ASH-S (Djurisic et al. 2023).",
)
def fit_ash(reference, *, percentile: float = 90.0):
    """ASH-S (Djurisic et al. 2023, "Extremely simple activation shaping for
    out-of-distribution detection"): per example, keep the top ``D - round(D p / 100)``
    activations, zero the rest, multiply the kept ones by ``exp(s1 / s2)`` (s1, s2 the sums
    before and after pruning), then energy. Meant for non-negative (post-ReLU) features."""
    check_range("ash", "percentile", percentile, 0.0, 100.0, closed="low")
    w, b = reference_arrays("ash", reference, ("head",))["head"]
    d = w.shape[0]
    keep = d - int(np.round(d * percentile / 100.0))
    if keep < 1:
        raise InapplicableError(
            f"ood scorer 'ash': percentile={percentile} prunes all {d} features"
        )

    def score(batch: Batch) -> jax.Array:
        return _head_energy(ash_s(_batch_features("ash", batch, w), keep), w, b)

    return score


@register(
    "dice",
    needs=("features", "head", "train"),
    grid={"p": (10.0, 30.0, 50.0, 70.0, 90.0)},
    description="Energy on a head sparsified by mean contribution (Sun & Li 2022).",
)
def fit_dice(reference, *, p: float = 90.0):
    """DICE (Sun & Li 2022, "DICE: Leveraging sparsification for out-of-distribution
    detection"): contributions ``V = mean_train(h)[:, None] * W`` (D, C); the head keeps
    the weights whose contribution is above V's ``p``-th percentile (sparsity p %: the top
    (100 - p) % of contributions stay), ``W' = W * [V > pct_p(V)]``; score
    ``logsumexp(W'^T h + b)``. OpenOOD v1.5 fixes p = 90 (its search is off); the grid
    searches the sparsity, which matters more for the toolkit's small feature sizes."""
    check_range("dice", "p", p, 0.0, 100.0, closed="low")
    arrays = reference_arrays("dice", reference, ("features", "head"))
    w, b = arrays["head"]
    contrib = jnp.mean(arrays["features"], axis=0)[:, None] * w
    masked = w * (contrib > jnp.percentile(contrib, p)).astype(w.dtype)

    def score(batch: Batch) -> jax.Array:
        return _head_energy(_batch_features("dice", batch, w), masked, b)

    return score
