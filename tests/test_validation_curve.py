"""Validation inside the training loop: curve metrics against numpy on the states the
trainer had at those steps, the best-validation state, eval_every, populations, resume."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import toolkit as tk
from toolkit.data import Split
from toolkit.training import build_model

RNG = np.random.default_rng(1)
X = RNG.normal(size=(160, 20)).astype(np.float32)
Y = ((X[:, :5].sum(1) > 0).astype(np.int32) + 2 * (X[:, 5:10].sum(1) > 0)).astype(np.int32)
# Noisy validation labels, so validation accuracy peaks and falls while training goes on.
TRAIN = Split(X[:120], Y[:120])
VAL_Y = np.where(RNG.uniform(size=40) < 0.3, RNG.integers(0, 4, 40), Y[120:]).astype(np.int32)
VAL = Split(X[120:], VAL_Y)
CONFIG = dict(
    model="mlp",
    model_hparams={"hidden": (64,)},
    learning_rate=3e-2,
    batch_size=40,
    steps=60,
    log_every=5,
)


def numpy_metrics(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean NLL written out in float64 numpy."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    accuracy = float((logits.argmax(1) == labels).mean())
    return accuracy, float(-log_probs[np.arange(len(labels)), labels].mean())


def train_recording(**options):
    """A run and, by step, the logits its state gave on the validation inputs."""
    logits_at: dict[int, np.ndarray] = {}
    run_holder = {}

    def record(row, state):
        model = run_holder.get("model")
        params = tk.optimizers.eval_params(state.opt_state, state.params)
        variables = {"params": params, **state.model_state}
        logits_at[row["step"]] = np.asarray(model.apply(variables, VAL.x, train=False))

    config = {**CONFIG, **options}
    run_holder["model"] = build_model(tk.TrainConfig(**config), 4)
    run = tk.train(TRAIN, num_classes=4, validation=VAL, verbose=False, callback=record, **config)
    return run, logits_at


def test_curve_rows_hold_the_validation_metrics_of_the_state_at_that_step():
    run, logits_at = train_recording()
    assert [row["step"] for row in run.curve] == list(range(5, 61, 5))
    for row in run.curve:
        accuracy, nll = numpy_metrics(logits_at[row["step"]], VAL.y)
        assert row["val_accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert row["val_nll"] == pytest.approx(nll, rel=1e-4)


def test_best_is_the_earliest_state_with_the_highest_validation_accuracy():
    run, logits_at = train_recording()
    accuracies = {step: numpy_metrics(logits, VAL.y)[0] for step, logits in logits_at.items()}
    top = max(accuracies.values())
    expected = min(step for step, acc in accuracies.items() if acc == top)
    assert expected < 60, "the fixture should peak before the end"
    best = run.best
    assert run.info["best_step"] == expected == int(best.state.step)
    np.testing.assert_allclose(np.asarray(best.apply(VAL.x)), logits_at[expected], atol=1e-5)
    assert best.curve == run.curve


def test_validation_leaves_training_untouched():
    with_val, _ = train_recording()
    without = tk.train(TRAIN, num_classes=4, verbose=False, **CONFIG)
    assert without.best is None and without.info["best_step"] is None
    assert "val_accuracy" not in without.curve[0]
    for a, b in zip(
        jax.tree.leaves(with_val.state.params), jax.tree.leaves(without.state.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_eval_every_picks_chunk_ends():
    # 600 steps: 20 chunks of 30 by default; eval_every=70 cuts chunks to 14 (the largest
    # divisor of 70 not above 30), and validation runs at 70, 140, ..., 560 and at 600.
    config = tk.TrainConfig(steps=600, eval_every=70)
    assert config.steps_per_dispatch == 14
    run = tk.train(
        TRAIN,
        num_classes=4,
        validation=VAL,
        verbose=False,
        **{**CONFIG, "steps": 600, "log_every": None, "eval_every": 70},
    )
    validated = [row["step"] for row in run.curve if "val_accuracy" in row]
    assert validated == [*range(70, 600, 70), 600]
    assert len(run.curve) == -(-600 // 14)


def test_population_members_validate_on_their_own_labels():
    other = ((VAL.y + 1) % 4).astype(np.int32)
    labels = np.stack([VAL.y, other])
    configs = [tk.TrainConfig(**CONFIG, seed=s) for s in (0, 1)]
    runs = tk.train_population(
        TRAIN, configs, num_classes=4, validation=VAL, validation_labels=labels
    )
    for run, y in zip(runs, labels, strict=True):
        accuracy, nll = numpy_metrics(np.asarray(run.apply(VAL.x)), y)
        assert run.curve[-1]["val_accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert run.curve[-1]["val_nll"] == pytest.approx(nll, rel=1e-4)


def test_a_resumed_run_keeps_its_best_state():
    saved = {}

    def keep(row, state):
        if row["step"] == 30:
            saved["state"] = jax.device_get(state)

    full = tk.train(TRAIN, num_classes=4, validation=VAL, verbose=False, callback=keep, **CONFIG)
    resumed = tk.train(
        TRAIN,
        num_classes=4,
        validation=VAL,
        verbose=False,
        initial_state=saved["state"],
        **CONFIG,
    )
    assert resumed.info["best_step"] == full.info["best_step"]
    np.testing.assert_array_equal(np.asarray(resumed.best.apply(VAL.x)), full.best.apply(VAL.x))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"validation": Split(np.zeros((4, 3), np.float32), np.zeros(4))}, "shape"),
        (
            {"validation": Split(X[:4], np.asarray([0, 1, 2, 9]))},
            r"validation labels must be class indices in \[0, 4\).*got 9 in 1",
        ),
        ({"validation": VAL, "eval_every": 12, "log_every": 5}, "multiple of log_every"),
        ({"validation": VAL, "eval_every": 0}, "eval_every must be a positive int"),
    ],
)
def test_bad_validation_fails_before_compute(options, message):
    config = {**CONFIG, **options}
    with pytest.raises((ValueError, TypeError), match=message):
        tk.train(TRAIN, num_classes=4, verbose=False, **config)
