"""Test-wide JAX settings (equinox style).

Strict dtype promotion turns silent int/float or float32/float64 mixing into errors, and
four simulated CPU devices let multi-device code run on a laptop. Both must be set before
JAX creates its backend, so they live here rather than in the tests. The toolkit's caches
go to a folder of the tests' own, and JAX's persistent compilation cache is on from the
start.
"""

import gc
import os
import tempfile

# Tests prepare datasets in temporary data dirs, so each session would add new cached
# datasets (and compiled programs) to the user's cache; they get a cache of their own.
os.environ.setdefault(
    "TOOLKIT_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"toolkit-tests-{os.getuid()}")
)
os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4"
# Tests are dominated by compile time on 2 cores; XLA's backend optimisations roughly double
# it and are not what the tests check (benchmarks measure optimised programs).
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"

import jax
import pytest

from toolkit.compilation_cache import enable_compilation_cache

jax.config.update("jax_numpy_dtype_promotion", "strict")
# Many tests compile the same programs (the same tiny models in several files, in both xdist
# workers); with the persistent cache on from the start they are compiled once per session
# (measured on an empty cache: the suite took 891 s instead of 1097 s).
enable_compilation_cache()


@pytest.fixture(scope="session")
def mnist1d_reference():
    """The MNIST-1D generator's own arrays at its default arguments, an independent
    reference for the toolkit's dataset (read-only: tests share it)."""
    from mnist1d.data import get_dataset_args, make_dataset

    return make_dataset(get_dataset_args())


@pytest.fixture
def compiles():
    """Counts XLA compiles (and persistent-cache reads standing in for them)."""
    events = []

    def listen(event, seconds, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def pytest_unconfigure(config):
    """Collects garbage once, then freezes what survives, before pytest's final gc passes.

    pytest ends a session with five ``gc.collect()`` passes (to report unraisable
    exceptions). An xdist worker that has run its half of the suite holds 1.1-1.3M objects
    (JAX's caches, mostly) and each pass took 0.7-0.9 s, so a worker could still be
    collecting 5 s after the controller's shutdown, when execnet interrupts it with SIGINT
    (seen in CI as a KeyboardInterrupt inside JAX's gc callback). One pass here still
    collects, and reports, whatever is garbage; the survivors are then frozen out of
    pytest's passes, which only see objects created after this.
    """
    gc.collect()
    gc.freeze()
