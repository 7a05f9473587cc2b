"""The programs of a population: its initial state and its vmapped run chunks.

Each member runs exactly the solo trainer's code (``toolkit.training.init_state``, then
``make_train_step`` and ``make_run_chunk`` under ``jax.vmap``); what differs per member
enters as traced scalars in ``hyper``:

* ``learning_rate`` / ``weight_decay`` -- only when members differ in them; the optimizer
  is then built inside the vmapped function from the member's traced values
  (``tk.optimizers.get`` accepts traced scalars). When all members agree the optimizer is
  built from the Python values, exactly as ``tk.train`` builds it, so a member's optimizer
  state has the same tree structure as a solo run's. (With varying decay, an optimizer that
  applies it as L2 -- sgd, adam, rmsprop, ... -- also chains ``add_decayed_weights`` for a
  member whose decay is 0, which its solo run leaves out: same numbers, one more state.)
* ``loss_index`` -- only when members use more than one (loss, loss_hparams): the member's
  loss is ``jax.lax.switch(loss_index, branches, logits, labels)``. Under ``vmap`` the
  switch evaluates every branch and selects per member, so a branch whose value or
  gradient is not finite where another member's loss is (e.g. a log of 0) still leaves
  the member's result untouched but costs compute for each extra branch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from toolkit import losses, optimizers
from toolkit.population.grouping import freeze
from toolkit.train_step import (
    TrainState,
    chunk_compiler_options,
    jit_init_state,
    make_run_chunk,
    make_train_step,
)
from toolkit.training import TrainConfig, build_optimizer

__all__ = ["Program", "loss_branches", "member_hyperparameters"]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def loss_branches(configs: Sequence[TrainConfig]) -> tuple[list[LossFn], np.ndarray]:
    """The population's distinct losses (defaults filled in, in order of first use) and
    each member's index into them (int32, shape (K,)).
    """
    index: dict[Hashable, int] = {}
    branches: list[LossFn] = []
    member_index = []
    for config in configs:
        resolved = losses.losses.hparams(config.loss, **config.loss_hparams)
        key = (config.loss, freeze(resolved))
        if key not in index:
            index[key] = len(branches)
            branches.append(losses.get(config.loss, **config.loss_hparams))
        member_index.append(index[key])
    return branches, np.asarray(member_index, np.int32)


def _weight_decay(config: TrainConfig) -> float:
    """The decay a config trains with: its own, else the optimizer's default."""
    if config.weight_decay is not None:
        return float(config.weight_decay)
    return float(optimizers.hparams(config.optimizer, **config.optimizer_hparams)["weight_decay"])


def member_hyperparameters(configs: Sequence[TrainConfig]) -> dict[str, np.ndarray]:
    """The per-member scalars that vary across ``configs``, stacked along axis 0.

    A scalar all members share is left out: the program takes it from the config as a
    Python value (see the module docstring). Keys: learning_rate, weight_decay (float32)
    and loss_index (int32).
    """
    hyper: dict[str, np.ndarray] = {}
    if len({c.learning_rate for c in configs}) > 1:
        hyper["learning_rate"] = np.asarray([c.learning_rate for c in configs], np.float32)
    if len({c.weight_decay for c in configs}) > 1:
        hyper["weight_decay"] = np.asarray([_weight_decay(c) for c in configs], np.float32)
    _, member_index = loss_branches(configs)
    if len(set(member_index.tolist())) > 1:
        hyper["loss_index"] = member_index
    return hyper


@dataclasses.dataclass(frozen=True)
class Program:
    """Builds the population functions for members with ``configs``.

    ``sharding``, when given, is the ``NamedSharding`` of everything stacked over members
    (the compiled chunks keep it); with ``data_mesh`` each member's batches are split over
    that mesh's "data" axis (data parallel, as ``tk.train`` on several devices).
    """

    model: nn.Module
    configs: tuple[TrainConfig, ...]
    sharding: jax.sharding.Sharding | None = None
    data_mesh: jax.sharding.Mesh | None = None

    @property
    def config(self) -> TrainConfig:
        return self.configs[0]

    def optimizer(self, hyper: dict[str, Any]) -> optax.GradientTransformation:
        """The member's optimizer: shared options from the config, traced ones from hyper."""
        cfg = dataclasses.replace(
            self.config,
            learning_rate=hyper.get("learning_rate", self.config.learning_rate),
            weight_decay=hyper.get("weight_decay", self.config.weight_decay),
        )
        return build_optimizer(cfg)

    def loss(self, hyper: dict[str, Any]) -> LossFn:
        branches, _ = loss_branches(self.configs)
        if "loss_index" not in hyper:
            return branches[0]
        index = hyper["loss_index"]
        return lambda logits, labels: jax.lax.switch(index, branches, logits, labels)

    def _jit_chunk(self, fn: Callable) -> Callable:
        mesh = getattr(self.sharding, "mesh", None)
        mesh = self.data_mesh if mesh is None else mesh
        options = chunk_compiler_options(mesh)
        if self.sharding is None:
            return jax.jit(fn, compiler_options=options)
        return jax.jit(fn, out_shardings=(self.sharding, self.sharding), compiler_options=options)

    def init(self, init_keys: jax.Array, hyper: dict, example_x: jax.Array) -> TrainState:
        """The stacked initial state of members with ``init_keys`` (K,).

        Params and BatchNorm statistics come from the solo trainer's compiled
        ``init_state`` run member by member, so they equal the solo runs' bit for bit. The
        optimizer state is then initialised for all members at once inside ``vmap``, with
        each member's traced hyperparameters, so its layout is the one the vmapped train
        step expects.
        """
        init_params = jit_init_state(self.model, optax.identity())
        members = [init_params(example_x, key=k) for k in init_keys]
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *members)
        opt_init = jax.vmap(lambda params, hyper: self.optimizer(hyper).init(params))
        opt_state = jax.jit(opt_init)(stacked.params, hyper)
        return stacked.replace(opt_state=opt_state)

    def chunk(self, num_steps: int, *, member_labels: bool) -> Callable:
        """``run(state, hyper, y, perms, step_keys, x_all) -> (state, metrics (K,))``:
        ``num_steps`` steps of every member in one dispatch. ``y`` is (K, N) with
        ``member_labels``, else the shared (N,) labels; ``perms`` are the members' epoch
        permutations these steps touch (``shuffle.EpochPermutations.for_chunk``), each (K, N).
        """

        def member(state, hyper, y, perms, step_key, x_all):
            train_step = make_train_step(self.model, self.loss(hyper), self.optimizer(hyper))
            run_chunk = make_run_chunk(
                train_step, num_steps, self.config.batch_size, self.data_mesh, nested=True
            )
            return run_chunk(state, x_all, y, perms, step_key)

        in_axes = (0, 0, 0 if member_labels else None, 0, 0, None)
        return self._jit_chunk(jax.vmap(member, in_axes=in_axes))
