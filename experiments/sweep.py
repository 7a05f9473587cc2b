"""Run a sweep config into a results directory, resumably.

    python -m experiments.sweep --config experiments/configs/loss_comparison.py:quick
    python -m experiments.sweep --config experiments/configs/label_noise.py --config.seeds=5
    python -m experiments.sweep --config experiments/configs/architecture_sweep.py \
        --config.executor=submitit --config.submitit.cluster=slurm --results_dir /shared/results

Rerunning a command skips finished runs and resumes unfinished ones from their last
checkpoint. Overrides use ml_collections' ``--config.field=value`` syntax. Every name and
value is checked before any training; a bad one gives one error and writes nothing, as
does a --results_dir that is a file or cannot be written (a finished sweep reruns on a
read-only copy: there is nothing to write).
``--dry_run`` checks everything and lists the runs without running them; a sweep of more
than 10,000 runs needs ``--yes``. Then ``python -m experiments.report results/<experiment>``.
"""

from __future__ import annotations

import argparse
import sys

OVERRIDES = """\
overrides (after the options; ml_collections' config_flags syntax):
  --config.FIELD=VALUE        e.g. --config.seeds=5  --config.executor=inline
  --config.A.B=VALUE          nested: --config.train.steps=500
  --config.A.B=(1,3,5)        a tuple; values are Python literals, other text a string
Each override keeps the field's type; an unknown field names the closest valid one.
With --config FILE, --help lists that config's fields and their values."""


def _fields(config, prefix: str = "") -> list[str]:
    """``--config.a.b=value`` lines for every leaf field of a ConfigDict."""
    lines = []
    for key, value in sorted(config.items()):
        if hasattr(value, "items") and value:
            lines += _fields(value, f"{prefix}{key}.")
        else:
            lines.append(f"  --config.{prefix}{key}={value!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.sweep",
        description=__doc__.split("\n\n")[0],
        epilog=OVERRIDES,
        allow_abbrev=False,
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    parser.add_argument("--config", help="config file (a path from here), optionally :variant")
    parser.add_argument("--results_dir", default="results", help="default: results/")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dry_run", action="store_true", help="check and list the runs, then exit; runs nothing"
    )
    parser.add_argument(
        "--yes", action="store_true", help="run a sweep of more than 10,000 runs (refused without)"
    )
    args, overrides = parser.parse_known_args(argv)
    if args.help or not args.config:
        parser.print_help(sys.stdout if args.help else sys.stderr)
    if not args.config:
        return 0 if args.help else 2

    # Imported here, not at the top: spawned workers re-import this module as __mp_main__
    # and must reach their initializer before JAX is configured.
    from toolkit.sweep import SweepConfigError, load_config, run_sweep
    from toolkit.sweep.runner import MAX_TRIALS, describe_plan

    try:
        config, sweep_fn = load_config(args.config, overrides)
        if args.help:
            print(f"\nfields of {args.config}:", *_fields(config), sep="\n")
            return 0
        if args.dry_run:
            print(describe_plan(config, sweep_fn))
            return 0
        result = run_sweep(
            config,
            sweep_fn,
            results_dir=args.results_dir,
            progress=not args.no_progress,
            max_trials=None if args.yes else MAX_TRIALS,
        )
    except SweepConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
