"""Loading a dataset in a fresh process: TFDS decoding every example vs the dataset cache.

    python -m benchmarks.data_load --out results/benchmarks/data_load.md
    python -m benchmarks.data_load --datasets mnist1d --repeats 1     # printed only

Every process that loads a dataset (each sweep worker, the sweep process that checks the
config, a notebook kernel) would deserialize every example of its splits through TFDS
(and decode every PNG of an image dataset). :mod:`toolkit.data.cache` keeps each load as
one ``.npz`` entry, keyed on the call and checked against the prepared files. For each
dataset, fresh processes alternate between

* tfds -- ``TOOLKIT_CACHE=0``: TFDS reads and decodes both splits;
* by TFDS name -- ``toolkit.data.tfds_source.load(name)``, what any TFDS dataset costs with
  its entry written: TFDS is imported (with the toolkit's builders, to check the name),
  then the entry is read;
* cached -- ``tk.data.load(name)`` with its entry written: TFDS not imported (checked).

Timed: the load after ``import toolkit.data`` (reported apart), so each way includes the
TFDS import it needs. The datasets are prepared beforehand in the usual TFDS data dir;
the cache lives in a temporary directory. Arrays are checked equal all three ways before
anything is reported. Not a test: numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import emit, header, markdown_table, publish, run_worker

DATASETS = ("mnist1d", "digits", "mnist5k")
WAYS = ("tfds", "by TFDS name", "cached")
COLUMNS = (
    *("dataset", "train + test examples", "input shape", "entries MB"),
    *(f"{way} s" for way in WAYS),
    *("tfds - by name s", "tfds - cached s", "import toolkit.data s"),
)


def worker(name: str, way: str, check: str | None) -> None:
    """Fresh process: times ``import toolkit.data``, then one load; optionally saves arrays."""
    import numpy as np

    start = time.perf_counter()
    import toolkit.data as tkd
    from toolkit.data import tfds_source

    imported = time.perf_counter()
    if way == "by TFDS name":
        import toolkit.data.builders  # noqa: F401  (registers the toolkit's builders with TFDS)

        dataset = tfds_source.load(name)
    else:
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


def _run(name: str, way: str, cache: Path, check: Path | None = None, fill: bool = False) -> dict:
    """One fresh process loading ``name`` the ``way`` given; ``fill``: the one that writes
    the way's entry (and may import TFDS to)."""
    env = {"TOOLKIT_CACHE_DIR": str(cache), "TOOLKIT_CACHE": "0" if way == "tfds" else "1"}
    args = ["--worker", name, "--way", way] + (["--check", str(check)] if check else [])
    result = run_worker("benchmarks.data_load", args, env=env)
    if not fill and result["tfds_imported"] != (way != "cached"):
        raise RuntimeError(f"{name}, {way}: TFDS imported = {result['tfds_imported']}")
    return result


def measure(name: str, repeats: int, scratch: Path) -> list[object]:
    cache = scratch / name
    # Prepares the dataset in the TFDS data dir if needed (tk.data.load builds it; a TFDS
    # name is only read), and writes both cached ways' entries.
    for way in ("cached", "by TFDS name"):
        _run(name, way, cache, fill=True)
    checks = {way: scratch / f"{name}-{way}.npz" for way in WAYS}
    for way in WAYS:
        _run(name, way, cache, checks[way])
    first = checks["tfds"]
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
    tfds, by_name, cached = (statistics.median(times[way]) for way in WAYS)
    print(f"{name}: " + ", ".join(f"{way} {times[way]} s" for way in WAYS), flush=True)
    megabytes = sum(p.stat().st_size for p in (cache / "datasets").glob("*.npz")) / 1e6
    return [
        name,
        f"{result['examples']:,}",
        "x".join(map(str, result["shape"])),
        f"{megabytes:.2f}",
        f"{tfds:.3f}",
        f"{by_name:.3f}",
        f"{cached:.3f}",
        f"{tfds - by_name:.3f}",
        f"{tfds - cached:.3f}",
        f"{min(imports):.2f}-{max(imports):.2f}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per way")
    parser.add_argument("--out", help="write the markdown report here (atomically)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--check", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.way, args.check)
        return
    import toolkit.data as tkd

    unknown = [d for d in args.datasets if d not in tkd.names()]
    if unknown or args.repeats < 1:
        raise SystemExit(
            f"--datasets takes {', '.join(tkd.names())} (got {unknown}); "
            f"--repeats must be >= 1 (got {args.repeats})"
        )
    report = [header("Loading a dataset: TFDS decoding every example vs the dataset cache")]
    report += [
        f"Loading a dataset in a fresh process, {args.repeats} per way, interleaved; median "
        "seconds, each including the TFDS import the way needs. tfds = `TOOLKIT_CACHE=0` "
        "(TFDS deserializes, and for images decodes, every example of both splits); by TFDS "
        "name = `toolkit.data.tfds_source.load(name)` reading its `toolkit.data.cache` entry "
        "after importing TFDS to check the name (what any TFDS dataset costs); cached = "
        "`tk.data.load(name)` reading its entry, TFDS not imported (checked). All three ways "
        "gave identical arrays (checked). The last columns are the seconds each cached way "
        "saves per process. `import toolkit.data`, which every way pays before the load, is "
        "reported apart (min-max over all processes).",
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
