"""Every notebook in notebooks/ runs top to bottom in a fresh kernel with small settings;
the helpers they use (notebooks/nbsupport.py, toolkit.report.analysis) against hand-computed
values.

Notebooks are executed from their stored files without writing back; their outputs go to
a temporary directory. The analysis notebook reads a results root made here by a tiny sweep
(two experiments in the shipped layout), so it is tested without the committed results.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# The notebooks' own helper module; notebooks/ is no package, so it is loaded from its file.
_spec = importlib.util.spec_from_file_location("nbsupport", ROOT / "notebooks" / "nbsupport.py")
nb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nb)

# A sweep config in the shipped format, small enough for a test: an MLP, two losses, 100 steps.
TINY_CONFIG = """
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product


def get_config(variant=""):
    config = base_config(variant, dataset="mnist1d")
    config.train.model = "mlp"
    config.model_hparams = {"mlp": {"hidden": (32,)}}
    config.train.learning_rate = 1e-2
    config.train.steps = 100
    config.losses = ("softmax_cross_entropy", "gce")
    config.noise_rates = (0.0, 0.4) if variant == "label_noise" else (0.0,)
    config.seeds = 1 if variant == "label_noise" else 2
    config.executor = "inline"
    config.evals = {
        "shifts": {"type": "shifts", "names": ("translation", "shuffle"), "severities": (1, 3)},
        "ood": {"type": "ood", "names": ("uniform_noise",)},
    }
    return config


def sweep(config):
    return product(loss=config.losses, label_noise=config.noise_rates, seed=range(config.seeds))
"""


def test_every_notebook_is_collected():
    expected = {"01_quickstart", "02_loss_comparison", "03_ood_analysis", "04_explain"}
    assert expected <= {p.stem for p in NOTEBOOKS}
    assert nb.repo_root() == ROOT


def test_the_runner_command_refuses_a_missing_notebook(tmp_path):
    missing = tmp_path / "missing.ipynb"
    done = subprocess.run(
        [sys.executable, str(ROOT / "notebooks" / "nbsupport.py"), "--quick", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and f"no such notebook: {missing}" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("value", "quick"),
    [("1", True), ("true", True), (" Yes ", True), ("0", False), ("", False), ("off", False)],
)
def test_quick_mode_reads_the_environment(value, quick):
    assert nb.quick_mode({nb.QUICK_ENV: value}) is quick
    assert nb.quick_mode({}) is False


def test_quick_mode_rejects_an_unclear_value():
    with pytest.raises(ValueError, match=r"TOOLKIT_NOTEBOOK_QUICK='maybe' is not a yes/no value"):
        nb.quick_mode({nb.QUICK_ENV: "maybe"})


def test_experiment_dir_prefers_the_full_experiment_then_the_quick_one(tmp_path):
    assert nb.experiment_dir("label_noise", tmp_path) is None
    (tmp_path / "label_noise_quick").mkdir()
    (tmp_path / "label_noise_quick" / "evals.jsonl").write_text("")
    assert nb.experiment_dir("label_noise", tmp_path) == tmp_path / "label_noise_quick"
    (tmp_path / "label_noise").mkdir()
    assert nb.experiment_dir("label_noise", tmp_path) == tmp_path / "label_noise_quick"
    (tmp_path / "label_noise" / "evals.jsonl").write_text("")
    assert nb.experiment_dir("label_noise", tmp_path) == tmp_path / "label_noise"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """A results root with ``loss_comparison`` and ``label_noise`` made by a tiny sweep."""
    from toolkit import sweep

    root = tmp_path_factory.mktemp("results")
    config_file = root / "tiny_config.py"
    config_file.write_text(TINY_CONFIG)
    for experiment in ("loss_comparison", "label_noise"):
        config, sweep_fn = sweep.load_config(f"{config_file}:{experiment}")
        result = sweep.run_sweep(config, sweep_fn, results_dir=root, progress=False)
        assert not result.failed, result.failed
    return root


def _kernel_xla_flags() -> str:
    # One CPU device in the kernel, as on a laptop: conftest simulates four for this process.
    flags = os.environ.get("XLA_FLAGS", "")
    return re.sub(r"--xla_force_host_platform_device_count=\d+", "", flags).strip()


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_in_a_fresh_kernel(path, tmp_path, request):
    stored = path.read_bytes()
    output = tmp_path / "output"
    env = {nb.OUTPUT_ENV: str(output), "XLA_FLAGS": _kernel_xla_flags()}
    if "results_root" in stored.decode():
        env[nb.RESULTS_ENV] = str(request.getfixturevalue("quick_results"))
    # A failing cell raises CellExecutionError, naming the cell and the error.
    book, _ = nb.execute(path, quick=True, cwd=tmp_path, env=env, timeout=600)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    errors = [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert not errors
    assert path.read_bytes() == stored, "executing must not modify the stored notebook"
    if "output_dir(" in stored.decode():  # what it writes went to the test's directory
        assert any(output.rglob("*.jsonl")) or any(output.rglob("*.png")), sorted(output.rglob("*"))


# --- toolkit.report.analysis on a hand-made results table -----------------------------------
# Runs r0, r1: two seeds of (mlp, cross-entropy); r2: (mlp, gce). Shifts a, b at severities 1, 3.
ECE = {  # run -> {(eval_set, severity): ece}
    "r0": {("clean", 0): 0.05, ("a", 1): 0.1, ("b", 1): 0.3, ("a", 3): 0.4, ("b", 3): 0.6},
    "r1": {("clean", 0): 0.07, ("a", 1): 0.2, ("b", 1): 0.2, ("a", 3): 0.3, ("b", 3): 0.5},
    "r2": {("clean", 0): 0.10, ("a", 1): 0.1, ("b", 1): 0.1, ("a", 3): 0.2, ("b", 3): 0.2},
}
ACC = {"r0": (0.9, 0.6), "r1": (0.8, 0.55), "r2": (0.7, 0.5)}  # clean, every shift row
AUROC_MSP = {"r0": (0.8, 0.6), "r1": (0.9, 0.7), "r2": (0.5, 0.5)}  # two OOD sets


def _results_table():
    import pandas as pd

    rows = []
    for run, loss, seed in (
        ("r0", "softmax_cross_entropy", 0),
        ("r1", "softmax_cross_entropy", 1),
        ("r2", "gce", 0),
    ):
        config = {
            "run_id": run,
            "model": "mlp",
            "loss": loss,
            "loss_hparams": "{}",
            "loss_label": loss,
            "variant": loss,
            "seed": seed,
            "diverged": False,
        }
        for (eval_set, severity), ece in ECE[run].items():
            kind = "clean" if eval_set == "clean" else "shift"
            accuracy = ACC[run][0] if kind == "clean" else ACC[run][1]
            rows.append(
                config
                | {
                    "eval_set": eval_set,
                    "kind": kind,
                    "severity": severity,
                    "ece": ece,
                    "accuracy": accuracy,
                }
            )
        for name, value in zip(("o1", "o2"), AUROC_MSP[run], strict=True):
            rows.append(
                config
                | {
                    "eval_set": name,
                    "kind": "ood",
                    "severity": 0,
                    "auroc_msp": value,
                    "auroc_energy": 1 - value,
                }
            )
    return pd.DataFrame(rows)


def test_metric_vs_severity_is_the_mean_over_shifts_then_seeds():
    from toolkit import report
    from toolkit.report import analysis

    df = _results_table()
    curves = analysis.metric_vs_severity(df, report.per_run(df), "ece")
    ce = curves[curves["loss"] == "softmax_cross_entropy"].set_index("severity")
    # r0: clean .05, sev 1 (.1 + .3) / 2 = .2, sev 3 .5; r1: .07, .2, .4 (by hand).
    np.testing.assert_allclose(ce["ece_mean"], [0.06, 0.2, 0.45])
    np.testing.assert_allclose(ce["ece_se"], [0.01, 0.0, 0.05], atol=1e-12)  # std(ddof=1)/sqrt 2
    assert ce["ece_n"].tolist() == [2, 2, 2]
    gce = curves[curves["loss"] == "gce"].set_index("severity")
    np.testing.assert_allclose(gce["ece_mean"], [0.1, 0.1, 0.2])
    with pytest.raises(ValueError, match="no metric 'eec'"):
        analysis.metric_vs_severity(df, report.per_run(df), "eec")


def test_ood_auroc_is_the_mean_over_sets_then_seeds():
    from toolkit import report
    from toolkit.report import analysis

    df = _results_table()
    table = analysis.ood_auroc(df, report.per_run(df), scores=("msp", "energy"))
    ce = table[table["loss"] == "softmax_cross_entropy"].iloc[0]
    # r0 (.8 + .6) / 2 = .7, r1 .8: mean .75, SE .05; energy = 1 - msp here.
    assert ce["auroc_msp_mean"] == pytest.approx(0.75)
    assert ce["auroc_msp_se"] == pytest.approx(0.05)
    assert ce["auroc_energy_mean"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no OOD score column 'auroc_entropy'"):
        analysis.ood_auroc(df, report.per_run(df), scores=("entropy",))
    fig = analysis.ood_auroc_figure(table, scores=("msp", "energy"))
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(image, 100 * table[["auroc_msp_mean", "auroc_energy_mean"]])


def test_effective_robustness_against_a_scipy_probit_fit():
    from scipy.stats import norm

    from toolkit import report
    from toolkit.report import analysis

    df = _results_table()
    runs = report.per_run(df)
    fit = report.accuracy_line(runs)
    clean = np.array([ACC[r][0] for r in ("r0", "r1", "r2")])
    shifted = np.array([ACC[r][1] for r in ("r0", "r1", "r2")])
    slope, intercept = np.polyfit(norm.ppf(clean), norm.ppf(shifted), 1)
    above = shifted - norm.cdf(slope * norm.ppf(clean) + intercept)
    table = analysis.effective_robustness(fit, runs).set_index("loss")
    assert table.loc["softmax_cross_entropy", "effective_robustness_mean"] == pytest.approx(
        above[:2].mean(), abs=1e-6
    )
    assert table.loc["gce", "effective_robustness_mean"] == pytest.approx(above[2], abs=1e-6)
    fig = analysis.effective_robustness_figure(table.reset_index())
    dots = sorted(x for c in fig.axes[0].containers for x in c.lines[0].get_xdata())
    np.testing.assert_allclose(dots, sorted(100 * table["effective_robustness_mean"]), atol=1e-6)


def test_reliability_figure_shows_the_bins_and_a_numpy_ece():
    from scipy.special import softmax

    import toolkit as tk
    from toolkit.report import analysis

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)).astype(np.float32) * 3
    labels = rng.integers(0, 4, size=200).astype(np.int32)
    fig = analysis.reliability_figure({"random": tk.metrics.reliability_diagram(logits, labels)})
    probs = softmax(logits.astype(np.float64), axis=1)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    bins = np.minimum((conf * 15).astype(int), 14)  # 15 equal-width bins
    ece = sum(abs(correct[bins == b].sum() - conf[bins == b].sum()) for b in range(15)) / 200
    assert f"ECE {100 * ece:.1f}%" in fig.axes[0].get_title()
    heights = [p.get_height() for p in fig.axes[0].patches[: len(np.unique(bins))]]
    expected = [correct[bins == b].mean() for b in np.unique(bins)]
    np.testing.assert_allclose(heights, expected, rtol=1e-5)


def test_shift_table_figure_draws_each_shift_and_the_clean_level():
    import pandas as pd

    from toolkit.report import analysis

    table = pd.DataFrame(
        [
            {"eval_set": "clean", "kind": "clean", "severity": 0, "accuracy": 0.9, "ece": 0.02},
            {"eval_set": "a", "kind": "shift", "severity": 1, "accuracy": 0.8, "ece": 0.1},
            {"eval_set": "a", "kind": "shift", "severity": 3, "accuracy": 0.5, "ece": 0.3},
            {"eval_set": "b", "kind": "shift", "severity": 1, "accuracy": 0.7, "ece": 0.2},
            {"eval_set": "b", "kind": "shift", "severity": 3, "accuracy": 0.4, "ece": 0.4},
        ]
    )
    fig = analysis.shift_table_figure(table)
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["a"], [80, 50])
    np.testing.assert_allclose(lines["b"], [70, 40])
    np.testing.assert_allclose(lines["clean"], [90, 90])
