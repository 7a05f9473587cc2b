"""Wall time of the loss-comparison sweeps, run as a user runs them.

    python -m benchmarks.sweep_wall --out results/benchmarks/sweep_wall.md
    python -m benchmarks.sweep_wall --full                  # + the full sweep (~20+ min)
    python -m benchmarks.sweep_wall --from results/loss_comparison   # a finished sweep

The quick sweep (``experiments/configs/loss_comparison.py:quick``, or ``--config``) runs
twice as ``python -m experiments.sweep --no_progress``, each time in a fresh process and
into a fresh results directory: cold (an empty compilation cache) and warm (the cache the
cold run filled). ``--full`` adds the full sweep (``--full-config``), cold. The wall time is
the whole command's, interpreter start included, timed by this script.

For every sweep measured here and every ``--from`` directory (a finished sweep, e.g. one
the full sweep wrote), the runs' own records are summed too: per run, ``provenance.json``
holds ``started``/``finished`` (UTC, whole seconds) and ``wall_time_s`` (the training
loop). The runner records no start or end time for a sweep as a whole, so the span from
the first run's start to the last run's finish stands in for it; for a sweep resumed in
several invocations the span includes the time between them.

Not a test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.machine import REPO, header, markdown_table, publish

QUICK = "experiments/configs/loss_comparison.py:quick"
FULL = "experiments/configs/loss_comparison.py"
COLUMNS = (
    "sweep", "cache", "command wall s", "runs done / found", "span of runs s",
    "sum of run walls s", "sum of training loops s", "runs per minute",
)  # fmt: skip


def _time(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp)


def run_records(experiment_dir: str | os.PathLike) -> dict[str, float | int | None]:
    """What a sweep's run directories say about its time (module docstring).

    Returns ``runs`` (run directories), ``done`` (with a done marker), ``span_s`` (first
    ``started`` to last ``finished`` over runs with provenance), ``run_wall_s`` (sum of
    finished - started) and ``loop_s`` (sum of ``wall_time_s``); None where no run has
    provenance.
    """
    from toolkit import store

    path = Path(experiment_dir)
    if not (path / "runs").is_dir():
        raise FileNotFoundError(f"{str(path)!r} is not a sweep's experiment directory (no runs/)")
    runs = list(store.run_dirs(path))
    records = [store.read_json(run.provenance) for run in runs]
    records = [r for r in records if isinstance(r, dict) and "started" in r and "finished" in r]
    summary: dict[str, float | int | None] = {
        "runs": len(runs),
        "done": sum(run.is_done() for run in runs),
        "span_s": None,
        "run_wall_s": None,
        "loop_s": None,
    }
    if records:
        starts = [_time(r["started"]) for r in records]
        ends = [_time(r["finished"]) for r in records]
        summary["span_s"] = (max(ends) - min(starts)).total_seconds()
        summary["run_wall_s"] = sum(
            (e - s).total_seconds() for s, e in zip(starts, ends, strict=True)
        )
        summary["loop_s"] = sum(float(r.get("wall_time_s") or 0.0) for r in records)
    return summary


def run_sweep_command(
    config: str, results_dir: str, cache_dir: str, overrides: Sequence[str] = ()
) -> tuple[float, Path]:
    """Runs ``python -m experiments.sweep`` in a fresh process; (wall s, experiment dir)."""
    command = [sys.executable, "-m", "experiments.sweep", "--config", config,
               "--results_dir", results_dir, "--no_progress", *overrides]  # fmt: skip
    env = {**os.environ, "TOOLKIT_CACHE_DIR": cache_dir}
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` exited with {done.returncode}:\n{done.stderr[-4000:]}"
        )
    experiments = [p for p in Path(results_dir).iterdir() if (p / "runs").is_dir()]
    if len(experiments) != 1:
        raise RuntimeError(f"expected one experiment directory in {results_dir}, got {experiments}")
    return wall, experiments[0]


def _row(name: str, cache: str, wall: float | None, records: dict) -> list[str]:
    def seconds(value) -> str:
        return "n/a" if value is None else f"{value:,.1f}"

    minutes = wall if wall is not None else records["span_s"]
    rate = f"{records['done'] / minutes * 60:.1f}" if minutes else "n/a"
    return [name, cache, seconds(wall), f"{records['done']} / {records['runs']}",
            seconds(records["span_s"]), seconds(records["run_wall_s"]),
            seconds(records["loop_s"]), rate]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other arguments (--config.FIELD=VALUE) are passed to experiments.sweep "
        "for the quick sweep.",
    )
    parser.add_argument("--config", default=QUICK, help=f"the quick sweep (default {QUICK})")
    parser.add_argument("--full", action="store_true", help="also run the full sweep, cold")
    parser.add_argument("--full-config", default=FULL, help=f"default {FULL}")
    parser.add_argument("--from", dest="existing", nargs="+", default=[], metavar="DIR",
                        help="finished sweeps' experiment directories to read")  # fmt: skip
    parser.add_argument("--skip-quick", action="store_true", help="only --full / --from")
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    for directory in args.existing:  # bad paths fail before anything runs
        run_records(directory)

    rows = []
    with tempfile.TemporaryDirectory(prefix="toolkit-sweep-wall-") as scratch:
        quick, full = str(Path(scratch, "quick-cache")), str(Path(scratch, "full-cache"))
        measured = []
        if not args.skip_quick:  # the warm run reads the cache the cold one filled
            measured += [
                (args.config, "cold", overrides, quick),
                (args.config, "warm", overrides, quick),
            ]
        if args.full:
            measured.append((args.full_config, "cold", [], full))
        for config, state, extra, cache in measured:
            results = tempfile.mkdtemp(dir=scratch)
            wall, experiment = run_sweep_command(config, results, cache, extra)
            rows.append(_row(config, state, wall, run_records(experiment)))
            print(" | ".join(rows[-1]), flush=True)
    for directory in args.existing:
        rows.append(_row(str(directory), "as recorded", None, run_records(directory)))

    report = [
        header("Sweep wall time: the loss-comparison sweeps", [__file__, *argv]),
        "Each measured sweep: `python -m experiments.sweep --config <sweep> --no_progress` in a"
        " fresh process and results directory (executor `auto`: one single-threaded worker per "
        "core on CPU, vmapped populations on a GPU or TPU); cold = empty compilation cache, "
        "warm = the cache the cold run filled. Command wall = the whole command, timed by this "
        "script. From the run directories: span = first run's start to last run's finish (whole"
        " seconds; the runner records no sweep start/end), sum of run walls = sum of each run's"
        " finish - start, training loops = sum of `wall_time_s`. Runs per minute over the "
        "command wall, or over the span for a sweep read from disk."
        + (f" Overrides of the quick sweep: `{' '.join(overrides)}`." if overrides else ""),
        "",
        *markdown_table(COLUMNS, rows),
    ]
    publish(report, args.out)


if __name__ == "__main__":
    main()
