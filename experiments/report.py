"""Tables and figures of one experiment's results directory.

    python -m experiments.report results/<experiment>
    python -m experiments.report results/<experiment> --out /tmp/report
    python -m experiments.report results/loss_comparison --readme README.md
    python -m experiments.report results/<experiment> --checkpoint best

Reads ``<dir>/evals.jsonl`` (rows of runs with a ``runs/<run_id>/done`` marker) and
writes Markdown/CSV tables, PNG figures and a README into ``<dir>/report/`` (replaced as a
whole), then refreshes the ``<!-- report:NAME -->`` blocks of ``<dir>/README.md`` and the
``<!-- report:<experiment>/NAME -->`` blocks of each ``--readme`` file. See
``toolkit.report`` for the definitions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from toolkit.report import BlockError, ReportError, write_report

COMMAND = "python -m experiments.report"


def _progress():
    """Prints each step to stderr with the seconds since the start."""
    start = time.perf_counter()
    return lambda message: print(
        f"[{time.perf_counter() - start:5.1f} s] {message}", file=sys.stderr, flush=True
    )


def main(argv: list[str] | None = None) -> list[Path]:
    """Parses ``argv``, writes the report and returns the written paths."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", type=Path, help="results/<experiment>")
    parser.add_argument("--out", type=Path, default=None, help="default: <results_dir>/report")
    parser.add_argument(
        "--readme",
        type=Path,
        action="append",
        default=[],
        help="another README whose <!-- report:<experiment>/NAME --> blocks to refresh",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("final", "best"),
        default="final",
        help="whose test rows the tables show: the final or the best-validation weights",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="loss each configuration is tested against (default softmax_cross_entropy)",
    )
    args = parser.parse_args(argv)
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    try:
        paths = write_report(
            args.results_dir,
            args.out,
            command=command,
            readmes=args.readme,
            checkpoint=args.checkpoint,
            baseline=args.baseline,
            progress=_progress(),
        )
    except (ReportError, BlockError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    for path in paths:
        print(path)
    return paths


def cli() -> int:
    """The ``toolkit-report`` console script: :func:`main`, exit status 0 (errors exit 2)."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(cli())
