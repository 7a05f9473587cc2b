"""One trial from start (or its last checkpoint) to ``done``: the unit every executor runs.

Order of writes in a run dir: ``config.json``, then ``metrics.jsonl`` rows per chunk and a
checkpoint when :class:`SaveSchedule` says so and at the end, then the ``evals.jsonl`` rows,
``provenance.json``, and ``done`` last. A crash anywhere before ``done`` leaves a run that
the next invocation resumes from its newest readable checkpoint (curve rows written after
that checkpoint are dropped first, so the curve has no gaps or repeats).
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np

from toolkit import store
from toolkit.compilation_cache import ensure_compilation_cache
from toolkit.data import Dataset, Split
from toolkit.sweep.checkpoint import Checkpoints, abstract_state
from toolkit.sweep.config import Trial
from toolkit.sweep.data import load_dataset, noisy_labels, subset
from toolkit.sweep.defaults import CHECKPOINT_EVERY, CHECKPOINT_INTERVAL_S
from toolkit.sweep.evals import eval_rows, evaluate_trial, parse_evals
from toolkit.sweep.provenance import provenance
from toolkit.training import TrainConfig, TrainState, train

__all__ = [
    "Recorder",
    "SaveSchedule",
    "Task",
    "execute",
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

    def schedule(self) -> SaveSchedule:
        return SaveSchedule(self.checkpoint_every, self.checkpoint_interval_s)


class SaveSchedule:
    """Which chunks end with a checkpoint: every ``every``-th chunk that ends at least
    ``interval_s`` seconds after the previous save began (or after training began, for the
    first). ``interval_s=0`` checkpoints every ``every`` chunks exactly. A population shares
    one schedule, so its members checkpoint at the same steps."""

    def __init__(self, every: int, interval_s: float, *, clock=time.monotonic):
        self.every, self.interval_s, self.clock = every, interval_s, clock
        self.chunks = 0
        self.last = clock()

    def due(self) -> bool:
        """Called once per finished chunk: whether to checkpoint now."""
        self.chunks += 1
        if self.chunks % self.every:
            return False
        now = self.clock()
        if now - self.last < self.interval_s:
            return False
        self.last = now
        return True


class Recorder:
    """Writes a run's curve rows and, when asked, its checkpoint."""

    def __init__(self, run_dir: store.RunDir, checkpoints: Checkpoints):
        self.run_dir, self.checkpoints = run_dir, checkpoints

    def __call__(self, row: dict[str, float] | None, state: TrainState, *, save: bool) -> None:
        if row is None:  # a population member that diverged in an earlier chunk
            return
        store.append_jsonl(self.run_dir.metrics, [row])
        if save:
            self.checkpoints.save(state)


def train_fields(config: TrainConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def summarize(trial: Trial, status: str, rows: list[dict] | None = None, **extra: Any) -> dict:
    """What a worker reports back: status and headline numbers for the progress summary."""
    summary = {"run_id": trial.run_id, "group": trial.group, "status": status, **extra}
    if rows:
        clean = [r["accuracy"] for r in rows if r["kind"] == "clean" and r["accuracy"] is not None]
        shifted = [
            r["accuracy"]
            for r in rows
            if r["kind"] in ("shift", "set") and r["accuracy"] is not None
        ]
        summary["clean_accuracy"] = clean[0] if clean else None
        summary["shifted_accuracy"] = float(np.mean(shifted)) if shifted else None
        summary["diverged"] = bool(rows[0]["diverged"])
    return summary


def record(
    run,
    run_dir: store.RunDir,
    trial: Trial,
    dataset: Dataset,
    evals: Mapping,
    started: str,
    **extra: Any,
) -> list[dict]:
    """Evaluates a trained run and writes its eval rows, provenance and done marker (which
    lists the rows, so that a reader can tell when rows were lost)."""
    diverged_step = run.info.get("diverged_step")
    results = evaluate_trial(
        run, dataset, trial, parse_evals(evals), diverged=diverged_step is not None
    )
    rows = eval_rows(trial, results, diverged_step)
    store.append_jsonl(run_dir.experiment_dir / store.EVALS, rows)
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
    run_dir.write_done(
        diverged_step,
        step=int(run.state.step),
        evals=[(row["eval_set"], row["severity"]) for row in rows],
    )
    return rows


def prepare(trial: Trial) -> tuple[Dataset, Split, float]:
    """The dataset, the training split with the data axes applied, and the realised noise."""
    dataset = load_dataset(trial.dataset, dict(trial.dataset_kwargs))
    split = subset(dataset, dict(trial.data_axes))
    labels, rate = noisy_labels(
        split, dict(trial.data_axes), seed=trial.train["seed"], num_classes=dataset.num_classes
    )
    return dataset, Split(split.x, labels), rate


def intact_until(rows: list[dict[str, Any]], config: TrainConfig) -> int:
    """The last step up to which the curve has every chunk's row, in order (0: none).

    Chunk rows are written at steps ``chunk, 2 chunk, ...`` and ``steps`` (the trainer's
    ``steps_per_dispatch``); a row lost to damage ends the intact prefix, so a resume must
    start at or before it.
    """
    chunk = config.steps_per_dispatch
    expected = [*range(chunk, config.steps, chunk), config.steps]
    last = 0
    for row, step in zip(rows, expected, strict=False):
        if row.get("step") != step:
            break
        last = step
    return last


def restore(trial: Trial, run_dir: store.RunDir, dataset: Dataset) -> tuple[Checkpoints, Any]:
    """The run's checkpoints and the newest readable state its curve covers (None: start
    from scratch); curve rows and checkpoints after that state are dropped."""
    config = trial.train_config()
    checkpoints = Checkpoints(run_dir.checkpoint)
    state = None
    if checkpoints.steps():  # a fresh run has none: no need to trace the state's structure
        abstract = abstract_state(config, dataset.num_classes, dataset.input_shape)
        covered = intact_until(run_dir.read_metrics(), config)
        state = checkpoints.restore(abstract, at_most=covered)
    step = int(state.step) if state is not None else 0
    checkpoints.drop_after(step)
    run_dir.keep_metrics_until(step)
    return checkpoints, state


def _execute(task: Task) -> dict[str, Any]:
    ensure_compilation_cache()
    trial = Trial.from_json(task.trial)
    run_dir = store.RunDir(task.experiment_dir, trial.run_id)
    if run_dir.is_done():
        return summarize(trial, "skipped")
    with run_dir.lock as held:
        if not held:
            return summarize(trial, "locked", holder=run_dir.lock.holder())
        if run_dir.is_done():  # finished by another process while we waited
            return summarize(trial, "skipped")
        store.atomic_write_json(run_dir.config, trial.to_json())
        started = store.now()
        dataset, split, noise = prepare(trial)
        checkpoints, state = restore(trial, run_dir, dataset)
        resumed_from = int(state.step) if state is not None else 0
        config = trial.train_config()
        recorder, schedule = Recorder(run_dir, checkpoints), task.schedule()
        t0 = time.perf_counter()
        # One device per run: a sweep's parallelism is across runs (one per worker).
        run = train(
            split,
            num_classes=dataset.num_classes,
            verbose=False,
            devices=1,
            callback=lambda row, state: recorder(row, state, save=schedule.due()),
            initial_state=state,
            **train_fields(config),
        )
        checkpoints.save(run.state)
        checkpoints.close()
        train_s = time.perf_counter() - t0
        rows = record(
            run,
            run_dir,
            trial,
            dataset,
            task.evals,
            started,
            resumed_from_step=resumed_from,
            num_train=len(split),
            label_noise_realised=noise,
            executor_pid=os.getpid(),
            xla_flags=os.environ.get("XLA_FLAGS", ""),
        )
        return summarize(trial, "trained", rows, resumed_from=resumed_from, train_s=train_s)


def execute(task: Task) -> dict[str, Any]:
    """Runs one trial; an exception becomes a ``failed`` summary with its traceback, so one
    bad run does not stop a sweep (the run stays unfinished and is resumed next time)."""
    try:
        return _execute(task)
    except Exception:
        trial = Trial.from_json(task.trial)
        return summarize(trial, "failed", error=traceback.format_exc())
