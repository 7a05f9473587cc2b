"""Assemble one experiment's report (tables, figures, README) and write it atomically.

The whole report is rendered first and then replaces the target directory as a whole
(:func:`toolkit.store.replace_dir`), so ``results/<experiment>/report/`` always holds one
complete report (never a mix of an old and a new one) and a failure leaves the previous
report untouched. The report also renders named Markdown fragments (``Report.blocks``)
that the experiment's README holds between ``<!-- report:NAME -->`` markers
(:mod:`toolkit.report.blocks`); writing the report refreshes them.
"""

from __future__ import annotations

import dataclasses
import io
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from toolkit import selection, store
from toolkit.report import plots, protocol, tables, uncertainty, validity
from toolkit.report.blocks import fill_blocks, set_means_table
from toolkit.report.curves import LineFit, accuracy_line, set_accuracy, severity_curves
from toolkit.report.load import CHECKPOINTS, ReportError, failed_runs, load_results, run_configs
from toolkit.report.palette import loss_colors
from toolkit.report.rules import rule_runs
from toolkit.report.stats import aggregate, per_run, series_labels

__all__ = ["Report", "build_report", "write_report"]

DEFINITIONS = """\
Definitions. Every number is a mean over seeds (runs that differ only in the seed) with its
standard error, SE = sample std (ddof=1) / sqrt(n); SE is blank when n = 1. Only finished
runs are averaged: "finished" reads k/n and names the others, diverged (non-finite loss)
or collapsed (train accuracy at the checkpoint <= chance + 5 points, or one class
predicted for > 95 % of the clean validation split, the test split for runs without one);
a configuration without a finished seed reads e.g.
"diverged (k/n)". ID = the clean test set; "ID acc binomial SE" = sqrt(p (1 - p) / n_test),
the noise of the one fixed test set, which the SE over seeds does not contain. Mean
corrupted accuracy/ECE: for each run the mean over all its shift rows (every shift x
severity evaluated, equally weighted), then mean +/- SE over seeds. OOD AUROC: per run the
mean over the far-OOD sets, then over seeds. "TS" = after temperature scaling (Guo et al.
2017) with the run's temperature fitted on its clean validation split, whose labels carry
the training label noise (a practitioner holds only noisy labels); blank for runs without
one. Every table names its selection rule ("default" = every run of an untuned
sweep). Accuracies, ECE and AUROC are in percent here and fractions in the CSVs.
"""


@dataclasses.dataclass
class Report:
    """Rendered outputs: ``files`` maps a file name to text or a Figure; ``what`` to a
    one-line description (for the README); ``blocks`` a README block name to its Markdown
    (adding a block is one entry here); ``colors`` the loss palette of every figure."""

    files: dict[str, str | Figure] = dataclasses.field(default_factory=dict)
    what: dict[str, str] = dataclasses.field(default_factory=dict)
    blocks: dict[str, str] = dataclasses.field(default_factory=dict)
    figures: bool = True
    colors: dict[str, tuple] = dataclasses.field(default_factory=dict)
    progress: Callable[[str], None] | None = None  # told each file's name as it is made

    def figure(self, name: str, draw, what: str) -> bool:
        """Adds the figure ``draw()`` returns (not drawn when the report is built without
        figures); returns whether it was added."""
        if self.figures:
            self.add(name, draw(), what)
        return self.figures

    def add(self, name: str, content: str | Figure | pd.DataFrame, what: str) -> None:
        if isinstance(content, pd.DataFrame):
            content = content.to_csv(index=False, float_format="%.6g")
        self.files[name], self.what[name] = content, what
        if self.progress is not None:
            self.progress(f"made {name}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _figure_link(name: str) -> str:
    return f"![{name}]({name})\n"


def _loss_palette(groups: pd.DataFrame) -> dict[str, tuple]:
    """One colour per legend label over every figure of the report (their labels leave out
    the model, the label-noise rate or nothing)."""
    labels = {
        label
        for exclude in ((), ("model",), ("label_noise",))
        for label in series_labels(groups, exclude=exclude)
    }
    return loss_colors(labels)


def build_report(
    results_dir: str | Path,
    *,
    checkpoint: str = "final",
    baseline: str | None = None,
    figures: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Loads ``results_dir`` and renders every table, README block and (unless
    ``figures=False``) figure; nothing is written.

    Args:
      checkpoint: whose test rows the tables show: "final" or "best" (best validation).
      baseline: the loss each configuration is tested against (``significance.csv``);
        default softmax cross-entropy, skipped with a note where the sweep has none.
      progress: told what is being done as it starts (e.g. ``print``).

    Raises:
      ReportError: see :func:`toolkit.report.load.load_results`; no test rows of
        ``checkpoint``.
      ValueError: an unknown ``checkpoint``, or a ``baseline`` that is not a loss of it.
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint {checkpoint!r} is not one of {list(CHECKPOINTS)}")
    results_dir = Path(results_dir)
    if progress is not None:
        progress(f"reading {results_dir}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The rules score all splits and checkpoints; MC-dropout and ensemble rows have a
        # section of their own.
        every = load_results(results_dir, split=None, checkpoint=None, predictor=None)
        rows = every[every["predictor"] == "single"]
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
    every_cell, cells = df, validity.flagged_cells(df, configs)
    if cells is not None:
        every, rows, df = (validity.drop_cells(r, cells[0]) for r in (every, rows, df))
    all_runs = per_run(df)
    views = rule_runs(rows, all_runs, store.read_json(results_dir / store.SWEEP), configs)
    report = Report(figures=figures, progress=progress)
    md = [f"# Report: {results_dir.name}\n"]
    counts = all_runs["status"].value_counts()
    report.blocks["runs"] = (
        f"{len(all_runs)} runs ({', '.join(f'{k} {v}' for k, v in counts.items())}; "
        f"{len(failed)} failed), {len(df)} evaluation rows of checkpoint `{checkpoint}` "
        f"({CHECKPOINTS[checkpoint]}) on the test split."
    )
    md.append(report.blocks["runs"] + "\n")
    missing = rows["run_id"].nunique() - len(all_runs)
    if missing:
        md.append(f"{missing} run(s) have no test rows of checkpoint `{checkpoint}`.\n")
    if caught:
        md.append("Skipped while reading:\n\n" + "".join(f"- {w.message}\n" for w in caught))
    md.append(DEFINITIONS)
    if cells is not None:
        report.blocks["invalid_cells"] = validity.invalid_cells_text(*cells)
        md.append(f"## Shift cells left out of the means\n\n{report.blocks['invalid_cells']}")
        if not cells[0].empty:
            report.add("invalid_cells.csv", cells[0], "shift cells no run classifies above chance")
    tuned = not all(view.picks.empty and not view.notes for view in views)
    report.add("runs.csv", all_runs.drop(columns="group_id"),
               "per run: config, status, raw and temperature-scaled metrics")  # fmt: skip
    protocol.selection_section(report, md, views, tuned)
    protocol.status_section(report, md, all_runs, failed)
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
    protocol.significance_section(report, md, shown, all_runs, baseline)
    rule, runs = shown[0].rule, shown[0].runs.drop(columns="selection")
    groups, df = groups[rule], df[df["run_id"].isin(runs["run_id"])]
    report.colors = _loss_palette(groups)  # every figure below draws these runs
    md.append(f"The sections below show the runs of selection rule `{rule}`.\n")

    report.blocks["summary"] = tables.summary_table(groups)[0]
    md.append(f"## Loss x architecture (selection: {rule})\n")
    for metric in tables.PIVOT_METRICS:
        pivot = tables.pivot_table(groups, metric)
        if pivot is not None:
            name = f"pivot_{metric}.csv"
            report.add(name, pivot[1], f"{metric}: loss (rows) x architecture (columns)")
            report.blocks[f"pivot_{metric}"] = pivot[0]
            md.append(f"### {tables.METRIC_SPECS[metric].header}\n\n{pivot[0]}")

    _robustness(report, md, df, runs)
    _per_set(report, md, every_cell[every_cell["run_id"].isin(runs["run_id"])], runs)
    _label_noise(report, md, groups)
    _reliability(report, md, df, runs[runs["status"] == "finished"])
    tested = every[(every["split"] == "test") & (every["checkpoint"] == checkpoint)]
    uncertainty.sections(report, md, tested[tested["run_id"].isin(runs["run_id"])])

    if "corrupted_ece_ts_n" in groups and groups["corrupted_ece_ts_n"].sum() > 0:
        report.figure(
            "calibration.png",
            lambda: plots.calibration(groups),
            "dot plot: mean corrupted ECE per loss and architecture, raw and temperature-scaled",
        )
        if report.figures:
            md.append(f"## Calibration under shift\n\n{_figure_link('calibration.png')}")
    if report.figure(
        "loss_comparison.png",
        lambda: plots.loss_comparison(groups),
        "dot plot: clean and mean corrupted accuracy per loss and architecture, 95 % CI",
    ):
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
    if report.figure(
        "accuracy_vs_severity.png",
        lambda: plots.accuracy_vs_severity(curves, report.colors),
        "accuracy vs severity, one panel per model, a line per loss",
    ):
        md.append(f"## Accuracy vs severity\n\n{_figure_link('accuracy_vs_severity.png')}")
    fit = accuracy_line(runs)
    md.append("## Accuracy on the line (Miller et al. 2021)\n")
    if not isinstance(fit, LineFit):
        md.append(f"No line fitted: {fit}.\n")
        return
    text, raw = tables.effective_robustness_table(fit, runs)
    report.add("effective_robustness.csv", raw, "effective robustness per configuration")
    scored = runs.merge(fit.runs[["run_id", "effective_robustness"]], on="run_id", how="left")
    pivot = tables.pivot_table(aggregate(scored, ["effective_robustness"]), "effective_robustness")
    report.blocks["effective_robustness"] = pivot[0] if pivot else text
    report.blocks["line_fit"] = (
        f"slope {fit.slope:.2f}, intercept {fit.intercept:.2f}, R^2 {fit.r2:.2f} over "
        f"{fit.num_points} runs"
    )
    link = ""
    if report.figure(
        "accuracy_on_the_line.png",
        lambda: plots.accuracy_on_the_line(fit, runs, report.colors),
        "clean vs mean corrupted accuracy per run, probit axes, fitted line",
    ):
        link = _figure_link("accuracy_on_the_line.png")
    md.append(
        "Each point is one run: x = clean test accuracy, y = its mean corrupted accuracy "
        "(over all shifts x severities), both probit-transformed; least-squares line over "
        f"all {fit.num_points} finished runs: {report.blocks['line_fit']}. Effective "
        "robustness = corrupted accuracy minus the line's prediction (percentage points; "
        f"relative to this experiment's trend).\n\n{link}\n{text}"
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
            report.blocks[f"{kind}_means"] = set_means_table(sets)
            md.append(f"## {title}\n\n{text}")


def _label_noise(report: Report, md: list[str], groups: pd.DataFrame) -> None:
    table = tables.label_noise_table(groups)
    if table is None:
        return
    report.add("label_noise.csv", table[1], "clean test accuracy per label-noise rate")
    report.blocks["label_noise"] = table[0]
    for metric in tables.PIVOT_METRICS[1:]:
        other = tables.label_noise_table(groups, metric)
        if other is not None:
            report.blocks[f"label_noise_{metric}"] = other[0]
    link = ""
    if report.figure(
        "label_noise.png",
        lambda: plots.label_noise_curves(groups, report.colors),
        "clean test accuracy vs label-noise rate, a line per loss",
    ):
        link = _figure_link("label_noise.png")
    md.append(f"## Clean accuracy vs label noise\n\n{table[0]}\n{link}")


def _reliability(report: Report, md: list[str], df: pd.DataFrame, runs: pd.DataFrame) -> None:
    if not report.figures:
        return
    md.append(
        "## Reliability diagrams (clean test set)\n\nBars: confidence bins pooled over "
        "seeds. ECE in the titles: each run's ECE (15 equal-width bins), mean over seeds, "
        "the ID ECE of the tables.\n"
    )
    for model in sorted(runs["model"].astype(str).unique()):
        fig = plots.reliability_diagrams(df, runs, model)
        if fig is not None:
            name = f"reliability_{_safe(model)}.png"
            report.add(name, fig, f"reliability diagrams of {model}, one panel per loss")
            md.append(_figure_link(name))


def _readme(report: Report, results_dir: Path, command: str) -> str:
    rows = "".join(f"| `{name}` | {report.what[name]} |\n" for name in sorted(report.files))
    blocks = ", ".join(f"`{name}`" for name in sorted(report.blocks))
    return (
        f"# Report of `{results_dir.name}`\n\nRegenerate: `{command}` (reads "
        f"`{results_dir.name}/evals.jsonl`, the `runs/*/done` markers, the runs' "
        "`config.json` (which tuned hparams each rule picked) and `error.json` (failed "
        "runs); nothing else).\n\n"
        f"| file | what |\n|---|---|\n{rows}| `README.md` | this list |\n\n"
        f"README blocks (`<!-- report:NAME -->` ... `<!-- /report:NAME -->` in "
        f"`{results_dir.name}/README.md`, refreshed by the command): {blocks}.\n"
    )


def write_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    command: str | None = None,
    readmes: Sequence[str | Path] = (),
    checkpoint: str = "final",
    baseline: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Builds the report of ``results_dir`` (see :func:`build_report` for ``checkpoint``
    and ``baseline``), writes it to ``out_dir`` (default ``<results_dir>/report``),
    replacing any previous report there as a whole, and refreshes the report blocks of
    ``<results_dir>/README.md`` (when it exists) and of the blocks named
    ``<experiment>/NAME`` in each of ``readmes`` (:mod:`toolkit.report.blocks`).

    Returns the written paths. Nothing is written when loading fails
    (:class:`~toolkit.report.load.ReportError`) or a README names an unknown block
    (:class:`~toolkit.report.blocks.BlockError`).
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    command = command or f"python -m experiments.report {results_dir}"
    # Checked before the report is built (seconds), not when it is written; a results_dir
    # that is no directory is named by the loader.
    existing = store.nearest_existing(out_dir)
    problem = "a file" if not existing.is_dir() else store.why_not_writable(existing)
    if problem is not None and results_dir.is_dir():
        raise ReportError(
            f"cannot write the report to {str(out_dir)!r}: {str(existing)!r} is "
            + (problem if problem == "a file" else f"not writable ({problem})")
        )
    report = build_report(results_dir, checkpoint=checkpoint, baseline=baseline, progress=progress)
    targets = [(results_dir / "README.md", None)] if (results_dir / "README.md").is_file() else []
    targets += [(Path(path), results_dir.name) for path in readmes]
    texts = {}
    for path, experiment in targets:  # every README checked before anything is written
        old = path.read_text()
        new = fill_blocks(old, report.blocks, experiment=experiment, source=str(path))
        if new != old:
            texts[path] = new
    files = {name: _encode(content) for name, content in report.files.items()}
    files["README.md"] = _readme(report, results_dir, command).encode()
    if progress is not None:
        progress(f"writing {len(files)} files to {out_dir}")
    written = store.replace_dir(out_dir, files)
    for path, text in texts.items():
        store.atomic_write_text(path, text)
    return [*written, *texts]


def _encode(content: str | Figure) -> bytes:
    if isinstance(content, Figure):
        buffer = io.BytesIO()
        plots.save(content, buffer)
        return buffer.getvalue()
    return content.encode()
