"""What the uncertainty and OOD methods add to a sweep's wall time, on this machine.

    python -m benchmarks.ood_cost --out results/benchmarks/ood_cost.md
    python -m benchmarks.ood_cost --seeds 2        # fewer runs, same ratio question

Three variants of ``experiments/configs/ood_methods.py``, each run as a user runs it
(``python -m experiments.sweep --no_progress`` in a fresh process and results directory,
wall time of the whole command): ``baseline`` (the four logit scores), ``scorers``
(baseline plus every ``tk.ood.scorers`` scorer, with statistics on the training split and
hyperparameters chosen on a validation OOD set) and the full config (also MC dropout,
conformal sets, AURC and deep ensembles). A priming run of the full config first fills
the compilation cache and the evaluation-set cache that the three measured runs share, so
each measures the steady state of a long sweep: compiling is a one-time cost per machine
(the persistent compilation cache keeps it across processes). The sum of the runs'
training loops is shown beside the walls: training is the same in every variant.

Not a test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.machine import header, markdown_table, publish
from benchmarks.sweep_wall import run_records, run_sweep_command

CONFIG = "experiments/configs/ood_methods.py"
VARIANTS = (("baseline", "four logit scores"), ("scorers", "+ every scorer"),
            ("", "+ MC dropout, conformal, AURC, ensembles"))  # fmt: skip
COLUMNS = ("variant", "evaluates", "command wall s", "runs", "sum of training loops s",
           "wall / baseline")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per architecture")
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    args = parser.parse_args(argv)
    overrides = [f"--config.seeds={args.seeds}"]
    rows, walls = [], {}
    with tempfile.TemporaryDirectory(prefix="toolkit-ood-cost-") as scratch:
        cache = str(Path(scratch, "cache"))
        run_sweep_command(CONFIG, str(Path(scratch, "prime")), cache, overrides)
        for variant, what in VARIANTS:
            config = f"{CONFIG}:{variant}" if variant else CONFIG
            results = Path(scratch, variant or "full")
            wall, experiment = run_sweep_command(config, str(results), cache, overrides)
            walls[variant] = wall
            records = run_records(experiment)
            ratio = wall / walls["baseline"]
            rows.append([variant or "(full)", what, f"{wall:,.1f}", records["done"],
                         f"{records['loop_s']:,.1f}", f"{ratio:.2f}"])  # fmt: skip
    title = "What the uncertainty and OOD methods cost a sweep"
    report = [header(title, ["ood_cost", *argv]), ""]
    report += [__doc__.split("\n\n")[2].replace("\n", " "), ""]
    report += markdown_table(COLUMNS, rows)
    publish(report, args.out)


if __name__ == "__main__":
    main()
