"""A sweep's evaluation spec -> ``evals.jsonl`` rows (one per eval set and severity).

``config.evals`` maps a name to one evaluation (big_vision style)::

    config.evals = {
        "shifts": {"type": "shifts", "names": "all", "severities": (1, 2, 3, 4, 5)},
        "ood": {"type": "ood", "names": ("gaussian_noise", "uniform_noise")},
        "regenerated": {"type": "mnist1d_regenerated", "kinds": "all"},
        "label_shift": {"type": "label_shift", "kind": "dirichlet", "alpha": 1.0, "draws": 3},
    }

``type`` defaults to the entry's name; ``names="all"`` takes every registered shift or OOD
set that applies to the data's rank. Every entry is checked against the dataset before
any training starts. Shifted data comes from one fixed key, so every run of a sweep is
evaluated on the same corrupted examples (paired comparisons).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit import array_cache, data, evalsets, metrics, ood, shifts
from toolkit.data import Dataset, Split
from toolkit.ood.base import check_request
from toolkit.registry import Registry
from toolkit.sweep.config import SweepConfigError, Trial
from toolkit.sweep.data import load_dataset

__all__ = ["eval_rows", "evaluate_trial", "evaluations", "parse_evals"]

evaluations = Registry("evaluation type")
EVAL_KEY_SEED = 0
_ID_COLUMNS = ("eval_set", "kind", "severity", "num_examples")
# tk.evaluate's classification metrics: every row has them (null where undefined).
_METRICS = ("accuracy", "nll", "brier", "ece", "misclassification_auroc")


def _kind_of(dataset: Dataset) -> str:
    return "image" if dataset.is_image else "sequence"


def _severities(values: Any) -> list[int]:
    values = [values] if isinstance(values, int) else list(values)
    return [shifts.check_severity(v) for v in values]


def _names(names: Any) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _evaluate(run, split: Split, **kwargs):
    from toolkit.evaluation import evaluate

    return evaluate(run, split, key=jax.random.key(EVAL_KEY_SEED), **kwargs).to_dict("records")


@dataclasses.dataclass(frozen=True)
class Shifts:
    """``tk.shifts`` corruptions of the test split at each severity."""

    names: Any = "all"
    severities: Sequence[int] = (1, 2, 3, 4, 5)

    def resolve(self, dataset: Dataset) -> list[str]:
        kind = _kind_of(dataset)
        if self.names == "all":
            return [n for n in shifts.names() if shifts.shifts.entry(n).meta["applies_to"] == kind]
        return _names(self.names)

    def check(self, dataset: Dataset, trial: Trial) -> None:
        _severities(self.severities)
        for name in self.resolve(dataset):
            shifts.check_applies(name, dataset.test.x.shape)

    def sets(self, dataset: Dataset, trial: Trial, entry: str) -> list[tuple]:
        return [
            (n, "shift", s, len(dataset.test))
            for n in self.resolve(dataset)
            for s in _severities(self.severities)
        ]

    def rows(self, run, dataset: Dataset, trial: Trial, entry: str) -> list[dict]:
        # Each shifted set gives both tk.evaluate's metrics and the reliability bins.
        pairs = [(n, s) for n in self.resolve(dataset) for s in _severities(self.severities)]
        kwargs_json = json.dumps(dict(trial.dataset_kwargs), sort_keys=True)
        shifted = _shifted_sets(
            trial.dataset, kwargs_json, json.dumps(pairs), array_cache.location()
        )
        rows = []
        for (name, severity), split in zip(pairs, shifted, strict=True):
            row = {"eval_set": name, "kind": "shift", "severity": severity}
            row |= _metrics(run, split)
            row["reliability"] = _reliability(run, split.x, split.y)
            rows.append(row)
        return rows


@functools.lru_cache(maxsize=8)
def _shifted_sets(
    dataset: str, kwargs_json: str, pairs_json: str, cache: str | None
) -> tuple[Split, ...]:
    """The shifted test sets, one per ``[shift, severity]`` pair: loaded from the disk cache
    (:func:`toolkit.evalsets.shifted_sets`) or built once per machine, then kept for this
    process, keyed on the cache folder in use (``cache``) too: reading 100 shifted MNIST
    sets back for every run would read 3 GB. Every run of a sweep sees the same examples
    (one fixed key, the default of ``tk.evaluate``, so a notebook evaluating with it reads
    the same entries)."""
    test = load_dataset(dataset, json.loads(kwargs_json)).test
    pairs = [tuple(pair) for pair in json.loads(pairs_json)]
    return tuple(evalsets.shifted_sets(test, pairs, key=jax.random.key(EVAL_KEY_SEED)))


@dataclasses.dataclass(frozen=True)
class Ood:
    """Far-OOD detection against the test split: ``tk.ood`` sets or other datasets."""

    names: Any = "all"

    def resolve(self, dataset: Dataset) -> list[str]:
        kind = _kind_of(dataset)
        if self.names == "all":
            return [n for n in ood.names() if kind in ood.ood_sets.entry(n).meta["applies_to"]]
        return _names(self.names)

    def check(self, dataset: Dataset, trial: Trial) -> None:
        for name in self.resolve(dataset):
            if name in ood.names():
                check_request(name, dataset.input_shape, len(dataset.test))
            elif name in data.names():
                other = data.load(name).test.x.shape[1:]
                if tuple(other) != dataset.input_shape:
                    raise ValueError(
                        f"OOD dataset {name!r} has examples of shape {other}, but "
                        f"{trial.dataset!r} has {dataset.input_shape}"
                    )
            else:
                raise ValueError(
                    f"unknown OOD set {name!r}. Registered OOD sets: "
                    f"{', '.join(ood.names())}; or a dataset: "
                    f"{', '.join(data.names())}"
                )

    def sets(self, dataset: Dataset, trial: Trial, entry: str) -> list[tuple]:
        def size(name: str) -> int:
            return len(dataset.test) if name in ood.names() else len(data.load(name).test)

        return [(n, "ood", 0, size(n)) for n in self.resolve(dataset)]

    def rows(self, run, dataset: Dataset, trial: Trial, entry: str) -> list[dict]:
        return _evaluate(run, dataset.test, ood=self.resolve(dataset))


# Dataset arguments that do not change the generated data.
_NOT_GENERATOR = ("data_dir", "max_examples")


@functools.lru_cache(maxsize=4)
def _regenerated(specs_json: str, cache: str | None) -> tuple[Split, ...]:
    from toolkit.shifts.sequence.regenerated import mnist1d_shifted_test

    return tuple(evalsets.cached_sets(json.loads(specs_json), mnist1d_shifted_test))


def _regenerated_sets(
    pairs: Sequence[tuple[str, int]], standardize: str, dataset_kwargs: dict[str, Any]
) -> list[Split]:
    """Regenerated MNIST-1D test sets, one per ``(kind, severity)``, in order: through the
    disk cache (:func:`toolkit.evalsets.cached_sets`), then kept for this process (keyed on
    the cache folder in use too)."""
    args = {k: v for k, v in dataset_kwargs.items() if k not in _NOT_GENERATOR}
    specs = [{"kind": k, "severity": s, "standardize": standardize, **args} for k, s in pairs]
    return list(_regenerated(json.dumps(specs, sort_keys=True), array_cache.location()))


@dataclasses.dataclass(frozen=True)
class Mnist1dRegenerated:
    """MNIST-1D test sets regenerated with shifted generator arguments (Greydanus 2020)."""

    kinds: Any = "all"
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    standardize: str = "clean"

    def pairs(self) -> list[tuple[str, int]]:
        from toolkit.shifts.sequence.regenerated import REGENERATED_ARGS

        kinds = list(REGENERATED_ARGS) if self.kinds == "all" else _names(self.kinds)
        for kind in kinds:
            if kind not in REGENERATED_ARGS:
                raise ValueError(
                    f"unknown regenerated MNIST-1D shift {kind!r}; valid: "
                    f"{', '.join(REGENERATED_ARGS)}"
                )
        wanted = _severities(self.severities)
        # A kind defined at fewer severities (shuffle: 5 only) contributes those it has.
        return [(k, s) for k in kinds for s in wanted if s in REGENERATED_ARGS[k]]

    def check(self, dataset: Dataset, trial: Trial) -> None:
        from toolkit.shifts.sequence.regenerated import STANDARDIZE

        if trial.dataset != "mnist1d":
            raise ValueError(
                f"mnist1d_regenerated evaluates MNIST-1D models, but the trial "
                f"trains on {trial.dataset!r}"
            )
        if self.standardize not in STANDARDIZE:
            raise ValueError(f"standardize must be one of {STANDARDIZE}, got {self.standardize!r}")
        if not self.pairs():
            raise ValueError(
                f"no regenerated set has kinds {self.kinds!r} at severities {self.severities!r}"
            )

    def sets(self, dataset: Dataset, trial: Trial, entry: str) -> list[tuple]:
        # A regenerated test set has the clean one's size (same num_samples and split).
        return [(f"{entry}/{k}", "set", s, len(dataset.test)) for k, s in self.pairs()]

    def rows(self, run, dataset: Dataset, trial: Trial, entry: str) -> list[dict]:
        pairs = self.pairs()
        splits = _regenerated_sets(pairs, self.standardize, dict(trial.dataset_kwargs))
        named = {f"{entry}/{k}@{s}": split for (k, s), split in zip(pairs, splits, strict=True)}
        rows = [r for r in _evaluate(run, dataset.test, sets=named) if r["kind"] == "set"]
        for row, (kind, severity) in zip(rows, pairs, strict=True):
            row["eval_set"], row["severity"] = f"{entry}/{kind}", severity
        return rows


@dataclasses.dataclass(frozen=True)
class LabelShift:
    """The test split resampled to new class priors (Lipton et al. 2018), ``draws`` times."""

    kind: str = "dirichlet"
    alpha: float = 1.0
    heavy_class: int = 0
    heavy_fraction: float = 0.5
    draws: int = 1

    def splits(self, dataset: Dataset) -> dict[int, Split]:
        from toolkit.data.label_shift import label_shift

        key = evalsets.set_key(jax.random.key(EVAL_KEY_SEED), "label_shift")
        options = {
            "kind": self.kind,
            "alpha": self.alpha,
            "heavy_class": self.heavy_class,
            "heavy_fraction": self.heavy_fraction,
            "num_classes": dataset.num_classes,
        }
        return {
            i: label_shift(dataset.test, key=jax.random.fold_in(key, i), **options).split
            for i in range(self.draws)
        }

    def check(self, dataset: Dataset, trial: Trial) -> None:
        if isinstance(self.draws, bool) or not isinstance(self.draws, int) or self.draws < 1:
            raise ValueError(f"draws must be a positive int, got {self.draws!r}")
        self.splits(dataset)  # cheap host resampling; raises on bad priors

    def sets(self, dataset: Dataset, trial: Trial, entry: str) -> list[tuple]:
        return [(f"{entry}/{i}", "set", 0, len(s)) for i, s in self.splits(dataset).items()]

    def rows(self, run, dataset: Dataset, trial: Trial, entry: str) -> list[dict]:
        named = {f"{entry}/{i}": split for i, split in self.splits(dataset).items()}
        return [r for r in _evaluate(run, dataset.test, sets=named) if r["kind"] == "set"]


evaluations.add("shifts", Shifts, description=Shifts.__doc__)
evaluations.add("ood", Ood, description=Ood.__doc__)
evaluations.add("mnist1d_regenerated", Mnist1dRegenerated, description=Mnist1dRegenerated.__doc__)
evaluations.add("label_shift", LabelShift, description=LabelShift.__doc__)


def parse_evals(evals: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{entry name: evaluation object}`` from a config's ``evals`` mapping."""
    parsed = {}
    for entry, options in (evals or {}).items():
        options = dict(options.to_dict() if hasattr(options, "to_dict") else options or {})
        kind = options.pop("type", entry)
        try:
            parsed[entry] = evaluations.get(kind, **options)
        except (TypeError, ValueError) as error:
            raise SweepConfigError(f"evals[{entry!r}]: {error}") from None
    return parsed


def check_evals(entries: Mapping[str, Any], dataset: Dataset, trial: Trial) -> None:
    for entry, evaluation in entries.items():
        try:
            evaluation.check(dataset, trial)
        except (TypeError, ValueError) as error:
            raise SweepConfigError(f"evals[{entry!r}] on {trial.dataset!r}: {error}") from None


def _reliability(run, x, labels) -> dict[str, list]:
    from toolkit.evaluation import predict

    diagram = metrics.reliability_diagram(predict(run, x), jnp.asarray(labels))
    return {
        k: np.asarray(diagram[k]).tolist() for k in ("bin_confidence", "bin_accuracy", "bin_count")
    }


def skeleton_rows(dataset: Dataset, trial: Trial, entries: Mapping[str, Any]) -> list[dict]:
    """The rows' sets without metrics: for diverged runs, whose logits may not be finite."""
    sets = [("clean", "clean", 0, len(dataset.test))]
    for entry, evaluation in entries.items():
        sets += evaluation.sets(dataset, trial, entry)
    return [dict(zip(_ID_COLUMNS, s, strict=True)) for s in dict.fromkeys(sets)]


def evaluate_trial(
    run, dataset: Dataset, trial: Trial, entries: Mapping[str, Any], *, diverged: bool = False
) -> list[dict]:
    """Rows (eval_set, kind, severity, num_examples, metrics) of every entry; one clean row.

    A diverged run is not evaluated (its frozen weights may overflow): its rows carry the
    sets alone, and :func:`eval_rows` gives them null metrics.
    """
    if diverged:
        return skeleton_rows(dataset, trial, entries)
    rows: dict[tuple[str, int], dict] = {}
    for entry, evaluation in entries.items():
        for row in evaluation.rows(run, dataset, trial, entry):
            rows.setdefault((row["eval_set"], int(row["severity"])), row)
    clean = rows.pop(("clean", 0), None)
    if clean is None:  # only shifts or named sets were asked for
        clean = {"eval_set": "clean", "kind": "clean", "severity": 0}
        clean |= _metrics(run, dataset.test)
    clean["reliability"] = _reliability(run, dataset.test.x, dataset.test.y)
    return [clean, *rows.values()]


def _metrics(run, split: Split) -> dict[str, float]:
    """tk.evaluate's metrics of one split (accuracy, nll, brier, ece, ..., num_examples)."""
    from toolkit.evaluation import evaluate

    return evaluate(run, split)


def eval_rows(trial: Trial, rows: Sequence[dict], diverged_step: int | None) -> list[dict]:
    """The ``evals.jsonl`` rows: the trial's fields, then each row's set and metrics.

    Every row carries the union of metric columns (missing or NaN -> null); a diverged
    run's rows keep their sets but have null metrics.
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
        columns += [c for c in row if c not in (*_ID_COLUMNS, "reliability", *columns)]
    out = []
    for row in rows:
        values = {c: (None if diverged_step is not None else row.get(c)) for c in columns}
        record = head | {c: row[c] for c in _ID_COLUMNS} | values
        if row["kind"] in ("clean", "shift"):
            record["reliability"] = None if diverged_step is not None else row.get("reliability")
        out.append(record)
    return out
