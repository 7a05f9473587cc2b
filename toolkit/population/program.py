"""The compiled programs of K >= 1 members: their initial state and their run chunks.

Each member runs :mod:`toolkit.train_step`'s code (``init_state``, ``make_train_step``,
``make_run_chunk``) under ``jax.vmap``; one member runs it unbatched, its member axis
dropped and restored inside the compiled program (free reshapes), since XLA compiles a
``vmap`` over one member into batched dots and gathers that run slower on CPU. What
differs per member enters as traced scalars in ``hyper``:

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

import collections
import dataclasses
from collections.abc import Callable, Collection, Hashable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from toolkit import losses, models, optimizers
from toolkit.population.grouping import freeze, population_key
from toolkit.population.sharding import Placement
from toolkit.train_config import TrainConfig, build_augment, build_model, build_optimizer
from toolkit.train_step import (
    TrainState,
    chunk_compiler_options,
    init_state,
    make_run_chunk,
    make_train_step,
    make_validate,
    with_best,
)

__all__ = ["Program", "loss_branches", "member_hyperparameters", "over_members", "program_for"]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def loss_branches(configs: Sequence[TrainConfig]) -> tuple[list[LossFn], np.ndarray]:
    """The population's distinct losses (defaults filled in, in order of first use) and
    each member's index into them (int32, shape (K,)).
    """
    index: dict[Hashable, int] = {}
    branches: list[LossFn] = []
    member_index = []
    for config in configs:
        key = _loss_key(config)
        if key not in index:
            index[key] = len(branches)
            branches.append(losses.get(config.loss, **config.loss_hparams))
        member_index.append(index[key])
    return branches, np.asarray(member_index, np.int32)


def _loss_key(config: TrainConfig) -> Hashable:
    return config.loss, freeze(losses.losses.hparams(config.loss, **config.loss_hparams))


def program_key(config: TrainConfig, varying: Collection[str] = ()) -> Hashable:
    """What fixes the code of ``config``'s compiled program: its :func:`population_key`, its
    loss, and its learning rate and weight decay unless they are in ``varying`` (traced
    per member). Runs with equal keys differ only in arguments (seed, labels)."""
    return (
        population_key(config),
        _loss_key(config),
        None if "learning_rate" in varying else config.learning_rate,
        None if "weight_decay" in varying else config.weight_decay,
    )


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


def over_members(fn: Callable, in_axes: tuple[int | None, ...], size: int) -> Callable:
    """``fn`` mapped over a leading member axis of ``size``: ``jax.vmap`` for several members;
    for one, ``fn`` itself on the member's slice, its outputs given the axis back."""
    if size > 1:
        return jax.vmap(fn, in_axes=in_axes)

    def one(*args):
        args = [
            arg if axis is None else jax.tree.map(lambda leaf: leaf[0], arg)
            for arg, axis in zip(args, in_axes, strict=True)
        ]
        return jax.tree.map(lambda leaf: leaf[None], fn(*args))

    return one


@jax.jit
def member_keys(seeds: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The members' ``init``, ``data`` and ``step`` keys, each (K,), from their seeds (K,):
    ``jax.random.split(jax.random.key(seed), 3)``, one compiled program for all members."""
    keys = jax.vmap(lambda seed: jax.random.split(jax.random.key(seed), 3))(seeds)
    return keys[:, 0], keys[:, 1], keys[:, 2]


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _member(tree: Any, k: int) -> Any:
    return jax.tree.map(lambda leaf: leaf[k], tree)


class Program:
    """The compiled functions that train members with ``configs`` (after padding) on
    ``placement``; build one with :func:`program_for` to reuse it across calls.

    ``placement.sharding``, when set, is the ``NamedSharding`` of everything stacked over
    members (the compiled chunks keep it); with ``placement.data_mesh`` each member's
    batches are split over that mesh's "data" axis (data parallel).
    """

    def __init__(self, model: nn.Module, configs: Sequence[TrainConfig], placement: Placement):
        self.model = model
        self.configs = tuple(configs)
        self.size = len(self.configs)
        self.sharding = placement.sharding
        self.data_mesh = placement.data_mesh
        # One compiled program for init: op by op, every initialiser compiles a program of
        # its own (about 150 for ResNet-20). Optimizer state comes later, for all members.
        tx = optax.identity()
        self._init_params = jax.jit(lambda x, keys, k: init_state(model, tx, x, key=keys[k]))
        self._init_optimizer = self._stack = self._unstack = None
        self._chunks: dict[tuple[int, bool], Callable] = {}
        self._validates: dict[tuple[int, bool], Callable] = {}
        self.augment, self.jsd_weight = build_augment(self.configs[0])  # members share it

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

    def init(
        self, init_keys: jax.Array, hyper: dict, example_x: jax.Array, *, best: bool = False
    ) -> TrainState:
        """The stacked initial state of members with ``init_keys`` (K,); with ``best``, each
        member also keeps its best-validation state (``TrainState.best``).

        Params and BatchNorm statistics come from ``init_state`` compiled for one member and
        run member by member, so a member's equal those of any population it is trained in,
        bit for bit. The optimizer state is then initialised for all members at once, with
        each member's traced hyperparameters, so its layout is the one the train step expects.
        """
        members = [self._init_params(example_x, init_keys, np.int32(k)) for k in range(self.size)]
        if self._init_optimizer is None:

            def init_optimizer(members, hyper, best):
                stacked = _stack(members)
                opt_init = lambda params, hyper: self.optimizer(hyper).init(params)
                opt_state = over_members(opt_init, (0, 0), self.size)(stacked.params, hyper)
                stacked = stacked.replace(opt_state=opt_state)
                return over_members(with_best, (0,), self.size)(stacked) if best else stacked

            self._init_optimizer = jax.jit(init_optimizer, static_argnums=2)
        return self._init_optimizer(members, hyper, best)

    def stack(self, states: Sequence[TrainState]) -> TrainState:
        """K members' states stacked along a new leading axis, in one compiled program."""
        if self._stack is None:
            self._stack = jax.jit(_stack)
        return self._stack(list(states))

    def unstack(self, stacked: TrainState) -> list[TrainState]:
        """The K members' states of a stacked state, in one compiled program."""
        if self._unstack is None:
            size = self.size
            self._unstack = jax.jit(lambda tree: [_member(tree, k) for k in range(size)])
        return self._unstack(stacked)

    def chunk(self, num_steps: int, *, member_labels: bool) -> Callable:
        """``run(state, hyper, y, perms, step_keys, x_all) -> (state, metrics (K,))``:
        ``num_steps`` steps of every member in one dispatch. ``y`` is (K, N) with
        ``member_labels``, else the shared (N,) labels; ``perms`` are the members' epoch
        permutations these steps touch (``shuffle.EpochPermutations.for_chunk``), each (K, N).
        """
        key = (num_steps, member_labels)
        if key not in self._chunks:

            def member(state, hyper, y, perms, step_key, x_all):
                train_step = make_train_step(
                    self.model,
                    self.loss(hyper),
                    self.optimizer(hyper),
                    augment=self.augment,
                    jsd_weight=self.jsd_weight,
                )
                run_chunk = make_run_chunk(
                    train_step, num_steps, self.config.batch_size, self.data_mesh, nested=True
                )
                return run_chunk(state, x_all, y, perms, step_key)

            in_axes = (0, 0, 0 if member_labels else None, 0, 0, None)
            self._chunks[key] = self._jit_chunk(over_members(member, in_axes, self.size))
        return self._chunks[key]

    def validate(self, num_examples: int, *, member_labels: bool) -> Callable:
        """``validate(state, y_val, x_val) -> (state, metrics (K,))``: every member's
        validation accuracy and NLL, and its best-validation state updated
        (:func:`toolkit.train_step.make_validate`). ``y_val`` is (K, Nv) with
        ``member_labels``, else the shared (Nv,) labels."""
        key = (num_examples, member_labels)
        if key not in self._validates:
            validate = make_validate(self.model, num_examples)
            member = lambda state, y_val, x_val: validate(state, x_val, y_val)
            in_axes = (0, 0 if member_labels else None, None)
            self._validates[key] = self._jit_chunk(over_members(member, in_axes, self.size))
        return self._validates[key]


# Recent programs by what fixes their code; values keep the registry entries (model,
# optimizer, schedule, losses) they were built from, so a name whose entry was replaced in
# its registry builds a new program instead of reusing the old entry's code.
_PROGRAMS: collections.OrderedDict[Hashable, tuple[tuple[Any, ...], Program]] = (
    collections.OrderedDict()
)
_MAX_PROGRAMS = 16


def program_for(
    configs: Sequence[TrainConfig], num_classes: int, placement: Placement, hyper: dict
) -> Program:
    """The :class:`Program` of members with ``configs`` (in slot order) on ``placement``.

    ``hyper`` is :func:`member_hyperparameters` of ``configs``. Populations that agree on
    everything but seeds, labels and the values in ``hyper`` share one program.
    """
    config = configs[0]
    key = (
        tuple(dict.fromkeys(program_key(c, varying=hyper) for c in configs)),
        tuple(sorted(hyper)),
        num_classes,
        len(configs),
        placement.mode,
        tuple(d.id for d in placement.devices),
    )
    entries = (
        models.models.entry(config.model),
        optimizers.optimizers.entry(config.optimizer),
        optimizers.schedules.entry(config.schedule),
        *(losses.losses.entry(c.loss) for c in configs),
    )
    cached = _PROGRAMS.get(key)
    if cached is not None and all(a is b for a, b in zip(cached[0], entries, strict=True)):
        _PROGRAMS.move_to_end(key)
        return cached[1]
    program = Program(build_model(config, num_classes), configs, placement)
    _PROGRAMS[key] = (entries, program)
    _PROGRAMS.move_to_end(key)
    if len(_PROGRAMS) > _MAX_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    return program
