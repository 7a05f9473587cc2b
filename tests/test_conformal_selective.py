"""FPR@95 (OpenOOD convention), split conformal sets and selective classification against
independent references: scikit-learn's roc_curve, numpy loops, scipy.stats.binom, hand sums."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
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


# ---------------------------------------------------------------------------------------
# conformal: independent numpy reference (per-example loops, float64)


def np_score(p, y, method, u, k_reg, lam):
    """Conformity score of class y for one probability vector p."""
    if method == "lac":
        return 1.0 - p[y]
    order = list(np.argsort(-p, kind="stable"))
    rank = order.index(y)  # 0-based
    above = sum(p[c] for c in order[:rank])
    return above + u * p[y] + lam * max(rank + 1 - k_reg, 0)


def np_qhat(probs, labels, method, alpha, u, k_reg=0, lam=0.0):
    n = len(labels)
    scores = np.array([np_score(probs[i], labels[i], method, u[i], k_reg, lam) for i in range(n)])
    level = np.ceil((n + 1) * (1 - alpha)) / n
    return np.inf if level > 1 else np.quantile(scores, level, method="inverted_cdf")


def np_sets(probs, qhat, method, u, randomized, k_reg=0, lam=0.0):
    m, c = probs.shape
    sets = np.zeros((m, c), bool)
    for i in range(m):
        if method == "lac" or randomized:
            for y in range(c):
                sets[i, y] = np_score(probs[i], y, method, u[i], k_reg, lam) <= qhat
        else:  # walk the ranking: include classes until one scores above qhat
            for y in np.argsort(-probs[i], kind="stable"):
                sets[i, y] = True
                if np_score(probs[i], y, method, 1.0, k_reg, lam) > qhat:
                    break
    return sets


def synthetic(rng, n, c=6, scale=2.0):
    """Softmax probabilities and labels drawn from them (float32)."""
    probs = scipy.special.softmax(rng.normal(size=(n, c)) * scale, axis=1).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(c, p=q / q.sum()) for q in probs.astype(np.float64)])
    return probs, labels


CASES = [
    ("lac", {}),
    ("aps", {}),
    ("aps", {"randomized": False}),
    ("raps", {"k_reg": 2, "lam": 0.05}),
    ("raps", {"k_reg": 1, "lam": 0.2, "randomized": False}),
]


@pytest.mark.parametrize("method,options", CASES)
def test_conformal_matches_numpy_reference(method, options):
    rng = np.random.default_rng(1)
    probs_cal, labels_cal = synthetic(rng, 150)
    probs, labels = synthetic(rng, 80)
    randomized = options.get("randomized", method != "lac")
    k_reg, lam = options.get("k_reg", 1), options.get("lam", 0.01)
    if method != "raps":
        k_reg, lam = 0, 0.0
    key_cal, key_test = jax.random.key(3), jax.random.key(4)
    u_cal = np.asarray(jax.random.uniform(key_cal, (150,))) if randomized else np.ones(150)
    u = np.asarray(jax.random.uniform(key_test, (80,))) if randomized else np.ones(80)
    for alpha in (0.05, 0.1, 0.3):
        qhat = metrics.conformal_threshold(
            probs_cal, labels_cal, method=method, alpha=alpha, key=key_cal, **options
        )
        ref_q = np_qhat(probs_cal.astype(np.float64), labels_cal, method, alpha, u_cal, k_reg, lam)
        assert qhat.shape == ()
        assert float(qhat) == pytest.approx(ref_q, abs=2e-6)
        sets = metrics.prediction_sets(probs, qhat, method=method, key=key_test, **options)
        ref_sets = np_sets(probs.astype(np.float64), ref_q, method, u, randomized, k_reg, lam)
        assert sets.shape == (80, 6) and sets.dtype == jnp.bool_
        np.testing.assert_array_equal(np.asarray(sets), ref_sets)
    # conformal_metrics splits its key into a calibration and a test key.
    key_cal, key_test = jax.random.split(jax.random.key(7))
    u_cal = np.asarray(jax.random.uniform(key_cal, (150,))) if randomized else np.ones(150)
    u = np.asarray(jax.random.uniform(key_test, (80,))) if randomized else np.ones(80)
    ref_q = np_qhat(probs_cal.astype(np.float64), labels_cal, method, 0.1, u_cal, k_reg, lam)
    ref_sets = np_sets(probs.astype(np.float64), ref_q, method, u, randomized, k_reg, lam)
    result = metrics.conformal_metrics(
        probs_cal, labels_cal, probs, labels, method=method, key=jax.random.key(7), **options
    )
    assert set(result) == {"coverage", "set_size"}
    assert result["coverage"].shape == () and result["set_size"].shape == ()
    assert float(result["coverage"]) == pytest.approx(ref_sets[np.arange(80), labels].mean())
    assert float(result["set_size"]) == pytest.approx(ref_sets.sum(axis=1).mean())


def test_conformal_hand_cases():
    # LAC: scores 1 - p_y = 0.1, 0.3, 0.5, 0.7; alpha 0.4 -> k = ceil(5 * 0.6) = 3 -> 0.5.
    probs_cal = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.7, 0.3]], np.float32)
    labels_cal = np.array([0, 1, 0, 1])
    qhat = metrics.conformal_threshold(probs_cal, labels_cal, method="lac", alpha=0.4)
    assert float(qhat) == pytest.approx(0.5)
    # alpha 0.1 -> k = ceil(4.5) = 5 > n = 4: qhat is +inf, every set is full.
    full = metrics.conformal_threshold(probs_cal, labels_cal, method="lac", alpha=0.1)
    assert float(full) == math.inf
    test = np.array([[0.6, 0.3, 0.1], [0.45, 0.5, 0.05]], np.float32)
    sets = metrics.prediction_sets(test, qhat, method="lac")  # 1 - p <= 0.5
    np.testing.assert_array_equal(np.asarray(sets), [[True, False, False], [False, True, False]])
    # APS, not randomized: scores 0.5, 0.8, 1.0 for [0.5, 0.3, 0.2]; with qhat 0.7 class 1
    # is the first whose score passes qhat and is included; class 2 is not.
    p = np.array([[0.5, 0.3, 0.2]], np.float32)
    aps = metrics.prediction_sets(p, 0.7, method="aps", randomized=False)
    np.testing.assert_array_equal(np.asarray(aps), [[True, True, False]])
    # RAPS, k_reg 1, lam 0.1: scores 0.5, 0.9, 1.2; qhat 0.85 -> {0, 1}; qhat 0.4 -> {0}.
    raps = dict(method="raps", k_reg=1, lam=0.1, randomized=False)
    np.testing.assert_array_equal(
        np.asarray(metrics.prediction_sets(p, 0.85, **raps)), [[True, True, False]]
    )
    np.testing.assert_array_equal(
        np.asarray(metrics.prediction_sets(p, 0.4, **raps)), [[True, False, False]]
    )


@pytest.mark.parametrize("method,options", CASES)
def test_conformal_coverage_within_binomial_tolerance(method, options):
    # One test example per calibration split, R independent splits: the number covered is
    # Binomial(R, P) with P >= k / (n + 1) >= 1 - alpha, k = ceil((n + 1)(1 - alpha)); with
    # continuous scores (LAC, randomized APS/RAPS) P = k / (n + 1) exactly, so the count
    # is also bounded above. n = 19, alpha = 0.1: P = 0.9 (0.95 if qhat were one rank
    # higher, as np.quantile(method="higher") gives).
    reps, n, c, alpha = 3000, 19, 5, 0.1
    rng = np.random.default_rng(2)
    probs, labels = synthetic(rng, reps * (n + 1), c=c, scale=1.5)
    probs, labels = probs.reshape(reps, n + 1, c), labels.reshape(reps, n + 1)
    keys = jax.random.split(jax.random.key(0), reps)

    def covered(p, y, key):
        k_cal, k_test = jax.random.split(key)
        qhat = metrics.conformal_threshold(
            p[:n], y[:n], method=method, alpha=alpha, key=k_cal, **options
        )
        sets = metrics.prediction_sets(p[n:], qhat, method=method, key=k_test, **options)
        return sets[0, y[n]], sets.sum()

    hits, sizes = jax.vmap(covered)(jnp.asarray(probs), jnp.asarray(labels), keys)
    count = int(np.asarray(hits).sum())
    exact = math.ceil((n + 1) * (1 - alpha)) / (n + 1)
    assert count >= scipy.stats.binom.ppf(1e-4, reps, 1 - alpha)
    assert count >= scipy.stats.binom.ppf(1e-4, reps, exact)
    if method == "lac" or options.get("randomized", True):
        assert count <= scipy.stats.binom.isf(1e-4, reps, exact)
    else:
        assert int(np.asarray(sizes).min()) >= 1  # never empty


@pytest.mark.parametrize("method", ["aps", "raps"])
def test_non_randomized_sets_are_never_empty(method):
    rng = np.random.default_rng(3)
    probs_cal, labels_cal = synthetic(rng, 200, c=10, scale=3.0)
    probs, _ = synthetic(rng, 300, c=10, scale=3.0)
    for alpha in (0.5, 0.9, 0.99):
        qhat = metrics.conformal_threshold(
            probs_cal, labels_cal, method=method, alpha=alpha, randomized=False
        )
        sets = metrics.prediction_sets(probs, qhat, method=method, randomized=False)
        assert int(np.asarray(sets).sum(axis=1).min()) == 1  # some sets are singletons
    empty = metrics.prediction_sets(probs, -1.0, method=method, randomized=False)
    np.testing.assert_array_equal(np.asarray(empty).sum(axis=1), 1)
    np.testing.assert_array_equal(np.asarray(empty).argmax(axis=1), probs.argmax(axis=1))


def _bad_input_arrays():
    """Device arrays made at import, so the test below counts only the checks' compiles."""
    probs, labels = synthetic(np.random.default_rng(4), 20)
    five = probs[:, :5] / probs[:, :5].sum(axis=1, keepdims=True)
    qhat2 = np.array([0.5, 0.5])
    arrays = (probs, labels, np.log(probs) + 1.0, probs * 0.5, labels + 6, five, labels % 5, qhat2)
    return tuple(jnp.asarray(a) for a in arrays)


BAD_INPUT_ARRAYS = _bad_input_arrays()


def test_conformal_bad_input_names_the_value_before_any_compute(compiles):
    probs, labels, logits, half, labels_high, probs5, labels5, qhat2 = BAD_INPUT_ARRAYS
    cases = [
        (dict(method="thr", alpha=0.1), r"method must be one of \('lac', 'aps', 'raps'\).*'thr'"),
        (dict(method="aps", alpha=0.0), r"alpha must be a number in \(0, 1\).*0\.0"),
        (dict(method="aps", alpha=1.5), r"alpha .* got 1\.5"),
        (dict(method="aps", alpha=True), r"alpha .* got True"),
        (dict(method="lac", alpha=0.1, k_reg=2), r"k_reg=2 applies to method 'raps' only"),
        (dict(method="aps", alpha=0.1, lam=0.1), r"lam=0\.1 applies to method 'raps' only"),
        (dict(method="raps", alpha=0.1, k_reg=-1), r"k_reg must be an int >= 0, got -1"),
        (dict(method="raps", alpha=0.1, lam=-0.5), r"lam must be .* >= 0, got -0\.5"),
        (dict(method="lac", alpha=0.1, randomized=True), r"randomized=True applies to"),
        (dict(method="aps", alpha=0.1, key=np.zeros(2, np.uint32)), r"typed PRNG key"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            metrics.conformal_threshold(probs, labels, **kwargs)
    with pytest.raises(ValueError, match=r"probs_cal must be probabilities in \[0, 1\]"):
        metrics.conformal_threshold(logits, labels, method="lac", alpha=0.1)
    with pytest.raises(ValueError, match=r"probs_cal rows must sum to 1.*row 0 sums to 0\.5"):
        metrics.conformal_threshold(half, labels, method="lac", alpha=0.1)
    with pytest.raises(ValueError, match=r"labels_cal must lie in \[0, 6\)"):
        metrics.conformal_threshold(probs, labels_high, method="lac", alpha=0.1)
    with pytest.raises(ValueError, match=r"unknown conformal option\(s\) \['lamda'\]"):
        metrics.conformal_metrics(probs, labels, probs, labels, method="raps", lamda=0.1)
    with pytest.raises(ValueError, match=r"probs has 5 classes but probs_cal has 6"):
        metrics.conformal_metrics(probs, labels, probs5, labels5, method="lac")
    with pytest.raises(ValueError, match=r"qhat must be a 0-d float"):
        metrics.prediction_sets(probs, qhat2, method="lac")
    assert compiles == []


# ---------------------------------------------------------------------------------------
# selective classification


def np_risk_coverage(confidence, correct):
    """Accepting every example with confidence >= c, for each example's c (sorted desc)."""
    conf = np.asarray(confidence, np.float64)
    coverage, risk = [], []
    for c in np.sort(conf)[::-1]:
        accepted = conf >= c
        coverage.append(accepted.mean())
        risk.append((~correct[accepted]).mean())
    return np.array(coverage), np.array(risk)


def test_risk_coverage_and_aurc_match_numpy_with_ties():
    rng = np.random.default_rng(5)
    for trial in range(20):
        n = [1, 17, 50][trial % 3]
        conf = rng.integers(0, 6 if trial % 2 else 1000, n).astype(np.float32)
        correct = rng.random(n) < 0.7
        coverage, risk = metrics.risk_coverage(conf, correct)
        ref_cov, ref_risk = np_risk_coverage(conf, correct)
        np.testing.assert_allclose(np.asarray(coverage), ref_cov, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(risk), ref_risk, rtol=1e-6, atol=1e-7)
        assert float(metrics.aurc(conf, correct)) == pytest.approx(ref_risk.mean(), abs=1e-6)
        perm = rng.permutation(n)  # the input order does not matter
        assert float(metrics.aurc(conf[perm], correct[perm])) == pytest.approx(
            ref_risk.mean(), abs=1e-6
        )


def test_aurc_and_e_aurc_hand_cases():
    # Sorted: 0.9 (right) | 0.8, 0.8 (one wrong) | 0.3 (wrong). Points: (1/4, 0),
    # (3/4, 1/3) twice, (1, 1/2): AURC = (0 + 1/3 + 1/3 + 1/2) / 4 = 7/24. Oracle with 2
    # errors in 4: risks 0, 0, 1/3, 1/2 -> 5/24; E-AURC = 2/24.
    conf = np.array([0.8, 0.9, 0.3, 0.8], np.float32)
    correct = np.array([False, True, False, True])
    coverage, risk = metrics.risk_coverage(conf, correct)
    np.testing.assert_allclose(np.asarray(coverage), [0.25, 0.75, 0.75, 1.0])
    np.testing.assert_allclose(np.asarray(risk), [0.0, 1 / 3, 1 / 3, 0.5], rtol=1e-6)
    assert float(metrics.aurc(conf, correct)) == pytest.approx(7 / 24)
    assert float(metrics.e_aurc(conf, correct)) == pytest.approx(2 / 24)
    # Perfect ranking: E-AURC 0. Reversed: every error first, the worst AURC.
    correct = np.array([True] * 7 + [False] * 3)
    conf = np.linspace(1.0, 0.0, 10).astype(np.float32)
    assert float(metrics.e_aurc(conf, correct)) == pytest.approx(0.0, abs=1e-7)
    worst = np.mean([min(k, 3) / k for k in range(1, 11)])
    assert float(metrics.aurc(-conf, correct)) == pytest.approx(worst)
    # All tied: one operating point, AURC = the error rate.
    assert float(metrics.aurc(np.zeros(10), correct)) == pytest.approx(0.3)
    assert float(metrics.e_aurc(np.ones(10), np.ones(10, bool))) == 0.0


def test_optimal_aurc_tends_to_geifmans_closed_form():
    n, r = 200_000, 0.15
    correct = np.arange(n) >= int(r * n)  # the first 15% are errors
    conf = np.arange(n, dtype=np.float32)  # ... and least confident: a perfect ranking
    optimal = float(metrics.aurc(conf, correct))
    assert optimal == pytest.approx(r + (1 - r) * math.log(1 - r), abs=1e-4)


def test_selective_jits_and_checks_input():
    conf, correct = jnp.array([0.2, 0.9, 0.5]), jnp.array([False, True, True])
    assert float(jax.jit(metrics.e_aurc)(conf, correct)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match=r"correct must be a bool array .* got dtype int"):
        metrics.aurc(conf, jnp.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"correct must have the shape of confidence \(3,\)"):
        metrics.risk_coverage(conf, jnp.array([True, False]))
    with pytest.raises(ValueError, match="confidence contain NaN"):
        metrics.e_aurc(jnp.array([0.1, jnp.nan, 0.3]), correct)
