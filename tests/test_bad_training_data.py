"""Bad training data (issue #27, points 1-4): each case gets one clear error naming the bad
value (and how many examples have it, and the first) and what is valid, before any compute
(no XLA compile) in ``tk.train``, ``tk.train_population`` and a sweep, and before the sweep
writes anything. Before these checks a NaN, an inf column, a label >= num_classes or a too
small ``num_classes`` trained and were reported as divergence; a label of -1, one class,
float labels, uint8 images and (B, H, W) images trained silently.

The expected counts and indices are those the test plants in clean data, worked out by hand.
"""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_bad_input import refuse, snapshot

import toolkit as tk
from experiments import sweep as sweep_cli
from toolkit.data import Dataset, Split
from toolkit.sweep import execute as execute_module
from toolkit.training import TrainConfig

NUM_CLASSES = 10
N = 60  # 6 examples of each class, in the order 0, 1, ..., 9, 0, 1, ...


def clean(shape=(40,)):
    x = np.random.default_rng(0).normal(size=(N, *shape)).astype(np.float32)
    return x, np.arange(N, dtype=np.int32) % NUM_CLASSES


def with_nan():
    x, y = clean()
    x[7, 5] = np.nan
    return Split(x, y), NUM_CLASSES


def with_inf_column():
    x, y = clean()
    x[:, 3] = np.inf
    return Split(x, y), NUM_CLASSES


def with_label(value):
    def make():
        x, y = clean()
        y[4] = value
        return Split(x, y), NUM_CLASSES

    return make


def too_few_classes():
    return Split(*clean()), 5


def one_class():
    x, _ = clean()
    return Split(x, np.full(N, 3)), NUM_CLASSES


def images_without_channel():
    x, y = clean((8, 8))
    return Split(x, y), NUM_CLASSES


# name -> (the data and num_classes, the model, what the message must say)
CASES = {
    "NaN in x": (with_nan, "mlp", ["1 non-finite", "(NaN)", "1 of 60 examples", "x[7, 5]"]),
    "inf column": (with_inf_column, "mlp", ["60 non-finite", "(inf)", "60 of 60", "x[0, 3]"]),
    "label >= num_classes": (
        with_label(15),
        "mlp",
        ["got 15 in 1 of 60", "index 4", "[0, 10)", "num_classes=16"],
    ),
    "label -1": (with_label(-1), "mlp", ["got -1 in 1 of 60", "index 4", "[0, 10)"]),
    # labels 5..9: every 2nd block of 5, i.e. 30 examples, the first at index 5
    "num_classes < labels": (
        too_few_classes,
        "mlp",
        ["got 5, 6, 7, 8, 9 in 30 of 60", "index 5", "num_classes=5 does not", "num_classes=10"],
    ),
    "one class": (one_class, "mlp", ["all class 3", "60 examples", "at least 2 classes"]),
    "(B, H, W) images": (images_without_channel, "cnn", ["(8, 8)", "x[..., None]"]),
}
FAST = {"steps": 4, "batch_size": 10, "log_every": 2}


def assert_names(error, fragments):
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("case", list(CASES))
def test_train_refuses_bad_data_before_compute(case, compiles):
    make, model, fragments = CASES[case]
    split, num_classes = make()
    with pytest.raises(ValueError) as error:
        tk.train(split, num_classes=num_classes, model=model, verbose=False, **FAST)
    assert_names(error, fragments)
    configs = [TrainConfig(model=model, seed=seed, **FAST) for seed in range(2)]
    with pytest.raises(ValueError) as error:
        tk.train_population(split, configs, num_classes=num_classes)
    assert_names(error, fragments)
    assert compiles == []


@pytest.mark.parametrize("case", ["NaN in x", "label -1", "label >= num_classes"])
def test_validation_split_is_checked_before_compute(case, compiles):
    make, _, fragments = CASES[case]
    bad, num_classes = make()
    train = Split(*clean())
    with pytest.raises(ValueError) as error:
        tk.train(train, num_classes=num_classes, validation=bad, verbose=False, **FAST)
    assert_names(error, ["validation", *fragments])
    assert compiles == []


def test_with_validation_names_a_negative_label():
    split, _ = with_label(-1)()
    dataset = Dataset("bad", split, split, NUM_CLASSES, tuple("0123456789"))
    with pytest.raises(ValueError, match=r"got -1 in 1 of 60") as error:
        tk.data.with_validation(dataset, 0.2)
    assert "bincount" not in str(error.value)


def test_split_refuses_fractional_float_labels_and_reads_whole_ones():
    x, y = clean()
    labels = y.astype(np.float64)
    labels[[2, 9]] = [2.5, 7.25]
    with pytest.raises(ValueError) as error:
        Split(x, labels)
    assert_names(error, ["2 non-integral", "y[2] = 2.5", "integer labels"])
    with pytest.raises(ValueError, match=r"y\[0\] = nan"):
        Split(x, np.full(N, np.nan))
    whole = Split(x, y.astype(np.float32))
    np.testing.assert_array_equal(whole.y, np.arange(N) % NUM_CLASSES)
    assert whole.y.dtype == np.int32


@pytest.mark.parametrize("dtype, divisor", [(np.uint8, "255"), (np.uint16, "65535")])
def test_split_refuses_unscaled_integer_images(dtype, divisor):
    x = np.full((N, 8, 8, 1), 200, dtype)
    with pytest.raises(TypeError) as error:
        Split(x, np.arange(N) % NUM_CLASSES)
    assert_names(error, [np.dtype(dtype).name, f"x.astype(np.float32) / {divisor}"])


def test_registered_datasets_load_as_floats_in_unit_range():
    """The toolkit's image datasets are stored as uint8 and still load, scaled to [0, 1]."""
    dataset = tk.data.load("digits")
    assert dataset.train.x.dtype == np.float32
    assert 0.0 <= dataset.train.x.min() and dataset.train.x.max() == 1.0


def test_models_that_read_images_are_the_ones_declared():
    """A model declared to read images must treat (B, H, W) differently from
    (B, H, W, 1); every other model must compute the same logits from both, so the channel
    check does not refuse data that model reads correctly."""
    x = jnp.asarray(clean((8, 8))[0][:4])
    key = {"params": jax.random.key(0)}
    small = {"cnn": {"channels": 4}, "alexnet": {"width": 2, "hidden": 8}}
    small |= {"resnet": {"depth": 8, "width": 0.25}, "transformer": {"d_model": 8, "heads": 2}}
    shapes = lambda model, x: jax.tree.map(jnp.shape, jax.eval_shape(model.init, key, x))
    for name in tk.models.names():
        model = tk.models.get(name, num_classes=3, **small.get(name, {}))
        # Different parameter shapes: read differently (no need to compute).
        same = shapes(model, x) == shapes(model, x[..., None])
        if same:
            variables = model.init(key, x[..., None])
            same = np.array_equal(model.apply(variables, x), model.apply(variables, x[..., None]))
        assert same != tk.models.reads_images(name), name


def test_images_without_channel_are_fine_for_models_that_flatten(compiles):
    split, _ = images_without_channel()
    tk.data.check_split(split, NUM_CLASSES, images=tk.models.reads_images("mlp"))
    assert compiles == []


# --- the sweep: refused before anything is written, without np.bincount's words ----------

CONFIG = """
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product


def get_config(variant=""):
    config = base_config("tiny", dataset="bad_training_data")
    config.dataset_kwargs = {"case": variant}
    config.train.update({"model": "linear", "steps": 4, "batch_size": 10, "log_every": 2})
    config.executor = "inline"
    config.evals = {"shifts": {"names": ("iid_noise",), "severities": (2,)}}
    return config


def sweep(config):
    return product(seed=range(2))
"""
SWEEP_CASES = ["NaN in x", "inf column", "label >= num_classes", "label -1", "one class"]
SWEEP_CASES += ["num_classes < labels"]


@pytest.fixture
def bad_dataset():
    """A registered dataset ``bad_training_data`` whose ``case`` argument (an index into
    CASES) picks its defect; removed from the registry afterwards."""

    @tk.data.register("bad_training_data", description="A test dataset with a defect.")
    def make(*, case: str = "0"):
        split, num_classes = CASES[list(CASES)[int(case)]][0]()
        test = Split(*clean())
        names = tuple(str(c) for c in range(num_classes))
        return Dataset("bad_training_data", split, test, num_classes, names)

    yield
    tk.data.datasets._entries.pop("bad_training_data")


@pytest.mark.parametrize("case", SWEEP_CASES)
def test_sweep_refuses_bad_data_before_writing(
    case, bad_dataset, tmp_path, capsys, monkeypatch, compiles
):
    _, _, fragments = CASES[case]
    config = tmp_path / "config.py"
    config.write_text(CONFIG)
    results = tmp_path / "results"
    (results / "tiny").mkdir(parents=True)
    (results / "tiny" / "sweep.json").write_text(json.dumps({"experiment": "tiny"}))
    before = snapshot(results)
    monkeypatch.setattr(execute_module, "train_population", refuse)
    variant = list(CASES).index(case)
    argv = ["--config", f"{config}:{variant}", "--results_dir", str(results), "--no_progress"]
    assert sweep_cli.main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert "bincount" not in errors[0]
    assert snapshot(results) == before
    assert compiles == []


def test_signed_integer_and_boolean_inputs_and_labels_beyond_int32_are_refused():
    x = np.ones((4, 8, 8, 1))
    y = np.arange(4)
    for dtype in (np.int64, np.int8, bool):
        with pytest.raises(TypeError, match=f"x has dtype {np.dtype(dtype)}.*astype"):
            Split(x.astype(dtype), y)
    with pytest.raises(ValueError, match=r"y\[2\] = 4294967299 does not fit in int32"):
        Split(x, np.array([0, 1, 2**32 + 3, 1], np.int64))  # would wrap to class 3


def test_non_square_two_dimensional_examples_say_how_an_image_model_reads_them(compiles):
    """(H, W) examples that are not square may be images or multi-channel sequences: an
    image-reading model trains on them as sequences, and says so."""
    x, y = clean((8, 6))
    with pytest.warns(UserWarning, match=r"\(8, 6\).*sequences of 8 steps with 6 channels"):
        tk.data.check_split(Split(x, y), NUM_CLASSES, images=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a flattening model reads them the same either way
        tk.data.check_split(Split(x, y), NUM_CLASSES, images=False)
    assert compiles == []
