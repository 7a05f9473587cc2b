"""Training speed of the toolkit against plain PyTorch on the MNIST-1D reference models.

    pip install torch==2.13.0           # the CPU build; a benchmark-only dependency
    python -m benchmarks.vs_pytorch --out results/benchmarks/vs_pytorch.md
    python -m benchmarks.vs_pytorch --models mlp --repeats 1    # quick look, printed only
    git worktree add --detach ../baseline REV    # then, the toolkit at REV side by side:
    python -m benchmarks.vs_pytorch --baseline ../baseline

MLP, CNN and bidirectional GRU on ``tk.data.load("mnist1d")``, batch 100, Adam lr 1e-2,
trained by each engine in its own fresh process (so each gets its own ``XLA_FLAGS`` and
thread settings), engines interleaved, repeated ``--repeats`` times; the median is
reported:

* ``toolkit`` -- ``tk.train(..., devices=1)``: data on device, ``lax.scan`` chunks; XLA's
  default threading (all cores);
* ``toolkit, XLA 1 thread`` -- the same with ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``;
* ``jax jit loop`` -- the toolkit's ``train_step`` jitted and called once per step from
  Python (what a simple JAX loop does), for context;
* ``torch N thread(s)`` -- :mod:`benchmarks.torch_reference`, eager, ``torch.set_num_threads(N)``
  (N = 1 by default; ``--torch-threads 1 2`` adds 2);
* ``toolkit @ REV`` (with ``--baseline DIR``) -- the ``toolkit`` engine run from another
  checkout, e.g. the commit before a change to the trainer, interleaved with the others.

Steps/s are steady-state: the toolkit's first chunk (which includes the compile) and the
first ``--warmup`` steps of the loops are excluded; the compile time is reported apart
(``tk.train``'s wall time minus steps / steady rate). Final test accuracy is a sanity check
that every engine trained the same model. Not a test: numbers depend on the machine and
what else runs on it; ratios from one run (engines side by side) are what compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from benchmarks.machine import emit, header, publish, run_worker

MODELS = ("mlp", "cnn", "gru")
DEFAULT_STEPS = {"mlp": 2000, "cnn": 2000, "gru": 1000}
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false"
# name -> (worker kind, threads, extra XLA_FLAGS); torch engines are added per --torch-threads.
JAX_ENGINES = {
    "toolkit": ("toolkit", 0, ""),
    "toolkit, XLA 1 thread": ("toolkit", 0, SINGLE_THREAD_XLA),
    "jax jit loop": ("jax_loop", 0, ""),
}


def torch_engine(threads: int) -> str:
    return f"torch {threads} thread" + ("s" if threads > 1 else "")


HYPER = {"batch_size": 100, "learning_rate": 1e-2, "optimizer": "adam", "seed": 0}


def _toolkit(model: str, steps: int, warmup: int) -> dict:
    import jax

    import toolkit as tk

    del warmup  # the first chunk (compile included) is the warm-up
    dataset = tk.data.load("mnist1d")
    t0 = time.perf_counter()
    run = tk.train(dataset, model=model, steps=steps, devices=1, verbose=False, **HYPER)
    total = time.perf_counter() - t0
    rows = run.curve[1:]
    previous = run.curve[0]["step"]
    timed_steps, seconds = 0, 0.0
    for row in rows:
        n = row["step"] - previous
        timed_steps, seconds, previous = (
            timed_steps + n,
            seconds + n / row["steps_per_sec"],
            row["step"],
        )
    rate = timed_steps / seconds
    params = sum(x.size for x in jax.tree.leaves(run.params))
    return {
        "steps_per_s": rate,
        "compile_s": total - steps / rate,
        "accuracy": tk.evaluate(run, dataset.test).loc[0, "accuracy"],
        "params": params,
        "chunk": run.config.steps_per_dispatch,
    }


def _jax_loop(model: str, steps: int, warmup: int) -> dict:
    import jax
    import numpy as np

    import toolkit as tk
    from toolkit import training

    dataset = tk.data.load("mnist1d")
    cfg = training.TrainConfig(model=model, steps=steps, **HYPER)
    net, tx = training.build_model(cfg, 10), training.build_optimizer(cfg)
    train_step = training.make_train_step(net, training.build_loss(cfg), tx)
    x_all, y_all = jax.device_put((dataset.train.x, dataset.train.y))
    state = training.init_state(net, tx, x_all[:100], key=jax.random.key(0))

    @jax.jit
    def step(state, idx, key):
        return train_step(state, (x_all[idx], y_all[idx]), key)

    rng = np.random.default_rng(0)
    n = len(dataset.train)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-steps * 100 // n))])
    key = jax.random.key(1)
    for i in range(steps):
        if i == warmup:
            jax.block_until_ready(state)
            start = time.perf_counter()
        state, _ = step(state, order[i * 100 : (i + 1) * 100], key)
    jax.block_until_ready(state)
    elapsed = time.perf_counter() - start
    logits = net.apply({"params": state.params}, dataset.test.x)
    accuracy = float(np.mean(np.asarray(logits).argmax(-1) == dataset.test.y))
    return {"steps_per_s": (steps - warmup) / elapsed, "accuracy": accuracy}


def _torch(model: str, steps: int, warmup: int, threads: int) -> dict:
    import toolkit as tk
    from benchmarks import torch_reference

    dataset = tk.data.load("mnist1d")
    split = (dataset.train.x, dataset.train.y, dataset.test.x, dataset.test.y)
    return torch_reference.train(model, *split, steps=steps, warmup=warmup, threads=threads)


def worker(kind: str, model: str, steps: int, warmup: int, threads: int) -> None:
    if kind == "torch":
        result = _torch(model, steps, warmup, threads)
    else:
        result = {"toolkit": _toolkit, "jax_loop": _jax_loop}[kind](model, steps, warmup)
    emit(result)


def _revision(tree: str) -> str:
    """The short commit hash checked out in ``tree`` (its directory name if not a git tree)."""
    done = subprocess.run(
        ["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or os.path.basename(os.path.abspath(tree))


def _median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def _table(models, engines, results, baseline: str | None) -> list[str]:
    names = list(engines)
    ratio_names = ["toolkit / torch 1 thread", "toolkit XLA 1 thread / torch 1 thread",
                   "jax jit loop / torch 1 thread"]  # fmt: skip
    if baseline:
        ratio_names.append(f"toolkit / {baseline}")
    lines = [
        "Steady-state steps/s (median over repeats; higher is better):",
        "",
        "| model | steps | " + " | ".join(names + ratio_names) + " |",
        "|---|---|" + "---|" * (len(names) + len(ratio_names)),
    ]
    for model, steps in models:
        rate = {e: _median(results[model, e], "steps_per_s") for e in names}
        torch1 = rate["torch 1 thread"]
        ratios = [rate["toolkit"] / torch1, rate["toolkit, XLA 1 thread"] / torch1,
                  rate["jax jit loop"] / torch1]  # fmt: skip
        if baseline:
            ratios.append(rate["toolkit"] / rate[baseline])
        lines.append(
            f"| {model} | {steps} | "
            + " | ".join(f"{rate[e]:,.0f}" for e in names)
            + " | "
            + " | ".join(f"{r:.2f}x" for r in ratios)
            + " |"
        )
    lines += [
        "",
        "Compile time of `tk.train` (s), parameter counts and final test accuracy "
        "(median; a sanity check that the engines train the same model):",
        "",
        "| model | toolkit compile s | toolkit XLA 1 thread compile s | chunk | params toolkit "
        "| params torch | " + " | ".join(f"acc {e}" for e in names) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(names),
    ]
    for model, _ in models:
        tk_runs, tk1_runs = results[model, "toolkit"], results[model, "toolkit, XLA 1 thread"]
        cells = [
            model,
            f"{_median(tk_runs, 'compile_s'):.1f}",
            f"{_median(tk1_runs, 'compile_s'):.1f}",
            str(tk_runs[0]["chunk"]),
            f"{tk_runs[0]['params']:,}",
            f"{results[model, 'torch 1 thread'][0]['params']:,}",
            *(f"{_median(results[model, e], 'accuracy'):.3f}" for e in names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--steps", type=int, help="steps per run (default: 2000, GRU 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed loop steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--torch-threads",
        type=int,
        nargs="+",
        default=[1],
        help="PyTorch thread counts to time (1 is always included; 2 crawls on a busy machine)",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also time the toolkit engine from this checkout (e.g. a git worktree at a "
        "baseline commit), interleaved with the others",
    )
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    parser.add_argument(
        "--worker", choices=("toolkit", "jax_loop", "torch"), help=argparse.SUPPRESS
    )
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.model, args.steps, args.warmup, args.threads)
        return

    models = [(m, args.steps or DEFAULT_STEPS[m]) for m in args.models]
    engines = {name: (*engine, None) for name, engine in JAX_ENGINES.items()}
    baseline = None
    if args.baseline:
        baseline = f"toolkit @ {_revision(args.baseline)}"
        engines[baseline] = ("toolkit", 0, "", args.baseline)
    for threads in sorted({1, *args.torch_threads}):
        engines[torch_engine(threads)] = ("torch", threads, "", None)
    report = [header("Training speed: toolkit vs PyTorch (MNIST-1D reference models)")]
    results: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(args.repeats):
        for model, steps in models:
            for engine, (kind, threads, flags, tree) in engines.items():
                worker_args = ["--worker", kind, "--model", model, "--steps", str(steps)]
                worker_args += ["--warmup", str(args.warmup), "--threads", str(threads)]
                env = {"XLA_FLAGS": flags} if flags else {}
                result = run_worker("benchmarks.vs_pytorch", worker_args, env=env, tree=tree)
                results.setdefault((model, engine), []).append(result)
                print(f"repeat {repeat} {model:4s} {engine:24s} {result['steps_per_s']:8,.0f} "
                      f"steps/s  acc {result['accuracy']:.3f}", flush=True)  # fmt: skip
    report += [
        f"Batch 100, Adam lr 1e-2, MNIST-1D (4,000 train / 1,000 test), {args.repeats} "
        f"repeat(s), engines interleaved, each run in a fresh process; loops time the steps "
        f"after the first {args.warmup}. `XLA 1 thread` = `XLA_FLAGS={SINGLE_THREAD_XLA}`.",
        "",
        *_table(models, engines, results, baseline),
        "",
        "Every run's steps/s, in the order they ran (the spread shows the noise):",
        "",
        *(
            f"- {model}, {engine}: "
            + ", ".join(f"{r['steps_per_s']:,.0f}" for r in results[model, engine])
            for model, _ in models
            for engine in engines
        ),
    ]
    publish(report, args.out)


if __name__ == "__main__":
    main()
