"""Which training configs can share one vmapped program, and how to group a sweep by it.

A population is one compiled program that trains K models at once (``jax.vmap`` over a
leading member axis). Everything that fixes the program's shapes or its structure must
agree across members: the model and its hyperparameters, the optimizer (name,
hyperparameters, schedule, warmup, clipping), the batch size, the number of steps and
the steps per dispatch. Members may differ in ``seed``, ``loss`` (+ ``loss_hparams``,
picked per member with ``jax.lax.switch``), ``learning_rate`` and ``weight_decay``
(traced scalars the optimizer is built from), and in their training labels.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from toolkit import augment, models, optimizers
from toolkit.train_config import TrainConfig

__all__ = ["POPULATION_FIELDS", "check_population", "group_into_populations", "population_key"]


def _resolved_model(config: TrainConfig) -> dict[str, Any]:
    return models.models.hparams(config.model, **config.model_hparams)


def _resolved_optimizer(config: TrainConfig) -> dict[str, Any]:
    return optimizers.hparams(config.optimizer, **config.optimizer_hparams)


def _resolved_augment(config: TrainConfig) -> dict[str, Any] | None:
    if config.augment is None:
        return None
    return augment.hparams(config.augment, **config.augment_hparams)


# The fields members must agree on, each with how to read it from a config. Registry
# hyperparameters are compared with their defaults filled in, so {} and the explicit
# defaults build the same program and fall in the same population.
POPULATION_FIELDS: dict[str, Callable[[TrainConfig], Any]] = {
    "model": lambda c: c.model,
    "model_hparams": _resolved_model,
    "optimizer": lambda c: c.optimizer,
    "optimizer_hparams": _resolved_optimizer,
    "schedule": lambda c: c.schedule,
    "warmup_steps": lambda c: c.warmup_steps,
    "grad_clip": lambda c: c.grad_clip,
    "batch_size": lambda c: c.batch_size,
    "steps": lambda c: c.steps,
    "steps_per_dispatch": lambda c: c.steps_per_dispatch,
    "eval_every": lambda c: c.eval_every,
    "augment": lambda c: c.augment,
    "augment_hparams": _resolved_augment,
}


def freeze(value: Any) -> Hashable:
    """A hashable, order-insensitive copy: mappings -> sorted item tuples, lists -> tuples."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def population_key(config: TrainConfig) -> tuple[tuple[str, Hashable], ...]:
    """``((field, value), ...)`` over :data:`POPULATION_FIELDS`: configs with equal keys can
    be trained as members of one population.

    Model and optimizer hyperparameters appear with their registry defaults filled in
    (unknown names or hyperparameters raise the registry's error). ``steps_per_dispatch``
    stands for ``log_every``: two configs that chunk the run the same way agree.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"population_key needs a TrainConfig, got {type(config).__name__}")
    return tuple((name, freeze(read(config))) for name, read in POPULATION_FIELDS.items())


def check_population(configs: Sequence[TrainConfig]) -> None:
    """Raises a ValueError naming the first field (and both values) on which a member's
    config differs from member 0's; also rejects per-member options that would collide
    with the shared optimizer hyperparameters.
    """
    if not configs:
        raise ValueError("a population needs at least one config, got none")
    for index, config in enumerate(configs):
        if not isinstance(config, TrainConfig):
            raise TypeError(
                f"population member {index} must be a TrainConfig, got {type(config).__name__}"
            )
        # learning_rate / weight_decay are per-member options; inside optimizer_hparams
        # they would be passed twice when the optimizer is built.
        for option in ("learning_rate", "weight_decay"):
            if option in config.optimizer_hparams:
                raise ValueError(
                    f"population member {index}: put {option!r} in TrainConfig.{option}, "
                    f"not in optimizer_hparams"
                )
    reference = population_key(configs[0])
    for index, config in enumerate(configs[1:], start=1):
        for (name, want), (_, got) in zip(reference, population_key(config), strict=True):
            if want != got:
                raise ValueError(
                    f"population members must agree on {name!r}: member 0 has "
                    f"{POPULATION_FIELDS[name](configs[0])!r} but member {index} has "
                    f"{POPULATION_FIELDS[name](config)!r}. Members may differ only in seed, "
                    f"loss, loss_hparams, learning_rate and weight_decay; use "
                    f"group_into_populations() to split a sweep into populations"
                )


def group_into_populations(
    configs: Sequence[TrainConfig], max_size: int | None = None
) -> list[list[int]]:
    """Indices of ``configs`` partitioned by :func:`population_key`.

    Groups come in order of their first member and keep the input order inside; with
    ``max_size`` a group larger than that is cut into consecutive pieces of at most
    ``max_size`` members (e.g. to bound device memory). Every index appears exactly once.
    """
    if max_size is not None and (
        isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0
    ):
        raise ValueError(f"max_size must be a positive int or None, got {max_size!r}")
    groups: dict[Hashable, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(population_key(config), []).append(index)
    if max_size is None:
        return list(groups.values())
    return [
        members[start : start + max_size]
        for members in groups.values()
        for start in range(0, len(members), max_size)
    ]
