"""Everything a sweep could trip over, checked before any training or any write.

Names (datasets, models, losses, optimizers, schedules, shifts, OOD sets), ranges
(severities 0..5, label-noise rate and validation fraction in [0, 1), positive learning
rate, at least 2 training examples per class with a validation split, batch size within
the training set after the data axes) and applicability (a shift or OOD set for the data's
rank). Errors name the trial, the bad value and the valid choices.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from toolkit import augment, models
from toolkit.data.axes import LABEL_NOISE_KINDS, PATRINI_MNIST_MAP
from toolkit.data.checks import check_split
from toolkit.sweep.config import SweepConfigError, Trial
from toolkit.sweep.data import effective_train_size, load_dataset
from toolkit.sweep.defaults import CHECKPOINT_EVERY, CHECKPOINT_INTERVAL_S
from toolkit.sweep.evals import check_evals
from toolkit.training import build_loss, build_model, build_optimizer, validate

__all__ = ["check_options", "check_trials"]


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SweepConfigError(f"config.{name} must be an int >= {minimum}, got {value!r}")


# A results directory's name: one plain path component (no separators, not "." or "..").
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_options(config: Any, executors: Sequence[str]) -> None:
    """The runner's own options: experiment, executor, workers, checkpoint_every,
    checkpoint_interval_s, population_size."""
    experiment = config.get("experiment") or "sweep"
    if not isinstance(experiment, str) or not _PLAIN_NAME.fullmatch(experiment):
        raise SweepConfigError(
            f"config.experiment must be a plain name (letters, digits, '.', '_', '-'; not "
            f"starting with '.' or '-'), the directory it writes under the results "
            f"directory; got {experiment!r}"
        )
    executor = config.get("executor", "auto")
    if executor not in executors:
        raise SweepConfigError(f"unknown executor {executor!r}; valid: {', '.join(executors)}")
    _positive_int("workers", config.get("workers", 0), minimum=0)
    _positive_int("checkpoint_every", config.get("checkpoint_every", CHECKPOINT_EVERY))
    interval = config.get("checkpoint_interval_s", CHECKPOINT_INTERVAL_S)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval >= 0:
        raise SweepConfigError(
            f"config.checkpoint_interval_s must be a number of seconds >= 0 (0: every "
            f"checkpoint_every chunks), got {interval!r}"
        )
    if config.get("population_size") is not None:  # None: one population per group
        _positive_int("population_size", config.get("population_size"))


def _check_axes(axes: Mapping[str, Any], num_classes: int) -> None:
    rate = axes["label_noise"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
        raise ValueError(f"label_noise rate must be a number in [0, 1), got {rate!r}")
    kind = axes["label_noise_kind"]
    if kind not in LABEL_NOISE_KINDS:
        raise ValueError(
            f"unknown label_noise_kind {kind!r}; valid: {', '.join(LABEL_NOISE_KINDS)}"
        )
    if rate > 0 and kind == "asymmetric" and num_classes != len(PATRINI_MNIST_MAP):
        raise ValueError(
            f"label_noise_kind 'asymmetric' uses the 10-class MNIST map of Patrini "
            f"et al. (2017); this dataset has {num_classes} classes"
        )
    ratio = axes["imbalance"]
    if ratio is not None and (
        isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio >= 1.0
    ):
        raise ValueError(f"imbalance must be a ratio n_max / n_min >= 1 or None, got {ratio!r}")
    fraction = axes["validation_fraction"]
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float)
        or not 0.0 <= fraction < 1.0
    ):
        raise ValueError(
            f"validation_fraction must be a number in [0, 1) (0: no validation split), "
            f"got {fraction!r}"
        )


def check_trials(trials: Sequence[Trial], entries: Mapping[str, Any]) -> None:
    """Loads each dataset once and checks every trial and every evaluation against it."""
    checked_evals: set[str] = set()
    checked_data: set[tuple[str, bool]] = set()
    for index, trial in enumerate(trials):
        where = f"trial {index} of {len(trials)} ({trial.describe()})"
        try:
            dataset = load_dataset(trial.dataset, dict(trial.dataset_kwargs))
        except (TypeError, ValueError) as error:
            raise SweepConfigError(f"{where}: dataset {trial.dataset!r}: {error}") from None
        data_key = json.dumps([trial.dataset, trial.dataset_kwargs], sort_keys=True)
        try:
            config = trial.train_config()
            # An unknown model is named by validate() below.
            images = config.model in models.models and models.reads_images(config.model)
            if (data_key, images) not in checked_data:  # one pass over each dataset
                check_split(dataset.train, dataset.num_classes, images=images)
                checked_data.add((data_key, images))
            _check_axes(trial.data_axes, dataset.num_classes)
            counts = np.bincount(dataset.train.y, minlength=dataset.num_classes)
            size = effective_train_size(dataset.num_classes, counts, dict(trial.data_axes))
            validate(config, size)
            # Building is cheap (no arrays) and catches bad schedules and hyperparameter values.
            build_model(config, dataset.num_classes)
            build_loss(config)
            build_optimizer(config)
            augment.check_config(config, dataset.input_shape)
        except (TypeError, ValueError) as error:
            raise SweepConfigError(f"{where}: {error}") from None
        if data_key not in checked_evals:
            checked_evals.add(data_key)
            check_evals(entries, dataset, trial)
