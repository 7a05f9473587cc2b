"""Tuned sweeps: an equal tuning budget per cell, then seeds at the selected hyperparameters.

With ``config.tune.trials = T > 0`` a sweep runs in two phases (DomainBed's protocol,
Gulrajani & Lopez-Paz 2021):

1. **Tuning.** Each *cell* -- a trial of ``sweep(config)`` without its seed and without
   the tuned hyperparameters -- gets trials 0..T-1 at seed ``tune.seed``. Trial 0 keeps the
   config's values (registry defaults unless set); trial i > 0 draws every tuned
   hyperparameter from its registry search space with
   ``np.random.default_rng([tune.seed, crc32(name), i])``, ``name`` e.g. ``"learning_rate"``
   or ``"loss_hparams.gamma"`` (:func:`toolkit.search_space.draw_trial`), so a draw depends
   on the name and index alone: more trials, seeds or hyperparameters leave it unchanged.
   ``over`` picks what is tuned: ``learning_rate`` and ``weight_decay`` (from the
   optimizer's space), ``optimizer`` (its other hyperparameters), ``loss`` and ``model``.
2. **Seeds.** For each rule in ``tune.select``, :func:`toolkit.selection.select` picks one
   tuning trial per cell from the recorded rows, and that trial is run at every seed the
   sweep lists for the cell. The tuning runs themselves are not among the reported seeds,
   so the selected runs carry no winner's-curse bias.

Runs carry ``Trial.tags = {"cell", "trial", "role"}`` (``role``: "tune" or "seed"); tags are
not part of the run id. Selection is a pure function of the rows, so a killed sweep that is
run again redoes nothing finished and reaches the same seed runs. A cell's seed runs wait
until all of its tuning runs are done.

On an accelerator the population executor trains trials that share a program together
(:mod:`toolkit.population.grouping`): tuning ``learning_rate`` and ``weight_decay`` keeps a
cell's trials in one population (traced per-member scalars). Loss hyperparameters are
static closures, one ``jax.lax.switch`` branch per distinct value: the trials still share a
population, at the cost of evaluating every branch. Tuned ``optimizer`` and ``model``
hyperparameters change the program, so each distinct draw is a population of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from toolkit import losses, models, optimizers, selection
from toolkit.search_space import draw_trial
from toolkit.sweep.config import SweepConfigError, Trial, _variants, canonical_json, expand

__all__ = [
    "CHECKPOINTS",
    "OVER",
    "Cell",
    "SeedPlan",
    "Tune",
    "plan_seeds",
    "plan_tuning",
    "tuned_space",
    "tuning_json",
]

OVER = ("learning_rate", "weight_decay", "loss", "optimizer", "model")
"""What ``config.tune.over`` may name."""
CHECKPOINTS = ("final", "best")
_TRAINER_SET = ("learning_rate", "weight_decay")  # optimizer hparams that are trial fields


@dataclasses.dataclass(frozen=True)
class Tune:
    """``config.tune``, checked."""

    trials: int
    over: tuple[str, ...]
    select: tuple[str, ...]
    seed: int
    checkpoint: str

    @classmethod
    def from_config(cls, config: Any) -> Tune | None:
        """``config.tune`` checked before any compute; None when it asks for no tuning."""
        tune = config.get("tune")
        if tune is None:
            return None
        get = tune.get
        trials = get("trials", 0)
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
            raise SweepConfigError(
                f"config.tune.trials must be an int >= 0 (0: no tuning), got {trials!r}"
            )
        if trials == 0:
            return None
        over = _names("over", get("over", ("learning_rate", "loss")), OVER)
        select = _names("select", get("select", ("id_val",)), selection.rules.names())
        seed = get("seed", 1000)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SweepConfigError(f"config.tune.seed must be an int >= 0, got {seed!r}")
        checkpoint = get("checkpoint", "final")
        if checkpoint not in CHECKPOINTS:
            raise SweepConfigError(
                f"config.tune.checkpoint must be one of {', '.join(CHECKPOINTS)}, "
                f"got {checkpoint!r}"
            )
        return cls(trials, over, select, seed, checkpoint)


def _names(field: str, value: Any, valid: Sequence[str]) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value or ())
    if not names:
        raise SweepConfigError(f"config.tune.{field} is empty; valid: {', '.join(valid)}")
    for name in names:
        if name not in valid:
            raise SweepConfigError(
                f"config.tune.{field} has unknown name {name!r}; valid: {', '.join(valid)}"
            )
    return tuple(dict.fromkeys(names))


def tuned_space(train: Mapping[str, Any], over: Sequence[str]) -> dict[str, tuple]:
    """The tuned hyperparameters of a trial's ``train`` fields: dotted name -> spec."""
    optimizer = train["optimizer"]
    own = optimizers.search_space(optimizer)
    space = {}
    for field in _TRAINER_SET:
        if field in over:
            if field not in own:
                raise SweepConfigError(
                    f"config.tune.over names {field!r} but optimizer {optimizer!r} declares "
                    f"no search space for it (register it with search_space={{{field!r}: ...}})"
                )
            space[field] = own[field]
    if "optimizer" in over:
        rest = {k: v for k, v in own.items() if k not in _TRAINER_SET}
        space.update({f"optimizer_hparams.{k}": v for k, v in rest.items()})
    if "loss" in over:
        own_loss = losses.search_space(train["loss"])
        space.update({f"loss_hparams.{k}": v for k, v in own_loss.items()})
    if "model" in over:
        space.update(
            {f"model_hparams.{k}": v for k, v in models.search_space(train["model"]).items()}
        )
    return space


def _copy(train: Mapping[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in train.items()}


def _parent(tree: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
    """The dict that holds dotted ``name`` (``"loss_hparams.gamma"``) and its last part."""
    *parents, leaf = name.split(".")
    for parent in parents:
        tree = tree[parent]
    return tree, leaf


def _without(train: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``train`` without its seed and the (dotted) ``names``."""
    out = _copy(train)
    out.pop("seed", None)
    for name in names:
        node, leaf = _parent(out, name)
        node.pop(leaf, None)
    return out


def _with(train: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``train`` with the (dotted) ``values`` set."""
    out = _copy(train)
    for name, value in values.items():
        node, leaf = _parent(out, name)
        node[leaf] = value
    return out


@dataclasses.dataclass
class Cell:
    """One cell: its label (``group/variant``), its first trial in the sweep (trial 0 keeps
    its values), the tuned space and the seeds the sweep lists for it; ``trials`` are its
    tuning runs (index -> Trial). ``variant`` labels the cell's runs in tables."""

    label: str
    variant: str
    base: Trial
    space: dict[str, tuple]
    seeds: list[int]
    trials: dict[int, Trial] = dataclasses.field(default_factory=dict)


def _cells(trials: Sequence[Trial], tune: Tune, group_by: Sequence[str]) -> list[Cell]:
    """The sweep's trials grouped into cells (first trial of each is its base), labelled
    ``group/loss[ other fields that vary in the group]`` after the tuned fields are dropped."""
    cells: dict[str, Cell] = {}
    stripped: dict[str, dict] = {}
    for trial in trials:
        space = tuned_space(trial.train, tune.over)
        train = _without(trial.train, list(space))
        row = {
            "dataset": trial.dataset,
            "dataset_kwargs": trial.dataset_kwargs,
            "train": train,
            "data_axes": trial.data_axes,
            "group": trial.group,
        }
        key = canonical_json(row)
        if key not in cells:
            cells[key] = Cell("", "", trial, space, [])
            stripped[key] = row
        if trial.train["seed"] not in cells[key].seeds:
            cells[key].seeds.append(trial.train["seed"])
    rows = list(stripped.values())
    variants = _variants(rows, group_by)
    labels = [f"{row['group']}/{variant}" for row, variant in zip(rows, variants, strict=True)]
    repeated = {label for label in labels if labels.count(label) > 1}
    for (key, cell), label, variant in zip(cells.items(), labels, variants, strict=True):
        digest = f"#{hashlib.sha256(key.encode()).hexdigest()[:8]}" if label in repeated else ""
        cell.label, cell.variant = label + digest, variant + digest
    return list(cells.values())


def plan_tuning(config: Any, trials: Sequence[Trial], tune: Tune) -> tuple[list[Cell], list[Trial]]:
    """Phase 1: the cells of the sweep's ``trials`` and their tuning runs (tagged role
    "tune"). A draw that repeats an earlier trial of its cell (a small ``choice`` space) is
    the same run; it is planned once, under the lower index."""
    clash = sorted({t.train["seed"] for t in trials} & {tune.seed})
    if clash:
        raise SweepConfigError(
            f"config.tune.seed {tune.seed} is also a seed of the sweep; tuning runs must not "
            f"be among the reported seeds, so pick another tune.seed"
        )
    cells = _cells(trials, tune, tuple(config.get("group_by", ("model", "optimizer"))))
    planned: list[Trial] = []
    for cell in cells:
        seen: set[str] = set()
        for index in range(tune.trials):
            values = {
                name: draw_trial(name, spec, seed=tune.seed, index=index)
                for name, spec in cell.space.items()
                if index > 0
            }
            train = _with({**cell.base.train, "seed": tune.seed}, values)
            trial = _expand_one(config, cell, train, f"{cell.label}, trial {index}")
            if trial.run_id in seen:
                continue
            seen.add(trial.run_id)
            tags = {"cell": cell.label, "trial": index, "role": "tune"}
            cell.trials[index] = dataclasses.replace(trial, tags=tags)
            planned.append(cell.trials[index])
    return cells, planned


def _expand_one(config: Any, cell: Cell, train: Mapping[str, Any], where: str) -> Trial:
    """The trial of ``train`` in ``cell``'s data, normalised and checked by :func:`expand`."""
    base = cell.base
    spec = {
        **train,
        **base.data_axes,
        "dataset": base.dataset,
        "dataset_kwargs": base.dataset_kwargs,
        "group": base.group,
        "variant": cell.variant,
    }
    try:
        return expand(config, [spec])[0]
    except SweepConfigError as error:
        raise SweepConfigError(f"tuning {where}: {error}") from None


@dataclasses.dataclass
class SeedPlan:
    """Phase 2: per rule, the selection table; the seed runs; the cells without a pick
    (per rule) and the cells whose tuning runs are not all done yet."""

    selections: dict[str, pd.DataFrame]
    trials: list[Trial]
    unselected: dict[str, list[str]]
    waiting: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "selection": {
                rule: table.to_dict(orient="records") for rule, table in self.selections.items()
            },
            "unselected": self.unselected,
            "waiting": self.waiting,
            "seed_runs": [
                {"run_id": t.run_id, **t.tags, "seed": t.train["seed"]} for t in self.trials
            ],
        }


def plan_seeds(cells: Sequence[Cell], rows: pd.DataFrame, done: set[str], tune: Tune) -> SeedPlan:
    """Phase 2 from the recorded ``rows`` (evaluation rows as a DataFrame) and the ``done``
    run ids: per rule, the selected trial of every cell whose tuning runs are all done, run
    at each of the cell's seeds (tagged role "seed"; one run per run id across rules).

    The rows' ``cell``/``trial``/``role`` columns are taken from the plan (by run id), so
    rows of other runs in the directory, or rows written without tags, cannot mislead it.
    """
    tags = {t.run_id: t.tags for cell in cells for t in cell.trials.values()}
    ready = [c for c in cells if all(t.run_id in done for t in c.trials.values())]
    waiting = [c.label for c in cells if c.label not in {r.label for r in ready}]
    ready_ids = {t.run_id for c in ready for t in c.trials.values()}
    rows = rows[rows["run_id"].isin(ready_ids)].copy() if len(rows) else rows
    if len(rows):
        for column in ("cell", "trial", "role"):
            rows[column] = rows["run_id"].map(lambda run_id, c=column: tags[run_id][c])
    by_label = {c.label: c for c in ready}
    selections, unselected, planned = {}, {}, {}
    for rule in tune.select:
        if len(rows):
            table = selection.select(rows, rule, checkpoint=tune.checkpoint)
        else:
            table = pd.DataFrame(columns=["cell", "trial", "run_id", "score", "rule", "candidates"])
        selections[rule] = table
        picked = dict(zip(table["cell"], table["trial"], strict=True))
        unselected[rule] = [label for label in by_label if label not in picked]
        for label, index in picked.items():
            cell = by_label[label]
            chosen = cell.trials[int(index)]
            for seed in cell.seeds:
                trial = dataclasses.replace(
                    chosen,
                    train={**chosen.train, "seed": seed},
                    tags={"cell": label, "trial": int(index), "role": "seed"},
                )
                planned.setdefault(trial.run_id, trial)
    return SeedPlan(selections, list(planned.values()), unselected, waiting)


def tuning_json(cells: Sequence[Cell], tune: Tune, seeds: SeedPlan | None) -> dict[str, Any]:
    """The plan as written to ``sweep.json`` under ``"tuning"``."""
    out: dict[str, Any] = {
        "tune": dataclasses.asdict(tune),
        "cells": [
            {
                "cell": c.label,
                "space": c.space,
                "seeds": c.seeds,
                "trials": [{"trial": i, "run_id": t.run_id} for i, t in c.trials.items()],
            }
            for c in cells
        ],
    }
    if seeds is not None:
        out.update(seeds.to_json())
    return out
