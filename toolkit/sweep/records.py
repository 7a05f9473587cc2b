"""A sweep trial's evaluation -> its ``evals.jsonl`` rows (one per eval set and severity).

The sweep and the re-evaluation of finished runs both go through :func:`evaluate_trial`
(:func:`toolkit.evaluation.core.evaluate_sets` on the sets of the config's ``evals``) and
:func:`eval_rows`. Every run is evaluated with one fixed key, so all runs of a sweep see the
same shifted examples (paired comparisons); the sets are kept in the worker's memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax

from toolkit.data import Dataset
from toolkit.evaluation.core import ID_COLUMNS, evaluate_sets
from toolkit.evaluation.sets import EvalSet
from toolkit.sweep.config import Trial

__all__ = ["EVAL_KEY_SEED", "eval_rows", "evaluate_trial", "trial_sets"]

EVAL_KEY_SEED = 0  # tk.evaluate's default key: a notebook with it reads the sweep's sets
# tk.evaluate's classification metrics: every row has them (null where undefined).
_METRICS = ("accuracy", "nll", "brier", "ece", "misclassification_auroc")


def trial_sets(dataset: Dataset, trial: Trial, entries: Mapping[str, Any]) -> list[EvalSet]:
    """The sets of every entry, in order; a set named twice (same name and severity) once."""
    specs: dict[tuple[str, int], EvalSet] = {}
    for entry, evaluation in entries.items():
        for spec in evaluation.specs(dataset, trial, entry):
            specs.setdefault((spec.name, spec.severity), spec)
    return list(specs.values())


def skeleton_rows(dataset: Dataset, trial: Trial, entries: Mapping[str, Any]) -> list[dict]:
    """The rows' sets without metrics: for diverged runs, whose logits may not be finite."""
    key = jax.random.key(EVAL_KEY_SEED)
    rows = [("clean", "clean", 0, len(dataset.test))]
    rows += [
        (s.name, s.kind, s.severity, s.size(dataset.test, key=key))
        for s in trial_sets(dataset, trial, entries)
    ]
    return [dict(zip(ID_COLUMNS, row, strict=True)) for row in rows]


def evaluate_trial(
    run, dataset: Dataset, trial: Trial, entries: Mapping[str, Any], *, diverged: bool = False
) -> list[dict]:
    """Rows (eval_set, kind, severity, num_examples, metrics) of every entry; one clean row.

    A diverged run is not evaluated (its frozen weights may overflow): its rows carry the
    sets alone, and :func:`eval_rows` gives them null metrics.
    """
    if diverged:
        return skeleton_rows(dataset, trial, entries)
    specs = trial_sets(dataset, trial, entries)
    return evaluate_sets(run, dataset.test, specs, key=jax.random.key(EVAL_KEY_SEED), keep=True)


def eval_rows(trial: Trial, rows: Sequence[dict], diverged_step: int | None) -> list[dict]:
    """The ``evals.jsonl`` rows: the trial's fields, then each row's set and metrics.

    Every row carries the union of metric columns (missing or NaN -> null); a diverged
    run's rows keep their sets but have null metrics. Clean and shifted rows carry their
    reliability-diagram bins.
    """
    train, axes = trial.train, trial.data_axes
    head = {
        "run_id": trial.run_id,
        "experiment": trial.experiment,
        "dataset": trial.dataset,
        "model": train["model"],
        "loss": train["loss"],
        "optimizer": train["optimizer"],
        "learning_rate": train["learning_rate"],
        "seed": train["seed"],
        "batch_size": train["batch_size"],
        "steps": train["steps"],
        "loss_hparams": train["loss_hparams"],
        "model_hparams": train["model_hparams"],
        "optimizer_hparams": train["optimizer_hparams"],
        "label_noise": axes["label_noise"],
        "train_size": axes["train_size"],
        "imbalance": axes["imbalance"],
        "group": trial.group,
        "variant": trial.variant,
        "diverged": diverged_step is not None,
        "diverged_step": diverged_step,
    }
    columns: list[str] = list(_METRICS)
    if any(row["kind"] == "ood" for row in rows):
        from toolkit.metrics import OOD_SCORES

        columns += [
            f"{m}_{s}"
            for s in OOD_SCORES
            for m in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr")
        ]
    for row in rows:
        columns += [c for c in row if c not in (*ID_COLUMNS, "reliability", *columns)]
    out = []
    for row in rows:
        values = {c: (None if diverged_step is not None else row.get(c)) for c in columns}
        record = head | {c: row[c] for c in ID_COLUMNS} | values
        if row["kind"] in ("clean", "shift"):
            record["reliability"] = None if diverged_step is not None else row.get("reliability")
        out.append(record)
    return out
