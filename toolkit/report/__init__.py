"""Reports of one experiment's results directory: tables, figures and a README.

    from toolkit import report
    df = report.load_results("results/losses")      # tidy evals.jsonl rows of finished runs
    report.write_report("results/losses")           # -> results/losses/report/

or ``python -m experiments.report results/<experiment>``. The directory layout and the
evals.jsonl row format are the sweep runner's (see the sweep spec): ``runs/<run_id>/done``
markers and an append-only ``evals.jsonl``. Tables show the test rows of the final
checkpoint (``checkpoint="best"``: the best-validation one), per selection rule of a tuned
sweep (:mod:`toolkit.report.rules`), means over finished runs only, and each configuration
against a baseline loss, paired by seed and Holm-corrected (:mod:`toolkit.report.significance`).
"""

from toolkit.report.blocks import BlockError, block_names, fill_blocks
from toolkit.report.build import Report, build_report, write_report
from toolkit.report.curves import (
    LineFit,
    accuracy_line,
    pooled_reliability,
    set_accuracy,
    severity_curves,
)
from toolkit.report.load import (
    ReportError,
    ReportWarning,
    failed_runs,
    finished_runs,
    load_results,
    read_jsonl,
)
from toolkit.report.stats import aggregate, mean_se, per_run, series_labels

__all__ = [
    "BlockError",
    "LineFit",
    "Report",
    "ReportError",
    "ReportWarning",
    "accuracy_line",
    "aggregate",
    "block_names",
    "build_report",
    "failed_runs",
    "fill_blocks",
    "finished_runs",
    "load_results",
    "mean_se",
    "per_run",
    "pooled_reliability",
    "read_jsonl",
    "series_labels",
    "set_accuracy",
    "severity_curves",
    "write_report",
]
