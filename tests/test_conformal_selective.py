"""FPR@95 (OpenOOD convention), split conformal sets and selective classification against
independent references: scikit-learn's roc_curve, numpy loops, scipy.stats.binom, hand sums."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.metrics

from toolkit import metrics

# ---------------------------------------------------------------------------------------
# FPR@95%TPR, OOD positive (OpenOOD v1.5)


def openood_fpr95(scores_in, scores_out):
    """OpenOOD v1.5's auc_and_fpr_recall: OOD labelled 1, roc_curve on -conf, defaults."""
    conf = np.concatenate([scores_in, scores_out]).astype(np.float64)
    is_ood = np.concatenate([np.zeros(len(scores_in)), np.ones(len(scores_out))])
    fpr, tpr, _ = sklearn.metrics.roc_curve(is_ood, -conf)
    return fpr[np.argmax(tpr >= 0.95)]


def test_fpr_at_95_tpr_ood_matches_openood_on_continuous_and_tied_scores():
    rng = np.random.default_rng(0)
    for trial in range(120):
        n_in, n_out = [(1, 1), (7, 40), (60, 23)][trial % 3]  # few shapes: few compiles
        if trial % 2:  # many ties: a few integer levels, OOD shifted down
            levels = int(rng.integers(1, 8))
            s_in = rng.integers(0, levels, n_in).astype(np.float32)
            s_out = (rng.integers(0, levels, n_out) - rng.integers(0, 2)).astype(np.float32)
        else:
            s_in = rng.normal(1.0, 1.0, n_in).astype(np.float32)
            s_out = rng.normal(0.0, 1.0, n_out).astype(np.float32)
        got = float(metrics.fpr_at_95_tpr_ood(s_in, s_out))
        assert got == pytest.approx(openood_fpr95(s_in, s_out), abs=1e-7), trial


def test_fpr_at_95_tpr_ood_follows_sklearns_dropped_collinear_point():
    # Ascending conf (= descending -conf): 36 OOD at 0; {1 ID, 2 OOD} at 1; {1 ID, 2 OOD}
    # at 2; 8 ID at 3. 95% of 40 OOD = 38 is first reached at conf 1 (1 ID flagged, FPR
    # 0.1), but that ROC point is collinear with its neighbours (steps (1, 2) in and
    # out), so sklearn's drop_intermediate removes it and OpenOOD reads the next: 0.2.
    s_out = np.r_[np.zeros(36), [1.0, 1.0], [2.0, 2.0]]
    s_in = np.r_[[1.0], [2.0], np.full(8, 3.0)]
    assert openood_fpr95(s_in, s_out) == pytest.approx(0.2)
    assert float(metrics.fpr_at_95_tpr_ood(s_in, s_out)) == pytest.approx(0.2)


def test_the_two_fpr95_conventions_differ_on_a_hand_case():
    s_in = np.array([10.0, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6, -7, -8, -9])
    s_out = np.array([8.5, -20.0] + [-30.0] * 18)
    # ID positive: keep 19 of 20 in-scores (threshold -8): OOD accepted = {8.5} -> 1/20.
    assert float(metrics.fpr_at_95_tpr(s_in, s_out)) == pytest.approx(1 / 20)
    # OOD positive: flag 19 of 20 OOD (conf <= -20): ID flagged = none -> 0.
    assert float(metrics.fpr_at_95_tpr_ood(s_in, s_out)) == 0.0
    s_out[1] = 4.5  # now the 19th OOD is at 4.5: ID at or below it (4 .. -9) = 14 of 20
    assert float(metrics.fpr_at_95_tpr_ood(s_in, s_out)) == pytest.approx(14 / 20)


def test_fpr_at_95_tpr_ood_jits_and_checks_input():
    s_in, s_out = jnp.linspace(0.0, 1.0, 40), jnp.linspace(-0.5, 0.5, 30)
    assert float(jax.jit(metrics.fpr_at_95_tpr_ood)(s_in, s_out)) == pytest.approx(
        openood_fpr95(np.asarray(s_in), np.asarray(s_out)), abs=1e-7
    )
    with pytest.raises(ValueError, match="scores_out is empty"):
        metrics.fpr_at_95_tpr_ood(s_in, jnp.zeros(0))
    with pytest.raises(ValueError, match="scores_in contain NaN"):
        metrics.fpr_at_95_tpr_ood(jnp.array([0.0, jnp.nan]), s_out)
