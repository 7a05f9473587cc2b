"""tk.load_run and tk.load_results on a small finished sweep: the run comes back with the
curve and weights the sweep wrote, and the table has each hyperparameter in a column."""

import json

import numpy as np
import pytest

import toolkit as tk
from toolkit.sweep.defaults import base_config
from toolkit.sweep.runner import run_sweep
from toolkit.sweep.search import product


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    config = base_config("loaded", dataset="digits")
    config.train.update(
        {"model": "mlp", "steps": 60, "batch_size": 32, "log_every": 20, "learning_rate": 1e-2}
    )
    config.model_hparams = {"mlp": {"hidden": (16,)}}
    config.executor = "inline"
    config.evals = {"shifts": {"names": ("gaussian_noise",), "severities": (3,)}}
    losses = [
        {"loss": "softmax_cross_entropy"},
        {"loss": "softmax_focal", "loss_hparams": {"gamma": 1.0}},
        {"loss": "softmax_focal", "loss_hparams": {"gamma": 3.0}},
    ]
    root = tmp_path_factory.mktemp("results")
    run_sweep(config, lambda c: product(loss=losses, seed=(0,)), results_dir=root, progress=False)
    return root / "loaded"


def _run_dir(experiment, loss, gamma=None):
    for path in sorted((experiment / "runs").iterdir()):
        train = json.loads((path / "config.json").read_text())["train"]
        if train["loss"] == loss and train["loss_hparams"].get("gamma") == gamma:
            return path
    raise AssertionError((loss, gamma))


def test_a_loaded_run_has_the_sweeps_curve_and_gives_its_rows(experiment):
    path = _run_dir(experiment, "softmax_focal", 3.0)
    run = tk.load_run(path)
    assert run.config.loss == "softmax_focal" and run.config.loss_hparams["gamma"] == 3.0
    curve = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert run.curve == curve and [row["step"] for row in curve] == [20, 40, 60]
    rows = [json.loads(line) for line in (experiment / "evals.jsonl").read_text().splitlines()]
    [recorded] = [
        r
        for r in rows
        if r["run_id"] == path.name
        and r["eval_set"] == "clean"
        and r["split"] == "test"
        and r["checkpoint"] == "final"
    ]
    table = tk.evaluate(run, tk.data.load("digits").test)
    assert table.loc[0, "accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-6)
    best = tk.load_run(path, checkpoint="best")
    assert int(best.state.step) == run.info["best_step"] <= 60


def test_load_run_refuses_what_is_not_a_finished_run(experiment, tmp_path):
    with pytest.raises(ValueError, match="not a sweep run directory"):
        tk.load_run(experiment)
    with pytest.raises(ValueError, match="checkpoint 'last' is not one of"):
        tk.load_run(_run_dir(experiment, "softmax_cross_entropy"), checkpoint="last")
    copy = tmp_path / "loaded" / "runs" / "unfinished"
    copy.mkdir(parents=True)
    source = _run_dir(experiment, "softmax_cross_entropy")
    (copy / "config.json").write_text((source / "config.json").read_text())
    with pytest.raises(ValueError, match="not finished \\(no done marker\\)"):
        tk.load_run(copy)


def test_load_results_puts_each_hyperparameter_in_a_column(experiment):
    df = tk.load_results(experiment)
    assert {"loss_hparams", "loss_hparams.gamma", "model_hparams.hidden"} <= set(df.columns)
    clean = df[df.eval_set == "clean"]
    gammas = clean.groupby("loss_hparams.gamma")["accuracy"].count()
    assert gammas.to_dict() == {1.0: 1, 3.0: 1}  # cross-entropy has no gamma: NaN, dropped
    assert clean["loss_hparams.gamma"].isna().sum() == 1
    assert (df["model_hparams.hidden"].map(tuple) == (16,)).all()
    assert np.isfinite(df["accuracy"]).all()
