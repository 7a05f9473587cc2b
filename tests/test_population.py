"""Populations: every member of a vmapped population equals its solo ``tk.train`` run
(the independent reference: the unbatched trainer), for mixed seeds, losses, learning
rates, per-member labels, a diverging member, BatchNorm, and sharding over devices.
"""

import dataclasses
import io
import json

import jax
import numpy as np
import pytest

import toolkit as tk
from toolkit import store
from toolkit.data import Split
from toolkit.population import choose_mode, group_into_populations, plan, population_key
from toolkit.training import TrainConfig, train_population

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 40)).astype(np.float32)
# Labels are a function of the inputs, so training makes progress on them.
Y = ((X[:, :10].sum(1) > 0).astype(np.int32) + 2 * (X[:, 10:20].sum(1) > 0)).astype(np.int32)
SPLIT = Split(X, Y)
MLP = {"model": "mlp", "model_hparams": {"hidden": (16,)}, "batch_size": 16, "steps": 12}


LINEAR = {"model": "linear", "model_hparams": {}}
# Short sequences keep the convolutional models' compiles cheap.
SHORT = Split(X[:, :12], Y)


def config(**overrides):
    return TrainConfig(**{**MLP, "log_every": 6, "learning_rate": 1e-2, **overrides})


def solo(cfg, split=SPLIT):
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return tk.train(split, num_classes=4, verbose=False, **fields)


def leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def assert_same_run(member, reference, rtol=1e-5):
    assert jax.tree.structure(member.state) == jax.tree.structure(reference.state)
    assert_trees_close(member.params, reference.params, rtol=rtol)
    assert_trees_close(member.state.model_state, reference.state.model_state, rtol=rtol)
    assert int(member.state.step) == int(reference.state.step)
    assert member.info["diverged_step"] == reference.info["diverged_step"]
    assert [r["step"] for r in member.curve] == [r["step"] for r in reference.curve]
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(
            [r[key] for r in member.curve], [r[key] for r in reference.curve], rtol=rtol
        )


def assert_differ(a, b):
    assert not all(np.allclose(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))


def test_members_equal_their_solo_runs():
    # Rate and (decoupled) weight decay vary together; None is adamw's default 1e-4.
    configs = [
        config(seed=seed, loss=loss, loss_hparams=hparams, learning_rate=lr, weight_decay=wd,
               optimizer="adamw", **LINEAR)
        for seed in (0, 1)
        for loss, hparams in (("softmax_cross_entropy", {}), ("softmax_focal", {"gamma": 2.0}))
        for lr, wd in ((1e-2, None), (3e-3, 0.5))
    ]  # fmt: skip
    runs = train_population(SPLIT, configs, num_classes=4)
    assert len(runs) == 8
    for cfg, run in zip(configs, runs, strict=True):
        assert run.config == cfg
        assert_same_run(run, solo(cfg))
        assert run.info["population_size"] == 8 and run.info["device_count"] == 1
        assert run.info["wall_time_s"] == runs[0].info["wall_time_s"]
    # Each varied field changes the result, so the comparison above could fail.
    for i, j in ((0, 1), (0, 2), (0, 4)):  # learning rate and decay, loss, seed
        assert_differ(runs[i].params, runs[j].params)


def test_member_labels_equal_a_solo_run_on_the_relabelled_split():
    cfg = config(model="cnn", model_hparams={"channels": 4}, steps=6, log_every=None)
    permuted = RNG.permutation(Y)
    runs = train_population(SHORT, [cfg, cfg], num_classes=4, train_labels=np.stack([Y, permuted]))
    assert_differ(runs[0].params, runs[1].params)
    assert_same_run(runs[1], solo(cfg, Split(SHORT.x, permuted)))


def test_a_diverging_member_freezes_and_the_others_go_on():
    # SGD at rate 1e4 on inputs scaled by 100 overflows within a few steps. Members also
    # draw their own dropout masks.
    split = Split(100 * X, Y)
    mlp = {"hidden": (16,), "dropout": 0.2}
    configs = [config(optimizer="sgd", learning_rate=lr, seed=s, log_every=4, model_hparams=mlp)
               for lr, s in ((1e-3, 0), (1e4, 0), (1e-3, 1))]  # fmt: skip
    seen = []
    runs = train_population(
        split, configs, num_classes=4, callback=lambda rows, states: seen.append(rows)
    )
    diverged = runs[1]
    assert diverged.info["diverged_step"] is not None
    assert all(np.isfinite(leaf).all() for leaf in leaves(diverged.params))
    # The frozen state is the last finite one: it is what tk.train stops with. Its weights
    # are ~1e21 after an explosion that amplifies rounding, hence the looser tolerance.
    assert_same_run(diverged, solo(configs[1], split), rtol=1e-3)
    for k in (0, 2):
        assert runs[k].info["diverged_step"] is None and int(runs[k].state.step) == 12
        assert_same_run(runs[k], solo(configs[k], split))
    # After its diverging chunk the member gets no more rows.
    chunk = diverged.info["diverged_step"] // 4
    assert [rows[1] is None for rows in seen] == [i > chunk for i in range(3)]


def test_batchnorm_population_matches_solo():
    cfg = config(model="resnet", model_hparams={"depth": 8, "width": 0.25}, steps=2, log_every=2)
    runs = train_population(SHORT, [cfg, dataclasses.replace(cfg, seed=1)], num_classes=4)
    stats = [run.state.model_state["batch_stats"] for run in runs]
    assert_differ(stats[0], stats[1])
    assert_same_run(runs[1], solo(runs[1].config, SHORT))


def test_resume_from_callback_states_gives_the_same_numbers(capsys):
    configs = [config(seed=0, **LINEAR), config(seed=1, learning_rate=3e-3, **LINEAR)]
    saved = []
    whole = train_population(
        SPLIT, configs, num_classes=4, callback=lambda rows, states: saved.append(states)
    )
    assert [int(s.step) for s in saved[0]] == [6, 6]
    resumed = train_population(SPLIT, configs, num_classes=4, initial_states=saved[0], verbose=True)
    for a, b in zip(resumed, whole, strict=True):
        assert_trees_close(a.params, b.params)
        assert [r["step"] for r in a.curve] == [12]
    assert "step      12/12  mean loss" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"healthy initial_states must share one step"):
        train_population(SPLIT, configs, num_classes=4, initial_states=[saved[0][0], saved[1][1]])


def test_a_decay_0_member_of_a_population_varying_decay_resumes_alone_and_back(tmp_path):
    """With members varying weight decay, an L2-coupled optimizer keeps a decay step in
    every member's optimizer state, the decay-0 member's too, which its run alone does not
    have. Its checkpoint still restores (saved_layouts), resumes alone, and a state from a
    run alone resumes in such a population, with the numbers of an uninterrupted run."""
    from toolkit.sweep.checkpoint import Checkpoints, saved_layouts

    configs = [config(weight_decay=0.0, optimizer="sgd", **LINEAR),
               config(weight_decay=1e-3, optimizer="sgd", **LINEAR)]  # fmt: skip
    saved = []
    whole = train_population(
        SPLIT, configs, num_classes=4, callback=lambda rows, states: saved.append(states)
    )
    member = saved[0][0]  # step 6 of 12, the population's layout
    layouts = saved_layouts(configs[0], 4, (40,))
    assert len(layouts) == 2
    assert jax.tree.structure(member) != jax.tree.structure(layouts[0])
    checkpoints = Checkpoints(tmp_path / "ckpt")
    checkpoints.save(member)
    restored = checkpoints.restore(layouts)
    assert restored is not None and checkpoints.steps() == [6]  # read, not deleted
    fields = {f.name: getattr(configs[0], f.name) for f in dataclasses.fields(configs[0])}
    alone = tk.train(SPLIT, num_classes=4, verbose=False, initial_state=restored, **fields)
    assert_trees_close(alone.params, whole[0].params)
    assert jax.tree.structure(alone.state) == jax.tree.structure(layouts[0])
    # And back: a run alone, stopped at step 6, resumes as the population's decay-0 member.
    half = tk.train(SPLIT, num_classes=4, verbose=False, **{**fields, "steps": 6})
    rejoined = train_population(
        SPLIT, configs, num_classes=4, initial_states=[half.state, saved[0][1]]
    )
    assert_trees_close(rejoined[0].params, whole[0].params)
    assert_trees_close(rejoined[1].params, whole[1].params)


def test_sharded_population_equals_unsharded():
    configs = [
        config(seed=s, learning_rate=lr, **LINEAR)
        for s, lr in ((0, 1e-2), (1, 3e-3), (2, 1e-2), (3, 3e-3), (4, 1e-2), (5, 3e-3))
    ]
    single = train_population(SPLIT, configs, num_classes=4)
    assert {run.info["population_sharding"] for run in single} == {"none"}
    for size in (4, 6):
        sharded = train_population(SPLIT, configs[:size], num_classes=4, shard=True)
        assert len(sharded) == size
        for a, b in zip(sharded, single, strict=False):
            assert a.info["device_count"] == 4 and a.info["population_sharding"] == "population"
            assert_trees_close(a.params, b.params)
            np.testing.assert_allclose(a.curve[-1]["loss"], b.curve[-1]["loss"], rtol=1e-5)
    # Two members on four devices: "auto" splits each member's batch of 16 over all four.
    data = train_population(SPLIT, configs[:2], num_classes=4, shard="auto")
    for a, b in zip(data, single, strict=False):
        assert a.info["population_sharding"] == "data" and a.info["device_count"] == 4
        assert a.params["head"]["kernel"].sharding.is_fully_replicated
        assert len(a.params["head"]["kernel"].sharding.device_set) == 4
        assert_trees_close(a.params, b.params)
        np.testing.assert_allclose(
            [r["loss"] for r in a.curve], [r["loss"] for r in b.curve], rtol=1e-5
        )


@pytest.mark.parametrize(
    ("members", "devices", "batch", "mode"),
    [(5, 1, 16, "none"), (4, 4, 16, "population"), (9, 4, 16, "population"),
     (3, 4, 16, "data"), (1, 4, 100, "data"), (3, 4, 50, "population"), (1, 2, 7, "population")],
)  # fmt: skip
def test_auto_rule(members, devices, batch, mode):
    # The documented rule, case by case: whole members per device when every device gets
    # one, data parallel when members are too few and the batch splits evenly.
    assert choose_mode(members, devices, batch) == mode


def test_placement_rule():
    assert jax.local_device_count() == 4  # tests/conftest.py simulates four CPU devices
    six = plan(6, True)
    # Six members on four devices: padded with two copies of member 0 to eight slots.
    assert six.order == (0, 1, 2, 3, 4, 5, 0, 0) and six.device_count == 4
    stacked = six.stacked(np.arange(8 * 3, dtype=np.float32).reshape(8, 3))
    assert {shard.data.shape for shard in stacked.addressable_shards} == {(2, 3)}
    assert len({shard.device for shard in stacked.addressable_shards}) == 4
    assert plan(2, True).device_count == 2 and plan(2, True).order == (0, 1)
    assert plan(5, False).mesh is None and plan(5, "auto", 16).device_count == 4
    # Fewer members than devices: data parallel over all four when the batch allows it,
    # else the population axis over as many devices as members.
    data = plan(2, "auto", 16)
    assert (data.mode, data.device_count, data.order) == ("data", 4, (0, 1))
    replicated = data.stacked(np.zeros((2, 3), np.float32))
    assert {shard.data.shape for shard in replicated.addressable_shards} == {(2, 3)}
    assert (plan(2, "auto", 50).mode, plan(2, "auto", 50).device_count) == ("population", 2)
    with pytest.raises(ValueError, match=r"shard must be one of .*'data'; got 'yes'"):
        plan(2, "yes")
    with pytest.raises(ValueError, match="batch_size 50 is not a multiple of 4"):
        plan(2, "data", 50)
    with pytest.raises(ValueError, match="shard='auto' needs the members' batch_size"):
        plan(2, "auto")


def test_sweep_runner_picks_the_placement_per_population(tmp_path):
    """The population executor on four devices: four seeds of one program train with the
    population axis split, two seeds of another (batch 8, a multiple of 4) data-parallel."""
    from toolkit.sweep.defaults import base_config
    from toolkit.sweep.runner import run_sweep

    cfg = base_config("placement", dataset="mnist1d")
    cfg.dataset_kwargs = {"num_samples": 200}
    cfg.train.update(model="linear", steps=4, log_every=2, batch_size=8)
    cfg.executor = "population"

    def sweep_fn(_):
        return [{"seed": s} for s in range(2)] + [{"seed": s, "batch_size": 16} for s in range(4)]

    result = run_sweep(cfg, sweep_fn, results_dir=tmp_path, progress=False, out=io.StringIO())
    assert result.count("trained") == 6, result.failed
    placed = {}
    for run_dir in store.run_dirs(result.experiment_dir):
        record = json.loads(run_dir.provenance.read_text())
        batch = json.loads(run_dir.config.read_text())["train"]["batch_size"]
        placed.setdefault(batch, set()).add((record["population_sharding"], record["device_count"]))
    assert placed == {8: {("data", 4)}, 16: {("population", 4)}}


@pytest.mark.parametrize(
    ("field", "overrides"),
    [("batch_size", {"batch_size": 8}), ("model", {"model": "linear", "model_hparams": {}}),
     ("optimizer", {"optimizer": "sgd"}), ("steps", {"steps": 6}),
     ("model_hparams", {"model_hparams": {"hidden": (8,)}}), ("grad_clip", {"grad_clip": 1.0}),
     ("schedule", {"schedule": "cosine"}), ("steps_per_dispatch", {"log_every": 3})],
)  # fmt: skip
def test_members_that_cannot_share_a_program_are_refused(field, overrides):
    other = dataclasses.replace(config(), **overrides)
    with pytest.raises(ValueError, match=f"agree on '{field}': member 0 has .* member 1 has"):
        train_population(SPLIT, [config(), other], num_classes=4)


def test_bad_input_is_refused_before_compute(monkeypatch):
    def no_compute(*args, **kwargs):
        raise AssertionError("compute started before the inputs were checked")

    monkeypatch.setattr("toolkit.training.program_for", no_compute)
    with pytest.raises(ValueError, match="population member 1: unknown loss 'focal'"):
        train_population(SPLIT, [config(), config(loss="focal")], num_classes=4)
    with pytest.raises(ValueError, match=r"train_labels must have shape .* \(2, 64\), got \(64,\)"):
        train_population(SPLIT, [config(), config()], num_classes=4, train_labels=Y)
    with pytest.raises(ValueError, match=r"train_labels must lie in \[0, 4\)"):
        train_population(SPLIT, [config()], num_classes=4, train_labels=Y[None] + 1)
    with pytest.raises(ValueError, match="learning_rate is a TrainConfig field"):
        train_population(SPLIT, [config(optimizer_hparams={"learning_rate": 0.1})], num_classes=4)
    with pytest.raises(ValueError, match="needs at least one config"):
        train_population(SPLIT, [], num_classes=4)


def test_population_key_fills_in_defaults_and_ignores_member_fields():
    base = config()
    assert population_key(base) == population_key(
        dataclasses.replace(base, model_hparams={"hidden": [16], "dropout": 0.0})
    )
    for member_field in ({"seed": 3}, {"loss": "softmax_focal"}, {"learning_rate": 0.5},
                         {"weight_decay": 1e-3}, {"loss_hparams": {"gamma": 1.0}}):  # fmt: skip
        assert population_key(dataclasses.replace(base, **member_field)) == population_key(base)
    assert population_key(base) != population_key(dataclasses.replace(base, warmup_steps=2))


def test_group_into_populations():
    a, b, c = config(), config(batch_size=8), config(model="linear", model_hparams={})
    configs = [a, b, dataclasses.replace(a, seed=1), c, dataclasses.replace(b, seed=2), a, a]
    assert group_into_populations(configs) == [[0, 2, 5, 6], [1, 4], [3]]
    assert group_into_populations(configs, max_size=3) == [[0, 2, 5], [6], [1, 4], [3]]
    assert group_into_populations([]) == []
    with pytest.raises(ValueError, match="max_size must be a positive int or None, got 0"):
        group_into_populations(configs, max_size=0)
