"""Uncertainty and OOD methods through the sweep: every scorer, conformal sets, AURC, MC
dropout and deep ensembles in evals.jsonl, re-evaluation without retraining, the report's
sections; references are numpy computations on the runs' own predictions."""

from __future__ import annotations

import io
import json
import math

import jax
import numpy as np
import pytest
from scipy.special import softmax

import toolkit as tk
from toolkit import store
from toolkit.sweep import SweepConfigError
from toolkit.sweep.defaults import base_config
from toolkit.sweep.reevaluation import reevaluate
from toolkit.sweep.runner import run_sweep
from toolkit.sweep.search import product


def config_with(**evals):
    config = base_config("uncertain", dataset="mnist1d")
    config.dataset_kwargs = {"num_samples": 800}
    config.train.update(
        {"steps": 60, "batch_size": 50, "log_every": 20, "learning_rate": 1e-2, "model": "mlp"}
    )
    config.model_hparams = {"mlp": {"hidden": (16,), "dropout": 0.2}}
    config.executor = "inline"
    config.evals = {
        "shifts": {"names": ("iid_noise",), "severities": (1, 4)},
        "ood": {"names": ("gaussian_noise",)},
        **evals,
    }
    return config


def two_seeds(config):
    return product(seed=[0, 1])


def sweep(results, config):
    out = io.StringIO()
    result = run_sweep(config, two_seeds, results_dir=results, progress=False, out=out)
    return result, out.getvalue()


EVERYTHING = {
    "ood": {"names": ("gaussian_noise",), "scorers": "all", "validation": ("uniform_noise",)},
    "conformal": {"type": "conformal", "methods": ("lac", "aps", "raps"), "alpha": 0.2},
    "selective": {"type": "selective", "scores": ("msp", "energy")},
    "mc_dropout": {"type": "mc_dropout", "samples": 3},
    "ensemble": {"type": "ensemble"},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    result, out = sweep(results, config_with(**EVERYTHING))
    assert result.count("trained") == 2
    return result, out, store.read_evals(result.experiment_dir)


def test_every_scorer_is_reported_with_hyperparameters_from_its_grid(swept):
    _, _, rows = swept
    (ood,) = [
        r
        for r in rows
        if r["kind"] == "ood" and r["checkpoint"] == "final" and r.get("predictor") is None
        and r["seed"] == 0
    ]  # fmt: skip
    for name in tk.ood.scorers.names():
        for metric in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "fpr_at_95_tpr_ood"):
            value = ood[f"{metric}_{name}"]
            assert value is not None and 0.0 <= value <= 1.0, (metric, name, value)
    chosen = json.loads(ood["ood_hparams"])
    for name, hparams in chosen.items():
        grid = tk.ood.scorers.entry(name).meta["grid"]
        for key, value in hparams.items():
            assert value in [v for v in grid[key]] or list(value) in [list(v) for v in grid[key]]
    # Only the test OOD set has rows: the validation one chose hyperparameters.
    assert {r["eval_set"] for r in rows if r["kind"] == "ood"} == {"gaussian_noise"}


def test_conformal_and_selective_columns_match_numpy(swept, tmp_path):
    result, _, rows = swept
    clean = [
        r
        for r in rows
        if r["eval_set"] == "clean" and r["split"] == "test" and r["checkpoint"] == "final"
        and r.get("predictor") is None
    ]  # fmt: skip
    for row in clean:
        for method in ("lac", "aps", "raps"):
            assert 0.0 <= row[f"coverage_{method}"] <= 1.0
            assert row[f"set_size_{method}"] > 0.0
        for score in ("msp", "energy"):
            assert 0.0 <= row[f"aurc_{score}"] <= 1.0
            assert row[f"e_aurc_{score}"] <= row[f"aurc_{score}"] + 1e-9

    # LAC coverage from the run's own logits: threshold from the validation split's
    # temperature-scaled softmax at the (n+1)(1-alpha)/n quantile (Sadinle et al. 2019).
    row = next(r for r in clean if r["seed"] == 0)
    run_dir = result.experiment_dir / "runs" / row["run_id"]
    run = tk.load_run(run_dir)
    from toolkit.sweep.config import trial_from_record
    from toolkit.sweep.data import load_dataset, training_data

    trial = trial_from_record(store.read_json(run_dir / "config.json"), row["run_id"])
    dataset = load_dataset(trial.dataset, dict(trial.dataset_kwargs))
    validation = training_data(dataset, dict(trial.data_axes), seed=0).validation
    t = row["temperature"]
    val_p = softmax(np.asarray(tk.predict(run, validation.x), np.float64) / t, axis=1)
    scores = 1 - val_p[np.arange(len(validation.y)), validation.y]
    n, alpha = len(scores), 0.2
    qhat = np.sort(scores)[math.ceil((n + 1) * (1 - alpha)) - 1]
    test_p = softmax(np.asarray(tk.predict(run, dataset.test.x), np.float64) / t, axis=1)
    sets = (1 - test_p) <= qhat
    assert row["coverage_lac"] == pytest.approx(
        sets[np.arange(len(sets)), dataset.test.y].mean(), abs=2e-3
    )
    assert row["set_size_lac"] == pytest.approx(sets.sum(1).mean(), abs=2e-2)


def test_mc_dropout_and_ensemble_rows(swept, tmp_path):
    result, out, rows = swept
    mc = [r for r in rows if r.get("predictor") == "mc_dropout"]
    single = [r for r in rows if r.get("predictor") is None]
    assert len(mc) == len(single) and {r["mc_samples"] for r in mc} == {3}
    ensemble = [r for r in rows if r.get("predictor") == "ensemble"]
    assert ensemble and {r["ensemble_size"] for r in ensemble} == {2}
    members = ensemble[0]["ensemble_members"]
    assert len(members) == 2 and ensemble[0]["run_id"] == members[0]
    assert "ensemble of 2" in out

    # The ensemble's clean accuracy and NLL: the mean of its members' softmax, in numpy.
    runs = [tk.load_run(result.experiment_dir / "runs" / m) for m in members]
    test = tk.data.load("mnist1d", num_samples=800).test
    p = np.mean([softmax(np.asarray(tk.predict(r, test.x), np.float64), 1) for r in runs], 0)
    (row,) = [
        r for r in ensemble
        if r["eval_set"] == "clean" and r["split"] == "test" and r["checkpoint"] == "final"
    ]  # fmt: skip
    assert row["accuracy"] == pytest.approx((p.argmax(1) == test.y).mean(), abs=1e-6)
    assert row["nll"] == pytest.approx(-np.log(p[np.arange(len(p)), test.y]).mean(), rel=1e-4)

    # A rerun trains nothing and evaluates no ensemble again.
    again, out = sweep(result.experiment_dir.parent, config_with(**EVERYTHING))
    assert again.count("trained") == 0 and "ensemble of" not in out
    assert len(store.read_evals(result.experiment_dir)) == len(rows)


def test_report_has_the_uncertainty_sections(swept, tmp_path):
    result, _, _ = swept
    report = tk.report.build_report(result.experiment_dir, figures=False)
    for block in ("ood_scorers_auroc", "ood_scorers_fpr_at_95_tpr", "predictors", "conformal",
                  "selective"):  # fmt: skip
        assert block in report.blocks, sorted(report.blocks)
    assert "ensemble of 2" in report.blocks["predictors"]
    assert "mc_dropout" in report.blocks["predictors"]
    # The main tables hold the runs themselves only: 2 runs, not 2 + MC + ensemble rows.
    assert report.blocks["runs"].startswith("2 runs")


def test_reevaluation_adds_scorers_to_finished_runs_without_training(tmp_path, monkeypatch):
    result, _ = sweep(tmp_path, config_with())
    before = store.read_evals(result.experiment_dir)
    assert "auroc_knn" not in before[0]
    import toolkit.training

    def no_training(*args, **kwargs):
        raise AssertionError("re-evaluation trained")

    monkeypatch.setattr(toolkit.training, "train_population", no_training)
    ood = {"names": ("gaussian_noise",), "scorers": ("knn", "mds")}
    evals = {"ood": ood | {"validation": ("uniform_noise",)}, "ensemble": {"type": "ensemble"}}
    written = reevaluate(result.experiment_dir, evals, progress=False, out=io.StringIO())
    assert written > 0
    rows = store.read_evals(result.experiment_dir)
    ood = [r for r in rows if r["kind"] == "ood" and r.get("predictor") is None]
    assert all(0 <= r["auroc_knn"] <= 1 and 0 <= r["auroc_mds"] <= 1 for r in ood)
    assert any(r.get("predictor") == "ensemble" for r in rows)


@pytest.mark.parametrize(
    ("evals", "message"),
    [
        (
            {
                "ood": {
                    "names": ("gaussian_noise", "uniform_noise"),
                    "validation": ("uniform_noise",),
                }
            },
            "both test and validation OOD",
        ),
        ({"ood": {"names": ("gaussian_noise",), "scorers": ("knn", "nope")}}, "nope"),
        ({"conformal": {"type": "conformal", "methods": ("lac", "thr2")}}, "thr2"),
        ({"conformal": {"type": "conformal", "alpha": 1.5}}, "alpha"),
        ({"selective": {"type": "selective", "scores": ("knn",)}}, "knn"),
        ({"mc_dropout": {"type": "mc_dropout", "samples": 0}}, "mc_samples"),
    ],
)
def test_bad_method_entries_are_refused_before_anything_is_written(tmp_path, evals, message):
    with pytest.raises(SweepConfigError, match=message):
        sweep(tmp_path, config_with(**evals))
    assert not (tmp_path / "uncertain").exists()


def test_mc_dropout_needs_a_model_with_dropout(tmp_path):
    config = config_with(mc_dropout={"type": "mc_dropout", "samples": 2})
    config.model_hparams = {"mlp": {"hidden": (16,)}}
    with pytest.raises(SweepConfigError, match="dropout > 0"):
        sweep(tmp_path, config)
    assert not (tmp_path / "uncertain").exists()


def test_tk_evaluate_takes_the_methods(tmp_path):
    ds = tk.data.with_validation(tk.data.load("digits"), 0.2, seed=0)
    run = tk.train(ds, model="mlp", loss="softmax_cross_entropy", optimizer="adam",
                   learning_rate=3e-3, batch_size=64, steps=150, seed=0,
                   model_hparams={"dropout": 0.2})  # fmt: skip
    table = tk.evaluate(
        run,
        ds.test,
        ood=["gaussian_noise"],
        ood_scores=["msp", "knn", "vim"],
        ood_validation=["uniform_noise"],
        train=ds.train,
        calibration=ds.validation,
        conformal=["aps"],
        selective=["msp"],
    )
    clean, ood = table.iloc[0], table.iloc[1]
    # Randomized APS (the default) may give an empty set; its coverage is near 1 - alpha.
    assert 0.8 <= clean["coverage_aps"] <= 1 and clean["set_size_aps"] > 0.5
    assert ood["auroc_knn"] > 0.5 and ood["auroc_vim"] > 0.5
    with pytest.raises(ValueError, match="calibration"):
        tk.evaluate(run, ds.test, conformal=["lac"])
    mc = tk.evaluate(run, ds.test, mc_samples=4, key=jax.random.key(1))
    again = tk.evaluate(run, ds.test, mc_samples=4, key=jax.random.key(1))
    assert mc.loc[0, "nll"] == again.loc[0, "nll"]  # keyed: reproducible
