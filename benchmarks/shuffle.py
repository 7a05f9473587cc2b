"""The trainer's on-device shuffle, before and after ``toolkit.shuffle``.

    python -m benchmarks.shuffle --out results/benchmarks/shuffle.md

Both ways give the same integers (checked on every case before timing). For each dataset
size, jitted, best of ``--repeats`` timed batches:

* one permutation of ``n``: ``jax.random.permutation`` vs ``toolkit.shuffle.permutation``
  (which rebuilds each stable sorting round from a one-operand sort);
* the shuffle's cost per training step over ``--chunks`` consecutive chunks: as the trainer
  did before (every chunk draws, with ``jax.random.permutation``, each of the
  ``ceil(chunk x batch / n) + 1`` epochs it can touch) vs as it does now
  (``shuffle.EpochPermutations`` draws each epoch once with the toolkit's permutation, and
  ``shuffle.chunk_indices`` slices the chunk's batches).

Cases: MNIST-1D (4,000 examples; chunks of 100 steps at batch 100, the MLP/CNN setting, and
50 steps, the GRU's), MNIST-sized (60,000; 100 steps at batch 32 and 128). Not a test:
numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import header, markdown_table, publish
from toolkit import shuffle

# (dataset, n, chunk steps, batch)
CASES = (
    ("MNIST-1D", 4_000, 100, 100),
    ("MNIST-1D", 4_000, 50, 100),
    ("MNIST-sized", 60_000, 100, 32),
    ("MNIST-sized", 60_000, 100, 128),
)
COLUMNS = (
    *("data", "n", "chunk steps x batch", "epochs per chunk"),
    *("one permutation ms: jax", "toolkit", "ratio"),
    *("shuffle us per training step: before", "now", "ratio"),
)


def best_seconds(fn, repeats: int) -> float:
    """The best over ``repeats`` timed calls of ``fn`` (after one warm-up call)."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def before(key, n: int, steps: int, batch: int):
    """The old trainer's chunk: draw every epoch it can touch with JAX's permutation."""

    @jax.jit
    def indices(start_step):
        epoch0 = start_step * batch // n
        epochs = epoch0 + jnp.arange(shuffle.epochs_per_chunk(steps, batch, n))
        perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), n))(epochs)
        return shuffle.chunk_indices(perms, start_step, steps, batch)

    return indices


@functools.partial(jax.jit, static_argnums=(2, 3))
def _window(perms, start_step, steps: int, batch: int):
    return shuffle.chunk_indices(jnp.stack(perms), start_step, steps, batch)


def now(key, n: int, steps: int, batch: int):
    """The trainer's way: each epoch drawn once (a fresh cache per call), then the slice."""
    epochs = shuffle.EpochPermutations(key, n, batch)
    return lambda start_step: _window(epochs.for_chunk(start_step, steps), start_step, steps, batch)


def run_of_chunks(indices, chunks: int, steps: int):
    """All ``chunks`` consecutive chunks' indices, as one run (``indices(start_step)``)."""
    return lambda: [indices(np.int32(c * steps)) for c in range(chunks)]


def fresh_run(key, n: int, steps: int, batch: int, chunks: int):
    """One run's chunks, the trainer's way, starting with no epoch drawn."""
    return run_of_chunks(now(key, n, steps, batch), chunks, steps)()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=20, help="consecutive chunks per run")
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    args = parser.parse_args(argv)

    key = jax.random.key(0)
    rows = []
    for dataset, n, steps, batch in CASES:
        jax_one = jax.jit(lambda k, n=n: jax.random.permutation(k, n))
        ours_one = jax.jit(lambda k, n=n: shuffle.permutation(k, n))
        if not np.array_equal(jax_one(key), ours_one(key)):
            raise AssertionError(f"{dataset} n={n}: the permutations differ")
        old, new = before(key, n, steps, batch), now(key, n, steps, batch)
        for chunk in range(args.chunks):
            start = np.int32(chunk * steps)
            if not np.array_equal(old(start), new(start)):
                raise AssertionError(f"{dataset} n={n}: chunk {chunk}'s batches differ")
        one = [best_seconds(lambda f=f: f(key), args.repeats) for f in (jax_one, ours_one)]
        # A fresh EpochPermutations per timed run, so each run draws its epochs anew.
        runs = (
            run_of_chunks(old, args.chunks, steps),
            functools.partial(fresh_run, key, n, steps, batch, args.chunks),
        )
        per_step = [best_seconds(run, args.repeats) / (args.chunks * steps) for run in runs]
        rows.append(
            [dataset, f"{n:,}", f"{steps} x {batch}", shuffle.epochs_per_chunk(steps, batch, n)]
            + [f"{t * 1e3:.2f}" for t in one]
            + [f"{one[0] / one[1]:.1f}x"]
            + [f"{t * 1e6:.0f}" for t in per_step]
            + [f"{per_step[0] / per_step[1]:.1f}x"]
        )
        print(" | ".join(str(cell) for cell in rows[-1]))

    report = [
        header("The trainer's shuffle, before and after toolkit.shuffle"),
        "Identical outputs checked on every case before timing. Jitted; best of "
        f"{args.repeats} timed runs. Per training step: {args.chunks} consecutive chunks' "
        "batch indices divided by their steps; before = every chunk draws each epoch it can "
        "touch with `jax.random.permutation`; now = `shuffle.EpochPermutations` (each epoch "
        "drawn once, with `shuffle.permutation`) + `shuffle.chunk_indices`.",
        "",
        *markdown_table(COLUMNS, rows),
    ]
    publish(report, args.out)


if __name__ == "__main__":
    main()
