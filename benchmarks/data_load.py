"""Loading a dataset in a fresh process: decoding TFDS's examples vs the decoded-split cache.

    python -m benchmarks.data_load --out results/benchmarks/data_load.md
    python -m benchmarks.data_load --datasets mnist1d --repeats 1     # printed only

Every process that loads a dataset (each sweep worker, the sweep process that checks the
config, a notebook kernel) used to deserialize every example of its splits through TFDS
(and decode every PNG of an image dataset). :mod:`toolkit.data.decoded_cache` keeps the
decoded arrays on disk, keyed on the prepared files. For each dataset, fresh processes
alternate between

* decode -- ``TOOLKIT_DATA_CACHE=0``: TFDS reads and decodes both splits;
* cached -- the cache holds the splits (filled by one untimed load first): two ``.npz``
  files are read.

Timed: ``tk.data.load(name)`` after ``import tensorflow_datasets`` and the toolkit's
builders, which both ways import (reported apart). The datasets are prepared beforehand
in the usual TFDS data dir; the cache is a temporary directory. Arrays are checked equal
both ways before anything is reported. Not a test: numbers depend on the machine and what
else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.machine import emit, header, markdown_table, publish, run_worker

DATASETS = ("mnist1d", "digits", "mnist5k")
COLUMNS = (
    *("dataset", "train + test examples", "input shape", "cache entries MB"),
    *("decode s", "cached s", "ratio", "import tfds + builders s"),
)


def worker(name: str, check: str | None) -> None:
    """Fresh process: times the imports, then one load; optionally saves the arrays."""
    import numpy as np

    start = time.perf_counter()
    import tensorflow_datasets  # noqa: F401  (both ways import it; timed apart)

    import toolkit.data as tkd
    import toolkit.data.builders  # noqa: F401

    imported = time.perf_counter()
    dataset = tkd.load(name)
    loaded = time.perf_counter()
    if check:
        splits = (dataset.train, dataset.test)
        np.savez(check, **{f"{k}{i}": getattr(s, k) for i, s in enumerate(splits) for k in "xy"})
    emit(
        {
            "import_s": imported - start,
            "load_s": loaded - imported,
            "examples": len(dataset.train) + len(dataset.test),
            "shape": list(dataset.input_shape),
        }
    )


def _same_arrays(a: Path, b: Path) -> bool:
    import numpy as np

    with np.load(a) as x, np.load(b) as y:
        return sorted(x) == sorted(y) and all(np.array_equal(x[k], y[k]) for k in x)


def measure(name: str, repeats: int, scratch: Path) -> list[object]:
    cache = scratch / name
    env = {
        "decode": {"TOOLKIT_CACHE_DIR": str(cache), "TOOLKIT_DATA_CACHE": "0"},
        "cached": {"TOOLKIT_CACHE_DIR": str(cache), "TOOLKIT_DATA_CACHE": "1"},
    }
    # Prepares the dataset in the TFDS data dir if needed, and fills the cache.
    run_worker("benchmarks.data_load", ["--worker", name], env=env["cached"])
    checks = {way: scratch / f"{name}-{way}.npz" for way in env}
    for way in env:
        run_worker("benchmarks.data_load", ["--worker", name, "--check", str(checks[way])],
                   env=env[way])  # fmt: skip
    if not _same_arrays(*checks.values()):
        raise RuntimeError(f"{name}: the cached arrays differ from the decoded ones")
    times: dict[str, list[float]] = {way: [] for way in env}
    imports: list[float] = []
    result: dict = {}
    for _ in range(repeats):
        for way in env:  # interleaved
            result = run_worker("benchmarks.data_load", ["--worker", name], env=env[way])
            times[way].append(result["load_s"])
            imports.append(result["import_s"])
    decode, cached = (statistics.median(times[way]) for way in env)
    stored = sum(p.stat().st_size for p in (cache / "decoded").glob("*.npz")) / 1e6
    print(f"{name}: decode {times['decode']} s, cached {times['cached']} s", flush=True)
    return [
        name,
        f"{result['examples']:,}",
        "x".join(map(str, result["shape"])),
        f"{stored:.1f}",
        f"{decode:.3f}",
        f"{cached:.3f}",
        f"{decode / cached:.0f}x",
        f"{min(imports):.2f}-{max(imports):.2f}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per way")
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--check", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.check)
        return
    import toolkit.data as tkd

    unknown = [d for d in args.datasets if d not in tkd.names()]
    if unknown or args.repeats < 1:
        raise SystemExit(
            f"--datasets takes {', '.join(tkd.names())} (got {unknown}); "
            f"--repeats must be >= 1 (got {args.repeats})"
        )
    report = [header("Loading a dataset: decoding TFDS examples vs the decoded-split cache")]
    report += [
        f"`tk.data.load(name)` in a fresh process, {args.repeats} per way, interleaved; "
        "median seconds. decode = `TOOLKIT_DATA_CACHE=0` (TFDS deserializes, and for "
        "images decodes, every example of both splits); cached = two `.npz` entries of "
        "`toolkit.data.decoded_cache` read back. Both ways gave identical arrays (checked). "
        "The imports of TFDS and the toolkit's builders, which both ways pay before the "
        "load, are reported apart (min-max over all processes).",
        "",
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="toolkit-data-load-bench-") as scratch:
        for name in args.datasets:
            rows.append(measure(name, args.repeats, Path(scratch)))
    report += markdown_table(COLUMNS, rows)
    publish(report, args.out)


if __name__ == "__main__":
    main()
