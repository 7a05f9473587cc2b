"""Vmapped populations vs sequential runs, and the sweep runner's CPU mode vs one process.

    python -m benchmarks.population --out results/benchmarks/population.md
    python -m benchmarks.population --models mlp --sizes 1 8 --steps 200 --repeats 1

Part 1, populations. For the MNIST-1D MLP and CNN (Adam lr 1e-2, batch 100, seeds 0..K-1)
and each K in ``--sizes``: one ``train_population`` call training the K members at once
vs K sequential ``tk.train(devices=1)`` runs of the same configs in one process. Each
measurement runs in a fresh process with XLA's default threading and no persistent
compilation cache, so every process compiles (cold). Only ``n = min(K,
--sequential-runs)`` sequential runs are timed: K runs take the first run's time (it
compiles) plus K - 1 times the mean of the next n - 1 (they reuse its compiled programs
in memory); cells computed this way are marked "(from n)".

* end-to-end model-steps/s: K x steps / seconds of the whole call(s): init, compiles and
  training, what a sweep pays;
* steady model-steps/s: K x the median steps/s of the chunks after each run's first;
* compile s: what JAX reports for tracing, lowering and XLA compiles (``jax.monitoring``).

Part 2, the runner's CPU mode. ``--runner-runs`` seeds x ``--runner-steps`` steps of each
model through ``run_sweep`` (checkpoints, the clean test-set evaluation, provenance) with
the ``process`` executor (``--workers`` single-threaded workers; 0 = one per core: what
``executor="auto"`` picks on CPU) and with the ``inline`` executor in one process with
XLA's default threading (all cores); ``--flag-only`` adds the process executor with
workers set up as before ``toolkit.sweep.workers.start_backend`` (the XLA flag alone,
which leaves a pool of one thread per core). Each sweep runs in a fresh process into a
fresh directory. Reported: model-steps/s over the ``run_sweep`` call (worker spawn
included, the parent's own import not), the warm rate (from the moment every worker has
finished its first run), the whole command's wall time, and model-steps per CPU-second
of the whole process tree (``getrusage``), which depends less on other load. ``--cache
warm`` (default) fills each variant's compilation cache with one untimed run first;
``cold`` gives every sweep an empty one. Variants run interleaved, ``--repeats`` times;
medians are reported.

On a GPU, part 1 is the comparison that matters (part 2 is about CPU cores):

    python -m benchmarks.population --skip runner --sizes 1 8 64 512 --steps 2000 \
        --repeats 2 --out results/benchmarks/gpu/population.md

With ``--out``, the report is rewritten after every repeat (marked partial until the
last), so a run stopped by a time limit keeps the repeats it finished.

Not a test: the numbers depend on the machine and on what else runs on it (see the load
averages printed with the report).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.machine import (
    emit,
    header,
    markdown_table,
    publish,
    run_worker,
)

MODELS = ("mlp", "cnn")
HYPER = {"optimizer": "adam", "learning_rate": 1e-2, "batch_size": 100}
# variant -> (executor, label); "inline" is the baseline the ratios divide by.
RUNNER_VARIANTS = {
    "inline": ("inline", "one process, XLA on all cores"),
    "process": ("process", "runner CPU mode"),
    "flag-only": ("process", "runner CPU mode, XLA flag only (before)"),
}


def _median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def _steady(curves: list[list[dict]]) -> float:
    """Median steps/s over every run's chunks after its first (which holds the compile)."""
    return _median(row["steps_per_sec"] for curve in curves for row in curve[1:])


def _configs(model: str, count: int, steps: int) -> list:
    from toolkit.training import TrainConfig

    return [TrainConfig(model=model, steps=steps, seed=seed, **HYPER) for seed in range(count)]


def population_worker(engine: str, model: str, count: int, steps: int) -> None:
    """Fresh process: ``count`` members as one population, or ``count`` solo runs; emits
    each call's wall and compile seconds."""
    import dataclasses

    import toolkit as tk
    from toolkit.compilation_cache import cache_events
    from toolkit.training import train_population

    dataset = tk.data.load("mnist1d")
    configs = _configs(model, count, steps)
    if engine == "vmapped":
        calls = [lambda: train_population(dataset, configs)]
    else:
        calls = [lambda c=c: [tk.train(dataset, verbose=False, devices=1, **dataclasses.asdict(c))]
                 for c in configs]  # fmt: skip
    walls, compiles, curves = [], [], []
    for call in calls:
        with cache_events() as events:
            t0 = time.perf_counter()
            runs = call()
            walls.append(time.perf_counter() - t0)
        compiles.append(events["trace_s"] + events["lower_s"] + events["backend_compile_s"])
        curves.append(runs[0].curve)
    steady = _steady(curves) * (count if engine == "vmapped" else 1)
    info = runs[0].info  # what the run trained on, as tk.train records it
    devices = f"{info['device_count']} x {info['backend']} ({info['device_kind']})"
    emit({"walls": walls, "compiles": compiles, "steady": steady, "devices": devices})


def extrapolate(values: Sequence[float], count: int) -> float:
    """Seconds for ``count`` sequential runs from the timed ones: the first run (which
    compiles) plus ``count - 1`` times the mean of the others (which reuse its programs
    in memory); with one timed run, ``count`` times it."""
    later = values[1:] or values[:1]
    return values[0] + (count - 1) * sum(later) / len(later)


def _seeds(config) -> list[dict]:
    from toolkit.sweep.search import product

    return product(seed=range(config.seeds))


def _flag_only_init(xla_flags: str) -> None:
    """The worker setup before ``workers.start_backend`` existed: the XLA flag alone."""
    os.environ["XLA_FLAGS"] = xla_flags


class _Stamped:
    """Stands in for the runner's executor registry: notes when each run finishes."""

    def __init__(self, registry, stamps: list[float]):
        self.registry, self.stamps = registry, stamps

    def get(self, name: str):
        run = self.registry.get(name)

        def stamped(tasks, **options):
            for summary in run(tasks, **options):
                self.stamps.append(time.perf_counter())
                yield summary

        return stamped


def runner_worker(variant: str, model: str, runs: int, steps: int, workers: int) -> None:
    """Fresh process: ``runs`` seeds through ``run_sweep`` with the variant's executor."""
    from toolkit import store
    from toolkit.sweep import executors, runner
    from toolkit.sweep.defaults import base_config

    executor = RUNNER_VARIANTS[variant][0]
    if variant == "flag-only":
        executors.init_worker = _flag_only_init
    stamps: list[float] = []
    runner.executors = _Stamped(executors.executors, stamps)
    config = base_config(f"bench_{model}", dataset="mnist1d")
    config.train.update(model=model, steps=steps, **HYPER)
    config.seeds, config.executor, config.workers = runs, executor, workers
    with tempfile.TemporaryDirectory(prefix="toolkit-runner-bench-") as results:
        t0 = time.perf_counter()
        result = runner.run_sweep(
            config, _seeds, results_dir=results, progress=False, out=io.StringIO()
        )
        wall = time.perf_counter() - t0
        if result.count("trained") != runs:
            raise RuntimeError(f"{variant}: {result.failed or result.summaries}")
        steady = [_steady([r.read_metrics()]) for r in store.run_dirs(result.experiment_dir)]
    # Warm: from the moment every worker has finished its first run to the last run.
    first = min(runs, workers or executors.default_workers()) if executor == "process" else 1
    warm = (runs - first) * steps / (stamps[-1] - stamps[first - 1]) if runs > first else None
    emit(
        {
            "wall_s": wall,
            "model_steps": runs * steps,
            "warm": warm,
            "train_s": _median(s["train_s"] for s in result.summaries),
            "steady": _median(steady),
        }
    )


def _timed(module_args: list[str], env: dict[str, str] | None = None) -> dict:
    """Runs a worker; adds the command's wall time and the CPU time of its process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result = run_worker("benchmarks.population", module_args, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {**result, "command_s": wall, "cpu_s": cpu}


def _population_rows(results: dict, models, sizes, steps: int, timed) -> list[list[str]]:
    rows = []
    for model in models:
        for size in sizes:
            vm = results[model, "vmapped", size]
            seq = results[model, "sequential", timed(size)]
            vm_wall = _median(r["walls"][0] for r in vm)
            seq_wall = _median(extrapolate(r["walls"], size) for r in seq)
            vm_steady, seq_steady = (
                _median(r["steady"] for r in vm),
                _median(r["steady"] for r in seq),
            )
            vm_compile = _median(r["compiles"][0] for r in vm)
            seq_compile = _median(extrapolate(r["compiles"], size) for r in seq)
            vm_e2e, seq_e2e = size * steps / vm_wall, size * steps / seq_wall
            note = "" if timed(size) == size else f" (from {timed(size)})"
            rows.append([
                model, size, f"{vm_e2e:,.0f}", f"{seq_e2e:,.0f}{note}", f"{vm_e2e / seq_e2e:.2f}x",
                f"{vm_steady:,.0f}", f"{seq_steady:,.0f}", f"{vm_steady / seq_steady:.2f}x",
                f"{vm_compile:.1f}", f"{seq_compile:.1f}{note}", f"{vm_wall:.1f}",
                f"{seq_wall:.1f}{note}",
            ])  # fmt: skip
    return rows


POPULATION_COLUMNS = (
    "model", "K", "vmapped e2e", "sequential e2e", "ratio", "vmapped steady",
    "sequential steady", "ratio", "vmapped compile s", "sequential compile s",
    "vmapped wall s", "sequential wall s",
)  # fmt: skip
RUNNER_COLUMNS = (
    "model", "runs x steps", "variant", "model-steps/s", "ratio", "warm model-steps/s",
    "ratio", "whole command s", "ratio", "model-steps per CPU-s", "ratio",
    "per run: train s, steady steps/s",
)  # fmt: skip


def _runner_rows(results: dict, models, variants, runs: int, steps: int) -> list[list[str]]:
    rows = []
    for model in models:

        def measure(variant: str, key: str, model: str = model) -> float:
            values = results[model, variant]
            if key == "rate":
                return _median(r["model_steps"] / r["wall_s"] for r in values)
            if key == "per_cpu":
                return _median(r["model_steps"] / r["cpu_s"] for r in values)
            if key == "warm" and values[0]["warm"] is None:
                return float("nan")
            return _median(r[key] for r in values)

        for variant in variants:
            cells = [model, f"{runs} x {steps}", RUNNER_VARIANTS[variant][1]]
            for key, form, higher in (
                ("rate", ",.0f", True),
                ("warm", ",.0f", True),
                ("command_s", ".1f", False),
                ("per_cpu", ",.0f", True),
            ):
                value, base = measure(variant, key), measure("inline", key)
                ratio = value / base if higher else base / value
                cells += [f"{value:{form}}", f"{ratio:.2f}x"]  # fmt: skip
            values = results[model, variant]
            cells.append(f"{_median(r['train_s'] for r in values):.1f}, "
                         f"{_median(r['steady'] for r in values):,.0f}")  # fmt: skip
            rows.append(cells)
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--steps", type=int, default=500, help="steps per population member")
    parser.add_argument("--sequential-runs", type=int, default=4, help="solo runs timed per K")
    parser.add_argument("--runner-runs", type=int, default=24, help="runs per model, part 2")
    parser.add_argument("--runner-steps", type=int, default=2000, help="steps per run, part 2")
    parser.add_argument("--workers", type=int, default=0, help="part 2; 0 = one per core")
    parser.add_argument("--cache", choices=("warm", "cold"), default="warm", help="part 2")
    parser.add_argument("--flag-only", action="store_true",
                        help="part 2: also time workers with only the XLA flag")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip", choices=("population", "runner"), help="leave a part out")
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    parser.add_argument("--worker", choices=("vmapped", "sequential", *RUNNER_VARIANTS),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    return parser


def _check(args: argparse.Namespace) -> None:
    for name in ("steps", "sequential_runs", "runner_runs", "runner_steps", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.sizes) < 1 or args.workers < 0:
        raise SystemExit(
            f"--sizes must be >= 1 and --workers >= 0, got {args.sizes}, {args.workers}"
        )


def _measure(args: argparse.Namespace, variants: list[str]) -> Iterator[tuple[int, dict, dict]]:
    """Runs every measurement, interleaved over repeats; after each repeat, yields the
    number of repeats done and the (part 1, part 2) results so far."""
    pop: dict[tuple, list[dict]] = {}
    run: dict[tuple, list[dict]] = {}
    sizes = sorted(set(args.sizes))
    counts = [("vmapped", s) for s in sizes]
    counts += [("sequential", n) for n in sorted({min(s, args.sequential_runs) for s in sizes})]
    runner_args = ["--runner-steps", str(args.runner_steps), "--workers", str(args.workers)]
    with tempfile.TemporaryDirectory(prefix="toolkit-population-bench-") as scratch:
        caches = {v: str(Path(scratch, v)) for v in variants}
        for model in args.models if args.skip != "runner" and args.cache == "warm" else ():
            for variant in variants:  # fills each variant's cache with one untimed run
                _timed(["--worker", variant, "--model", model, "--count", "1", *runner_args],
                       {"TOOLKIT_CACHE_DIR": caches[variant]})  # fmt: skip
        for repeat in range(args.repeats):
            for model in args.models if args.skip != "population" else ():
                for engine, count in counts:
                    result = _timed(["--worker", engine, "--model", model, "--count", str(count),
                                     "--steps", str(args.steps)])  # fmt: skip
                    pop.setdefault((model, engine, count), []).append(result)
                    print(f"repeat {repeat} {model} {engine} x{count}: walls "
                          f"{', '.join(f'{w:.1f}' for w in result['walls'])} s, steady "
                          f"{result['steady']:,.0f} model-steps/s", flush=True)  # fmt: skip
            for model in args.models if args.skip != "runner" else ():
                for variant in variants:
                    cache = (
                        caches[variant] if args.cache == "warm" else tempfile.mkdtemp(dir=scratch)
                    )
                    result = _timed(["--worker", variant, "--model", model, "--count",
                                     str(args.runner_runs), *runner_args],
                                    {"TOOLKIT_CACHE_DIR": cache})  # fmt: skip
                    run.setdefault((model, variant), []).append(result)
                    print(f"repeat {repeat} {model} {RUNNER_VARIANTS[variant][1]}: "
                          f"{result['model_steps'] / result['wall_s']:,.0f} model-steps/s "
                          f"({result['wall_s']:.1f} s)", flush=True)  # fmt: skip
            yield repeat + 1, pop, run


def _report(
    args: argparse.Namespace, head: str, variants: list[str], done: int, pop: dict, run: dict
) -> list[str]:
    """The report's lines from the ``done`` repeats measured so far."""

    def timed(size: int) -> int:
        return min(size, args.sequential_runs)

    report = [head]
    if done < args.repeats:
        report += [f"**Partial: {done} of {args.repeats} repeats done.**", ""]
    if args.skip != "population":
        rows = _population_rows(pop, args.models, sorted(set(args.sizes)), args.steps, timed)
        devices = sorted({r["devices"] for results in pop.values() for r in results})
        report += [
            "## Part 1: one vmapped population of K members vs K sequential runs",
            "",
            f"{args.steps} steps per member, batch 100, Adam lr 1e-2, MNIST-1D; each cell is the "
            f"median of {done} fresh process(es), XLA default threading, no persistent "
            f"compilation cache (every process compiles). Model-steps/s; e2e = whole call "
            f"(init, compile, training); steady = chunks after the first. Sequential: "
            f"n = min(K, {args.sequential_runs}) runs timed; K runs = the first (it compiles) "
            f"+ (K - 1) x the mean of the other n - 1 (they reuse its programs), marked "
            f"'(from n)'. Compile s = tracing + lowering + XLA compiles, as JAX reports them. "
            f"JAX devices of the workers: {', '.join(devices)}.",
            "",
            *markdown_table(POPULATION_COLUMNS, rows),
            "",
        ]  # fmt: skip
    if args.skip != "runner":
        rows = _runner_rows(run, args.models, variants, args.runner_runs, args.runner_steps)
        report += [
            "## Part 2: the sweep runner's CPU mode vs one process",
            "",
            f"`run_sweep` of {args.runner_runs} seeds x {args.runner_steps} steps per model, "
            f"the runner's real path (checkpoints, clean test-set evaluation, provenance), "
            f"each in a fresh process and results directory. Runner CPU mode = executor "
            f"`process`: {args.workers or 'one per core'} spawned worker(s), XLA on one thread "
            f"each (`toolkit.sweep.workers`); one process = executor `inline` with XLA's "
            f"default threading. Ratios divide by one process (for seconds: its time by the "
            f"variant's). model-steps/s = runs x steps / the `run_sweep` call (worker spawn "
            f"and start-up included); warm = from the moment every worker has finished its "
            f"first run to the last run (start-up and first compiles excluded); whole command "
            f"= the process from interpreter start; CPU-s = user + system time of the whole "
            f"process tree. Compilation cache: {args.cache} for every variant"
            + (" (each filled by one untimed run first)" if args.cache == "warm" else "")
            + f". Medians of {done} interleaved repeat(s). Per run: the `train` "
            f"call's seconds and one model's steady steps/s.",
            "",
            *markdown_table(RUNNER_COLUMNS, rows),
            "",
        ]  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.worker in ("vmapped", "sequential"):
        population_worker(args.worker, args.model, args.count, args.steps)
        return
    if args.worker:
        runner_worker(args.worker, args.model, args.count, args.runner_steps, args.workers)
        return
    _check(args)
    head = header("Populations and the sweep runner's CPU mode", [__file__, *argv])
    variants = ["inline", "process", *(["flag-only"] if args.flag_only else [])]
    # The report is rewritten after every repeat, so a benchmark stopped early (a time
    # limit on a lent GPU) still leaves the repeats it finished.
    for done, pop, run in _measure(args, variants):
        if args.out or done == args.repeats:
            publish(_report(args, head, variants, done, pop, run), args.out)


if __name__ == "__main__":
    main()
