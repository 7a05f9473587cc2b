"""Bad values (issue 27, points 5 and 6): a hyperparameter of the wrong kind, and
``tk.evaluate`` on data or a run it cannot evaluate, each give one clear error naming the
bad value and what is valid, before any compute and before anything is written.
"""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_sweep import CountingTrain, sweep_into, tiny_config

import toolkit as tk
from toolkit import search_space
from toolkit.data import Split
from toolkit.models.layers import activations
from toolkit.optimizers.schedules import schedules
from toolkit.registry import InvalidHyperparameterError
from toolkit.run import Run
from toolkit.sweep import execute as execute_module
from toolkit.sweep.config import SweepConfigError
from toolkit.training import TrainConfig

# The registries whose entries' values are checked against their defaults' kinds.
TYPED = {
    "model": tk.models.models,
    "loss": tk.losses.losses,
    "optimizer": tk.optimizers.optimizers,
    "schedule": schedules,
    "activation": activations,
    "augmentation": tk.augment.augmentations,
}
ENTRIES = [(kind, name) for kind, registry in TYPED.items() for name in registry.names()]
# A value of another kind for each kind of default, written out (not derived from the check).
WRONG = {bool: "True", int: "2", float: "2", str: 2, tuple: "64"}


def _kind(default):
    return next(k for k in (bool, int, float, str, tuple) if isinstance(default, k))


# -- point 5: hyperparameter values -------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=lambda v: str(v))
def test_every_entry_takes_its_defaults_and_its_search_space(kind, name):
    registry = TYPED[kind]
    defaults = dict(registry.entry(name).defaults)
    assert registry.hparams(name, **defaults) == defaults
    rng = np.random.default_rng(0)
    for key, spec in registry.search_space(name).items():
        values = (
            spec[1:] if spec[0] == "choice" else [search_space.draw(key, spec, rng) for _ in "abc"]
        )
        for value in values:
            assert registry.hparams(name, **{key: value})[key] == value


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=lambda v: str(v))
def test_every_entry_refuses_a_value_of_another_kind(kind, name):
    """Every hyperparameter with a default: a value of another kind (a string for a number,
    a number for a string) is refused, naming the entry, the key, the value and the kind."""
    registry = TYPED[kind]
    for key, default in registry.entry(name).defaults.items():
        if default is None or callable(default):
            continue  # a None default says nothing about the kind
        bad = WRONG[_kind(default)]
        with pytest.raises(InvalidHyperparameterError) as error:
            registry.hparams(name, **{key: bad})
        message = str(error.value)
        assert f"{kind} {name!r}" in message and f"{key}={bad!r}" in message, message
        assert "must be" in message, message


# (registry, entry, hyperparameters, the value as the message shows it, what is valid)
BAD_VALUES = {
    "string gamma": ("loss", "softmax_focal", {"gamma": "2"}, "gamma='2'", "a number"),
    "NaN gamma": ("loss", "softmax_focal", {"gamma": float("nan")}, "gamma=nan", "not NaN"),
    "bool gamma": ("loss", "softmax_focal", {"gamma": True}, "gamma=True", "a number"),
    "None gamma": ("loss", "softmax_focal", {"gamma": None}, "gamma=None", "a number"),
    "hidden (0,)": ("model", "mlp", {"hidden": (0,)}, "hidden=(0,)", "positive int"),
    "hidden '64'": ("model", "mlp", {"hidden": "64"}, "hidden='64'", "tuple"),
    "hidden 64": ("model", "mlp", {"hidden": 64}, "hidden=64", "tuple"),
    "hidden (64, -1)": ("model", "mlp", {"hidden": [64, -1]}, "hidden=[64, -1]", "positive"),
    "hidden (8.5,)": ("model", "mlp", {"hidden": (8.5,)}, "hidden=(8.5,)", "positive int"),
    "rnn hidden 0": ("model", "lstm", {"hidden": 0}, "hidden=0", "a positive int"),
    "channels 25.0": ("model", "cnn", {"channels": 25.0}, "channels=25.0", "a positive int"),
    "dropout '0.1'": ("model", "mlp", {"dropout": "0.1"}, "dropout='0.1'", "a number"),
    "activation 1": ("model", "mlp", {"activation": 1}, "activation=1", "a string"),
    "centered 'no'": ("optimizer", "rmsprop", {"centered": "no"}, "centered='no'", "True or"),
    "b1 '0.9'": ("optimizer", "adam", {"b1": "0.9"}, "b1='0.9'", "a number"),
    "warmup -1": ("optimizer", "adam", {"warmup_steps": -1}, "warmup_steps=-1", "int >= 0"),
    "num_iters 2.0": ("loss", "bi_tempered", {"num_iters": 2.0}, "num_iters=2.0", "positive int"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_are_refused_naming_entry_key_value_and_kind(case):
    kind, name, hparams, bad, valid = BAD_VALUES[case]
    with pytest.raises(InvalidHyperparameterError) as error:
        TYPED[kind].hparams(name, **hparams)
    message = str(error.value)
    assert f"{kind} {name!r}" in message and bad in message and valid in message, message


def test_lists_numpy_scalars_none_where_annotated_and_traced_values_are_accepted():
    assert tk.models.models.hparams("mlp", hidden=[8, 8])["hidden"] == [8, 8]  # from JSON
    assert tk.models.models.hparams("mlp", hidden=(np.int64(8),))["hidden"] == (8,)
    assert tk.losses.losses.hparams("softmax_focal", gamma=np.float32(1.5))["gamma"] == 1.5
    assert tk.losses.losses.hparams("softmax_focal", gamma=1)["gamma"] == 1  # int for float
    assert tk.losses.losses.hparams("sigmoid_focal", alpha=None)["alpha"] is None  # float | None
    params = {"w": jnp.ones(3)}

    @jax.jit
    def step(learning_rate):  # a population's per-member learning rate is traced
        tx = tk.optimizers.get("sgd", learning_rate=learning_rate)
        updates, _ = tx.update(params, tx.init(params), params)
        return updates["w"]

    np.testing.assert_allclose(step(jnp.float32(0.5)), -0.5 * np.ones(3))


RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 8)).astype(np.float32)
Y = np.arange(60, dtype=np.int32) % 3
SPLIT = Split(X, Y)
BASE = {"steps": 5, "batch_size": 20, "num_classes": 3, "verbose": False}

ENTRY_POINTS = {
    "gamma '2'": ({"loss": "softmax_focal", "loss_hparams": {"gamma": "2"}}, "gamma='2'"),
    "hidden (0,)": ({"model": "mlp", "model_hparams": {"hidden": (0,)}}, "hidden=(0,)"),
    "hidden '64'": ({"model": "mlp", "model_hparams": {"hidden": "64"}}, "hidden='64'"),
}


@pytest.mark.parametrize("case", list(ENTRY_POINTS))
def test_train_and_population_refuse_bad_values_before_compute(case, compiles):
    options, bad = ENTRY_POINTS[case]
    with pytest.raises(InvalidHyperparameterError, match=re.escape(bad)):
        tk.train(SPLIT, **BASE, **options)
    members = [TrainConfig(steps=5, batch_size=20), TrainConfig(steps=5, batch_size=20, **options)]
    with pytest.raises(ValueError, match="population member 1: .*" + re.escape(bad)):
        tk.train_population(SPLIT, members, num_classes=3)
    assert compiles == []


SWEEP_CASES = {
    "gamma '2'": ({"loss_hparams": {"softmax_focal": {"gamma": "2"}}}, "gamma='2'"),
    "hidden (0,)": ({"model_hparams": {"mlp": {"hidden": (0,)}}}, "hidden=(0,)"),
    "hidden '64'": ({"model_hparams": {"mlp": {"hidden": "64"}}}, "hidden='64'"),
}


@pytest.mark.parametrize("case", list(SWEEP_CASES))
def test_sweep_refuses_bad_values_before_writing(case, tmp_path, monkeypatch):
    changes, bad = SWEEP_CASES[case]
    monkeypatch.setattr(execute_module, "train_population", CountingTrain(crash_after_step=0))
    with pytest.raises(SweepConfigError) as error:
        sweep_into(tmp_path / "results", tiny_config(**changes))
    assert bad in str(error.value) and "must be" in str(error.value), str(error.value)
    assert not (tmp_path / "results").exists()


# -- point 6: tk.evaluate on data or a run it cannot evaluate -------------------------------


@pytest.fixture(scope="module")
def run():
    return tk.train(SPLIT, model="mlp", model_hparams={"hidden": (8,)}, **BASE)


@pytest.fixture(scope="module")
def diverged():
    # A learning rate of 1e12 makes the first update overflow: frozen at step 0.
    return tk.train(SPLIT, model="mlp", optimizer="sgd", learning_rate=1e12, **BASE)


def test_wrong_shape_names_both_shapes_before_compute(run, compiles):
    with pytest.raises(ValueError) as error:
        tk.evaluate(run, Split(X[:, :6], Y))
    assert "(6,)" in str(error.value) and "(8,)" in str(error.value), str(error.value)
    assert "ScopeParam" not in str(error.value)
    assert compiles == []


def test_wrong_shape_of_a_run_without_its_training_shape_names_the_shape(run, compiles):
    """A Run rebuilt from saved weights has no recorded input shape: the model is traced
    abstractly on the data's shape instead (no compile)."""
    rebuilt = dataclasses.replace(run, info={})
    with pytest.raises(ValueError) as error:
        tk.evaluate(rebuilt, Split(X[:, :6], Y))
    assert "(6,)" in str(error.value) and "'mlp'" in str(error.value), str(error.value)
    assert compiles == []


def test_a_given_set_of_another_shape_is_refused(run, compiles):
    with pytest.raises(ValueError, match=r"'other'.*\(6,\).*\(8,\)"):
        tk.evaluate(run, SPLIT, sets={"other": Split(X[:, :6], Y)})
    assert compiles == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_test_data_is_refused_naming_count_and_first_example(run, bad, compiles):
    x = X.copy()
    x[[7, 30], 2] = bad
    with pytest.raises(ValueError, match=r"in 2 of 60 examples, the first at x\[7, "):
        tk.evaluate(run, Split(x, Y))
    shifted = r"evaluation set 'shifted' inputs .* in 2 of 60 examples, the first at x\[7, "
    with pytest.raises(ValueError, match=shifted):
        tk.evaluate(run, SPLIT, sets={"shifted": Split(x, Y)})
    with pytest.raises(ValueError, match=r"calibration split inputs .* in 2 of 60 examples"):
        tk.evaluate(run, SPLIT, calibration=Split(x, Y))
    assert compiles == []


def test_a_diverged_run_is_named_as_diverged_with_its_step(diverged, compiles):
    assert diverged.info["diverged_step"] is not None
    with pytest.raises(ValueError) as error:
        tk.evaluate(diverged, SPLIT)
    message = str(error.value)
    assert f"diverged at step {diverged.info['diverged_step']}" in message, message
    assert "1000000000000.0" in message and "logits" not in message, message
    assert compiles == []


def test_non_finite_parameters_without_run_info_are_named_as_divergence(run, compiles):
    nan_params = jax.tree_util.tree_map(lambda p: np.full(p.shape, np.nan, p.dtype), run.params)
    broken = Run(run.config, run.model, run.state.replace(params=nan_params), run.curve, {})
    with pytest.raises(ValueError, match=r"parameters hold NaN or inf \(\d+ of \d+ arrays\)"):
        tk.evaluate(broken, SPLIT)
    assert compiles == []


def test_a_healthy_run_still_evaluates_to_the_metrics_of_its_logits(run):
    """The checks let a good run through: accuracy equals numpy's on the run's logits."""
    table = tk.evaluate(run, SPLIT)
    logits = np.asarray(run.apply(jnp.asarray(X)))
    assert table.loc[0, "accuracy"] == pytest.approx(np.mean(logits.argmax(1) == Y))


@pytest.mark.parametrize("bad", [3.0, True, "3", None])
def test_a_severity_that_is_no_int_or_list_is_named(run, bad, compiles):
    with pytest.raises(ValueError, match=r"severit(y|ies) must be an int"):
        tk.evaluate(run, SPLIT, shifts=["iid_noise"], severities=bad)
    assert compiles == []


def test_numpy_int_severities_are_ints(run):
    table = tk.evaluate(run, SPLIT, shifts=["iid_noise"], severities=np.int64(2))
    assert table["severity"].tolist() == [0, 2]
