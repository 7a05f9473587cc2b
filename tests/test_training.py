"""The trainer: every registered model, loss and optimizer trains; shuffling, determinism,
BatchNorm state, schedule-free evaluation, and errors before compute.

Each walk pairs one registry's entries with small defaults for the other two, not the full
product, to keep compile time down.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toolkit as tk
from toolkit.data import Split
from toolkit.population import sharding
from toolkit.population.program import member_keys, program_for
from toolkit.shuffle import batch_indices

RNG = np.random.default_rng(0)
# A fixed, learnable batch: labels are a function of the inputs, so every model can fit it.
SEQ_X = RNG.normal(size=(32, 40)).astype(np.float32)
SEQ_Y = (SEQ_X[:, :10].sum(1) > 0).astype(np.int32) + 2 * (SEQ_X[:, 10:20].sum(1) > 0)
IMG_X = RNG.uniform(size=(32, 8, 8, 1)).astype(np.float32)
IMG_Y = (IMG_X[:, :4].mean((1, 2, 3)) > IMG_X[:, 4:].mean((1, 2, 3))).astype(np.int32)

# Small widths so one compile per model stays cheap; defaults are used where already small.
TINY_MODELS = {
    "mlp": {"hidden": (32,)},
    "cnn": {"channels": 8},
    "lenet5": {},
    "alexnet": {"width": 8},
    "resnet": {"depth": 8, "width": 4},
    "rnn": {"hidden": 8},
    "lstm": {"hidden": 8},
    "gru": {"hidden": 8},
    "transformer": {"d_model": 16, "depth": 1, "num_heads": 2},
}


def fit(split, steps=25, **config):
    config = {
        "model": "mlp",
        "model_hparams": {"hidden": (32,)},
        "loss": "softmax_cross_entropy",
        "optimizer": "adam",
        "learning_rate": 1e-2,
        "batch_size": len(split),
        **config,
    }
    return tk.train(split, num_classes=4, steps=steps, log_every=1, verbose=False, **config)


def assert_loss_decreases(run):
    losses = [row["loss"] for row in run.curve]
    assert np.all(np.isfinite(losses)), losses
    # The whole fixed batch is every step's batch, so the loss must go down.
    assert losses[-1] < 0.9 * losses[0], (losses[0], losses[-1])


def hparams_for(name):
    known = tk.models.models.entry(name).defaults
    return {k: v for k, v in TINY_MODELS.get(name, {}).items() if k in known}


@pytest.mark.parametrize("name", tk.models.names())
def test_every_model_trains_on_sequences(name):
    run = fit(Split(SEQ_X, SEQ_Y), model=name, model_hparams=hparams_for(name))
    assert_loss_decreases(run)
    logits = tk.predict(run, SEQ_X[:5])
    assert logits.shape == (5, 4) and logits.dtype == jnp.float32


@pytest.mark.parametrize("name", ["cnn", "resnet", "transformer", "lstm"])
def test_image_models_train_on_images(name):
    run = fit(Split(IMG_X, IMG_Y), model=name, model_hparams=hparams_for(name))
    assert_loss_decreases(run)


@pytest.mark.parametrize("name", tk.losses.names())
def test_every_loss_trains(name):
    assert_loss_decreases(fit(Split(SEQ_X, SEQ_Y), loss=name, learning_rate=3e-2))


@pytest.mark.parametrize("name", tk.optimizers.names())
def test_every_optimizer_trains(name):
    # Rates that suit each family on this problem: sign/normalised methods want smaller steps.
    lr = {"sgd": 0.2, "momentum": 0.05, "nesterov": 0.05, "lion": 3e-3, "muon": 0.02}
    run = fit(Split(SEQ_X, SEQ_Y), optimizer=name, learning_rate=lr.get(name, 1e-2), steps=40)
    assert_loss_decreases(run)


def test_batches_cover_each_epoch_once_and_resume_identically():
    idx = np.asarray(batch_indices(jax.random.key(0), 0, 13, 30, 100))
    stream = idx.reshape(-1)
    # 13 steps x 30 = 390 = 3 whole epochs of 100 plus 90: each epoch is a permutation.
    for epoch in range(3):
        assert sorted(stream[100 * epoch : 100 * (epoch + 1)]) == list(range(100))
    assert len(set(stream[300:])) == 90
    # The documented stream, built from JAX's own permutation (runs recorded before
    # toolkit.shuffle existed saw exactly these batches).
    epochs = [
        jax.random.permutation(jax.random.fold_in(jax.random.key(0), e), 100) for e in range(4)
    ]
    np.testing.assert_array_equal(stream, np.concatenate(epochs)[:390])
    later = np.asarray(batch_indices(jax.random.key(0), 7, 6, 30, 100))
    np.testing.assert_array_equal(later, idx[7:])


def test_train_is_the_documented_loop_of_single_steps():
    """An independent loop: ``train_step`` called once per step from Python, batches from
    JAX's own permutation of each epoch, keys from ``split(key(seed), 3)`` and dropout
    keys folded with the step. ``tk.train`` (chunks of 4 steps, a last chunk of 2) must
    end where it does, curve included."""
    from toolkit import training

    split = Split(SEQ_X, SEQ_Y)
    cfg = training.TrainConfig(
        model="mlp", model_hparams={"hidden": (16,), "dropout": 0.3}, optimizer="adam",
        learning_rate=1e-2, batch_size=12, steps=10, seed=7, log_every=4,
    )  # fmt: skip
    run = tk.train(split, num_classes=4, verbose=False, devices=1, **cfg.__dict__)

    model, tx = training.build_model(cfg, 4), training.build_optimizer(cfg)
    init_key, data_key, step_key = jax.random.split(jax.random.key(7), 3)
    state = training.init_state(model, tx, split.x[:12], key=init_key)
    step = jax.jit(training.make_train_step(model, training.build_loss(cfg), tx))
    order = np.concatenate(
        [jax.random.permutation(jax.random.fold_in(data_key, e), 32) for e in range(4)]
    )
    losses = []
    for t in range(10):
        idx = order[12 * t : 12 * (t + 1)]
        batch = (split.x[idx], split.y[idx])
        state, metrics = step(state, batch, jax.random.fold_in(step_key, t))
        losses.append(float(metrics["loss"]))
    for want, got in zip(jax.tree.leaves(state), jax.tree.leaves(run.state), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-6)
    assert [row["step"] for row in run.curve] == [4, 8, 10]
    chunk_means = [np.mean(losses[0:4]), np.mean(losses[4:8]), np.mean(losses[8:10])]
    np.testing.assert_allclose([row["loss"] for row in run.curve], chunk_means, rtol=1e-5)


def test_same_seed_same_numbers_and_other_seed_differs():
    split = Split(SEQ_X, SEQ_Y)
    a, b = fit(split, seed=3, batch_size=8), fit(split, seed=3, batch_size=8)
    c = fit(split, seed=4, batch_size=8)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert [r["loss"] for r in a.curve] == [r["loss"] for r in b.curve]
    assert not np.allclose(
        np.asarray(jax.tree.leaves(a.params)[0]), np.asarray(jax.tree.leaves(c.params)[0])
    )


def test_a_second_seed_reuses_the_compiled_program_with_its_own_numbers(monkeypatch):
    import collections

    from toolkit.population import program

    split = Split(SEQ_X, SEQ_Y)
    monkeypatch.setattr(program, "_PROGRAMS", collections.OrderedDict())
    fit(split, seed=5, batch_size=8, learning_rate=3e-3)  # builds and compiles the program
    built = []
    real = program.make_run_chunk
    monkeypatch.setattr(program, "make_run_chunk", lambda *a, **k: built.append(a) or real(*a, **k))
    reused = fit(split, seed=6, batch_size=8, learning_rate=3e-3)
    assert built == []  # same program: nothing traced or compiled again
    fit(split, seed=6, batch_size=8, learning_rate=4e-3)
    assert built  # another learning rate is another program
    monkeypatch.setattr(program, "_PROGRAMS", collections.OrderedDict())
    fresh_seed6 = fit(split, seed=6, batch_size=8, learning_rate=3e-3)
    for x, y in zip(
        jax.tree.leaves(reused.params), jax.tree.leaves(fresh_seed6.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_replaced_registry_entry_is_not_served_from_the_program_cache(monkeypatch):
    """Programs are reused across calls, but not once a model, loss, optimizer or schedule
    entry they were built from has been replaced in its registry (here the schedule: a
    constant rate of a tenth of the configured one)."""
    import dataclasses

    import optax

    from toolkit.optimizers import schedules

    split = Split(SEQ_X, SEQ_Y)
    before = fit(split, seed=2, batch_size=8, steps=6, learning_rate=5e-3)
    reference = fit(split, seed=2, batch_size=8, steps=6, learning_rate=5e-4)
    entry = schedules.schedules.entry("constant")
    tenth = dataclasses.replace(
        entry, factory=lambda *, learning_rate, **kw: optax.constant_schedule(learning_rate / 10)
    )
    monkeypatch.setitem(schedules.schedules._entries, "constant", tenth)
    after = fit(split, seed=2, batch_size=8, steps=6, learning_rate=5e-3)
    monkeypatch.undo()
    for a, r in zip(jax.tree.leaves(after.params), jax.tree.leaves(reference.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-6, atol=1e-7)
    changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before.params),
               jax.tree.leaves(after.params), strict=True)]  # fmt: skip
    assert any(changed)


@pytest.mark.parametrize("name", ["resnet", "transformer", "gru"])
def test_init_is_one_compiled_program_with_the_op_by_op_values(name, compiles):
    """The trainer initialises through one jitted program (not one compile per initialiser
    op and shape), and its params are those of ``init_state`` run op by op."""
    from toolkit import training

    split = Split(IMG_X, IMG_Y) if name in ("resnet", "transformer") else Split(SEQ_X, SEQ_Y)
    # Widths no other test uses, so that nothing is compiled already.
    hparams = {"resnet": {"depth": 8, "width": 3}, "gru": {"hidden": 7},
               "transformer": {"d_model": 12, "depth": 1, "heads": 2}}[name]  # fmt: skip
    run = fit(split, steps=1, model=name, model_hparams=hparams, seed=11)
    # init, the chunk, and a few key/data-slicing helpers; op by op it was 40-150.
    assert len(compiles) <= 8, len(compiles)

    cfg = run.config
    model, tx = training.build_model(cfg, 4), training.build_optimizer(cfg)
    init_key = jax.random.split(jax.random.key(11), 3)[0]
    # Called outside jit, init_state runs op by op (each op its own small program).
    reference = training.init_state(model, tx, split.x[: cfg.batch_size], key=init_key)
    # The trainer's own init (the program tk.train just used), for its population of one.
    program = program_for((cfg,), 4, sharding.plan(1, "none"), {})
    init_keys = member_keys(np.asarray([11], np.uint32))[0]
    stacked = program.init(init_keys, {}, split.x[: cfg.batch_size])
    compiled = jax.tree.map(lambda leaf: leaf[0], stacked)
    for want, got in zip(jax.tree.leaves(reference), jax.tree.leaves(compiled), strict=True):
        if name == "transformer":  # XLA folds normal(0.02)'s constants: 1 ulp at most
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=3e-7, atol=1e-9)
        else:
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_chunking_does_not_change_the_result():
    split = Split(SEQ_X, SEQ_Y)
    one = tk.train(
        split, num_classes=4, model="linear", steps=12, batch_size=8, log_every=12, verbose=False
    )
    many = tk.train(
        split, num_classes=4, model="linear", steps=12, batch_size=8, log_every=5, verbose=False
    )
    for x, y in zip(jax.tree.leaves(one.params), jax.tree.leaves(many.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


def test_batchnorm_statistics_update_and_are_used_at_eval():
    run = fit(Split(IMG_X, IMG_Y), model="resnet", model_hparams={"depth": 8, "width": 4}, steps=3)
    stats = run.state.model_state["batch_stats"]
    means = [
        np.asarray(v)
        for path, v in jax.tree_util.tree_leaves_with_path(stats)
        if "mean" in jax.tree_util.keystr(path)
    ]
    assert means and any(np.abs(m).max() > 0 for m in means)  # moved away from the zero init
    # Inference uses the running statistics: a single example gives the same logits alone
    # as inside a batch (batch statistics would make them depend on the batch).
    alone = tk.predict(run, IMG_X[:1])
    batched = tk.predict(run, IMG_X[:16])[:1]
    np.testing.assert_allclose(np.asarray(alone), np.asarray(batched), rtol=1e-5, atol=1e-5)


def test_schedule_free_runs_are_evaluated_at_the_averaged_point():
    run = fit(Split(SEQ_X, SEQ_Y), optimizer="schedule_free_adamw", steps=10)
    raw, averaged = jax.tree.leaves(run.state.params)[0], jax.tree.leaves(run.params)[0]
    assert not np.allclose(np.asarray(raw), np.asarray(averaged))


def test_evaluate_matches_numpy_on_the_predictions():
    split = Split(SEQ_X, SEQ_Y)
    run = fit(split, steps=5)
    result = tk.evaluate(run, split, batch_size=7).iloc[0]  # 32 = 4 x 7 + 4: a padded batch
    logits = np.asarray(run.apply(jnp.asarray(SEQ_X)), np.float64)
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == SEQ_Y), abs=1e-6)
    assert result["nll"] == pytest.approx(-np.mean(logp[np.arange(32), SEQ_Y]), rel=1e-4)
    assert result["num_examples"] == 32


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("model", "mpl", "Did you mean 'mlp'"),
        ("loss", "focal", "Valid loss names"),
        ("optimizer", "adma", "Did you mean 'adam'"),
        ("learning_rate", -0.1, "learning_rate must be a positive number, got -0.1"),
        ("batch_size", 1000, "batch_size 1000 is larger than the training set (32 examples)"),
        ("steps", 0, "steps must be a positive int, got 0"),
        ("model_hparams", {"widht": 3}, "has no hyperparameter 'widht'"),
    ],
)
def test_bad_input_fails_before_compute(option, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(Split(SEQ_X, SEQ_Y), **{option: value})


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(TypeError, match=r"unknown option 'lr'.*learning_rate"):
        tk.train(Split(SEQ_X, SEQ_Y), num_classes=4, lr=0.1)


def test_resumed_run_equals_uninterrupted_run():
    split = Split(SEQ_X, SEQ_Y)
    full = tk.train(
        split,
        num_classes=4,
        model="mlp",
        model_hparams={"hidden": (16,)},
        steps=20,
        batch_size=8,
        log_every=5,
        verbose=False,
    )
    saved = []
    tk.train(
        split,
        num_classes=4,
        model="mlp",
        model_hparams={"hidden": (16,)},
        steps=10,
        batch_size=8,
        log_every=5,
        verbose=False,
        callback=lambda row, st: saved.append(st),
    )
    # The first 10 steps of a 20-step run with a constant schedule are the same program.
    resumed = tk.train(
        split,
        num_classes=4,
        model="mlp",
        model_hparams={"hidden": (16,)},
        steps=20,
        batch_size=8,
        log_every=5,
        verbose=False,
        initial_state=saved[-1],
    )
    assert [r["step"] for r in resumed.curve] == [15, 20]
    for x, y in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_diverging_run_is_frozen_and_reported():
    run = fit(Split(SEQ_X * 1e3, SEQ_Y), optimizer="sgd", learning_rate=1e4, steps=30)
    step = run.info["diverged_step"]
    assert step is not None and 0 <= step < 30
    # Training stops at the chunk where it diverged; the kept parameters are finite.
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(run.params))
    healthy = fit(Split(SEQ_X, SEQ_Y), steps=5)
    assert healthy.info["diverged_step"] is None
