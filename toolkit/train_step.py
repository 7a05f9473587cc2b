"""The pure training step, its state, and ``log_every`` steps compiled into one program.

- :class:`TrainState` and :func:`init_state`: what changes during training.
- :func:`make_train_step`: a pure ``train_step(state, batch, key)``; a step whose loss or
  gradient norm is not finite freezes the state (``diverged_step``).
- :func:`make_run_chunk`: ``num_steps`` steps as one ``jax.lax.scan``, batches gathered on
  device from the epoch permutations of :mod:`toolkit.shuffle`, so Python overhead is paid
  once per chunk. With a 1-D "data" mesh (:func:`data_mesh`, :func:`resolve_devices`) each
  global batch is sharded across devices while params stay replicated.

The trainer (:mod:`toolkit.training`) builds these from configs and runs them, vmapped
over the members of a population (:mod:`toolkit.population.program`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from toolkit import shuffle
from toolkit.augment import jensen_shannon
from toolkit.optimizers import eval_params

__all__ = [
    "Best",
    "TrainState",
    "apply_model",
    "chunk_compiler_options",
    "data_mesh",
    "gradient_norm",
    "init_state",
    "make_run_chunk",
    "make_train_step",
    "resolve_devices",
    "with_best",
]


class Best(struct.PyTreeNode):
    """The best-validation state seen so far: the weights to evaluate (``params`` are the
    evaluation point, e.g. schedule-free's average), their step and validation metrics.
    ``accuracy`` starts at -inf, so the first validation always sets it."""

    step: jax.Array
    params: Any
    model_state: Any
    accuracy: jax.Array
    nll: jax.Array


class TrainState(struct.PyTreeNode):
    """What changes during training. ``model_state`` holds mutable collections (batch_stats).

    ``diverged_step`` is -1 while training is healthy; at the first step whose loss or
    gradient norm (:func:`gradient_norm`) is not finite it records that step and the state
    is frozen from then on, so one diverging member of a vmapped population cannot poison
    the others' numbers. ``best`` is the best-validation :class:`Best` when the run has a
    validation split, else None; it is saved and restored with the rest of the state.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    diverged_step: jax.Array
    best: Best | None = None


def with_best(state: TrainState) -> TrainState:
    """``state`` with a :class:`Best` that any validation result replaces."""
    best = Best(
        step=state.step,
        params=state.params,
        model_state=state.model_state,
        accuracy=jnp.full((), -jnp.inf, jnp.float32),
        nll=jnp.full((), jnp.inf, jnp.float32),
    )
    return state.replace(best=best)


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


def gradient_norm(grads: Any) -> jax.Array:
    """The global L2 norm of a gradient tree, ``sqrt(sum_i g_i^2)``, summed in float32.

    Not finite when any element is NaN or infinite, or when the norm exceeds float32's
    range (about 1.8e19, where Adam's squared-gradient moment overflows too). It is the
    divergence test of :func:`make_train_step` because it ends in one square root, which
    XLA does not copy into the fusions that read it; a chain of per-leaf ``isfinite`` flags
    is cheap enough that XLA copies it into every fusion that selects a leaf, and the
    step's program then grows with the square of the leaf count.
    """
    squares = [jnp.sum(jnp.square(g.astype(jnp.float32))) for g in jax.tree.leaves(grads)]
    return jnp.sqrt(sum(squares, jnp.zeros((), jnp.float32)))


# The fold_in constant of the augmentation's stream of a step key: the step key itself stays
# the dropout key, so a run without augmentation keeps its numbers.
AUGMENT_STREAM = 1


def make_train_step(
    model: nn.Module,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    tx: optax.GradientTransformation,
    augment: Callable[..., jax.Array] | None = None,
    jsd_weight: float = 0.0,
) -> Callable[[TrainState, tuple[jax.Array, jax.Array], jax.Array], tuple[TrainState, dict]]:
    """A pure ``train_step(state, (x, y), key) -> (state, metrics)``.

    ``augment(x, *, key) -> views`` (:mod:`toolkit.augment`) transforms each batch first.
    With several views (clean first) the model runs once on all of them (BatchNorm sees
    them together, as in AugMix): the objective, reported as ``loss``, is the loss on the
    first view plus ``jsd_weight`` times their Jensen-Shannon divergence, so it is not the
    plain loss of a run without one; ``accuracy`` is the first view's.
    """

    def train_step(state: TrainState, batch, key):
        x, y = batch
        views = 1
        if augment is not None:
            augmented = augment(x, key=jax.random.fold_in(key, AUGMENT_STREAM))
            views = augmented.shape[0]
            x = augmented.reshape(views * x.shape[0], *x.shape[1:])

        def objective(params):
            logits, new_model_state = apply_model(
                model, params, state.model_state, x, train=True, key=key
            )
            if views == 1:
                return jnp.mean(loss_fn(logits, y)), (logits, new_model_state)
            logits = logits.reshape(views, -1, logits.shape[-1])
            loss = jnp.mean(loss_fn(logits[0], y))
            loss = loss + jsd_weight * jnp.mean(jensen_shannon(logits))
            return loss, (logits[0], new_model_state)

        (loss, (logits, new_model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        healthy = state.diverged_step < 0
        finite = jnp.isfinite(loss) & jnp.isfinite(gradient_norm(grads))
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


# XLA:CPU's copy insertion keeps a copy of loop-carried buffers it cannot prove free to
# update in place; region analysis proves it for the scan's training state (params and
# Adam's moments are then updated in place, with the same numbers). XLA leaves it off by
# default on CPU; an option of the CPU compiler, so CPU only.
_CPU_CHUNK_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


def chunk_compiler_options(mesh: Mesh | None = None) -> dict[str, Any] | None:
    """XLA compiler options for a training chunk placed on ``mesh`` (None: the default
    device). Pass them to the outermost ``jax.jit`` (options of an inner one are unused)."""
    platform = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
    return dict(_CPU_CHUNK_OPTIONS) if platform == "cpu" else None


def make_run_chunk(
    train_step, num_steps: int, batch_size: int, mesh: Mesh | None = None, *, nested: bool = False
):
    """Compiles ``num_steps`` of ``train_step`` into one program (a ``lax.scan``).

    With a ``mesh``, each batch is sharded along its first axis over the mesh's "data" axis
    while params stay replicated: jit partitions the step (gradients and BatchNorm batch
    statistics are reduced over the global batch), so no axis names or pmean are needed.
    ``nested=True`` is for a chunk traced inside another ``jax.jit`` (the population's),
    which passes :func:`chunk_compiler_options` itself: JAX takes them from the outermost.
    """
    batch_sharding = None if mesh is None else NamedSharding(mesh, P("data"))
    options = None if nested else chunk_compiler_options(mesh)

    @functools.partial(jax.jit, compiler_options=options)
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


def make_validate(model: nn.Module, num_examples: int, batch_size: int = 1024):
    """A pure ``validate(state, x_val, y_val) -> (state, metrics)``: accuracy and mean NLL
    of the evaluation point (inference mode) on the validation split, and ``state.best``
    replaced when the accuracy beats it (ties keep the earlier state; a diverged state
    never replaces it). The split is read in batches of at most ``batch_size`` (padded,
    padding masked out), so memory does not grow with its size.
    """
    size = min(batch_size, num_examples)
    batches = -(-num_examples // size)
    pad = batches * size - num_examples

    def validate(state: TrainState, x_val, y_val):
        params = eval_params(state.opt_state, state.params)
        x = jnp.pad(x_val, [(0, pad)] + [(0, 0)] * (x_val.ndim - 1))
        y = jnp.pad(y_val, (0, pad))
        mask = jnp.arange(batches * size) < num_examples
        x = x.reshape(batches, size, *x_val.shape[1:])

        def batch_sums(args):
            xb, yb, mb = args
            logits, _ = apply_model(model, params, state.model_state, xb, train=False)
            logits = logits.astype(jnp.float32)
            nll = optax.losses.softmax_cross_entropy_with_integer_labels(logits, yb)
            correct = (jnp.argmax(logits, -1) == yb).astype(jnp.float32)
            return jnp.sum(jnp.where(mb, correct, 0.0)), jnp.sum(jnp.where(mb, nll, 0.0))

        correct, nll = jax.lax.map(
            batch_sums, (x, y.reshape(batches, size), mask.reshape(batches, size))
        )
        accuracy = jnp.sum(correct) / num_examples
        mean_nll = jnp.sum(nll) / num_examples
        candidate = Best(state.step, params, state.model_state, accuracy, mean_nll)
        better = (accuracy > state.best.accuracy) & (state.diverged_step < 0)
        best = jax.tree.map(lambda new, old: jnp.where(better, new, old), candidate, state.best)
        return state.replace(best=best), {"val_accuracy": accuracy, "val_nll": mean_nll}

    return validate
