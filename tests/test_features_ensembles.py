"""Penultimate features, head parameters, MC dropout and deep ensembles
(toolkit.evaluation.inference, toolkit.ensembles), checked against numpy computations of
the same quantities from independent forward passes (``model.apply``)."""

import re
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from scipy.special import log_softmax, softmax

import toolkit as tk
from toolkit.evaluation import inference

X = np.asarray(jax.random.normal(jax.random.key(1), (13, 40)), np.float32)
ONE = jax.local_devices()[:1]


def fake_run(name, x=X, **hparams):
    """A run of model ``name`` at its initial weights (no training needed to check the
    prediction paths)."""
    model = tk.models.get(name, **hparams)
    variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x)
    return SimpleNamespace(
        model=model,
        variables=variables,
        params=variables["params"],
        config=SimpleNamespace(model=name),
    )


@pytest.mark.parametrize("name", tk.models.names())
def test_features_and_head_give_the_logits_for_every_model(name):
    """logits == features @ W + b (numpy), and the logits are the deterministic pass's."""
    run = fake_run(name)
    logits, features = tk.predict(run, X, batch_size=5, features=True, devices=ONE)
    w, b = inference.head_params(run)
    assert features.dtype == jnp.float32 and features.shape[0] == X.shape[0]
    assert w.shape == (features.shape[1], logits.shape[1]) and b.shape == (logits.shape[1],)
    expected = np.asarray(features, np.float64) @ np.asarray(w, np.float64) + np.asarray(b)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits, run.model.apply(run.variables, X), rtol=1e-5, atol=1e-5)


def test_features_of_the_mlp_are_its_last_hidden_layer():
    """Hand-computed: relu(relu(x W0 + b0) W1 + b1) from the parameters."""
    run = fake_run("mlp")
    p = jax.tree.map(np.asarray, run.params)
    h = np.maximum(X @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
    h = np.maximum(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
    _, features = tk.predict(run, X, features=True, devices=ONE)
    np.testing.assert_allclose(features, h, rtol=1e-5, atol=1e-5)


def test_features_are_data_parallel():
    """Four simulated devices give the one-device values (conftest provides 4)."""
    run = fake_run("cnn")
    one = tk.predict(run, X, batch_size=4, features=True, devices=ONE)
    four = tk.predict(run, X, batch_size=4, features=True)
    assert len(jax.local_devices()) == 4
    for a, b in zip(one, four, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class NoHead(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        return nn.Dense(3, name="out")(x)


class UserHead(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        h = nn.tanh(nn.Dense(7)(x))
        return nn.Dense(3, name="head")(h)


def test_a_user_linen_model_with_a_head_gives_features():
    run = SimpleNamespace(model=UserHead(), config=SimpleNamespace(model="user"))
    run.variables = run.model.init(jax.random.key(0), X)
    run.params = run.variables["params"]
    logits, features = tk.predict(run, X, features=True, devices=ONE)
    p = jax.tree.map(np.asarray, run.params)
    np.testing.assert_allclose(
        features, np.tanh(X @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]), atol=1e-5
    )
    w, b = inference.head_params(run)
    np.testing.assert_allclose(logits, np.asarray(features) @ w + b, atol=1e-5)


def test_a_model_without_a_head_is_a_clear_error(compiles):
    run = SimpleNamespace(model=NoHead(), config=SimpleNamespace(model="nohead"))
    run.variables = run.model.init(jax.random.key(0), X)
    run.params = run.variables["params"]
    compiles.clear()
    for call in (
        lambda: tk.predict(run, X, features=True, devices=ONE),
        lambda: inference.head_params(run),
    ):
        with pytest.raises(ValueError, match=r"'nohead'.*name=\"head\""):
            call()
    assert compiles == []


def mc_reference(run, x, key, samples):
    """log of the numpy mean of softmax over ``samples`` train-mode passes (no BatchNorm),
    pass n drawing from fold_in(fold_in(key, 0), n) (one batch: batch 0)."""
    passes = [
        np.asarray(
            run.model.apply(
                run.variables,
                x,
                train=True,
                rngs={"dropout": jax.random.fold_in(jax.random.fold_in(key, 0), n)},
            ),
            np.float64,
        )
        for n in range(samples)
    ]
    probs = np.mean([softmax(z, axis=1) for z in passes], axis=0)
    return np.log(probs)


@pytest.mark.parametrize("name", ["mlp", "cnn_nnx", "transformer"])
def test_mc_dropout_averages_the_stochastic_passes(name):
    """Equal to an independent average of train-mode passes keyed fold_in(key, n); the
    transformer also drops attention weights, the NNX CNN through the bridge."""
    run = fake_run(name, dropout=0.3)
    key = jax.random.key(7)
    got = tk.predict(run, X, mc_samples=6, key=key, devices=ONE)
    np.testing.assert_allclose(got, mc_reference(run, X, key, 6), rtol=1e-4, atol=1e-5)
    # Valid logits: their softmax is the mean probability, which sums to 1.
    np.testing.assert_allclose(softmax(np.asarray(got, np.float64), axis=1).sum(1), 1, atol=1e-6)
    # Reproducible; another key draws other masks; in batches of 4 (each batch its own
    # masks), four devices give the one-device values.
    np.testing.assert_array_equal(got, tk.predict(run, X, mc_samples=6, key=key, devices=ONE))
    other = tk.predict(run, X, mc_samples=6, key=jax.random.key(8), devices=ONE)
    assert not np.allclose(got, other)
    batched = tk.predict(run, X, batch_size=4, mc_samples=6, key=key, devices=ONE)
    assert not np.allclose(got, batched)
    four = tk.predict(run, X, batch_size=4, mc_samples=6, key=key)
    np.testing.assert_allclose(batched, four, rtol=1e-5, atol=1e-6)


def test_mc_dropout_default_key_and_features_are_the_mean_of_the_passes():
    run = fake_run("mlp", dropout=0.5)
    got, features = tk.predict(run, X, mc_samples=3, features=True, devices=ONE)
    np.testing.assert_allclose(got, mc_reference(run, X, jax.random.key(0), 3), atol=1e-5)
    p = jax.tree.map(np.asarray, run.params)
    means = []
    for n in range(3):
        mods = {"dropout": jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 0), n)}
        # The head's input in pass n: the logits minus the bias, solved through W (100 x 10
        # has no inverse): recompute the hidden layer with the pass's dropout masks instead.
        _, state = run.model.apply(
            run.variables, X, train=True, rngs=mods, capture_intermediates=True
        )
        h = state["intermediates"]["Dropout_1"]["__call__"][0]
        means.append(np.asarray(h))
    np.testing.assert_allclose(features, np.mean(means, axis=0), rtol=1e-5, atol=1e-5)
    logits = np.mean(means, axis=0) @ p["head"]["kernel"] + p["head"]["bias"]
    assert not np.allclose(logits, got)  # the mean feature is not what the logits average


def test_mc_dropout_keeps_batch_norm_in_inference_mode():
    """ResNet (BatchNorm) with dropout before the head: in an MC pass each feature is 0 or
    the inference-mode feature (running statistics) / (1 - rate), and the running
    statistics are not the batch's (train mode would give other features)."""
    rate = 0.25
    run = fake_run("resnet", depth=8, width=0.25, dropout=rate)
    # Running statistics far from this batch's, so the two modes differ.
    stats = jax.tree_util.tree_map_with_path(
        lambda path, a: a * 2.0 if path[-1].key == "var" else a - 0.3,
        run.variables["batch_stats"],
    )
    run.variables = {**run.variables, "batch_stats": stats}
    plain = fake_run("resnet", depth=8, width=0.25)  # the same weights, dropout 0
    variables = {**plain.variables, "batch_stats": stats}
    logits_eval, h_eval = tk.predict(
        SimpleNamespace(**{**vars(plain), "variables": variables}), X, features=True, devices=ONE
    )
    np.testing.assert_allclose(
        logits_eval, plain.model.apply(variables, X, train=False), rtol=1e-5, atol=1e-5
    )
    logits, h = tk.predict(run, X, mc_samples=1, key=jax.random.key(3), features=True)
    h, h_eval = np.asarray(h), np.asarray(h_eval)
    kept = np.isclose(h, h_eval / (1 - rate), rtol=1e-4, atol=1e-6)
    dropped = h == 0
    assert (kept | dropped).all()
    active = h_eval != 0  # after a ReLU and a mean: some are 0 either way
    assert active.mean() > 0.5 and 0.6 < (h[active] != 0).mean() < 0.9  # about 1 - rate
    p = jax.tree.map(np.asarray, run.params["head"])
    np.testing.assert_allclose(
        logits, log_softmax(h.astype(np.float64) @ p["kernel"] + p["bias"], axis=1), atol=1e-5
    )
    # Batch statistics would give other features: the running ones were used.
    _, state = plain.model.apply(
        variables, X, train=True, mutable=["batch_stats"], capture_intermediates=True
    )
    assert not np.allclose(h_eval, np.asarray(state["intermediates"]["Dropout_0"]["__call__"][0]))


def test_mc_samples_checks():
    run = fake_run("mlp", dropout=0.2)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=re.escape(f"got {bad!r}")):
            tk.predict(run, X, mc_samples=bad)
    with pytest.raises(ValueError, match=r"'mlp'.*dropout > 0"):
        tk.predict(fake_run("mlp"), X, mc_samples=3)
    with pytest.raises(ValueError, match="'alexnet'"):
        tk.predict(fake_run("alexnet", x=X[:, :28], dropout=0.0), X[:, :28], mc_samples=3)
    # None or 1 without a key: the deterministic pass.
    np.testing.assert_array_equal(
        tk.predict(run, X, mc_samples=1, devices=ONE), tk.predict(run, X, devices=ONE)
    )


def member(seed, **hparams):
    """A run of an MLP at its initial weights for ``seed``, with a config and info."""
    run = fake_run("mlp", **hparams)
    model = run.model
    variables = model.init({"params": jax.random.key(seed), "dropout": jax.random.key(1)}, X)
    return SimpleNamespace(
        model=model,
        variables=variables,
        params=variables["params"],
        config=SimpleNamespace(model="mlp", model_hparams=hparams),
        info={"input_shape": (40,)},
    )


def test_ensemble_logits_are_the_log_mean_probability_in_one_program(compiles):
    members = [member(seed) for seed in range(3)]
    ens = tk.ensemble(members)
    assert ens.size == 3 and ens.info["ensemble_size"] == 3 and ens.model is members[0].model
    assert ens.config is members[0].config and ens.info["input_shape"] == (40,)
    probs = [
        softmax(np.asarray(m.model.apply(m.variables, X), np.float64), axis=1) for m in members
    ]
    expected = np.log(np.mean(probs, axis=0))
    compiles.clear()
    got = tk.predict(ens, X, batch_size=5, devices=ONE)
    assert len(compiles) == 1  # one program for every member and batch
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tk.predict(ens, X, batch_size=4), expected, rtol=1e-5, atol=1e-5)


def test_ensemble_of_mc_dropout_members_averages_both():
    key = jax.random.key(5)
    members = [member(seed, dropout=0.4) for seed in range(2)]
    got = tk.predict(tk.ensemble(members), X, mc_samples=3, key=key, devices=ONE)
    mean = np.mean([np.exp(mc_reference(m, X, key, 3)) for m in members], axis=0)
    np.testing.assert_allclose(got, np.log(mean), rtol=1e-4, atol=1e-5)


def test_ensemble_errors():
    a = member(0)
    with pytest.raises(ValueError, match="at least 2 runs, got 1"):
        tk.ensemble([a])
    with pytest.raises(ValueError, match=r"model_hparams: run 0 has \{\}, run 1 has \{'dropout'"):
        tk.ensemble([a, member(1, dropout=0.1)])
    other = SimpleNamespace(**{**vars(member(1)), "info": {"input_shape": (41,)}})
    with pytest.raises(ValueError, match=r"input_shape: run 0 has \(40,\), run 1 has \(41,\)"):
        tk.ensemble([a, other])
    cnn = SimpleNamespace(model="cnn", model_hparams={})
    other = SimpleNamespace(**{**vars(member(1)), "config": cnn})
    with pytest.raises(ValueError, match="differ in model: run 0 has 'mlp', run 1 has 'cnn'"):
        tk.ensemble([a, other])
    ens = tk.ensemble([a, member(1)])
    with pytest.raises(ValueError, match="score each member"):
        tk.predict(ens, X, features=True)
    with pytest.raises(ValueError, match="each member"):
        inference.head_params(ens)


@pytest.fixture(scope="module")
def digits_runs():
    ds = tk.data.load("digits")
    runs = [
        tk.train(
            ds,
            model="mlp",
            model_hparams={"hidden": (32,)},
            optimizer="adam",
            learning_rate=1e-2,
            batch_size=64,
            steps=60,
            seed=seed,
            verbose=False,
        )
        for seed in range(3)
    ]
    return ds, runs


def test_evaluate_an_ensemble_of_digits_mlps(digits_runs):
    """tk.evaluate takes an ensemble; on digits three short-trained MLPs (test accuracy
    0.908, 0.939, 0.914: mean 0.920) ensemble to 0.939, NLL 0.309 -> 0.292 (mean of the
    members' NLLs): averaging probabilities helps, a property of the data, not of the code."""
    ds, runs = digits_runs
    rows = [tk.evaluate(run, ds.test).loc[0] for run in runs]
    table = tk.evaluate(tk.ensemble(runs), ds.test)
    assert table.loc[0, "ensemble_size"] == 3
    assert "ensemble_size" not in tk.evaluate(runs[0], ds.test).columns
    accuracy = table.loc[0, "accuracy"]
    assert accuracy >= np.mean([row["accuracy"] for row in rows])
    assert table.loc[0, "nll"] <= np.mean([row["nll"] for row in rows])
    # The ensemble's accuracy from an independent numpy average of the members' softmax.
    probs = np.mean([softmax(np.asarray(run.apply(ds.test.x)), axis=1) for run in runs], axis=0)
    assert accuracy == pytest.approx(np.mean(probs.argmax(1) == np.asarray(ds.test.y)))
    # Every member is checked before any compute; the error names the member.
    bad = np.zeros((5, 9, 9, 1), np.float32)
    with pytest.raises(ValueError, match=r"ensemble member 0: .*\(9, 9, 1\).*\(8, 8, 1\)"):
        tk.evaluate(tk.ensemble(runs), tk.data.Split(bad, np.zeros(5, np.int32)))


@pytest.mark.parametrize("name", tk.models.names())
def test_every_model_takes_a_dropout_rate(name):
    """dropout defaults to 0 (AlexNet: 0.5) and is checked; with a rate the train-mode
    passes differ by the dropout key and MC dropout works; a rate outside [0, 1) is refused
    naming it."""
    assert tk.models.hparams(name)["dropout"] == (0.5 if name == "alexnet" else 0.0)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=re.escape(f"dropout must be in [0, 1), got {bad!r}")):
            fake_run(name, dropout=bad)
    run = fake_run(name, dropout=0.5)
    passes = [
        run.model.apply(
            run.variables,
            X,
            train=True,
            rngs={"dropout": jax.random.key(seed)},
            mutable=["batch_stats"],
        )[0]
        for seed in (0, 1)
    ]
    assert not np.allclose(passes[0], passes[1])
    mc = tk.predict(run, X, mc_samples=2, devices=ONE)
    deterministic = log_softmax(np.asarray(run.model.apply(run.variables, X), np.float64), axis=1)
    assert np.isfinite(np.asarray(mc)).all() and not np.allclose(mc, deterministic, atol=1e-4)
