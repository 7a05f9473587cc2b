"""What every benchmark report starts with, and the plumbing the benchmarks share.

Timings mean little without the machine, the library versions and how busy the machine
was, so each report opens with :func:`header` (CPU model, cores, memory, GPUs, versions,
date, load average, ``XLA_FLAGS``, the exact command) and is written atomically by
:func:`write_atomic`. Measurements that need their own process (fresh JIT caches, other
``XLA_FLAGS``) run through :func:`run_worker`, which reads one JSON line back.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "RESULT_PREFIX",
    "emit",
    "header",
    "load_line",
    "machine_info",
    "markdown_table",
    "run_worker",
    "write_atomic",
]

RESULT_PREFIX = "BENCHMARK-RESULT "
REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _accelerators() -> str:
    """GPU names as nvidia-smi lists them, counted, or "none found". Asked of nvidia-smi rather
    than JAX: a parent that started JAX's GPU backend would hold most of the GPU's memory
    (XLA preallocates) while its worker processes measure."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "none found (no working nvidia-smi)"
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if not names:
        return "none found"
    return ", ".join(f"{count} x {name}" for name, count in Counter(names).items())


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, object]:
    """CPU model, core counts, memory, GPUs, library versions and the current load average."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _cpu_model(),
        "accelerators": _accelerators(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "flax": _version("flax"),
        "optax": _version("optax"),
        "torch": _version("torch"),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def header(title: str, argv: Sequence[str] | None = None) -> str:
    """A report's opening lines: title, machine, versions, date, load and the command."""
    info = machine_info()
    argv = sys.argv if argv is None else argv
    command = "python -m benchmarks." + Path(argv[0]).stem + " " + shlex.join(argv[1:])
    load = info["load_average"]
    memory = info["memory_gib"]
    lines = [
        f"# {title}",
        "",
        f"- Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs "
        f"({info['usable_cpus']} usable), "
        + (f"{memory:.1f} GiB RAM" if memory else "RAM unknown"),
        f"- Accelerators: {info['accelerators']}",
        f"- Versions: Python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']}, "
        f"flax {info['flax']}, optax {info['optax']}, torch {info['torch']}",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "- Load average at start (1, 5, 15 min): "
        + (", ".join(f"{x:.2f}" for x in load) if load else "unknown"),
        f"- XLA_FLAGS of the parent process: {info['xla_flags'] or '(none)'}",
        f"- Command (from the repository root): `{command.strip()}`",
        "",
    ]
    return "\n".join(lines)


def load_line() -> str:
    """The load average now, as one report line (timings on a busy machine are noisy)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return "- Load average at end (1, 5, 15 min): " + (
        ", ".join(f"{x:.2f}" for x in load) if load else "unknown"
    )


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table's lines; cells are written with ``str``."""
    if any(len(row) != len(columns) for row in rows):
        raise ValueError(f"every row needs {len(columns)} cells ({', '.join(columns)})")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Writes ``text`` to ``path`` through a temporary file, fsync and a rename."""
    from toolkit.store import atomic_write_text

    atomic_write_text(path, text)
    return Path(path)


def publish(report: Sequence[str], out: str | os.PathLike[str] | None) -> None:
    """Ends the report's lines with the load average now (:func:`load_line`) and writes them
    to ``out`` atomically, or prints them when ``out`` is None."""
    lines = list(report)
    while lines and not lines[-1]:
        lines.pop()
    text = "\n".join([*lines, "", load_line(), ""])
    if out:
        print(f"wrote {write_atomic(out, text)}")
    else:
        sys.stdout.write(text)


def emit(result: Mapping[str, object]) -> None:
    """Prints a worker's result as the one line :func:`run_worker` looks for."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(
    module: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
    tree: str | os.PathLike | None = None,
) -> dict:
    """Runs ``python -m module args`` in a fresh process and returns its :func:`emit` result.

    ``env`` entries are added to this process's environment (e.g. ``XLA_FLAGS``, which XLA
    reads once, when its backend starts). ``tree`` runs the worker from another checkout
    (its own ``toolkit`` and ``benchmarks``), e.g. a baseline commit's ``git worktree``.
    """
    environment = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO if tree is None else tree,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(
        f"worker `python -m {module} {shlex.join(args)}` exited with {done.returncode} and no "
        f"result:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
