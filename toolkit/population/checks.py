"""Checks of what a population starts from: its members' labels and resumed states."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from toolkit import augment, models
from toolkit.data import Dataset, Split
from toolkit.data.checks import check_split
from toolkit.population.grouping import check_population
from toolkit.train_config import TrainConfig, validate
from toolkit.train_step import TrainState

__all__ = [
    "check_layout",
    "check_training_data",
    "matching_layout",
    "member_labels",
    "split_and_classes",
    "start_step",
    "validate_members",
    "validation_of",
    "validation_split",
]


def member_labels(
    labels: Any, num_members: int, split: Split, num_classes: int, *, name: str = "train_labels"
) -> np.ndarray:
    """``labels`` (the argument ``name``) checked: integer class indices of shape (K, N)."""
    array = np.asarray(labels)
    expected = (num_members, len(split))
    if array.shape != expected:
        raise ValueError(
            f"{name} must have shape (members, examples) = {expected}, got {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be integer class indices, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got values in [{array.min()}, {array.max()}]"
        )
    return array.astype(np.int32)


def _no_leaves(tree: Any) -> bool:
    return not jax.tree.leaves(tree)


def matching_layout(state: TrainState, abstract: TrainState) -> TrainState:
    """``state`` in the layout of ``abstract`` (a member's or the population's: the tree
    structure is the same).

    An optimizer that applies weight decay as L2 chains ``add_decayed_weights`` (whose state
    has no arrays) in front of itself when the decay is not a concrete 0, so a member with
    decay 0 has that extra empty state inside a population whose members vary the decay,
    and not alone. Adding or dropping it is exact for such a member (it adds 0 * p), so a
    state saved in either layout resumes in the other; any other difference is returned
    unchanged for :func:`check_layout` to report.
    """
    want, have = abstract.opt_state, state.opt_state
    if jax.tree.structure(have) == jax.tree.structure(want):
        return state
    chained = lambda tree: isinstance(tree, tuple) and len(tree) == 2 and _no_leaves(tree[0])
    if chained(want) and jax.tree.structure(want[1]) == jax.tree.structure(have):
        return state.replace(opt_state=(want[0], have))
    if chained(have) and jax.tree.structure(have[1]) == jax.tree.structure(want):
        return state.replace(opt_state=have[1])
    return state


def check_layout(states: Sequence[TrainState], abstract: TrainState) -> None:
    """Checks per-member states against the population's stacked layout ``abstract``."""
    want = jax.tree.structure(abstract)
    for index, state in enumerate(states):
        got = jax.tree.structure(state)
        if got != want:
            raise ValueError(
                f"initial_states[{index}] does not match this population's TrainState "
                f"layout.\nexpected {want}\ngot      {got}"
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


def validation_split(
    validation: Split | None, labels: Any, size: int, split: Split, num_classes: int
) -> tuple[Split, np.ndarray | None] | None:
    """The validation split checked against the training split, and the per-member labels
    (K, Nv) if given."""
    if validation is None:
        if labels is not None:
            raise ValueError("validation_labels were given without a validation split")
        return None
    if not isinstance(validation, Split):
        raise TypeError(f"validation must be a Split, got {type(validation).__name__}")
    if len(validation) == 0:
        raise ValueError("the validation split is empty")
    if validation.x.shape[1:] != split.x.shape[1:]:
        raise ValueError(
            f"validation examples have shape {validation.x.shape[1:]}, training examples "
            f"{split.x.shape[1:]}"
        )
    if labels is None:  # validation.y itself: checked by toolkit.data.check_split
        return validation, None
    labels = member_labels(labels, size, validation, num_classes, name="validation_labels")
    return validation, labels


def validation_of(
    dataset: Dataset | Split, validation: Split | None, num_classes: int
) -> Split | None:
    """The validation split given, else the Dataset's own (None for a bare Split); its
    inputs and labels checked."""
    if validation is None and isinstance(dataset, Dataset):
        validation = dataset.validation
    if isinstance(validation, Split):
        check_split(validation, num_classes, role="validation")
    return validation


def split_and_classes(dataset: Dataset | Split, num_classes: int | None) -> tuple[Split, int]:
    """The training split and the class count (the Dataset's unless given)."""
    if isinstance(dataset, Dataset):
        return dataset.train, dataset.num_classes if num_classes is None else num_classes
    if not isinstance(dataset, Split):
        raise TypeError(f"dataset must be a Dataset or a Split, got {type(dataset).__name__}")
    if num_classes is None:
        raise ValueError("pass num_classes= when training on a bare Split")
    return dataset, num_classes


def validate_members(configs: Sequence[TrainConfig], num_train: int) -> None:
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


def check_training_data(split: Split, num_classes: int, config: TrainConfig) -> None:
    """The training split fit for ``config``: its values (:func:`toolkit.data.check_split`,
    channel axis included for a model that reads images) and its examples' kind for the
    config's augmentation."""
    check_split(split, num_classes, images=models.reads_images(config.model))
    augment.check_config(config, split.x.shape[1:])
