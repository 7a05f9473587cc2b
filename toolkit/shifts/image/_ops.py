"""Building blocks shared by the image shifts: checks, registration, filters and resampling.

Linear filters whose size and weights are fixed at trace time (Gaussian blur, Sobel,
box resizing) are written as constant (H, H) and (W, W) matrices applied on both sides of
each image, ``M_h @ x @ M_w^T``, with the boundary rule of ``scipy.ndimage`` folded into
the matrix. That is one small matmul per axis on device, it needs no padding logic per
image, and it matches ``scipy.ndimage.correlate1d`` for any kernel length.

Resampling is bilinear (``jax.scipy.ndimage.map_coordinates`` with ``order=1``), in the
(row, col) convention of ``scipy.ndimage.affine_transform``: an output pixel ``o`` reads
the input at ``matrix @ o + offset``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from toolkit.shifts.base import check_severity, register

__all__ = [
    "MNIST_SIZE",
    "affine_warp",
    "centred_offset",
    "check_batch",
    "check_key",
    "filter2d",
    "filter_matrix",
    "gaussian_blur",
    "gaussian_weights",
    "image_shift",
    "next_pow2",
    "normal",
    "per_example",
    "pixel_grid",
    "pixel_scale",
    "poisson",
    "sample",
    "uniform",
]

# MNIST-C's parameters are in pixels of a 28x28 image; other sizes scale lengths by size / 28.
MNIST_SIZE = 28
_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes on accelerators: filters stay exact


def check_batch(x, name: str) -> jax.Array:
    """An (N, H, W, C) floating batch as a jax array, or a clear error naming the shape."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(
            f"image shift {name!r} needs a batch of shape (N, H, W, C), got shape {shape}; "
            "add the batch and channel axes, e.g. x[None, ..., None]"
        )
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"image shift {name!r} needs floating images in [0, 1], got dtype {dtype}; "
            "convert e.g. uint8 with x.astype('float32') / 255"
        )
    return jnp.asarray(x)


def check_key(key, name: str) -> None:
    """Keys are typed scalars (``jax.random.key(seed)``); vmap over keys for several."""
    dtype = getattr(key, "dtype", None)
    if dtype is None or not jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        raise TypeError(
            f"image shift {name!r} needs a typed key from jax.random.key(seed), "
            f"got {type(key).__name__} with dtype {dtype}"
        )
    if key.shape != ():
        raise ValueError(
            f"image shift {name!r} needs a single key of shape (), got shape {key.shape}; "
            "use jax.vmap over keys to draw several corrupted copies"
        )


def image_shift(name: str, description: str) -> Callable[[Callable], Callable]:
    """Registers ``fn(x, *, key, severity, **hparams)`` as an image shift with shared checks.

    The registered function validates severity, batch and key before any compute, returns
    ``x`` itself at severity 0, and clips the result to [0, 1] in the input dtype, so each
    shift body only computes the corruption for severities 1..5 in float32.
    """

    def decorator(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def shift(x, *, key, severity, **hparams):
            check_severity(severity)
            x_in = check_batch(x, name)
            check_key(key, name)
            if severity == 0:
                return x
            out = fn(x_in.astype(jnp.float32), key=key, severity=severity, **hparams)
            return jnp.clip(out, 0.0, 1.0).astype(x_in.dtype)

        register(name, applies_to="image", description=description)(shift)
        return shift

    return decorator


def per_example(fn: Callable, x: jax.Array, key: jax.Array, batch_size: int | None = None):
    """``fn(key_i, x_i)`` over the batch with keys from ``jax.random.split(key, N)``.

    ``batch_size`` runs the batch in chunks with ``lax.map`` to bound memory for shifts
    that build large per-example intermediates (fog's plasma map).
    """
    keys = jax.random.split(key, x.shape[0])
    if batch_size is None:
        return jax.vmap(fn)(keys, x)
    return jax.lax.map(lambda kx: fn(*kx), (keys, x), batch_size=batch_size)


# Random draws are made flat and reshaped: with the default partitionable threefry, a
# multi-dimensional draw under vmap compiles several times slower on XLA:CPU (seconds
# per shift) than the same number of values drawn as a vector.


def uniform(
    key: jax.Array, shape: tuple[int, ...], minval: float = 0.0, maxval: float = 1.0
) -> jax.Array:
    """``jax.random.uniform`` float32 of ``shape``, drawn as a flat vector."""
    flat = jax.random.uniform(key, (math.prod(shape),), jnp.float32, minval, maxval)
    return flat.reshape(shape)


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.normal`` float32 of ``shape``, drawn as a flat vector."""
    return jax.random.normal(key, (math.prod(shape),), jnp.float32).reshape(shape)


def poisson(key: jax.Array, lam: jax.Array, max_rate: float) -> jax.Array:
    """Poisson counts (float32) with rates ``0 <= lam <= max_rate``, by inversion.

    Counts how many terms of the CDF ``F(k) = sum_{i<=k} e^-lam lam^i / i!`` a uniform u
    exceeds, for k < ``max_rate + 10 sqrt(max_rate) + 10`` (the tail beyond has mass below
    1e-20): exact sampling by sequential search (Devroye 1986, sec. X.3.3). One uniform per
    value in a ``fori_loop`` compiles faster on XLA:CPU than
    ``jax.random.poisson``'s rejection sampler; ``max_rate`` must stay below 87 so that
    ``e^-lam`` does not underflow in float32.
    """
    if not 0 < max_rate < 87:
        raise ValueError(f"max_rate must be in (0, 87), got {max_rate}")
    u = uniform(key, lam.shape)
    pmf = jnp.exp(-lam)

    def term(k, carry):
        count, cdf, pmf = carry
        count = count + (u > cdf).astype(jnp.float32)
        pmf = pmf * lam / (k + 1).astype(jnp.float32)
        return count, cdf + pmf, pmf

    terms = int(max_rate + 10 * math.sqrt(max_rate) + 10)
    count, _, _ = jax.lax.fori_loop(0, terms, term, (jnp.zeros_like(lam), pmf, pmf))
    return count


def pixel_scale(x: jax.Array) -> float:
    """Lengths given for 28x28 MNIST scale by ``min(H, W) / 28`` (static)."""
    return min(x.shape[1], x.shape[2]) / MNIST_SIZE


# -- linear filters as matrices -------------------------------------------------------


def _reflect(j: int, n: int) -> int:
    # scipy's 'reflect' (half-sample symmetric): d c b a | a b c d | d c b a
    j %= 2 * n
    return j if j < n else 2 * n - 1 - j


_BOUNDARY: dict[str, Callable[[int, int], int | None]] = {
    "constant": lambda j, n: j if 0 <= j < n else None,
    "nearest": lambda j, n: min(max(j, 0), n - 1),
    "reflect": _reflect,
    "wrap": lambda j, n: j % n,
}


def filter_matrix(n: int, weights: tuple[float, ...], mode: str) -> np.ndarray:
    """(n, n) matrix ``M`` with ``M @ v == scipy.ndimage.correlate1d(v, weights, mode=mode)``.

    ``weights`` has odd length and is centred; ``mode`` is one of constant (zeros),
    nearest, reflect, wrap with scipy's meaning.
    """
    if mode not in _BOUNDARY:
        raise ValueError(f"unknown boundary mode {mode!r}; valid: {', '.join(_BOUNDARY)}")
    if len(weights) % 2 != 1:
        raise ValueError(f"filter weights need an odd length, got {len(weights)}")
    radius = len(weights) // 2
    matrix = np.zeros((n, n))
    for i in range(n):
        for t, w in enumerate(weights):
            j = _BOUNDARY[mode](i + t - radius, n)
            if j is not None:
                matrix[i, j] += w
    return matrix


def gaussian_weights(sigma: float, truncate: float = 4.0) -> tuple[float, ...]:
    """scipy's 1-D Gaussian: radius ``int(truncate * sigma + 0.5)``, weights summing to 1."""
    radius = int(truncate * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return tuple(w / w.sum())


def filter2d(x: jax.Array, mh: np.ndarray, mw: np.ndarray) -> jax.Array:
    """``M_h @ x @ M_w^T`` over the H and W axes of (..., H, W, C) images."""
    mh = jnp.asarray(mh, jnp.float32)
    mw = jnp.asarray(mw, jnp.float32)
    return jnp.einsum("ij,...jkc,lk->...ilc", mh, x, mw, precision=_HIGHEST)


def gaussian_blur(
    x: jax.Array, sigma: float | tuple[float, float], mode: str = "nearest"
) -> jax.Array:
    """``scipy.ndimage.gaussian_filter(x, sigma, mode=mode, truncate=4)`` over H and W.

    ``sigma`` is one value for both axes or ``(sigma_h, sigma_w)``; 0 leaves that axis
    alone, as in scipy. ``mode="nearest"`` is skimage.filters.gaussian's default, used by
    MNIST-C.
    """
    h, w = x.shape[-3], x.shape[-2]
    sigma_h, sigma_w = (sigma, sigma) if isinstance(sigma, int | float) else sigma

    def matrix(n: int, s: float) -> np.ndarray:
        return filter_matrix(n, gaussian_weights(float(s)), mode) if s > 0 else np.eye(n)

    return filter2d(x, matrix(h, sigma_h), matrix(w, sigma_w))


# -- resampling -----------------------------------------------------------------------


def sample(
    img: jax.Array, rows: jax.Array, cols: jax.Array, *, mode: str = "constant", cval: float = 0.0
) -> jax.Array:
    """Bilinear samples of one (H, W, C) image at float ``rows``/``cols`` of any shape S.

    Returns (*S, C). ``mode`` is as in ``jax.scipy.ndimage.map_coordinates``.
    """

    def one_channel(channel):
        return map_coordinates(channel, [rows, cols], order=1, mode=mode, cval=cval)

    return jax.vmap(one_channel, in_axes=-1, out_axes=-1)(img)


def pixel_grid(h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Row and column coordinates of every pixel, each (h, w) float32."""
    return jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )


def affine_warp(
    img: jax.Array,
    matrix: jax.Array,
    offset: jax.Array,
    *,
    mode: str = "constant",
    cval: float = 0.0,
) -> jax.Array:
    """Bilinear affine resampling of one (H, W, C) image, keeping its size.

    The output at pixel ``o = (row, col)`` is the input at ``matrix @ o + offset``, as in
    ``scipy.ndimage.affine_transform(img, matrix, offset, order=1, mode=mode, cval=cval)``.
    """
    rows, cols = pixel_grid(img.shape[0], img.shape[1])
    matrix = jnp.asarray(matrix, jnp.float32)
    offset = jnp.asarray(offset, jnp.float32)
    src_r = matrix[0, 0] * rows + matrix[0, 1] * cols + offset[0]
    src_c = matrix[1, 0] * rows + matrix[1, 1] * cols + offset[1]
    return sample(img, src_r, src_c, mode=mode, cval=cval)


def centred_offset(matrix: jax.Array, h: int, w: int) -> jax.Array:
    """The offset that keeps the image centre ((h-1)/2, (w-1)/2) fixed under ``matrix``."""
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2], jnp.float32)
    return centre - jnp.asarray(matrix, jnp.float32) @ centre


def next_pow2(n: int) -> int:
    """The smallest power of two >= n."""
    return 1 << max(0, math.ceil(math.log2(n)))
