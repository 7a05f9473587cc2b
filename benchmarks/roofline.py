"""Achieved FLOP/s of the toolkit's training step against this machine's measured peak.

    python -m benchmarks.roofline --out results/benchmarks/roofline.md
    python -m benchmarks.roofline --batch 1024 --width 512      # smaller, printed only

Peak: a jitted ``n x n @ n x n`` float32 matmul (``2 n^3`` FLOPs; n = 2048, best of 10
calls), timed in this process right before each workload, so that each fraction compares
numbers taken under the same load (other processes may be using the cores). Workloads,
each trained by ``tk.train(devices=1)`` with Adam on synthetic or MNIST-1D data:

* a large-batch MLP (default batch 4096, input and hidden widths 1024, 3 hidden layers);
* the MNIST-1D reference MLP, CNN and GRU at batch 100.

FLOPs per step come from XLA's cost analysis of the compiled single training step
(``jax.jit(step).lower(...).compile().cost_analysis()["flops"]``), cross-checked with the
analytic ``6 B P`` of dense layers (forward ``2 B P``, backward ``4 B P``: Kaplan et al.
2020; B the batch, P the parameters) and with the matmul/conv FLOPs counted in the step's
jaxpr (:mod:`benchmarks.flops`). XLA counts a loop body once, so for the GRU (a scan over
40 time steps) only the jaxpr count is right; 6BP ignores weight sharing (convolutions,
recurrences), so it fits the MLPs only. Achieved FLOP/s = FLOPs per step x steady-state
steps/s (the first chunk, which includes the compile, is excluded). Not a test: numbers
depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import toolkit as tk
from benchmarks.flops import count_flops
from benchmarks.machine import header, publish
from toolkit import training
from toolkit.data import Split


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a jitted float32 ``n x n`` matmul: the best of ``repeats`` timed calls.

    The best, not the median, because other processes only ever slow a call down.
    """
    a, b = jax.random.normal(jax.random.key(0), (2, n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times)


def step_flops(cfg: training.TrainConfig, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """FLOPs of one training step on a batch of ``cfg.batch_size``: XLA's and the jaxpr's.

    XLA's cost analysis covers every op but counts a loop body once; the jaxpr count
    (:func:`benchmarks.flops.count_flops`) covers matmuls and convolutions only, scans x length.
    """
    model, tx = training.build_model(cfg, int(y.max()) + 1), training.build_optimizer(cfg)
    train_step = training.make_train_step(model, training.build_loss(cfg), tx)
    batch = (jnp.asarray(x[: cfg.batch_size]), jnp.asarray(y[: cfg.batch_size]))
    state = training.init_state(model, tx, batch[0], key=jax.random.key(0))
    compiled = jax.jit(train_step).lower(state, batch, jax.random.key(1)).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):  # older jax returned one dict per program
        analysis = analysis[0]
    return float(analysis["flops"]), count_flops(train_step, state, batch, jax.random.key(1))


def measure(name: str, split: Split, num_classes: int, **config) -> dict[str, float]:
    """Steady-state steps/s of ``tk.train`` and the FLOPs of one step."""
    run = tk.train(split, num_classes=num_classes, devices=1, verbose=False, **config)
    rows, previous = run.curve[1:], run.curve[0]["step"]
    steps, seconds = 0, 0.0
    for row in rows:
        n = row["step"] - previous
        steps, seconds, previous = steps + n, seconds + n / row["steps_per_sec"], row["step"]
    params = sum(leaf.size for leaf in jax.tree.leaves(run.params))
    flops, flops_jaxpr = step_flops(run.config, split.x, split.y)
    rate = steps / seconds
    return {
        "name": name,
        "batch": run.config.batch_size,
        "params": params,
        "flops_xla": flops,
        "flops_jaxpr": flops_jaxpr,
        "flops_6bp": 6 * run.config.batch_size * params,
        "steps_per_s": rate,
        "flops_per_s": flops * rate,
    }


def workloads(batch: int, width: int, depth: int, steps: int):
    """(name, split, num_classes, config) for the large MLP and the MNIST-1D models."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * batch, width)).astype(np.float32)
    y = rng.integers(0, 10, size=2 * batch).astype(np.int32)
    large = (
        f"MLP {width}x{depth}, batch {batch}",
        Split(x, y),
        10,
        {"model": "mlp", "model_hparams": {"hidden": (width,) * depth}, "batch_size": batch,
         "steps": steps, "log_every": max(1, steps // 3)},
    )  # fmt: skip
    yield large
    mnist1d = tk.data.load("mnist1d")
    for model, model_steps in (("mlp", 2000), ("cnn", 1000), ("gru", 500)):
        config = {"model": model, "batch_size": 100, "steps": model_steps, "log_every": 100}
        yield f"MNIST-1D {model}, batch 100", mnist1d.train, 10, config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=3, help="hidden layers of the large MLP")
    parser.add_argument("--steps", type=int, default=12, help="steps of the large MLP")
    parser.add_argument("--matmul", type=int, default=2048, help="n of the peak matmul")
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    args = parser.parse_args(argv)

    report = [header("Roofline: achieved FLOP/s of a training step vs measured peak")]
    rows = []
    for name, split, classes, config in workloads(args.batch, args.width, args.depth, args.steps):
        peak = matmul_peak(args.matmul)
        rows.append(measure(name, split, classes, learning_rate=1e-3, **config) | {"peak": peak})
        print(f"{name}: {rows[-1]['flops_per_s'] / 1e9:.1f} GFLOP/s, matmul {peak / 1e9:.1f}")
    report += [
        f"Peak: jitted {args.matmul}^3 float32 matmul (best of 10 calls), measured right before "
        "each workload. Training: `tk.train(devices=1)`, Adam, steady state (first chunk "
        "excluded). FLOPs/step: XLA's cost analysis of one compiled step (all ops, but a "
        "loop body counted once); the matmul/conv FLOPs in the step's jaxpr (scans times "
        "their length); 6BP, the analytic dense-layer count (B batch, P params; ignores "
        "weight sharing in convs and recurrences).",
        "",
        "| workload | params | FLOPs/step: XLA | jaxpr matmuls | 6BP | steps/s "
        "| GFLOP/s (XLA count) | GFLOP/s (jaxpr count) | matmul peak GFLOP/s "
        "| fraction of peak (larger count) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        achieved = max(r["flops_xla"], r["flops_jaxpr"]) * r["steps_per_s"]
        report.append(
            f"| {r['name']} | {r['params']:,} | {r['flops_xla'] / 1e6:,.1f} M "
            f"| {r['flops_jaxpr'] / 1e6:,.1f} M | {r['flops_6bp'] / 1e6:,.1f} M "
            f"| {r['steps_per_s']:,.1f} | {r['flops_per_s'] / 1e9:.1f} "
            f"| {r['flops_jaxpr'] * r['steps_per_s'] / 1e9:.1f} | {r['peak'] / 1e9:.1f} "
            f"| {achieved / r['peak']:.0%} |"
        )
    publish(report, args.out)


if __name__ == "__main__":
    main()
