"""Scorers on logits alone: MSP, max-logit, energy, entropy (the functions of
:mod:`toolkit.metrics.ood`, reused) and GEN.

Grids follow OpenOOD v1.5's postprocessor sweeps (Zhang et al. 2023, "OpenOOD v1.5",
``configs/postprocessors/*.yml``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from toolkit.metrics import ood as logit_scores
from toolkit.metrics._checks import check_logits
from toolkit.ood.scoring.base import Batch, check_range, register

__all__ = ["generalized_entropy"]


@register(
    "msp", needs=(), grid={}, description="Max softmax probability (Hendrycks & Gimpel 2017)."
)
def fit_msp(reference):
    """``max_c softmax(z)_c`` (Hendrycks & Gimpel 2017); :func:`toolkit.metrics.msp`."""
    return lambda batch: logit_scores.msp(batch.logits)


@register("max_logit", needs=(), grid={}, description="Largest logit (Hendrycks et al. 2022).")
def fit_max_logit(reference):
    """``max_c z_c`` (Hendrycks et al. 2022); :func:`toolkit.metrics.max_logit`."""
    return lambda batch: logit_scores.max_logit(batch.logits)


@register(
    "energy",
    needs=(),
    grid={"temperature": (1.0, 10.0, 100.0, 1000.0)},
    description="Negative free energy T*logsumexp(z/T) (Liu et al. 2020).",
)
def fit_energy(reference, *, temperature: float = 1.0):
    """``T logsumexp_c(z_c / T)`` (Liu et al. 2020); :func:`toolkit.metrics.energy`. The
    grid is OpenOOD's temperature sweep before v1.5 (and ODIN's); v1.5 fixes T = 1."""
    check_range("energy", "temperature", temperature, 0.0, float("inf"))
    return lambda batch: logit_scores.energy(batch.logits, temperature=temperature)


@register("entropy", needs=(), grid={}, description="Negative predictive entropy sum p log p.")
def fit_entropy(reference):
    """``sum_c p_c log p_c`` (negative entropy); :func:`toolkit.metrics.entropy`."""
    return lambda batch: logit_scores.entropy(batch.logits)


@functools.partial(jax.jit, static_argnames="top")
def generalized_entropy(logits: jax.Array, gamma: jax.Array, top: int) -> jax.Array:
    """``-sum_{j <= M} p_(j)^gamma (1 - p_(j))^gamma`` over the M largest probabilities."""
    p = jax.nn.softmax(logits, axis=-1)
    p_top = jax.lax.top_k(p, top)[0]
    # 1 - p_max as the sum of the other probabilities: exact where p_max rounds to 1.
    is_max = jnp.arange(p.shape[-1]) == jnp.argmax(p, axis=-1, keepdims=True)
    rest = (1.0 - p_top).at[:, 0].set(jnp.sum(jnp.where(is_max, 0.0, p), axis=-1))
    return -jnp.sum(p_top**gamma * rest**gamma, axis=-1)


@register(
    "gen",
    needs=(),
    grid={"gamma": (0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0), "top_m": (10, 50, 100, 200, 500, 1000)},
    description="Generalized entropy of the top-M probabilities (Liu et al. 2023).",
)
def fit_gen(reference, *, gamma: float = 0.1, top_m: int = 100):
    """GEN (Liu, Lochman & Zach 2023, "GEN: Pushing the limits of softmax-based
    out-of-distribution detection"): ``-G_gamma(p) = -sum_{j=1}^{M} p_(j)^gamma (1 -
    p_(j))^gamma`` over the M largest softmax probabilities (all C when M >= C, as
    OpenOOD's slice), with gamma in (0, 1] typical (the paper's default 0.1, M = 100)."""
    check_range("gen", "gamma", gamma, 0.0, float("inf"))

    def score(batch: Batch) -> jax.Array:
        logits = check_logits(batch.logits)
        return generalized_entropy(
            logits, jnp.asarray(gamma, logits.dtype), min(top_m, logits.shape[1])
        )

    return score
