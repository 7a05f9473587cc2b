"""Executors: how a sweep's pending trials get run. Each yields one summary per trial.

* ``inline``: one after another in this process (tests, debugging).
* ``process``: spawned single-threaded workers, one per core, each in a
  ``ProcessPoolExecutor`` of its own and taking whole runs (the CPU default); a worker that
  dies costs only the run it held, which is retried once on a fresh worker. Workers live
  for the whole sweep (the dataset and the compiled programs stay loaded between runs),
  and runs are handed out so that workers start on different programs
  (:func:`spread_programs`).
* ``submitit``: one cluster job per run (a Slurm job array; ``cluster="local"`` runs them
  as local processes), writing into the same results layout.
* ``population``: every trial in this process, those that can share a program trained as
  vmapped populations (``toolkit.population``), the default on GPU and TPU; on several
  local devices each population is placed by ``toolkit.population.choose_mode``
  (population axis or data parallel).

Every executor runs the same pipeline (:mod:`toolkit.sweep.execute`); they differ only in
how trials are grouped and scheduled.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from toolkit.population.program import program_key as training_program_key
from toolkit.registry import Registry
from toolkit.sweep.config import SweepConfigError, Trial
from toolkit.sweep.execute import Task, execute, execute_group, summarize
from toolkit.sweep.provenance import numerics
from toolkit.sweep.workers import init_worker, prepare_worker, worker_flags, xla_cpu_threads

__all__ = [
    "choose_executor",
    "default_workers",
    "executor_numerics",
    "executors",
    "program_key",
    "spread_programs",
]

Executor = Callable[..., Iterator[dict[str, Any]]]
executors = Registry("executor", build=lambda factory, **kw: factory)


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def program_key(task: Task) -> Hashable:
    """What fixes a trial's compiled programs: ``toolkit.population.program.program_key``
    of its training config, with the dataset and its data axes (they fix the data's
    shapes). Runs that differ only in their seed lower to the same programs."""
    trial = task.trial
    data = json.dumps(
        [trial["dataset"], trial["dataset_kwargs"], trial["data_axes"]], sort_keys=True, default=str
    )
    return data, training_program_key(Trial.from_json(trial).train_config())


def spread_programs(tasks: Sequence[Task], width: int) -> list[Task]:
    """``tasks`` ordered so that ``width`` workers taking them in turn start on different
    programs (:func:`program_key`) and then keep to them.

    Programs are taken in order of first appearance, ``width`` at a time; inside each such
    window their runs alternate (P0 Q0 P1 Q1 ... with two workers), and the order of runs
    inside one program is kept. Cold, each worker compiles a different program at the
    start, instead of every worker compiling the same one at once as in sweep order
    (seeds innermost); a program's runs still come close together, so a worker finds the
    program it just ran in the trainer's in-memory cache, which a round-robin over all of
    a sweep's programs would evict.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    by_program: dict[Hashable, list[Task]] = {}
    for task in tasks:
        by_program.setdefault(program_key(task), []).append(task)
    groups = list(by_program.values())
    ordered: list[Task] = []
    for start in range(0, len(groups), width):
        window = groups[start : start + width]
        for i in range(max(len(group) for group in window)):
            ordered += [group[i] for group in window if i < len(group)]
    return ordered


@executors.register("inline", description="Runs trials one after another in this process.")
def run_inline(tasks: Sequence[Task], **options: Any) -> Iterator[dict[str, Any]]:
    for task in tasks:
        yield execute(task)


@executors.register(
    "process", description="One spawned single-threaded worker per core.", meta={"workers": True}
)
def run_process(
    tasks: Sequence[Task], *, workers: int, config_file: str | None = None, **options: Any
) -> Iterator[dict]:
    """Runs ``tasks`` on ``workers`` worker processes, each in a pool of its own.

    A ``ProcessPoolExecutor`` whose worker dies (killed, e.g. by the out-of-memory killer)
    fails every run it holds, started or not. With one worker per pool, a death breaks only
    the pool of the run that worker held: that run is retried once on a fresh worker (it
    resumes from its last checkpoint) and fails only if that worker dies too, while the
    other workers go on.
    """
    context = multiprocessing.get_context("spawn")  # fork would copy a live XLA runtime

    def new_pool() -> ProcessPoolExecutor:
        # Submitting from this (the sweep's) thread spawns the worker from it, so the
        # worker dies with the sweep (see ``init_worker``).
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=context,
            initializer=init_worker,
            initargs=(worker_flags(), config_file),
        )

    width = max(1, min(workers, len(tasks)))
    queue = list(reversed(spread_programs(tasks, width)))  # popped from the end
    idle = [new_pool() for _ in range(width)]  # a pool spawns its worker at its first task
    running: dict[Future, tuple[ProcessPoolExecutor, Task, int]] = {}  # pool, task, attempt
    retries: list[tuple[Task, int]] = []
    try:
        while queue or retries or running:
            while idle and (retries or queue):
                task, attempt = retries.pop() if retries else (queue.pop(), 1)
                pool = idle.pop()
                running[pool.submit(execute, task)] = (pool, task, attempt)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                pool, task, attempt = running.pop(future)
                try:
                    summary = future.result()
                except BrokenProcessPool as error:  # its worker died, holding this run alone
                    pool.shutdown(wait=True)
                    idle.append(new_pool())
                    if attempt == 1:
                        retries.append((task, 2))
                        continue
                    trial = Trial.from_json(task.trial)
                    summary = summarize(
                        trial,
                        "failed",
                        error="its worker process died twice running it (killed, e.g. by the "
                        f"out-of-memory killer), the second time on a fresh worker: {error}",
                    )
                else:
                    idle.append(pool)
                yield summary
    finally:
        for future in running:
            future.cancel()
        for pool, *_ in running.values():
            pool.shutdown(wait=True)
        for pool in idle:
            pool.shutdown(wait=True)


def run_task(task: Task, xla_flags: str, config_file: str | None = None) -> dict[str, Any]:
    """Entry point for cluster jobs (submitit), which outlive the process that queued them."""
    prepare_worker(xla_flags, config_file)
    return execute(task)


@executors.register(
    "submitit", description="One cluster job per trial through submitit.", meta={"workers": True}
)
def run_submitit(
    tasks: Sequence[Task],
    *,
    workers: int,
    folder: Path,
    submitit: dict[str, Any] | None = None,
    config_file: str | None = None,
    **options: Any,
) -> Iterator[dict]:
    try:
        import submitit as submitit_lib
    except ImportError:
        raise RuntimeError(
            "executor 'submitit' needs the submitit package: pip install 'toolkit[cluster]'"
        ) from None
    settings = dict(submitit or {})
    cluster = settings.pop("cluster", None)
    poll = float(settings.pop("poll_seconds", 5.0))
    executor = submitit_lib.AutoExecutor(folder=folder, cluster=cluster)
    if executor.cluster == "slurm":
        settings.setdefault("slurm_array_parallelism", workers)
    executor.update_parameters(**settings)
    flags = worker_flags()
    count = len(tasks)
    jobs = executor.map_array(run_task, list(tasks), [flags] * count, [config_file] * count)
    by_job = dict(zip((job.job_id for job in jobs), tasks, strict=True))
    for job in submitit_lib.helpers.as_completed(jobs, poll_frequency=poll):
        try:
            yield job.result()
        except Exception as error:  # the job itself failed (killed, timed out, ...)
            trial = Trial.from_json(by_job[job.job_id].trial)
            yield summarize(trial, "failed", error=f"job {job.job_id} failed: {error}")


@executors.register("population", description="Vmapped populations in this process (GPU/TPU).")
def run_population(tasks: Sequence[Task], **options: Any) -> Iterator[dict[str, Any]]:
    yield from execute_group(tasks, shard="auto", max_size=options.get("population_size"))


EXECUTOR_CHOICES = ("auto", *executors.names())


def executor_numerics(name: str) -> dict[str, Any]:
    """``toolkit.sweep.provenance.numerics`` of the runs executor ``name`` trains: its
    workers' (single-threaded, :func:`~toolkit.sweep.workers.worker_flags`) or, for the
    executors that train in this process, this process's, with the executor's name."""
    if executors.entry(name).meta.get("workers"):
        threads = 1 if hasattr(os, "sched_setaffinity") else default_workers()
        record = numerics(xla_flags=worker_flags(), threads=threads)
    else:
        record = numerics(xla_flags=os.environ.get("XLA_FLAGS", ""), threads=xla_cpu_threads())
    return {"executor": name, "vmapped": name == "population", **record}


def choose_executor(name: str, trials: Sequence[Trial] = (), out=None) -> str:
    """``auto``: populations on GPU/TPU, single-threaded worker processes on CPU; inline,
    saying why, when a trial uses a name registered in ``__main__`` (a notebook or script),
    which worker processes and cluster jobs cannot import. Naming ``process`` or
    ``submitit`` for such trials is refused before anything runs."""
    local = registered_in_main(trials)
    if local and name in executors and executors.entry(name).meta.get("workers"):
        raise SweepConfigError(
            f"{', '.join(local)} registered in __main__ (this notebook or script), which the "
            f"{name!r} executor's worker processes cannot import: register it in the config "
            f"file or a module it imports, or run with --config.executor=inline"
        )
    if name != "auto":
        return name
    if local:
        print(
            f"running inline in this process: {', '.join(local)} registered in __main__ "
            f"(this notebook or script), which worker processes cannot import (register it "
            f"in the config file or a module for worker processes)",
            file=out or sys.stderr,
        )
        return "inline"
    import jax

    return "population" if jax.default_backend() in ("gpu", "tpu") else "process"


# The registries a trial names entries of: TrainConfig field -> (kind, registry).
def _registries() -> dict[str, tuple[str, Registry]]:
    from toolkit import augment, losses, models, optimizers

    return {
        "model": ("model", models.models),
        "loss": ("loss", losses.losses),
        "optimizer": ("optimizer", optimizers.optimizers),
        "schedule": ("schedule", optimizers.schedules.schedules),
        "augment": ("augmentation", augment.augmentations),
    }


def registered_in_main(trials: Sequence[Trial]) -> list[str]:
    """``["loss 'taylor_ce'", ...]``: the entries the trials use that were registered by
    code run as ``__main__``."""
    found = []
    for field, (kind, registry) in _registries().items():
        for value in sorted({t.train.get(field) for t in trials} - {None}, key=str):
            if value in registry and registry.origin(value)[0] == "__main__":
                found.append(f"{kind} {value!r}")
    return found
