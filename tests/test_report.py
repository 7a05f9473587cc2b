"""Reports from synthetic results directories laid out exactly as the sweep spec says.

The synthetic experiment keeps its own ground truth (the accuracies it wrote), so every
number in the tables is checked against numpy/scipy computations on that truth, never
against the report's own intermediate results.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import ndtr, ndtri

from experiments import report as report_cli
from toolkit.report import (
    ReportError,
    ReportWarning,
    accuracy_line,
    aggregate,
    build_report,
    load_results,
    mean_se,
    per_run,
    pooled_reliability,
    set_accuracy,
    severity_curves,
    write_report,
)

SHIFTS = ("shot_noise", "translate")
SEVERITIES = (1, 2, 3)
OOD_SETS = ("uniform_noise", "gaussian_noise")
SCORES = ("msp", "max_logit", "energy", "entropy")
NUM_BINS = 15
VARIANTS = {
    "softmax_cross_entropy": ("softmax_cross_entropy", {}),
    "softmax_focal": ("softmax_focal(gamma=2)", {"gamma": 2.0, "alpha": None}),
    "squared_error": ("squared_error", {}),
}
# (model, loss) -> seeds; which seeds diverge. cnn/focal has one seed (SE blank), cnn/squared
# diverges on every seed, mlp/focal on one of three.
GROUPS = {
    ("mlp", "softmax_cross_entropy"): (3, ()),
    ("mlp", "softmax_focal"): (3, (2,)),
    ("cnn", "softmax_cross_entropy"): (3, ()),
    ("cnn", "softmax_focal"): (1, ()),
    ("cnn", "squared_error"): (2, (0, 1)),
}
UNFINISHED = ("mlp", "softmax_cross_entropy", 7)
GROUP_DRIFT = ("cnn", "softmax_cross_entropy", 2)


def run_id_of(config: dict) -> str:
    """The spec's run_id: sha256 of the canonical JSON of the training-determining fields."""
    keys = ("dataset", "dataset_kwargs", "train", "data_axes")
    canonical = json.dumps({k: config[k] for k in keys}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def reliability(rng: np.random.Generator) -> dict:
    count = rng.integers(0, 40, NUM_BINS)
    lo = np.arange(NUM_BINS) / NUM_BINS
    conf = np.where(count > 0, lo + rng.uniform(0, 1 / NUM_BINS, NUM_BINS), 0.0)
    acc = np.where(count > 0, rng.uniform(0, 1, NUM_BINS), 0.0)
    return {
        "bin_confidence": conf.tolist(),
        "bin_accuracy": acc.tolist(),
        "bin_count": count.tolist(),
    }


class Experiment:
    """Writes a results directory and remembers the truth of every healthy run."""

    def __init__(self, root: Path, name: str = "synthetic"):
        self.dir = root / name
        (self.dir / "runs").mkdir(parents=True)
        self.name = name
        self.lines: list[str] = []
        self.truth: dict[str, dict] = {}
        self.rng = np.random.default_rng(0)

    def add_run(
        self,
        model,
        loss,
        seed,
        *,
        diverged=False,
        done=True,
        label_noise=0.0,
        sets=(),
        variant=None,
        shifts=SHIFTS,
    ):
        default, hparams = VARIANTS[loss]
        variant = variant or default
        train = {"model": model, "loss": loss, "optimizer": "adam", "learning_rate": 0.01,
                 "batch_size": 100, "steps": 500, "seed": seed, "schedule": "constant",
                 "warmup_steps": 0, "weight_decay": None, "grad_clip": None, "model_hparams": {},
                 "loss_hparams": hparams, "optimizer_hparams": {}, "log_every": None}  # fmt: skip
        axes = {"label_noise": label_noise, "label_noise_kind": "symmetric", "train_size": None,
                "imbalance": None}  # fmt: skip
        config = {"experiment": self.name, "dataset": "mnist1d", "dataset_kwargs": {},
                  "train": train, "data_axes": axes, "group": f"{model}/adam"}  # fmt: skip
        run_id = config["run_id"] = run_id_of(config)
        run_dir = self.dir / "runs" / run_id
        run_dir.mkdir()
        (run_dir / "config.json").write_text(json.dumps(config))
        if done:
            marker = {"finished": "2026-11-22T00:00:00", "diverged_step": 17 if diverged else None}
            (run_dir / "done").write_text(json.dumps(marker))
        base = {"run_id": run_id, "experiment": self.name, "dataset": "mnist1d", "model": model,
                "loss": loss, "optimizer": "adam", "learning_rate": 0.01, "seed": seed,
                "batch_size": 100, "steps": 500, "loss_hparams": hparams, "model_hparams": {},
                "optimizer_hparams": {}, "label_noise": label_noise, "train_size": None,
                "imbalance": None, "group": f"{model}/adam", "variant": variant,
                "diverged": diverged, "diverged_step": 17 if diverged else None}  # fmt: skip
        clean = float(self.rng.uniform(0.6, 0.95)) - label_noise / 2
        truth = {"clean": clean, "nll": float(self.rng.uniform(0.2, 1)),
                 "ece": float(self.rng.uniform(0, 0.1)), "brier": float(self.rng.uniform(0.1, 0.5)),
                 "shift": {}, "shift_ece": {}, "ood": {}, "sets": {}}  # fmt: skip
        truth["reliability"] = reliability(self.rng)
        # A diverged run of mlp/focal writes a constant predictor's 10% (the spec's runner
        # writes nulls; either way the report must not average it in).
        bad = 0.1 if (diverged and loss == "softmax_focal") else None

        def metric(value):
            return bad if diverged else value

        self.emit(base | self.classification("clean", "clean", 0, truth, metric, clean))
        for shift in shifts:
            for sev in SEVERITIES:
                acc = clean - 0.08 * sev - (0.05 if shift == "translate" else 0.0)
                acc = float(np.clip(acc + self.rng.normal(0, 0.02), 0.02, 0.98))
                truth["shift"][shift, sev] = acc
                truth["shift_ece"][shift, sev] = float(self.rng.uniform(0.05, 0.3))
                row = self.classification(shift, "shift", sev, truth, metric, acc)
                self.emit(base | row | {"ece": metric(truth["shift_ece"][shift, sev])})
        for name in sets:
            truth["sets"][name] = float(self.rng.uniform(0.3, 0.6))
            self.emit(
                base | self.classification(name, "set", 0, truth, metric, truth["sets"][name])
            )
        for name in OOD_SETS:
            scores = {s: float(self.rng.uniform(0.5, 1)) for s in SCORES}
            truth["ood"][name] = scores
            row = {"eval_set": name, "kind": "ood", "severity": 0, "num_examples": 1000}
            for s in SCORES:
                row |= {f"auroc_{s}": metric(scores[s]), f"aupr_in_{s}": metric(0.7)}
                row |= {f"aupr_out_{s}": metric(0.6), f"fpr_at_95_tpr_{s}": metric(0.5)}
            self.emit(base | row | {"accuracy": None, "nll": None, "brier": None, "ece": None})
        if done and not diverged:
            self.truth[run_id] = truth | {"model": model, "loss": loss, "seed": seed,
                                          "label_noise": label_noise}  # fmt: skip
        return run_id

    @staticmethod
    def classification(eval_set, kind, severity, truth, metric, acc):
        row = {"eval_set": eval_set, "kind": kind, "severity": severity, "num_examples": 1000,
               "accuracy": metric(acc), "nll": metric(truth["nll"]),
               "brier": metric(truth["brier"]), "ece": metric(truth["ece"]),
               "misclassification_auroc": metric(0.8)}  # fmt: skip
        if kind in ("clean", "shift"):
            row["reliability"] = truth["reliability"]
        return row

    def emit(self, row: dict) -> None:
        self.lines.append(json.dumps(row, allow_nan=False))

    def write(self, *, truncated_tail: bool = True) -> Path:
        text = "".join(line + "\n" for line in self.lines)
        if truncated_tail:  # a writer killed mid-append: half a row, no newline
            text += self.lines[0][: len(self.lines[0]) // 2]
        (self.dir / "evals.jsonl").write_text(text)
        return self.dir


def build_main(root: Path) -> Experiment:
    exp = Experiment(root)
    for (model, loss), (seeds, diverged) in GROUPS.items():
        for seed in range(seeds):
            # The runner labels variants from the whole sweep: a seed added by a later,
            # larger sweep may carry another label; it must still count as the same config.
            drift = "softmax_cross_entropy lr=0.01" if (model, loss, seed) == GROUP_DRIFT else None
            exp.add_run(model, loss, seed, diverged=seed in diverged, sets=("regenerated",),
                        variant=drift)  # fmt: skip
    model, loss, seed = UNFINISHED
    exp.unfinished = exp.add_run(model, loss, seed, done=False)
    # Re-evaluation of one run's clean row: appended later, it must replace the first.
    first = next(iter(exp.truth))
    row = next(json.loads(line) for line in exp.lines if f'"{first}"' in line)
    assert row["kind"] == "clean"
    exp.truth[first]["clean"] = row["accuracy"] = 0.5
    exp.emit(row)
    exp.reevaluated = first
    exp.write()
    return exp


@pytest.fixture(scope="module")
def main_exp(tmp_path_factory) -> Experiment:
    return build_main(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def loaded(main_exp):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_results(main_exp.dir)
    return df, caught


@pytest.fixture(scope="module")
def written(main_exp, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        paths = report_cli.main([str(main_exp.dir), "--out", str(out)])
    return out, paths


def group_truth(exp: Experiment, model: str, loss: str, label_noise: float = 0.0) -> list[dict]:
    return [
        t for t in exp.truth.values()
        if (t["model"], t["loss"], t["label_noise"]) == (model, loss, label_noise)
    ]  # fmt: skip


def by_hand(values) -> tuple[float, float, int]:
    x = np.asarray(values, np.float64)
    se = x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else np.nan
    return float(x.mean()), float(se), int(x.size)


# --- loading ------------------------------------------------------------------------------


def test_load_keeps_finished_runs_and_warns(main_exp, loaded):
    df, caught = loaded
    messages = [str(w.message) for w in caught if issubclass(w.category, ReportWarning)]
    assert any("truncated last line" in m for m in messages), messages
    assert any("without a done marker" in m and main_exp.unfinished in m for m in messages)
    done = {p.parent.name for p in main_exp.dir.glob("runs/*/done")}
    assert set(df["run_id"]) == done
    assert main_exp.unfinished not in set(df["run_id"])
    assert not df.duplicated(["run_id", "eval_set", "severity"]).any()
    # 11 finished runs x (clean + 2 shifts x 3 severities + 1 set + 2 OOD sets) rows.
    assert len(df) == len(done) * (1 + len(SHIFTS) * len(SEVERITIES) + 1 + len(OOD_SETS))


def test_load_last_row_wins(main_exp, loaded):
    df, _ = loaded
    clean = df[(df["run_id"] == main_exp.reevaluated) & (df["kind"] == "clean")]
    assert clean["accuracy"].tolist() == [0.5]


def test_load_diverged_from_row_or_marker(loaded):
    df, _ = loaded
    runs = df.groupby("run_id").first()
    diverged = runs[runs["diverged"]]
    assert sorted(zip(diverged["model"], diverged["loss"], diverged["seed"], strict=True)) == [
        ("cnn", "squared_error", 0),
        ("cnn", "squared_error", 1),
        ("mlp", "softmax_focal", 2),
    ]


def test_load_skips_unparsable_middle_line(tmp_path):
    exp = Experiment(tmp_path)
    exp.add_run("mlp", "softmax_cross_entropy", 0)
    exp.lines.insert(1, '{"run_id": "abc", "eval_set":')
    exp.write(truncated_tail=False)
    with pytest.warns(ReportWarning, match="unparsable line 2"):
        df = load_results(exp.dir)
    assert len(df) == len(exp.lines) - 1


@pytest.mark.parametrize("case", ["missing", "file", "no_evals", "no_done"])
def test_unusable_results_dir_raises_and_writes_nothing(tmp_path, case):
    target = tmp_path / "synthetic"
    if case == "file":
        target.write_text("not a directory")
    elif case == "no_evals":
        (target / "runs").mkdir(parents=True)
    elif case == "no_done":
        exp = Experiment(tmp_path)
        exp.add_run("mlp", "softmax_cross_entropy", 0, done=False)
        exp.write(truncated_tail=False)
    before = sorted(tmp_path.rglob("*"))
    expected = {
        "missing": "does not exist",
        "file": "not a directory",
        "no_evals": "no evals.jsonl",
        "no_done": "no evaluation rows of finished runs",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        with pytest.raises(ReportError, match=expected[case]):
            write_report(target)
        with pytest.raises(SystemExit) as exit_info:
            report_cli.main([str(target)])
    assert exit_info.value.code == 2
    assert sorted(tmp_path.rglob("*")) == before


# --- numbers ------------------------------------------------------------------------------


def test_mean_se_by_hand():
    mean, se, n = mean_se([1.0, 2.0, 3.0, 4.0, np.nan])
    # sample std of 1..4 = sqrt(5/3); SE = that / 2.
    assert (mean, n) == (2.5, 4)
    assert se == pytest.approx(np.sqrt(5 / 3) / 2, rel=1e-12)
    assert np.isnan(mean_se([0.7])[1]) and mean_se([])[2] == 0


@pytest.fixture(scope="module")
def groups(loaded):
    df, _ = loaded
    runs = per_run(df)
    return runs, aggregate(runs)


@pytest.mark.parametrize("model, loss", list(GROUPS))
def test_summary_numbers_match_numpy(main_exp, groups, model, loss):
    _, table = groups
    row = table[(table["model"] == model) & (table["loss"] == loss)].iloc[0]
    truth = group_truth(main_exp, model, loss)
    seeds, diverged = GROUPS[model, loss]
    assert (row["n_runs"], row["n_diverged"], row["n"]) == (seeds, len(diverged), len(truth))
    expected = {
        "id_accuracy": [t["clean"] for t in truth],
        "id_nll": [t["nll"] for t in truth],
        "id_ece": [t["ece"] for t in truth],
        "id_brier": [t["brier"] for t in truth],
        # per run: mean over shifts x severities; then over seeds.
        "corrupted_accuracy": [np.mean(list(t["shift"].values())) for t in truth],
        "corrupted_ece": [np.mean(list(t["shift_ece"].values())) for t in truth],
        "ood_auroc_msp": [np.mean([t["ood"][o]["msp"] for o in OOD_SETS]) for t in truth],
        "ood_auroc_energy": [np.mean([t["ood"][o]["energy"] for o in OOD_SETS]) for t in truth],
    }
    for metric, values in expected.items():
        if not values:  # every seed diverged: no mean at all (not 10%)
            assert np.isnan(row[f"{metric}_mean"]) and row[f"{metric}_n"] == 0
            continue
        mean, se, n = by_hand(values)
        assert row[f"{metric}_mean"] == pytest.approx(mean, rel=1e-12), metric
        assert row[f"{metric}_n"] == n
        if n == 1:
            assert np.isnan(row[f"{metric}_se"])
        else:
            assert row[f"{metric}_se"] == pytest.approx(se, rel=1e-9), metric


def test_diverged_run_excluded_not_ten_percent(main_exp, groups):
    _, table = groups
    row = table[(table["model"] == "mlp") & (table["loss"] == "softmax_focal")].iloc[0]
    healthy = [t["clean"] for t in group_truth(main_exp, "mlp", "softmax_focal")]
    with_diverged = np.mean([*healthy, 0.1])
    assert row["id_accuracy_mean"] == pytest.approx(np.mean(healthy))
    assert row["id_accuracy_mean"] != pytest.approx(with_diverged)


def test_severity_curve_and_per_shift_numbers(main_exp, loaded, groups):
    df, _ = loaded
    runs, _ = groups
    curves = severity_curves(df, runs)
    shifts = set_accuracy(df, runs, "shift")
    truth = group_truth(main_exp, "cnn", "softmax_cross_entropy")
    mine = (curves["model"] == "cnn") & (curves["loss"] == "softmax_cross_entropy")
    for sev in (0, *SEVERITIES):
        values = [
            t["clean"] if sev == 0 else np.mean([t["shift"][s, sev] for s in SHIFTS]) for t in truth
        ]
        row = curves[mine & (curves["severity"] == sev)].iloc[0]
        assert (row["accuracy_mean"], row["accuracy_se"]) == pytest.approx(by_hand(values)[:2])
    row = shifts[
        (shifts["model"] == "cnn")
        & (shifts["loss"] == "softmax_cross_entropy")
        & (shifts["eval_set"] == "translate")
        & (shifts["severity"] == 2)
    ].iloc[0]
    values = [t["shift"]["translate", 2] for t in truth]
    assert (row["accuracy_mean"], row["accuracy_se"]) == pytest.approx(by_hand(values)[:2])
    sets = set_accuracy(df, runs, "set")
    assert set(sets["eval_set"]) == {"regenerated"}
    dead = sets[(sets["model"] == "cnn") & (sets["loss"] == "squared_error")].iloc[0]
    assert (dead["n_diverged"], dead["accuracy_n"]) == (2, 0)


def test_accuracy_on_the_line_matches_scipy(main_exp, groups):
    runs, _ = groups
    fit = accuracy_line(runs)
    ids = sorted(main_exp.truth)
    x = np.array([main_exp.truth[r]["clean"] for r in ids])
    y = np.array([np.mean(list(main_exp.truth[r]["shift"].values())) for r in ids])
    ref = stats.linregress(ndtri(x), ndtri(y))
    assert fit.num_points == len(ids)
    assert fit.slope == pytest.approx(ref.slope, rel=1e-4)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-4, abs=1e-5)
    assert fit.r2 == pytest.approx(ref.rvalue**2, rel=1e-4)
    er = fit.runs.set_index("run_id").loc[ids, "effective_robustness"].to_numpy()
    np.testing.assert_allclose(er, y - ndtr(ref.slope * ndtri(x) + ref.intercept), atol=1e-5)


def test_accuracy_on_the_line_needs_two_runs(tmp_path):
    exp = Experiment(tmp_path)
    exp.add_run("mlp", "softmax_cross_entropy", 0)
    exp.write(truncated_tail=False)
    assert "needs >= 2" in accuracy_line(per_run(load_results(exp.dir)))


def test_pooled_reliability_by_hand():
    a = {"bin_confidence": [0.1, 0.5, 0.0], "bin_accuracy": [0.0, 1.0, 0.0], "bin_count": [2, 2, 0]}
    b = {"bin_confidence": [0.2, 0.6, 0.9], "bin_accuracy": [0.5, 0.5, 1.0], "bin_count": [2, 6, 1]}
    pooled = pooled_reliability([a, None, b])
    np.testing.assert_allclose(pooled["count"], [4, 8, 1])
    np.testing.assert_allclose(pooled["confidence"], [(0.2 + 0.4) / 4, (1.0 + 3.6) / 8, 0.9])
    np.testing.assert_allclose(pooled["accuracy"], [1 / 4, (2 + 3) / 8, 1.0])
    ece = (4 * abs(0.25 - 0.15) + 8 * abs(0.625 - 0.575) + 1 * 0.1) / 13
    assert pooled["ece"] == pytest.approx(ece)
    assert pooled_reliability([None, {}]) is None


# --- written report -----------------------------------------------------------------------


def test_cli_writes_every_file(main_exp, written):
    out, paths = written
    names = {p.name for p in paths}
    pngs = {"accuracy_vs_severity.png", "accuracy_on_the_line.png", "loss_comparison.png",
            "reliability_mlp.png", "reliability_cnn.png"}  # fmt: skip
    csvs = {"summary.csv", "pivot_id_accuracy.csv", "pivot_corrupted_accuracy.csv",
            "pivot_id_ece.csv", "pivot_corrupted_ece.csv", "pivot_ood_auroc_msp.csv",
            "shift_accuracy.csv",
            "set_accuracy.csv", "severity_curves.csv", "effective_robustness.csv",
            "significance.csv", "runs.csv"}  # fmt: skip
    assert pngs | csvs | {"report.md", "README.md"} == names
    for name in names:
        assert (out / name).stat().st_size > 0, name
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    readme = (out / "README.md").read_text()
    assert f"python -m experiments.report {main_exp.dir}" in readme
    assert all(f"`{name}`" in readme for name in names)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


def test_written_tables(main_exp, written):
    out, _ = written
    summary = pd.read_csv(out / "summary.csv")
    truth = group_truth(main_exp, "mlp", "softmax_cross_entropy")
    mean, se, _ = by_hand([t["clean"] for t in truth])
    row = summary[(summary["model"] == "mlp") & (summary["loss"] == "softmax_cross_entropy")]
    assert row["id_accuracy_mean"].item() == pytest.approx(mean, rel=1e-5)
    assert row["id_accuracy_se"].item() == pytest.approx(se, rel=1e-5)
    text = (out / "report.md").read_text()
    # Beside the accuracy: the test set's binomial SE at the mean, sqrt(p (1 - p) / 1000).
    binomial = 100 * np.sqrt(mean * (1 - mean) / 1000)
    assert row["id_accuracy_binomial_se"].item() == pytest.approx(binomial / 100, rel=1e-5)
    assert (row["selection"] == "default").all()
    cells = f"| {100 * mean:.2f} +/- {100 * se:.2f} | {binomial:.2f} |"
    assert f"| mlp | softmax_cross_entropy | 3/3 {cells}" in text
    assert "## Summary per configuration (selection: default)" in text
    # n = 1: SE blank; all seeds diverged: shown as diverged, never as a number.
    (single,) = [t["clean"] for t in group_truth(main_exp, "cnn", "softmax_focal")]
    assert f"| cnn | softmax_focal(gamma=2) | 1/1 | {100 * single:.2f} |" in text
    assert "| cnn | squared_error | 0/2 (2 diverged) | diverged (2/2) |" in text
    assert "| mlp | softmax_focal(gamma=2) | 2/3 (1 diverged) |" in text
    pivot = (out / "pivot_id_accuracy.csv").read_text()
    assert pivot.startswith("loss,")
    pivot_md = text.split("### ID acc (%)")[1].split("###")[0]
    assert "| squared_error | diverged (2/2) |  |" in pivot_md  # no mlp run of that loss
    assert "[1/3 diverged]" in pivot_md
    assert "10.00" not in text


def test_rerun_replaces_report(main_exp, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "stale.png").write_bytes(b"old")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        write_report(main_exp.dir, out)
    assert not (out / "stale.png").exists() and (out / "summary.csv").exists()


def test_label_noise_view(tmp_path):
    exp = Experiment(tmp_path)
    for noise in (0.0, 0.2, 0.4):
        for loss in ("softmax_cross_entropy", "softmax_focal"):
            for seed in range(2):
                # The runner's variant names the swept rate; the view must not split on it.
                variant = f"{VARIANTS[loss][0]} noise={noise:g}"
                exp.add_run("mlp", loss, seed, label_noise=noise, variant=variant)
    exp.write(truncated_tail=False)
    report = build_report(exp.dir)
    assert {"label_noise.csv", "label_noise.png"} <= set(report.files)
    table = pd.read_csv(io.StringIO(report.files["label_noise.csv"]))
    for noise in (0.0, 0.2, 0.4):
        truth = group_truth(exp, "mlp", "softmax_focal", noise)
        mean, se, _ = by_hand([t["clean"] for t in truth])
        row = table[(table["loss"] == "softmax_focal") & (table["label_noise"] == noise)]
        assert row["id_accuracy_mean"].item() == pytest.approx(mean, rel=1e-5)
        assert row["id_accuracy_se"].item() == pytest.approx(se, rel=1e-5)
    table_md = report.files["report.md"].split("## Clean accuracy vs label noise")[1]
    assert "| model | loss | noise 0 | noise 0.2 | noise 0.4 |" in table_md
    assert table_md.count("| mlp |") == 2  # one row per loss, not per (loss, rate)


def test_label_noise_labels_do_not_repeat_the_swept_rate(tmp_path):
    exp = Experiment(tmp_path)
    for noise in (0.0, 0.3):
        exp.add_run("mlp", "softmax_focal", 0, label_noise=noise)
    exp.write(truncated_tail=False)
    text = build_report(exp.dir).files["report.md"]
    table = text.split("## Clean accuracy vs label noise")[1]
    assert "| mlp | softmax_focal(gamma=2) |" in table and "loss=" not in table


def test_every_run_diverged_still_reports(tmp_path):
    exp = Experiment(tmp_path)
    for seed in range(2):
        exp.add_run("mlp", "squared_error", seed, diverged=True)
    exp.write(truncated_tail=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        paths = write_report(exp.dir)
    text = (exp.dir / "report" / "report.md").read_text()
    assert "| mlp | squared_error | 0/2 (2 diverged) |" in text
    assert "No line fitted" in text
    assert all(p.stat().st_size > 0 for p in paths)


def test_no_shift_rows_still_reports(tmp_path):
    exp = Experiment(tmp_path)
    for seed in range(2):
        exp.add_run("mlp", "softmax_cross_entropy", seed, shifts=())
    exp.write(truncated_tail=False)
    report = build_report(exp.dir)
    assert "No shift rows" in report.files["report.md"]
    assert "accuracy_vs_severity.png" not in report.files
    assert "mean corrupted acc" not in report.files["report.md"].split("## Loss x")[0]


def test_labels_name_only_keys_that_vary_within_one_model():
    # Each architecture carries its own model_hparams; that difference is already in the
    # model name, so it must not be spelled out in every legend entry. A learning rate that
    # varies within one model is.
    from toolkit.report.stats import series_labels, varying_keys

    groups = pd.DataFrame(
        {
            "model": ["mlp", "mlp", "cnn", "cnn"],
            "model_hparams": ['{"hidden": [100]}'] * 2 + ['{"channels": 25}'] * 2,
            "learning_rate": [0.01, 0.001, 0.01, 0.01],
            "loss": ["softmax_cross_entropy"] * 4,
            "loss_label": ["CE"] * 4,
        }
    )
    assert varying_keys(groups) == ["learning_rate"]
    assert list(series_labels(groups)) == [
        "CE, learning_rate=0.01",
        "CE, learning_rate=0.001",
        "CE, learning_rate=0.01",
        "CE, learning_rate=0.01",
    ]


# --- layering -----------------------------------------------------------------------------

TOOLKIT = Path(__file__).resolve().parents[1] / "toolkit"


def imported_modules(source: str, package: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``source`` names, absolute,
    with ``from a import b`` giving both ``a`` and ``a.b`` (``b`` may be a submodule)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
    return found


def sweep_imports(folder: str) -> dict[str, set[str]]:
    """``{file: modules of toolkit.sweep it imports}`` for the files of ``toolkit/<folder>``."""
    out = {}
    for path in sorted((TOOLKIT / folder).glob("*.py")):
        names = imported_modules(path.read_text(), f"toolkit.{folder}")
        hits = {n for n in names if n == "toolkit.sweep" or n.startswith("toolkit.sweep.")}
        if hits:
            out[path.name] = hits
    return out


def test_the_report_reads_the_store_never_the_sweep_runner():
    assert sweep_imports("report") == {}
    assert sweep_imports("store") == {}  # the store is below both
    assert sweep_imports("evaluation") == {}  # the sweep uses evaluation, not the reverse
    loads = imported_modules((TOOLKIT / "report" / "load.py").read_text(), "toolkit.report")
    assert "toolkit.store" in loads
    # The scan sees every spelling of an import of the sweep package.
    for line in (
        "import toolkit.sweep.runner",
        "from toolkit import sweep",
        "from toolkit.sweep.config import Trial",
        "from ..sweep import storage",
        "from .. import sweep",
    ):
        names = imported_modules(line, "toolkit.report")
        assert any(n.startswith("toolkit.sweep") for n in names), line
    assert not any(
        n.startswith("toolkit.sweep")
        for n in imported_modules("from . import plots", "toolkit.report")
    )
