"""A sweep config's ``evals`` -> named evaluation sets (:mod:`toolkit.evaluation.sets`).

``config.evals`` maps a name to one evaluation (big_vision style)::

    config.evals = {
        "shifts": {"type": "shifts", "names": "all", "severities": (1, 2, 3, 4, 5)},
        "ood": {"type": "ood", "names": ("gaussian_noise", "uniform_noise")},
        "regenerated": {"type": "mnist1d_regenerated", "kinds": "all"},
        "label_shift": {"type": "label_shift", "kind": "dirichlet", "alpha": 1.0, "draws": 3},
        "mnist_c": {"type": "mnist_c"},  # MNIST-C's 15 corruptions at its own severities
    }

``type`` defaults to the entry's name; ``names="all"`` takes every registered shift or OOD
set that applies to the data's rank. Every entry is checked against the dataset before
any training starts. Shifted data comes from one fixed key, so every run of a sweep is
evaluated on the same corrupted examples (paired comparisons).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from toolkit import data, ood, shifts
from toolkit.data import Dataset, Split
from toolkit.evaluation import cache as setcache
from toolkit.evaluation.methods import Methods
from toolkit.evaluation.sets import EvalSet, FarOod, LabelShifted, Regenerated, Shifted
from toolkit.ood.base import check_request
from toolkit.registry import Registry
from toolkit.sweep.config import SweepConfigError, Trial
from toolkit.sweep.eval_methods import Conformal, Ensemble, McDropout, Selective

__all__ = ["MnistC", "MnistCShifted", "check_evals", "evaluations", "parse_evals"]

evaluations = Registry("evaluation type")


def _kind_of(dataset: Dataset) -> str:
    return "image" if dataset.is_image else "sequence"


def _severities(values: Any) -> list[int]:
    values = [values] if isinstance(values, int) else list(values)
    return [shifts.check_severity(v) for v in values]


def _names(names: Any) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


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

    def specs(self, dataset: Dataset, trial: Trial, entry: str) -> list[EvalSet]:
        return [Shifted(n, s) for n in self.resolve(dataset) for s in _severities(self.severities)]


@dataclasses.dataclass(frozen=True)
class Ood:
    """Far-OOD detection against the test split: ``tk.ood`` sets or other datasets.

    ``scorers``: ``tk.ood.scorers`` names or "all" (default: the four logit scores); their
    hyperparameters are chosen on the ``validation`` OOD sets (disjoint from ``names``)."""

    names: Any = "all"
    scorers: Any = None
    validation: Any = ()

    def scorer_names(self) -> tuple[str, ...]:
        from toolkit.metrics import OOD_SCORES
        from toolkit.ood import scorers

        if self.scorers is None:
            return OOD_SCORES
        return tuple(scorers.names()) if self.scorers == "all" else tuple(_names(self.scorers))

    def resolve(self, dataset: Dataset) -> list[str]:
        """The test OOD sets: "all" is every registered set of the data's kind but the
        ``validation`` ones."""
        kind = _kind_of(dataset)
        if self.names == "all":
            held = set(_names(self.validation))
            return [
                n
                for n in ood.names()
                if kind in ood.ood_sets.entry(n).meta["applies_to"] and n not in held
            ]
        return _names(self.names)

    def check(self, dataset: Dataset, trial: Trial) -> None:
        validation = _names(self.validation)
        Methods(
            scorers=self.scorer_names(), ood_validation=tuple(FarOod(n) for n in validation)
        ).check(self.resolve(dataset))
        if validation and not trial.data_axes.get("validation_fraction"):
            raise ValueError(
                "scorer hyperparameters are chosen on the validation split against the "
                "validation OOD sets; this trial has validation_fraction 0"
            )
        for name in (*self.resolve(dataset), *validation):
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

    def specs(self, dataset: Dataset, trial: Trial, entry: str) -> list[EvalSet]:
        return [FarOod(n) for n in self.resolve(dataset)]


@dataclasses.dataclass(frozen=True)
class Mnist1dRegenerated:
    """MNIST-1D test sets regenerated with shifted generator arguments (Greydanus 2020)."""

    kinds: Any = "all"
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    standardize: str = "clean"

    def pairs(self) -> list[tuple[str, int]]:
        from toolkit.evaluation.regenerated import REGENERATED_ARGS

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
        if trial.dataset != "mnist1d":
            raise ValueError(
                f"mnist1d_regenerated evaluates MNIST-1D models, but the trial "
                f"trains on {trial.dataset!r}"
            )
        for spec in self.specs(dataset, trial, "regenerated"):
            spec.check(dataset.test)
        if not self.pairs():
            raise ValueError(
                f"no regenerated set has kinds {self.kinds!r} at severities {self.severities!r}"
            )

    def specs(self, dataset: Dataset, trial: Trial, entry: str) -> list[EvalSet]:
        args = dict(trial.dataset_kwargs)
        return [Regenerated(k, s, entry, self.standardize, args) for k, s in self.pairs()]


@dataclasses.dataclass(frozen=True)
class LabelShift:
    """The test split resampled to new class priors (Lipton et al. 2018), ``draws`` times."""

    kind: str = "dirichlet"
    alpha: float = 1.0
    heavy_class: int = 0
    heavy_fraction: float = 0.5
    draws: int = 1

    def specs(self, dataset: Dataset, trial: Trial, entry: str) -> list[EvalSet]:
        options = {
            "kind": self.kind,
            "alpha": self.alpha,
            "heavy_class": self.heavy_class,
            "heavy_fraction": self.heavy_fraction,
            "num_classes": dataset.num_classes,
        }
        return [LabelShifted(i, entry, options) for i in range(self.draws)]

    def check(self, dataset: Dataset, trial: Trial) -> None:
        if isinstance(self.draws, bool) or not isinstance(self.draws, int) or self.draws < 1:
            raise ValueError(f"draws must be a positive int, got {self.draws!r}")
        for spec in self.specs(dataset, trial, "label_shift"):
            spec.check(dataset.test)  # cheap host resampling; raises on bad priors


evaluations.add("shifts", Shifts, description=Shifts.__doc__)
evaluations.add("ood", Ood, description=Ood.__doc__.split("\n")[0])
evaluations.add("mnist1d_regenerated", Mnist1dRegenerated, description=Mnist1dRegenerated.__doc__)
evaluations.add("label_shift", LabelShift, description=LabelShift.__doc__)
evaluations.add("conformal", Conformal, description=Conformal.__doc__.split("\n")[0])
evaluations.add("selective", Selective, description=Selective.__doc__.split("\n")[0])
evaluations.add("mc_dropout", McDropout, description=McDropout.__doc__.split("\n")[0])
evaluations.add("ensemble", Ensemble, description=Ensemble.__doc__.split("\n")[0])


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


@dataclasses.dataclass(frozen=True, eq=False)
class MnistCShifted(Shifted):
    """One MNIST-C corruption at its fixed severity (``tk.shifts.MNIST_C``), named
    ``<entry>/<shift>``; kind "set", so it stays out of the means over the 1-5 levels."""

    entry: str = "mnist_c"
    hparams: tuple[tuple[str, Any], ...] = ()
    kind = "set"

    @property
    def name(self) -> str:
        return f"{self.entry}/{self.shift}"

    @classmethod
    def build_all(cls, specs, clean, *, key, cache, keep):
        # Same key as the 1-5 levels: a setting they share gives the very same examples.
        # Settings with hyperparameters (fog, spatter) are built in memory: the disk
        # cache's key has no hyperparameters.
        plain = [s for s in specs if not s.hparams]
        sets = Shifted.build_all(plain, clean, key=key, cache=cache, keep=keep)
        built = dict(zip(map(id, plain), sets, strict=True))
        for s in specs:
            if s.hparams:
                x = shifts.apply(
                    s.shift,
                    jnp.asarray(clean.x),
                    key=setcache.set_key(key, s.shift),
                    severity=s.severity,
                    **dict(s.hparams),
                )
                built[id(s)] = Split(np.asarray(x), clean.y)
        return [built[id(s)] for s in specs]


@dataclasses.dataclass(frozen=True)
class MnistC:
    """MNIST-C (Mu & Gilmer 2019): its 15 corruptions of the test split at MNIST-C's own
    fixed severity each (``tk.shifts.MNIST_C``), rows ``<entry>/<corruption>``, beside
    the 1-5 levels of the ``shifts`` evaluation."""

    names: Any = "all"

    def resolve(self) -> list[str]:
        names = list(shifts.MNIST_C) if self.names == "all" else _names(self.names)
        for name in names:
            if name not in shifts.MNIST_C:
                raise ValueError(
                    f"unknown MNIST-C corruption {name!r}; valid: {', '.join(shifts.MNIST_C)}"
                )
        return names

    def check(self, dataset: Dataset, trial: Trial) -> None:
        for name in self.resolve():
            shifts.check_applies(name, dataset.test.x.shape)

    def specs(self, dataset: Dataset, trial: Trial, entry: str) -> list[EvalSet]:
        settings = [(n, shifts.MNIST_C[n]) for n in self.resolve()]
        return [MnistCShifted(n, s.severity, entry, s.hparams) for n, s in settings]


evaluations.add(
    "mnist_c",
    MnistC,
    description="MNIST-C's 15 corruptions, each at its own fixed severity (tk.shifts.MNIST_C).",
)
