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

from toolkit import selection, store
from toolkit.report import plots, significance, tables
from toolkit.report.curves import LineFit, accuracy_line, set_accuracy, severity_curves
from toolkit.report.load import CHECKPOINTS, ReportError, failed_runs, load_results, run_configs
from toolkit.report.rules import RuleRuns, rule_runs, rule_table, tuned_keys
from toolkit.report.stats import aggregate, per_run

__all__ = ["Report", "build_report", "write_report"]

DEFINITIONS = """\
Definitions. Every number is a mean over seeds (runs that differ only in the seed) with its
standard error, SE = sample std (ddof=1) / sqrt(n); SE is blank when n = 1. Only finished
runs are averaged: "finished" reads k/n and names the others, diverged (non-finite loss)
or collapsed (final train accuracy <= chance + 5 points, or one class predicted for > 95 %
of the clean test set); a configuration without a finished seed reads e.g.
"diverged (k/n)". ID = the clean test set; "ID acc binomial SE" = sqrt(p (1 - p) / n_test),
the noise of the one fixed test set, which the SE over seeds does not contain. Mean
corrupted accuracy/ECE: for each run the mean over all its shift rows (every shift x
severity evaluated, equally weighted), then mean +/- SE over seeds. OOD AUROC: per run the
mean over the far-OOD sets, then over seeds. "TS" = after temperature scaling (Guo et al.
2017) with the run's temperature fitted on its clean validation split; blank for runs
without one. Every table names its selection rule ("default" = every run of an untuned
sweep). Accuracies, ECE and AUROC are in percent here and fractions in the CSVs.
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


def build_report(
    results_dir: str | Path, *, checkpoint: str = "final", baseline: str | None = None
) -> Report:
    """Loads ``results_dir`` and renders every table and figure (nothing is written).

    Args:
      checkpoint: whose test rows the tables show: "final" or "best" (best validation).
      baseline: the loss each configuration is tested against (``significance.csv``);
        default softmax cross-entropy, skipped with a note where the sweep has none.

    Raises:
      ReportError: see :func:`toolkit.report.load.load_results`; no test rows of
        ``checkpoint``.
      ValueError: an unknown ``checkpoint``, or a ``baseline`` that is not a loss of it.
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint {checkpoint!r} is not one of {list(CHECKPOINTS)}")
    results_dir = Path(results_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = load_results(results_dir, split=None, checkpoint=None)  # the rules score all
        failed = failed_runs(results_dir)
        configs = run_configs(results_dir)
    for w in caught:  # shown to the caller and listed in the report
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    df = rows[(rows["split"] == "test") & (rows["checkpoint"] == checkpoint)]
    if df.empty:
        raise ReportError(f"{str(results_dir)!r} has no test rows of checkpoint {checkpoint!r}")
    if baseline is not None and baseline not in set(df["loss"]):
        losses = sorted(set(df["loss"].astype(str)))
        raise ValueError(f"baseline loss {baseline!r} is not in {results_dir}; losses: {losses}")
    all_runs = per_run(df)
    views = rule_runs(rows, all_runs, store.read_json(results_dir / store.SWEEP), configs)
    report = Report()
    md = [f"# Report: {results_dir.name}\n"]
    counts = all_runs["status"].value_counts()
    md.append(
        f"{len(all_runs)} runs ({', '.join(f'{k} {v}' for k, v in counts.items())}; "
        f"{len(failed)} failed), {len(df)} evaluation rows of checkpoint `{checkpoint}` "
        f"({CHECKPOINTS[checkpoint]}) on the test split.\n"
    )
    missing = rows["run_id"].nunique() - len(all_runs)
    if missing:
        md.append(f"{missing} run(s) have no test rows of checkpoint `{checkpoint}`.\n")
    if caught:
        md.append("Skipped while reading:\n\n" + "".join(f"- {w.message}\n" for w in caught))
    md.append(DEFINITIONS)
    tuned = not all(view.picks.empty and not view.notes for view in views)
    report.add("runs.csv", all_runs.drop(columns="group_id"),
               "per run: config, status, raw and temperature-scaled metrics")  # fmt: skip
    _selection(report, md, views, tuned)
    _status(report, md, all_runs, failed)
    shown = [view for view in views if not view.runs.empty]
    if not shown:
        md.append("No selection rule has runs to report yet.\n")
        report.add("report.md", "\n".join(md), "the report as Markdown")
        return report
    groups = {v.rule: aggregate(v.runs).assign(selection=v.rule) for v in shown}
    summary = pd.concat(groups.values(), ignore_index=True)
    summary = summary[["selection", *summary.columns.drop("selection")]]
    report.add("summary.csv", tables.summary_table(summary)[1], "per selection rule and "
               "configuration: mean/SE/n of every headline metric")  # fmt: skip
    for rule, frame in groups.items():
        md.append(f"## Summary per configuration (selection: {rule})\n")
        if tuned:  # what the rule is, e.g. that oracle is an upper bound
            md.append(f"Rule `{rule}`: {selection.rules.entry(rule).description}\n")
        md.append(tables.summary_table(frame)[0])
    _significance(report, md, shown, all_runs, baseline)
    rule, runs = shown[0].rule, shown[0].runs.drop(columns="selection")
    groups, df = groups[rule], df[df["run_id"].isin(runs["run_id"])]
    md.append(f"The sections below show the runs of selection rule `{rule}`.\n")

    md.append(f"## Loss x architecture (selection: {rule})\n")
    for metric in tables.PIVOT_METRICS:
        pivot = tables.pivot_table(groups, metric)
        if pivot is not None:
            name = f"pivot_{metric}.csv"
            report.add(name, pivot[1], f"{metric}: loss (rows) x architecture (columns)")
            md.append(f"### {tables.METRIC_SPECS[metric].header}\n\n{pivot[0]}")

    _robustness(report, md, df, runs)
    _per_set(report, md, df, runs)
    _label_noise(report, md, groups)
    _reliability(report, md, df, runs[runs["status"] == "finished"])

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


def _selection(report: Report, md: list[str], views: list[RuleRuns], tuned: bool) -> None:
    if not tuned:
        return  # untuned: every run, nothing was selected
    table = rule_table(views)
    report.add("selection.csv", table, "per selection rule and cell: the chosen tuning "
               "trial, its hparams and validation score, candidates, seed runs")  # fmt: skip
    md.append("## Model selection (Gulrajani & Lopez-Paz 2021)\n")
    md.append(
        "Per cell, each rule picks one tuning trial among the finished tuning runs "
        "(`id_val`: best clean validation accuracy; `oracle`: best mean shifted-validation "
        "accuracy, an upper bound that chooses with shifted data; `default`: trial 0, the "
        "registry defaults). Tables average the seed runs at the picked hparams; tuning "
        "runs are never averaged.\n"
    )
    md.append(tables.markdown_table(table.drop(columns="run_id", errors="ignore")))
    for view in views:
        md += [f"- rule `{view.rule}`: {note}\n" for note in view.notes]


def _status(report: Report, md: list[str], runs: pd.DataFrame, failed: pd.DataFrame) -> None:
    text = tables.status_table(runs, failed)
    md.append("## Runs not averaged\n")
    md.append(text or "Every run finished.\n")


def _significance(
    report: Report, md: list[str], views: list[RuleRuns], runs: pd.DataFrame, baseline
) -> None:
    name = baseline or significance.BASELINE
    md.append(f"## Against the baseline `{name}` (paired by seed, Holm-corrected)\n")
    if name not in set(runs["loss"]):
        md.append(f"No run of the baseline loss `{name}`: no comparison.\n")
        return
    ignore = tuned_keys(runs)
    frames = [
        significance.compare(view.runs, baseline=name, ignore=ignore).assign(selection=view.rule)
        for view in views
        if name in set(view.runs["loss"])
    ]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty:
        md.append("No candidate shares seeds with the baseline.\n")
        return
    table = table[["selection", *table.columns.drop("selection")]]
    report.add("significance.csv", table, "each configuration vs the baseline per metric: "
               "paired mean difference, 95% bootstrap CI, t-test p, Holm p")  # fmt: skip
    md.append(
        "Each candidate minus the baseline of its architecture (and data axes), over the "
        "seeds both have: mean difference with a 95 % percentile bootstrap CI (10,000 "
        "resamples of the seed pairs), two-sided paired t-test p-value (scipy.stats."
        "ttest_rel) and the Holm-Bonferroni adjusted p-value over every row of the rule's "
        "table. Only comparisons significant at 0.05 after correction are marked. "
        "Differences in percentage points for accuracies, ECE and AUROC.\n"
    )
    scale = {m: tables.METRIC_SPECS[m].scale for m in significance.HIGHER_IS_BETTER}
    for rule, rows in table.groupby("selection", sort=False):
        md.append(f"### Selection: {rule}\n")
        md.append(significance.significance_table(rows, scale).replace("### ", "#### "))


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
        f"all {fit.num_points} finished runs: slope {fit.slope:.3f}, intercept "
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
        f"`{results_dir.name}/evals.jsonl`, the `runs/*/done` markers, the runs' "
        "`config.json` (which tuned hparams each rule picked) and `error.json` (failed "
        "runs); nothing else).\n\n"
        f"| file | what |\n|---|---|\n{rows}| `README.md` | this list |\n"
    )


def write_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    command: str | None = None,
    checkpoint: str = "final",
    baseline: str | None = None,
) -> list[Path]:
    """Builds the report of ``results_dir`` (see :func:`build_report` for ``checkpoint``
    and ``baseline``) and writes it to ``out_dir`` (default ``<results_dir>/report``),
    replacing any previous report there as a whole.

    Returns the written paths. Nothing is written when loading fails
    (:class:`~toolkit.report.load.ReportError`).
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    command = command or f"python -m experiments.report {results_dir}"
    report = build_report(results_dir, checkpoint=checkpoint, baseline=baseline)
    files = {name: _encode(content) for name, content in report.files.items()}
    files["README.md"] = _readme(report, results_dir, command).encode()
    return store.replace_dir(out_dir, files)


def _encode(content: str | Figure) -> bytes:
    if isinstance(content, Figure):
        buffer = io.BytesIO()
        plots.save(content, buffer)
        return buffer.getvalue()
    return content.encode()
