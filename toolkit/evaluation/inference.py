"""Batched, on-device inference: the logits of a trained run, every batch one program."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from toolkit.train_step import data_mesh

__all__ = ["predict"]


@functools.partial(jax.jit, static_argnames=("model", "batch_size", "batch_sharding"))
def _predict(
    model: nn.Module, variables, x: jax.Array, *, batch_size: int, batch_sharding=None
) -> jax.Array:
    n = x.shape[0]
    num_batches = -(-n // batch_size)
    pad = num_batches * batch_size - n
    # Pad to whole batches so one compiled program serves every batch; padded rows are dropped.
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    batches = x.reshape(num_batches, batch_size, *x.shape[1:])

    def apply(batch):
        if batch_sharding is not None:  # data-parallel: each device takes a slice of the batch
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return model.apply(variables, batch, train=False)

    logits = jax.lax.map(apply, batches)
    return logits.reshape(num_batches * batch_size, -1)[:n]


def predict(run, x: Any, *, batch_size: int = 1000, devices=None) -> jax.Array:
    """Logits of ``run`` on ``x`` (inference mode), computed on device in batches.

    Data-parallel over ``devices`` (default: every local device): the batch size is rounded
    up to a multiple of the device count and each batch is sharded across them.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    n = len(devices)
    batch_size = max(1, min(batch_size, x.shape[0]))
    batch_size = -(-batch_size // n) * n
    if n == 1:
        x = jax.device_put(jnp.asarray(x, jnp.float32), devices[0])
        return _predict(run.model, run.variables, x, batch_size=batch_size)
    mesh = data_mesh(devices)
    replicated = NamedSharding(mesh, P())
    x, variables = jax.device_put((jnp.asarray(x, jnp.float32), run.variables), replicated)
    return _predict(
        run.model,
        variables,
        x,
        batch_size=batch_size,
        batch_sharding=NamedSharding(mesh, P("data")),
    )
