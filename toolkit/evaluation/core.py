"""Evaluating a run on named sets: each set predicted once, every metric from those logits.

:func:`evaluate_sets` is the one path: the sweep (``evals.jsonl``), the re-evaluation of
finished runs and ``tk.evaluate`` all call it. The clean split is predicted once; its logits
give the clean row and are the in-distribution side of every OOD row. Each other set is
predicted once and gives its whole row (classification metrics and reliability bins, or
OOD-detection metrics) from those logits. Given a ``calibration`` split (held-out data, never
the test set), it is predicted once too, a temperature is fitted on its logits
(:func:`toolkit.metrics.fit_temperature`, Guo et al. 2017), and every labelled row also gets
its temperature-scaled metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from toolkit import metrics
from toolkit.data import Split
from toolkit.data.checks import check_finite
from toolkit.evaluation.checks import check_run
from toolkit.evaluation.fitting import (
    built_sets,
    check_mc_samples,
    fit_evaluation,
    logits_fn,
    predictions,
    set_groups,
)
from toolkit.evaluation.methods import (
    Fitted,
    Methods,
    check_reference,
    labelled_columns,
    ood_columns,
)
from toolkit.evaluation.scoring import classification_row
from toolkit.evaluation.sets import EvalSet, FarOod, Given, Shifted

__all__ = ["ID_COLUMNS", "evaluate", "evaluate_sets"]


ID_COLUMNS = ("eval_set", "kind", "severity", "num_examples")
# The run's identity in tk.evaluate's table: every TrainConfig field, the *_hparams as
# JSON strings (hashable, so a table of many runs can be grouped on them).
HPARAMS_COLUMNS = ("model_hparams", "loss_hparams", "optimizer_hparams")


def evaluate_sets(
    run,
    clean: Split,
    specs: Sequence[EvalSet],
    *,
    key: jax.Array | None = None,
    methods: Methods | None = None,
    batch_size: int = 1000,
    cache: bool = True,
    keep: bool = False,
    calibration: Split | None = None,
    train: Split | None = None,
    fitted: Fitted | None = None,
    mc_samples: int | None = None,
) -> list[dict[str, Any]]:
    """One row per set: the clean row first, then one per spec in order.

    Rows hold ``eval_set, kind, severity, num_examples``, then the classification metrics,
    ``max_class_fraction`` and ``reliability`` (clean and labelled sets) or
    ``<metric>_<scorer>`` (:data:`~toolkit.evaluation.methods.OOD_METRICS`) for each of
    ``methods.scorers`` (OOD sets), with ``ood_hparams`` when a scorer has hyperparameters.
    With ``calibration`` (a labelled held-out split, e.g. the validation split; it may be
    ``clean`` itself, whose predictions then serve both), what :func:`fit_evaluation` fits
    is fitted here: every row gets ``temperature``, labelled rows ``nll_ts``, ``ece_ts``,
    ``brier_ts`` and, for ``methods.conformal``, ``coverage_<method>`` and
    ``set_size_<method>``. ``fitted`` (from :func:`fit_evaluation` or an earlier call) may
    be given instead. ``train`` (the run's training split) feeds the feature scorers'
    statistics. ``mc_samples`` evaluates MC dropout: every prediction averages that many
    stochastic passes (Gal & Ghahramani 2016). Every spec and scorer is checked, and every
    OOD set built (its shape checked), before the model runs. ``cache`` reads and writes
    built sets on disk (:mod:`toolkit.evaluation.cache`); ``keep`` also keeps them in this
    process.
    """
    methods = methods or Methods()
    if len(clean) == 0:
        raise ValueError("cannot evaluate on an empty split")
    if calibration is not None and (not isinstance(calibration, Split) or len(calibration) == 0):
        raise ValueError(
            f"calibration must be a non-empty labelled Split (held-out data for the "
            f"temperature), got {calibration!r}"
        )
    if fitted is not None and calibration is not None:
        raise ValueError("fitted and calibration are exclusive: give one (fitted is fitted)")
    check_mc_samples(mc_samples)
    check_finite(clean.x, "evaluated split")
    if calibration is not None:
        check_finite(calibration.x, "calibration split")
    methods.check([s.name for s in specs if s.kind == "ood"])
    if fitted is None:
        check_reference(methods, train)
    for spec in (*specs, *methods.ood_validation):
        spec.check(clean)
    if key is None and (specs or methods.ood_validation):  # only the sets use a key
        key = jax.random.key(0)
    ood = [(i, s) for i, s in enumerate(specs) if s.kind == "ood"]
    labelled = [(i, s) for i, s in enumerate(specs) if s.kind != "ood"]
    ood_inputs = {}
    for group in set_groups(ood, keep):
        built = built_sets(group, clean, key=key, cache=cache, keep=keep)
        ood_inputs.update({i: split.x for (i, _), split in zip(group, built, strict=True)})
    shapes = {"the evaluated split": clean.x.shape[1:]}
    if calibration is not None:
        shapes["the calibration split"] = calibration.x.shape[1:]
    # After every set is checked and built (an OOD set's shape is known once it is), before
    # the model runs.
    check_run(run, shapes)

    key = jax.random.key(0) if key is None else key
    if fitted is None:
        fitted = fit_evaluation(
            run,
            methods,
            calibration=calibration,
            train=train,
            key=key,
            batch_size=batch_size,
            cache=cache,
            keep=keep,
            mc_samples=mc_samples,
        )
    predict = functools.partial(
        predictions, run, methods=methods, batch_size=batch_size, mc_samples=mc_samples, key=key
    )
    clean_predictions = fitted.predictions_of(clean.x) or predict(clean.x)
    temperature = fitted.temperature
    rows: dict[int, dict] = {}
    for group in set_groups(labelled, keep):  # one group of sets held at a time
        built = built_sets(group, clean, key=key, cache=cache, keep=keep)
        for (i, spec), split in zip(group, built, strict=True):
            logits = predict(split.x, scored=False).logits
            rows[i] = (
                _head(spec, len(split))
                | classification_row(logits, split.y, temperature)
                | labelled_columns(methods, fitted, logits, split.y)
            )
    clean_scores: dict = {}
    gradient_fn = logits_fn(run, mc_samples)
    for i, spec in ood:
        out = predict(ood_inputs[i])
        scores = ood_columns(fitted, clean_predictions, out, gradient_fn, clean_scores)
        rows[i] = _head(spec, int(ood_inputs[i].shape[0])) | scores
        if temperature is not None:
            rows[i]["temperature"] = temperature
    clean_row = dict(zip(ID_COLUMNS, ("clean", "clean", 0, len(clean)), strict=True))
    clean_row |= classification_row(clean_predictions.logits, clean.y, temperature)
    clean_row |= labelled_columns(methods, fitted, clean_predictions.logits, clean.y)
    return [clean_row] + [rows[i] for i in range(len(specs))]


def _head(spec: EvalSet, num: int) -> dict[str, Any]:
    return dict(zip(ID_COLUMNS, (spec.name, spec.kind, spec.severity, num), strict=True))


def _names(argument: str, value: Any) -> list[str]:
    """A name or a sequence of names as a list (a bare string is one name, not letters)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"{argument} must be a name or a list of names, got {value!r}")


def run_columns(config) -> dict[str, Any]:
    """The run's identifying columns: every field of its config, hparams as JSON."""
    columns = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in HPARAMS_COLUMNS:
            value = json.dumps(dict(value), sort_keys=True, default=str)
        columns[field.name] = value
    return columns


def evaluate(
    run,
    split: Split,
    *,
    batch_size: int = 1000,
    shifts: Sequence[str] | None = None,
    severities: Iterable[int] = range(1, 6),
    ood: Sequence[str] | Mapping[str, Split | np.ndarray] | None = None,
    sets: Mapping[str, Split] | Sequence[EvalSet] | None = None,
    ood_scores: Sequence[str] = metrics.OOD_SCORES,
    key: jax.Array | None = None,
    data_kwargs: Mapping[str, Any] | None = None,
    cache: bool = True,
    reliability: bool = False,
    calibration: Split | None = None,
    train: Split | None = None,
    ood_validation: Sequence[str] | Mapping[str, Split | np.ndarray] | None = None,
    conformal: Sequence[str] = (),
    alpha: float = 0.1,
    selective: Sequence[str] = (),
    mc_samples: int | None = None,
):
    """Evaluates ``run`` on ``split`` and, optionally, on shifted, other and OOD sets.

    Args:
      run: a trained :class:`~toolkit.training.Run`, or ``tk.ensemble(runs)``.
      split: the in-distribution evaluation split (e.g. ``ds.test``).
      shifts: names in ``tk.shifts`` (or one name) applied to ``split`` at each of
        ``severities`` (an int or a sequence of ints).
      ood: far-OOD sets: names in ``tk.ood`` or datasets loadable by ``tk.data.load``
        whose examples have the same shape (loaded with ``data_kwargs``, e.g.
        ``{"data_dir": ...}``); or a mapping name -> Split/array of OOD inputs. Each is
        detected against ``split``.
      sets: extra named evaluation splits (name -> Split), or eval-set specs of
        :mod:`toolkit.evaluation.sets` (e.g. ``Regenerated("iid_noise", 3)``).
      ood_scores: OOD scorers (``tk.ood.scorers``: logit scores such as ``msp`` and
        ``energy``, feature scorers such as ``mds``, ``knn`` and ``vim``, and ``odin``)
        reported for each OOD set; feature scorers fit their statistics on ``train``.
      ood_validation: far-OOD sets (names or name -> inputs, as ``ood``; disjoint from
        ``ood``) on which, against ``calibration``, each scorer's hyperparameters are
        chosen (highest mean AUROC over its grid; OpenOOD v1.5). Without them scorers keep
        their defaults.
      train: the run's training split (ID statistics of the feature scorers).
      conformal: split-conformal methods (``lac``, ``aps``, ``raps``) calibrated on
        ``calibration`` at level ``1 - alpha``: labelled rows get ``coverage_<method>`` and
        ``set_size_<method>``.
      selective: logit scorers whose risk-coverage curve is summarised per labelled row as
        ``aurc_<score>`` and ``e_aurc_<score>`` (Geifman et al. 2019).
      mc_samples: MC dropout (Gal & Ghahramani 2016): every prediction averages this many
        dropout passes (the model must have dropout > 0); feature and input scorers are
        then not available.
      key: typed PRNG key for random shifts and generated OOD sets (default key 0).
      cache: keep the built sets on disk (:mod:`toolkit.evaluation.cache`, under
        ``$TOOLKIT_CACHE_DIR``), so that evaluating other runs on the same data, here or in
        another process, loads them instead of building them again; False builds them in
        memory on every call. The sets are the same either way.
      reliability: add a ``reliability`` column (the reliability-diagram bins).
      calibration: a labelled held-out split (e.g. ``ds.validation`` from
        ``tk.data.with_validation``; never the test set): a temperature is fitted on the
        run's logits on it (Guo et al. 2017) and every row gets ``temperature``, labelled
        rows also ``nll_ts``, ``ece_ts`` and ``brier_ts`` (the metrics of the logits divided
        by it).

    Returns:
      A DataFrame with one row per evaluation set and severity, the clean set first. Columns:
      the run's ``model, loss, optimizer, learning_rate, batch_size, steps, seed`` and
      ``model_hparams, loss_hparams, optimizer_hparams`` (JSON strings), then ``eval_set,
      kind, severity, num_examples``, the metrics (accuracy, nll, brier, ece,
      misclassification_auroc, max_class_fraction: the share of the set predicted as its
      most predicted class), and on OOD rows ``auroc_<score>``, ``aupr_in_<score>``,
      ``aupr_out_<score>`` and ``fpr_at_95_tpr_<score>``. Shift rows have severity 1..5.
      One number: ``tk.evaluate(run, ds.test).loc[0, "accuracy"]``.
    """
    import pandas as pd

    from toolkit import shifts as shift_module

    if not isinstance(cache, bool):
        raise ValueError(f"cache must be True or False, got {cache!r}")
    shifts = _names("shifts", shifts)
    if isinstance(severities, int | np.integer) and not isinstance(severities, bool):
        severities = [severities]  # one severity
    elif isinstance(severities, str) or not isinstance(severities, Iterable):
        raise ValueError(f"severities must be an int in 1..5 or a list of them, got {severities!r}")
    severities = [shift_module.check_severity(s) for s in severities] if shifts else []
    specs: list[EvalSet] = [Shifted(name, s) for name in shifts for s in severities]
    if isinstance(sets, Mapping):
        specs += [Given(name, extra) for name, extra in sets.items()]
    else:
        specs += list(sets or [])
    given_ood = dict(ood) if isinstance(ood, Mapping) else {}
    names = list(given_ood) if isinstance(ood, Mapping) else _names("ood", ood)
    data_kwargs = dict(data_kwargs or {})
    specs += [FarOod(name, given_ood.get(name), data_kwargs) for name in names]
    given_val = dict(ood_validation) if isinstance(ood_validation, Mapping) else {}
    val_names = (
        list(given_val) if isinstance(ood_validation, Mapping) else _names("ood", ood_validation)
    )
    if (conformal or val_names) and calibration is None:
        raise ValueError(
            "conformal sets and scorer selection are fitted on held-out data: pass "
            "calibration= (e.g. ds.validation from tk.data.with_validation)"
        )
    methods = Methods(
        scorers=tuple(_names("ood_scores", ood_scores)),
        ood_validation=tuple(FarOod(n, given_val.get(n), data_kwargs) for n in val_names),
        conformal=tuple(_names("conformal", conformal)),
        alpha=alpha,
        selective=tuple(_names("selective", selective)),
    )
    rows = evaluate_sets(
        run,
        split,
        specs,
        key=key,
        methods=methods,
        batch_size=batch_size,
        cache=cache,
        calibration=calibration,
        train=train,
        mc_samples=mc_samples,
    )
    columns = run_columns(run.config)
    if hasattr(run, "members"):  # an ensemble (toolkit.ensembles)
        columns["ensemble_size"] = len(run.members)
    table = pd.DataFrame([columns | row for row in rows])
    return table if reliability else table.drop(columns="reliability")
