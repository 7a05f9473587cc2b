"""Out-of-distribution and misclassification detection from logits.

Every score maps (N, C) logits to (N,) scores where HIGHER means MORE in-distribution
(more confident), so one set of ranking metrics (:mod:`toolkit.metrics.ranking`, with
the in-distribution / correct examples as the positive class) serves all of them::

    ood_metrics(logits_test, logits_ood, score="energy", temperature=1.0)
    ood_scores.get("energy", temperature=2.0)(logits)   # -> (N,) scores
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from toolkit.metrics._checks import check_logits, check_logits_labels, is_concrete
from toolkit.metrics.ranking import aupr_in, aupr_out, auroc, fpr_at_95_tpr
from toolkit.registry import Registry

__all__ = [
    "OOD_SCORES",
    "energy",
    "entropy",
    "max_logit",
    "misclassification_auroc",
    "msp",
    "ood_metrics",
    "ood_scores",
]

ood_scores = Registry("ood score", build=functools.partial)

OOD_SCORES = ("msp", "max_logit", "energy", "entropy")
"""The scores an evaluation reports for every OOD set (its ``auroc_<score>``,
``aupr_in_<score>``, ``aupr_out_<score>`` and ``fpr_at_95_tpr_<score>`` columns)."""


@jax.jit
def _msp(logits: jax.Array) -> jax.Array:
    return jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)


@jax.jit
def _max_logit(logits: jax.Array) -> jax.Array:
    return jnp.max(logits, axis=-1)


@jax.jit
def _energy(logits: jax.Array, temperature: jax.Array) -> jax.Array:
    return temperature * jax.nn.logsumexp(logits / temperature, axis=-1)


@jax.jit
def _neg_entropy(logits: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits, axis=-1)
    # log_p is finite for finite logits, so p * log p is 0 (not NaN) where p underflows.
    return jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


@ood_scores.register("msp", description="Max softmax probability (Hendrycks & Gimpel 2017).")
def msp(logits: ArrayLike) -> jax.Array:
    """Maximum softmax probability, ``max_c softmax(z)_c`` in [1/C, 1].

    The baseline OOD / misclassification detector of Hendrycks & Gimpel (2017).
    """
    return _msp(check_logits(logits))


@ood_scores.register("max_logit", description="Largest logit (Hendrycks et al. 2022).")
def max_logit(logits: ArrayLike) -> jax.Array:
    """Maximum logit, ``max_c z_c`` (MaxLogit; Hendrycks et al. 2022, "Scaling
    out-of-distribution detection for real-world settings")."""
    return _max_logit(check_logits(logits))


@ood_scores.register("energy", description="Negative free energy T*logsumexp(z/T) (Liu 2020).")
def energy(logits: ArrayLike, *, temperature: float = 1.0) -> jax.Array:
    """Negative free energy, ``-E(x) = T * logsumexp_c(z_c / T)``.

    Liu et al. (2020), "Energy-based out-of-distribution detection", who score with
    ``-E(x)`` and use T = 1. ``temperature`` must be positive and finite.
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise ValueError(
            f"energy temperature must be a positive finite number, got {temperature!r}"
        )
    logits = check_logits(logits)
    return _energy(logits, jnp.asarray(float(temperature), dtype=logits.dtype))


@ood_scores.register("entropy", description="Negative predictive entropy sum_c p_c log p_c.")
def entropy(logits: ArrayLike) -> jax.Array:
    """Negative Shannon entropy of the softmax, ``sum_c p_c log p_c`` in [-log C, 0] (nats).

    Negated so that higher means more in-distribution, like the other scores; predictive
    entropy as an uncertainty score is used e.g. by Ovadia et al. (2019).
    """
    return _neg_entropy(check_logits(logits))


def ood_metrics(
    logits_in: ArrayLike, logits_out: ArrayLike, score: str = "msp", **score_hparams: Any
) -> dict[str, jax.Array]:
    """OOD detection metrics for one score (Hendrycks & Gimpel 2017).

    Scores both logit sets with ``ood_scores.get(score, **score_hparams)`` and returns 0-d
    arrays ``auroc``, ``aupr_in``, ``aupr_out`` and ``fpr_at_95_tpr`` (in-distribution is
    the positive class; see :mod:`toolkit.metrics.ranking` for the conventions).
    """
    score_fn = ood_scores.get(score, **score_hparams)
    logits_in = check_logits(logits_in, name="logits_in")
    logits_out = check_logits(logits_out, name="logits_out")
    if logits_in.shape[1] != logits_out.shape[1]:
        raise ValueError(
            "logits_in and logits_out must have the same number of classes, got shapes "
            f"{logits_in.shape} and {logits_out.shape}"
        )
    s_in, s_out = score_fn(logits_in), score_fn(logits_out)
    return {
        "auroc": auroc(s_in, s_out),
        "aupr_in": aupr_in(s_in, s_out),
        "aupr_out": aupr_out(s_in, s_out),
        "fpr_at_95_tpr": fpr_at_95_tpr(s_in, s_out),
    }


@jax.jit
def _is_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.argmax(logits, axis=-1) == labels


@jax.jit
def _masked_auroc(scores: jax.Array, positive: jax.Array) -> jax.Array:
    order = jnp.argsort(scores)
    sorted_scores = scores[order]
    negative_sorted = jnp.logical_not(positive[order]).astype(jnp.int32)
    # negatives_before[k] = number of negatives among the k smallest scores.
    negatives_before = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(negative_sorted)])
    below = negatives_before[jnp.searchsorted(sorted_scores, scores, side="left")]
    at_or_below = negatives_before[jnp.searchsorted(sorted_scores, scores, side="right")]
    n_pos = jnp.sum(positive.astype(scores.dtype))
    n_neg = scores.shape[0] - n_pos
    per_positive = (below + at_or_below).astype(scores.dtype) / (2 * n_neg)
    return jnp.sum(jnp.where(positive, per_positive, 0.0)) / n_pos


def misclassification_auroc(
    logits: ArrayLike, labels: ArrayLike, score: str = "msp", **score_hparams: Any
) -> jax.Array:
    """AUROC for telling correct from wrong top-1 predictions (Hendrycks & Gimpel 2017).

    Correct predictions are the positive class and the score (from ``ood_scores``,
    higher = more confident) ranks them; ties count half, as in :func:`auroc`.

    The AUROC is undefined when every prediction is correct or every one is wrong (one
    class only). On concrete inputs that raises ``ValueError``; under ``jax.jit``, where
    nothing can be raised, the result is NaN -- the one place a NaN comes out, so that a
    degenerate split can't pass as a real number.
    """
    score_fn = ood_scores.get(score, **score_hparams)
    logits, labels = check_logits_labels(logits, labels)
    correct = _is_correct(logits, labels)
    if is_concrete(correct):
        n_correct, n = int(np.asarray(correct).sum()), correct.shape[0]
        if n_correct in (0, n):
            raise ValueError(
                "misclassification AUROC needs both correct and wrong predictions, got "
                f"{n_correct} correct out of {n}: with one class only the AUROC is undefined"
            )
    return _masked_auroc(score_fn(logits), correct)
