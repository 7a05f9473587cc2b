"""Tuned sweeps: trials drawn from names and indices, cell/trial/role tags, phase 2 planned
from recorded rows, resume after a kill, and config errors before any compute."""

import io
import json
import math
import zlib

import numpy as np
import pandas as pd
import pytest
from test_sweep import reference_run_id, tiny_config

from toolkit.sweep import runner as runner_module
from toolkit.sweep.config import SweepConfigError, Trial, trial_from_record
from toolkit.sweep.runner import plan, run_sweep
from toolkit.sweep.search import product
from toolkit.sweep.tuning import Tune, plan_seeds, plan_tuning

CELLS = ("mlp/adam/softmax_focal", "mlp/adam/gce")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def tuned_config(trials=4, **tune):
    config = tiny_config()
    config.evals = {}
    config.losses = ("softmax_focal", "gce")
    config.seeds = (0, 1)
    config.tune.trials = trials
    config.tune.update(tune)
    return config


def seeded_sweep(config):
    return product(loss=config.losses, seed=config.seeds)


def draw(name, index, seed=1000):
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


def tuning_trials(config):
    trials, _ = plan(config, seeded_sweep)
    return {(t.tags["cell"], t.tags["trial"]): t for t in trials}


# -- phase 1 ---------------------------------------------------------------------------------


def test_trials_are_drawn_from_name_and_index_seeded_generators():
    trials = tuning_trials(tuned_config(trials=4))
    assert sorted(trials) == sorted((cell, i) for cell in CELLS for i in range(4))
    for (cell, index), trial in trials.items():
        assert trial.train["seed"] == 1000  # tune.seed, not a seed of the sweep
        assert trial.tags == {"cell": cell, "trial": index, "role": "tune"}
        hparams = trial.train["loss_hparams"]
        if index == 0:  # the config's own values and the registry defaults
            assert trial.train["learning_rate"] == 1e-2
            assert hparams == ({"gamma": 2.0, "alpha": None} if "focal" in cell else {"q": 0.7})
            continue
        # adam's space: log-uniform on [1e-4, 3e-2]
        u = draw("learning_rate", index).uniform(math.log(1e-4), math.log(3e-2))
        assert trial.train["learning_rate"] == pytest.approx(math.exp(u), rel=1e-12)
        if "focal" in cell:  # gamma ~ U[0, 5), alpha untouched
            gamma = draw("loss_hparams.gamma", index).uniform(0.0, 5.0)
            assert hparams == {"gamma": pytest.approx(gamma, rel=1e-12), "alpha": None}
        else:  # q ~ U[0.1, 1)
            assert hparams == {"q": pytest.approx(draw("loss_hparams.q", index).uniform(0.1, 1.0))}
    # One cell's trial i and another's share the learning-rate draw (same name, same index).
    assert (
        trials[(CELLS[0], 2)].train["learning_rate"] == trials[(CELLS[1], 2)].train["learning_rate"]
    )


def test_draws_do_not_change_when_trials_seeds_or_hparams_are_added():
    few = tuning_trials(tuned_config(trials=3))
    config = tuned_config(trials=5, over=("learning_rate", "loss", "weight_decay", "optimizer"))
    config.seeds = (0, 1, 2, 3)
    more = tuning_trials(config)
    for key, trial in few.items():
        assert more[key].train["learning_rate"] == trial.train["learning_rate"]
        assert more[key].train["loss_hparams"] == trial.train["loss_hparams"]
    # The added hyperparameters are drawn too (trial 0 keeps the defaults).
    assert more[(CELLS[0], 0)].train["weight_decay"] is None
    b2 = (0.98, 0.99, 0.999)[int(draw("optimizer_hparams.b2", 3).integers(3))]
    assert more[(CELLS[0], 3)].train["optimizer_hparams"]["b2"] == b2
    wd = math.exp(draw("weight_decay", 4).uniform(math.log(1e-6), math.log(1e-2)))
    assert more[(CELLS[1], 4)].train["weight_decay"] == pytest.approx(wd)


def test_tags_are_not_part_of_the_run_id_and_round_trip_through_config_json():
    trial = tuning_trials(tuned_config(trials=2))[(CELLS[0], 1)]
    assert trial.run_id == reference_run_id(trial)
    payload = json.loads(json.dumps(trial.to_json()))
    assert payload["tags"] == {"cell": CELLS[0], "trial": 1, "role": "tune"}
    assert Trial.from_json(payload) == trial
    assert trial_from_record(payload, trial.run_id).tags == trial.tags


def test_repeated_draws_of_a_small_choice_space_are_one_run():
    config = tuned_config(trials=6, over=("optimizer",))
    config.losses = ("softmax_focal",)
    trials = tuning_trials(config)
    values = (0.98, 0.99, 0.999)
    b2 = [0.999] + [values[int(draw("optimizer_hparams.b2", i).integers(3))] for i in range(1, 6)]
    first = sorted({b: i for i, b in reversed(list(enumerate(b2)))}.values())
    assert sorted(i for _, i in trials) == first
    assert len({t.run_id for t in trials.values()}) == len(trials)


def test_no_tuning_is_the_untuned_sweep():
    untuned, _ = plan(tuned_config(trials=0), seeded_sweep)
    config = tuned_config(trials=0)
    del config["tune"]
    assert [t.run_id for t in untuned] == [t.run_id for t in plan(config, seeded_sweep)[0]]
    assert all(t.tags == {} for t in untuned)
    assert sorted(t.train["seed"] for t in untuned) == [0, 0, 1, 1]


# -- phase 2 ---------------------------------------------------------------------------------


def planned_cells(config):
    from toolkit.sweep.config import expand

    tune = Tune.from_config(config)
    cells, _ = plan_tuning(config, expand(config, seeded_sweep(config)), tune)
    return tune, cells


def rows_for(cells, scores, status=None):
    """Hand-made evaluation rows: a clean validation row per tuning run with the given
    accuracy, and a test row that would pick otherwise."""
    rows = []
    for cell in cells:
        for index, trial in cell.trials.items():
            accuracy = scores[(cell.label, index)]
            state = (status or {}).get((cell.label, index), "finished")
            common = {"run_id": trial.run_id, "kind": "clean", "status": state}
            rows.append({**common, "split": "validation", "accuracy": accuracy})
            rows.append({**common, "split": "test", "accuracy": 1.0 - accuracy})
    return pd.DataFrame(rows)


def test_phase_two_runs_each_rules_pick_at_every_seed_of_the_sweep():
    tune, cells = planned_cells(tuned_config(trials=3, select=("id_val", "default")))
    focal, gce = (next(c for c in cells if c.label == label) for label in CELLS)
    scores = {
        (CELLS[0], 0): 0.5, (CELLS[0], 1): 0.9, (CELLS[0], 2): 0.7,
        (CELLS[1], 0): 0.8, (CELLS[1], 1): 0.2, (CELLS[1], 2): 0.3,
    }  # fmt: skip
    done = {t.run_id for c in cells for t in c.trials.values()}
    seeds = plan_seeds(cells, rows_for(cells, scores), done, tune)
    picks = {r: dict(zip(t["cell"], t["trial"], strict=True)) for r, t in seeds.selections.items()}
    assert picks == {"id_val": {CELLS[0]: 1, CELLS[1]: 0}, "default": {CELLS[0]: 0, CELLS[1]: 0}}
    # id_val and default both pick gce's trial 0: its seed runs are planned once.
    expected = [
        (focal, 1, 0),
        (focal, 1, 1),
        (gce, 0, 0),
        (gce, 0, 1),
        (focal, 0, 0),
        (focal, 0, 1),
    ]
    planned = {(t.tags["cell"], t.tags["trial"], t.train["seed"]): t for t in seeds.trials}
    assert len(seeds.trials) == len(planned) == len(expected)
    for cell, index, seed in expected:
        trial = planned[(cell.label, index, seed)]
        assert trial.train == {**cell.trials[index].train, "seed": seed}
        assert trial.tags == {"cell": cell.label, "trial": index, "role": "seed"}
        assert trial.run_id == reference_run_id(trial)
    assert seeds.unselected == {"id_val": [], "default": []} and seeds.waiting == []


def test_cells_without_an_eligible_or_finished_tuning_run_get_no_seed_runs():
    tune, cells = planned_cells(tuned_config(trials=2))
    scores = {(label, i): 0.5 for label in CELLS for i in range(2)}
    diverged = {(CELLS[0], 0): "diverged", (CELLS[0], 1): "collapsed"}
    done = {t.run_id for c in cells for t in c.trials.values()}
    seeds = plan_seeds(cells, rows_for(cells, scores, diverged), done, tune)
    assert seeds.unselected == {"id_val": [CELLS[0]]}
    assert {t.tags["cell"] for t in seeds.trials} == {CELLS[1]}
    # A cell with a tuning run still to do waits: no selection from part of its trials.
    gce_trial = next(c for c in cells if c.label == CELLS[1]).trials[1]
    seeds = plan_seeds(cells, rows_for(cells, scores), done - {gce_trial.run_id}, tune)
    assert seeds.waiting == [CELLS[1]] and {t.tags["cell"] for t in seeds.trials} == {CELLS[0]}


# -- end to end: both phases, resume ----------------------------------------------------------


def test_a_killed_tuned_sweep_resumes_without_redoing_anything(tmp_path, monkeypatch):
    config = tuned_config(trials=2, select=("default",))
    out = io.StringIO()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between the phases

    with monkeypatch.context() as patch:
        patch.setattr(runner_module, "plan_seeds", killed)
        with pytest.raises(KeyboardInterrupt):
            run_sweep(config, seeded_sweep, results_dir=tmp_path, progress=False, out=out)
    first = run_sweep(config, seeded_sweep, results_dir=tmp_path, progress=False, out=out)
    assert first.count("skipped") == 4  # the tuning runs, finished before the kill
    assert first.count("trained") == 4  # default's trial 0 of 2 cells at seeds 0 and 1
    seed_runs = [t for t in first.trials if t.tags["role"] == "seed"]
    assert sorted((t.tags["cell"], t.train["seed"]) for t in seed_runs) == sorted(
        (cell, seed) for cell in CELLS for seed in (0, 1)
    )
    plan_json = json.loads((first.experiment_dir / "sweep.json").read_text())["tuning"]
    assert [p["trial"] for p in plan_json["selection"]["default"]] == [0, 0]
    again = run_sweep(config, seeded_sweep, results_dir=tmp_path, progress=False, out=out)
    assert again.count("trained") == 0 and again.count("skipped") == 8
    assert json.loads((first.experiment_dir / "sweep.json").read_text())["tuning"] == plan_json
    for trial in seed_runs:
        record = json.loads(
            (first.experiment_dir / "runs" / trial.run_id / "config.json").read_text()
        )
        assert record["tags"] == trial.tags


# -- config errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"over": ("learning_rate", "lossy")}, r"unknown name 'lossy'; valid: learning_rate, "),
        ({"select": ("best",)}, r"unknown name 'best'; valid: id_val, oracle, default"),
        ({"trials": -1}, r"trials must be an int >= 0 \(0: no tuning\), got -1"),
        ({"trials": 2.5}, r"got 2.5"),
        ({"trials": True}, r"got True"),
        ({"checkpoint": "last"}, r"checkpoint must be one of final, best, got 'last'"),
        ({"seed": 0}, r"tune.seed 0 is also a seed of the sweep"),
        ({"over": ()}, r"over is empty"),
    ],
)
def test_bad_tune_options_fail_before_any_write(tmp_path, tune, message):
    config = tuned_config(trials=3)
    options = {**config.tune.to_dict(), **tune}
    del config["tune"]  # a plain dict: ConfigDict's own type checks would catch some first
    config.tune = options
    with pytest.raises(SweepConfigError, match=message):
        run_sweep(config, seeded_sweep, results_dir=tmp_path / "results", progress=False)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("over", "size"), [(("learning_rate", "loss"), 3), (("model",), 1)])
def test_population_executor_shares_a_program_across_lr_and_loss_draws_only(tmp_path, over, size):
    """On CPU, the accelerator path: a cell's learning-rate and loss draws train as one
    population; model draws change the program, so each trains alone."""
    config = tuned_config(trials=3, over=over, select=("default",))
    config.losses, config.seeds, config.executor = ("softmax_focal",), (0,), "population"
    result = run_sweep(config, seeded_sweep, results_dir=tmp_path, progress=False)
    assert result.count("trained") == 4, result.failed  # 3 tuning runs, 1 seed run
    for trial in result.trials:
        run = tmp_path / "tiny" / "runs" / trial.run_id
        provenance = json.loads((run / "provenance.json").read_text())
        assert provenance["population_size"] == (size if trial.tags["role"] == "tune" else 1)
