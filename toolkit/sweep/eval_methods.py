"""A config's ``evals`` entries that add methods rather than sets.

    config.evals = {
        "ood": {"type": "ood", "names": ("gaussian_noise",), "scorers": "all",
                "validation": ("uniform_noise",)},
        "conformal": {"type": "conformal", "methods": ("lac", "aps", "raps"), "alpha": 0.1},
        "selective": {"type": "selective", "scores": ("msp", "energy")},
        "mc_dropout": {"type": "mc_dropout", "samples": 10},
        "ensemble": {"type": "ensemble"},
    }

``conformal`` and ``selective`` add columns to every labelled row; ``mc_dropout`` adds a
second set of rows per run (``predictor = "mc_dropout"``, Gal & Ghahramani 2016);
``ensemble`` adds, once every seed of a configuration has finished, rows of the deep
ensemble of those seeds (``predictor = "ensemble"``, Lakshminarayanan et al. 2017). The
OOD entry's ``scorers`` and ``validation`` are read by :func:`trial_methods`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from toolkit.data import Dataset
from toolkit.evaluation.methods import CONFORMAL_METHODS, Methods
from toolkit.evaluation.sets import EvalSet
from toolkit.sweep.config import Trial

__all__ = ["Conformal", "Ensemble", "McDropout", "Selective", "mc_samples", "trial_methods"]


def _names(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


class _Method:
    """An entry that names no set."""

    def specs(self, dataset: Dataset, trial: Trial, entry: str) -> list[EvalSet]:
        return []


@dataclasses.dataclass(frozen=True)
class Conformal(_Method):
    """Split conformal prediction sets (LAC, APS, RAPS) calibrated on the validation split.

    Every labelled row gets ``coverage_<method>`` and ``set_size_<method>``."""

    methods: Any = CONFORMAL_METHODS
    alpha: float = 0.1

    def check(self, dataset: Dataset, trial: Trial) -> None:
        Methods(conformal=_names(self.methods), alpha=self.alpha).check()
        if not trial.data_axes.get("validation_fraction"):
            raise ValueError(
                "conformal sets are calibrated on the validation split; this trial has "
                "validation_fraction 0"
            )


@dataclasses.dataclass(frozen=True)
class Selective(_Method):
    """Selective classification: AURC per confidence score (Geifman et al. 2019).

    Every labelled row gets ``aurc_<score>`` and ``e_aurc_<score>`` for logit scores of
    ``tk.ood.scorers``."""

    scores: Any = ("msp", "max_logit", "energy", "entropy")

    def check(self, dataset: Dataset, trial: Trial) -> None:
        Methods(scorers=(), selective=_names(self.scores)).check()


@dataclasses.dataclass(frozen=True)
class McDropout(_Method):
    """MC dropout: every set evaluated again averaging ``samples`` dropout passes."""

    samples: int = 10

    def check(self, dataset: Dataset, trial: Trial) -> None:
        from toolkit.evaluation.fitting import check_mc_samples

        check_mc_samples(self.samples)
        dropout = trial.train.get("model_hparams", {}).get("dropout")
        if not dropout:
            raise ValueError(
                f"MC dropout needs a model trained with dropout > 0; model "
                f"{trial.train['model']!r} has dropout {dropout!r} (set model_hparams dropout)"
            )


@dataclasses.dataclass(frozen=True)
class Ensemble(_Method):
    """Deep ensembles of each configuration's seeds (at least 2), evaluated on every set."""

    def check(self, dataset: Dataset, trial: Trial) -> None:
        return None


def mc_samples(entries: Mapping[str, Any]) -> int | None:
    """The MC-dropout sample count of a config's entries (None without the entry)."""
    found = [e.samples for e in entries.values() if isinstance(e, McDropout)]
    return found[0] if found else None


def trial_methods(entries: Mapping[str, Any], sets: Sequence[EvalSet] = ()) -> Methods:
    """The :class:`~toolkit.evaluation.methods.Methods` of a config's entries: the scorers
    and validation OOD sets of its ``ood`` entries, its conformal and selective entries."""
    from toolkit.evaluation.sets import FarOod

    scorers: dict[str, None] = {}
    validation: dict[str, EvalSet] = {}
    conformal, alpha, selective = (), 0.1, ()
    for entry in entries.values():
        if hasattr(entry, "scorer_names"):
            scorers.update(dict.fromkeys(entry.scorer_names()))
            validation.update({n: FarOod(n) for n in _names(entry.validation)})
        elif isinstance(entry, Conformal):
            conformal, alpha = _names(entry.methods), entry.alpha
        elif isinstance(entry, Selective):
            selective = _names(entry.scores)
    kwargs: dict[str, Any] = {}
    if scorers:
        kwargs["scorers"] = tuple(scorers)
    return Methods(
        ood_validation=tuple(validation.values()),
        conformal=conformal,
        alpha=alpha,
        selective=selective,
        **kwargs,
    )


def ensemble_requested(entries: Mapping[str, Any]) -> bool:
    return any(isinstance(e, Ensemble) for e in entries.values())
