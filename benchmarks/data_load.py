"""Loading a dataset in a fresh process: decoding TFDS's examples vs the two data caches.

    python -m benchmarks.data_load --out results/benchmarks/data_load.md
    python -m benchmarks.data_load --datasets mnist1d --repeats 1     # printed only

Every process that loads a dataset (each sweep worker, the sweep process that checks the
config, a notebook kernel) used to deserialize every example of its splits through TFDS
(and decode every PNG of an image dataset). :mod:`toolkit.data.decoded_cache` keeps the
decoded arrays on disk, keyed on the prepared files; :mod:`toolkit.data.loaded_cache`
keeps a toolkit dataset whole, so that TFDS is not even imported. For each dataset, fresh
processes alternate between

* decode -- ``TOOLKIT_DATA_CACHE=0``: TFDS reads and decodes both splits;
* decoded -- the decoded-split cache holds the splits but the loaded cache is emptied
  before the process: TFDS is imported and the builder built, two ``.npz`` files read;
* loaded -- both caches filled: one ``.npz`` file is read, TFDS not imported (checked).

Timed: ``tk.data.load(name)`` after ``import toolkit.data`` (reported apart), so each way
includes the TFDS import it needs. The datasets are prepared beforehand in the usual TFDS
data dir; the caches live in a temporary directory. Arrays are checked equal all three
ways before anything is reported. Not a test: numbers depend on the machine and what else
runs on it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import emit, header, markdown_table, publish, run_worker

DATASETS = ("mnist1d", "digits", "mnist5k")
COLUMNS = (
    *("dataset", "train + test examples", "input shape", "decoded entries MB", "loaded entry MB"),
    *("decode s", "decoded s", "loaded s", "decode / loaded", "decoded / loaded"),
    "import toolkit.data s",
)
WAYS = ("decode", "decoded", "loaded")


def worker(name: str, check: str | None) -> None:
    """Fresh process: times ``import toolkit.data``, then one load; optionally saves arrays."""
    import numpy as np

    start = time.perf_counter()
    import toolkit.data as tkd

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
            "tfds_imported": "tensorflow_datasets" in sys.modules,
            "examples": len(dataset.train) + len(dataset.test),
            "shape": list(dataset.input_shape),
        }
    )


def _same_arrays(a: Path, b: Path) -> bool:
    import numpy as np

    with np.load(a) as x, np.load(b) as y:
        return sorted(x) == sorted(y) and all(np.array_equal(x[k], y[k]) for k in x)


def _run(name: str, way: str, cache: Path, check: Path | None = None) -> dict:
    if way == "decoded":  # what the loads before wrote there: this way must not find it
        shutil.rmtree(cache / "loaded", ignore_errors=True)
    env = {"TOOLKIT_CACHE_DIR": str(cache), "TOOLKIT_DATA_CACHE": "0" if way == "decode" else "1"}
    args = ["--worker", name] + (["--check", str(check)] if check else [])
    result = run_worker("benchmarks.data_load", args, env=env)
    if result["tfds_imported"] != (way != "loaded"):
        raise RuntimeError(f"{name}, {way}: TFDS imported = {result['tfds_imported']}")
    return result


def _megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.npz")) / 1e6


def measure(name: str, repeats: int, scratch: Path) -> list[object]:
    cache = scratch / name
    # Prepares the dataset in the TFDS data dir if needed, and fills both caches, so that
    # the checked "decoded" way below reads the decoded-split cache.
    _run(name, "decoded", cache)
    checks = {way: scratch / f"{name}-{way}.npz" for way in WAYS}
    for way in WAYS:
        _run(name, way, cache, checks[way])
    first = checks["decode"]
    if not all(_same_arrays(first, checks[way]) for way in WAYS[1:]):
        raise RuntimeError(f"{name}: the cached arrays differ from the decoded ones")
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    imports: list[float] = []
    result: dict = {}
    for _ in range(repeats):
        for way in WAYS:  # interleaved
            result = _run(name, way, cache)
            times[way].append(result["load_s"])
            imports.append(result["import_s"])
    decode, decoded, loaded = (statistics.median(times[way]) for way in WAYS)
    print(f"{name}: " + ", ".join(f"{way} {times[way]} s" for way in WAYS), flush=True)
    return [
        name,
        f"{result['examples']:,}",
        "x".join(map(str, result["shape"])),
        f"{_megabytes(cache / 'decoded'):.1f}",
        f"{_megabytes(cache / 'loaded'):.1f}",
        f"{decode:.3f}",
        f"{decoded:.3f}",
        f"{loaded:.3f}",
        f"{decode / loaded:.0f}x",
        f"{decoded / loaded:.0f}x",
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
    report = [header("Loading a dataset: decoding TFDS examples vs the two data caches")]
    report += [
        f"`tk.data.load(name)` in a fresh process, {args.repeats} per way, interleaved; "
        "median seconds, each including the TFDS import the way needs. decode = "
        "`TOOLKIT_DATA_CACHE=0` (TFDS deserializes, and for images decodes, every example "
        "of both splits); decoded = two `.npz` entries of `toolkit.data.decoded_cache` read "
        "back through TFDS (the loaded cache emptied first); loaded = one `.npz` entry of "
        "`toolkit.data.loaded_cache`, TFDS not imported (checked). All three ways gave "
        "identical arrays (checked). `import toolkit.data`, which every way pays before the "
        "load, is reported apart (min-max over all processes).",
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
