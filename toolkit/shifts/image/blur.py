"""Blur and resolution loss: glass_blur, motion_blur, pixelate.

Lengths are in pixels of a 28x28 image and scale by ``S = min(H, W) / 28``.

===========  =================================================  ============================
shift        parameter                                          severity 1..5
===========  =================================================  ============================
glass_blur   (sigma, max displacement, iterations), MNIST-C's   (0.7,1,2) (0.9,2,2) (1,2,3)
             with iterations made non-decreasing: blur,         (1.1,3,3) (1.5,4,3)
             jitter pixels, blur again
motion_blur  (radius, sigma) of ImageMagick's one-sided         (10,3) (15,5) (15,8)
             motion blur at angle U(-45, 45) deg, MNIST-C       (15,12) (20,15)
pixelate     resolution fraction f (PIL BOX down, BOX up),      .6 .5 .4 .3 .2
             MNIST-C / ImageNet-C's with .2 for .25             [CIFAR-10-C .95 .9 .85 .75 .65]
===========  =================================================  ============================

glass_blur blurs gray images (C = 1) along the row axis (axis 0 of an image) only, as
MNIST-C does: it calls ``skimage.filters.gaussian(x, sigma, multichannel=True)`` on a 2-D
(28, 28) image, so skimage takes the last axis (columns) for channels and blurs each
column: the jitter is smoothed only vertically and stays sharp along each row. Colour
images are blurred along both axes, what the same call does on an (H, W, 3) image.

Adaptations. glass_blur: MNIST-C swaps pixels one after another in a Python loop with
integer offsets in [-d, d); here, in each iteration, every pixel independently (with
probability 1/2, MNIST-C's coin) takes the value of the pixel at a uniform offset in
[-d S, d S]^2 rounded stochastically to whole pixels (so values move, and sub-pixel
reaches on 8x8 images still move some pixels), which stays vectorized. MNIST-C's
iteration counts (2, 1, 3, 2, 2) are replaced by their running maximum, as its severities
1-2 and 3-4 tie on 8x8 digits where the blur is sub-pixel; its uint8 rounding between the
steps is dropped. motion_blur: ImageMagick sums ``width = 2 radius + 1`` taps at rounded
offsets ``round(i (cos a, sin a))`` with weights ``exp(-i^2 / (2 sigma^2))``; here tap i
sits at ``i S (cos a, sin a)`` and is read bilinearly with edge clamping (ImageMagick's
default edge virtual pixels). pixelate: the output side is ``n_s = int(f_s H)`` (truncated,
as MNIST-C and ImageNet-C do: 16 pixels at 28x28 for f = .6), forced to fall by at least
one pixel per severity (``n_s <= n_{s-1} - 1``) and to leave room for one size per
remaining severity (``n_s >= 6 - s``, at least 1), so that small images still get five
distinct levels (8x8: 5, 4, 3, 2, 1; 28x28: 16, 14, 11, 8, 5; 32x32: 19, 16, 12, 9, 6).
As in MNIST-C, severity 1 at 28x28 (blocks of 1.75 pixels) is then farther from the clean
digit in mean absolute difference than severity 2 (whole 2-pixel blocks).
Severity 5 uses f = .2 rather than .25: at 28x28 that would be 7 pixels, whose whole
4-pixel blocks alias less than the 3.5-pixel blocks of severity 4 (8 pixels), so the
distance to the clean digit fell from severity 4 to 5 on about 1 batch of 8 digits in 5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from toolkit.shifts.image._ops import (
    filter2d,
    gaussian_blur,
    image_shift,
    per_example,
    pixel_grid,
    pixel_scale,
    sample,
    uniform,
)

__all__ = [
    "GLASS",
    "MOTION",
    "PIXELATE_FRACTION",
    "box_resize_matrix",
    "glass_blur",
    "motion_blur",
    "pixelate",
    "pixelate_sizes",
]

GLASS = ((0.7, 1.0, 2), (0.9, 2.0, 2), (1.0, 2.0, 3), (1.1, 3.0, 3), (1.5, 4.0, 3))
MOTION = ((10, 3.0), (15, 5.0), (15, 8.0), (15, 12.0), (20, 15.0))
PIXELATE_FRACTION = (0.6, 0.5, 0.4, 0.3, 0.2)


@image_shift("glass_blur", "Blur, jitter pixels locally, blur again (MNIST-C glass blur).")
def glass_blur(x: jax.Array, *, key: jax.Array, severity: int) -> jax.Array:
    """Gaussian blur (sigma S; gray images along rows only), local pixel jitter up to d S,
    the same blur again (MNIST-C's glass blur)."""
    sigma, delta, iterations = GLASS[severity - 1]
    s = pixel_scale(x)
    h, w = x.shape[1], x.shape[2]
    rows, cols = pixel_grid(h, w)

    def jitter(k, img):
        # per iteration and pixel: a coin, an offset (row, col) and two dither draws
        u = uniform(k, (iterations, 5, h, w))
        for coin, off_r, off_c, dither_r, dither_c in u:
            reach = (coin < 0.5).astype(jnp.float32) * (delta * s)
            # whole-pixel moves like MNIST-C's swaps (values move, not interpolated);
            # stochastic rounding keeps the mean reach of sub-pixel offsets (small images)
            d_row = jnp.floor(reach * (2.0 * off_r - 1.0) + dither_r)
            d_col = jnp.floor(reach * (2.0 * off_c - 1.0) + dither_c)
            img = sample(img, rows + d_row, cols + d_col, mode="nearest")
        return img

    # gray: MNIST-C's 2-D image read as (rows, channels) by multichannel=True, see above
    sigmas = (sigma * s, sigma * s if x.shape[3] > 1 else 0.0)
    blurred = gaussian_blur(x, sigmas)
    return gaussian_blur(per_example(jitter, blurred, key), sigmas)


def _motion_taps(radius: int, sigma: float) -> np.ndarray:
    i = np.arange(2 * radius + 1, dtype=np.float64)
    w = np.exp(-(i**2) / (2 * sigma**2))
    return w / w.sum()


@image_shift("motion_blur", "One-sided motion blur at a random angle (MNIST-C, ImageMagick).")
def motion_blur(x: jax.Array, *, key: jax.Array, severity: int) -> jax.Array:
    """``sum_i w_i x(p + i S (cos a, sin a))``, ``w_i ~ exp(-i^2 / 2 sigma^2)``, a ~ U(-45, 45)."""
    radius, sigma = MOTION[severity - 1]
    s = pixel_scale(x)
    weights = jnp.asarray(_motion_taps(radius, sigma), jnp.float32)
    steps = jnp.arange(2 * radius + 1, dtype=jnp.float32) * s
    rows, cols = pixel_grid(x.shape[1], x.shape[2])

    def one(k, img):
        angle = jax.random.uniform(k, (), jnp.float32, -45.0, 45.0) * (jnp.pi / 180)
        tap_r = rows[None] + steps[:, None, None] * jnp.sin(angle)
        tap_c = cols[None] + steps[:, None, None] * jnp.cos(angle)
        taps = sample(img, tap_r, tap_c, mode="nearest")  # (taps, H, W, C)
        return jnp.tensordot(weights, taps, axes=1, precision=jax.lax.Precision.HIGHEST)

    return per_example(one, x, key)


def _box_filter(t: float) -> float:
    return 1.0 if -0.5 < t <= 0.5 else 0.0


def box_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of PIL's ``Image.resize(..., BOX)`` along one axis.

    Pillow's ``precompute_coeffs``: output pixel ``o`` centred at ``(o + 0.5) s`` with
    ``s = n_in / n_out`` averages the input pixels whose centres fall in its box of width
    ``max(s, 1)``; upsampling therefore picks the nearest input pixel.
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    matrix = np.zeros((n_out, n_in))
    for o in range(n_out):
        centre = (o + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        for j in range(lo, hi):
            matrix[o, j] = _box_filter((j - centre + 0.5) / filterscale)
        total = matrix[o].sum()
        if total:
            matrix[o] /= total
    return matrix


def pixelate_sizes(n: int) -> tuple[int, ...]:
    """The side after downsampling at severities 1..5 for a side of ``n`` pixels."""
    sizes, prev = [], n
    for severity, f in enumerate(PIXELATE_FRACTION, start=1):
        room = len(PIXELATE_FRACTION) + 1 - severity  # one size left per remaining severity
        prev = max(1, min(max(int(f * n), room), prev - 1))
        sizes.append(prev)
    return tuple(sizes)


@image_shift("pixelate", "Downsample (PIL BOX) to 60%..20% of the side and back (pixelation).")
def pixelate(x: jax.Array, *, key: jax.Array, severity: int) -> jax.Array:
    """BOX-resize to (n_h, n_w) then BOX-resize back to (H, W), as PIL in CIFAR-10-C/MNIST-C."""
    del key  # deterministic
    h, w = x.shape[1], x.shape[2]
    n_h, n_w = pixelate_sizes(h)[severity - 1], pixelate_sizes(w)[severity - 1]
    mh = box_resize_matrix(n_h, h) @ box_resize_matrix(h, n_h)
    mw = box_resize_matrix(n_w, w) @ box_resize_matrix(w, n_w)
    return filter2d(x, mh, mw)
