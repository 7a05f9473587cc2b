"""Threshold-free detection metrics on two 1-D score sets (higher = more in-distribution).

The in-distribution (or "correct") scores are the positive class, except where a name
says otherwise: :func:`aupr_out` and :func:`fpr_at_95_tpr_ood` (OpenOOD v1.5's
convention) take OOD as the positive class. All metrics are
computed with sorts and ``searchsorted``, so they are exact under ties, O(n log n), and
jit-able (output shapes are static). Empty inputs raise ``ValueError``; NaN scores raise
when the input is concrete.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from toolkit.metrics._checks import check_scores_pair

__all__ = ["aupr_in", "aupr_out", "auroc", "fpr_at_95_tpr", "fpr_at_95_tpr_ood", "fpr_at_tpr"]


@jax.jit
def _auroc(pos: jax.Array, neg: jax.Array) -> jax.Array:
    neg_sorted = jnp.sort(neg)
    below = jnp.searchsorted(neg_sorted, pos, side="left")
    at_or_below = jnp.searchsorted(neg_sorted, pos, side="right")
    # (below + at_or_below) / 2 counts ties as half; dividing per positive before the mean
    # keeps float32 sums small for large n_pos * n_neg.
    return jnp.mean((below + at_or_below).astype(pos.dtype) / (2 * neg.shape[0]))


@jax.jit
def _average_precision(pos: jax.Array, neg: jax.Array) -> jax.Array:
    all_sorted = jnp.sort(jnp.concatenate([pos, neg]))
    pos_sorted = jnp.sort(pos)
    # Precision at threshold s_i (predict positive iff score >= s_i) for every positive i;
    # the denominator counts i itself, so it is >= 1.
    all_at_or_above = all_sorted.shape[0] - jnp.searchsorted(all_sorted, pos, side="left")
    pos_at_or_above = pos_sorted.shape[0] - jnp.searchsorted(pos_sorted, pos, side="left")
    return jnp.mean(pos_at_or_above.astype(pos.dtype) / all_at_or_above.astype(pos.dtype))


@jax.jit
def _average_precision_negated(pos: jax.Array, neg: jax.Array) -> jax.Array:
    return _average_precision(-pos, -neg)


@functools.partial(jax.jit, static_argnames="count")
def _fpr_at_count(scores_in: jax.Array, scores_out: jax.Array, count: int) -> jax.Array:
    threshold = jnp.sort(scores_in)[scores_in.shape[0] - count]  # count-th largest in-score
    return jnp.mean((scores_out >= threshold).astype(scores_out.dtype))


def auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> jax.Array:
    """Area under the ROC curve with in-distribution as the positive class.

    The Mann-Whitney U statistic with average ranks, normalised:
    ``AUROC = (1 / (n_in n_out)) sum_i sum_j ([s_i > t_j] + 0.5 [s_i == t_j])`` for
    in-scores ``s`` and out-scores ``t`` -- the probability that a random in-distribution
    example outscores a random OOD one, ties counting half. Equals
    ``sklearn.metrics.roc_auc_score`` (trapezoidal ROC area). All-equal scores give 0.5.
    Hendrycks & Gimpel (2017); Mann & Whitney (1947).
    """
    scores_in, scores_out = check_scores_pair(scores_in, scores_out)
    return _auroc(scores_in, scores_out)


def aupr_in(scores_in: ArrayLike, scores_out: ArrayLike) -> jax.Array:
    """Area under the precision-recall curve, in-distribution positive (AUPR-In).

    Average precision, the step-wise estimator of ``sklearn.metrics.average_precision_score``
    (no interpolation): ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score
    thresholds in decreasing order, which equals ``(1/n_pos) sum_{i pos} P(s_i)`` with
    ``P(s) = #{pos >= s} / #{all >= s}``; tied scores form one threshold. Its chance
    level is ``n_in / (n_in + n_out)``. Hendrycks & Gimpel (2017).
    """
    scores_in, scores_out = check_scores_pair(scores_in, scores_out)
    return _average_precision(scores_in, scores_out)


def aupr_out(scores_in: ArrayLike, scores_out: ArrayLike) -> jax.Array:
    """AUPR with OOD as the positive class and the scores negated (AUPR-Out).

    Same estimator as :func:`aupr_in` on ``(-scores_out, -scores_in)``: lower scores
    flag OOD. Chance level ``n_out / (n_in + n_out)``. Hendrycks & Gimpel (2017).
    """
    scores_in, scores_out = check_scores_pair(scores_in, scores_out)
    return _average_precision_negated(scores_out, scores_in)


def _required_count(tpr: float, n: int) -> int:
    """Smallest k in [1, n] with ``k / n >= tpr`` in float64, as ROC curves compare it."""
    k = min(max(math.ceil(tpr * n), 1), n)
    while k > 1 and (k - 1) / n >= tpr:
        k -= 1
    while k < n and k / n < tpr:
        k += 1
    return k


def fpr_at_tpr(scores_in: ArrayLike, scores_out: ArrayLike, tpr: float = 0.95) -> jax.Array:
    """False-positive rate on OOD at the threshold that keeps ``tpr`` of in-distribution.

    Convention (no interpolation): the threshold ``tau`` is the largest score such that
    the fraction of in-distribution scores ``>= tau`` is at least ``tpr``, i.e. the
    k-th largest in-score with ``k = ceil(tpr * n_in)``; the result is the fraction of
    OOD scores ``>= tau`` (OOD accepted as in-distribution; ties at ``tau`` are
    accepted). This is the ROC point with the smallest FPR among those with
    TPR >= ``tpr``: ``fpr[np.searchsorted(tpr_curve, tpr)]`` on
    ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``. (With sklearn's default
    ``drop_intermediate=True`` collinear points are dropped and a lookup can land on a
    later point.)
    """
    if isinstance(tpr, bool) or not isinstance(tpr, numbers.Real) or not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be a number in (0, 1], got {tpr!r}")
    scores_in, scores_out = check_scores_pair(scores_in, scores_out)
    return _fpr_at_count(scores_in, scores_out, _required_count(float(tpr), scores_in.shape[0]))


def fpr_at_95_tpr(scores_in: ArrayLike, scores_out: ArrayLike) -> jax.Array:
    """FPR@95%TPR with in-distribution positive: the fraction of OOD accepted at 95% ID recall.

    :func:`fpr_at_tpr` with ``tpr=0.95``: the threshold keeps 95% of the in-distribution
    scores and the result is the fraction of OOD scores at or above it. This is the
    convention of Liang et al. (2018), "Enhancing the reliability of out-of-distribution
    image detection in neural networks" (ODIN), Hendrycks et al. (2019) and Liu et al.
    (2020). OpenOOD v1.5 reports the mirrored quantity, :func:`fpr_at_95_tpr_ood`.
    """
    return fpr_at_tpr(scores_in, scores_out, 0.95)


@functools.partial(jax.jit, static_argnames="count")
def _fpr_at_count_ood(scores_in: jax.Array, scores_out: jax.Array, count: int) -> jax.Array:
    # sklearn's roc_curve with OOD positive on -score: sort -score descending, one ROC point
    # per distinct value (its group end), then drop_intermediate drops interior points whose
    # incoming and outgoing steps (d fp, d tp) are equal (collinear). The answer is the fp
    # rate of the first kept point with tp >= count; no compaction needed, all arrays (N,).
    scores = jnp.concatenate([scores_out, scores_in])
    is_ood = jnp.arange(scores.shape[0]) < scores_out.shape[0]
    order = jnp.argsort(scores, stable=True)  # ascending score = descending -score
    s, positive = scores[order], is_ood[order]
    n = s.shape[0]
    idx = jnp.arange(n)
    tp = jnp.cumsum(positive.astype(jnp.int32))
    fp = jnp.cumsum((~positive).astype(jnp.int32))
    differs = s[1:] != s[:-1]
    is_end = jnp.concatenate([differs, jnp.array([True])])
    is_start = jnp.concatenate([jnp.array([True]), differs])
    start = jax.lax.cummax(jnp.where(is_start, idx, 0))
    end = jax.lax.cummin(jnp.where(is_end, idx, n - 1), reverse=True)
    prev = start - 1  # previous group's end, -1 for the first group
    nxt = end[jnp.minimum(idx + 1, n - 1)]  # next group's end (for a group end)
    tp_prev = jnp.where(prev >= 0, tp[jnp.maximum(prev, 0)], 0)
    fp_prev = jnp.where(prev >= 0, fp[jnp.maximum(prev, 0)], 0)
    collinear = (tp - tp_prev == tp[nxt] - tp) & (fp - fp_prev == fp[nxt] - fp)
    kept = is_end & ((prev < 0) | (idx == n - 1) | ~collinear)
    first = jnp.argmax(kept & (tp >= count))
    return fp[first].astype(scores.dtype) / scores_in.shape[0]


def fpr_at_95_tpr_ood(scores_in: ArrayLike, scores_out: ArrayLike) -> jax.Array:
    """FPR@95%TPR with OOD positive (OpenOOD v1.5): fraction of ID flagged OOD at 95% OOD recall.

    OpenOOD v1.5's ``auc_and_fpr_recall`` (``openood/evaluators/metrics.py``): with OOD
    labelled 1 and ``conf`` higher = in-distribution, ``fpr, tpr, _ =
    sklearn.metrics.roc_curve(is_ood, -conf)`` and the result is ``fpr[argmax(tpr >=
    0.95)]``: the first ROC point (scanning thresholds on ``-conf`` downwards) that flags
    at least 95% of the OOD examples, and the fraction of in-distribution examples flagged
    there (examples with ``conf <= tau``; ties at ``tau`` are flagged). Matched exactly,
    including sklearn's default ``drop_intermediate=True``: with tied scores, a point
    collinear with its neighbours is dropped and the lookup lands on the next kept point.
    Without ties this equals the smallest such FPR. Yang et al. (2022), "OpenOOD";
    Zhang et al. (2023), "OpenOOD v1.5". Not the same number as :func:`fpr_at_95_tpr`.
    """
    scores_in, scores_out = check_scores_pair(scores_in, scores_out)
    count = _required_count(0.95, scores_out.shape[0])
    return _fpr_at_count_ood(scores_in, scores_out, count)
