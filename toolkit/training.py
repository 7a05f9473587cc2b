"""The functional trainer: a config's pure ``train_step`` (:mod:`toolkit.train_step`) run
many steps per dispatch.

Design (why it is fast on small models):
- The whole training set lives on device; each batch is a gather of on-device indices, and
  the shuffle (one permutation per epoch, from the data key and the epoch number) happens
  on device too, each epoch drawn once (:mod:`toolkit.shuffle`), so no host-to-device copy
  happens inside the loop.
- ``log_every`` steps run inside one ``jax.lax.scan`` per dispatch, so Python overhead is
  paid once per chunk, not per step. (Convolutions inside ``scan`` are slow on XLA's CPU
  backend; the model zoo's conv layer uses im2col + matmul on CPU to avoid that.)
- Randomness is derived from one typed key: ``init``, ``data`` (shuffle) and ``step``
  (dropout, folded with the step number), so the same config and seed give the same
  numbers, and a run can be resumed from any step with identical results.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from toolkit import losses, models, optimizers, shuffle
from toolkit.data import Dataset, Split
from toolkit.train_step import (  # TrainState and the init/step builders: re-exported
    TrainState,
    data_mesh,
    init_state,
    jit_init_state,
    make_run_chunk,
    make_train_step,
    resolve_devices,
)

__all__ = [
    "Run",
    "TrainConfig",
    "TrainState",
    "init_state",
    "jit_init_state",
    "make_train_step",
    "train",
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

    def to_dict(self) -> dict[str, Any]:
        return json_ready(dataclasses.asdict(self))

    @property
    def steps_per_dispatch(self) -> int:
        """Steps per compiled chunk: ``log_every``, or about 20 chunks per run (<= 500 steps)."""
        if self.log_every is not None:
            return min(self.log_every, self.steps)
        return max(1, min(500, math.ceil(self.steps / 20)))


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
    for name in ("learning_rate", "weight_decay"):
        if name in config.optimizer_hparams:
            raise ValueError(
                f"{name} is a TrainConfig field; pass {name}= directly, not in optimizer_hparams"
            )
    for name in ("batch_size", "steps"):
        _check_positive_int(name, getattr(config, name))
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {config.seed!r}")
    if config.log_every is not None:
        _check_positive_int("log_every", config.log_every)
    if not (isinstance(config.learning_rate, int | float) and config.learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number, got {config.learning_rate!r}")
    if config.batch_size > num_train:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training set ({num_train} examples)"
        )


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


@dataclasses.dataclass
class _Program:
    """The compiled pieces of one training program, shared by runs that differ only in seed."""

    model: nn.Module
    init: Callable  # jitted ``init_state(model, tx, example_x, key=)``
    train_step: Callable
    runners: dict[int, Callable]  # chunk length -> jitted ``run_chunk``
    entries: tuple[Any, ...]  # kept alive so their ids in the cache key stay unique


# Runs that differ only in their seed (or data of the same shape) trace and compile the
# same program; keeping the jitted chunk functions lets jit's own cache skip both (a
# sweep's 2nd..5th seed, a notebook re-running a cell). Seeds are arguments, not constants.
_PROGRAMS: collections.OrderedDict[str, _Program] = collections.OrderedDict()
_MAX_PROGRAMS = 16


def _program(cfg: TrainConfig, num_classes: int, devices: Sequence[jax.Device]) -> _Program:
    entries = (
        models.models.entry(cfg.model),
        losses.losses.entry(cfg.loss),
        optimizers.optimizers.entry(cfg.optimizer),
    )
    fields = {k: v for k, v in cfg.to_dict().items() if k not in ("seed", "log_every")}
    key = json.dumps(
        [fields, num_classes, [d.id for d in devices], [id(e) for e in entries]],
        sort_keys=True,
        default=repr,
    )
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key]
    model = build_model(cfg, num_classes)
    tx = build_optimizer(cfg)
    program = _Program(
        model,
        jit_init_state(model, tx),
        make_train_step(model, build_loss(cfg), tx),
        {},
        entries,
    )
    _PROGRAMS[key] = program
    if len(_PROGRAMS) > _MAX_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    return program


@dataclasses.dataclass
class Run:
    """A trained model: its config, module, final state and training curve.

    ``params`` are the parameters to evaluate: for schedule-free optimizers the averaged
    point, not the raw iterate (``tk.optimizers.eval_params``).
    """

    config: TrainConfig
    model: nn.Module
    state: TrainState
    curve: list[dict[str, float]]
    info: dict[str, Any]

    @property
    def params(self):
        return optimizers.eval_params(self.state.opt_state, self.state.params)

    @property
    def variables(self) -> dict[str, Any]:
        return {"params": self.params, **self.state.model_state}

    def apply(self, x: jax.Array) -> jax.Array:
        """Logits in inference mode (dropout off, BatchNorm running statistics)."""
        return self.model.apply(self.variables, x, train=False)


def _progress(verbose: bool, total: int) -> Callable[[dict], None]:
    last = [0.0]

    def report(row: dict) -> None:
        now = time.perf_counter()
        if verbose and (now - last[0] > 2.0 or row["step"] == total):
            last[0] = now
            print(
                f"step {row['step']:>7}/{total}  loss {row['loss']:.4f}  "
                f"acc {row['accuracy']:.3f}  {row['steps_per_sec']:,.0f} steps/s",
                flush=True,
            )

    return report


def train(
    dataset: Dataset | Split,
    *,
    num_classes: int | None = None,
    verbose: bool = True,
    callback: Callable[[dict, TrainState], None] | None = None,
    initial_state: TrainState | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    **config: Any,
) -> Run:
    """Trains one model on ``dataset.train`` and returns the :class:`Run`.

    Keyword arguments are the fields of :class:`TrainConfig` (model, loss, optimizer,
    learning_rate, batch_size, steps, seed, schedule, ..., and ``*_hparams`` dicts).
    Everything is checked before any compute.

    ``callback(row, state)`` receives each curve row and the state after it (e.g. to
    checkpoint). ``initial_state`` resumes a run from a saved state: batches and dropout
    keys depend only on the seed and the step number, so a resumed run ends with the same
    numbers as an uninterrupted one. A run whose loss or gradients stop being finite is
    frozen at its last finite state and reported in ``run.info["diverged_step"]``.

    ``devices`` (default: every local device) trains data-parallel: params replicated,
    each global batch of ``batch_size`` sharded across the devices. A batch size that does
    not split evenly across them is an error.
    """
    unknown = sorted(set(config) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        valid = ", ".join(f.name for f in dataclasses.fields(TrainConfig))
        raise TypeError(f"train() got an unknown option {unknown[0]!r}; valid options: {valid}")
    cfg = TrainConfig(**config)
    split = dataset.train if isinstance(dataset, Dataset) else dataset
    if num_classes is None:
        if not isinstance(dataset, Dataset):
            raise ValueError("pass num_classes= when training on a bare Split")
        num_classes = dataset.num_classes
    validate(cfg, len(split))
    devices = resolve_devices(devices, cfg.batch_size)
    mesh = data_mesh(devices) if len(devices) > 1 else None

    program = _program(cfg, num_classes, devices)
    model = program.model
    init_key, data_key, step_key = jax.random.split(jax.random.key(cfg.seed), 3)
    # Data and state replicated on every device; batches are sharded inside the step.
    replicated = NamedSharding(mesh, P()) if mesh is not None else devices[0]
    x_all, y_all = jax.device_put((split.x, split.y), replicated)
    if initial_state is not None:
        state = initial_state
    else:
        state = program.init(x_all[: cfg.batch_size], key=init_key)
    state = jax.device_put(state, replicated)

    chunk = cfg.steps_per_dispatch
    runners = program.runners
    epochs = shuffle.EpochPermutations(data_key, len(split), cfg.batch_size)
    curve: list[dict[str, float]] = []
    report = _progress(verbose, cfg.steps)
    start = time.perf_counter()
    step = int(state.step)
    while step < cfg.steps and int(state.diverged_step) < 0:
        n = min(chunk, cfg.steps - step)
        if n not in runners:
            runners[n] = make_run_chunk(program.train_step, n, cfg.batch_size, mesh)
        t0 = time.perf_counter()
        perms = epochs.for_chunk(step, n)
        state, metrics = runners[n](state, x_all, y_all, perms, step_key)
        metrics = jax.device_get(metrics)
        elapsed = time.perf_counter() - t0
        step += n
        row = {
            "step": step,
            "loss": float(metrics["loss"]),
            "accuracy": float(metrics["accuracy"]),
            "steps_per_sec": n / elapsed,
        }
        curve.append(row)
        report(row)
        if callback is not None:
            callback(row, state)
    wall = time.perf_counter() - start
    info = {
        "wall_time_s": wall,
        "num_train": len(split),
        "num_classes": num_classes,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "global_batch_size": cfg.batch_size,
        "backend": jax.default_backend(),
        "diverged_step": int(state.diverged_step) if int(state.diverged_step) >= 0 else None,
    }
    return Run(config=cfg, model=model, state=state, curve=curve, info=info)
