"""What produced a run: package versions, code version, machine, timing, and the settings
that change its numbers (:func:`numerics`)."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from toolkit import store
from toolkit.sweep.config import SweepConfigError
from toolkit.sweep.workers import xla_cpu_threads

__all__ = [
    "NUMERICS_KEYS",
    "PACKAGES",
    "check_numerics",
    "git_commit",
    "numerics",
    "package_versions",
    "provenance",
]

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
# The entries of numerics() that change a run's bits (xla_flags is recorded, not compared).
# "vmapped": trained as members of vmapped populations (the population executor), whose
# programs XLA fuses otherwise than a run alone's (last digits differ).
NUMERICS_KEYS = (
    "backend",
    "xla_cpu_threads",
    "xla_cpu_multi_thread_eigen",
    "jax",
    "jaxlib",
    "vmapped",
)


@functools.cache
def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that determine the numbers (None if absent)."""
    import toolkit

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["toolkit"] = toolkit.__version__
    return versions


@functools.cache
def git_commit() -> str | None:
    """The toolkit checkout's commit (with ``-dirty`` if it has local changes), or None."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}-dirty" if dirty else commit


def _flag(flags: str, name: str, default: bool) -> bool:
    value = default
    for token in flags.split():
        key, _, setting = token.lstrip("-").partition("=")
        if key == name:
            value = setting.lower() not in ("false", "0")
    return value


def numerics(*, xla_flags: str, threads: int) -> dict[str, Any]:
    """What decides a run's bits besides its config, data and code, for a process running
    JAX with ``xla_flags`` and an XLA CPU pool of ``threads`` threads.

    On CPU the bits depend on the size of XLA's thread pool (how it divides the work of a
    program among threads): the MNIST-1D CNN trained for 300 steps ends with other
    parameters in a single-threaded sweep worker (``process``) than in a process with a
    pool of 2 threads (``inline`` on 2 cores), with ``--xla_cpu_multi_thread_eigen`` on or
    off; with the same pool, that flag did not change them (it is recorded all the same:
    it decides whether Eigen splits one dot). Other backends ignore both (``None``). The
    jax and jaxlib versions decide the compiled programs. ``xla_flags`` is kept for people.
    """
    import jax

    backend = jax.default_backend()
    cpu = backend == "cpu"
    versions = package_versions()
    return {
        "backend": backend,
        "xla_cpu_threads": threads if cpu else None,
        "xla_cpu_multi_thread_eigen": (
            _flag(xla_flags, "xla_cpu_multi_thread_eigen", True) if cpu else None
        ),
        "jax": versions["jax"],
        "jaxlib": versions["jaxlib"],
        "xla_flags": xla_flags,
    }


def provenance(
    info: dict[str, Any], *, batch_size: int, started: str, finished: str, **extra: Any
) -> dict[str, Any]:
    """provenance.json: packages, git commit, device, batch, wall time, host, times, and
    the :func:`numerics` of this process (the one that trained the run).

    ``info`` is a ``Run.info`` (device_kind, device_count, backend, wall_time_s).
    """
    return {
        "packages": package_versions(),
        "git_commit": git_commit(),
        "device_kind": info.get("device_kind"),
        "device_count": info.get("device_count"),
        "backend": info.get("backend"),
        # Each model sees batch_size examples per step, however many devices share it.
        "global_batch_size": info.get("global_batch_size", batch_size),
        "wall_time_s": info.get("wall_time_s"),
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
        "started": started,
        "finished": finished,
        "numerics": numerics(xla_flags=os.environ.get("XLA_FLAGS", ""), threads=xla_cpu_threads()),
        **extra,
    }


def check_numerics(experiment_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Refuses to add runs computed with numerics ``record`` to ``experiment_dir`` when
    its runs were computed with others (``sweep.json``'s ``"numerics"``): the directory
    would hold numbers of two kinds, a resumed run both at once. Returns the record to
    keep: the directory's own when it has runs (so it keeps naming the executor it was
    begun with), else ``record``.

    A directory without runs, or written before the record existed, is accepted; a key
    an older record lacks is not compared.
    """
    old = (store.read_json(experiment_dir / store.SWEEP) or {}).get("numerics")
    if not isinstance(old, dict) or next(store.run_dirs(experiment_dir), None) is None:
        return record
    changed = [key for key in NUMERICS_KEYS if key in old and old[key] != record.get(key)]
    if not changed:
        return old
    lines = "; ".join(f"{key} {old.get(key)!r} there, {record.get(key)!r} here" for key in changed)
    raise SweepConfigError(
        f"{experiment_dir}: its runs were computed with executor {old.get('executor')!r}, "
        f"this sweep would use executor {record.get('executor')!r}, and their numerics "
        f"differ ({lines}): the same run would give other numbers, mixed in one directory. "
        f"Continue with the settings it was begun with (executor {old.get('executor')!r}, "
        f"e.g. --config.executor={old.get('executor')}, and jax {old.get('jax')}, jaxlib "
        f"{old.get('jaxlib')}), or write to a new --results_dir."
    )
