"""Post-hoc OOD scorers (toolkit.ood.scoring; the registry tk.ood.scorers) against
independently written numpy / scipy / sklearn versions of each paper's formula, a toy case
every registered scorer must solve, validation grid search, and bad-input errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from scipy.special import logsumexp, softmax
from sklearn.covariance import EmpiricalCovariance
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

import toolkit as tk
from toolkit.ood.scoring import Batch, InapplicableError, Reference, fit_scorer, select_scorer
from toolkit.ood.scoring import features as feature_scorers
from toolkit.ood.scoring import gradient as gradient_scorers
from toolkit.registry import InvalidHyperparameterError, UnknownNameError

D, C, N = 8, 3, 300


def _f32(x):
    return np.asarray(x, dtype=np.float32)


@pytest.fixture(scope="module")
def data():
    """Gaussian class blobs (full-rank features) with a random head, and a query batch."""
    rng = np.random.default_rng(0)
    means = rng.normal(0.0, 2.0, (C, D))
    labels = rng.integers(0, C, N)
    mix = rng.normal(0.0, 1.0, (D, D)) / np.sqrt(D) + np.eye(D)
    train = _f32(means[labels] + rng.normal(0.0, 1.0, (N, D)) @ mix)
    w, b = _f32(rng.normal(0.0, 1.0, (D, C))), _f32(rng.normal(0.0, 0.5, C))
    query = _f32(rng.normal(0.0, 2.5, (37, D)))
    return {
        "train": train,
        "labels": labels.astype(np.int32),
        "w": w,
        "b": b,
        "train_logits": _f32(train @ w + b),
        "query": query,
        "query_logits": _f32(query @ w + b),
        "reference": Reference(
            features=train, logits=_f32(train @ w + b), labels=labels.astype(np.int32), head=(w, b)
        ),
    }


@pytest.fixture(scope="module")
def relu_data(data):
    """The same with non-negative (post-ReLU) features, as ReAct / ASH / DICE assume."""
    train, query = np.maximum(data["train"], 0), np.maximum(data["query"], 0)
    w, b = data["w"], data["b"]
    return {
        **data,
        "train": train,
        "query": query,
        "query_logits": _f32(query @ w + b),
        "reference": Reference(
            features=train, logits=_f32(train @ w + b), labels=data["labels"], head=(w, b)
        ),
    }


def _score(name, d, **hparams):
    fitted = fit_scorer(name, d["reference"], **hparams)
    return np.asarray(fitted(Batch(logits=d["query_logits"], features=d["query"])))


# -- logit scorers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, hparams, reference",
    [
        ("msp", {}, lambda z: softmax(z, axis=1).max(1)),
        ("max_logit", {}, lambda z: z.max(1)),
        ("energy", {}, lambda z: logsumexp(z, axis=1)),
        ("energy", {"temperature": 10.0}, lambda z: 10.0 * logsumexp(z / 10.0, axis=1)),
        ("entropy", {}, lambda z: np.sum(softmax(z, 1) * np.log(softmax(z, 1)), axis=1)),
    ],
)
def test_logit_scorers_match_numpy(data, name, hparams, reference):
    z = data["query_logits"].astype(np.float64)
    got = fit_scorer(name, None, **hparams)(Batch(logits=data["query_logits"]))
    np.testing.assert_allclose(np.asarray(got), reference(z), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gamma, top_m", [(0.1, 100), (0.5, 2), (2.0, 1)])
def test_gen_matches_numpy(data, gamma, top_m):
    """Liu et al. 2023: -sum over the M largest probabilities of p^g (1 - p)^g."""
    p = softmax(data["query_logits"].astype(np.float64), axis=1)
    top = np.sort(p, axis=1)[:, ::-1][:, :top_m]
    want = -np.sum(top**gamma * (1 - top) ** gamma, axis=1)
    got = fit_scorer("gen", None, gamma=gamma, top_m=top_m)(Batch(logits=data["query_logits"]))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


# -- feature scorers ------------------------------------------------------------------


def _class_stats(train, labels):
    classes = np.unique(labels)
    means = np.stack([train[labels == c].mean(0) for c in classes])
    centred = np.concatenate([train[labels == c] - means[i] for i, c in enumerate(classes)])
    shared = EmpiricalCovariance(assume_centered=False).fit(centred).covariance_
    return means, np.linalg.pinv(shared)


def test_mds_matches_scipy_mahalanobis(data):
    train, x = data["train"].astype(np.float64), data["query"].astype(np.float64)
    means, vi = _class_stats(train, data["labels"])
    want = np.array([max(-(mahalanobis(xi, m, vi) ** 2) for m in means) for xi in x])
    # float32 inversion of a covariance with condition number ~2500 (cond x eps ~ 2e-4
    # relative); a 1/(N-1) covariance would be off by 3e-3.
    np.testing.assert_allclose(_score("mds", data), want, rtol=1e-3)


def test_rmds_matches_scipy_mahalanobis(data):
    train, x = data["train"].astype(np.float64), data["query"].astype(np.float64)
    means, vi = _class_stats(train, data["labels"])
    vi0 = np.linalg.pinv(EmpiricalCovariance().fit(train).covariance_)
    mu0 = train.mean(0)
    md0 = np.array([mahalanobis(xi, mu0, vi0) ** 2 for xi in x])
    want = np.array(
        [max(-(mahalanobis(xi, m, vi) ** 2 - md0[i]) for m in means) for i, xi in enumerate(x)]
    )
    # A difference of two distances: the float32 error is relative to the terms.
    assert np.all(np.abs(_score("rmds", data) - want) <= 1e-3 * (np.abs(want) + md0))


@pytest.mark.parametrize("k, chunk", [(1, 256), (5, 7), (50, 10)])
def test_knn_matches_sklearn(data, monkeypatch, k, chunk):
    """Sun et al. 2022: minus the k-th neighbour distance among normalised training
    features; small chunks exercise the blocked (padded) path."""
    monkeypatch.setattr(feature_scorers, "KNN_CHUNK", chunk)
    train, x = data["train"].astype(np.float64), data["query"].astype(np.float64)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    dist, _ = NearestNeighbors(n_neighbors=k).fit(unit(train)).kneighbors(unit(x))
    np.testing.assert_allclose(_score("knn", data, k=k), -dist[:, -1], rtol=1e-4, atol=1e-4)


def test_knn_memory_is_bounded_by_the_query_block():
    """4096 queries against a 50k x 512 reference: the compiled program's scratch memory
    is about one KNN_CHUNK x 50k distance block (51 MB), not the 819 MB full matrix."""
    queries = jax.ShapeDtypeStruct((4096, 512), jnp.float32)
    bank = jax.ShapeDtypeStruct((50_000, 512), jnp.float32)
    chunk = feature_scorers.KNN_CHUNK
    compiled = feature_scorers._knn_distance.lower(queries, bank, k=1000, chunk=chunk).compile()
    # Two distance blocks (the block and the kth-smallest search over it) and the padded
    # queries; the full matrix would be 819 MB.
    block, padded_queries = chunk * 50_000 * 4, 4096 * 512 * 4
    assert compiled.memory_analysis().temp_size_in_bytes < 2 * block + padded_queries


@pytest.mark.parametrize("dim", [None, 2, 5])
def test_vim_matches_numpy(data, dim):
    """Wang et al. 2022, written as the paper (virtual logit's softmax probability p0,
    higher = OOD) and checked against OpenOOD's E - v form that the scorer returns."""
    train, x = data["train"].astype(np.float64), data["query"].astype(np.float64)
    w, b = data["w"].astype(np.float64), data["b"].astype(np.float64)
    u = -np.linalg.pinv(w.T) @ b
    cov = EmpiricalCovariance(assume_centered=True).fit(train - u).covariance_
    eigvals, eigvecs = np.linalg.eig(cov)
    keep = D // 2 if dim is None else dim
    residual = eigvecs.real[:, np.argsort(-eigvals.real)[keep:]]
    alpha = (train @ w + b).max(1).mean() / np.linalg.norm((train - u) @ residual, axis=1).mean()
    v = alpha * np.linalg.norm((x - u) @ residual, axis=1)
    z = x @ w + b
    p0 = np.exp(v) / (np.exp(z).sum(1) + np.exp(v))
    got = _score("vim", data, dim=dim)
    np.testing.assert_allclose(got, np.log((1 - p0) / p0), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(np.argsort(got), np.argsort(-p0))


# -- activation shaping ---------------------------------------------------------------


@pytest.mark.parametrize("percentile", [50.0, 90.0, 100.0])
def test_react_matches_numpy(relu_data, percentile):
    d = relu_data
    clip = np.percentile(d["train"].astype(np.float64).ravel(), percentile)
    want = logsumexp(np.minimum(d["query"], clip) @ d["w"] + d["b"], axis=1)
    got = _score("react", d, percentile=percentile)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("percentile", [0.0, 65.0, 90.0])
def test_ash_s_matches_numpy(relu_data, percentile):
    """Djurisic et al. 2023, ASH-S: keep the D - round(D p / 100) largest activations per
    example, scale by exp(sum before / sum after), then energy."""
    d = relu_data
    keep = D - int(np.round(D * percentile / 100))
    want = []
    for h in d["query"].astype(np.float64):
        top = np.argsort(h)[::-1][:keep]
        pruned = np.zeros_like(h)
        pruned[top] = h[top]
        shaped = pruned * np.exp(h.sum() / pruned.sum()) if pruned.sum() else pruned
        want.append(logsumexp(shaped @ d["w"] + d["b"]))
    np.testing.assert_allclose(_score("ash", d, percentile=percentile), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("p", [0.0, 50.0, 90.0])
def test_dice_matches_numpy(relu_data, p):
    d = relu_data
    contrib = d["train"].astype(np.float64).mean(0)[:, None] * d["w"]
    masked = d["w"] * (contrib > np.percentile(contrib, p))
    want = logsumexp(d["query"] @ masked + d["b"], axis=1)
    np.testing.assert_allclose(_score("dice", d, p=p), want, rtol=1e-5, atol=1e-5)


def test_ash_hand_case():
    """D = 4, p = 50: keep 2 of [1, 2, 3, 4] -> [0, 0, 3, 4] * exp(10 / 7); W = I, b = 0."""
    head = (np.eye(4, dtype=np.float32), np.zeros(4, np.float32))
    h = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    got = fit_scorer("ash", Reference(head=head), percentile=50.0)(Batch(logits=h, features=h))
    shaped = np.array([0.0, 0.0, 3.0, 4.0]) * np.exp(10 / 7)
    np.testing.assert_allclose(np.asarray(got), [logsumexp(shaped)], rtol=1e-6)


# -- ODIN -----------------------------------------------------------------------------


@pytest.mark.parametrize("temperature, noise, chunk", [(1000.0, 0.0014, 1000), (2.0, 0.1, 3)])
def test_odin_matches_numpy_gradient_of_linear_model(data, monkeypatch, temperature, noise, chunk):
    """Liang et al. 2018 on f(x) = x A + c: grad_x log S_yhat(x; T) = A (e_yhat - p) / T,
    x~ = x + eps sign(grad), score max softmax(f(x~) / T)."""
    monkeypatch.setattr(gradient_scorers, "ODIN_CHUNK", chunk)
    a, c = data["w"], data["b"]
    x = data["query"]
    z = x.astype(np.float64) @ a + c
    p = softmax(z / temperature, axis=1)
    onehot = np.eye(C)[z.argmax(1)]
    grad = (onehot - p) @ a.T / temperature
    x_tilde = x + noise * np.sign(grad)
    want = softmax((x_tilde @ a + c) / temperature, axis=1).max(1)
    batch = Batch(logits=_f32(z), inputs=x, logits_fn=lambda xs: xs @ jnp.asarray(a) + c)
    got = fit_scorer("odin", None, temperature=temperature, noise=noise)(batch)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    # The perturbation goes up the finite-difference slope of log S_yhat, per example.
    x_perturbed, _ = gradient_scorers.odin_perturb(batch.logits_fn, x, temperature, noise)
    step = 1e-3

    def log_msp(v, label):
        return np.log(softmax((v @ a + c) / temperature))[label]

    for i, j in itertools.product(range(3), range(D)):
        e = np.zeros(D)
        e[j] = step
        label = z[i].argmax()
        slope = (log_msp(x[i] + e, label) - log_msp(x[i] - e, label)) / (2 * step)
        if abs(slope) > 1e-6:
            assert np.sign(np.asarray(x_perturbed)[i, j] - x[i, j]) == np.sign(slope)


# -- every registered scorer ----------------------------------------------------------


@pytest.fixture(scope="module")
def toy():
    """ID: three blobs at 5 e_c (post-ReLU features, D = 8) with a class-mean head; OOD:
    activations only in the five dimensions the classes do not use."""
    rng = np.random.default_rng(1)
    dim, classes = 8, 3
    centres = 5.0 * np.eye(classes, dim)
    w = _f32(centres.T)
    b = _f32(-0.5 * (centres**2).sum(1))

    def id_set(n):
        y = rng.integers(0, classes, n)
        return _f32(np.maximum(centres[y] + 0.5 * rng.normal(size=(n, dim)), 0)), y

    train, labels = id_set(400)
    test, _ = id_set(200)
    ood = np.zeros((200, dim), np.float32)
    ood[:, classes:] = rng.uniform(0.0, 3.0, (200, dim - classes))
    ref = Reference(
        features=train, logits=train @ w + b, labels=labels.astype(np.int32), head=(w, b)
    )

    def batch(h):
        return Batch(logits=h @ w + b, features=h, inputs=h, logits_fn=lambda x: x @ w + b)

    return ref, batch(test), batch(ood)


@pytest.mark.parametrize("name", tk.ood.scorers.names())
def test_every_scorer_ranks_id_above_far_ood(toy, name):
    ref, id_batch, ood_batch = toy
    needs = tk.ood.scorers.entry(name).meta["needs"]
    fitted = fit_scorer(name, ref if {"train", "head"} & set(needs) else None)
    s_in, s_out = np.asarray(fitted(id_batch)), np.asarray(fitted(ood_batch))
    assert s_in.shape == (200,) and np.isfinite(s_in).all() and np.isfinite(s_out).all()
    labels = np.r_[np.ones(200), np.zeros(200)]
    assert roc_auc_score(labels, np.r_[s_in, s_out]) > 0.99, name


@pytest.mark.parametrize("name", tk.ood.scorers.names())
def test_every_scorer_is_jittable(toy, name):
    ref, id_batch, _ = toy
    fitted = fit_scorer(name, ref)
    jitted = jax.jit(
        lambda z, h: fitted(Batch(logits=z, features=h, inputs=h, logits_fn=id_batch.logits_fn))
    )
    np.testing.assert_allclose(
        np.asarray(jitted(id_batch.logits, id_batch.features)),
        np.asarray(fitted(id_batch)),
        rtol=1e-4,
        atol=1e-4,
    )


def test_registry_meta_is_declared():
    for name in tk.ood.scorers.names():
        entry = tk.ood.scorers.entry(name)
        assert set(entry.meta["needs"]) <= {"features", "head", "train", "inputs"}
        assert set(entry.meta["grid"]) <= set(entry.defaults)
    assert tk.ood.scorers.entry("knn").meta == {
        "needs": ("features", "train"),
        "grid": {"k": (50, 100, 200, 500, 1000)},
    }
    assert tk.ood.scorers.entry("msp").meta["grid"] == {}


# -- validation grid search -------------------------------------------------------------


def _energy_case(rng):
    """ID logits near (2, 2), OOD near (3, -3): T = 1 ranks OOD higher (energy ~ max logit),
    every T >= 10 ranks ID higher (energy ~ T log C + mean logit)."""
    id_z = _f32(np.array([2.0, 2.0]) + 0.05 * rng.normal(size=(50, 2)))
    oods = [_f32(np.array([3.0, -3.0]) + 0.05 * rng.normal(size=(40, 2))) for _ in range(2)]
    return Batch(logits=id_z), [Batch(logits=z) for z in oods]


@pytest.mark.parametrize("metric", ["auroc", "fpr_at_95_tpr"])
def test_select_scorer_picks_best_and_first_of_ties(metric):
    id_batch, ood_batches = _energy_case(np.random.default_rng(2))
    hparams, fitted, table = select_scorer("energy", None, id_batch, ood_batches, metric=metric)
    assert hparams == {"temperature": 10.0}  # 10, 100, 1000 tie; the first wins
    assert [row["temperature"] for row in table] == [1.0, 10.0, 100.0, 1000.0]
    want = [0.0, 1.0, 1.0, 1.0] if metric == "auroc" else [1.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose([row[metric] for row in table], want)
    z = id_batch.logits.astype(np.float64)
    np.testing.assert_allclose(np.asarray(fitted(id_batch)), 10 * logsumexp(z / 10, 1), rtol=1e-5)


def test_select_scorer_mean_over_ood_sets_and_skips_inapplicable(data):
    """KNN on 300 training features: k = 500, 1000 cannot apply and are reported, not fitted;
    each row's AUROC is the mean over the OOD sets (sklearn)."""
    rng = np.random.default_rng(3)
    ref = Reference(features=data["train"][:300])
    id_batch = Batch(logits=data["query_logits"], features=data["train"][:60])
    oods = [
        Batch(logits=data["query_logits"], features=_f32(rng.normal(0, s, (40, D)))) for s in (1, 4)
    ]
    hparams, _, table = select_scorer("knn", ref, id_batch, oods)
    assert [row["k"] for row in table] == [50, 100, 200, 500, 1000]
    assert [row["skipped"] is None for row in table] == [True, True, True, False, False]
    assert "k=500" in table[3]["skipped"] and "300" in table[3]["skipped"]
    for row in table[:3]:
        fitted = fit_scorer("knn", ref, k=row["k"])
        s_in = np.asarray(fitted(id_batch))
        aurocs = [
            roc_auc_score(np.r_[np.ones(60), np.zeros(40)], np.r_[s_in, np.asarray(fitted(b))])
            for b in oods
        ]
        np.testing.assert_allclose(row["auroc"], np.mean(aurocs), rtol=1e-5)
    best = max(table[:3], key=lambda r: r["auroc"])
    assert hparams == {"k": best["k"]}


def test_select_scorer_without_grid_and_with_a_feature_size_dependent_grid(toy):
    """msp has nothing to tune: one row. ViM on 8-d features: only dim=None (4) applies."""
    ref, id_batch, ood_batch = toy
    hparams, fitted, table = select_scorer("msp", None, id_batch, [ood_batch])
    labels = np.r_[np.ones(200), np.zeros(200)]
    want = roc_auc_score(labels, softmax(np.r_[id_batch.logits, ood_batch.logits], 1).max(1))
    assert hparams == {} and fitted.name == "msp"
    assert len(table) == 1 and table[0]["skipped"] is None
    np.testing.assert_allclose(table[0]["auroc"], want, rtol=1e-6)
    hparams, _, table = select_scorer("vim", ref, id_batch, [ood_batch])
    assert hparams == {"dim": None}
    assert [row["skipped"] is None for row in table] == [True] + [False] * 6
    assert "dim=8 must be below the feature size 8" in table[1]["skipped"]


# -- bad input --------------------------------------------------------------------------


def test_unknown_scorer_and_hparam_name_the_choices():
    with pytest.raises(UnknownNameError, match=r"'mahalanobis'.*Valid ood scorer names: .*mds"):
        fit_scorer("mahalanobis", None)
    with pytest.raises(InvalidHyperparameterError, match=r"'K'.*Valid hyperparameters: k"):
        fit_scorer("knn", None, K=5)
    with pytest.raises(InvalidHyperparameterError, match=r"k=0.*positive int"):
        fit_scorer("knn", None, k=0)
    with pytest.raises(InvalidHyperparameterError, match=r"temperature='2'"):
        fit_scorer("energy", None, temperature="2")


@pytest.mark.parametrize(
    "name, hparams, match",
    [
        ("energy", {"temperature": -1.0}, r"temperature=-1.0 must be in \(0.0, inf\)"),
        ("odin", {"noise": -0.1}, r"noise=-0.1 must be in \[0.0, inf\)"),
        ("react", {"percentile": 150.0}, r"percentile=150.0 must be in \(0.0, 100.0\]"),
        ("ash", {"percentile": 100.0}, r"percentile=100.0 must be in \[0.0, 100.0\)"),
        ("dice", {"p": -5.0}, r"p=-5.0 must be in \[0.0, 100.0\)"),
        ("gen", {"gamma": 0.0}, r"gamma=0.0 must be in \(0.0, inf\)"),
        ("vim", {"dim": 0}, r"dim=0 must be a positive int or None"),
    ],
)
def test_bad_hparam_values_raise_before_compute(data, compiles, name, hparams, match):
    with pytest.raises(ValueError, match=match):
        fit_scorer(name, data["reference"], **hparams)
    assert compiles == []


def test_hparams_the_data_cannot_take_name_the_limit(data, compiles):
    with pytest.raises(InapplicableError, match=r"k=301 exceeds the 300 training features"):
        fit_scorer("knn", data["reference"], k=301)
    with pytest.raises(InapplicableError, match=r"dim=8 must be below the feature size 8"):
        fit_scorer("vim", data["reference"], dim=8)
    assert compiles == []


def test_missing_needs_name_the_scorer_and_what_it_needs(data):
    with pytest.raises(ValueError, match=r"'knn' needs \('features', 'train'\).*got None"):
        fit_scorer("knn", None)
    with pytest.raises(ValueError, match=r"'mds'.*without \['labels'\]"):
        fit_scorer("mds", Reference(features=data["train"]))
    with pytest.raises(ValueError, match=r"'ash'.*without \['head'\]"):
        fit_scorer("ash", Reference(features=data["train"]))
    fitted = fit_scorer("knn", data["reference"])
    with pytest.raises(ValueError, match=r"'knn' needs .*the Batch has no features"):
        fitted(Batch(logits=data["query_logits"]))
    with pytest.raises(ValueError, match=r"knn: batch.features must have 8 columns, got"):
        fitted(Batch(logits=data["query_logits"], features=data["query"][:, :3]))
    with pytest.raises(ValueError, match=r"'odin' needs \('inputs',\).*logits_fn=None"):
        fit_scorer("odin", None)(Batch(logits=data["query_logits"], inputs=data["query"]))


def test_bad_reference_shapes_are_named(data):
    w, b = data["w"], data["b"]
    with pytest.raises(ValueError, match=r"vim: head W \(D, C\) must have 8 rows, got shape"):
        fit_scorer(
            "vim", Reference(features=data["train"], logits=data["train_logits"], head=(w[:4], b))
        )
    with pytest.raises(ValueError, match=r"mds: reference.labels must have shape \(300,\)"):
        fit_scorer("mds", Reference(features=data["train"], labels=data["labels"][:10]))
    bad = data["train"].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"knn: reference.features contain NaN"):
        fit_scorer("knn", Reference(features=bad))


def test_select_scorer_bad_metric_and_empty_ood(data):
    batch = Batch(logits=data["query_logits"])
    with pytest.raises(ValueError, match=r"'aurc'.*valid metrics: auroc, aupr_in, aupr_out"):
        select_scorer("energy", None, batch, [batch], metric="aurc")
    with pytest.raises(ValueError, match=r"at least one validation OOD batch"):
        select_scorer("energy", None, batch, [])
    with pytest.raises(TypeError, match=r"sequence of Batch, got Batch"):
        select_scorer("energy", None, batch, batch)


def test_register_checks_needs_and_grid():
    def fit_demo(reference, *, k: int = 3):
        return lambda batch: batch.logits[:, 0]

    with pytest.raises(ValueError, match=r"needs \['labels'\] not among"):
        tk.ood.scorers.register("demo", needs=("labels",), grid={}, description="x")
    with pytest.raises(ValueError, match=r"grid key must be a hyperparameter.*'K'"):
        tk.ood.scorers.register("demo", needs=(), grid={"K": (1,)}, description="x")(fit_demo)
    with pytest.raises(ValueError, match=r"at least one value.*'k': \(\)"):
        tk.ood.scorers.register("demo", needs=(), grid={"k": ()}, description="x")(fit_demo)
    assert "demo" not in tk.ood.scorers


def test_exports():
    assert tk.ood.fit_scorer is fit_scorer and tk.ood.select_scorer is select_scorer
    assert tk.ood.Reference is Reference and tk.ood.Batch is Batch
    assert isinstance(tk.ood.scorers, tk.registry.Registry)
