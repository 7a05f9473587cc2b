"""The sweep runner: config expansion, random-search stability, run ids, the results
layout end to end, skip/resume, damaged files, bad inputs, re-evaluation, executors."""

import collections
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toolkit as tk
from toolkit import store
from toolkit.sweep import execute as execute_module
from toolkit.sweep.checkpoint import Checkpoints, abstract_state, saved_layouts
from toolkit.sweep.cli import load_config
from toolkit.sweep.config import SweepConfigError, Trial, expand
from toolkit.sweep.defaults import CHECKPOINT_INTERVAL_S, base_config
from toolkit.sweep.runner import plan, run_sweep
from toolkit.sweep.search import product, random_search
from toolkit.sweep.workers import SINGLE_THREADED
from toolkit.train_step import Best

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
SHIPPED = sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem != "__init__")
SPEC_ROW_KEYS = {
    "run_id",
    "experiment",
    "dataset",
    "model",
    "loss",
    "optimizer",
    "learning_rate",
    "seed",
    "batch_size",
    "steps",
    "loss_hparams",
    "model_hparams",
    "optimizer_hparams",
    "label_noise",
    "train_size",
    "imbalance",
    "group",
    "variant",
    "diverged",
    "diverged_step",
    "eval_set",
    "kind",
    "severity",
    "num_examples",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "misclassification_auroc",
    "max_class_fraction",
    "temperature",
    "nll_ts",
    "ece_ts",
    "brier_ts",
    "checkpoint",
    "split",
    "train_accuracy",
    "status",
    "best_step",
    "cell",
    "trial",
    "role",
}
# MNIST-1D with num_samples=600: 480 training examples in classes of
# (52, 49, 51, 43, 50, 49, 46, 51, 45, 44); 10 % of each, rounded half up, is
# (5, 5, 5, 4, 5, 5, 5, 5, 5, 4): a validation split of 48, 432 left to train.
VALIDATION_EXAMPLES, TRAIN_EXAMPLES = 48, 432


def tiny_config(**changes):
    """Two MLP runs on a 600-example MNIST-1D: 40 steps in 4 chunks, a checkpoint every 2."""
    config = base_config("tiny", dataset="mnist1d")
    config.dataset_kwargs = {"num_samples": 600}
    config.train.update({"steps": 40, "batch_size": 50, "log_every": 10, "learning_rate": 1e-2})
    config.model_hparams = {"mlp": {"hidden": (8,)}}
    config.executor = "inline"
    config.checkpoint_every = 2
    config.checkpoint_interval_s = 0.0  # by chunks alone: saves at steps 20 and 40
    config.losses = ("softmax_cross_entropy", "softmax_focal")
    config.evals = {
        "shifts": {"names": ("iid_noise",), "severities": (2,)},
        "ood": {"names": ("gaussian_noise",)},
        "regenerated": {"type": "mnist1d_regenerated", "kinds": ("shuffle",), "severities": (5,)},
    }
    for key, value in changes.items():
        node, *path = key.split(".")
        target = config
        for part in [node, *path][:-1]:
            target = target[part]
        target[[node, *path][-1]] = value
    return config


def tiny_sweep(config):
    return product(loss=config.losses, seed=[0])


def sweep_into(results, config=None, sweep_fn=tiny_sweep):
    return run_sweep(
        config or tiny_config(), sweep_fn, results_dir=results, progress=False, out=io.StringIO()
    )


class CountingTrain:
    """Stands in for the trainer inside the runner: counts calls; can crash after a step."""

    def __init__(self, crash_after_step=None):
        self.calls, self.crash_after_step = 0, crash_after_step

    def __call__(self, *args, callback=None, **kwargs):
        self.calls += 1

        def wrapped(rows, states):
            callback(rows, states)
            steps = [row["step"] for row in rows if row is not None]
            if self.crash_after_step is not None and max(steps) >= self.crash_after_step:
                raise KeyError("simulated crash")

        return tk.training.train_population(*args, callback=wrapped, **kwargs)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted tiny sweep (2 runs); tests copy it before changing anything."""
    results = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOOLKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        result = sweep_into(results)
    assert result.count("trained") == 2
    return result.experiment_dir


def copy_of(experiment_dir, tmp_path):
    target = tmp_path / "results" / experiment_dir.name
    shutil.copytree(experiment_dir, target)
    return target


def rows_by_key(experiment_dir):
    """``{(run_id, checkpoint, split, eval_set, severity): row}`` of the runs' own rows
    (predictor "single")."""
    rows = store.read_evals(experiment_dir)
    return {store.row_key(r)[:5]: r for r in rows if store.row_key(r)[5] == "single"}


# -- expansion, random search, run ids -------------------------------------------------------


def test_product_is_the_full_grid_with_mapping_values_merged():
    grid = product(model=[{"model": "gru", "steps": 5}, "mlp"], seed=range(2))
    assert grid == [
        {"model": "gru", "steps": 5, "seed": 0},
        {"model": "gru", "steps": 5, "seed": 1},
        {"model": "mlp", "seed": 0},
        {"model": "mlp", "seed": 1},
    ]


def test_random_search_draws_from_name_and_index_seeded_generators():
    space = {"learning_rate": ("loguniform", 1e-4, 1e-1), "loss_hparams.gamma": ("uniform", 0, 5)}
    points = random_search(space, 4, hparams_seed=7)
    for i, point in enumerate(points):
        rng = np.random.default_rng([7, zlib.crc32(b"learning_rate"), i])
        assert point["learning_rate"] == pytest.approx(
            np.exp(rng.uniform(np.log(1e-4), np.log(1e-1)))
        )
        rng = np.random.default_rng([7, zlib.crc32(b"loss_hparams.gamma"), i])
        assert point["loss_hparams"] == {"gamma": pytest.approx(rng.uniform(0, 5))}
    # More trials, another hyperparameter, or a seed axis leave existing draws unchanged.
    more = random_search({**space, "batch_size": ("choice", 32, 64)}, 6, hparams_seed=7)
    for old, new in zip(points, more, strict=False):
        assert new["learning_rate"] == old["learning_rate"]
        assert new["loss_hparams"] == old["loss_hparams"]
    with_seeds = product(hp=points, seed=range(3))
    assert [p["learning_rate"] for p in with_seeds[::3]] == [p["learning_rate"] for p in points]
    assert random_search(space, 4, hparams_seed=8)[0] != points[0]


def test_random_search_rejects_unknown_distributions():
    with pytest.raises(SweepConfigError, match="loguniform"):
        random_search({"learning_rate": ("log_uniform", 1e-4, 1e-1)}, 2)


def reference_run_id(trial: Trial) -> str:
    payload = {
        "dataset": trial.dataset,
        "dataset_kwargs": trial.dataset_kwargs,
        "train": trial.train,
        "data_axes": trial.data_axes,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def one_trial(config=None, **spec) -> Trial:
    return expand(config or tiny_config(), [spec])[0]


def test_run_id_is_the_spec_hash_and_ignores_labels_and_explicit_defaults():
    trial = one_trial(loss="softmax_focal", seed=3)
    assert trial.run_id == reference_run_id(trial)
    assert one_trial(loss="softmax_focal", seed=3).run_id == trial.run_id
    # Writing a default explicitly, or changing labels, does not change the training.
    assert (
        one_trial(loss="softmax_focal", seed=3, loss_hparams={"gamma": 2.0}).run_id == trial.run_id
    )
    assert (
        one_trial(loss="softmax_focal", seed=3, group="other", variant="v").run_id == trial.run_id
    )
    assert one_trial(tiny_config(experiment="renamed"), loss="softmax_focal", seed=3).run_id == (
        trial.run_id
    )


@pytest.mark.parametrize(
    "change",
    [
        {"model": "linear"},
        {"loss": "gce"},
        {"optimizer": "sgd"},
        {"learning_rate": 0.02},
        {"batch_size": 25},
        {"steps": 30},
        {"seed": 4},
        {"schedule": "cosine"},
        {"warmup_steps": 2},
        {"weight_decay": 0.1},
        {"grad_clip": 1.0},
        {"log_every": 20},
        {"model_hparams": {"hidden": (9,)}},
        {"loss_hparams": {"gamma": 1.0}},
        {"optimizer_hparams": {"b1": 0.8}},
        {"label_noise": 0.2},
        {"label_noise_kind": "pairflip"},
        {"train_size": 100},
        {"imbalance": 2.0},
        {"dataset_kwargs": {"num_samples": 700}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_any_training_field_changes_the_run_id(change):
    base = one_trial(loss="softmax_focal", seed=3)
    assert one_trial(**{"loss": "softmax_focal", "seed": 3, **change}).run_id != base.run_id


def test_variant_labels_name_the_loss_and_what_varies_in_the_group():
    trials = expand(
        tiny_config(),
        product(loss=[{"loss": "softmax_focal"}], learning_rate=[0.1, 0.01], seed=[0, 1]),
    )
    assert [t.group for t in trials] == ["mlp/adam"] * 4
    assert trials[0].variant == "softmax_focal(gamma=2.0) lr=0.1"
    assert trials[2].variant == "softmax_focal(gamma=2.0) lr=0.01"


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("variant", ["", "quick"])
def test_shipped_configs_plan_cleanly(name, variant):
    config, sweep_fn = load_config(f"{CONFIGS / name}.py:{variant}")
    trials, _ = plan(config, sweep_fn)
    assert len({t.run_id for t in trials}) == len(trials)
    if variant == "quick":  # CI's end-to-end size
        assert len(trials) < 20
    else:  # the full variant is the larger study
        quick = plan(*load_config(f"{CONFIGS / name}.py:quick"))[0]
        assert len(trials) >= 2 * len(quick)


def test_loss_comparison_covers_every_registered_loss():
    config, sweep_fn = load_config(f"{CONFIGS / 'loss_comparison'}.py")
    trials = expand(config, sweep_fn(config))
    assert {t.train["loss"] for t in trials} == set(tk.losses.names())
    assert {t.train["model"] for t in trials} == {"mlp", "cnn", "gru"}
    assert {t.train["seed"] for t in trials} == set(range(5))


# -- end to end ------------------------------------------------------------------------------


def test_layout_and_records_follow_the_spec(finished):
    runs = sorted(store.run_dirs(finished), key=lambda r: r.run_id)
    assert len(runs) == 2
    assert json.loads((finished / "sweep.json").read_text())["experiment"] == "tiny"
    for run in runs:
        config = json.loads(run.config.read_text())
        assert config["run_id"] == run.run_id == reference_run_id(Trial.from_json(config))
        assert set(config) >= {
            "run_id",
            "experiment",
            "dataset",
            "dataset_kwargs",
            "train",
            "data_axes",
            "group",
        }
        assert [r["step"] for r in run.read_metrics()] == [10, 20, 30, 40]
        assert set(run.read_metrics()[0]) == {
            "step",
            "loss",
            "accuracy",
            "steps_per_sec",
            "val_accuracy",
            "val_nll",
        }
        provenance = json.loads(run.provenance.read_text())
        assert set(provenance) >= {
            "packages",
            "git_commit",
            "device_kind",
            "device_count",
            "backend",
            "global_batch_size",
            "wall_time_s",
            "python",
            "hostname",
            "started",
            "finished",
        }
        assert provenance["packages"]["jax"] == jax.__version__
        assert run.done_marker()["diverged_step"] is None
        assert Checkpoints(run.checkpoint).steps() == [20, 40]
    rows = store.read_evals(finished)
    # test: clean, iid_noise@2, gaussian_noise (ood), regenerated shuffle@5; validation: clean
    # and the shifts entry's iid_noise@2; for the final and the best-validation checkpoint
    assert len(rows) == 2 * 2 * (4 + 2)
    for row in rows:
        assert set(row) >= SPEC_ROW_KEYS
        assert ("reliability" in row) == (row["kind"] in ("clean", "shift"))
    sets = {(r["split"], r["eval_set"], r["kind"], r["severity"], r["num_examples"]) for r in rows}
    assert sets == {
        ("test", "clean", "clean", 0, 120),
        ("test", "iid_noise", "shift", 2, 120),
        ("test", "gaussian_noise", "ood", 0, 120),
        ("test", "regenerated/shuffle", "set", 5, 120),
        ("validation", "clean", "clean", 0, VALIDATION_EXAMPLES),
        ("validation", "iid_noise", "shift", 2, VALIDATION_EXAMPLES),
    }
    for run in runs:
        own = [r for r in rows if r["run_id"] == run.run_id]
        assert {r["checkpoint"] for r in own} == {"final", "best"}
        # one temperature per run and checkpoint, fitted on the validation split
        for checkpoint in ("final", "best"):
            temperatures = {r["temperature"] for r in own if r["checkpoint"] == checkpoint}
            assert len(temperatures) == 1 and temperatures.pop() > 0
        assert all(r["nll_ts"] is not None for r in own if r["kind"] != "ood")
        # the run's columns: the last curve row's accuracy and the status rule of design
        train_accuracy = run.read_metrics()[-1]["accuracy"]
        assert {r["train_accuracy"] for r in own} == {train_accuracy}
        # The one-class check reads the clean validation row (the test set makes no choice)
        (clean,) = [
            r
            for r in own
            if (r["checkpoint"], r["split"], r["kind"]) == ("final", "validation", "clean")
        ]
        collapsed = train_accuracy <= 0.1 + 0.05 or clean["max_class_fraction"] > 0.95
        status = "collapsed" if collapsed else "finished"
        final = {r["status"] for r in own if r["checkpoint"] == "final"}
        assert final == {status} and run.done_marker()["status"] == status
        # the best-validation step: the earliest with the highest validation accuracy
        curve = run.read_metrics()
        top = max(row["val_accuracy"] for row in curve)
        best_step = min(row["step"] for row in curve if row["val_accuracy"] == top)
        assert {(r["best_step"], r["cell"], r["trial"], r["role"]) for r in own} == {
            (best_step, None, None, None)
        }
        listed = sorted(map(tuple, run.done_marker()["evals"]))
        # The runs' own rows are listed as [checkpoint, split, eval_set, severity].
        assert listed == sorted(store.row_key(r)[1:5] for r in own)


def test_a_sweep_predicts_each_set_once_per_run(tmp_path, monkeypatch):
    """Clean, shifted, OOD, regenerated and label-shifted sets: one prediction each per run
    (the clean logits serve the clean row and every OOD row); label-shifted rows are the
    metrics of the resampled test split with the documented key."""
    from toolkit.data.label_shift import label_shift
    from toolkit.evaluation import inference

    calls: collections.Counter = collections.Counter()
    logits_of: dict[str, np.ndarray] = {}
    predict = inference.predict

    def counting(run, x, **kwargs):
        digest = hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=8).hexdigest()
        calls[id(run), digest] += 1
        logits = np.asarray(predict(run, x, **kwargs))
        logits_of.setdefault(digest, logits)  # the final checkpoint's: it is evaluated first
        return logits

    monkeypatch.setattr(inference, "predict", counting)
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    config = tiny_config(losses=("softmax_cross_entropy",))
    config.evals["label_shift"] = {"type": "label_shift", "alpha": 1.0, "draws": 2}
    result = sweep_into(tmp_path / "results", config)
    assert result.count("trained") == 1
    rows = store.read_evals(result.experiment_dir)
    # clean, iid_noise@2, gaussian_noise, regenerated/shuffle@5, label_shift/0 and /1; and
    # on the validation split clean (also the temperature's) and iid_noise@2
    # Each for the final and the best-validation checkpoint; a best state that is the final
    # one (best_step = the last step) reuses the final rows.
    assert len(rows) == 2 * 8
    (best_step,) = {r["best_step"] for r in rows}
    predicted = 1 if best_step == rows[0]["steps"] else 2
    assert len(calls) == 8 * predicted and set(calls.values()) == {1}, calls
    test = tk.data.load("mnist1d", num_samples=600).test
    key = jax.random.fold_in(jax.random.key(0), zlib.crc32(b"label_shift"))
    for draw in (0, 1):
        resampled = label_shift(test, key=jax.random.fold_in(key, draw), num_classes=10).split
        digest = hashlib.blake2b(np.ascontiguousarray(resampled.x).tobytes(), digest_size=8)
        logits = logits_of[digest.hexdigest()]
        (row,) = [
            r for r in rows if (r["eval_set"], r["checkpoint"]) == (f"label_shift/{draw}", "final")
        ]
        assert row["num_examples"] == len(resampled)
        assert row["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == resampled.y))


def test_a_best_validation_state_gets_rows_of_its_own(tmp_path, monkeypatch):
    """When training keeps a best-validation state (``run.best``, ``info["best_step"]``),
    both checkpoints get test and validation rows, each recalibrated on its own logits,
    and the done marker lists them all. Here the "best" state is the run's step-20
    checkpoint, attached to the run the trainer returns."""
    captured = {}

    def train_keeping_step_20(*args, callback=None, **kwargs):
        def keep(rows, states):
            if rows[0] is not None and rows[0]["step"] == 20:
                captured["step20"] = states[0]
            callback(rows, states)

        runs = tk.training.train_population(*args, callback=keep, **kwargs)
        for run in runs:
            at20 = captured["step20"]
            best = Best(at20.step, at20.params, at20.model_state, jnp.float32(1), jnp.float32(0))
            run.state = run.state.replace(best=best)
            run.info["best_step"] = 20
        return runs

    monkeypatch.setattr(execute_module, "train_population", train_keeping_step_20)
    config = tiny_config(losses=("softmax_cross_entropy",))
    result = sweep_into(tmp_path / "results", config)
    assert result.count("trained") == 1
    rows = rows_by_key(result.experiment_dir)
    assert {k[1:3] for k in rows} == {
        (c, s) for c in ("final", "best") for s in ("test", "validation")
    }
    assert {r["best_step"] for r in rows.values()} == {20}
    (run_id,) = {k[0] for k in rows}
    final = rows[run_id, "final", "test", "clean", 0]
    best = rows[run_id, "best", "test", "clean", 0]
    assert best["accuracy"] != final["accuracy"] or best["nll"] != final["nll"]
    assert best["temperature"] != final["temperature"]  # each fitted on its own logits
    # the best state's clean test accuracy, recomputed from the step-20 weights
    run_dir = store.RunDir(result.experiment_dir, run_id)
    trial = Trial.from_json(json.loads(run_dir.config.read_text()))
    model = tk.training.build_model(trial.train_config(), 10)
    test = tk.data.load("mnist1d", num_samples=600).test
    logits = model.apply({"params": captured["step20"].params}, jnp.asarray(test.x), train=False)
    assert best["accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == test.y), abs=1e-6)
    marker = run_dir.done_marker()
    assert sorted(map(tuple, marker["evals"])) == sorted(k[1:] for k in rows)
    assert marker["best_step"] == 20


def test_recorded_metrics_match_an_independent_recomputation(finished):
    """Clean accuracy from the restored checkpoint (numpy argmax) on the test split and on
    tk.data.with_validation's split, and the ECE implied by the recorded reliability bins,
    agree with the recorded rows."""
    ds = tk.data.with_validation(tk.data.load("mnist1d", num_samples=600), 0.1, seed=0)
    for row in store.read_evals(finished):
        if row["kind"] not in ("clean", "shift"):
            continue
        bins = row["reliability"]
        count = np.asarray(bins["bin_count"], float)
        assert count.sum() == row["num_examples"] and len(count) == 15
        gaps = np.abs(np.asarray(bins["bin_accuracy"]) - np.asarray(bins["bin_confidence"]))
        assert float((count / count.sum() * gaps).sum()) == pytest.approx(row["ece"], abs=1e-5)
        if row["kind"] == "clean":
            run_dir = store.RunDir(finished, row["run_id"])
            trial = Trial.from_json(json.loads(run_dir.config.read_text()))
            cfg = trial.train_config()
            abstract = abstract_state(cfg, 10, (40,), best=True)
            state = Checkpoints(run_dir.checkpoint).restore(abstract)
            params = state.params if row["checkpoint"] == "final" else state.best.params
            model = tk.training.build_model(cfg, 10)
            split = ds.test if row["split"] == "test" else ds.validation
            logits = model.apply({"params": params}, jnp.asarray(split.x), train=False)
            accuracy = np.mean(np.argmax(np.asarray(logits), -1) == split.y)
            assert row["accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_rerun_skips_finished_runs(finished, tmp_path, monkeypatch):
    experiment = copy_of(finished, tmp_path)
    counter = CountingTrain()
    monkeypatch.setattr(execute_module, "train_population", counter)
    result = sweep_into(experiment.parent)
    assert counter.calls == 0 and result.count("skipped") == 2
    assert rows_by_key(experiment) == rows_by_key(finished)


def test_interrupted_run_resumes_from_its_checkpoint_with_identical_numbers(
    finished, tmp_path, monkeypatch
):
    results = tmp_path / "results"
    config = tiny_config(losses=("softmax_focal",))
    traced = []  # only a resume needs the state's structure (a fresh run skips tracing it)
    monkeypatch.setattr(
        execute_module, "saved_layouts", lambda *a, **k: traced.append(a) or saved_layouts(*a, **k)
    )
    monkeypatch.setattr(execute_module, "train_population", CountingTrain(crash_after_step=30))
    crashed = sweep_into(results, config)
    assert crashed.count("failed") == 1 and "simulated crash" in crashed.failed[0]["error"]
    assert traced == []
    run = next(store.run_dirs(crashed.experiment_dir))
    assert not run.is_done() and Checkpoints(run.checkpoint).steps() == [20]
    assert [r["step"] for r in run.read_metrics()] == [10, 20, 30]
    error = json.loads(run.error.read_text())  # why it failed, for the report
    assert set(error) == {"type", "message", "traceback", "time"}
    assert (error["type"], error["message"]) == ("KeyError", "'simulated crash'")
    assert "raise KeyError" in error["traceback"] and error["time"].startswith("20")

    counter = CountingTrain()
    monkeypatch.setattr(execute_module, "train_population", counter)
    resumed = sweep_into(results, config)
    assert counter.calls == 1 and resumed.summaries[0]["resumed_from"] == 20
    assert len(traced) == 1
    assert [r["step"] for r in run.read_metrics()] == [10, 20, 30, 40]  # row 30 not repeated
    assert run.is_done() and not run.error.exists()  # the successful rerun superseded it
    original = store.RunDir(finished, run.run_id)
    np.testing.assert_allclose(
        [r["loss"] for r in run.read_metrics()],
        [r["loss"] for r in original.read_metrics()],
        rtol=0,
        atol=0,
    )
    mine = rows_by_key(crashed.experiment_dir)
    theirs = {k: v for k, v in rows_by_key(finished).items() if k[0] == run.run_id}
    assert mine.keys() == theirs.keys()
    for key, row in mine.items():
        for column in ("accuracy", "nll", "ece", "auroc_msp"):
            assert row.get(column) == theirs[key].get(column), (key, column)


# Reading a damaged checkpoint makes tensorstore call back into orbax's already-closed
# event loop ("Event loop is closed", ignored by Python); the restore itself fails cleanly.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_missing_done_marker_and_truncated_files_redo_only_that_run(
    finished, tmp_path, monkeypatch
):
    experiment = copy_of(finished, tmp_path)
    damaged, intact = sorted(store.run_dirs(experiment), key=lambda r: r.run_id)
    damaged.done.unlink()
    with open(experiment / "evals.jsonl", "ab") as handle:
        handle.write(b'{"run_id": "trunc')  # a crash mid-append
    step40 = damaged.checkpoint / "40"
    for path in step40.rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[:10])  # a truncated checkpoint
    counter = CountingTrain()
    monkeypatch.setattr(execute_module, "train_population", counter)
    with pytest.warns(UserWarning, match="step 40 is unreadable|truncated|unparsable line"):
        result = sweep_into(experiment.parent)
    assert counter.calls == 1 and result.count("skipped") == 1
    assert [s["resumed_from"] for s in result.summaries if s["status"] == "trained"] == [20]
    assert damaged.is_done() and intact.is_done()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the redone run's append dropped the cut line
        rows = rows_by_key(experiment)
    reference = rows_by_key(finished)
    assert rows.keys() == reference.keys()
    for key, row in rows.items():
        assert row["accuracy"] == reference[key]["accuracy"], key


def test_a_run_locked_by_another_sweep_is_left_to_it(finished, tmp_path, monkeypatch):
    experiment = copy_of(finished, tmp_path)
    busy, free = sorted(store.run_dirs(experiment), key=lambda r: r.run_id)
    busy.done.unlink()
    free.done.unlink()
    other = store.RunLock(busy.path / "lock")  # another process's lock (flock is per file)
    assert other.acquire()
    counter = CountingTrain()
    monkeypatch.setattr(execute_module, "train_population", counter)
    try:
        result = sweep_into(experiment.parent)
    finally:
        other.release()
    statuses = {s["run_id"]: s["status"] for s in result.summaries}
    assert statuses == {busy.run_id: "locked", free.run_id: "trained"} and counter.calls == 1
    assert not busy.is_done() and free.is_done()


def test_default_schedule_saves_a_short_run_once_at_the_end(tmp_path):
    """By default checkpoints are at least a minute apart: a run shorter than that is
    saved once, at its last step, whatever checkpoint_every says."""
    config = tiny_config(checkpoint_interval_s=CHECKPOINT_INTERVAL_S)
    result = sweep_into(tmp_path, config, lambda c: [{"loss": "softmax_cross_entropy"}])
    (run,) = store.run_dirs(result.experiment_dir)
    assert CHECKPOINT_INTERVAL_S == 60.0 and config.checkpoint_every == 2
    assert Checkpoints(run.checkpoint).steps() == [40]
    assert [row["step"] for row in run.read_metrics()] == [10, 20, 30, 40]


def test_diverged_run_gets_rows_with_null_metrics(tmp_path):
    config = tiny_config(**{"train.learning_rate": 1e30, "train.optimizer": "sgd"})
    result = sweep_into(tmp_path, config, lambda c: [{"loss": "softmax_cross_entropy"}])
    rows = store.read_evals(result.experiment_dir)
    assert rows and all(r["diverged"] and r["diverged_step"] is not None for r in rows)
    assert all(r["accuracy"] is None and r.get("reliability") is None for r in rows)
    assert all(r["temperature"] is None and r["nll_ts"] is None for r in rows)
    assert {(r["split"], r["eval_set"], r["num_examples"]) for r in rows} == {
        ("test", "clean", 120),
        ("test", "iid_noise", 120),
        ("test", "gaussian_noise", 120),
        ("test", "regenerated/shuffle", 120),
        ("validation", "clean", VALIDATION_EXAMPLES),
        ("validation", "iid_noise", VALIDATION_EXAMPLES),
    }
    assert next(r for r in rows if r["kind"] == "ood")["auroc_msp"] is None
    assert {r["status"] for r in rows} == {"diverged"}
    run = next(store.run_dirs(result.experiment_dir))
    assert run.done_marker()["diverged_step"] == rows[0]["diverged_step"]
    assert run.done_marker()["status"] == "diverged"


def test_evaluate_adds_rows_for_a_new_shift_without_training(finished, tmp_path, monkeypatch):
    from experiments import evaluate

    experiment = copy_of(finished, tmp_path)
    old_best_step = {k[0]: r["best_step"] for k, r in rows_by_key(finished).items()}

    def no_training(*args, **kwargs):
        raise AssertionError("re-evaluation must not train")

    monkeypatch.setattr(tk.training, "train_population", no_training)
    monkeypatch.setattr(execute_module, "train_population", no_training)
    assert (
        evaluate.main(
            [str(experiment), "--shifts", "linear_shear", "--severities", "1", "4", "--no_progress"]
        )
        == 0
    )
    rows = rows_by_key(experiment)
    new = {k: v for k, v in rows.items() if k[3] == "linear_shear"}
    # 2 runs x 2 severities, on the test and on the validation split, for the final and the
    # best-validation checkpoint (restored from the final checkpoint, which holds it)
    assert {(k[1], k[2], k[4]) for k in new} == {
        (c, split, s) for c in ("final", "best") for split in ("test", "validation") for s in (1, 4)
    }
    assert len(new) == 16
    for key, row in new.items():
        if key[1] == "best":
            assert row["best_step"] == old_best_step[key[0]]
    assert all(r["reliability"] is not None and 0 <= r["accuracy"] <= 1 for r in new.values())
    old = rows_by_key(finished)
    assert all(rows[k]["accuracy"] == old[k]["accuracy"] for k in old)


# -- bad inputs: one clear error before any compute, nothing written -------------------------


BAD = {
    "model": ({"train.model": "mpl"}, "mpl", "mlp"),
    "loss": ({"losses": ("softmax_cross_entropy", "focal")}, "focal", "softmax_focal"),
    "optimizer": ({"train.optimizer": "adamm"}, "adamm", "adamw"),
    "schedule": ({"train.schedule": "cosinus"}, "cosinus", "cosine"),
    "dataset": ({"dataset": "mnist1e"}, "mnist1e", "mnist1d"),
    "shift": ({"evals.shifts.names": ("iid_noize",)}, "iid_noize", "iid_noise"),
    "severity": ({"evals.shifts.severities": (2, 6)}, "6", "0..5"),
    "label_noise": ({"data_axes.label_noise": 1.0}, "1.0", "[0, 1)"),
    "label_noise_kind": ({"data_axes.label_noise_kind": "uniform"}, "uniform", "symmetric"),
    "learning_rate": ({"train.learning_rate": -0.1}, "-0.1", "positive"),
    "batch_size": ({"train.batch_size": 433}, "433", f"{TRAIN_EXAMPLES} examples"),
    "train_size": ({"data_axes.train_size": 1000}, "1000", f"1..{TRAIN_EXAMPLES}"),
    "validation_fraction": ({"data_axes.validation_fraction": 1.0}, "1.0", "[0, 1)"),
    # 24 training examples: class 9 has one, which cannot be in both splits
    "validation_class": ({"dataset_kwargs.num_samples": 30}, "class 9 has 1", "at least 2"),
    "shift_rank": ({"evals.shifts.names": ("rotate",)}, "rotate", "iid_noise"),
    "ood_rank": ({"evals.ood.names": ("sklearn_patches",)}, "sklearn_patches", "gaussian_noise"),
    "eval_type": ({"evals.shifts.type": "shiftz"}, "shiftz", "shifts"),
    "executor": ({"executor": "threads"}, "threads", "process"),
    # the experiment's directory stays inside the results directory
    "experiment_escapes": ({"experiment": "../../escaped"}, "../../escaped", "plain name"),
    "experiment_absolute": ({"experiment": "/tmp/elsewhere"}, "/tmp/elsewhere", "plain name"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_before_compute_and_writes_nothing(case, tmp_path, monkeypatch):
    changes, bad, valid = BAD[case]
    monkeypatch.setattr(execute_module, "train_population", CountingTrain(crash_after_step=0))
    with pytest.raises(SweepConfigError) as error:
        sweep_into(tmp_path / "results", tiny_config(**changes))
    assert bad in str(error.value) and valid in str(error.value), str(error.value)
    assert not (tmp_path / "results").exists()


def test_cli_reports_config_file_errors_and_writes_nothing(tmp_path, capsys):
    from experiments import sweep

    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(variant=''):\n    return {\n")
    results = tmp_path / "results"
    assert sweep.main(["--config", str(broken), "--results_dir", str(results)]) == 2
    assert "syntax error at line" in capsys.readouterr().err
    config = CONFIGS / "label_noise.py"
    assert (
        sweep.main(
            ["--config", f"{config}:quick", "--config.seedz=2", "--results_dir", str(results)]
        )
        == 2
    )
    assert "Did you mean 'seeds'" in capsys.readouterr().err
    assert sweep.main(["--config", f"{config}:huge", "--results_dir", str(results)]) == 2
    assert "quick" in capsys.readouterr().err
    assert not results.exists()


def test_overrides_keep_field_types():
    config, _ = load_config(
        f"{CONFIGS / 'label_noise'}.py:quick",
        ["--config.seeds=4", "--config.losses=gce,sce", "--config.train.learning_rate=1"],
    )
    assert config.seeds == 4 and config.losses == ("gce", "sce")
    assert isinstance(config.train.learning_rate, float)
    with pytest.raises(SweepConfigError, match="seeds"):
        load_config(f"{CONFIGS / 'label_noise'}.py:quick", ["--config.seeds=many"])


# -- other executors (slow: worker start-up and cluster machinery) ---------------------------


def test_population_executor_records_each_member_like_a_solo_run(finished, tmp_path):
    """The accelerator path, run on CPU: one vmapped population of the two runs."""
    result = sweep_into(tmp_path, tiny_config(executor="population"))
    assert result.executor == "population" and result.count("trained") == 2, result.failed
    for run in store.run_dirs(result.experiment_dir):
        assert json.loads(run.provenance.read_text())["population_size"] == 2
        assert [r["step"] for r in run.read_metrics()] == [10, 20, 30, 40]
        assert Checkpoints(run.checkpoint).steps() == [20, 40]
    mine, theirs = rows_by_key(result.experiment_dir), rows_by_key(finished)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert mine[key]["accuracy"] == pytest.approx(theirs[key]["accuracy"], abs=0.01), key


def test_an_interrupt_releases_every_lock_it_took(tmp_path, monkeypatch):
    """A KeyboardInterrupt in training (Ctrl-C in a notebook) leaves no run locked: the same
    process can run the sweep again at once."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(execute_module, "train_population", interrupted)
    config = tiny_config(executor="population")
    with pytest.raises(KeyboardInterrupt):
        sweep_into(tmp_path, config)
    monkeypatch.undo()
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    result = sweep_into(tmp_path, config)
    assert result.count("trained") == 2 and result.count("locked") == 0


def test_a_member_whose_recording_fails_is_the_only_one_failed(tmp_path, monkeypatch):
    """Two members trained as one population; recording the first raises. The second is
    recorded as usual, and the first keeps its final checkpoint (a rerun only evaluates)."""
    record = execute_module.record
    calls = []

    def failing_first(run, run_dir, *args, **kwargs):
        calls.append(run_dir.run_id)
        if len(calls) == 1:
            raise RuntimeError("cannot record this member")
        return record(run, run_dir, *args, **kwargs)

    monkeypatch.setattr(execute_module, "record", failing_first)
    result = sweep_into(tmp_path, tiny_config(executor="population"))
    assert result.count("trained") == 1 and result.count("failed") == 1
    assert "cannot record this member" in result.failed[0]["error"]
    failed = store.RunDir(result.experiment_dir, calls[0])
    assert not failed.is_done() and Checkpoints(failed.checkpoint).steps() == [20, 40]
    error = json.loads(failed.error.read_text())
    assert (error["type"], error["message"]) == ("RuntimeError", "cannot record this member")
    (other,) = [r for r in store.run_dirs(result.experiment_dir) if r.run_id != calls[0]]
    assert other.is_done() and not other.error.exists()
    monkeypatch.setattr(execute_module, "record", record)
    counter = CountingTrain()
    monkeypatch.setattr(execute_module, "train_population", counter)
    rerun = sweep_into(tmp_path, tiny_config(executor="population"))
    assert rerun.count("trained") == 1 and rerun.summaries[-1]["resumed_from"] == 40
    assert failed.is_done() and not failed.error.exists()


@pytest.mark.slow
def test_process_executor_with_two_workers_matches_inline(finished, tmp_path):
    result = sweep_into(tmp_path, tiny_config(executor="process", workers=2))
    assert result.executor == "process" and result.count("trained") == 2
    provenance = [
        json.loads(r.provenance.read_text()) for r in store.run_dirs(result.experiment_dir)
    ]
    # Trained in spawned workers (not here), each with XLA limited to one thread.
    assert os.getpid() not in {p["executor_pid"] for p in provenance}
    assert all(SINGLE_THREADED in p["xla_flags"] for p in provenance)
    mine, theirs = rows_by_key(result.experiment_dir), rows_by_key(finished)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert mine[key]["accuracy"] == pytest.approx(theirs[key]["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_submitit_local_executor_fills_the_same_layout(finished, tmp_path):
    pytest.importorskip("submitit")
    config = tiny_config(executor="submitit")
    config.submitit = {"cluster": "local", "timeout_min": 10, "poll_seconds": 1.0}
    result = sweep_into(tmp_path, config)
    assert result.count("trained") == 2, result.failed
    assert rows_by_key(result.experiment_dir).keys() == rows_by_key(finished).keys()


CUSTOM_LOSS_CONFIG = """
import optax

import toolkit as tk
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product


@tk.losses.register("half_cross_entropy", description="Cross-entropy / 2 (a test loss).")
def half_cross_entropy(logits, labels):
    return 0.5 * optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


def get_config(variant=""):
    config = base_config("custom", dataset="mnist1d")
    config.dataset_kwargs = {"num_samples": 300}
    config.train.update({"model": "linear", "steps": 20, "batch_size": 20, "log_every": 10})
    config.executor = "process"
    config.workers = 1
    return config


def sweep(config):
    return product(loss=["half_cross_entropy"], seed=[0])
"""


@pytest.mark.slow
def test_process_workers_know_the_registrations_of_the_config_file(tmp_path):
    # Workers are spawned: they import the toolkit, not the config file, unless the runner
    # hands it to them. Run in a fresh process so the test loss stays out of this one.
    config = tmp_path / "custom.py"
    config.write_text(CUSTOM_LOSS_CONFIG)
    command = [sys.executable, "-m", "experiments.sweep", "--config", str(config),
               "--results_dir", str(tmp_path / "results"), "--no_progress"]  # fmt: skip
    env = {**os.environ, "TOOLKIT_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 1," in done.stderr and "failed 0" in done.stderr, done.stderr[-3000:]
    (run,) = store.run_dirs(tmp_path / "results" / "custom")
    assert json.loads(run.config.read_text())["train"]["loss"] == "half_cross_entropy"
    provenance = json.loads(run.provenance.read_text())
    assert provenance["executor_pid"] != os.getpid()  # trained in a worker
