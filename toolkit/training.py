"""The trainer: K >= 1 models trained at once, ``log_every`` steps per dispatch.

:func:`train_population` is the only training loop; :func:`train` is its population of
one. Members share one compiled program (:mod:`toolkit.population.program`: the pure
``train_step`` of :mod:`toolkit.train_step`, vmapped over members, or unbatched for one)
and may differ in seed, loss, learning rate, weight decay and training labels.

Why it is fast on small models:
- The whole training set lives on device; each batch is a gather of on-device indices, and
  each epoch's shuffle is drawn once on device (:mod:`toolkit.shuffle`), so no
  host-to-device copy happens inside the loop.
- ``steps_per_dispatch`` steps run inside one ``jax.lax.scan`` per dispatch, so Python
  overhead is paid once per chunk, not per step.
- Programs are kept across calls (:func:`toolkit.population.program.program_for`): runs
  that differ only in seed reuse the traced and compiled chunks.

Randomness comes from one typed key per member, ``jax.random.key(seed)`` split into
``init``, ``data`` (shuffle) and ``step`` (dropout, folded with the step number), so a
member's numbers depend on its own config and seed only, and a run resumed from any
step ends as an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit import shuffle
from toolkit.data import Dataset, Split
from toolkit.population import checks, sharding
from toolkit.population.program import member_hyperparameters, member_keys, program_for
from toolkit.progress import progress_printer
from toolkit.run import Run  # re-exported
from toolkit.train_config import (  # the config and its builders: re-exported
    TrainConfig,
    build_loss,
    build_model,
    build_optimizer,
    json_ready,
    learning_rate_schedule,
    validate,
)
from toolkit.train_step import (  # TrainState and the init/step builders: re-exported
    TrainState,
    data_mesh,
    init_state,
    make_train_step,
    resolve_devices,
)
from toolkit.writers import MetricWriter, TensorBoardWriter, check_logdir, curve_scalars

__all__ = [
    "Run",
    "TrainConfig",
    "TrainState",
    "build_loss",
    "build_model",
    "build_optimizer",
    "data_mesh",
    "init_state",
    "json_ready",
    "make_train_step",
    "train",
    "train_population",
    "validate",
]

Callback = Callable[[list[dict[str, float] | None], list[TrainState]], None]


def train(
    dataset: Dataset | Split,
    *,
    num_classes: int | None = None,
    verbose: bool = True,
    callback: Callable[[dict, TrainState], None] | None = None,
    initial_state: TrainState | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    validation: Split | None = None,
    logdir: str | os.PathLike | None = None,
    writer: MetricWriter | None = None,
    **config: Any,
) -> Run:
    """Trains one model on ``dataset.train`` and returns the :class:`Run`: the population
    of one of :func:`train_population`.

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

    ``validation`` (default: ``dataset.validation`` when ``dataset`` is a Dataset that has
    one, e.g. from ``tk.data.with_validation``) is evaluated every ``eval_every`` steps
    inside the training loop: curve rows at those steps get ``val_accuracy`` and
    ``val_nll``, and ``run.best`` is the run at its best validation accuracy.

    ``logdir`` writes the curve as TensorBoard event files there (train loss and accuracy,
    validation accuracy and NLL, learning rate; :class:`toolkit.writers.TensorBoardWriter`);
    ``writer`` sends it to any :class:`toolkit.writers.MetricWriter` instead (wandb, MLflow,
    ...), which the caller closes.
    """
    unknown = sorted(set(config) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        valid = ", ".join(f.name for f in dataclasses.fields(TrainConfig))
        raise TypeError(f"train() got an unknown option {unknown[0]!r}; valid options: {valid}")
    cfg = TrainConfig(**config)
    split, num_classes = checks.split_and_classes(dataset, num_classes)
    validate(cfg, len(split))
    checks.check_training_data(split, num_classes, cfg)
    validation = checks.validation_of(dataset, validation, num_classes)
    validation_set = checks.validation_split(validation, None, 1, split, num_classes)
    devices = resolve_devices(devices, cfg.batch_size)
    mode = "data" if len(devices) > 1 else "none"
    placement = sharding.plan(1, mode, cfg.batch_size, devices=devices)

    if logdir is not None and writer is not None:
        raise ValueError("pass logdir= (TensorBoard) or writer=, not both")
    if writer is not None and not isinstance(writer, MetricWriter):
        raise TypeError(
            f"writer must have write_scalars(step, scalars) and close(), got {writer!r}"
        )
    owned = None if logdir is None else TensorBoardWriter(check_logdir(logdir))
    writer = owned or writer
    learning_rate = None if writer is None else learning_rate_schedule(cfg)

    member_callback = None
    if callback is not None or writer is not None:

        def member_callback(rows, states):
            if writer is not None and rows[0] is not None:  # None: a diverged run's rows
                writer.write_scalars(rows[0]["step"], curve_scalars(rows[0], learning_rate))
            if callback is not None:
                callback(rows[0], states[0])

    try:
        (run,) = _train(
            split,
            num_classes,
            (cfg,),
            placement,
            labels=None,
            validation=validation_set,
            initial_states=None if initial_state is None else [initial_state],
            verbose=verbose,
            callback=member_callback,
        )
    finally:
        if owned is not None:
            owned.close()
    return run


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
    validation: Split | None = None,
    validation_labels: Any = None,
) -> list[Run]:
    """Trains one model per config, all in one compiled program; returns one Run each.

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
      validation: a validation Split evaluated every ``eval_every`` steps (as in
        :func:`train`; default ``dataset.validation``); ``validation_labels`` optional
        (K, Nv) per-member labels for it (e.g. each member's label-noise draw).

    Everything is checked before compute. A member whose loss or gradients stop being
    finite is frozen at its last finite state (``TrainState.diverged_step``) while the
    others go on; ``run.info["diverged_step"]`` reports it, and its Run holds its state
    and curve as of the chunk it diverged in. Training stops early only when every member
    has diverged. ``run.info`` also has ``population_size``, ``member``,
    ``population_sharding`` (the mode used) and ``wall_time_s`` (the whole population's).

    Under ``vmap`` XLA may fuse a member's ops differently from its population of one, and
    Adam turns a 1-ulp difference in a near-zero gradient into a step of about the learning
    rate: members are the same computation as their runs alone, not reproductions of
    their trajectories to the last digit (compare executors over seeds).
    """
    configs = tuple(configs)
    split, num_classes = checks.split_and_classes(dataset, num_classes)
    checks.validate_members(configs, len(split))
    checks.check_training_data(split, num_classes, configs[0])  # members share model, augment
    size = len(configs)
    labels = None
    if train_labels is not None:
        labels = checks.member_labels(train_labels, size, split, num_classes)
    if initial_states is not None and len(initial_states) != size:
        raise ValueError(f"initial_states has {len(initial_states)} states for {size} members")
    validation = checks.validation_of(dataset, validation, num_classes)
    validation_set = checks.validation_split(
        validation, validation_labels, size, split, num_classes
    )
    placement = sharding.plan(size, shard, configs[0].batch_size)
    return _train(
        split,
        num_classes,
        configs,
        placement,
        labels=labels,
        validation=validation_set,
        initial_states=initial_states,
        verbose=verbose,
        callback=callback,
    )


def _train(
    split: Split,
    num_classes: int,
    configs: tuple[TrainConfig, ...],
    placement: sharding.Placement,
    *,
    labels: np.ndarray | None,
    validation: tuple[Split, np.ndarray | None] | None,
    initial_states: Sequence[TrainState] | None,
    verbose: bool,
    callback: Callback | None,
) -> list[Run]:
    """The training loop of checked members on ``placement``."""
    size = len(configs)
    cfg = configs[0]
    order = list(placement.order)
    slots = tuple(configs[i] for i in order)
    host_hyper = member_hyperparameters(slots)
    program = program_for(slots, num_classes, placement, host_hyper)
    hyper = placement.stacked(host_hyper)
    init_keys, data_keys, step_keys = member_keys(np.asarray([c.seed for c in slots], np.uint32))
    data_keys, step_keys = placement.stacked(data_keys), placement.stacked(step_keys)
    x_all = placement.replicated(split.x)
    y = placement.replicated(split.y) if labels is None else placement.stacked(labels[order])
    # Initialised on one device (see Program.init), then placed like the rest.
    example_x = jnp.asarray(split.x[: cfg.batch_size])
    keep_best = validation is not None
    if keep_best:
        val_split, val_labels = validation
        x_val = placement.replicated(val_split.x)
        y_val = (
            placement.replicated(val_split.y)
            if val_labels is None
            else placement.stacked(val_labels[order])
        )
        run_validation = program.validate(len(val_split), member_labels=val_labels is not None)
    if initial_states is None:
        state = placement.stacked(program.init(init_keys, host_hyper, example_x, best=keep_best))
        step = 0
    else:
        init = functools.partial(program.init, best=keep_best)
        abstract = jax.eval_shape(init, init_keys, host_hyper, example_x)
        step = checks.start_step(initial_states)
        initial_states = [checks.matching_layout(s, abstract) for s in initial_states]
        checks.check_layout(initial_states, abstract)
        # On the host first: saved states may live on other devices than one another.
        host = jax.device_get([initial_states[i] for i in order])
        state = placement.stacked(program.stack(host))

    stopped: dict[int, TrainState] = {
        k: s for k, s in enumerate(initial_states or ()) if int(s.diverged_step) >= 0
    }
    curves: list[list[dict[str, float]]] = [[] for _ in range(size)]
    epochs = shuffle.EpochPermutations(data_keys, len(split), cfg.batch_size)
    report = progress_printer(verbose, cfg.steps, size)
    start = time.perf_counter()
    while step < cfg.steps and len(stopped) < size:
        n = min(cfg.steps_per_dispatch, cfg.steps - step)
        run_chunk = program.chunk(n, member_labels=labels is not None)
        t0 = time.perf_counter()
        perms = epochs.for_chunk(step, n)
        best = state.best  # not carried through the chunk's steps
        state, metrics = run_chunk(state.replace(best=None), hyper, y, perms, step_keys, x_all)
        state = state.replace(best=best)
        if keep_best and cfg.validates_at(step + n):
            state, val_metrics = run_validation(state, y_val, x_val)
            metrics = {**metrics, **val_metrics}
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
            row.update({name: float(metrics[name][k]) for name in _VALIDATION if name in metrics})
            curves[k].append(row)
            rows.append(row)
        report([row for row in rows if row is not None], step, n / elapsed)
        newly = [k for k in range(size) if k not in stopped and diverged[k] >= 0]
        if newly or callback is not None:
            current = program.unstack(state)
            states = [stopped.get(k, current[k]) for k in range(size)]
            stopped.update({k: states[k] for k in newly})
            if callback is not None:
                callback(rows, states)
    wall = time.perf_counter() - start

    runs = []
    final = program.unstack(state)
    for k, config in enumerate(configs):
        member_state = stopped.get(k, final[k])
        diverged_step = int(member_state.diverged_step)
        info = {
            "wall_time_s": wall,
            "num_train": len(split),
            "num_classes": num_classes,
            "input_shape": tuple(split.x.shape[1:]),
            "population_size": size,
            "member": k,
            "device_kind": placement.devices[0].device_kind,
            "device_count": placement.device_count,
            "population_sharding": placement.mode,
            "global_batch_size": config.batch_size,
            "backend": jax.default_backend(),
            "diverged_step": diverged_step if diverged_step >= 0 else None,
            "best_step": None if member_state.best is None else int(member_state.best.step),
        }
        runs.append(Run(config, program.model, member_state, curves[k], info))
    return runs


_VALIDATION = ("val_accuracy", "val_nll")  # curve columns of a validated chunk
