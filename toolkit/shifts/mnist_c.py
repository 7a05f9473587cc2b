"""MNIST-C (Mu & Gilmer 2019) as released: its 15 corruptions, each at its fixed severity.

MNIST-C's ``corruptions.py`` gives every corruption five severities but builds the
published dataset with each function's default: shot_noise 5, impulse_noise 4, glass_blur
1, motion_blur 1, shear 2, scale 3, rotate 2, brightness 5, translate 3, fog 5, spatter 4;
stripe, dotted_line, zigzag and canny_edges have one setting. ``MNIST_C[name]`` is the
``tk.shifts`` severity and hyperparameters that give that setting: the same severity
where the toolkit's table is MNIST-C's, ``levels="mnist_c"`` for fog and spatter (whose
toolkit levels are reordered to grow monotonically), severity 5 for stripe (the outer
quarters) and canny_edges (the bare edge map), severity 1 (one mark) for the lines.

Remaining deliberate differences, each documented in its module: glass_blur's jitter is
vectorised (every pixel moves independently, offsets in [-d, d] instead of MNIST-C's
sequential swaps with offsets in [-d, d)) and skips the uint8 rounding between its steps;
motion_blur reads ImageMagick's taps bilinearly; dotted_line and zigzag draw their rows
from a uniform on [0, 27) instead of integers, and zigzag ends on its centre line;
brightness skips the RGB round trip (identical for gray images).
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["MNIST_C", "MnistCSetting"]


class MnistCSetting(NamedTuple):
    """The ``tk.shifts.apply`` arguments that give one MNIST-C corruption."""

    severity: int
    hparams: tuple[tuple[str, Any], ...] = ()


_OWN_LEVELS = (("levels", "mnist_c"),)

MNIST_C: dict[str, MnistCSetting] = {
    "shot_noise": MnistCSetting(5),
    "impulse_noise": MnistCSetting(4),
    "glass_blur": MnistCSetting(1),
    "motion_blur": MnistCSetting(1),
    "shear": MnistCSetting(2),
    "scale": MnistCSetting(3),
    "rotate": MnistCSetting(2),
    "brightness": MnistCSetting(5),
    "translate": MnistCSetting(3),
    "stripe": MnistCSetting(5),
    "fog": MnistCSetting(5, _OWN_LEVELS),
    "spatter": MnistCSetting(4, _OWN_LEVELS),
    "dotted_line": MnistCSetting(1),
    "zigzag": MnistCSetting(1),
    "canny_edges": MnistCSetting(5),
}
