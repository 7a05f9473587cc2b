"""What an evaluation computes beyond accuracy and calibration, and what it fits first.

:class:`Methods` names the extras: post-hoc OOD scorers (``tk.ood.scorers``), split
conformal prediction (LAC, APS, RAPS) and selective classification (AURC per confidence
score). :class:`Fitted` holds what is fitted on held-out data once per run and reused on
every evaluated set: the temperature (Guo et al. 2017), each conformal method's threshold,
and each scorer with its chosen hyperparameters. Statistics of feature scorers come from
the ID *training* split only; a scorer's hyperparameters are chosen on the ID *validation*
split against *validation* OOD sets whose names differ from every test OOD set (OpenOOD
v1.5, Zhang et al. 2023, fixing v1.0's selection on the test OOD sets); without validation
OOD sets each scorer keeps its defaults. The test set makes no choice.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit import metrics
from toolkit.data import Split

__all__ = ["CONFORMAL_METHODS", "OOD_METRICS", "Fitted", "Methods", "Predictions"]

CONFORMAL_METHODS = ("lac", "aps", "raps")
# The detection metrics of every (OOD set, scorer): ``<metric>_<scorer>`` columns.
# fpr_at_95_tpr: ID positive, the fraction of OOD accepted at 95 % ID recall (Liang et al.
# 2018); fpr_at_95_tpr_ood: OOD positive, the fraction of ID rejected at 95 % OOD recall
# (OpenOOD v1.5).
OOD_METRICS = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "fpr_at_95_tpr_ood")


def _scorers():
    from toolkit.ood import scorers

    return scorers


def needs(name: str) -> tuple[str, ...]:
    """What the scorer ``name`` needs beyond logits (``features``, ``head``, ``train``,
    ``inputs``)."""
    return tuple(_scorers().entry(name).meta.get("needs", ()))


@dataclasses.dataclass(frozen=True)
class Methods:
    """The extras of an evaluation.

    Attributes:
      scorers: ``tk.ood.scorers`` names reported on every OOD row.
      ood_validation: far-OOD eval-set specs (:class:`~toolkit.evaluation.sets.FarOod`)
        for choosing scorer hyperparameters; disjoint by name from the test OOD sets.
      conformal: conformal methods (``lac``, ``aps``, ``raps``) reported on every labelled
        row as ``coverage_<method>`` and ``set_size_<method>`` at level ``1 - alpha``.
      selective: confidence scores (logit scorers) reported on every labelled row as
        ``aurc_<score>`` and ``e_aurc_<score>`` (Geifman et al. 2019).
    """

    scorers: tuple[str, ...] = metrics.OOD_SCORES
    ood_validation: tuple = ()
    conformal: tuple[str, ...] = ()
    alpha: float = 0.1
    selective: tuple[str, ...] = ()

    def check(self, test_ood_names: Sequence[str] = ()) -> None:
        """Raises ValueError naming a bad value and the valid choices, before any compute."""
        registry = _scorers()
        for name in (*self.scorers, *self.selective):
            registry.entry(name)
        for name in self.selective:
            if needs(name):
                raise ValueError(
                    f"selective classification ranks by a confidence computed from logits; "
                    f"{name!r} needs {', '.join(needs(name))}. Logit scorers: "
                    f"{', '.join(n for n in registry.names() if not needs(n))}"
                )
        for method in self.conformal:
            if method not in CONFORMAL_METHODS:
                raise ValueError(
                    f"unknown conformal method {method!r}; valid: {', '.join(CONFORMAL_METHODS)}"
                )
        if isinstance(self.alpha, bool) or not (
            isinstance(self.alpha, int | float) and 0 < self.alpha < 1
        ):
            raise ValueError(f"conformal alpha must be in (0, 1), got {self.alpha!r}")
        shared = sorted({s.name for s in self.ood_validation} & set(test_ood_names))
        if shared:
            raise ValueError(
                f"OOD set(s) {', '.join(map(repr, shared))} are both test and validation OOD "
                "sets: scorer hyperparameters must be chosen on OOD sets disjoint from the "
                "test ones (OpenOOD v1.5)"
            )
        for spec in self.ood_validation:
            if spec.kind != "ood":
                raise ValueError(f"validation OOD sets must be far-OOD sets, got {spec!r}")

    @property
    def features(self) -> bool:
        """Whether any scorer reads features (so predictions must return them)."""
        return any({"features", "head", "train"} & set(needs(n)) for n in self.scorers)

    @property
    def inputs(self) -> bool:
        """Whether any scorer reads the inputs (input-gradient scorers such as ODIN)."""
        return any("inputs" in needs(n) for n in self.scorers)

    @property
    def reference(self) -> bool:
        """Whether any scorer fits statistics on the training split."""
        return any("train" in needs(n) for n in self.scorers)

    @property
    def head(self) -> bool:
        """Whether any scorer reads the classifier head (W, b)."""
        return any("head" in needs(n) for n in self.scorers)

    @property
    def tuned(self) -> bool:
        """Whether any scorer has hyperparameters to choose on validation OOD sets."""
        return any(_scorers().entry(n).meta.get("grid") for n in self.scorers)

    @property
    def logit_only(self) -> Methods:
        """These methods without the scorers that need features or inputs (for ensembles
        and MC dropout, which have averaged probabilities but no single feature map)."""
        kept = tuple(n for n in self.scorers if not needs(n))
        return dataclasses.replace(self, scorers=kept, ood_validation=())


@dataclasses.dataclass(frozen=True)
class Predictions:
    """One set's predictions: logits and, when a scorer needs them, features and inputs."""

    logits: jax.Array
    features: jax.Array | None = None
    inputs: Any = None


@dataclasses.dataclass(frozen=True)
class Fitted:
    """What one run's evaluation fits on held-out data and applies to every set."""

    temperature: float | None = None
    thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    scorers: Mapping[str, tuple[dict, Callable]] = dataclasses.field(default_factory=dict)
    # The calibration split's inputs and predictions: an evaluation of that same split
    # reuses them instead of predicting it again.
    calibrated: tuple[Any, Predictions] | None = None

    def predictions_of(self, x: Any) -> Predictions | None:
        if self.calibrated is not None and self.calibrated[0] is x:
            return self.calibrated[1]
        return None

    @property
    def scorer_hparams(self) -> dict[str, dict]:
        """``{scorer: chosen hyperparameters}`` for the scorers that have any."""
        return {name: hp for name, (hp, _) in self.scorers.items() if hp}


def probabilities(logits: jax.Array, temperature: float | None) -> jax.Array:
    scaled = logits if temperature is None else metrics.apply_temperature(logits, temperature)
    return jax.nn.softmax(scaled, axis=-1)


def conformal_key(method: str, role: str) -> jax.Array:
    """Fixed keys per method (randomized sets are the same for every run: paired), one for
    the calibration split and one for the evaluated sets: the same key would give the i-th
    calibration and the i-th test example the same uniform draw, breaking the
    exchangeability coverage rests on."""
    calibrate, evaluate = jax.random.split(
        jax.random.fold_in(jax.random.key(0), CONFORMAL_METHODS.index(method))
    )
    return calibrate if role == "calibration" else evaluate


def fit_conformal(
    methods: Methods, logits: jax.Array, labels, temperature: float | None
) -> dict[str, float]:
    """Each method's threshold from the calibration split's (temperature-scaled) softmax."""
    probs, labels = probabilities(logits, temperature), jnp.asarray(labels)
    return {
        m: float(
            metrics.conformal_threshold(
                probs, labels, method=m, alpha=methods.alpha, key=conformal_key(m, "calibration")
            )
        )
        for m in methods.conformal
    }


def labelled_columns(
    methods: Methods, fitted: Fitted, logits: jax.Array, labels
) -> dict[str, float]:
    """Conformal coverage/set size and selective AURC columns of one labelled set."""
    labels = jnp.asarray(labels)
    row: dict[str, float] = {}
    if fitted.thresholds:
        probs = probabilities(logits, fitted.temperature)
        for method, qhat in fitted.thresholds.items():
            key = conformal_key(method, "evaluation")
            sets = metrics.prediction_sets(probs, qhat, method=method, key=key)
            covered = jnp.take_along_axis(sets, labels[:, None], axis=1)[:, 0]
            row[f"coverage_{method}"] = float(jnp.mean(covered))
            row[f"set_size_{method}"] = float(jnp.mean(jnp.sum(sets, axis=1)))
    correct = jnp.argmax(logits, axis=-1) == labels
    from toolkit.ood import Batch, fit_scorer

    for name in methods.selective:
        confidence = fit_scorer(name, None)(Batch(logits=logits))
        row[f"aurc_{name}"] = float(metrics.aurc(confidence, correct))
        row[f"e_aurc_{name}"] = float(metrics.e_aurc(confidence, correct))
    return row


def _batch(predictions: Predictions, logits_fn: Callable | None):
    from toolkit.ood import Batch

    return Batch(
        logits=predictions.logits,
        features=predictions.features,
        inputs=predictions.inputs,
        logits_fn=logits_fn,
    )


def fit_scorers(
    methods: Methods,
    *,
    reference: Predictions | None,
    train_labels: Any,
    head: tuple | None,
    validation: Predictions | None,
    validation_ood: Sequence[Predictions],
    logits_fn: Callable | None,
) -> dict[str, tuple[dict, Callable]]:
    """``{scorer: (hyperparameters, fitted scorer)}``: statistics on the training
    ``reference``; hyperparameters chosen on ``validation`` vs ``validation_ood`` when the
    scorer has a grid and both are given, else its defaults."""
    from toolkit.ood import Reference, fit_scorer, select_scorer

    registry = _scorers()
    ref = None
    if reference is not None or head is not None:
        ref = Reference(
            features=None if reference is None else reference.features,
            logits=None if reference is None else reference.logits,
            labels=None if train_labels is None else jnp.asarray(train_labels),
            head=head,
        )
    fitted = {}
    for name in methods.scorers:
        grid = registry.entry(name).meta.get("grid") or {}
        if grid and validation is not None and validation_ood:
            hparams, scorer, _ = select_scorer(
                name,
                ref,
                _batch(validation, logits_fn),
                [_batch(p, logits_fn) for p in validation_ood],
            )
        else:
            hparams, scorer = {}, fit_scorer(name, ref)
        fitted[name] = (dict(hparams), scorer)
    return fitted


def ood_columns(
    fitted: Fitted,
    clean: Predictions,
    out: Predictions,
    logits_fn: Callable | None,
    clean_scores: dict[str, jax.Array],
) -> dict[str, Any]:
    """``<metric>_<scorer>`` of detecting ``out`` against the clean set, for every fitted
    scorer (``clean_scores`` caches the clean set's scores across OOD sets), and the chosen
    hyperparameters as ``ood_hparams`` (JSON) when any scorer has some."""
    row: dict[str, Any] = {}
    for name, (_, scorer) in fitted.scorers.items():
        if name not in clean_scores:
            clean_scores[name] = scorer(_batch(clean, logits_fn))
        s_in, s_out = clean_scores[name], scorer(_batch(out, logits_fn))
        for metric in OOD_METRICS:
            value = float(getattr(metrics, metric)(s_in, s_out))
            row[f"{metric}_{name}"] = value if math.isfinite(value) else float("nan")
    if fitted.scorer_hparams:
        row["ood_hparams"] = json.dumps(_plain(fitted.scorer_hparams), sort_keys=True)
    return row


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_reference(methods: Methods, train: Split | None) -> None:
    """Scorers fitted on training statistics need the training split."""
    wanting = [n for n in methods.scorers if "train" in needs(n)]
    if wanting and train is None:
        raise ValueError(
            f"OOD scorer(s) {', '.join(wanting)} fit statistics on the ID training split: "
            "pass train= (the run's training data)"
        )
