"""The functional trainer: a pure ``train_step`` run many steps per dispatch.

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
import functools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from toolkit import losses, models, optimizers, shuffle
from toolkit.data import Dataset, Split

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


class TrainState(struct.PyTreeNode):
    """What changes during training. ``model_state`` holds mutable collections (batch_stats).

    ``diverged_step`` is -1 while training is healthy; at the first step whose loss or
    gradients are not finite it records that step and the state is frozen from then on, so
    one diverging member of a vmapped population cannot poison the others' numbers.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    diverged_step: jax.Array


def init_state(
    model: nn.Module, tx: optax.GradientTransformation, example_x: jax.Array, *, key: jax.Array
) -> TrainState:
    """Initialises params (and BatchNorm statistics) from one example batch."""
    params_key, dropout_key = jax.random.split(key)
    variables = model.init({"params": params_key, "dropout": dropout_key}, example_x, train=False)
    params = variables.pop("params") if hasattr(variables, "pop") else variables["params"]
    model_state = {k: v for k, v in dict(variables).items() if k != "params"}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=tx.init(params),
        diverged_step=jnp.full((), -1, jnp.int32),
    )


def jit_init_state(model: nn.Module, tx: optax.GradientTransformation) -> Callable[..., TrainState]:
    """:func:`init_state` as one compiled program: ``init(example_x, *, key)``.

    Run op by op, a model's initialisers each compile a small program (one per op and
    shape: ~150 for ResNet-20, whose truncated normals alone take seconds); as one program
    they compile in about half the time and a warm persistent cache reads one entry instead
    of all of them. Random bits are integer ops, so params equal op-by-op ones bit for bit
    except where XLA folds an initialiser's constants (the transformer's ``normal(0.02)``
    positional embedding: at most 1 ulp apart).
    """
    return jax.jit(functools.partial(init_state, model, tx))


def apply_model(model: nn.Module, params, model_state, x, *, train: bool, key=None):
    """Logits and the updated mutable collections (unchanged when there are none)."""
    variables = {"params": params, **model_state}
    rngs = {"dropout": key} if key is not None else None
    if model_state and train:
        logits, new_state = model.apply(
            variables, x, train=True, rngs=rngs, mutable=list(model_state)
        )
        return logits, dict(new_state)
    return model.apply(variables, x, train=train, rngs=rngs), model_state


def make_train_step(
    model: nn.Module,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    tx: optax.GradientTransformation,
) -> Callable[[TrainState, tuple[jax.Array, jax.Array], jax.Array], tuple[TrainState, dict]]:
    """A pure ``train_step(state, (x, y), key) -> (state, metrics)``."""

    def train_step(state: TrainState, batch, key):
        x, y = batch

        def objective(params):
            logits, new_model_state = apply_model(
                model, params, state.model_state, x, train=True, key=key
            )
            return jnp.mean(loss_fn(logits, y)), (logits, new_model_state)

        (loss, (logits, new_model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        healthy = state.diverged_step < 0
        finite = jnp.isfinite(loss) & jnp.all(
            jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
        )
        keep = healthy & finite
        # Frozen members keep their last finite state; the step counter still advances so
        # that batches stay aligned with the other members of a population.
        updated = jax.tree.map(
            lambda new, old: jnp.where(keep, new, old),
            (params, new_model_state, opt_state),
            (state.params, state.model_state, state.opt_state),
        )
        metrics = {
            "loss": loss,
            "accuracy": jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32)),
        }
        new_state = state.replace(
            step=state.step + 1,
            params=updated[0],
            model_state=updated[1],
            opt_state=updated[2],
            diverged_step=jnp.where(healthy & ~finite, state.step, state.diverged_step),
        )
        return new_state, metrics

    return train_step


def data_mesh(devices: Sequence[jax.Device]) -> Mesh:
    """A 1-D mesh named "data" over ``devices`` (explicit Auto axis: classic GSPMD sharding)."""
    return Mesh(np.asarray(devices), ("data",), axis_types=(AxisType.Auto,))


def resolve_devices(devices: int | Sequence[jax.Device] | None, batch_size: int):
    """The devices to train on: all local ones by default, the first ``n`` for an int.

    The global batch is ``batch_size`` whatever the device count (results do not depend on
    how many devices ran them), so it must split evenly across the devices.
    """
    local = jax.local_devices()
    if devices is None:
        devices = local
    elif isinstance(devices, int):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices must be in 1..{len(local)} (local devices), got {devices}")
        devices = local[:devices]
    devices = list(devices)
    if batch_size % len(devices):
        raise ValueError(
            f"batch_size {batch_size} does not split evenly across {len(devices)} devices; use "
            f"a multiple of {len(devices)} or pass devices=<a divisor of {batch_size}>"
        )
    return devices


def make_run_chunk(train_step, num_steps: int, batch_size: int, mesh: Mesh | None = None):
    """Compiles ``num_steps`` of ``train_step`` into one program (a ``lax.scan``).

    With a ``mesh``, each batch is sharded along its first axis over the mesh's "data" axis
    while params stay replicated: jit partitions the step (gradients and BatchNorm batch
    statistics are reduced over the global batch), so no axis names or pmean are needed.
    """
    batch_sharding = None if mesh is None else NamedSharding(mesh, P("data"))

    @jax.jit
    def run_chunk(state: TrainState, x_all, y_all, perms: tuple[jax.Array, ...], step_key):
        # perms: the epochs these steps touch (shuffle.EpochPermutations.for_chunk).
        idx = shuffle.chunk_indices(jnp.stack(perms), state.step, num_steps, batch_size)

        def body(state, idx_t):
            key = jax.random.fold_in(step_key, state.step)
            batch = (x_all[idx_t], y_all[idx_t])
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            return train_step(state, batch, key)

        state, metrics = jax.lax.scan(body, state, idx)
        return state, jax.tree.map(jnp.mean, metrics)

    return run_chunk


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
