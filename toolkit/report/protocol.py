"""The report's sections under the evaluation protocol: which trial each selection rule
picked (Gulrajani & Lopez-Paz 2021), the runs left out of the means, and each
configuration against a baseline (paired by seed, Holm-corrected). Each adds its tables to
the report (``report.add``, ``report.blocks``) and its Markdown to ``md``."""

from __future__ import annotations

import pandas as pd

from toolkit.report import significance, tables
from toolkit.report.rules import RuleRuns, rule_table, tuned_keys

__all__ = ["selection_section", "significance_section", "status_section"]


def selection_section(report, md: list[str], views: list[RuleRuns], tuned: bool) -> None:
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
    shown = table.drop(columns="run_id", errors="ignore")
    report.blocks["selection"] = tables.markdown_table(shown)
    md.append(report.blocks["selection"])
    for view in views:
        md += [f"- rule `{view.rule}`: {note}\n" for note in view.notes]


def status_section(report, md: list[str], runs: pd.DataFrame, failed: pd.DataFrame) -> None:
    text = tables.status_table(runs, failed)
    md.append("## Runs not averaged\n")
    md.append(text or "Every run finished.\n")


def significance_section(
    report, md: list[str], views: list[RuleRuns], runs: pd.DataFrame, baseline
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
    # For READMEs: how many comparisons were made and the ones that survive, per rule.
    lines = []
    for rule, rows in table.groupby("selection", sort=False):
        tested = rows.dropna(subset=["p_value"])
        survivors = rows[rows["significant"].astype(bool)]
        lines.append(
            f"Selection `{rule}`: {len(survivors)} of {len(tested)} comparisons against "
            f"`{name}` significant at 0.05 after Holm correction.\n"
        )
        if not survivors.empty:
            lines.append(significance.significance_table(survivors, scale))
    report.blocks["significance"] = "\n".join(lines)
