"""The accelerator path: trials that can share a program are trained as one vmapped population.

Trials fall in one population when their training configs share
``toolkit.population.population_key`` and they train on the same examples (dataset,
dataset kwargs, ``train_size``, ``imbalance``); label noise differs per member through
``train_labels``. Resumed members must restart from one step, so the restart step is part
of the grouping key; a member restored after it diverged trains no further and is only
evaluated. Each member is recorded exactly like a solo run.

On several local devices the runner picks, for each population of the sweep, between
splitting the population axis across the devices and data parallelism inside every member,
by the rule of :func:`toolkit.population.choose_mode` (``shard="auto"``):

* at least as many members as devices: population axis (each device trains whole members,
  no communication between devices);
* fewer members than devices, and a batch size that splits evenly over the devices: data
  parallel (every device holds every member and a slice of each batch; gradients are
  summed across devices at every step);
* otherwise the population axis over as many devices as there are members.

``config.population_size`` caps a population's size (e.g. to fit device memory); the
chosen mode and device count are recorded in each run's ``provenance.json``
(``population_sharding``, ``device_count``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from toolkit import store
from toolkit.compilation_cache import ensure_compilation_cache
from toolkit.sweep.config import Trial
from toolkit.sweep.data import load_dataset, noisy_labels, subset
from toolkit.sweep.execute import Recorder, Task, record, restore, summarize

__all__ = ["run_populations"]


class _Member:
    def __init__(self, task: Task):
        self.task = task
        self.trial = Trial.from_json(task.trial)
        self.run_dir = store.RunDir(task.experiment_dir, self.trial.run_id)
        self.checkpoints = self.state = None
        self.started = store.now()

    def key(self, population_key) -> tuple:
        t = self.trial
        step: Any = 0
        if self.state is not None:
            healthy = int(self.state.diverged_step) < 0
            step = int(self.state.step) if healthy else ("diverged", t.run_id)
        data = json.dumps(
            [
                t.dataset,
                t.dataset_kwargs,
                t.data_axes.get("train_size"),
                t.data_axes.get("imbalance"),
            ],
            sort_keys=True,
        )
        return (population_key(t.train_config()), data, step)


def _claim(tasks: Sequence[Task]) -> tuple[list[_Member], list[dict]]:
    """Locks every pending run (held until it is recorded); reports the others."""
    members, reports = [], []
    for task in tasks:
        member = _Member(task)
        if member.run_dir.is_done():
            reports.append(summarize(member.trial, "skipped"))
        elif not member.run_dir.lock.acquire():
            reports.append(summarize(member.trial, "locked", holder=member.run_dir.lock.holder()))
        elif member.run_dir.is_done():
            member.run_dir.lock.release()
            reports.append(summarize(member.trial, "skipped"))
        else:
            store.atomic_write_json(member.run_dir.config, member.trial.to_json())
            members.append(member)
    return members, reports


def _train_group(group: list[_Member]) -> Iterator[dict[str, Any]]:
    from toolkit.training import train_population

    first = group[0].trial
    dataset = load_dataset(first.dataset, dict(first.dataset_kwargs))
    split = subset(dataset, dict(first.data_axes))
    noisy = [
        noisy_labels(
            split,
            dict(m.trial.data_axes),
            seed=m.trial.train["seed"],
            num_classes=dataset.num_classes,
        )
        for m in group
    ]
    labels = np.stack([y for y, _ in noisy]) if any(rate for _, rate in noisy) else None
    recorders = [Recorder(m.run_dir, m.checkpoints) for m in group]
    schedule = group[0].task.schedule()  # one for all: the members save at the same steps

    def callback(rows, states) -> None:
        save = schedule.due()
        for recorder, row, state in zip(recorders, rows, states, strict=True):
            recorder(row, state, save=save)

    resumed = [m.state for m in group]
    runs = train_population(
        split,
        [m.trial.train_config() for m in group],
        num_classes=dataset.num_classes,
        train_labels=labels,
        callback=callback,
        initial_states=resumed if all(s is not None for s in resumed) else None,
        shard="auto",
    )
    for member, run, (_, rate) in zip(group, runs, noisy, strict=True):
        try:
            member.checkpoints.save(run.state)
            member.checkpoints.close()
            resumed_from = int(member.state.step) if member.state is not None else 0
            rows = record(
                run,
                member.run_dir,
                member.trial,
                dataset,
                member.task.evals,
                member.started,
                resumed_from_step=resumed_from,
                num_train=len(split),
                label_noise_realised=rate,
                population_size=len(group),
                population_sharding=run.info["population_sharding"],
            )
            yield summarize(member.trial, "trained", rows, resumed_from=resumed_from)
        finally:
            member.run_dir.lock.release()


def run_populations(tasks: Sequence[Task], *, max_size: int | None = None) -> Iterator[dict]:
    """Trains and records ``tasks`` as populations; yields one summary per trial."""
    from toolkit.population import population_key

    ensure_compilation_cache()
    members, reports = _claim(tasks)
    yield from reports
    groups: dict[tuple, list[_Member]] = {}
    for member in members:
        dataset = load_dataset(member.trial.dataset, dict(member.trial.dataset_kwargs))
        member.checkpoints, member.state = restore(member.trial, member.run_dir, dataset)
        groups.setdefault(member.key(population_key), []).append(member)
    for group in groups.values():
        size = max_size or len(group)
        for start in range(0, len(group), size):
            piece = group[start : start + size]
            try:
                yield from _train_group(piece)
            except Exception as error:
                for member in piece:
                    member.run_dir.lock.release()
                    if not member.run_dir.is_done():
                        yield summarize(member.trial, "failed", error=repr(error))
