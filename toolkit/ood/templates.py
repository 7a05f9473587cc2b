"""MNIST-1D-style sequences made from shapes that are not among its 10 digit templates.

Each example picks a template family uniformly, builds a 12-sample template, normalizes it
as ``mnist1d.data.get_templates`` does (zero mean, unit std, start at 0, divided by 6) and
passes it through the generator's own ``mnist1d.transform.transform`` (padding, dilation,
amplitude scale, translation, corr and iid noise, shear, subsampling) with the published
arguments. The result is standardized by the clean dataset's raw mean and std, so only the
shape is new. Every template correlates at most ``MAX_CORRELATION`` with any digit template.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from toolkit.data.axes import numpy_rng
from toolkit.data.mnist1d_raw import generator_namespace, global_numpy_seed, raw_stats
from toolkit.data.offline import validate_mnist1d_args
from toolkit.ood.base import register

__all__ = [
    "MAX_CORRELATION",
    "TEMPLATE_FAMILIES",
    "digit_correlation",
    "mnist1d_unseen_templates",
    "normalize_template",
]

TEMPLATE_LEN = 12
MAX_CORRELATION = 0.85
_T = np.linspace(0.0, 1.0, TEMPLATE_LEN)


def _smooth(rng: np.random.Generator) -> np.ndarray:
    """A random smooth curve, redrawn until it is unlike every digit template."""
    from scipy.ndimage import gaussian_filter1d  # imported on use: slow, needed only here

    while True:
        shape = gaussian_filter1d(rng.standard_normal(TEMPLATE_LEN), 1.5)
        if digit_correlation(shape) <= MAX_CORRELATION:
            return shape


# name -> template maker (a fixed shape, or a random one from the generator it is given)
TEMPLATE_FAMILIES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "ramp_up": lambda rng: _T.copy(),
    "ramp_down": lambda rng: 1.0 - _T,
    "step_up": lambda rng: (_T >= 0.5).astype(np.float64),
    "step_down": lambda rng: (_T < 0.5).astype(np.float64),
    "sine": lambda rng: np.sin(4.0 * np.pi * _T),
    "square": lambda rng: (np.arange(TEMPLATE_LEN) // 3 % 2).astype(np.float64),
    "zigzag": lambda rng: (np.arange(TEMPLATE_LEN) % 2).astype(np.float64),
    "spike": lambda rng: np.exp(-(((_T - 0.5) / 0.08) ** 2)),
    "smooth": _smooth,
}


def normalize_template(shape: np.ndarray) -> np.ndarray:
    """``mnist1d.data.get_templates``' normalization: whiten, start at 0, divide by 6."""
    x = shape - shape.mean()
    x = x / x.std()
    return (x - x[0]) / 6.0


def digit_correlation(shape: np.ndarray) -> float:
    """Largest Pearson correlation between ``shape`` and the 10 MNIST-1D digit templates."""
    from mnist1d.data import get_templates

    digits = get_templates()["x"]
    return max(float(np.corrcoef(shape, d)[0, 1]) for d in digits)


@register(
    "mnist1d_unseen_templates",
    applies_to=("sequence",),
    description="MNIST-1D generator applied to non-digit templates (ramps, steps, waves).",
)
def mnist1d_unseen_templates(
    shape: tuple[int, ...],
    *,
    key: jax.Array,
    num: int,
    families: tuple[str, ...] = tuple(TEMPLATE_FAMILIES),
) -> np.ndarray:
    """``num`` sequences of length ``L = shape[0]`` (replicated over ``C = shape[1]``).

    Generated with the published MNIST-1D arguments and ``final_seq_length = L``, then
    standardized by that clean dataset's raw mean and std (``raw_stats``).
    """
    unknown = sorted(set(families) - set(TEMPLATE_FAMILIES))
    if unknown or not families:
        raise ValueError(
            f"unknown template family {unknown[0] if unknown else None!r}; "
            f"valid: {', '.join(TEMPLATE_FAMILIES)}"
        )
    from mnist1d.data import get_templates
    from mnist1d.transform import transform

    length = shape[0]
    mean, std = raw_stats(final_seq_length=length)
    args = generator_namespace(validate_mnist1d_args(final_seq_length=length))
    t = get_templates()["t"]
    rng = numpy_rng(key)
    picks = rng.choice(len(families), size=num)
    templates = [normalize_template(TEMPLATE_FAMILIES[families[i]](rng)) for i in picks]
    with global_numpy_seed(int(rng.integers(2**31 - 1))):
        xs = np.stack([transform(template, t, args)[0] for template in templates])
    x = ((xs - mean) / std).astype(np.float32)
    if len(shape) == 2:
        x = np.repeat(x[..., None], shape[1], axis=-1)
    return x
