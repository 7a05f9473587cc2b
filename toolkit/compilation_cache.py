"""JAX's persistent compilation cache, turned on with the toolkit's defaults.

    import toolkit as tk
    from toolkit.compilation_cache import enable_compilation_cache
    enable_compilation_cache()        # $TOOLKIT_CACHE_DIR/jax_cache or ~/.cache/toolkit/jax_cache
    run = tk.train(ds, model="cnn")   # the first process compiles and writes the cache;
                                      # the next one reads the executables back

Every ``tk.train`` call compiles a fresh program (the step, the ``lax.scan`` chunk and
``model.init``), which costs seconds per architecture on CPU. Runs that differ only in their
seed, or a rerun of the same script, lower to the same HLO, so with the persistent cache
(JAX's ``jax_compilation_cache_dir``) XLA's compile becomes a file read. Tracing and
lowering to HLO still happen in Python every time: the cache removes the backend compile
only. ``benchmarks/compile.py`` measures both per architecture.

The thresholds are set to zero so that every executable is written, however small or quick
to compile: on CPU most of the toolkit's programs compile in well under JAX's default
threshold of one second each, yet together they take seconds.

Sweeps turn it on by themselves (:func:`ensure_compilation_cache`) unless
``TOOLKIT_CACHE=0`` (the toolkit's one switch for its caches, :mod:`toolkit.array_cache`);
calling :func:`enable_compilation_cache` turns it on whatever the switch says.

The cache is trusted code: whoever can write to its directory can make JAX run arbitrary
code, so do not share it with users you do not trust (JAX's own warning).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolkit.array_cache import cache_root, enabled

__all__ = [
    "cache_events",
    "default_cache_dir",
    "enable_compilation_cache",
    "ensure_compilation_cache",
]

# jax.monitoring event names (jax 0.10): hits are recorded on reads, misses on writes.
HIT_EVENT = "/jax/compilation_cache/cache_hits"
MISS_EVENT = "/jax/compilation_cache/cache_misses"
REQUEST_EVENT = "/jax/compilation_cache/compile_requests_use_cache"
DURATION_EVENTS = {
    "trace_s": "/jax/core/compile/jaxpr_trace_duration",
    "lower_s": "/jax/core/compile/jaxpr_to_mlir_module_duration",
    # XLA compile, or the cache read that replaces it on a hit.
    "backend_compile_s": "/jax/core/compile/backend_compile_duration",
}


def default_cache_dir() -> Path:
    """``$TOOLKIT_CACHE_DIR/jax_cache``, else ``~/.cache/toolkit/jax_cache``."""
    return cache_root() / "jax_cache"


def enable_compilation_cache(
    path: str | os.PathLike[str] | None = None,
    *,
    min_compile_time_secs: float = 0.0,
    max_size_bytes: int | None = None,
) -> Path:
    """Turns on JAX's persistent compilation cache in ``path`` and returns the directory.

    Sets ``jax_compilation_cache_dir`` (the directory is created),
    ``jax_persistent_cache_min_compile_time_secs`` (default 0: cache every executable) and
    ``jax_persistent_cache_min_entry_size_bytes`` (0: whatever its size). With
    ``max_size_bytes`` the directory is an LRU cache of that size
    (``jax_compilation_cache_max_size``; default unbounded).

    Call it before the programs to cache are compiled; it may be called again to point the
    cache at another directory (JAX's cache object is reset so the new one is used).

    Args:
      path: the cache directory; default :func:`default_cache_dir`.
      min_compile_time_secs: executables that compiled faster than this are not written.
      max_size_bytes: evict least recently used entries beyond this total size.

    Raises:
      NotADirectoryError: ``path`` exists and is not a directory.
      ValueError: a negative threshold or a non-positive size.
    """
    if not min_compile_time_secs >= 0:
        raise ValueError(f"min_compile_time_secs must be >= 0, got {min_compile_time_secs!r}")
    if max_size_bytes is not None and (
        isinstance(max_size_bytes, bool)
        or not isinstance(max_size_bytes, int)
        or max_size_bytes < 1
    ):
        raise ValueError(f"max_size_bytes must be a positive int or None, got {max_size_bytes!r}")
    directory = Path(default_cache_dir() if path is None else path).expanduser().absolute()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"compilation cache path {str(directory)!r} is not a directory")
    directory.mkdir(parents=True, exist_ok=True)

    import jax
    from jax.experimental.compilation_cache import compilation_cache

    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update(
        "jax_compilation_cache_max_size", -1 if max_size_bytes is None else max_size_bytes
    )
    if previous and Path(previous) != directory:
        # JAX opens its cache once per process; a new directory needs a fresh cache object.
        compilation_cache.reset_cache()
    return directory


def ensure_compilation_cache() -> Path | None:
    """Turns the cache on in :func:`default_cache_dir` unless this process already has one
    (set by the user, a test or an earlier call) or the toolkit's caches are off
    (``TOOLKIT_CACHE=0``); returns the directory in use, None when there is none.

    A sweep's processes call it before their first compile: runs that differ only in their
    seed lower to the same HLO, so every process after the first reads the compiled program
    back instead of compiling it.
    """
    import jax

    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    return enable_compilation_cache() if enabled() else None


@contextmanager
def cache_events() -> Iterator[dict[str, float]]:
    """Counts compilation-cache events while the block runs, from ``jax.monitoring``.

    Yields a dict that fills in as the block runs: ``hits`` (executables read from the
    persistent cache), ``misses`` (compiled and written to it), ``requests`` (compiles
    that consulted it), and seconds spent tracing (``trace_s``), lowering to HLO
    (``lower_s``) and compiling or reading the executable (``backend_compile_s``).
    """
    import jax.monitoring as monitoring

    counts: dict[str, float] = dict.fromkeys(("hits", "misses", "requests"), 0)
    counts |= dict.fromkeys(DURATION_EVENTS, 0.0)
    events = {HIT_EVENT: "hits", MISS_EVENT: "misses", REQUEST_EVENT: "requests"}
    durations = {event: name for name, event in DURATION_EVENTS.items()}

    def on_event(event: str, **_: object) -> None:
        if event in events:
            counts[events[event]] += 1

    def on_duration(event: str, seconds: float, **_: object) -> None:
        if event in durations:
            counts[durations[event]] += seconds

    monitoring.register_event_listener(on_event)
    monitoring.register_event_duration_secs_listener(on_duration)
    try:
        yield counts
    finally:
        monitoring.unregister_event_listener(on_event)
        monitoring.unregister_event_duration_listener(on_duration)
