"""The trainer's epoch-wise shuffle, and ``jax.random.permutation`` computed faster on CPU.

Batches are slices of ``perm(epoch 0) ++ perm(epoch 1) ++ ...`` (:func:`batch_indices`).
On small data the shuffle is a large share of a step on XLA:CPU, so
:class:`EpochPermutations` draws each epoch once and hands the chunks what they need, and
:func:`permutation` computes the same integers as ``jax.random.permutation``, faster
(``python -m benchmarks.shuffle`` measures both).

JAX shuffles by sorting (a scheme from tf2xla's random ops): ``ceil(3 ln n / ln(2^32 - 1))``
rounds, each a *stable* sort of the current order by fresh 32-bit random keys
(``lax.sort_key_val``). XLA:CPU sorts several operands through a generic compiled
comparator, several times slower than a one-operand integer sort. Here each round's stable
argsort is rebuilt from a one-operand sort instead: the rank of element ``j`` is the number
of keys below ``k_j`` (a binary search in the sorted keys) plus the number of equal keys
before ``j`` (ties: rare, counted in one cheap pass per tie level). Same keys, same rounds,
same tie order, so the output equals ``jax.random.permutation`` exactly (tested), and a run
shuffles as one drawn with ``jax.random.permutation`` would.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "EpochPermutations",
    "batch_indices",
    "chunk_indices",
    "epochs_per_chunk",
    "permutation",
    "stable_argsort",
]


def _rank_among_equals(groups: jax.Array) -> jax.Array:
    """For each ``j``, how many ``i < j`` have ``groups[i] == groups[j]`` (values in [0, n)).

    Each pass numbers the lowest still-unnumbered index of every group, so the loop runs as
    many passes as the largest group has members: once when all values are distinct.
    """
    n = groups.shape[0]
    index = jnp.arange(n, dtype=jnp.int32)

    def number_next(state):
        rank, pending, level = state
        lowest = jnp.full(n, n, jnp.int32).at[jnp.where(pending, groups, n)].min(index, mode="drop")
        chosen = pending & (lowest[groups] == index)
        return jnp.where(chosen, level, rank), pending & ~chosen, level + 1

    start = (jnp.zeros(n, jnp.int32), jnp.ones(n, bool), jnp.int32(0))
    return lax.while_loop(lambda state: jnp.any(state[1]), number_next, start)[0]


def stable_argsort(keys: jax.Array) -> jax.Array:
    """``np.argsort(keys, kind="stable")`` of a 1-D integer array, as int32.

    Equal keys keep their input order, as in ``lax.sort_key_val(keys, arange(n))``.
    """
    if keys.ndim != 1 or not jnp.issubdtype(keys.dtype, jnp.integer):
        raise ValueError(f"keys must be a 1-D integer array, got {keys.dtype}{list(keys.shape)}")
    n = keys.shape[0]
    below = jnp.searchsorted(lax.sort(keys), keys, side="left").astype(jnp.int32)
    rank = below + _rank_among_equals(below)
    order = jnp.arange(n, dtype=jnp.int32)
    return jnp.zeros(n, jnp.int32).at[rank].set(order, unique_indices=True)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of ``range(n)`` (int32): exactly ``jax.random.permutation(key, n)``.

    Args:
      key: a typed PRNG key (``jax.random.key``).
      n: the number of elements, a Python int.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    n = int(n)
    order = jnp.arange(n, dtype=jnp.int32)
    # jax.random's rule: enough rounds that all n keys are distinct somewhere w.h.p.
    rounds = math.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max))
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        order = order[stable_argsort(jax.random.bits(subkey, (n,), jnp.uint32))]
    return order


def epochs_per_chunk(num_steps: int, batch_size: int, num_examples: int) -> int:
    """How many epochs ``num_steps`` batches can touch: ``ceil(steps x batch / n) + 1``."""
    return -(-num_steps * batch_size // num_examples) + 1


def chunk_indices(perms: jax.Array, start_step, num_steps: int, batch_size: int) -> jax.Array:
    """Indices (num_steps, batch_size) of steps ``start_step ..`` of an epoch-wise shuffle.

    ``perms`` (E, n) are the permutations of epochs ``e0 .. e0 + E - 1``, where
    ``e0 = start_step * batch_size // n`` and E is :func:`epochs_per_chunk`; batches are
    consecutive slices of their concatenation. ``start_step`` may be traced.
    """
    num_examples = perms.shape[-1]
    first = start_step * batch_size
    offset = first - (first // num_examples) * num_examples
    flat = lax.dynamic_slice(perms.reshape(-1), (offset,), (num_steps * batch_size,))
    return flat.reshape(num_steps, batch_size)


def batch_indices(data_key, start_step, num_steps: int, batch_size: int, num_examples: int):
    """Indices (num_steps, batch_size) of steps ``start_step ..`` of an epoch-wise shuffle.

    Batches are consecutive slices of the stream ``perm(epoch 0) ++ perm(epoch 1) ++ ...``
    where ``perm(e)`` is ``jax.random.permutation(fold_in(data_key, e), num_examples)``
    (computed by :func:`permutation`). Every example is seen once per epoch, and the
    indices of a step depend only on the step number, so a resumed run sees the same
    batches as an uninterrupted one. Traceable; :class:`EpochPermutations` gives the trainer
    the same indices without drawing an epoch again for every chunk that touches it.
    """
    epoch0 = start_step * batch_size // num_examples
    epochs = epoch0 + jnp.arange(epochs_per_chunk(num_steps, batch_size, num_examples))
    perms = jax.vmap(lambda e: permutation(jax.random.fold_in(data_key, e), num_examples))(epochs)
    return chunk_indices(perms, start_step, num_steps, batch_size)


@functools.cache
def _drawer(num_examples: int, *, members: bool) -> Callable[[jax.Array, Any], jax.Array]:
    """``draw(key, epoch)``, jitted once per size (every run of a sweep shares it)."""

    def draw(key, epoch):
        return permutation(jax.random.fold_in(key, epoch), num_examples)

    return jax.jit(jax.vmap(draw, in_axes=(0, None)) if members else draw)


class EpochPermutations:
    """Each epoch's permutation, drawn once on device and kept while chunks still need it.

    ``for_chunk(start_step, num_steps)`` returns the permutations :func:`chunk_indices` takes
    for those steps, as a tuple of E arrays (n,), or (K, n) when ``data_key`` is a stack of K
    keys (a population, one shuffle per member). Drawing them inside every chunk instead
    would draw each epoch about ``E - 1`` times, and a chunk of a large dataset (60,000
    examples at batch 128) uses only a fifth of the one or two epochs it draws.
    """

    def __init__(self, data_key: jax.Array, num_examples: int, batch_size: int):
        self.data_key = data_key
        self.num_examples = num_examples
        self.batch_size = batch_size
        self._draw = _drawer(num_examples, members=bool(data_key.ndim))
        self._drawn: dict[int, jax.Array] = {}

    def for_chunk(self, start_step: int, num_steps: int) -> tuple[jax.Array, ...]:
        epoch0 = start_step * self.batch_size // self.num_examples
        count = epochs_per_chunk(num_steps, self.batch_size, self.num_examples)
        epochs = range(epoch0, epoch0 + count)
        for epoch in [e for e in self._drawn if e < epoch0]:
            del self._drawn[epoch]  # chunks only move forward
        for epoch in epochs:
            if epoch not in self._drawn:
                self._drawn[epoch] = self._draw(self.data_key, np.int32(epoch))
        return tuple(self._drawn[epoch] for epoch in epochs)
