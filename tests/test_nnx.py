"""Flax NNX models through the model registry: ``cnn_nnx`` is the reference CNN, and a
user's NNX module (BatchNorm, dropout) trains, trains as a population, checkpoints, is
evaluated, attributed and swept like a Linen model."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

import toolkit as tk
from toolkit.registry import InvalidHyperparameterError
from toolkit.store import read_evals
from toolkit.sweep.defaults import base_config
from toolkit.sweep.reevaluation import reevaluate
from toolkit.sweep.runner import run_sweep
from toolkit.sweep.search import product


class NNXMLP(nnx.Module):
    """Flatten -> Linear -> BatchNorm -> ReLU -> Dropout -> Linear, written the NNX way."""

    def __init__(self, num_classes=10, width=32, dropout=0.2, *, input_shape, rngs):
        self.hidden = nnx.Linear(int(np.prod(input_shape)), width, rngs=rngs)
        self.norm = nnx.BatchNorm(width, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(width, num_classes, rngs=rngs)

    def __call__(self, x, *, train=False):
        h = self.hidden(x.reshape(x.shape[0], -1))
        h = nnx.relu(self.norm(h, use_running_average=not train))
        return self.out(self.drop(h, deterministic=not train))


@pytest.fixture
def nnx_mlp(monkeypatch):
    """``nnx_mlp`` registered for one test (the registry restored afterwards)."""
    registry = tk.models.models
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    tk.models.register("nnx_mlp", description="A test NNX MLP.")(NNXMLP)
    return "nnx_mlp"


@pytest.mark.parametrize("shape", [(3, 40), (3, 40, 2), (3, 8, 8, 1)], ids=str)
def test_cnn_nnx_computes_the_reference_cnn(shape):
    """With the Linen CNN's weights, the NNX CNN gives its logits; on (B, 40) it has the
    5,210 parameters of Greydanus 2020's ConvBase (channels 25)."""
    x = jax.random.normal(jax.random.key(3), shape)
    linen, nnx_cnn = tk.models.get("cnn"), tk.models.get("cnn_nnx")
    weights = linen.init(jax.random.key(0), x)["params"]
    moved = {f"conv{i}": weights[f"Conv_{i}"] for i in range(3)} | {"head": weights["head"]}
    own = nnx_cnn.init(jax.random.key(0), x)
    assert jax.tree.structure(own) == jax.tree.structure({"params": {"nnx": moved}})
    expected = linen.apply({"params": weights}, x)
    np.testing.assert_array_equal(nnx_cnn.apply({"params": {"nnx": moved}}, x), expected)
    if shape == (3, 40):
        assert sum(p.size for p in jax.tree.leaves(own)) == 5210


def test_an_nnx_module_registers_with_its_init_arguments(nnx_mlp):
    assert tk.models.hparams(nnx_mlp) == {"num_classes": 10, "width": 32, "dropout": 0.2}
    with pytest.raises(InvalidHyperparameterError, match=r"'widht'.*Did you mean 'width'"):
        tk.models.get(nnx_mlp, widht=8)

    class NoDefault(nnx.Module):
        def __init__(self, width, *, rngs):
            pass

    class NoRngs(nnx.Module):
        def __init__(self, width=3):
            pass

    with pytest.raises(TypeError, match=r"NoDefault\.width needs a default"):
        tk.models.register("no_default", description="x")(NoDefault)
    with pytest.raises(TypeError, match=r"NoRngs.*must take rngs"):
        tk.models.register("no_rngs", description="x")(NoRngs)


def test_dropout_draws_from_the_run_key_and_batch_norm_updates(nnx_mlp):
    model = tk.models.get(nnx_mlp, dropout=0.5)
    x = jax.random.normal(jax.random.key(1), (8, 40))
    variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, x)

    def train(seed):
        rngs = {"dropout": jax.random.key(seed)}
        return model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])

    (a, stats), (b, _), (c, _) = train(1), train(1), train(2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    mean = np.asarray(stats["batch_stats"]["nnx"]["norm"]["mean"])
    hidden = variables["params"]["nnx"]["hidden"]
    batch_mean = (np.asarray(x) @ np.asarray(hidden["kernel"]) + hidden["bias"]).mean(0)
    # nnx.BatchNorm's momentum 0.99: the running mean moves 1 % of the way from zero.
    np.testing.assert_allclose(mean, 0.01 * batch_mean, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(model.apply(variables, x), model.apply(variables, x))


def test_an_nnx_model_trains_alone_and_as_a_population(nnx_mlp):
    ds = tk.data.load("digits")
    options = dict(model=nnx_mlp, steps=300, batch_size=64, learning_rate=3e-3)
    run = tk.train(ds, **options, devices=1, verbose=False)
    table = tk.evaluate(run, ds.test)
    assert table.loc[table.eval_set == "clean", "accuracy"].item() > 0.85  # chance 0.1
    configs = [tk.TrainConfig(**options, seed=s) for s in (0, 1)]
    runs = tk.train_population(ds, configs)
    # Member 0 is the run alone up to XLA's fusion under vmap (last digits).
    np.testing.assert_allclose(
        runs[0].params["nnx"]["out"]["kernel"], run.params["nnx"]["out"]["kernel"], atol=1e-5
    )
    assert not np.allclose(
        runs[0].params["nnx"]["out"]["kernel"], runs[1].params["nnx"]["out"]["kernel"]
    )
    saliency = tk.attributions.attribute("vanilla_gradient", run, ds.test.x[:4])
    assert saliency.shape == (4, 8, 8, 1) and np.abs(np.asarray(saliency)).sum() > 0


def _sweep_config(model):
    config = base_config("nnx", dataset="digits")
    config.train.update(
        {"model": model, "steps": 100, "batch_size": 64, "log_every": 25, "learning_rate": 3e-3}
    )
    config.executor = "inline"
    config.checkpoint_every = 2
    config.checkpoint_interval_s = 0.0
    config.evals = {"shifts": {"names": ("gaussian_noise",), "severities": (2,)}}
    return config


def test_an_nnx_model_sweeps_and_is_reevaluated_from_its_checkpoint(nnx_mlp, tmp_path):
    config = _sweep_config(nnx_mlp)
    run_sweep(config, lambda c: product(seed=(0, 1)), results_dir=tmp_path, progress=False)
    experiment = tmp_path / "nnx"
    rows = read_evals(experiment)
    assert {r["status"] for r in rows} == {"finished"} and len({r["run_id"] for r in rows}) == 2
    before = {(r["run_id"], r["split"], r["eval_set"]): r["accuracy"] for r in rows}
    reevaluate(
        experiment, {"shifts": {"names": ("gaussian_noise",), "severities": (2,)}}, progress=False
    )
    again = {
        (r["run_id"], r["split"], r["eval_set"]): r["accuracy"] for r in read_evals(experiment)
    }
    assert again == before  # restored params (and batch statistics) give the same rows
    assert min(before.values()) > 0.5  # chance 0.1
    assert json.loads((experiment / "sweep.json").read_text())["train"]["model"] == nnx_mlp
