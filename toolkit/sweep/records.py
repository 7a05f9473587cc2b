"""A sweep trial's evaluation -> its ``evals.jsonl`` rows (one per checkpoint, split, eval
set and severity).

The sweep and the re-evaluation of finished runs both go through :func:`evaluate_trial`.
For each evaluated checkpoint (``"final"``, and ``"best"``: the best-validation state) it
gives the ``test`` rows (the clean test set and every set of the config's ``evals``) and,
when the trial has a validation split, the ``validation`` rows (the clean validation split
and the ``shifts`` entries' corruptions of it, at the same severities: the held-out data
that model selection may use; :mod:`toolkit.selection`). Every row's temperature-scaled
metrics use the temperature fitted on that checkpoint's validation logits (Guo et al.
2017). Every run is evaluated with one fixed key, so all runs of a sweep see the same
shifted examples (paired comparisons); the sets are kept in the worker's memory.

Every row of a run also carries the run's ``status`` (:func:`run_status`),
``train_accuracy``, ``best_step`` and its tuning tags (``cell``, ``trial``, ``role``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from toolkit.data import Dataset, Split
from toolkit.evaluation.core import ID_COLUMNS, evaluate_sets
from toolkit.evaluation.fitting import fit_evaluation
from toolkit.evaluation.methods import OOD_METRICS, Methods
from toolkit.evaluation.sets import EvalSet, Shifted
from toolkit.sweep.config import Trial
from toolkit.sweep.eval_methods import mc_samples, trial_methods

__all__ = [
    "COLLAPSE_MARGIN",
    "EVAL_KEY_SEED",
    "MAX_CLASS_FRACTION",
    "evaluate_trial",
    "run_status",
    "trial_sets",
]

EVAL_KEY_SEED = 0  # tk.evaluate's default key: a notebook with it reads the sweep's sets
# Every row has these metric columns (null where undefined or without a validation split).
_METRICS = (
    "accuracy",
    "nll",
    "brier",
    "ece",
    "misclassification_auroc",
    "max_class_fraction",
    "temperature",
    "nll_ts",
    "ece_ts",
    "brier_ts",
)
COLLAPSE_MARGIN = 0.05  # collapsed: final training accuracy <= chance + this...
MAX_CLASS_FRACTION = 0.95  # ...or more than this share of the test set predicted as one class


def trial_sets(dataset: Dataset, trial: Trial, entries: Mapping[str, Any]) -> list[EvalSet]:
    """The sets of every entry, in order; a set named twice (same name and severity) once."""
    specs: dict[tuple[str, int], EvalSet] = {}
    for entry, evaluation in entries.items():
        for spec in evaluation.specs(dataset, trial, entry):
            specs.setdefault((spec.name, spec.severity), spec)
    return list(specs.values())


def _skeleton(clean: Split, specs: Sequence[EvalSet], key: jax.Array) -> list[dict]:
    """The rows' sets without metrics: for diverged runs, whose logits may not be finite."""
    rows = [("clean", "clean", 0, len(clean))]
    rows += [(s.name, s.kind, s.severity, s.size(clean, key=key)) for s in specs]
    return [dict(zip(ID_COLUMNS, row, strict=True)) for row in rows]


def run_status(
    diverged: bool, train_accuracy: float | None, max_class_fraction: float | None, num_classes: int
) -> str:
    """``diverged`` (non-finite training), ``collapsed`` (training accuracy at the
    checkpoint's step at most chance + :data:`COLLAPSE_MARGIN`, or more than
    :data:`MAX_CLASS_FRACTION` of the clean validation split -- the test split when there is
    none -- predicted as one class) or ``finished``."""
    if diverged:
        return "diverged"
    if train_accuracy is not None and train_accuracy <= 1 / num_classes + COLLAPSE_MARGIN:
        return "collapsed"
    if max_class_fraction is not None and max_class_fraction > MAX_CLASS_FRACTION:
        return "collapsed"
    return "finished"


def evaluate_trial(
    runs: Mapping[str, Any],
    dataset: Dataset,
    trial: Trial,
    entries: Mapping[str, Any],
    *,
    validation: Split | None = None,
    train: Split | None = None,
    diverged_step: int | None = None,
    curve: Sequence[Mapping[str, Any]] = (),
) -> list[dict]:
    """The ``evals.jsonl`` rows of a trained trial: its fields, the run's, then each row's
    checkpoint, split, set and metrics.

    ``runs`` maps a checkpoint name to the run holding its weights: ``"final"`` (whose info
    gives ``best_step``), plus ``"best"`` when training kept one. ``curve`` is the run's
    whole training curve (``metrics.jsonl``; the Run of a resumed run holds only the rows
    since it resumed): its last row's accuracy is ``train_accuracy``.
    ``validation`` is the trial's validation split with its (noisy) labels
    (:func:`toolkit.sweep.data.training_data`), or None. Every row carries the union of
    metric columns (missing or NaN -> null). A diverged run is not evaluated (its weights
    may overflow): its rows keep their sets but have null metrics. Clean and shifted rows
    carry their reliability-diagram bins. The config's method entries
    (:mod:`toolkit.sweep.eval_methods`) add OOD scorers (statistics on ``train``, the trial's
    training split with its labels; hyperparameters chosen on the validation split),
    conformal and selective columns, and, with ``mc_dropout``, a second set of rows per
    checkpoint with ``predictor = "mc_dropout"``.
    """
    diverged = diverged_step is not None
    key = jax.random.key(EVAL_KEY_SEED)
    specs = trial_sets(dataset, trial, entries)
    shifted = [s for s in specs if isinstance(s, Shifted)]
    methods = trial_methods(entries, specs)
    predictors = {"single": None}
    if mc_samples(entries) is not None:
        predictors["mc_dropout"] = mc_samples(entries)
    best_step = runs["final"].info.get("best_step")
    # The training accuracy of each checkpoint's state: the curve row at its step.
    train_at = {row.get("step"): row.get("accuracy") for row in curve}
    steps = {"final": curve[-1].get("step") if curve else None, "best": best_step}
    results = []
    by_step: dict[int, tuple[list[dict], list[dict]]] = {}
    for (checkpoint, run), (predictor, samples) in itertools.product(
        runs.items(), predictors.items()
    ):
        step = int(run.state.step)
        if not diverged and (step, predictor) in by_step:  # best state = final: same rows
            test, held = by_step[step, predictor]
        elif diverged:
            test = _skeleton(dataset.test, specs, key)
            held = [] if validation is None else _skeleton(validation, shifted, key)
        else:
            test, held = evaluate_checkpoint(
                run,
                dataset.test,
                specs,
                methods if samples is None else methods.logit_only,
                validation=validation,
                train=train,
                mc_samples=samples,
            )
            by_step[step, predictor] = test, held
        # The one-class check reads the clean validation row (the clean test row without a
        # validation split): a status excludes runs from selection, and the test set makes
        # no choice. Both lists start with their clean row.
        status = run_status(
            diverged,
            train_at.get(steps.get(checkpoint)),
            (held or test)[0].get("max_class_fraction"),
            dataset.num_classes,
        )
        for split, rows in (("test", test), ("validation", held)):
            results += [
                {"checkpoint": checkpoint, "split": split, "status": status, **row}
                | ({} if samples is None else {"predictor": predictor, "mc_samples": samples})
                for row in rows
            ]
    run = {"train_accuracy": train_at.get(steps["final"]), "best_step": best_step}
    return trial_rows(trial, results, diverged_step, run)


def evaluate_checkpoint(
    run,
    test: Split,
    specs: Sequence[EvalSet],
    methods: Methods,
    *,
    validation: Split | None,
    train: Split | None,
    mc_samples: int | None = None,
) -> tuple[list[dict], list[dict]]:
    """The test rows and validation rows of one checkpoint (a run or an ensemble). What is
    fitted (temperature, conformal thresholds, scorers) is fitted once, on the validation
    split (and the training split), and applied to both."""
    key = jax.random.key(EVAL_KEY_SEED)
    shifted = [s for s in specs if isinstance(s, Shifted)]
    kwargs = {"key": key, "keep": True, "methods": methods, "mc_samples": mc_samples}
    fitted = fit_evaluation(run, calibration=validation, train=train, **kwargs)
    held = []
    if validation is not None:
        held = evaluate_sets(run, validation, shifted, fitted=fitted, **kwargs)
    test_rows = evaluate_sets(run, test, specs, fitted=fitted, **kwargs)
    return test_rows, held


def _head(trial: Trial, diverged_step: int | None) -> dict[str, Any]:
    train, axes = trial.train, trial.data_axes
    tags = getattr(trial, "tags", None) or {}
    return {
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
        "cell": tags.get("cell"),
        "trial": tags.get("trial"),
        "role": tags.get("role"),
        "diverged": diverged_step is not None,
        "diverged_step": diverged_step,
    } | _augmentation(train)


def _augmentation(train: Mapping[str, Any]) -> dict[str, Any]:
    """A run's augmentation columns, only for a run trained with one (rows stay as slim
    as before for the others, which read as augment None)."""
    if train.get("augment") is None:
        return {}
    return {"augment": train["augment"], "augment_hparams": train.get("augment_hparams") or {}}


def trial_rows(
    trial: Trial, rows: Sequence[dict], diverged_step: int | None, run: Mapping[str, Any]
) -> list[dict]:
    head = _head(trial, diverged_step) | dict(run)
    columns: list[str] = list(_METRICS)
    if any(row["kind"] == "ood" for row in rows):
        from toolkit.metrics import OOD_SCORES

        columns += [f"{m}_{s}" for s in OOD_SCORES for m in OOD_METRICS]
    fixed = ("checkpoint", "split", "status", *ID_COLUMNS, "reliability")
    for row in rows:
        columns += [c for c in row if c not in (*fixed, *columns)]
    out = []
    for row in rows:
        values = {c: (None if diverged_step is not None else row.get(c)) for c in columns}
        record = head | {c: row[c] for c in ("checkpoint", "split", "status", *ID_COLUMNS)}
        record |= values
        if row["kind"] in ("clean", "shift"):
            record["reliability"] = None if diverged_step is not None else row.get("reliability")
        out.append(record)
    return out
