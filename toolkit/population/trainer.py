"""``train_population``: K models trained at once, each equal to its solo ``tk.train`` run.

Member k is initialised with its own seed (``init`` key of
``jax.random.split(jax.random.key(seed), 3)``), shuffles the data with its own ``data``
key and draws dropout from its own ``step`` key, exactly as ``tk.train`` does; the whole
population then runs ``steps_per_dispatch`` steps per dispatch (a ``lax.scan`` per
member, vmapped). So member k's params, BatchNorm statistics and curve equal those of
``tk.train(dataset, **configs[k].__dict__)`` up to float rounding.

Float rounding is not always negligible over a long run: under ``vmap`` XLA may fuse a
member's ops differently (bit for bit equal for cross-entropy here, not for the softmax
focal loss), and Adam turns a 1-ulp difference in a near-zero gradient into a step of
about the learning rate, since it divides by the gradient's own scale. Measured on CPU,
MNIST-1D CNN, focal loss, Adam lr 1e-2: params 4.8e-7 apart after 1 step, 6.5e-3 after
5; the cross-entropy member stayed identical for 180 steps, then drifted as chaotic
training does. Members are the same computation as their solo runs, not reproductions
of their trajectories to the last digit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit import shuffle
from toolkit.data import Dataset, Split
from toolkit.population import sharding
from toolkit.population.grouping import check_population
from toolkit.population.program import Program, member_hyperparameters
from toolkit.training import Run, TrainConfig, TrainState, build_model, validate

__all__ = ["train_population"]

Callback = Callable[[list[dict[str, float] | None], list[TrainState]], None]


def _split_and_classes(dataset: Dataset | Split, num_classes: int | None) -> tuple[Split, int]:
    if isinstance(dataset, Dataset):
        return dataset.train, dataset.num_classes if num_classes is None else num_classes
    if not isinstance(dataset, Split):
        raise TypeError(f"dataset must be a Dataset or a Split, got {type(dataset).__name__}")
    if num_classes is None:
        raise ValueError("pass num_classes= when training on a bare Split")
    return dataset, num_classes


def _validate_members(configs: Sequence[TrainConfig], num_train: int) -> None:
    """Each config on its own (``tk.train``'s checks), then that they share a program."""
    for index, config in enumerate(configs):
        if not isinstance(config, TrainConfig):
            raise TypeError(
                f"population member {index} must be a TrainConfig, got {type(config).__name__}"
            )
        try:
            validate(config, num_train)
        except (TypeError, ValueError) as error:
            raise type(error)(f"population member {index}: {error}") from error
    check_population(configs)


def _member_labels(labels: Any, num_members: int, split: Split, num_classes: int) -> np.ndarray:
    """``train_labels`` checked: integer class indices of shape (K, N)."""
    array = np.asarray(labels)
    expected = (num_members, len(split))
    if array.shape != expected:
        raise ValueError(
            f"train_labels must have shape (members, train examples) = {expected}, "
            f"got {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"train_labels must be integer class indices, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"train_labels must lie in [0, {num_classes}), got values in "
            f"[{array.min()}, {array.max()}]"
        )
    return array.astype(np.int32)


def _unstack(stacked: TrainState, size: int) -> list[TrainState]:
    """The first ``size`` members' states (one ``jnp.unstack`` dispatch per leaf)."""
    leaves, treedef = jax.tree.flatten(stacked)
    columns = [jnp.unstack(leaf) for leaf in leaves]
    return [jax.tree.unflatten(treedef, [column[k] for column in columns]) for k in range(size)]


def _stack(states: Sequence[TrainState], abstract: TrainState) -> TrainState:
    """Stacks per-member states after checking them against the population's layout."""
    want = jax.tree.structure(abstract)
    for index, state in enumerate(states):
        got = jax.tree.structure(state)
        if got != want:
            raise ValueError(
                f"initial_states[{index}] does not match this population's TrainState "
                f"layout (a state from tk.train differs when members vary weight_decay).\n"
                f"expected {want}\ngot      {got}"
            )
        leaves = jax.tree_util.tree_leaves_with_path(state)
        for (path, leaf), spec in zip(leaves, jax.tree.leaves(abstract), strict=True):
            if jnp.shape(leaf) != spec.shape[1:]:
                raise ValueError(
                    f"initial_states[{index}] leaf {jax.tree_util.keystr(path)} has shape "
                    f"{jnp.shape(leaf)}, expected {spec.shape[1:]}"
                )
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def _start_step(states: Sequence[TrainState]) -> int:
    """The step the healthy members resume from; they must agree (shared batches)."""
    steps = {i: int(s.step) for i, s in enumerate(states) if int(s.diverged_step) < 0}
    if len(set(steps.values())) > 1:
        raise ValueError(
            f"healthy initial_states must share one step (they advance together), got "
            f"steps {steps} by member"
        )
    return next(iter(steps.values()), 0)


def _report(verbose: bool, total: int, size: int) -> Callable[[int, np.ndarray, float], None]:
    """Prints progress at most every 2 s: the healthy members' losses and model-steps/s."""
    last = [0.0]

    def report(step: int, loss: np.ndarray, steps_per_sec: float) -> None:
        now = time.perf_counter()
        if verbose and (now - last[0] > 2.0 or step == total):
            last[0] = now
            finite = loss[np.isfinite(loss)]
            mean = float(finite.mean()) if finite.size else float("nan")
            print(
                f"step {step:>7}/{total}  mean loss {mean:.4f} ({finite.size}/{size} finite)  "
                f"{steps_per_sec * size:,.0f} model-steps/s",
                flush=True,
            )

    return report


def train_population(
    dataset: Dataset | Split,
    configs: Sequence[TrainConfig],
    *,
    num_classes: int | None = None,
    train_labels: Any = None,
    verbose: bool = False,
    callback: Callback | None = None,
    initial_states: Sequence[TrainState] | None = None,
    shard: bool | str = False,
) -> list[Run]:
    """Trains one model per config, all in one vmapped program; returns one Run each.

    Args:
      dataset: a Dataset (trains on ``.train``) or a Split with ``num_classes``.
      configs: K TrainConfigs that share a ``population_key`` (they may differ in seed,
        loss, loss_hparams, learning_rate and weight_decay).
      train_labels: optional integer array (K, N): member k trains on labels
        ``train_labels[k]`` (e.g. its own label-noise draw) instead of the split's.
      callback: ``callback(rows, states)`` after every chunk, both lists of length K.
        ``rows[k]`` is the row just added to member k's curve, or None once member k has
        diverged in an earlier chunk (it is frozen, like a stopped solo run); ``states[k]``
        is member k's state (a diverged member's state as of its diverging chunk).
      initial_states: K states to resume from (e.g. saved by the callback). Healthy ones
        must share one step; diverged ones stay as they are.
      shard: ``False``/``"none"``, ``True``/``"population"`` (members split across local
        devices), ``"data"`` (each member's batch split across them) or ``"auto"`` (the
        sweep runner's rule); see :mod:`toolkit.population.sharding`.

    Everything is checked before compute. A member whose loss or gradients stop being
    finite is frozen at its last finite state (``TrainState.diverged_step``) while the
    others go on; ``run.info["diverged_step"]`` reports it, and its Run holds its state
    and curve as of the chunk it diverged in, as ``tk.train`` would stop there. Training
    stops early only when every member has diverged. ``run.info`` also has
    ``population_size``, ``member``, ``population_sharding`` (the mode used) and
    ``wall_time_s`` (the whole population's).
    """
    configs = tuple(configs)
    split, num_classes = _split_and_classes(dataset, num_classes)
    _validate_members(configs, len(split))
    size = len(configs)
    labels = None
    if train_labels is not None:
        labels = _member_labels(train_labels, size, split, num_classes)
    if initial_states is not None and len(initial_states) != size:
        raise ValueError(f"initial_states has {len(initial_states)} states for {size} members")
    cfg = configs[0]
    placement = sharding.plan(size, shard, cfg.batch_size)
    order = list(placement.order)

    program = Program(build_model(cfg, num_classes), tuple(configs[i] for i in order),
                      placement.sharding, placement.data_mesh)  # fmt: skip
    host_hyper = member_hyperparameters(program.configs)
    hyper = placement.stacked(host_hyper)
    keys = jnp.stack([jax.random.split(jax.random.key(c.seed), 3) for c in program.configs])
    data_keys, step_keys = placement.stacked(keys[:, 1]), placement.stacked(keys[:, 2])
    x_all = placement.replicated(split.x)
    y = placement.replicated(split.y) if labels is None else placement.stacked(labels[order])
    # Initialised on one device (see Program.init), then placed like the rest.
    example_x = jnp.asarray(split.x[: cfg.batch_size])
    if initial_states is None:
        state = placement.stacked(program.init(keys[:, 0], host_hyper, example_x))
        step = 0
    else:
        abstract = jax.eval_shape(program.init, keys[:, 0], host_hyper, example_x)
        step = _start_step(initial_states)
        state = placement.stacked(_stack([initial_states[i] for i in order], abstract))

    stopped: dict[int, TrainState] = {
        k: s for k, s in enumerate(initial_states or ()) if int(s.diverged_step) >= 0
    }
    curves: list[list[dict[str, float]]] = [[] for _ in range(size)]
    runners: dict[int, Callable] = {}
    epochs = shuffle.EpochPermutations(data_keys, len(split), cfg.batch_size)
    report = _report(verbose, cfg.steps, size)
    start = time.perf_counter()
    while step < cfg.steps and len(stopped) < size:
        n = min(cfg.steps_per_dispatch, cfg.steps - step)
        if n not in runners:
            runners[n] = program.chunk(n, member_labels=labels is not None)
        t0 = time.perf_counter()
        perms = epochs.for_chunk(step, n)
        state, metrics = runners[n](state, hyper, y, perms, step_keys, x_all)
        metrics, diverged = jax.device_get((metrics, state.diverged_step))
        elapsed = time.perf_counter() - t0
        step += n
        rows: list[dict[str, float] | None] = []
        for k in range(size):
            if k in stopped:
                rows.append(None)
                continue
            row = {
                "step": step,
                "loss": float(metrics["loss"][k]),
                "accuracy": float(metrics["accuracy"][k]),
                "steps_per_sec": n / elapsed,
            }
            curves[k].append(row)
            rows.append(row)
        report(step, np.asarray([row["loss"] for row in rows if row is not None]), n / elapsed)
        newly = [k for k in range(size) if k not in stopped and diverged[k] >= 0]
        if newly or callback is not None:
            current = _unstack(state, size)
            states = [stopped.get(k, current[k]) for k in range(size)]
            stopped.update({k: states[k] for k in newly})
            if callback is not None:
                callback(rows, states)
    wall = time.perf_counter() - start

    runs = []
    final = _unstack(state, size)
    for k, config in enumerate(configs):
        member_state = stopped.get(k, final[k])
        diverged_step = int(member_state.diverged_step)
        info = {
            "wall_time_s": wall,
            "num_train": len(split),
            "num_classes": num_classes,
            "population_size": size,
            "member": k,
            "device_kind": placement.devices[0].device_kind,
            "device_count": placement.device_count,
            "population_sharding": placement.mode,
            "global_batch_size": config.batch_size,
            "backend": jax.default_backend(),
            "diverged_step": diverged_step if diverged_step >= 0 else None,
        }
        runs.append(Run(config, program.model, member_state, curves[k], info))
    return runs
