"""Checks of what a population starts from: its members' labels and resumed states."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit.data import Split
from toolkit.train_step import TrainState

__all__ = ["check_layout", "member_labels", "start_step"]


def member_labels(labels: Any, num_members: int, split: Split, num_classes: int) -> np.ndarray:
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


def check_layout(states: Sequence[TrainState], abstract: TrainState) -> None:
    """Checks per-member states against the population's stacked layout ``abstract``."""
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


def start_step(states: Sequence[TrainState]) -> int:
    """The step the healthy members resume from; they must agree (shared batches)."""
    steps = {i: int(s.step) for i, s in enumerate(states) if int(s.diverged_step) < 0}
    if len(set(steps.values())) > 1:
        raise ValueError(
            f"healthy initial_states must share one step (they advance together), got "
            f"steps {steps} by member"
        )
    return next(iter(steps.values()), 0)
