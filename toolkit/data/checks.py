"""Checks of a split's values before a model trains on it.

A NaN or inf input, a label outside ``[0, num_classes)`` or a ``num_classes`` below the
largest label does not fail on its own: the loss turns non-finite (reported as divergence)
or the label is silently clipped by the one-hot encoding. :func:`check_split` refuses them
before any compute, naming the value, how many examples have it and the first one. Each
check is one vectorised pass over the arrays; the detail is computed only on failure.
"""

from __future__ import annotations

import warnings

import numpy as np

from toolkit.data.dataset import Split

__all__ = ["check_finite", "check_split"]


def check_split(
    split: Split, num_classes: int, *, role: str = "training", images: bool = False
) -> None:
    """Raises ValueError when ``split`` cannot be trained or validated on as it is.

    Refused: ``num_classes`` that is not an int >= 2; a non-finite input (how many, and the
    index of the first); labels outside ``[0, num_classes)``, named, with ``num_classes``
    (a mismatch when they exceed it); for ``role="training"``, labels of a single class
    (nothing to learn). ``images``: the model reads (H, W, C) examples as images (2-D
    kernels or patches), so square 2-D examples (H, W) lacking the channel axis, which it
    would read as a sequence of H steps with W channels, are refused too; other 2-D
    examples (multi-channel sequences, or non-square images) get a warning saying how they
    are read.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes}")
    check_finite(split.x, role)
    _check_labels(split.y, int(num_classes), role)
    y = split.y
    if role == "training" and y.size and not (y != y[0]).any():
        raise ValueError(
            f"the {role} labels are all class {y[0]} ({y.size} examples): a classifier "
            f"needs at least 2 classes to learn from"
        )
    shape = split.x.shape[1:]
    if images and len(shape) == 2:
        read_as = (
            f"{role} examples have shape {shape}: the model reads them as sequences of "
            f"{shape[0]} steps with {shape[1]} channels; images need the channel axis, "
            f"x[..., None] (shape {(*shape, 1)})"
        )
        if shape[0] == shape[1]:  # square: images without a channel axis
            raise ValueError(read_as)
        # Not square: multi-channel sequences or images; said, not refused.
        warnings.warn(read_as, UserWarning, stacklevel=3)


def check_finite(x: np.ndarray, role: str) -> None:
    """Raises ValueError when inputs ``x`` (examples along axis 0) hold NaN or inf, naming
    ``role`` (e.g. 'training'), how many values and examples and the first. One pass."""
    x = np.asarray(x)
    if x.dtype.kind not in "fc":
        return
    if np.isfinite(x).all():
        return
    bad = ~np.isfinite(x)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    examples = int(bad.reshape(len(x), -1).any(axis=1).sum())
    kinds = "NaN" if np.isnan(x).any() else "inf"
    if kinds == "NaN" and np.isinf(x).any():
        kinds = "NaN and inf"
    raise ValueError(
        f"the {role} inputs have {int(bad.sum())} non-finite values ({kinds}) in {examples} "
        f"of {len(x)} examples, the first at x[{', '.join(map(str, first))}] = "
        f"{x[first]}; inputs must be finite (drop or impute those examples)"
    )


def _check_labels(y: np.ndarray, num_classes: int, role: str) -> None:
    if not y.size or (y.min() >= 0 and y.max() < num_classes):
        return
    outside = (y < 0) | (y >= num_classes)
    values = np.unique(y[outside])
    shown = ", ".join(map(str, values[:10])) + (", ..." if values.size > 10 else "")
    first = int(np.flatnonzero(outside)[0])
    message = (
        f"the {role} labels must be class indices in [0, {num_classes}) (num_classes="
        f"{num_classes}); got {shown} in {int(outside.sum())} of {y.size} examples (the "
        f"first at index {first})"
    )
    if values[0] >= 0:
        message += (
            f": the labels go up to {int(y.max())}, so num_classes={num_classes} does not "
            f"match them; pass num_classes={int(y.max()) + 1} if there are that many "
            f"classes, else fix those labels"
        )
    raise ValueError(message)
