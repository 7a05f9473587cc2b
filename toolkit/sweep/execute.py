"""Trials from start (or their last checkpoints) to ``done``: the one pipeline every
executor runs, for any group of trials (one, or a whole sweep on an accelerator).

Trials that share a program and their training examples train as one population
(``tk.train_population``; label noise differs per member through its labels); each member
is then recorded exactly as a trial trained alone. Executors only decide how trials are
grouped and scheduled: one per worker process on CPU, every trial in one process on an
accelerator (``shard="auto"``: the rule of :func:`toolkit.population.choose_mode`).

Order of writes in a run dir: ``config.json``, then ``metrics.jsonl`` rows per chunk and a
checkpoint when :class:`SaveSchedule` says so and at the end, then the ``evals.jsonl`` rows,
``provenance.json``, and ``done`` last. A crash anywhere before ``done`` leaves a run that
the next invocation resumes from its newest readable checkpoint (curve rows written after
that checkpoint are dropped first, so the curve has no gaps or repeats). A trial that fails
with an exception gets ``error.json`` (type, message, traceback, time); its successful
rerun removes it.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from toolkit import store
from toolkit.compilation_cache import ensure_compilation_cache
from toolkit.data import Dataset, Split
from toolkit.population import population_key
from toolkit.registry import UnknownNameError
from toolkit.sweep.checkpoint import Checkpoints, saved_layouts
from toolkit.sweep.config import Trial
from toolkit.sweep.data import load_dataset, training_data
from toolkit.sweep.defaults import CHECKPOINT_EVERY, CHECKPOINT_INTERVAL_S
from toolkit.sweep.evals import parse_evals
from toolkit.sweep.integrity import check_intact, intact_until
from toolkit.sweep.provenance import provenance
from toolkit.sweep.recording import Recorder, SaveSchedule
from toolkit.sweep.records import evaluate_trial
from toolkit.sweep.workers import WORKER_HINT
from toolkit.training import TrainState, train_population

__all__ = [
    "Recorder",
    "SaveSchedule",
    "Task",
    "execute",
    "execute_group",
    "record",
    "summarize",
]


@dataclasses.dataclass(frozen=True)
class Task:
    """What a worker needs to run one trial; plain data, so it pickles to any process."""

    experiment_dir: str
    trial: dict[str, Any]
    evals: dict[str, Any]
    checkpoint_every: int = CHECKPOINT_EVERY
    checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S
    tensorboard: bool = False  # the curve also as TensorBoard events in runs/<id>/tensorboard

    def schedule(self) -> SaveSchedule:
        return SaveSchedule(self.checkpoint_every, self.checkpoint_interval_s)


def summarize(trial: Trial, status: str, rows: list[dict] | None = None, **extra: Any) -> dict:
    """What a worker reports back: status and headline numbers (the final checkpoint on the
    test split) for the progress summary."""
    summary = {"run_id": trial.run_id, "group": trial.group, "status": status, **extra}
    if rows:
        rows = [r for r in rows if (r["checkpoint"], r["split"]) == ("final", "test")]
        clean = [r["accuracy"] for r in rows if r["kind"] == "clean" and r["accuracy"] is not None]
        shifted = [
            r["accuracy"]
            for r in rows
            if r["kind"] in ("shift", "set") and r["accuracy"] is not None
        ]
        summary["clean_accuracy"] = clean[0] if clean else None
        summary["shifted_accuracy"] = float(np.mean(shifted)) if shifted else None
        summary["diverged"] = bool(rows[0]["diverged"])
        summary["run_status"] = rows[0]["status"]
    return summary


def record(
    run,
    run_dir: store.RunDir,
    trial: Trial,
    dataset: Dataset,
    evals: Mapping,
    started: str,
    *,
    validation: Split | None = None,
    train: Split | None = None,
    **extra: Any,
) -> list[dict]:
    """Evaluates a trained run (its final state, and its best-validation state when training
    kept one) and writes its eval rows, provenance and done marker (which lists the rows, so
    that a reader can tell when rows were lost, and the run's status). The run's rows replace
    any an interrupted attempt left in ``evals.jsonl`` (one row per key in the file), and a
    run whose directory lost its record meanwhile fails (:func:`check_intact`)."""
    diverged_step = run.info.get("diverged_step")
    check_intact(run_dir, trial, diverged_step)
    runs = {"final": run}
    if getattr(run, "best", None) is not None:
        runs["best"] = run.best
    rows = evaluate_trial(
        runs,
        dataset,
        trial,
        parse_evals(evals),
        validation=validation,
        train=train,
        diverged_step=diverged_step,
        curve=run_dir.read_metrics(),
    )
    store.append_evals(run_dir.experiment_dir, rows)
    finished = store.now()
    store.atomic_write_json(
        run_dir.provenance,
        provenance(
            run.info,
            batch_size=trial.train["batch_size"],
            started=started,
            finished=finished,
            **extra,
        ),
    )
    check_intact(run_dir, trial, diverged_step)  # deleted while it was evaluated?
    run_dir.write_done(
        diverged_step,
        step=int(run.state.step),
        evals=[store.row_key(row)[1:] for row in rows],
        status=rows[0]["status"],
        best_step=rows[0]["best_step"],
    )
    run_dir.clear_error()  # a failure of an earlier attempt is superseded
    return rows


def restore(
    trial: Trial, run_dir: store.RunDir, dataset: Dataset, *, best: bool = False
) -> tuple[Checkpoints, Any]:
    """The run's checkpoints and the newest readable state its curve covers (None: start
    from scratch); curve rows and checkpoints after that state are dropped. ``best``: the
    run trains with a validation split, so its states keep the best-validation state."""
    config = trial.train_config()
    checkpoints = Checkpoints(run_dir.checkpoint)
    state = None
    if checkpoints.steps():  # a fresh run has none: no need to trace the state's structure
        abstract = saved_layouts(config, dataset.num_classes, dataset.input_shape, best=best)
        covered = intact_until(run_dir.read_metrics(), config)
        state = checkpoints.restore(abstract, at_most=covered)
    step = int(state.step) if state is not None else 0
    checkpoints.drop_after(step)
    run_dir.keep_metrics_until(step)
    return checkpoints, state


class _Member:
    """One claimed trial of a group: its run dir (locked), data and restored state."""

    def __init__(self, task: Task):
        self.task = task
        self.trial = Trial.from_json(task.trial)
        self.run_dir = store.RunDir(task.experiment_dir, self.trial.run_id)
        self.started = store.now()
        self.checkpoints: Checkpoints | None = None
        self.state: TrainState | None = None
        self.dataset: Dataset | None = None
        self.split: Split | None = None
        self.labels: np.ndarray | None = None
        self.validation: Split | None = None  # with the trial's noisy labels
        self.noise = 0.0

    def prepare(self) -> None:
        """Loads the data (data axes and label noise applied) and restores the state."""
        trial = self.trial
        self.dataset = load_dataset(trial.dataset, dict(trial.dataset_kwargs))
        self.split, self.labels, self.validation, self.noise = training_data(
            self.dataset, dict(trial.data_axes), seed=trial.train["seed"]
        )
        self.checkpoints, self.state = restore(
            trial, self.run_dir, self.dataset, best=self.validation is not None
        )

    def close(self) -> None:
        """Releases the run's lock and closes its checkpoints (both idempotent)."""
        if self.checkpoints is not None:
            self.checkpoints.close()
        self.run_dir.lock.release()

    @property
    def resumed_from(self) -> int:
        return int(self.state.step) if self.state is not None else 0

    def group_key(self) -> tuple:
        """Members train together when they share a program, the training examples and the
        step they restart from (a member restored after it diverged stays alone)."""
        t = self.trial
        healthy = self.state is None or int(self.state.diverged_step) < 0
        step = self.resumed_from if healthy else ("diverged", t.run_id)
        axes = ("train_size", "imbalance", "validation_fraction")
        examples = [t.dataset, t.dataset_kwargs, *(t.data_axes.get(a) for a in axes)]
        return population_key(t.train_config()), json.dumps(examples, sort_keys=True), step


def _claim(tasks: Sequence[Task], claimed: list[_Member]) -> list[dict]:
    """Locks every pending run into ``claimed`` (held until it is recorded or the pipeline
    ends); returns the reports of the others."""
    reports = []
    for task in tasks:
        member = _Member(task)
        if member.run_dir.is_done():
            reports.append(summarize(member.trial, "skipped"))
        elif not member.run_dir.lock.acquire():
            reports.append(summarize(member.trial, "locked", holder=member.run_dir.lock.holder()))
        else:
            claimed.append(member)
            if member.run_dir.is_done():  # finished by another process while we waited
                member.close()
                claimed.remove(member)
                reports.append(summarize(member.trial, "skipped"))
            else:
                store.atomic_write_json(member.run_dir.config, member.trial.to_json())
    return reports


def _train_group(group: list[_Member], shard: str) -> Iterator[dict[str, Any]]:
    """Trains ``group`` as one population, saves every member's final state, then records
    each member: a member whose recording fails is the only one reported failed."""
    first = group[0]
    recorders = [Recorder(m.run_dir, m.checkpoints, m.trial, m.task.tensorboard) for m in group]
    schedule = first.task.schedule()  # one for all: the members save at the same steps

    def callback(rows, states) -> None:
        save = schedule.due()
        for recorder, row, state in zip(recorders, rows, states, strict=True):
            recorder(row, state, save=save)

    # Labels are per member only when they differ from the split's (label noise); members
    # share the validation examples (group_key), each with its own noisy labels.
    noisy = any(not np.array_equal(m.labels, first.split.y) for m in group)
    validation = first.validation
    noisy_val = validation is not None and any(
        not np.array_equal(m.validation.y, validation.y) for m in group
    )
    t0 = time.perf_counter()
    try:
        runs = train_population(
            first.split,
            [m.trial.train_config() for m in group],
            num_classes=first.dataset.num_classes,
            train_labels=np.stack([m.labels for m in group]) if noisy else None,
            callback=callback,
            initial_states=None if first.state is None else [m.state for m in group],
            shard=shard,
            validation=validation,
            validation_labels=np.stack([m.validation.y for m in group]) if noisy_val else None,
        )
    finally:
        for recorder in recorders:
            recorder.close()
    train_s = time.perf_counter() - t0
    for member, run in zip(group, runs, strict=True):
        member.checkpoints.save(run.state)  # before any evaluation: nothing trained is lost
    for member, run in zip(group, runs, strict=True):
        try:
            rows = record(
                run,
                member.run_dir,
                member.trial,
                member.dataset,
                member.task.evals,
                member.started,
                validation=member.validation,
                train=Split(member.split.x, member.labels),
                resumed_from_step=member.resumed_from,
                num_train=len(member.split),
                label_noise_realised=member.noise,
                population_size=len(group),
                population_sharding=run.info["population_sharding"],
                executor_pid=os.getpid(),
                xla_flags=os.environ.get("XLA_FLAGS", ""),
            )
            summary = summarize(
                member.trial, "trained", rows, resumed_from=member.resumed_from, train_s=train_s
            )
        except Exception:
            summary = _failed(member)
        member.close()
        yield summary


def _failed(member: _Member) -> dict[str, Any]:
    """The summary of a trial the pipeline failed on (called while handling the exception),
    whose run directory gets ``error.json`` (type, message, traceback, time)."""
    error = sys.exc_info()[1]
    if isinstance(error, UnknownNameError) and multiprocessing.parent_process() is not None:
        error.add_note(WORKER_HINT)
    try:
        member.run_dir.write_error(error)
    except OSError:  # a full or read-only disk must not hide the failure being reported
        pass
    return summarize(member.trial, "failed", error=traceback.format_exc())


def execute_group(
    tasks: Sequence[Task], *, shard: str = "none", max_size: int | None = None
) -> Iterator[dict[str, Any]]:
    """Runs ``tasks`` to ``done``: claim (lock), prepare, restore, train, record, evaluate,
    mark done; yields one summary per trial.

    Trials that can share a program (:meth:`_Member.group_key`) train as one population of
    at most ``max_size`` members placed by ``shard`` (``toolkit.population.plan``: "none"
    keeps them on one device). An exception fails only the trials it reached, with its
    traceback; they stay unfinished and are resumed next time. Whatever ends the pipeline
    (an exception, an interrupt, the caller closing the generator), every lock it took is
    released and every checkpoint manager closed.
    """
    ensure_compilation_cache()
    claimed: list[_Member] = []
    try:
        yield from _claim(tasks, claimed)
        groups: dict[tuple, list[_Member]] = {}
        for member in claimed:
            try:
                member.prepare()
            except Exception:
                member.close()
                yield _failed(member)
                continue
            groups.setdefault(member.group_key(), []).append(member)
        for group in groups.values():
            size = max_size or len(group)
            for start in range(0, len(group), size):
                piece = group[start : start + size]
                reported = set()
                try:
                    for summary in _train_group(piece, shard):
                        reported.add(summary["run_id"])
                        yield summary
                except Exception:
                    for member in piece:
                        if member.trial.run_id not in reported:
                            member.close()
                            yield _failed(member)
    finally:
        for member in claimed:
            member.close()


def execute(task: Task) -> dict[str, Any]:
    """Runs one trial on one device (:func:`execute_group` of one)."""
    (summary,) = execute_group([task])
    return summary
