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
Then ``python -m experiments.report results/<experiment>``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.sweep",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="config file, optionally :variant")
    parser.add_argument("--results_dir", default="results", help="default: results/")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args, overrides = parser.parse_known_args(argv)

    # Imported here, not at the top: spawned workers re-import this module as __mp_main__
    # and must reach their initializer before JAX is configured.
    from toolkit.sweep import SweepConfigError, load_config, run_sweep

    try:
        config, sweep_fn = load_config(args.config, overrides)
        result = run_sweep(
            config, sweep_fn, results_dir=args.results_dir, progress=not args.no_progress
        )
    except SweepConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
