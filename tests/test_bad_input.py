"""Bad input (issue 7): each gives one clear error naming the bad value and the valid
choices, raised before any compute (no XLA compile, no training) and with nothing written
to the results directory. Through the command line (``experiments.sweep.main``) and through
the Python API (``tk.train``, ``tk.evaluate``, ``tk.train_population``, ``tk.shifts``,
``tk.data``).

The sweep-level matrix through ``run_sweep`` is in ``tests/test_sweep.py``; this file
extends it to the command line, config files, overrides and the library entry points.
"""

import hashlib
import json

import jax
import jax.monitoring
import numpy as np
import pytest

import toolkit as tk
from experiments import sweep as sweep_cli
from toolkit.data import Split
from toolkit.sweep import execute as execute_module
from toolkit.training import TrainConfig

CONFIG = """
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product

VARIANTS = ("", "eval_type", "model_hparam", "loss_hparam", "dataset_kwarg", "no_trials")


def get_config(variant=""):
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(map(repr, VARIANTS))}")
    config = base_config("tiny", dataset="mnist1d")
    # 240 training examples, classes (25, 22, 23, 23, 20, 25, 28, 23, 22, 29); the 10 %
    # validation split holds (3, 2, 2, 2, 2, 3, 3, 2, 2, 3) = 24 of them: 216 left to train.
    config.dataset_kwargs = {"num_samples": 300}
    config.train.update({"model": "linear", "steps": 40, "batch_size": 20, "log_every": 10})
    config.executor = "inline"
    config.seeds = 0 if variant == "no_trials" else 2
    config.evals = {"shifts": {"names": ("iid_noise",), "severities": (2,)},
                    "ood": {"names": ("gaussian_noise",)}}
    if variant == "eval_type":
        config.evals = {"shifts": {"type": "shiftz"}}
    if variant == "model_hparam":
        config.train.model = "mlp"
        config.model_hparams = {"mlp": {"hiden": (8,)}}
    if variant == "loss_hparam":
        config.train.loss = "softmax_focal"
        config.loss_hparams = {"softmax_focal": {"gama": 2.0}}
    if variant == "dataset_kwarg":
        config.dataset_kwargs = {"num_sample": 300}
    return config


def sweep(config):
    return product(seed=range(config.seeds))
"""
# Variants whose sweep() itself is wrong are separate files (sweep() cannot see the variant).
SWEEP_TYPO = CONFIG.replace("product(seed=", "product(loss=config.losez, seed=")
SPEC_FIELD = CONFIG.replace("product(seed=", "product(lerning_rate=(0.1,), seed=")
BROKEN = "def get_config(variant=''):\n    return {\n"
NO_SWEEP = CONFIG.split("def sweep")[0]

# name -> (config file, variant, overrides, the bad value, a valid choice), as the message
# must show them.
CLI = {
    "unknown model": ("ok", "", ["--config.train.model=mpl"], "'mpl'", "mlp"),
    "unknown loss": ("ok", "", ["--config.train.loss=focal"], "'focal'", "softmax_focal"),
    "unknown optimizer": ("ok", "", ["--config.train.optimizer=adamm"], "'adamm'", "adamw"),
    "unknown schedule": ("ok", "", ["--config.train.schedule=cosinus"], "'cosinus'", "cosine"),
    "unknown dataset": ("ok", "", ["--config.dataset=mnist1e"], "'mnist1e'", "mnist1d"),
    "unknown shift": (
        "ok",
        "",
        ["--config.evals.shifts.names=iid_noize"],
        "'iid_noize'",
        "iid_noise",
    ),
    "unknown OOD set": (
        "ok",
        "",
        ["--config.evals.ood.names=gaussian_noize"],
        "'gaussian_noize'",
        "gaussian_noise",
    ),
    "severity 6": ("ok", "", ["--config.evals.shifts.severities=(2,6)"], "got 6", "0..5"),
    "severity -1": ("ok", "", ["--config.evals.shifts.severities=-1"], "got -1", "0..5"),
    "severity not a number": (
        "ok",
        "",
        ["--config.evals.shifts.severities=high"],
        "'high'",
        "0..5",
    ),
    "label noise 1": ("ok", "", ["--config.data_axes.label_noise=1.0"], "1.0", "[0, 1)"),
    "label noise < 0": ("ok", "", ["--config.data_axes.label_noise=-0.1"], "-0.1", "[0, 1)"),
    "unknown label noise kind": (
        "ok",
        "",
        ["--config.data_axes.label_noise_kind=uniform"],
        "'uniform'",
        "symmetric",
    ),
    "negative learning rate": (
        "ok",
        "",
        ["--config.train.learning_rate=-0.1"],
        "-0.1",
        "positive",
    ),
    "zero learning rate": ("ok", "", ["--config.train.learning_rate=0"], "0.0", "positive"),
    "batch larger than the data": (
        "ok",
        "",
        ["--config.train.batch_size=217"],
        "217",
        "216 examples",
    ),
    "train_size larger than the data": (
        "ok",
        "",
        ["--config.data_axes.train_size=1000"],
        "1000",
        "1..216",
    ),
    "imbalance < 1": ("ok", "", ["--config.data_axes.imbalance=0.5"], "0.5", ">= 1"),
    "steps 0": ("ok", "", ["--config.train.steps=0"], "got 0", "positive int"),
    "warmup longer than training": (
        "ok",
        "",
        ["--config.train.warmup_steps=100"],
        "(100)",
        "<= total_steps (40)",
    ),
    "negative weight decay": (
        "ok",
        "",
        ["--config.train.weight_decay=-1.0"],
        "-1.0",
        ">= 0",
    ),
    "image shift on 1-D data": (
        "ok",
        "",
        ["--config.evals.shifts.names=rotate"],
        "'rotate'",
        "iid_noise",
    ),
    "image OOD set on 1-D data": (
        "ok",
        "",
        ["--config.evals.ood.names=sklearn_patches"],
        "'sklearn_patches'",
        "gaussian_noise",
    ),
    "unknown override key": ("ok", "", ["--config.train.stepz=3"], "'train.stepz'", "'steps'"),
    "wrong override type": ("ok", "", ["--config.train.steps=abc"], "'abc'", "int"),
    "bare argument": ("ok", "", ["seeds=3"], "'seeds=3'", "--config.seeds=5"),
    "unknown executor": ("ok", "", ["--config.executor=threads"], "'threads'", "process"),
    "checkpoint_every 0": ("ok", "", ["--config.checkpoint_every=0"], "got 0", ">= 1"),
    "negative checkpoint_interval_s": (
        "ok",
        "",
        ["--config.checkpoint_interval_s=-1"],
        "got -1",
        ">= 0",
    ),
    "negative workers": ("ok", "", ["--config.workers=-1"], "got -1", ">= 0"),
    "population_size 0": ("ok", "", ["--config.population_size=0"], "got 0", ">= 1"),
    "negative population_size": ("ok", "", ["--config.population_size=-2"], "got -2", ">= 1"),
    "unknown group_by field": (
        "ok",
        "",
        ["--config.group_by=('modle',)"],
        "'modle'",
        "model",
    ),
    "unknown eval type": ("ok", ":eval_type", [], "'shiftz'", "shifts"),
    "unknown model hyperparameter": ("ok", ":model_hparam", [], "'hiden'", "hidden"),
    "unknown loss hyperparameter": ("ok", ":loss_hparam", [], "'gama'", "gamma"),
    "unknown dataset argument": ("ok", ":dataset_kwarg", [], "'num_sample'", "num_samples"),
    "unknown config variant": ("ok", ":huge", [], "'huge'", "'eval_type'"),
    "a sweep without trials": ("ok", ":no_trials", [], "no trials", "no trials"),
    "unknown field in a trial": ("spec_field", "", [], "'lerning_rate'", "learning_rate"),
    "sweep(config) fails": ("sweep_typo", "", [], "losez", "sweep(config) failed"),
    "config file syntax error": ("broken", "", [], "broken.py", "syntax error at line"),
    "config file without sweep()": ("no_sweep", "", [], "sweep is missing", "sweep(config)"),
    "missing config file": ("missing", "", [], "missing.py", "does not exist"),
}
FILES = {
    "ok": CONFIG,
    "sweep_typo": SWEEP_TYPO,
    "spec_field": SPEC_FIELD,
    "broken": BROKEN,
    "no_sweep": NO_SWEEP,
}


def refuse(*args, **kwargs):
    raise AssertionError("training started")


def snapshot(root):
    """Every path under ``root`` with the hash of its content and its mtime."""
    return {
        str(p.relative_to(root)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None,
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def results(tmp_path):
    """A results directory holding an earlier experiment of the same name."""
    experiment = tmp_path / "results" / "tiny"
    (experiment / "runs" / "0123456789abcdef").mkdir(parents=True)
    (experiment / "sweep.json").write_text(json.dumps({"experiment": "tiny"}))
    (experiment / "evals.jsonl").write_text(json.dumps({"run_id": "0123456789abcdef"}) + "\n")
    (experiment / "runs" / "0123456789abcdef" / "done").write_text('{"finished": "then"}')
    return tmp_path / "results"


@pytest.mark.parametrize("case", list(CLI))
def test_command_line_bad_input(case, tmp_path, results, capsys, monkeypatch, compiles):
    source, variant, overrides, bad, valid = CLI[case]
    path = tmp_path / f"{source}.py"
    if source != "missing":
        path.write_text(FILES[source])
    monkeypatch.setattr(execute_module, "train_population", refuse)
    before = snapshot(results)
    argv = ["--config", f"{path}{variant}", "--results_dir", str(results), "--no_progress"]
    assert sweep_cli.main([*argv, *overrides]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert bad in errors[0] and valid in errors[0], errors[0]
    assert snapshot(results) == before  # nothing written, nothing touched
    assert compiles == []


def test_the_matrix_config_is_valid_without_its_bad_change(tmp_path):
    """The config file of the matrix plans cleanly as written, so each case fails for its
    own change and not for something else in the file."""
    from toolkit.sweep import load_config, plan

    (tmp_path / "ok.py").write_text(CONFIG)
    trials, evals = plan(*load_config(str(tmp_path / "ok.py")))
    assert len(trials) == 2 and set(evals) == {"shifts", "ood"}


# -- the Python API ---------------------------------------------------------------------------

RNG = np.random.default_rng(0)
SPLIT = Split(RNG.normal(size=(60, 40)).astype(np.float32), RNG.integers(0, 10, 60, np.int32))
BASE = {"model": "linear", "steps": 5, "batch_size": 20}

# name -> (tk.train options over BASE, the bad value, a valid choice)
TRAIN = {
    "unknown model": ({"model": "mpl"}, "'mpl'", "mlp"),
    "unknown loss": ({"loss": "focal"}, "'focal'", "softmax_focal"),
    "unknown optimizer": ({"optimizer": "adamm"}, "'adamm'", "adamw"),
    "unknown schedule": ({"schedule": "cosinus"}, "'cosinus'", "cosine"),
    "negative learning rate": ({"learning_rate": -0.1}, "-0.1", "positive"),
    "batch larger than the data": ({"batch_size": 61}, "61", "60 examples"),
    "steps 0": ({"steps": 0}, "got 0", "positive int"),
    "negative seed": ({"seed": -1}, "-1", "[0, 2**32)"),
    # jax.random.key(2**32) is the key of seed 0: refused, not a silent repeat of seed 0
    "seed of 2**32": ({"seed": 2**32}, "4294967296", "[0, 2**32)"),
    "unknown option": ({"stepz": 3}, "'stepz'", "steps"),
    "unknown model hyperparameter": (
        {"model": "mlp", "model_hparams": {"hiden": (8,)}},
        "'hiden'",
        "hidden",
    ),
    "unknown loss hyperparameter": (
        {"loss": "softmax_focal", "loss_hparams": {"gama": 2.0}},
        "'gama'",
        "gamma",
    ),
    "batch not divisible by devices": ({"devices": 3}, "3 devices", "multiple of 3"),
}


@pytest.mark.parametrize("case", list(TRAIN))
def test_train_bad_input(case, compiles):
    options, bad, valid = TRAIN[case]
    with pytest.raises((ValueError, TypeError)) as error:
        tk.train(SPLIT, num_classes=10, verbose=False, **{**BASE, **options})
    assert bad in str(error.value) and valid in str(error.value), str(error.value)
    assert compiles == []


def test_population_bad_member_is_named(compiles):
    good = TrainConfig(**BASE)
    bad = TrainConfig(**{**BASE, "learning_rate": -0.1})
    with pytest.raises(ValueError, match=r"population member 1: learning_rate .* got -0\.1"):
        tk.train_population(SPLIT, [good, bad], num_classes=10)
    assert compiles == []


class NotARun:
    """Stands in for a trained run: any use of it is compute, which must not happen."""

    def __getattr__(self, name):
        raise AssertionError(f"computed before checking (used run.{name})")


# name -> (tk.evaluate options, the bad value, a valid choice)
EVALUATE = {
    "unknown shift": ({"shifts": ["iid_noize"]}, "'iid_noize'", "iid_noise"),
    "image shift on 1-D data": ({"shifts": ["rotate"]}, "'rotate'", "iid_noise"),
    "severity 6": ({"shifts": ["iid_noise"], "severities": [6]}, "got 6", "0..5"),
    "severity -1": ({"shifts": ["iid_noise"], "severities": [-1]}, "got -1", "0..5"),
    "unknown OOD set": ({"ood": ["gaussian_noize"]}, "'gaussian_noize'", "gaussian_noise"),
    "unknown OOD score": ({"ood": ["gaussian_noise"], "ood_scores": ["msq"]}, "'msq'", "msp"),
}
# tk.evaluate checks these when it builds the OOD sets, before its clean-set predictions.
EVALUATE_LATE = {
    "image OOD set on 1-D data": (
        {"ood": ["sklearn_patches"]},
        "'sklearn_patches'",
        "gaussian_noise",
    ),
    "OOD dataset of another shape": ({"ood": ["digits"]}, "'digits'", "(40,)"),
}


@pytest.mark.parametrize("case", list(EVALUATE))
def test_evaluate_bad_input(case, compiles):
    options, bad, valid = EVALUATE[case]
    with pytest.raises(ValueError) as error:
        tk.evaluate(NotARun(), SPLIT, **options)
    assert bad in str(error.value) and valid in str(error.value), str(error.value)
    assert compiles == []


@pytest.mark.parametrize("case", list(EVALUATE_LATE))
def test_evaluate_checks_ood_sets_before_compute(case):
    options, bad, valid = EVALUATE_LATE[case]
    with pytest.raises(ValueError) as error:
        tk.evaluate(NotARun(), SPLIT, **options)
    assert bad in str(error.value) and valid in str(error.value), str(error.value)


KEY = jax.random.key(0)
# name -> (call, the bad value, a valid choice)
LIBRARY = {
    "unknown dataset": (lambda: tk.data.load("mnist1e"), "'mnist1e'", "mnist1d"),
    "unknown dataset argument": (
        lambda: tk.data.load("mnist1d", num_sample=300),
        "'num_sample'",
        "num_samples",
    ),
    "MNIST-1D train split of 1": (
        lambda: tk.data.load("mnist1d", train_split=1.0),
        "got 1.0",
        "(0, 1)",
    ),
    "MNIST-1D too few samples for two splits": (
        lambda: tk.data.load("mnist1d", num_samples=3, train_split=0.2),
        "leaves 0 training",
        "both must be > 0",
    ),
    "image shift on 1-D data": (
        lambda: tk.shifts.apply("rotate", SPLIT.x, key=KEY, severity=2),
        "'rotate'",
        "iid_noise",
    ),
    "severity 6": (
        lambda: tk.shifts.apply("iid_noise", SPLIT.x, key=KEY, severity=6),
        "got 6",
        "0..5",
    ),
    "label noise 1": (
        lambda: tk.data.axes.label_noise(SPLIT.y, 1.0, key=KEY, num_classes=10),
        "1.0",
        "[0, 1)",
    ),
    "unknown label noise kind": (
        lambda: tk.data.axes.label_noise(SPLIT.y, 0.2, key=KEY, num_classes=10, kind="uniform"),
        "'uniform'",
        "symmetric",
    ),
}


@pytest.mark.parametrize("case", list(LIBRARY))
def test_library_bad_input(case, compiles):
    call, bad, valid = LIBRARY[case]
    with pytest.raises(ValueError) as error:
        call()
    assert bad in str(error.value) and valid in str(error.value), str(error.value)
    assert compiles == []
