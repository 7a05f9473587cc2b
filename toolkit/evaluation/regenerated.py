"""MNIST-1D test sets regenerated with shifted generator arguments: new draws of the data
generator, so evaluation sets (:class:`toolkit.evaluation.sets.Regenerated`), not shifts
(a shift is a function of the inputs alone).

``mnist1d_shifted_test("iid_noise", 3)`` runs the MNIST-1D generator (Greydanus 2020) with
``iid_noise_scale`` raised per ``REGENERATED_ARGS`` and returns its test split.

Comparability. ``make_dataset`` standardizes every dataset by its own scalar mean and std,
so a noisier set would be rescaled to unit variance and part of the shift would vanish.
With ``standardize="clean"`` (default) the shifted set is generated raw
(:mod:`toolkit.data.mnist1d_raw`) and standardized by the mean and std of the clean dataset
the model trained on (the published defaults updated by ``**generator_args``), i.e. it
lands in the model's input coordinates. ``standardize="self"`` returns the generator's own output
(``toolkit.data.offline.mnist1d_arrays``), standardized by the shifted set's statistics.

Pairing. With the same ``seed`` and ``num_samples`` as the clean set, the kinds that only
rescale a random draw consume the generator's random stream in the same order, so the
shifted test set holds the clean test examples with the larger perturbation (all kinds but
``translation``, whose ``np.random.choice(max_translation)`` may take other draws).

==============  =====================  ==============================================
kind            generator argument     severity 1, 2, 3, 4, 5 (default in brackets)
==============  =====================  ==============================================
translation     max_translation        54, 60, 64, 68, 72 (48); 72 = the whole grid
scale           padding (low)          30, 24, 18, 12, 6 (36); template up to 2/3 grid
amplitude       scale_coeff            0.8, 1.0, 1.2, 1.5, 1.8 (0.4)
shear           shear_scale            1.5, 2.25, 3, 4.5, 6 (0.75)
iid_noise       iid_noise_scale        0.04, 0.06, 0.08, 0.12, 0.16 (0.02)
corr_noise      corr_noise_scale       0.3, 0.375, 0.5, 0.625, 0.75 (0.25)
shuffle         shuffle_seq            severity 5 only: True (False)
==============  =====================  ==============================================

Severities are chosen so that the reference CNN's accuracy falls steadily from severity 1
to 5 for every kind, as MNIST-C and ImageNet-C grade corruptions (Mu & Gilmer 2019;
Hendrycks & Dietterich 2019).

``max_translation`` stops at the grid length 72 (template_len 12 + padding[-1] 60): the
generator's ``x[-k:]`` shift leaves the sequence in place for draws ``k >= 72``, so larger
values would only add unshifted examples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.data.dataset import Split
from toolkit.data.mnist1d_raw import raw_mnist1d, raw_stats
from toolkit.data.offline import mnist1d_arrays, validate_mnist1d_args
from toolkit.shifts.base import check_severity

__all__ = [
    "REGENERATED_ARGS",
    "STANDARDIZE",
    "check_regenerated",
    "mnist1d_shifted_test",
    "regenerated_kinds",
]


def _table(arg: str, values) -> dict[int, dict[str, Any]]:
    return {severity: {arg: value} for severity, value in enumerate(values, start=1)}


# kind -> severity -> generator arguments that replace the clean ones.
REGENERATED_ARGS: dict[str, dict[int, dict[str, Any]]] = {
    "translation": _table("max_translation", (54, 60, 64, 68, 72)),
    "scale": _table("padding", ([30, 60], [24, 60], [18, 60], [12, 60], [6, 60])),
    "amplitude": _table("scale_coeff", (0.8, 1.0, 1.2, 1.5, 1.8)),
    "shear": _table("shear_scale", (1.5, 2.25, 3.0, 4.5, 6.0)),
    "iid_noise": _table("iid_noise_scale", (0.04, 0.06, 0.08, 0.12, 0.16)),
    "corr_noise": _table("corr_noise_scale", (0.3, 0.375, 0.5, 0.625, 0.75)),
    "shuffle": {5: {"shuffle_seq": True}},
}
STANDARDIZE = ("clean", "self")


def regenerated_kinds() -> list[str]:
    return list(REGENERATED_ARGS)


def check_regenerated(kind: str, severity: int, standardize: str = "clean") -> None:
    """Raises ValueError unless ``kind`` has ``severity`` (0: the clean arguments)."""
    if kind not in REGENERATED_ARGS:
        raise ValueError(
            f"unknown regenerated MNIST-1D shift {kind!r}; valid: {', '.join(REGENERATED_ARGS)}"
        )
    check_severity(severity)
    table = REGENERATED_ARGS[kind]
    if severity != 0 and severity not in table:
        raise ValueError(
            f"regenerated shift {kind!r} has no severity {severity}; valid: 0, "
            f"{', '.join(map(str, table))}"
        )
    if standardize not in STANDARDIZE:
        raise ValueError(f"standardize must be one of {STANDARDIZE}, got {standardize!r}")


def _shifted_args(kind: str, severity: int, generator_args: dict[str, Any]) -> dict[str, Any]:
    check_regenerated(kind, severity)
    table = REGENERATED_ARGS[kind]
    if severity == 0:
        return {}
    clash = sorted(set(table[severity]) & set(generator_args))
    if clash:
        raise ValueError(
            f"generator argument {clash[0]!r} is set by the {kind!r} shift; pass the clean "
            f"dataset's other arguments only"
        )
    return table[severity]


def mnist1d_shifted_test(
    kind: str, severity: int, *, standardize: str = "clean", **generator_args
) -> Split:
    """The test split of MNIST-1D regenerated with ``REGENERATED_ARGS[kind][severity]``.

    Args:
      kind: one of ``regenerated_kinds()``.
      severity: 0 (the clean arguments) to 5; ``shuffle`` has only 5.
      standardize: ``"clean"`` returns ``(raw - mean_clean) / std_clean`` with the statistics
        of the clean dataset that ``generator_args`` describe (what the model trained on);
        ``"self"`` keeps the generator's own standardization by the shifted set's statistics.
      **generator_args: the clean dataset's generator arguments (published defaults if none),
        e.g. ``num_samples=500`` for a small set (its test split is the last
        ``1 - train_split`` = 20 %). The shifted set is these with the kind's arguments
        replaced, so both share ``seed`` and ``num_samples``.
    """
    if standardize not in STANDARDIZE:
        raise ValueError(f"standardize must be one of {STANDARDIZE}, got {standardize!r}")
    clean = validate_mnist1d_args(**generator_args)
    shifted = {**clean, **_shifted_args(kind, severity, generator_args)}
    if standardize == "self":
        arrays = mnist1d_arrays(**shifted)
        return Split(arrays["x_test"], arrays["y_test"])
    mean, std = raw_stats(**clean)
    raw = raw_mnist1d(**shifted)
    x = (raw.x[raw.num_train :] - mean) / std
    return Split(x.astype(np.float32), raw.y[raw.num_train :])
