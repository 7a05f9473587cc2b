"""Deep ensembles of a sweep's seeds (Lakshminarayanan et al. 2017), evaluated after the runs.

With ``config.evals["ensemble"] = {"type": "ensemble"}``, the runs of one configuration
that differ only in their seed (tuning runs excluded) form an ensemble once at least two of
them have finished without diverging. It is evaluated on every set of the config
(:func:`~toolkit.sweep.records.evaluate_checkpoint`: logit scorers only, temperature and
conformal thresholds fitted on the first member's validation split), for the final and,
when every member kept one, the best-validation checkpoint. Its rows carry the first
member's run id and fields, ``predictor = "ensemble"``, ``ensemble_size`` and
``ensemble_members``; rows of an ensemble whose members have not changed are not computed
again, so a resumed sweep only evaluates the new ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit import store
from toolkit.sweep.config import Trial
from toolkit.sweep.eval_methods import ensemble_requested, trial_methods
from toolkit.sweep.loading import restore_finished

__all__ = ["ensemble_groups", "evaluate_ensembles"]


def _without_seed(trial: Trial) -> str:
    train = {k: v for k, v in trial.train.items() if k != "seed"}
    fields = [trial.dataset, trial.dataset_kwargs, train, trial.data_axes]
    return json.dumps(fields, sort_keys=True, default=str)


def ensemble_groups(trials: Sequence[Trial], usable: set[str]) -> list[list[Trial]]:
    """The ``usable`` runs of ``trials`` grouped by everything but the seed (groups of at
    least two, members sorted by seed); tuning runs are no ensemble's members."""
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        if trial.run_id in usable and (trial.tags or {}).get("role") != "tune":
            groups.setdefault(_without_seed(trial), []).append(trial)
    ordered = [sorted(g, key=lambda t: t.train["seed"]) for g in groups.values()]
    return [g for g in ordered if len(g) >= 2]


def _existing(rows: list[dict]) -> dict[str, list[str]]:
    """``{first member's run id: members}`` of the ensemble rows already written."""
    found = {}
    for row in rows:
        if row.get("predictor") == "ensemble":
            found[row["run_id"]] = list(row.get("ensemble_members") or [])
    return found


def evaluate_ensembles(
    experiment_dir: Path,
    trials: Sequence[Trial],
    evals: Mapping[str, Any],
    *,
    again: bool = False,
    out=None,
) -> int:
    """Evaluates the ensembles of ``trials`` not yet evaluated (every one with ``again``,
    as re-evaluation on new sets does); returns how many."""
    from toolkit.sweep.evals import parse_evals

    entries = parse_evals(evals)
    if not ensemble_requested(entries):
        return 0
    from toolkit.ensembles import ensemble
    from toolkit.sweep.records import evaluate_checkpoint, trial_rows, trial_sets

    markers = store.done_markers(experiment_dir)
    usable = {i for i, m in markers.items() if m.get("diverged_step") is None}
    existing = _existing(store.read_evals(experiment_dir, done_only=False))
    evaluated = 0
    for group in ensemble_groups(trials, usable):
        ids = [t.run_id for t in group]
        if not again and existing.get(ids[0]) == ids:
            continue
        finished = [
            restore_finished(store.RunDir(experiment_dir, t.run_id), t, markers[t.run_id])
            for t in group
        ]
        first = finished[0]
        specs = trial_sets(first.dataset, first.trial, entries)
        methods = trial_methods(entries, specs).logit_only
        checkpoints = {"final": [f.run for f in finished]}
        if all(f.run.best is not None for f in finished):
            checkpoints["best"] = [f.run.best for f in finished]
        results = []
        for checkpoint, runs in checkpoints.items():
            test, held = evaluate_checkpoint(
                ensemble(runs),
                first.dataset.test,
                specs,
                methods,
                validation=first.data.validation,
                train=None,
            )
            for split, rows in (("test", test), ("validation", held)):
                results += [
                    {"checkpoint": checkpoint, "split": split, "status": "finished", **row}
                    for row in rows
                ]
        tail = {"predictor": "ensemble", "ensemble_size": len(ids), "ensemble_members": ids}
        rows = [row | tail for row in trial_rows(first.trial, results, None, {})]
        store.append_evals(experiment_dir, rows)
        evaluated += 1
        if out is not None:
            print(f"ensemble of {len(ids)} ({first.trial.group}): {len(rows)} rows", file=out)
    return evaluated
