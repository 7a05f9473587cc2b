"""The report under the evaluation protocol: selection rules, run status, temperature-scaled
metrics, checkpoints and paired significance tests.

A hand-built tuned results directory (two cells of tuning runs, seed runs at the picks,
validation rows, a collapsed and a failed run) whose expected picks and means are worked
out by hand; statistics are checked against scipy and hand-computed Holm values.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import Experiment

from experiments import report as report_cli
from toolkit import store
from toolkit.report import ReportError, ReportWarning, build_report, load_results
from toolkit.report.significance import compare, holm, paired
from toolkit.store import layout

CE, FOCAL = "softmax_cross_entropy", "softmax_focal"
SHORT = {CE: "ce", FOCAL: "focal"}
SEEDS = (0, 1, 2)


def protocol_row_key(monkeypatch) -> None:
    """The protocol's row key (run_id, checkpoint, split, eval_set, severity): until the
    store's key carries checkpoint and split, a validation row would replace the test row
    of the same eval set. A no-op once it does."""
    if "split" in layout.EVAL_KEY:
        return
    original = layout._key

    def key(row):
        base = original(row)
        if base is None:
            return None
        return (*base, row.get("checkpoint", "final"), row.get("split", "test"))

    monkeypatch.setattr(layout, "_key", key)


@pytest.fixture(autouse=True)
def row_key(monkeypatch):
    protocol_row_key(monkeypatch)


# Tuning runs: (loss, trial) -> ((learning_rate, weight_decay), clean validation acc, shifted
# validation acc). id_val picks CE trial 0 (0.8 > 0.7) and focal trial 1 (0.9 > 0.6); oracle
# picks CE trial 1 (0.6 > 0.5) and focal trial 0 (0.4 > 0.3). CE's trials differ only in the
# weight decay, which rows do not carry (config.json does).
TUNING = {
    (CE, 0): ((0.01, None), 0.8, 0.5),
    (CE, 1): ((0.01, 1e-4), 0.7, 0.6),
    (FOCAL, 0): ((0.01, None), 0.6, 0.4),
    (FOCAL, 1): ((0.001, None), 0.9, 0.3),
}
PICKS = {"id_val": {CE: 0, FOCAL: 1}, "oracle": {CE: 1, FOCAL: 0}}
# Seed runs are written for the id_val picks of both cells and the oracle pick of CE only:
# oracle's focal seeds are missing. Focal seed 2 at lr 0.001 collapses.
SEED_RUNS = [(CE, (0.01, None)), (FOCAL, (0.001, None)), (CE, (0.01, 1e-4))]
COLLAPSED = (FOCAL, (0.001, None), 2)


class Tuned:
    """Writes the directory; ``truth[(loss, (lr, wd), seed)]`` holds each seed run's
    numbers."""

    def __init__(self, root: Path):
        self.dir = root / "tuned"
        (self.dir / "runs").mkdir(parents=True)
        self.lines: list[str] = []
        self.truth: dict[tuple, dict] = {}
        self.rng = np.random.default_rng(3)
        sweep = {"experiment": "tuned", "tune": {"trials": 2, "select": ["id_val", "oracle"]}}
        (self.dir / "sweep.json").write_text(json.dumps(sweep))
        for (loss, trial), (hp, val, shifted) in TUNING.items():
            self.run(loss, hp, 1000, role="tune", trial=trial, val=(val, shifted))
        for loss, hp in SEED_RUNS:
            trial = next(t for (name, t), v in TUNING.items() if (name, v[0]) == (loss, hp))
            for seed in SEEDS:
                self.truth[loss, hp, seed] = self.run(loss, hp, seed, role="seed", trial=trial)
        failed = self.dir / "runs" / "f00"
        failed.mkdir()
        (failed / "config.json").write_text(
            json.dumps({"train": {"model": "mlp", "loss": FOCAL, "seed": 1}})
        )
        error = {"type": "FloatingPointError", "message": "boom at step 3", "traceback": "",
                 "time": "2026-12-05T00:00:00"}  # fmt: skip
        (failed / "error.json").write_text(json.dumps(error))
        (self.dir / "evals.jsonl").write_text("".join(line + "\n" for line in self.lines))

    def run(self, loss, hp, seed, *, role, trial, val=None) -> dict:
        (lr, wd) = hp
        run_id = f"{SHORT[loss]}-{lr:g}-{wd or 0:g}-{seed}"
        (self.dir / "runs" / run_id).mkdir()
        train = {"model": "mlp", "loss": loss, "optimizer": "adam", "learning_rate": lr,
                 "weight_decay": wd, "seed": seed, "batch_size": 100, "steps": 500,
                 "loss_hparams": {}, "model_hparams": {}, "optimizer_hparams": {}}  # fmt: skip
        config = {"experiment": "tuned", "dataset": "mnist1d", "dataset_kwargs": {},
                  "data_axes": {"label_noise": 0.0}, "train": train}  # fmt: skip
        (self.dir / "runs" / run_id / "config.json").write_text(json.dumps(config))
        marker = {"finished": "2026-12-05T00:00:00", "diverged_step": None}
        (self.dir / "runs" / run_id / "done").write_text(json.dumps(marker))
        collapsed = (loss, hp, seed) == COLLAPSED
        status = "collapsed" if collapsed else "finished"
        cell = f"mlp/{loss}/adam"
        base = {"run_id": run_id, "dataset": "mnist1d", "model": "mlp", "loss": loss,
                "optimizer": "adam", "learning_rate": lr, "seed": seed, "batch_size": 100,
                "steps": 500, "loss_hparams": {}, "model_hparams": {}, "optimizer_hparams": {},
                "label_noise": 0.0, "diverged": False, "diverged_step": None, "status": status,
                "train_accuracy": 0.12 if collapsed else 0.99, "best_step": 300,
                "cell": cell, "trial": trial, "role": role}  # fmt: skip
        truth = {}
        for checkpoint in ("final", "best"):
            r = self.rng.uniform(0, 1, 12)
            t = {"acc": 0.6 + 0.3 * r[0], "nll": 0.5 + r[1], "nll_ts": 0.3 + r[2] / 2,
                 "ece": 0.1 * r[3], "ece_ts": 0.05 * r[4], "brier": 0.3 * r[5],
                 "brier_ts": 0.25 * r[6], "temperature": 0.5 + 2 * r[7],
                 "shift_acc": [0.3 + 0.2 * r[8], 0.2 + 0.2 * r[9]],
                 "shift_ece_ts": [0.1 * r[10], 0.2 * r[11]], "auroc": 0.5 + 0.4 * r[0]}  # fmt: skip
            if collapsed:
                t["acc"] = 0.11
            truth[checkpoint] = t
            common = base | {"checkpoint": checkpoint, "temperature": t["temperature"]}
            clean = {"eval_set": "clean", "kind": "clean", "severity": 0, "split": "test",
                     "num_examples": 400, "accuracy": t["acc"], "max_class_fraction":
                     0.98 if collapsed else 0.12}  # fmt: skip
            clean |= {k: t[k] for k in ("nll", "nll_ts", "ece", "ece_ts", "brier", "brier_ts")}
            self.emit(common | clean)
            for i, name in enumerate(("shot_noise", "translate")):
                self.emit(common | {"eval_set": name, "kind": "shift", "severity": 2,
                                    "split": "test", "accuracy": t["shift_acc"][i],
                                    "ece_ts": t["shift_ece_ts"][i]})  # fmt: skip
            self.emit(common | {"eval_set": "uniform_noise", "kind": "ood", "severity": 0,
                                "split": "test", "auroc_msp": t["auroc"]})  # fmt: skip
            if val is not None:
                self.emit(common | {"eval_set": "clean", "kind": "clean", "severity": 0,
                                    "split": "validation", "accuracy": val[0]})  # fmt: skip
                for name in ("shot_noise", "translate"):
                    self.emit(common | {"eval_set": name, "kind": "shift", "severity": 2,
                                        "split": "validation", "accuracy": val[1]})  # fmt: skip
        return truth

    def emit(self, row: dict) -> None:
        self.lines.append(json.dumps(row))

    def seeds(self, loss, hp, checkpoint="final", *, finished_only=True) -> list[dict]:
        return [
            self.truth[loss, hp, s][checkpoint]
            for s in SEEDS
            if not (finished_only and (loss, hp, s) == COLLAPSED)
        ]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Tuned:
    return Tuned(tmp_path_factory.mktemp("protocol"))


def built(directory, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        return build_report(directory, **kwargs)


@pytest.fixture(scope="module")
def report(tuned):
    with pytest.MonkeyPatch.context() as mp:
        protocol_row_key(mp)
        return built(tuned.dir)


def csv(report, name) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(report.files[name]))


def summary_row(table, rule, loss):
    rows = table[(table["selection"] == rule) & (table["loss"] == loss)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# --- loading ------------------------------------------------------------------------------


def test_load_types_the_protocol_columns(tuned):
    default = load_results(tuned.dir)  # what tables and figures read: test rows, final weights
    assert set(default["split"]) == {"test"} and set(default["checkpoint"]) == {"final"}
    best = load_results(tuned.dir, checkpoint="best", split="validation")
    assert set(best["split"]) == {"validation"} and set(best["checkpoint"]) == {"best"}
    assert set(best["role"]) == {"tune"}  # only tuning runs were written validation rows
    with pytest.raises(ValueError, match=r"'last'.*'final', 'best', None"):
        load_results(tuned.dir, checkpoint="last")
    df = load_results(tuned.dir, split=None, checkpoint=None)
    assert set(df["split"]) == {"test", "validation"}
    assert set(df["checkpoint"]) == {"final", "best"}
    assert str(df["trial"].dtype) == "Int64" and str(df["best_step"].dtype) == "Int64"
    for column in ("temperature", "ece_ts", "nll_ts", "brier_ts", "max_class_fraction"):
        assert df[column].dtype == np.float64, column
    assert set(df["role"]) == {"tune", "seed"}
    collapsed = df[df["run_id"] == "focal-0.001-0-2"]
    assert set(collapsed["status"]) == {"collapsed"}
    assert collapsed["train_accuracy"].iloc[0] == pytest.approx(0.12)


def test_old_rows_read_with_the_protocol_defaults(tmp_path):
    exp = Experiment(tmp_path)
    exp.add_run("mlp", "softmax_cross_entropy", 0)
    exp.add_run("mlp", "squared_error", 0, diverged=True)
    exp.write(truncated_tail=False)
    df = load_results(exp.dir)
    summary = csv(built(exp.dir), "summary.csv")
    assert set(df["split"]) == {"test"} and set(df["checkpoint"]) == {"final"}
    runs = df.groupby("run_id").first()
    assert sorted(runs["status"]) == ["diverged", "finished"]
    assert df["temperature"].isna().all() and df["ece_ts"].isna().all()
    assert df["cell"].isna().all() and df["trial"].isna().all()
    # No validation split: the temperature-scaled columns are blank, never zero.
    assert (summary["id_ece_ts_n"] == 0).all() and summary["id_ece_ts_mean"].isna().all()
    assert set(summary["selection"]) == {"default"}
    assert "selection.csv" not in built(exp.dir).files  # nothing was selected
    with pytest.raises(ReportError, match="no test rows of checkpoint 'best'"):
        built(exp.dir, checkpoint="best")


# --- selection ----------------------------------------------------------------------------


def test_selection_csv_names_each_rules_pick_and_its_hparams(report):
    table = csv(report, "selection.csv")
    for rule, picks in PICKS.items():
        for loss, trial in picks.items():
            row = table[(table["selection"] == rule) & (table["cell"] == f"mlp/{loss}/adam")]
            assert row["trial"].item() == trial
            (lr, wd), val, shifted = TUNING[loss, trial]
            # The tuned hparams: those that vary within the cell (CE's trials differ in weight
            # decay, read from config.json; focal's in learning rate).
            tuned = {"learning_rate": lr} if loss == FOCAL else {"weight_decay": wd}
            assert json.loads(row["hparams"].item()) == tuned
            assert row["score"].item() == pytest.approx(val if rule == "id_val" else shifted)
            assert row["candidates"].item() == 2
    missing = table[(table["selection"] == "oracle") & (table["cell"] == f"mlp/{FOCAL}/adam")]
    assert missing["seed_runs"].item() == 0


def test_summary_has_one_block_per_rule_from_the_seed_runs(tuned, report):
    table = csv(report, "summary.csv")
    assert list(table.columns[:1]) == ["selection"]
    assert sorted(set(table["selection"])) == ["id_val", "oracle"]
    for rule, picks in PICKS.items():
        for loss, trial in picks.items():
            hp = TUNING[loss, trial][0]
            if rule == "oracle" and loss == FOCAL:  # its seeds were never run
                assert table[(table["selection"] == rule) & (table["loss"] == loss)].empty
                continue
            row = summary_row(table, rule, loss)
            assert row["learning_rate"] == hp[0]
            accs = [t["acc"] for t in tuned.seeds(loss, hp)]
            assert row["id_accuracy_mean"] == pytest.approx(np.mean(accs), rel=1e-5)
            assert row["id_accuracy_se"] == pytest.approx(
                np.std(accs, ddof=1) / np.sqrt(len(accs)), rel=1e-5
            )
            # Neither tuning runs nor the other rule's CE seeds (same row columns, another
            # weight decay) are among the seeds.
            assert row["n_runs"] == 3 and row["n"] == len(accs)
    text = report.files["report.md"]
    assert "## Summary per configuration (selection: id_val)" in text
    assert "## Summary per configuration (selection: oracle)" in text
    oracle = text.split("## Summary per configuration (selection: oracle)")[1]
    assert oracle.lstrip().startswith("Rule `oracle`: Best mean accuracy on the shifted")
    assert "an upper bound" in oracle.split("|")[0]
    assert "rule `oracle`: cell mlp/softmax_focal/adam: no seed runs at the selected" in text


def test_a_rule_without_any_seed_runs_is_reported_missing(tuned, tmp_path):
    copy = tmp_path / "tuned"
    shutil.copytree(tuned.dir, copy)
    for seed in SEEDS:  # oracle's CE seed runs unfinished: the rule has no seed run at all
        (copy / "runs" / f"ce-0.01-0.0001-{seed}" / "done").unlink()
    report = built(copy)
    text = report.files["report.md"]
    assert "rule `oracle`: no seed runs at its selected hparams" in text
    assert set(csv(report, "summary.csv")["selection"]) == {"id_val"}


def test_unknown_rule_in_the_sweep_config_names_the_valid_ones(tuned, tmp_path):
    copy = tmp_path / "tuned"
    shutil.copytree(tuned.dir, copy)
    (copy / "sweep.json").write_text(json.dumps({"tune": {"select": ["best_test"]}}))
    with pytest.raises(ValueError, match=r"best_test.*id_val|id_val.*best_test"):
        built(copy)


# --- status, recalibration, checkpoints ----------------------------------------------------


def test_status_counts_and_the_list_of_runs_not_averaged(report):
    table = csv(report, "summary.csv")
    row = summary_row(table, "id_val", FOCAL)
    assert (row["n_runs"], row["n_finished"], row["n_collapsed"], row["n"]) == (3, 2, 1, 2)
    text = report.files["report.md"]
    assert "| 2/3 (1 collapsed) |" in text.split("(selection: id_val)")[1]
    listed = text.split("## Runs not averaged")[1].split("## ")[0]
    collapsed = "| focal-0.001-0-2 | mlp | softmax_focal, learning_rate=0.001 | 2 | seed | 1 |"
    assert f"{collapsed} collapsed | 12.00 | 98.00 |  |" in listed
    assert "| f00 | mlp | softmax_focal | 1 | FloatingPointError | boom at step 3 |" in listed


def test_temperature_scaled_metrics_beside_the_raw_ones(tuned, report):
    row = summary_row(csv(report, "summary.csv"), "id_val", CE)
    truth = tuned.seeds(CE, (0.01, None))
    for metric in ("nll", "ece", "brier"):
        for suffix in ("", "_ts"):
            expected = np.mean([t[metric + suffix] for t in truth])
            assert row[f"id_{metric}{suffix}_mean"] == pytest.approx(expected, rel=1e-5)
    expected = np.mean([np.mean(t["shift_ece_ts"]) for t in truth])
    assert row["corrupted_ece_ts_mean"] == pytest.approx(expected, rel=1e-5)
    expected = np.mean([t["temperature"] for t in truth])
    assert row["temperature_mean"] == pytest.approx(expected, rel=1e-5)
    assert "ID ECE TS (%)" in report.files["report.md"]
    runs = csv(report, "runs.csv").set_index("run_id")
    for seed in SEEDS:
        truth = tuned.truth[CE, (0.01, None), seed]["final"]
        row = runs.loc[f"ce-0.01-0-{seed}"]
        expected = (truth["ece"], truth["ece_ts"])
        assert (row["id_ece"], row["id_ece_ts"]) == pytest.approx(expected, rel=1e-5)
        assert row["temperature"] == pytest.approx(truth["temperature"], rel=1e-5)
    assert runs.loc["focal-0.001-0-2", "status"] == "collapsed"
    assert np.isnan(runs.loc["focal-0.001-0-2", "id_ece_ts"])  # not averaged, not shown


def test_best_checkpoint_reports_the_best_validation_rows(tuned):
    report = built(tuned.dir, checkpoint="best")
    row = summary_row(csv(report, "summary.csv"), "id_val", CE)
    accs = [t["acc"] for t in tuned.seeds(CE, (0.01, None), "best")]
    assert row["id_accuracy_mean"] == pytest.approx(np.mean(accs), rel=1e-5)
    assert "checkpoint `best`" in report.files["report.md"]


def test_cli_reports_the_best_checkpoint(tuned, tmp_path):
    out = tmp_path / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        report_cli.main([str(tuned.dir), "--out", str(out), "--checkpoint", "best"])
    assert "checkpoint `best`" in (out / "report.md").read_text()
    assert {"selection.csv", "significance.csv", "summary.csv"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize(
    "kwargs, match",
    [({"checkpoint": "last"}, "'last'.*final.*best"), ({"baseline": "mse"}, "'mse'.*softmax")],
)
def test_bad_options_name_the_valid_choices(tuned, kwargs, match):
    with pytest.raises(ValueError, match=match):
        built(tuned.dir, **kwargs)


# --- statistics ---------------------------------------------------------------------------


def test_holm_against_hand_values():
    # m = 4 finite: sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, 1*0.04 =
    # 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06.
    p = [0.01, np.nan, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, np.nan, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    assert holm([]).size == 0


def test_holm_against_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(0).uniform(0, 0.2, 30)
    np.testing.assert_allclose(holm(p), multitest.multipletests(p, method="holm")[1])


def test_paired_difference_and_t_test_match_scipy():
    a = np.array([0.91, 0.88, 0.93, 0.90, 0.87])
    b = np.array([0.89, 0.88, 0.90, 0.91, 0.85])
    result = paired(a, b, resamples=10_000, seed=0)
    assert result["n"] == 5
    assert result["mean_difference"] == pytest.approx(np.mean(a - b), abs=1e-15)
    assert result["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    # The percentile CI covers the mean difference, lies within the observed differences'
    # range, and is the same on every call.
    assert result["ci_low"] <= result["mean_difference"] <= result["ci_high"]
    assert (a - b).min() <= result["ci_low"] and result["ci_high"] <= (a - b).max()
    assert paired(a, b, seed=0) == result
    assert paired(a, b, seed=1)["ci_low"] != result["ci_low"]
    one = paired(a[:1], b[:1])
    assert np.isnan(one["p_value"]) and np.isnan(one["ci_low"])
    same = paired(b + 0.25, b)  # every difference 0.25: no spread, no t-test
    assert np.isnan(same["p_value"]) and same["mean_difference"] == pytest.approx(0.25)


def test_compare_pairs_by_seed_and_corrects_over_the_whole_table():
    # Per model: CE (baseline) seeds 0-3, focal seeds 0-2 and 4 (pairs: 0, 1, 2), mse
    # seeds 0-3 with seed 3 collapsed (pairs: 0, 1, 2).
    rng = np.random.default_rng(7)
    rows = []
    for model in ("mlp", "cnn"):
        for loss, seeds in ((CE, (0, 1, 2, 3)), (FOCAL, (0, 1, 2, 4)), ("mse", (0, 1, 2, 3))):
            for seed in seeds:
                status = "collapsed" if (loss, seed) == ("mse", 3) else "finished"
                acc = rng.uniform(0.5, 0.9)
                rows.append({"run_id": f"{model}{loss}{seed}", "model": model, "loss": loss,
                             "loss_label": loss, "seed": seed, "status": status,
                             "group_id": f"{model}/{loss}", "id_accuracy": acc})  # fmt: skip
    runs = pd.DataFrame(rows)
    table = compare(runs, metrics={"id_accuracy": True}, resamples=2000)
    assert len(table) == 4 and set(table["baseline"]) == {CE}
    acc = runs.set_index(["model", "loss", "seed"])["id_accuracy"].sort_index()
    for row in table.itertuples():
        seeds = [0, 1, 2]
        a = acc.loc[row.model, row.candidate].loc[seeds].to_numpy()
        b = acc.loc[row.model, CE].loc[seeds].to_numpy()
        assert row.n == 3
        assert row.mean_difference == pytest.approx(np.mean(a - b))
        assert row.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    np.testing.assert_allclose(table["p_holm"], holm(table["p_value"]))
    assert (table["significant"] == (table["p_holm"] <= 0.05)).all()
    with pytest.raises(ValueError, match=r"'gce'.*softmax_cross_entropy"):
        compare(runs, baseline="gce")


def test_significance_in_the_report(tuned, report):
    table = csv(report, "significance.csv")
    # id_val: focal (lr 0.001) vs CE (lr 0.01; the tuned lr is not part of the context),
    # paired on seeds 0 and 1 (focal seed 2 collapsed).
    row = table[(table["selection"] == "id_val") & (table["metric"] == "id_accuracy")]
    assert len(row) == 1
    a = [tuned.truth[FOCAL, (0.001, None), s]["final"]["acc"] for s in (0, 1)]
    b = [tuned.truth[CE, (0.01, None), s]["final"]["acc"] for s in (0, 1)]
    assert row["n"].item() == 2
    assert row["mean_difference"].item() == pytest.approx(np.mean(np.subtract(a, b)), rel=1e-5)
    assert row["p_value"].item() == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-5)
    assert set(table["metric"]) == {
        "id_accuracy",
        "corrupted_accuracy",
        "corrupted_ece_ts",
        "ood_auroc_msp",
    }
    assert "oracle" not in set(table["selection"])  # no focal seeds: nothing to compare
    text = report.files["report.md"]
    assert "scipy.stats.ttest_rel" in text and "Holm" in text
    marked = text.split("## Against the baseline")[1].count("**yes**")
    assert marked == int(table["significant"].sum())


def test_the_store_reads_validation_rows_beside_test_rows(tuned):
    rows = store.read_evals(tuned.dir)
    run = [r for r in rows if r["run_id"] == "ce-0.01-0-1000" and r["eval_set"] == "clean"]
    assert {(r["checkpoint"], r["split"]) for r in run} == {
        (c, s) for c in ("final", "best") for s in ("test", "validation")
    }
