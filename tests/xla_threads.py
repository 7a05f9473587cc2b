"""How many XLA CPU pool threads a process has: what the worker tests check, read from
Linux's /proc (a test's tool, not the library's)."""

from __future__ import annotations

from pathlib import Path

POOL_THREAD_PREFIX = "tf_XLAEigen"  # the name XLA gives its CPU intra-op pool threads


def xla_pool_threads() -> int | None:
    """How many XLA CPU pool threads this process has (None where /proc is missing)."""
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return None
    count = 0
    for task in tasks:
        try:
            count += (task / "comm").read_text().startswith(POOL_THREAD_PREFIX)
        except OSError:  # the thread ended since the listing (not a missing /proc)
            pass
    return count
