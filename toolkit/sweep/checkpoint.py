"""Orbax checkpoints of a run's latest :class:`~toolkit.training.TrainState`.

Restores go against an abstract state (``jax.eval_shape`` of ``init_state``), so the
result is a real ``TrainState`` with the optimizer's own state types, not nested dicts.
Orbax finalises a step by renaming its temporary directory, so a crash mid-save leaves
no visible step (the leftover temporary directory is removed when that step is saved
again); a step whose files were damaged afterwards fails to restore, and the previous kept
step is tried instead (two steps are kept for that reason). Restores never unpickle:
orbax reads JSON metadata and tensorstore arrays.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from toolkit.quiet import absl_errors_only
from toolkit.train_step import with_best
from toolkit.training import TrainConfig, TrainState, build_model, build_optimizer, init_state

__all__ = ["Checkpoints", "abstract_state"]


def abstract_state(
    config: TrainConfig, num_classes: int, input_shape: tuple[int, ...], *, best: bool = False
):
    """The TrainState's structure, shapes and dtypes, without computing anything; with
    ``best``, that of a run trained with a validation split (``TrainState.best``)."""
    model = build_model(config, num_classes)
    tx = build_optimizer(config)
    example = jax.ShapeDtypeStruct((config.batch_size, *input_shape), jnp.float32)

    def init(x):
        state = init_state(model, tx, x, key=jax.random.key(0))
        return with_best(state) if best else state

    return jax.eval_shape(init, example)


def saved_layouts(
    config: TrainConfig, num_classes: int, input_shape: tuple[int, ...], *, best: bool = False
) -> list:
    """The layouts a checkpoint of ``config``'s run can have: its own, and where the two
    differ, the one it has as a member of a population that varies weight decay (an
    optimizer applying the decay as L2 then chains its decay step even for a member whose
    decay is 0; ``toolkit.population.checks.matching_layout`` converts between them).
    ``best``: the run keeps its best-validation state (it has a validation split)."""
    own = abstract_state(config, num_classes, input_shape, best=best)
    varied = dataclasses.replace(config, weight_decay=1.0)  # any non-zero decay: same layout
    member = abstract_state(varied, num_classes, input_shape, best=best)
    if jax.tree.structure(member) == jax.tree.structure(own):
        return [own]
    return [own, member]


class Checkpoints:
    """The checkpoints of one run (an orbax ``CheckpointManager`` keeping the last two)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).absolute()
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=2, create=True, enable_async_checkpointing=False
        )
        self._manager: ocp.CheckpointManager | None = None

    @property
    def manager(self) -> ocp.CheckpointManager:
        if self._manager is None:
            self._manager = ocp.CheckpointManager(self.directory, options=self._options)
        return self._manager

    def steps(self) -> list[int]:
        return list(self.manager.all_steps()) if self.directory.exists() else []

    def save(self, state: TrainState) -> None:
        """Saves ``state`` under its step (a step already saved is left as it is)."""
        step = int(state.step)
        if step in self.steps():
            return
        with absl_errors_only():  # orbax logs every save
            self.manager.save(step, args=ocp.args.StandardSave(state))
            self.manager.wait_until_finished()

    def _read(self, step: int, layouts: Sequence[TrainState], then: str) -> TrainState | None:
        """Step ``step`` restored into the first of ``layouts`` it fits, else None."""
        for layout in layouts:
            try:
                with absl_errors_only():  # orbax logs every save
                    return self.manager.restore(step, args=ocp.args.StandardRestore(layout))
            except Exception as error:  # orbax/tensorstore raise several types for bad files
                failure = error
        warnings.warn(
            f"{self.directory}: checkpoint step {step} is unreadable "
            f"({type(failure).__name__}: {str(failure)[:120]}){then}",
            stacklevel=3,
        )
        return None

    def restore(
        self,
        abstract: TrainState | Sequence[TrainState],
        *,
        step: int | None = None,
        at_most: int | None = None,
    ) -> TrainState | None:
        """The newest step (``<= at_most`` if given) that restores cleanly into ``abstract``
        (or into one of several layouts, :func:`saved_layouts`), or None.

        A step that fails to restore (truncated or damaged files) is deleted with a
        warning, so the next save does not collide with it. With ``step``, only that step
        is tried and nothing is deleted (None if it is missing or unreadable): for
        evaluating a finished run, where an older step would be the wrong model.
        """
        layouts = list(abstract) if isinstance(abstract, list | tuple) else [abstract]
        if step is not None:
            return self._read(step, layouts, "") if step in self.steps() else None
        for newest in sorted(self.steps(), reverse=True):
            if at_most is not None and newest > at_most:
                continue
            state = self._read(newest, layouts, "; trying an older one")
            if state is not None:
                return state
            shutil.rmtree(self.directory / str(newest), ignore_errors=True)
            self.manager.reload()
        return None

    def drop_after(self, step: int) -> None:
        """Deletes the steps after ``step`` (a resume from ``step`` will save them anew)."""
        for later in [s for s in self.steps() if s > step]:
            self.manager.delete(later)

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None
