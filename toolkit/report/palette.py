"""One colour per loss and per architecture, the same in every figure of a report.

Colours are keyed on the registry: the sorted names of ``tk.losses`` (``tk.models``) take
slots 0..R-1 of a fixed list of qualitative colours, so a loss has the same colour in
every figure and in every report. A legend label that is not a bare registry entry (a loss
with a swept key, ``gce(q=0.7), label_noise=0.2``, or a second hyperparameter setting of
one loss) takes one of the slots after R, in sorted order over all labels the palette is
built for. The map is injective over those labels, so no two entries of one legend share
a colour as long as the figure draws from one palette.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["COLORS", "loss_colors", "model_colors", "palette"]


def _qualitative() -> list[tuple]:
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    # The ten saturated hues first, then their light partners: neighbouring slots (adjacent
    # names) differ in hue, not only in lightness.
    first = [tab20[i] for i in range(0, 20, 2)] + [tab20[i] for i in range(1, 20, 2)]
    return first + list(colormaps["tab20b"].colors) + list(colormaps["tab20c"].colors)


COLORS: tuple[tuple, ...] = tuple(_qualitative())
"""tab20 (saturated hues, then light), then tab20b and tab20c: 60 distinct colours."""


def _base(label: str) -> str:
    return label.split("(", 1)[0].split(",", 1)[0].strip()


def palette(labels: Iterable[str], registry: Sequence[str]) -> dict[str, tuple]:
    """``label -> RGB``: a bare registry entry (``name`` or ``name(hparams)``, alone among
    ``labels`` with that name) gets its slot in ``sorted(registry)``; every other label a
    slot after the registry's, in sorted order.

    Raises:
      ValueError: more distinct labels need a colour than :data:`COLORS` holds.
    """
    labels = sorted(set(labels))
    slots = {name: i for i, name in enumerate(sorted(registry))}
    bare = [label for label in labels if "," not in label.split(")")[-1] and _base(label) in slots]
    counts: dict[str, int] = {}
    for label in bare:
        counts[_base(label)] = counts.get(_base(label), 0) + 1
    out, extra = {}, len(slots)
    for label in labels:
        if label in bare and counts[_base(label)] == 1:
            out[label] = COLORS[slots[_base(label)]]
        else:
            if extra >= len(COLORS):
                raise ValueError(
                    f"{len(labels)} labels need more than the {len(COLORS)} distinct colours "
                    f"(registry of {len(slots)} names): {labels[:5]}..."
                )
            out[label] = COLORS[extra]
            extra += 1
    return out


def loss_colors(labels: Iterable[str]) -> dict[str, tuple]:
    """:func:`palette` over ``tk.losses``' names (labels are ``series_labels``)."""
    from toolkit.losses import losses

    return palette(labels, losses.names())


def model_colors(names: Iterable[str]) -> dict[str, tuple]:
    """:func:`palette` over ``tk.models``' names."""
    from toolkit.models import models

    return palette(names, models.names())
