"""What a sweep run's checkpoints cost, and what spacing them by time saves.

    python -m benchmarks.checkpoint --out results/benchmarks/checkpoint.md

Runs as one of the runner's CPU-mode workers does (XLA on one thread,
``toolkit.sweep.workers``), with the persistent compilation cache on. Per model (the
MNIST-1D reference MLP, CNN and GRU, batch 100, Adam):

* one orbax save of the trained ``TrainState`` through ``toolkit.sweep.checkpoint``
  (``CheckpointManager``, synchronous): wall and CPU milliseconds, median of ``--saves``,
  and how many training steps the same time buys (steady steps/s of a ``tk.train`` run);
* one sweep run (``run_sweep``, executor ``inline``: checkpoints, clean evaluation,
  provenance) of ``--steps`` steps, seconds per run, with checkpoints by chunks alone
  (``checkpoint_interval_s=0``, every 5 chunks: the runner before the time spacing) vs the
  default schedule (every 5 chunks, at most once per 60 s: a run this short saves only at
  its end). The variants alternate, ``--runs`` seeds each, ``--rounds`` times, after one
  untimed run that compiles; medians over rounds.

Not a test: numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import tempfile
import time

from benchmarks.machine import header, markdown_table, publish

MODELS = ("mlp", "cnn", "gru")
HYPER = {"optimizer": "adam", "learning_rate": 1e-2, "batch_size": 100}
COLUMNS = (
    *("model", "params", "steady steps/s"),
    *("one save: wall ms", "CPU ms", "= training steps"),
    *("run s, saves by chunks", "run s, default schedule", "ratio"),
    *("saves per run: by chunks", "default"),
)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def save_cost(state, saves: int) -> tuple[float, float]:
    """Median wall and CPU seconds of one ``Checkpoints.save`` (fresh steps, two warm-ups)."""
    import jax.numpy as jnp

    from toolkit.sweep.checkpoint import Checkpoints

    walls, cpus = [], []
    with tempfile.TemporaryDirectory(prefix="toolkit-ckpt-bench-") as directory:
        checkpoints = Checkpoints(directory)
        for i in range(saves + 2):
            step = state.replace(step=jnp.asarray(i + 1, state.step.dtype))
            wall, cpu = time.perf_counter(), _cpu_seconds()
            checkpoints.save(step)
            if i >= 2:
                walls.append(time.perf_counter() - wall)
                cpus.append(_cpu_seconds() - cpu)
        checkpoints.close()
    return statistics.median(walls), statistics.median(cpus)


def saves_by_chunks(steps: int, chunk: int, every: int) -> int:
    """Checkpoints of a run saved every ``every`` chunks of ``chunk`` steps and at its end:
    the runner's own ``SaveSchedule`` with no time spacing, over the run's chunks."""
    from toolkit.sweep.execute import SaveSchedule

    schedule = SaveSchedule(every, 0.0)
    due = [schedule.due() for _ in range(-(-steps // chunk))]
    return sum(due) + (not due[-1])  # the end is saved unless its chunk just was


def sweep_seconds(model: str, steps: int, seeds: range, interval_s: float, results: str) -> float:
    """Seconds per run of ``seeds`` fresh sweep runs with the given checkpoint spacing."""
    from toolkit.sweep.defaults import base_config
    from toolkit.sweep.runner import run_sweep
    from toolkit.sweep.search import product

    config = base_config(f"ckpt_{model}_{interval_s:g}_{seeds.start}", dataset="mnist1d")
    config.train.update(model=model, steps=steps, **HYPER)
    config.executor = "inline"
    config.checkpoint_interval_s = interval_s
    start = time.perf_counter()
    out = io.StringIO()
    result = run_sweep(
        config, lambda _: product(seed=seeds), results_dir=results, progress=False, out=out
    )
    if result.count("trained") != len(seeds):
        raise RuntimeError(f"{model}: {result.failed or result.summaries}")
    return (time.perf_counter() - start) / len(seeds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--steps", type=int, default=2000, help="steps per sweep run")
    parser.add_argument("--runs", type=int, default=3, help="seeds per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--saves", type=int, default=10, help="timed saves per model")
    parser.add_argument("--train-steps", type=int, default=1000, help="steady steps/s run")
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    args = parser.parse_args(argv)
    for name in ("steps", "runs", "rounds", "saves", "train_steps"):
        if getattr(args, name) < 1:
            flag = name.replace("_", "-")
            parser.error(f"--{flag} must be >= 1, got {getattr(args, name)}")

    from toolkit.compilation_cache import ensure_compilation_cache
    from toolkit.sweep.workers import start_backend, worker_flags

    os.environ["XLA_FLAGS"] = worker_flags()
    start_backend(threads=1)
    ensure_compilation_cache()

    import jax

    import toolkit as tk
    from toolkit.sweep.defaults import CHECKPOINT_EVERY, CHECKPOINT_INTERVAL_S
    from toolkit.training import TrainConfig

    dataset = tk.data.load("mnist1d")
    rows = []
    for model in args.models:
        chunk = TrainConfig(model=model, steps=args.steps, **HYPER).steps_per_dispatch
        run = tk.train(
            dataset, model=model, steps=args.train_steps, seed=0, verbose=False, devices=1, **HYPER
        )
        steady = statistics.median(row["steps_per_sec"] for row in run.curve[1:])
        params = sum(x.size for x in jax.tree.leaves(run.state.params))
        wall, cpu = save_cost(run.state, args.saves)
        seconds = {0.0: [], CHECKPOINT_INTERVAL_S: []}
        with tempfile.TemporaryDirectory(prefix="toolkit-ckpt-sweep-") as results:
            sweep_seconds(model, args.steps, range(1), 0.0, results)  # compiles
            seed = 1
            for _ in range(args.rounds):
                for interval in seconds:
                    seeds = range(seed, seed + args.runs)
                    seconds[interval].append(
                        sweep_seconds(model, args.steps, seeds, interval, results)
                    )
                    seed += args.runs
        old, new = (statistics.median(seconds[i]) for i in seconds)
        rows.append(
            [
                *(model, f"{params:,}", f"{steady:,.0f}"),
                *(f"{wall * 1e3:.0f}", f"{cpu * 1e3:.0f}", f"{wall * steady:,.0f}"),
                *(f"{old:.2f}", f"{new:.2f}", f"{old / new:.2f}x"),
                saves_by_chunks(args.steps, chunk, CHECKPOINT_EVERY),
                1 if new < CHECKPOINT_INTERVAL_S else "n/a",  # shorter runs save at the end only
            ]
        )
        print(" | ".join(str(cell) for cell in rows[-1]), flush=True)

    report = [
        header("Checkpoint cost in a sweep run"),
        f"One process set up as a runner CPU-mode worker (XLA on one thread), warm compilation "
        f"cache, MNIST-1D, batch 100, Adam lr 1e-2. One save = `Checkpoints.save` of the "
        f"trained state (orbax `CheckpointManager`, synchronous), median of {args.saves}; "
        f"= training steps: the save's wall time times the steady steps/s of a `tk.train` run. "
        f"Run s: `run_sweep` (executor `inline`) of {args.steps} steps per run, seconds per "
        f"run; by chunks = `checkpoint_interval_s=0` (a save every {CHECKPOINT_EVERY} chunks "
        f"and at the end, the runner's behaviour before the time spacing; a chunk is "
        f"`steps_per_dispatch` steps, {args.steps} / 20 capped at 500); "
        f"default = at most one save per {CHECKPOINT_INTERVAL_S:g} s (here: at the end only). "
        f"{args.runs} runs per variant, alternating, median of {args.rounds} round(s).",
        "",
        *markdown_table(COLUMNS, rows),
    ]
    publish(report, args.out)


if __name__ == "__main__":
    main()
