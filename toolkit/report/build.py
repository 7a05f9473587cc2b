"""Assemble one experiment's report (tables, figures, README) and write it atomically.

The whole report is rendered first and then replaces the target directory as a whole
(:func:`toolkit.store.replace_dir`), so ``results/<experiment>/report/`` always holds one
complete report (never a mix of an old and a new one) and a failure leaves the previous
report untouched.
"""

from __future__ import annotations

import dataclasses
import io
import re
import warnings
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from toolkit import store
from toolkit.report import plots, tables
from toolkit.report.curves import LineFit, accuracy_line, set_accuracy, severity_curves
from toolkit.report.load import load_results
from toolkit.report.stats import aggregate, per_run

__all__ = ["Report", "build_report", "write_report"]

DEFINITIONS = """\
Definitions. Every number is a mean over seeds (runs that differ only in the seed) with its
standard error, SE = sample std (ddof=1) / sqrt(n); SE is blank when n = 1. "n" counts the
seeds in the mean. Diverged runs (non-finite loss during training) are excluded from every
mean and counted in "diverged"; a configuration whose seeds all diverged reads
"diverged (k/n)". ID = the clean test set. Mean corrupted accuracy/ECE: for each run the
mean over all its shift rows (every shift x severity evaluated, equally weighted), then
mean +/- SE over seeds. OOD AUROC: per run the mean over the far-OOD sets, then over seeds.
Accuracies, ECE and AUROC are in percent here and fractions in the CSVs.
"""


@dataclasses.dataclass
class Report:
    """Rendered outputs: ``files`` maps a file name to text or a Figure; ``what`` to a
    one-line description (for the README)."""

    files: dict[str, str | Figure] = dataclasses.field(default_factory=dict)
    what: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, name: str, content: str | Figure | pd.DataFrame, what: str) -> None:
        if isinstance(content, pd.DataFrame):
            content = content.to_csv(index=False, float_format="%.6g")
        self.files[name], self.what[name] = content, what


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _figure_link(name: str) -> str:
    return f"![{name}]({name})\n"


def build_report(results_dir: str | Path) -> Report:
    """Loads ``results_dir`` and renders every table and figure (nothing is written).

    Raises:
      ReportError: see :func:`toolkit.report.load.load_results`.
    """
    results_dir = Path(results_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_results(results_dir)
    for w in caught:  # shown to the caller and listed in the report
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    runs = per_run(df)
    groups = aggregate(runs)
    report = Report()
    md = [f"# Report: {results_dir.name}\n"]
    md.append(
        f"{len(runs)} finished runs ({int(runs['diverged'].sum())} diverged) in "
        f"{len(groups)} configurations, {len(df)} evaluation rows.\n"
    )
    if caught:
        md.append("Skipped while reading:\n\n" + "".join(f"- {w.message}\n" for w in caught))
    md.append(DEFINITIONS)

    text, raw = tables.summary_table(groups)
    report.add("summary.csv", raw, "per configuration: mean/SE/n of every headline metric")
    md.append(f"## Summary per configuration\n\n{text}")

    md.append("## Loss x architecture\n")
    for metric in tables.PIVOT_METRICS:
        pivot = tables.pivot_table(groups, metric)
        if pivot is not None:
            name = f"pivot_{metric}.csv"
            report.add(name, pivot[1], f"{metric}: loss (rows) x architecture (columns)")
            md.append(f"### {tables.METRIC_SPECS[metric].header}\n\n{pivot[0]}")

    _robustness(report, md, df, runs)
    _per_set(report, md, df, runs)
    _label_noise(report, md, groups)
    _reliability(report, md, df, runs)

    report.add(
        "loss_comparison.png",
        plots.loss_comparison(groups),
        "bar chart: clean vs mean corrupted accuracy per loss, +/- 1 SE",
    )
    md.append(f"## Loss comparison\n\n{_figure_link('loss_comparison.png')}")
    report.add(
        "report.md",
        "\n".join(md),
        "all tables as Markdown, with the definitions and the figures linked",
    )
    return report


def _robustness(report: Report, md: list[str], df: pd.DataFrame, runs: pd.DataFrame) -> None:
    curves = severity_curves(df, runs)
    if curves.empty:
        md.append("## Shifts\n\nNo shift rows: no severity curve or accuracy-on-the-line fit.\n")
        return
    report.add(
        "severity_curves.csv",
        curves.drop(columns="group_id"),
        "accuracy per severity (mean over shifts), per configuration",
    )
    report.add(
        "accuracy_vs_severity.png",
        plots.accuracy_vs_severity(curves),
        "accuracy vs severity, one panel per model, a line per loss",
    )
    md.append(f"## Accuracy vs severity\n\n{_figure_link('accuracy_vs_severity.png')}")
    fit = accuracy_line(runs)
    md.append("## Accuracy on the line (Miller et al. 2021)\n")
    if not isinstance(fit, LineFit):
        md.append(f"No line fitted: {fit}.\n")
        return
    text, raw = tables.effective_robustness_table(fit, runs)
    report.add("effective_robustness.csv", raw, "effective robustness per configuration")
    report.add(
        "accuracy_on_the_line.png",
        plots.accuracy_on_the_line(fit, runs),
        "clean vs mean corrupted accuracy per run, probit axes, fitted line",
    )
    md.append(
        "Each point is one run: x = clean test accuracy, y = its mean corrupted accuracy "
        "(over all shifts x severities), both probit-transformed; least-squares line over "
        f"all {fit.num_points} non-diverged runs: slope {fit.slope:.3f}, intercept "
        f"{fit.intercept:.3f}, R^2 {fit.r2:.3f}. Effective robustness = corrupted accuracy "
        "minus the line's prediction (percentage points; relative to this experiment's "
        f"trend).\n\n{_figure_link('accuracy_on_the_line.png')}\n{text}"
    )


def _per_set(report: Report, md: list[str], df: pd.DataFrame, runs: pd.DataFrame) -> None:
    for kind, name, title in (
        ("shift", "shift_accuracy", "Accuracy per shift and severity"),
        ("set", "set_accuracy", "Accuracy on named test sets"),
    ):
        sets = set_accuracy(df, runs, kind)
        if not sets.empty:
            text, raw = tables.set_tables(sets)
            report.add(f"{name}.csv", raw, f"{title.lower()} (mean/SE/n over seeds)")
            md.append(f"## {title}\n\n{text}")


def _label_noise(report: Report, md: list[str], groups: pd.DataFrame) -> None:
    table = tables.label_noise_table(groups)
    if table is None:
        return
    report.add("label_noise.csv", table[1], "clean test accuracy per label-noise rate")
    report.add(
        "label_noise.png",
        plots.label_noise_curves(groups),
        "clean test accuracy vs label-noise rate, a line per loss",
    )
    md.append(f"## Clean accuracy vs label noise\n\n{table[0]}\n{_figure_link('label_noise.png')}")


def _reliability(report: Report, md: list[str], df: pd.DataFrame, runs: pd.DataFrame) -> None:
    md.append("## Reliability diagrams (clean test set, bins pooled over seeds)\n")
    for model in sorted(runs["model"].astype(str).unique()):
        fig = plots.reliability_diagrams(df, runs, model)
        if fig is not None:
            name = f"reliability_{_safe(model)}.png"
            report.add(name, fig, f"reliability diagrams of {model}, one panel per loss")
            md.append(_figure_link(name))


def _readme(report: Report, results_dir: Path, command: str) -> str:
    rows = "".join(f"| `{name}` | {report.what[name]} |\n" for name in sorted(report.files))
    return (
        f"# Report of `{results_dir.name}`\n\nRegenerate: `{command}` (reads "
        f"`{results_dir.name}/evals.jsonl` and the `runs/*/done` markers; nothing else).\n\n"
        f"| file | what |\n|---|---|\n{rows}| `README.md` | this list |\n"
    )


def write_report(
    results_dir: str | Path, out_dir: str | Path | None = None, *, command: str | None = None
) -> list[Path]:
    """Builds the report of ``results_dir`` and writes it to ``out_dir`` (default
    ``<results_dir>/report``), replacing any previous report there as a whole.

    Returns the written paths. Nothing is written when loading fails
    (:class:`~toolkit.report.load.ReportError`).
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    command = command or f"python -m experiments.report {results_dir}"
    report = build_report(results_dir)
    files = {name: _encode(content) for name, content in report.files.items()}
    files["README.md"] = _readme(report, results_dir, command).encode()
    return store.replace_dir(out_dir, files)


def _encode(content: str | Figure) -> bytes:
    if isinstance(content, Figure):
        buffer = io.BytesIO()
        plots.save(content, buffer)
        return buffer.getvalue()
    return content.encode()
