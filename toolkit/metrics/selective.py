"""Selective classification: risk-coverage curves, AURC and E-AURC.

A selective classifier answers only when its confidence clears a threshold. Sorting the N
examples by decreasing confidence, accepting the top k gives coverage ``k / N`` and
selective risk ``(errors among them) / k``. Tied confidences cannot be split by a
threshold, so a tie group is accepted as a whole: every position inside a group gets the
group's point (coverage and risk with the whole group accepted). The result does not
depend on the input order. Geifman & El-Yaniv (2017), "Selective classification for deep
neural networks"; Geifman, Uziel & El-Yaniv (2019), "Bias-reduced uncertainty estimation
for deep neural classifiers" (AURC, E-AURC).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from toolkit.metrics._checks import check_scores

__all__ = ["aurc", "e_aurc", "risk_coverage"]


def _check(confidence: ArrayLike, correct: ArrayLike) -> tuple[jax.Array, jax.Array]:
    confidence = check_scores(confidence, name="confidence")
    correct = jnp.asarray(correct)
    if correct.dtype != jnp.bool_:
        raise ValueError(
            f"correct must be a bool array (prediction == label), got dtype {correct.dtype}"
        )
    if correct.shape != confidence.shape:
        raise ValueError(
            f"correct must have the shape of confidence {confidence.shape}, got {correct.shape}"
        )
    return confidence, correct


@jax.jit
def _risk_coverage(confidence: jax.Array, correct: jax.Array) -> tuple[jax.Array, jax.Array]:
    n = confidence.shape[0]
    order = jnp.argsort(-confidence, stable=True)
    conf = confidence[order]
    errors = jnp.cumsum((~correct[order]).astype(jnp.float32))
    idx = jnp.arange(n)
    is_end = jnp.concatenate([conf[1:] != conf[:-1], jnp.array([True])])
    end = jax.lax.cummin(jnp.where(is_end, idx, n - 1), reverse=True)
    accepted = (end + 1).astype(jnp.float32)
    return accepted / n, errors[end] / accepted


def risk_coverage(confidence: ArrayLike, correct: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Risk-coverage curve: ``(coverage (N,), risk (N,))`` by decreasing confidence.

    Position k (0-based) is the operating point that accepts the k + 1 most confident
    examples: ``coverage = (k + 1) / N`` and ``risk`` = error rate among the accepted;
    inside a tie group both are the group's values (module docstring), so a group of
    size g repeats its point g times. ``correct`` is a bool (N,) array (top-1 prediction
    == label); ``confidence`` is any score, higher = more confident (e.g. MSP).
    """
    return _risk_coverage(*_check(confidence, correct))


def aurc(confidence: ArrayLike, correct: ArrayLike) -> jax.Array:
    """Area under the risk-coverage curve: ``mean(risk)`` of :func:`risk_coverage`.

    ``AURC = (1/N) sum_{k=1}^{N} risk(k / N)``, the step-wise area that Geifman et al.
    (2019) compute; lower is better. All-tied confidences give the error rate.
    """
    return jnp.mean(_risk_coverage(*_check(confidence, correct))[1])


@jax.jit
def _optimal_aurc(correct: jax.Array) -> jax.Array:
    n = correct.shape[0]
    n_errors = jnp.sum(~correct)
    k = jnp.arange(1, n + 1, dtype=jnp.float32)
    # The oracle accepts every correct example first: risk (k - (N - E)) / k once k > N - E.
    risk = jnp.maximum(k - (n - n_errors).astype(jnp.float32), 0.0) / k
    return jnp.mean(risk)


def e_aurc(confidence: ArrayLike, correct: ArrayLike) -> jax.Array:
    """Excess AURC: :func:`aurc` minus the AURC of an oracle with the same errors.

    The oracle ranks all N - E correct examples above the E errors, so
    ``AURC* = (1/N) sum_{k > N - E} (k - N + E) / k``; Geifman et al. (2019)'s closed
    form ``r + (1 - r) ln(1 - r)`` (r = E/N) is its large-N limit. 0 for a perfect
    ranking; isolates the ranking quality from the error rate.
    """
    confidence, correct = _check(confidence, correct)
    return jnp.mean(_risk_coverage(confidence, correct)[1]) - _optimal_aurc(correct)
