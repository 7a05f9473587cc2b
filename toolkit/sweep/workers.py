"""Worker-process setup: a JAX CPU backend that runs on one thread, started before any task.

A JAX CPU process executes its programs on XLA's intra-op thread pool (threads named
``tf_XLAEigen``), one thread per core it may use. On small models those threads mostly
wait for each other, so one single-threaded process per core trains more models per
second than one process using every core (``python -m benchmarks.population`` measures
the runner's CPU mode against one process).

Two things make a worker single-threaded, and both must happen before its backend starts:

* ``XLA_FLAGS`` gets ``--xla_cpu_multi_thread_eigen=false`` (:data:`SINGLE_THREADED`), so
  a dot or convolution is not split across threads inside one operation. In jaxlib 0.10
  that alone still leaves a pool of one thread per core, which runs independent
  operations of one program at once.
  There is no XLA flag for the pool's size (``intra_op_parallelism_threads`` is a
  TensorFlow session option; XLA ignores it silently).
* The pool is sized from the CPUs the process may run on when the backend is created
  (``sched_getaffinity``), so :func:`start_backend` restricts the process to one CPU,
  creates the backend (a pool of one thread) and then gives every thread its CPUs back,
  so the operating system still balances workers across all cores.

A worker also ends without the interpreter's teardown (:func:`exit_without_teardown`):
freeing JAX's and the toolkit's modules one by one costs CPU time in every process, which
the sweep waits for when it shuts its pool down.
"""

from __future__ import annotations

import atexit
import os
import sys

__all__ = [
    "SINGLE_THREADED",
    "WORKER_HINT",
    "die_with_parent",
    "exit_without_teardown",
    "init_worker",
    "load_registrations",
    "prepare_worker",
    "start_backend",
    "worker_flags",
    "xla_cpu_threads",
]

SINGLE_THREADED = "--xla_cpu_multi_thread_eigen=false"
_pool_threads: int | None = None  # the pool size start_backend gave this process


def worker_flags(existing: str | None = None) -> str:
    """``existing`` XLA flags (default: this process's) plus the single-threaded one."""
    existing = os.environ.get("XLA_FLAGS", "") if existing is None else existing
    if "xla_cpu_multi_thread_eigen" in existing:
        return existing
    return f"{existing} {SINGLE_THREADED}".strip()


def _threads() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _backend_started() -> bool:
    try:  # a private JAX function; without it, go ahead (harmless if the backend exists)
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:
        return False
    return backends_are_initialized()


def start_backend(threads: int = 1) -> bool:
    """Creates JAX's backends with an XLA CPU pool of ``threads`` threads (Linux).

    XLA still makes one pool thread per device at least (e.g. with
    ``--xla_force_host_platform_device_count``). Returns False, leaving the process as it
    is, when the backend already exists or the platform cannot set CPU affinity: then the
    pool has one thread per usable core.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if not hasattr(os, "sched_setaffinity") or _backend_started():
        return False
    global _pool_threads
    allowed = os.sched_getaffinity(0)
    if threads < len(allowed):
        os.sched_setaffinity(0, sorted(allowed)[:threads])
    try:
        import jax

        jax.devices()
        _pool_threads = min(threads, len(allowed))
    finally:
        # Threads started so far (the pool among them) inherited the narrow mask.
        for tid in _threads():
            try:
                os.sched_setaffinity(tid, allowed)
            except OSError:  # the thread ended meanwhile
                pass
    return True


def xla_cpu_threads() -> int:
    """The threads of this process's XLA CPU pool: what :func:`start_backend` gave it, else
    one per CPU the process may use (the size JAX gives the pool when it starts)."""
    if _pool_threads is not None:
        return _pool_threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def die_with_parent() -> None:
    """Asks Linux to SIGKILL this worker when the sweep process that spawned it dies.

    A sweep killed with SIGKILL cannot shut its pool down; without this its workers would
    finish their current run as orphans, racing the rerun for the run's lock. Elsewhere a
    no-op (the run locks still keep two trainers off one run).
    """
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed or replaced streams
            pass
    os._exit(0)


def exit_without_teardown() -> None:
    """Makes this process end right after its exit handlers, skipping the teardown.

    At exit Python still joins non-daemon threads and runs every exit handler registered
    after this call (JAX's, orbax's, logging's), and the standard streams are flushed;
    only the module-by-module teardown and the final garbage collection are skipped. After
    importing JAX that teardown is slow, and a sweep that shuts its pool down waits for
    every worker's.
    A pool worker has nothing left to do by then: each run's files were written and its
    result sent before the pool told the worker to stop, and the pool notices a worker's
    death by its process ending, not by its exit status (which is 0 here). Call it before
    anything else registers an exit handler, so that every other handler still runs.
    """
    atexit.register(_exit_now)


def load_registrations(config_file: str | None) -> None:
    """Executes the sweep's config file in this worker, as the sweep process did.

    A config file may register its own models, losses, optimizers, datasets or shifts at
    its top level; a spawned worker imports only the toolkit, so without this it would
    not know those names.
    """
    if config_file:
        from toolkit.sweep.cli import load_module

        load_module(config_file)


def prepare_worker(xla_flags: str, config_file: str | None) -> None:
    """What every worker does before its first task: a single-threaded backend, then the
    config file's registrations."""
    os.environ["XLA_FLAGS"] = xla_flags
    start_backend(threads=1)
    load_registrations(config_file)


def init_worker(xla_flags: str, config_file: str | None = None) -> None:
    """ProcessPoolExecutor initializer: runs in the spawned worker before any task.

    The pool spawns workers from the thread that submits, the sweep's own, so the worker
    dies with the sweep and not earlier (Linux ties the death signal to that thread).
    """
    die_with_parent()
    exit_without_teardown()  # registered first, so it runs after every other exit handler
    prepare_worker(xla_flags, config_file)


# Why a name the sweep's process knows can be unknown in a worker process, and the fix.
WORKER_HINT = (
    "This ran in a worker process, which knows the toolkit's names and those the config "
    "file registers (every worker executes it), not names registered only in the sweep's "
    "own process (a notebook, a script, a module only it imported): register them in the "
    "config file or import their module there, or run with --config.executor=inline."
)
