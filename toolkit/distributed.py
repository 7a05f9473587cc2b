"""Multi-host (multi-process) training with JAX's own distributed runtime.

One training config across several hosts: run the same script on every host, and let it
call :func:`initialize` before anything else touches JAX::

    # train.py
    import jax
    import toolkit as tk
    from toolkit import distributed

    distributed.initialize()                  # first: before any other JAX call
    ds = tk.data.load("mnist1d")              # every process loads the full dataset
    distributed.assert_same_across_processes((ds.train.x, ds.train.y))
    run = tk.train(ds, model="cnn", batch_size=128, steps=6000, devices=jax.devices(),
                   verbose=jax.process_index() == 0)
    run = distributed.local_run(run)          # this process's copy, as host arrays
    if jax.process_index() == 0:
        print(tk.evaluate(run, ds.test).loc[0, "accuracy"])

Start it once per host with the coordinator's address (host 0 and a free port), the number
of processes and each one's rank, as environment variables or as arguments::

    # on host 0 (host 1: the same with TOOLKIT_PROCESS_ID=1)
    export TOOLKIT_COORDINATOR_ADDRESS=host0:8476
    export TOOLKIT_NUM_PROCESSES=2
    export TOOLKIT_PROCESS_ID=0
    python train.py

Under Slurm, Open MPI, Kubernetes or on Cloud TPU leave all three out: JAX detects them.
To try it on one machine (simulated CPU devices)::

    python -m toolkit.distributed --num-processes 2 --devices-per-process 2 -- python train.py

How it works: after :func:`initialize`, ``jax.devices()`` lists every process's devices and
``tk.train(devices=jax.devices())`` builds one global 1-D "data" mesh over them. Every
process puts the whole training set on its own devices, draws the same batch indices (they
depend only on the seed and the step) and runs the same jitted program; jit splits each
global batch over the mesh, each device computes the gradients of its slice, and XLA sums
them across processes (gloo on CPU, NCCL on GPU, ICI/DCN on TPU). Params and optimizer
state are replicated on every device, so every process ends with the same run, equal to a
one-device run with the same global batch up to float reassociation. Hence the rules:
every process runs the same config on the same data, and ``batch_size`` must split evenly
over all devices of all processes.

The trained state is made of global arrays that span other hosts' devices, and JAX does not
copy those between hosts implicitly: take :func:`local_run` (or :func:`local_copy` of any
tree) before evaluating, saving or printing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ENV_VARS",
    "assert_same_across_processes",
    "free_port",
    "initialize",
    "launch_local",
    "local_copy",
    "local_run",
]

ENV_VARS = {
    "coordinator_address": "TOOLKIT_COORDINATOR_ADDRESS",
    "num_processes": "TOOLKIT_NUM_PROCESSES",
    "process_id": "TOOLKIT_PROCESS_ID",
}
_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[^:\s]+):(?P<port>\d+)$")


def _int_setting(name: str, value: Any) -> int:
    """``value`` (an argument or an environment string) as an int, or a clear error."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return number


def _settings(coordinator_address, num_processes, process_id) -> dict[str, Any] | None:
    """The three settings from arguments, else environment; None when none is given."""
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes}
    given["process_id"] = process_id
    for key, var in ENV_VARS.items():
        if given[key] is None and os.environ.get(var):
            given[key] = os.environ[var]
    missing = [key for key, value in given.items() if value is None]
    if len(missing) == len(given):
        return None  # JAX's cluster auto-detection (Slurm, Open MPI, K8s, Cloud TPU)
    if missing:
        names = ", ".join(f"{key} (or ${ENV_VARS[key]})" for key in missing)
        raise ValueError(
            f"distributed.initialize needs coordinator_address, num_processes and process_id "
            f"together (or none of them, to let JAX detect the cluster); missing: {names}"
        )
    address = str(given["coordinator_address"])
    match = _ADDRESS.match(address)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(
            f"coordinator_address must be 'host:port' with a port in 1..65535, got {address!r}"
        )
    count = _int_setting("num_processes", given["num_processes"])
    rank = _int_setting("process_id", given["process_id"])
    if count < 1:
        raise ValueError(f"num_processes must be >= 1, got {count}")
    if not 0 <= rank < count:
        raise ValueError(
            f"process_id must be in 0..{count - 1} (num_processes={count}), got {rank}"
        )
    return {"coordinator_address": address, "num_processes": count, "process_id": rank}


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: int | Sequence[int] | None = None,
    initialization_timeout: int = 300,
) -> None:
    """Joins this process to a multi-process JAX job (``jax.distributed.initialize``).

    Each setting comes from its argument, else from ``$TOOLKIT_COORDINATOR_ADDRESS``,
    ``$TOOLKIT_NUM_PROCESSES`` and ``$TOOLKIT_PROCESS_ID``; give all three or none (none:
    JAX detects Slurm, Open MPI, Kubernetes or Cloud TPU). Call it once, before any other
    JAX computation. On CPU the cross-process collectives use gloo.

    Args:
      coordinator_address: ``host:port`` of process 0, reachable from every process.
      num_processes: how many processes take part.
      process_id: this process's rank in ``0 .. num_processes - 1``.
      local_device_ids: restrict this process to these of its local devices.
      initialization_timeout: seconds to wait for every process to connect.

    Raises:
      ValueError: incomplete or malformed settings (checked before connecting).
      RuntimeError: JAX's, when called after JAX has started computing.
    """
    settings = _settings(coordinator_address, num_processes, process_id)
    import jax

    if jax.distributed.is_initialized():
        if settings and (jax.process_count(), jax.process_index()) != (
            settings["num_processes"],
            settings["process_id"],
        ):
            raise ValueError(
                f"this process already joined a job as process {jax.process_index()} of "
                f"{jax.process_count()}; cannot rejoin as {settings['process_id']} of "
                f"{settings['num_processes']}"
            )
        return
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        **(settings or {}),
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
    )


def local_copy(tree: Any) -> Any:
    """``tree`` with every JAX array replaced by this process's full copy as a numpy array.

    Replicated arrays (a multi-host run's params and optimizer state) are read from a local
    device; arrays sharded across processes are gathered with
    ``jax.experimental.multihost_utils.process_allgather``, a collective, so then every
    process must call this together. Other leaves are returned unchanged.
    """
    import jax
    from jax.experimental import multihost_utils

    def copy(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array):
            return leaf
        if leaf.is_fully_addressable:
            return np.asarray(leaf)
        if leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

    return jax.tree.map(copy, tree)


def local_run(run):
    """A :class:`~toolkit.training.Run` whose state is this process's host copy.

    Evaluate (``tk.evaluate``), save or inspect a multi-host run through this: its state
    then lives on this process only, like a run trained on local devices.
    """
    return dataclasses.replace(run, state=local_copy(run.state))


def assert_same_across_processes(tree: Any, what: str = "the data") -> None:
    """Raises unless every process holds the same ``tree`` (e.g. the training set).

    Compares a CRC-32 of each leaf's bytes (and its shape and dtype) across processes, so
    it costs one tiny collective whatever the size of the data. Every process must call it.
    """
    import jax
    from jax.experimental import multihost_utils

    digests = [
        zlib.crc32(repr((a.shape, a.dtype.str)).encode() + np.ascontiguousarray(a).tobytes())
        for a in map(np.asarray, jax.tree.leaves(tree))
    ]
    multihost_utils.assert_equal(
        np.asarray(digests, np.uint32),
        fail_message=f"{what} differs between processes; each must hold the same",
    )


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _with_device_count(xla_flags: str, count: int) -> str:
    flags = [f for f in xla_flags.split() if "xla_force_host_platform_device_count" not in f]
    return " ".join([*flags, f"--xla_force_host_platform_device_count={count}"])


def launch_local(
    command: Sequence[str],
    num_processes: int,
    *,
    devices_per_process: int | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    capture: bool = False,
) -> list[subprocess.CompletedProcess]:
    """Runs ``command`` as ``num_processes`` processes of one job on this machine.

    Each gets ``TOOLKIT_COORDINATOR_ADDRESS=localhost:<port>``, ``TOOLKIT_NUM_PROCESSES``
    and its ``TOOLKIT_PROCESS_ID``, so a script that calls :func:`initialize` joins the
    job; ``devices_per_process`` simulates that many CPU devices in each. If one process
    fails the others are stopped (they would wait for it forever). For trying multi-host
    code on one machine; real hosts start their process themselves.

    Returns:
      One ``CompletedProcess`` per rank, in rank order (``stdout``/``stderr`` as text when
      ``capture``, else ``None``: the output goes to this process's).

    Raises:
      TimeoutError: after ``timeout`` seconds (every process is killed first).
    """
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"num_processes must be a positive int, got {num_processes!r}")
    if devices_per_process is not None and (
        isinstance(devices_per_process, bool)
        or not isinstance(devices_per_process, int)
        or devices_per_process < 1
    ):
        raise ValueError(f"devices_per_process must be a positive int, got {devices_per_process!r}")
    if not command:
        raise ValueError("command is empty")
    address = f"localhost:{free_port() if port is None else port}"
    base = {**os.environ, **(env or {})}
    if devices_per_process is not None:
        base["XLA_FLAGS"] = _with_device_count(base.get("XLA_FLAGS", ""), devices_per_process)
    outputs, procs = [], []
    for rank in range(num_processes):
        rank_env = base | {
            ENV_VARS["coordinator_address"]: address,
            ENV_VARS["num_processes"]: str(num_processes),
            ENV_VARS["process_id"]: str(rank),
        }
        files = (tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")) if capture else None
        outputs.append(files)
        procs.append(
            subprocess.Popen(
                list(command),
                env=rank_env,
                stdout=files[0] if files else None,
                stderr=files[1] if files else None,
                text=True,
            )
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while None in (codes := [p.poll() for p in procs]):
            if any(code not in (None, 0) for code in codes):
                break  # one failed: the rest would wait for it until their own timeout
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"{num_processes} processes of {list(command)} ran > {timeout} s"
                )
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    results = []
    for p, files in zip(procs, outputs, strict=True):
        texts = [None, None]
        if files:
            for i, f in enumerate(files):
                f.seek(0)
                texts[i] = f.read()
                f.close()
        results.append(subprocess.CompletedProcess(p.args, p.returncode, *texts))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m toolkit.distributed -n 2 [--devices-per-process 2] -- python train.py``."""
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.distributed",
        description="Run a command as N processes of one JAX job on this machine.",
    )
    parser.add_argument("-n", "--num-processes", type=int, required=True)
    parser.add_argument("--devices-per-process", type=int, help="simulated CPU devices each")
    parser.add_argument("--port", type=int, help="coordinator port (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    results = launch_local(
        command,
        args.num_processes,
        devices_per_process=args.devices_per_process,
        port=args.port,
    )
    codes = [r.returncode for r in results]
    # When one process fails, launch_local SIGKILLs the others: report the failure that
    # started it, not a stopped rank that happens to come first.
    stopped = -signal.SIGKILL
    return next((c for c in codes if c not in (0, stopped)), next((c for c in codes if c), 0))


if __name__ == "__main__":
    sys.exit(main())
