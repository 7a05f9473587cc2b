"""Fog (diamond-square plasma) and spatter (mud blobs), after MNIST-C and CIFAR-10-C.

Blur lengths are in pixels of a 28x28 image and scale by ``S = min(H, W) / 28``.

=======  =====================================================  ==============================
shift    parameter (MNIST-C, Mu & Gilmer 2019)                  severity 1..5
=======  =====================================================  ==============================
fog      (strength t, wibble decay): ``(x + t P) m / (m + t)``  (1.5,2) (2,2) (2.5,1.7)
         with P a plasma fractal in [0, 1], m = max(x)          (3,1.5) (3.5,1.4)
spatter  (blur sigma, threshold z, mask sigma): mud where    (4,1.89,.6) (3,1.06,.6)
         unit-variance blurred noise exceeds z; the blurred     (2,.71,.5) (2,.45,.5)
         blob mask (kept where >= 0.8) mixes in mud colour      (2,.20,.5)
=======  =====================================================  ==============================

fog: the plasma map is the diamond-square heightmap of MNIST-C/CIFAR-10-C
(``plasma_fractal``: wibble starts at 100, the random term is ``wibble * U(-wibble,
wibble)``, wrap-around neighbours, min-max normalised), generated per image in JAX with
side ``8 * next_pow2(max(H, W))`` and cropped to the top-left (H, W): 256 for 28x28 as in
MNIST-C (CIFAR-10-C used a 32 map for 32x32, i.e. coarser fog). MNIST-C's strengths
are 1.5, 2, 2.5, 2.5, 3: with equal or close t the change of decay moves the distance to
the clean image up or down at random, so severities 4-5 use t = 3 and 3.5. spatter: MNIST-C's mud
variant (liquid ~ N(loc, std) per pixel, Gaussian blur, threshold, blurred blob mask kept
where >= 0.8, ``x (1 - m) + colour m``) with colour 63/255 for gray images and
CIFAR-10-C's mud brown (63, 42, 20)/255 for RGB. Adapted: the blurred noise is divided by
its exact per-pixel std, so the threshold is a z-score and the mud covers the same share
of the image at every size (MNIST-C's ``nearest`` padding inflates the variance near the
border of small images: 34% mud at 8x8 against 8% at 28x28 for severity 1). Severities
1-3 take MNIST-C's blur and mask sigmas and its interior z-scores (z = (threshold - loc) /
(std sum(w^2)), w the 1-D Gaussian weights, with its loc .65, std .3 and thresholds .69,
.68, .68); MNIST-C's severities 4-5 (sigma 1, mask sigma 1.5) cover less of a 28x28
image than its severity 3, so here 4-5 continue the first three. Mean mud share at 28x28
(400 images): here 2.5, 12, 23, 32, 41%; MNIST-C's code 8.7, 17, 26, 13.5, 20% (its
severities 1-3 are higher than here because of the border variance).

``levels="mnist_c"`` (fog and spatter) uses MNIST-C's own five settings unchanged instead:
fog (1.5, 2) (2, 2) (2.5, 1.7) (2.5, 1.5) (3, 1.4); spatter (loc, std, sigma, threshold,
mask sigma) (.65,.3,4,.69,.6) (.65,.3,3,.68,.6) (.65,.3,2,.68,.5) (.65,.3,1,.65,1.5)
(.67,.4,1,.65,1.5), thresholding the blurred N(loc, std^2) noise as MNIST-C does (no
per-pixel normalisation; lengths still scale by S). At 28x28 these are MNIST-C's
corruptions in distribution; the MNIST-C family (``tk.shifts.MNIST_C``) uses them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from toolkit.shifts.image._ops import (
    filter_matrix,
    gaussian_blur,
    gaussian_weights,
    image_shift,
    next_pow2,
    normal,
    per_example,
    pixel_scale,
    uniform,
)

__all__ = [
    "FOG",
    "FOG_MNIST_C",
    "LEVELS",
    "SPATTER",
    "SPATTER_MNIST_C",
    "fog",
    "plasma_fractal",
    "plasma_from_uniforms",
    "spatter",
]

FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (3.0, 1.5), (3.5, 1.4))
SPATTER = ((4.0, 1.89, 0.6), (3.0, 1.06, 0.6), (2.0, 0.71, 0.5), (2.0, 0.45, 0.5), (2.0, 0.20, 0.5))
# MNIST-C's corruptions.py, verbatim: fog (strength, wibble decay); spatter (loc, std,
# blur sigma, threshold, mask sigma)
FOG_MNIST_C = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
SPATTER_MNIST_C = (
    (0.65, 0.3, 4.0, 0.69, 0.6),
    (0.65, 0.3, 3.0, 0.68, 0.6),
    (0.65, 0.3, 2.0, 0.68, 0.5),
    (0.65, 0.3, 1.0, 0.65, 1.5),
    (0.67, 0.4, 1.0, 0.65, 1.5),
)
LEVELS = ("toolkit", "mnist_c")
_MUD_RGB = (63 / 255, 42 / 255, 20 / 255)
_FOG_CHUNK = 64  # images per chunk: bounds the (chunk, map, map) intermediates of fog


def plasma_fractal(key: jax.Array, mapsize: int, wibbledecay: float) -> jax.Array:
    """(mapsize, mapsize) diamond-square heightmap in [0, 1] (MNIST-C's ``plasma_fractal``).

    ``mapsize`` must be a power of two. See :func:`plasma_from_uniforms`.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    return plasma_from_uniforms(uniform(key, (mapsize, mapsize), -1.0, 1.0), wibbledecay)


def plasma_from_uniforms(u: jax.Array, wibbledecay: float) -> jax.Array:
    """Diamond-square heightmap from U(-1, 1) draws ``u`` of shape (M, M), M a power of 2.

    Level l (step s = M / 2^l, half h = s / 2) sets the square centres (h, h) mod s to
    the mean of their four diagonal neighbours at distance h, then the diamond centres
    (0, h) and (h, 0) mod s to the mean of their four axis neighbours at distance h, all
    wrapping around the edges, each plus ``wibble * U(-wibble, wibble)`` with wibble =
    100 / wibbledecay^l; the result is min-max normalised. Every point is set exactly
    once, so ``wibble^2 u[point]`` is MNIST-C's fresh draw for it. The levels run in a
    ``fori_loop`` over the full map with masks: unrolled strided updates or rolls compile
    about ten times slower on XLA:CPU.
    """
    m = u.shape[0]
    index = jnp.arange(m)

    def both_ways(a, d, axis):  # a[i - d] + a[i + d] along axis, wrapping
        return jnp.roll(a, d, axis=axis) + jnp.roll(a, -d, axis=axis)

    def level(lvl, heights):
        step = jnp.right_shift(m, lvl)
        half = step // 2
        wibble = 100.0 * jnp.power(jnp.float32(wibbledecay), -lvl.astype(jnp.float32))
        jitter = wibble * wibble * u
        centre, on_grid = index % step == half, index % step == 0
        squares = centre[:, None] & centre[None, :]
        diamonds = (on_grid[:, None] & centre[None, :]) | (centre[:, None] & on_grid[None, :])
        diagonal = both_ways(both_ways(heights, half, 0), half, 1)
        heights = jnp.where(squares, diagonal / 4 + jitter, heights)
        axial = both_ways(heights, half, 0) + both_ways(heights, half, 1)
        return jnp.where(diamonds, axial / 4 + jitter, heights)

    heights = jax.lax.fori_loop(0, m.bit_length() - 1, level, jnp.zeros((m, m), jnp.float32))
    heights = heights - heights.min()
    return heights / heights.max()


def _check_levels(name: str, levels: str) -> None:
    if levels not in LEVELS:
        raise ValueError(f"{name} levels must be one of {LEVELS}, got {levels!r}")


@image_shift("fog", "Add diamond-square plasma fog and rescale (MNIST-C fog).")
def fog(x: jax.Array, *, key: jax.Array, severity: int, levels: str = "toolkit") -> jax.Array:
    """``(x + t P) m / (m + t)`` with P a fresh plasma map per image and m = max(x)."""
    _check_levels("fog", levels)
    strength, decay = (FOG if levels == "toolkit" else FOG_MNIST_C)[severity - 1]
    h, w = x.shape[1], x.shape[2]
    mapsize = 8 * next_pow2(max(h, w))

    def one(k, img):
        plasma = plasma_fractal(k, mapsize, decay)[:h, :w, None]
        top = jnp.max(img)
        return (img + strength * plasma) * top / (top + strength)

    return per_example(one, x, key, batch_size=_FOG_CHUNK)


def _noise_std(n: int, sigma: float) -> np.ndarray:
    """(n,) std along one axis of white noise after the 1-D Gaussian blur (nearest mode)."""
    return np.sqrt((filter_matrix(n, gaussian_weights(sigma), "nearest") ** 2).sum(axis=1))


@image_shift("spatter", "Mud blobs from thresholded blurred noise (MNIST-C spatter).")
def spatter(x: jax.Array, *, key: jax.Array, severity: int, levels: str = "toolkit") -> jax.Array:
    """Covers blobs where blurred unit-variance noise exceeds z with mud colour."""
    _check_levels("spatter", levels)
    s = pixel_scale(x)
    h, w, c = x.shape[1:]
    if levels == "toolkit":
        sigma, z, mask_sigma = SPATTER[severity - 1]
        std = np.outer(_noise_std(h, sigma * s), _noise_std(w, sigma * s))[..., None]
    else:  # blurred N(loc, std^2) > threshold  <=>  blurred N(0, 1) > (threshold - loc) / std
        loc, spread, sigma, threshold, mask_sigma = SPATTER_MNIST_C[severity - 1]
        z, std = (threshold - loc) / spread, np.ones((h, w, 1))
    colour = jnp.asarray(_MUD_RGB if c == 3 else (63 / 255,) * c, jnp.float32)
    inv_std = jnp.asarray(1.0 / std, jnp.float32)

    def one(k, img):
        liquid = gaussian_blur(normal(k, (h, w, 1)), sigma * s) * inv_std
        blob = (liquid > z).astype(jnp.float32)
        mask = gaussian_blur(blob, mask_sigma * s)
        mask = jnp.where(mask < 0.8, 0.0, mask)
        return img * (1.0 - mask) + colour * mask

    return per_example(one, x, key)
