"""Grey photo patches from the two images scikit-learn ships (``load_sample_images``).

A patch is a crop of ``(k H, k W)`` pixels from ``china.jpg`` or ``flower.jpg`` (427 x 640)
at a random position, with ``k`` drawn from ``scales``, reduced to ``(H, W)`` by averaging
``k x k`` blocks (exact area downsampling), converted to grey with the ITU-R BT.601 luma
weights (those of PIL's ``convert("L")``) and scaled to [0, 1], then replicated over the C
channels. Natural-image texture that is neither digits nor noise: a far-OOD set for images.
"""

from __future__ import annotations

import jax
import numpy as np

from toolkit.data.axes import numpy_rng
from toolkit.ood.base import register

__all__ = ["LUMA_WEIGHTS", "grey_sample_images", "sklearn_patches"]

LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def grey_sample_images() -> tuple[np.ndarray, ...]:
    """scikit-learn's sample photographs as float64 grey images in [0, 1]."""
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    return tuple(img.astype(np.float64) @ np.asarray(LUMA_WEIGHTS) / 255.0 for img in images)


@register(
    "sklearn_patches",
    applies_to=("image",),
    description="Grey patches of scikit-learn's two sample photos, block-averaged to H x W.",
)
def sklearn_patches(
    shape: tuple[int, ...], *, key: jax.Array, num: int, scales: tuple[int, ...] = (1, 2, 3, 4)
) -> np.ndarray:
    """``num`` patches (num, H, W, C) in [0, 1]; ``k`` uniform over the ``scales`` that fit."""
    height, width, channels = shape
    images = grey_sample_images()
    fits = [
        k
        for k in scales
        if all(k * height <= g.shape[0] and k * width <= g.shape[1] for g in images)
    ]
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in scales) or not fits:
        raise ValueError(
            f"scales must be positive ints with k*H, k*W inside the 427x640 photos; got "
            f"{scales!r} for H, W = {height}, {width}"
        )
    rng = numpy_rng(key)
    out = np.empty((num, height, width), dtype=np.float32)
    for n in range(num):
        grey = images[rng.integers(len(images))]
        k = fits[rng.integers(len(fits))]
        top = rng.integers(grey.shape[0] - k * height + 1)
        left = rng.integers(grey.shape[1] - k * width + 1)
        crop = grey[top : top + k * height, left : left + k * width]
        out[n] = crop.reshape(height, k, width, k).mean(axis=(1, 3))
    return np.repeat(out[..., None], channels, axis=-1)
