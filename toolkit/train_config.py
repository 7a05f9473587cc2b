"""What determines a training run (:class:`TrainConfig`), its checks, and the model, loss
and optimizer it builds from the registries."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import optax

from toolkit import augment, losses, models, optimizers

__all__ = [
    "TrainConfig",
    "build_loss",
    "build_model",
    "build_optimizer",
    "json_ready",
    "validate",
]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (JSON-serialisable)."""

    model: str = "mlp"
    loss: str = "softmax_cross_entropy"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 100
    steps: int = 1000
    seed: int = 0
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float | None = None
    grad_clip: float | None = None
    model_hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    loss_hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    optimizer_hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    log_every: int | None = None
    eval_every: int | None = None
    augment: str | None = None
    augment_hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json_ready(dataclasses.asdict(self))

    @property
    def steps_per_dispatch(self) -> int:
        """Steps per compiled chunk: ``log_every``, or about 20 chunks per run (<= 500 steps)
        cut to a divisor of ``eval_every``, so that validations fall on chunk ends."""
        if self.log_every is not None:
            return min(self.log_every, self.steps)
        chunk = max(1, min(500, math.ceil(self.steps / 20)))
        if self.eval_every is not None:
            chunk = min(chunk, self.eval_every)
            while self.eval_every % chunk:
                chunk -= 1
        return chunk

    def validates_at(self, step: int) -> bool:
        """Whether a run with a validation split evaluates it after ``step`` (a chunk end):
        every ``eval_every`` steps (None: every chunk) and after the last step."""
        every = self.eval_every or self.steps_per_dispatch
        return step % every == 0 or step == self.steps


def json_ready(value: Any) -> Any:
    """Tuples to lists and mappings to dicts, so a config round-trips through JSON."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def validate(config: TrainConfig, num_train: int) -> None:
    """Checks names, hyperparameters and sizes before any compute starts."""
    models.models.hparams(config.model, **config.model_hparams)
    losses.losses.hparams(config.loss, **config.loss_hparams)
    optimizers.optimizers.hparams(config.optimizer, **config.optimizer_hparams)
    if config.augment is not None:
        augment.hparams(config.augment, **config.augment_hparams)
    elif config.augment_hparams:
        raise ValueError(
            f"augment_hparams {dict(config.augment_hparams)!r} without an augment; valid "
            f"augmentations: {', '.join(augment.names())}"
        )
    for name in ("learning_rate", "weight_decay"):
        if name in config.optimizer_hparams:
            raise ValueError(
                f"{name} is a TrainConfig field; pass {name}= directly, not in optimizer_hparams"
            )
    for name in ("batch_size", "steps"):
        _check_positive_int(name, getattr(config, name))
    # jax.random.key reads a seed modulo 2**32 (2**32 and 0 give one key), so larger seeds
    # would silently repeat runs.
    if isinstance(config.seed, bool) or not isinstance(config.seed, int):
        raise ValueError(f"seed must be an int in [0, 2**32), got {config.seed!r}")
    if not 0 <= config.seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {config.seed!r}")
    if config.log_every is not None:
        _check_positive_int("log_every", config.log_every)
    if config.eval_every is not None:
        _check_positive_int("eval_every", config.eval_every)
        if config.eval_every % config.steps_per_dispatch:
            raise ValueError(
                f"eval_every {config.eval_every} must be a multiple of log_every "
                f"{config.log_every} (validation runs at the end of a dispatch)"
            )
    if not (isinstance(config.learning_rate, int | float) and config.learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number, got {config.learning_rate!r}")
    if config.batch_size > num_train:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training set ({num_train} examples)"
        )
    # The trainer builds the optimizer inside compiled programs; building it here (plain
    # Python, no compute) raises its errors (an unknown schedule, a bad warm-up) first.
    build_optimizer(config)


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    return models.get(config.model, num_classes=num_classes, **config.model_hparams)


def build_loss(config: TrainConfig) -> Callable[[jax.Array, jax.Array], jax.Array]:
    return losses.get(config.loss, **config.loss_hparams)


def build_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    options = {
        "learning_rate": config.learning_rate,
        "schedule": config.schedule,
        "total_steps": config.steps,
        "warmup_steps": config.warmup_steps,
        "grad_clip": config.grad_clip,
    }
    if config.weight_decay is not None:
        options["weight_decay"] = config.weight_decay
    return optimizers.get(config.optimizer, **options, **config.optimizer_hparams)


def learning_rate_schedule(config: TrainConfig) -> Callable[[int], Any]:
    """The learning rate at each step as the config's schedule sets it (warm-up included),
    before an optimizer's own per-parameter scaling."""
    return optimizers.schedules.get(
        config.schedule,
        learning_rate=config.learning_rate,
        total_steps=config.steps,
        warmup_steps=config.warmup_steps,
        **(config.optimizer_hparams.get("schedule_hparams") or {}),
    )


def build_augment(config: TrainConfig) -> tuple[Callable[..., jax.Array] | None, float]:
    """The config's augmentation (None without one) and its consistency-loss weight."""
    if config.augment is None:
        return None, 0.0
    chosen = augment.hparams(config.augment, **config.augment_hparams)
    return augment.get(config.augment, **config.augment_hparams), float(
        chosen.get("jsd_weight", 0.0)
    )
