"""Reproduces the MNIST-1D results table (Greydanus 2020) with the toolkit's trainer.

    python -m experiments.mnist1d_table                 # 4 models x 3 seeds, ~3 min on 2 cores
    python -m experiments.mnist1d_table --seeds 1 --steps 300 --out /tmp/quick   # smoke run

Writes ``<out>/mnist1d_table.md`` and ``<out>/mnist1d_table.csv`` (one row per model and
seed). Reference settings: Adam, learning rate 1e-2, batch 100, 6000 steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import toolkit as tk
from toolkit.store import atomic_write_text

# README accuracies of the reference models (github.com/greydanus/mnist1d).
PUBLISHED = {"linear": 32.0, "mlp": 68.0, "cnn": 94.0, "gru": 91.0}
COMMAND = "python -m experiments.mnist1d_table"


def run_table(models, seeds: int, steps: int, verbose: bool = False) -> pd.DataFrame:
    ds = tk.data.load("mnist1d")
    rows = []
    for model in models:
        for seed in range(seeds):
            run = tk.train(
                ds,
                model=model,
                loss="softmax_cross_entropy",
                optimizer="adam",
                learning_rate=1e-2,
                batch_size=100,
                steps=steps,
                seed=seed,
                verbose=verbose,
            )
            result = tk.evaluate(run, ds.test).iloc[0]  # the clean row
            rows.append(
                {
                    "model": model,
                    "seed": seed,
                    "steps": steps,
                    "test_accuracy": 100 * result["accuracy"],
                    "test_nll": result["nll"],
                    "wall_time_s": run.info["wall_time_s"],
                }
            )
            print(
                f"{model:<7} seed {seed}: test accuracy {rows[-1]['test_accuracy']:.1f}%  "
                f"({rows[-1]['wall_time_s']:.1f} s)",
                flush=True,
            )
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, command: str) -> str:
    lines = [
        "# MNIST-1D: reference models reproduced",
        "",
        f"Regenerate: `{command}`",
        "",
        "Adam, learning rate 1e-2, batch 100, softmax cross-entropy, "
        f"{int(df['steps'].iloc[0])} steps; test accuracy over {df['seed'].nunique()} seeds "
        "(mean +/- sample std). Published: README of github.com/greydanus/mnist1d.",
        "",
        "| model | params | test accuracy (%) | published (%) | difference |",
        "|---|---:|---:|---:|---:|",
    ]
    for model, group in df.groupby("model", sort=False):
        acc = group["test_accuracy"].to_numpy()
        std = acc.std(ddof=1) if len(acc) > 1 else float("nan")
        pub = PUBLISHED.get(model, float("nan"))
        lines.append(
            f"| {model} | {int(group['params'].iloc[0]):,} | {acc.mean():.1f} +/- "
            f"{std:.1f} | {pub:.0f} | {acc.mean() - pub:+.1f} |"
        )
    return "\n".join(lines) + "\n"


def param_count(model: str) -> int:
    import jax

    module = tk.models.get(model, num_classes=10)
    variables = jax.eval_shape(
        lambda: module.init(jax.random.key(0), np.zeros((1, 40), np.float32))
    )
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(PUBLISHED), choices=list(PUBLISHED))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.steps < 1:
        parser.error(f"--seeds and --steps must be positive, got {args.seeds}, {args.steps}")
    args.out.mkdir(parents=True, exist_ok=True)
    df = run_table(args.models, args.seeds, args.steps, verbose=args.verbose)
    df.insert(1, "params", df["model"].map({m: param_count(m) for m in args.models}))
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    atomic_write_text(args.out / "mnist1d_table.csv", df.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(args.out / "mnist1d_table.md", to_markdown(df, command))
    print(to_markdown(df, command))


if __name__ == "__main__":
    main()
