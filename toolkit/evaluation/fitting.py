"""What an evaluation fits before it scores any set, and how it predicts a set.

:func:`fit_evaluation` fits, once per run (or ensemble), the
:class:`~toolkit.evaluation.methods.Fitted` that every evaluated set then uses: the
temperature and the conformal thresholds on the held-out calibration split, the feature
scorers' statistics on the training split, and the scorers' hyperparameters on validation
OOD sets. :func:`predictions` predicts one set with what the scorers need.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from toolkit import metrics
from toolkit.data import Split
from toolkit.evaluation import inference
from toolkit.evaluation.methods import Fitted, Methods, Predictions, fit_conformal, fit_scorers
from toolkit.evaluation.sets import EvalSet

__all__ = ["MC_KEY", "check_mc_samples", "fit_evaluation", "predictions"]

# The MC-dropout passes draw from the evaluation key folded with this (fixed: paired runs).
MC_KEY = 7


def set_groups(indexed: list[tuple[int, EvalSet]], keep: bool) -> list[list[tuple[int, EvalSet]]]:
    """Specs that build together: one class (and, unless kept in memory, one ``group``)."""
    groups: dict[tuple, list] = {}
    for i, spec in indexed:
        groups.setdefault((type(spec), None if keep else spec.group), []).append((i, spec))
    return list(groups.values())


def built_sets(group, clean: Split, *, key, cache: bool, keep: bool) -> list[Split]:
    specs = [spec for _, spec in group]
    return type(specs[0]).build_all(specs, clean, key=key, cache=cache, keep=keep)


def predictions(
    run, x, methods: Methods, *, batch_size: int, mc_samples, key, scored: bool = True
) -> Predictions:
    """One set's predictions: logits, plus features and inputs when a scorer needs them and
    the set is ``scored`` (the ID and OOD sides of detection; labelled sets are not)."""
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    if mc_samples is not None:
        kwargs |= {"mc_samples": mc_samples, "key": jax.random.fold_in(key, MC_KEY)}
    if not scored:
        return Predictions(inference.predict(run, x, **kwargs))
    if methods.features:
        logits, features = inference.predict(run, x, features=True, **kwargs)
        return Predictions(logits, features, x)
    logits = inference.predict(run, x, **kwargs)
    return Predictions(logits, None, x if methods.inputs else None)


@dataclasses.dataclass(frozen=True)
class _ModelLogits:
    """``model.apply(variables, x)`` in inference mode; equal for equal modules, so jitted
    code that takes it (with the variables as traced arguments) compiles once per model."""

    model: Any

    def __call__(self, variables, x):
        return self.model.apply(variables, x, train=False)


def logits_fn(run, mc_samples):
    """The differentiable logits of ``run`` (for input-gradient scorers such as ODIN), as a
    ``jax.tree_util.Partial`` whose variables are traced arguments."""
    if mc_samples is not None or not hasattr(run, "variables"):  # MC dropout, ensembles
        return None
    return jax.tree_util.Partial(_ModelLogits(run.model), run.variables)


def fit_evaluation(
    run,
    methods: Methods | None = None,
    *,
    calibration: Split | None = None,
    train: Split | None = None,
    key: jax.Array | None = None,
    batch_size: int = 1000,
    cache: bool = True,
    keep: bool = False,
    mc_samples: int | None = None,
) -> Fitted:
    """What an evaluation of ``run`` fits before scoring any set (:class:`Fitted`): on the
    ``calibration`` split (held-out ID data), the temperature (Guo et al. 2017) and each
    conformal method's threshold; on the ``train`` split, the statistics of the feature
    scorers; on the calibration split against ``methods.ood_validation`` (OOD sets disjoint
    from the test ones), each scorer's hyperparameters."""
    methods = methods or Methods()
    key = jax.random.key(0) if key is None else key
    temperature, thresholds, calibrated = None, {}, None
    if calibration is not None:
        calibrated = predictions(
            run, calibration.x, methods, batch_size=batch_size, mc_samples=mc_samples, key=key
        )
        temperature = metrics.fit_temperature(calibrated.logits, calibration.y)
        thresholds = fit_conformal(methods, calibrated.logits, calibration.y, temperature)
    reference = None
    if train is not None and methods.reference:
        reference = predictions(
            run, train.x, methods, batch_size=batch_size, mc_samples=mc_samples, key=key
        )
    # Host copies: the head is tiny, and uncommitted arrays follow the predictions, which
    # live on every device when predict is data-parallel.
    head = tuple(np.asarray(a) for a in inference.head_params(run)) if methods.head else None
    validation_ood = []
    if calibration is not None and methods.ood_validation and methods.tuned:
        specs = list(enumerate(methods.ood_validation))
        for group in set_groups(specs, keep):
            built = built_sets(group, calibration, key=key, cache=cache, keep=keep)
            validation_ood += [
                predictions(
                    run, s.x, methods, batch_size=batch_size, mc_samples=mc_samples, key=key
                )
                for s in built
            ]
    scorers = fit_scorers(
        methods,
        reference=reference,
        train_labels=None if train is None else train.y,
        head=head,
        validation=calibrated,
        validation_ood=validation_ood,
        logits_fn=logits_fn(run, mc_samples),
    )
    calibrated = None if calibrated is None else (calibration.x, calibrated)
    return Fitted(temperature, thresholds, scorers, calibrated)


def check_mc_samples(mc_samples: Any) -> None:
    if mc_samples is not None and (
        isinstance(mc_samples, bool)
        or not isinstance(mc_samples, int | np.integer)
        or mc_samples < 1
    ):
        raise ValueError(f"mc_samples must be a positive int or None, got {mc_samples!r}")
