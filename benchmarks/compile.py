"""Time to first step per architecture, cold and with the persistent compilation cache.

    python -m benchmarks.compile --out results/benchmarks/compile.md
    python -m benchmarks.compile --models mlp cnn      # a subset, printed only

Every registered model trains on its natural data (MNIST-1D sequences, or 28x28 ``mnist5k``
images for the image models) with ``tk.train(steps=2 * chunk, log_every=chunk, devices=1)``
in a fresh process, twice, sharing one cache directory
(:func:`toolkit.compilation_cache.enable_compilation_cache`):

* cold -- the directory is empty: everything is traced, lowered and compiled by XLA (and
  written to the cache);
* warm -- a second process: tracing and lowering still run, XLA's compile is a cache read.

Time to first step is ``tk.train``'s wall time up to its first chunk of results, minus the
time the chunk itself takes to execute (the second chunk's time). The XLA column is the
time JAX reports for backend compiles (``/jax/core/compile/backend_compile_duration``,
which on a hit covers the cache read instead); ``trace + lower`` is Python-side work the
cache cannot remove. Not a test: numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from benchmarks.machine import emit, header, publish, run_worker

IMAGE_DATA = "mnist5k"
SEQUENCE_DATA = "mnist1d"
# The models made for images; every other registered model reads MNIST-1D sequences.
IMAGE_MODELS = ("lenet5", "alexnet", "resnet", "transformer")


def natural_data(model: str) -> str:
    return IMAGE_DATA if model in IMAGE_MODELS else SEQUENCE_DATA


def worker(model: str, cache_dir: str, chunk: int) -> None:
    """Runs in a fresh process: enables the cache, trains 2 chunks, emits the timings."""
    start = time.perf_counter()
    import toolkit as tk
    from toolkit.compilation_cache import cache_events, enable_compilation_cache

    enable_compilation_cache(cache_dir)
    imported = time.perf_counter()
    dataset = tk.data.load(natural_data(model))
    loaded = time.perf_counter()
    stamps: list[float] = []
    with cache_events() as events:
        t0 = time.perf_counter()
        tk.train(
            dataset,
            model=model,
            steps=2 * chunk,
            log_every=chunk,
            batch_size=100,
            learning_rate=1e-3,
            devices=1,
            verbose=False,
            callback=lambda row, state: stamps.append(time.perf_counter()),
        )
    chunk_s = stamps[1] - stamps[0]
    emit(
        {
            "model": model,
            "data": natural_data(model),
            "import_s": imported - start,
            "load_s": loaded - imported,
            "first_step_s": stamps[0] - t0 - chunk_s,
            "chunk_s": chunk_s,
            **events,
        }
    )


def _row(model: str, cold: dict, warm: dict) -> str:
    cells = [
        model,
        cold["data"],
        f"{cold['first_step_s']:.2f}",
        f"{cold['backend_compile_s']:.2f}",
        f"{cold['trace_s'] + cold['lower_s']:.2f}",
        f"{int(cold['misses'])}",
        f"{warm['first_step_s']:.2f}",
        f"{warm['backend_compile_s']:.2f}",
        f"{warm['trace_s'] + warm['lower_s']:.2f}",
        f"{int(warm['hits'])}/{int(warm['requests'])}",
        f"{cold['first_step_s'] / warm['first_step_s']:.1f}x",
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="default: every registered model")
    parser.add_argument("--chunk", type=int, default=10, help="steps per compiled chunk")
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.cache_dir, args.chunk)
        return

    import toolkit as tk

    models = args.models or tk.models.names()
    for name in models:
        tk.models.models.entry(name)  # unknown names fail here, listing the valid ones
    report = [header("Time to first step: cold vs persistent compilation cache")]
    report += [
        f"Each model: `tk.train(steps={2 * args.chunk}, log_every={args.chunk}, "
        "batch_size=100, devices=1)` on its natural data, in a fresh process per "
        "measurement; cold = empty cache directory, warm = a second process on the filled "
        "cache. Seconds. XLA = backend compile (cache read when warm); trace + lower = "
        "Python-side work the cache cannot remove.",
        "",
        "| model | data | cold: first step | cold: XLA | cold: trace + lower | entries written "
        "| warm: first step | warm: XLA | warm: trace + lower | warm: cache hits | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    imports = []
    for name in models:
        with tempfile.TemporaryDirectory(prefix="toolkit-compile-bench-") as cache:
            worker_args = ["--worker", name, "--cache-dir", cache, "--chunk", str(args.chunk)]
            cold = run_worker("benchmarks.compile", worker_args)
            warm = run_worker("benchmarks.compile", worker_args)
        imports += [cold["import_s"], warm["import_s"]]
        report.append(_row(name, cold, warm))
        print(report[-1], flush=True)
    report += [
        "",
        f"`import toolkit` + enabling the cache took {min(imports):.2f}-{max(imports):.2f} s "
        "per process (not included above).",
    ]
    publish(report, args.out)


if __name__ == "__main__":
    main()
