"""On-the-fly shifts of standardized MNIST-1D-style sequences (N, L) or (N, L, C).

Each shift is ``fn(x, *, key, severity, **hparams) -> x`` (pure JAX, jit- and vmap-able,
``severity`` a static Python int, 0 = identity). Each wraps a jitted core that takes the
severity's parameter as a traced scalar, so eager calls compile once per shape for all
severities; (N, L) runs as (N, L, 1). Per-example randomness comes from
``jax.random.split(key, N)``; ``shuffle`` draws one permutation for the batch from ``key``.

Severity parameters are stated against the generator's defaults (Greydanus 2020,
``mnist1d.transform``). The generator works on a 72-sample grid (template_len 12 +
padding[-1] 60) and subsamples to final length 40, so one grid sample is 39/71 output
positions; its amplitudes are raw units, and the dataset is then divided by its raw std
``MNIST1D_RAW_STD`` (0.1547), so a raw amplitude ``a`` is ``a / 0.1547`` standardized units.

================  ================================================  ======================
shift             parameter at severity 1, 2, 3, 4, 5                generator default
================  ================================================  ======================
translation       shift by uniform 1..K positions, random sign,      max_translation 48 of
                  K = 0.05, 0.1, 0.2, 0.3, 0.5 x L (2 .. 20 at 40)   72 (0..26.7 of 40)
time_scale        resample in time about the centre by f or 1/f,     template width 12 of
                  f = 1.15, 1.3, 1.5, 1.75, 2.0                      12 + [36, 60] samples
linear_shear      add -/+ c linspace(-0.5, 0.5, L), c = 0.5, 1,      shear_scale 0.75: c in
                  1.5, 2, 3 x 0.375 raw (the generator's largest)    [-0.375, 0.375] raw
iid_noise         Gaussian, std 1, 2, 3, 4, 6 x 0.02 raw             iid_noise_scale 2e-2
correlated_noise  Gaussian smoothed over positions (sigma 2 grid     corr_noise_scale 0.25
                  samples = 1.1 positions), marginal std 0.25,       (in the padding only)
                  0.5, 0.75, 1, 1.5 x the generator's (0.25 x
                  0.3756 raw)
shuffle           permute 5, 10, 25, 50, 100 % of positions (one     shuffle_seq False
                  cycle through a random subset; 100 % moves all)    (True: one permutation)
================  ================================================  ======================

The parameters are set so that severities 1 to 5 lower the reference CNN's clean test
accuracy step by step for every shift, as the severities of MNIST-C (Mu & Gilmer 2019) do.

The generator's ``scale_coeff`` (0.4) is an amplitude factor in [0.8, 1.2]; the temporal
scale comes from the random padding. ``time_scale`` resamples in time (MNIST-C style); the
amplitude variant is the regenerated ``amplitude`` set (``toolkit.evaluation.regenerated``).
The names ``time_scale`` and ``linear_shear`` keep clear of the image shifts ``scale`` and
``shear`` in the one shift registry.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from toolkit.shifts.base import check_severity, register

__all__ = [
    "CORR_NOISE_MULTIPLE",
    "IID_NOISE_MULTIPLE",
    "MNIST1D_RAW_STD",
    "SCALE_FACTOR",
    "SHEAR_MULTIPLE",
    "SHUFFLE_FRACTION",
    "TRANSLATION_FRACTION",
    "correlated_noise",
    "iid_noise",
    "linear_shear",
    "shuffle",
    "time_scale",
    "translation",
]

# Raw std of the default MNIST-1D (seed 42, 5,000 samples): make_dataset divides by it.
MNIST1D_RAW_STD = 0.1546780
_SHEAR_MAX_RAW = 0.75 / 2  # shear_scale * max|U - 0.5|
_IID_RAW = 2e-2
_CORR_SIGMA_GRID = 2.0  # gaussian_filter(noise, 2) on the 72-sample grid

# Index = severity; entry 0 is the identity.
TRANSLATION_FRACTION = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
SCALE_FACTOR = (1.0, 1.15, 1.3, 1.5, 1.75, 2.0)
SHEAR_MULTIPLE = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
IID_NOISE_MULTIPLE = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
CORR_NOISE_MULTIPLE = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
SHUFFLE_FRACTION = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)

_TRANSLATION_MODES = ("wrap", "constant")


def _check(x: jax.Array, severity: int) -> int:
    """Validates the batch and severity before any compute; returns the severity."""
    if x.ndim not in (2, 3) or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"sequence shifts take a float batch of shape (N, L) or (N, L, C), got "
            f"shape {tuple(x.shape)} and dtype {x.dtype}"
        )
    return check_severity(severity)


def _on_3d(core, x: jax.Array, *args, **static) -> jax.Array:
    """Runs ``core`` on ``x`` as (N, L, C), returning the input's rank."""
    x = jnp.asarray(x)
    out = core(x if x.ndim == 3 else x[..., None], *args, **static)
    return out if x.ndim == 3 else out[..., 0]


def _per_example(row_fn, x: jax.Array, key: jax.Array) -> jax.Array:
    """Maps ``row_fn(row (L, C), key)`` over examples, each with its own split key."""
    return jax.vmap(row_fn)(x, jax.random.split(key, x.shape[0]))


def _sign(key: jax.Array, dtype) -> jax.Array:
    """+1 or -1 with equal probability: which direction a signed shift goes."""
    return jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(dtype)


@functools.partial(jax.jit, static_argnames=("mode",))
def _translation(x, key, most, mode):
    length = x.shape[1]

    def row(r, key):
        sign_key, size_key = jax.random.split(key)
        # 1 + floor(u K): one u per example at every severity, so sizes grow with severity.
        u = jax.random.uniform(size_key)
        size = jnp.minimum(1 + (u * most.astype(u.dtype)).astype(jnp.int32), most)
        src = jnp.arange(length) - jnp.where(jax.random.bernoulli(sign_key), size, -size)
        out = r[src % length]
        if mode == "constant":
            out = jnp.where(((src >= 0) & (src < length))[:, None], out, 0.0)
        return out

    return _per_example(row, x, key)


@register(
    "translation",
    applies_to="sequence",
    description="Shift along positions by up to 0.05..0.5 L, random direction (np.roll).",
)
def translation(x: jax.Array, *, key: jax.Array, severity: int, mode: str = "wrap") -> jax.Array:
    """``out[i] = x[(i - k) mod L]`` (``np.roll(x, k)``), ``|k|`` uniform in 1..K_s, random sign.

    ``K_s = max(1, round(TRANSLATION_FRACTION[severity] * L))``. ``mode="wrap"`` is circular,
    as the generator's own translation; ``"constant"`` fills the uncovered positions with 0,
    the standardized dataset mean. The magnitude is drawn up to ``K_s`` rather than fixed
    because a sequence decorrelates from itself after about 8 positions, so fixed shifts
    beyond that would all be equally far from the clean one. Ovadia et al. (2019) translate
    MNIST with ``np.roll`` the same way.
    """
    if mode not in _TRANSLATION_MODES:
        raise ValueError(f"mode must be one of {_TRANSLATION_MODES}, got {mode!r}")
    if _check(x, severity) == 0:
        return x
    most = max(1, round(TRANSLATION_FRACTION[severity] * x.shape[1]))
    return _on_3d(_translation, x, key, jnp.int32(most), mode=mode)


@functools.partial(jax.jit, static_argnames=("fill",))
def _time_scale(x, key, factor, fill):
    length = x.shape[1]
    pos = jnp.arange(length, dtype=x.dtype)
    centre = (length - 1) / 2

    def row(r, key):
        f = jnp.where(jax.random.bernoulli(key), factor, 1.0 / factor)
        src = centre + (pos - centre) / f
        interp = lambda col: jnp.interp(src, pos, col, left=fill, right=fill)
        return jax.vmap(interp, in_axes=1, out_axes=1)(r)

    return _per_example(row, x, key)


@register(
    "time_scale",
    applies_to="sequence",
    description="Resample in time about the centre by a factor 1.15..2 or its inverse.",
)
def time_scale(x: jax.Array, *, key: jax.Array, severity: int, fill: float = 0.0) -> jax.Array:
    """``out(i) = x(c + (i - c) / f)`` by linear interpolation, ``c = (L - 1) / 2``.

    ``f`` is ``SCALE_FACTOR[severity]`` (stretch) or its inverse (shrink), chosen per example;
    positions that fall outside the signal take ``fill`` (0 = the standardized mean), as the
    zero padding of MNIST-C's ``scale`` (Mu & Gilmer 2019).
    """
    if _check(x, severity) == 0:
        return x
    return _on_3d(
        _time_scale, x, key, jnp.asarray(SCALE_FACTOR[severity], x.dtype), fill=float(fill)
    )


@jax.jit
def _linear_shear(x, key, coeff):
    ramp = jnp.linspace(-0.5, 0.5, x.shape[1], dtype=x.dtype)[:, None]
    return _per_example(lambda r, key: r - _sign(key, r.dtype) * coeff * ramp, x, key)


@register(
    "linear_shear",
    applies_to="sequence",
    description="Add the generator's linear shear ramp, 0.5..3x its largest slope.",
)
def linear_shear(x: jax.Array, *, key: jax.Array, severity: int) -> jax.Array:
    """``out = x -/+ c_s * linspace(-0.5, 0.5, L)``, the form of ``mnist1d.transform.shear``.

    ``c_s = SHEAR_MULTIPLE[severity] * 0.375 / MNIST1D_RAW_STD`` standardized units, where
    0.375 raw = shear_scale 0.75 / 2 is the generator's largest coefficient; sign per example.
    """
    if _check(x, severity) == 0:
        return x
    coeff = SHEAR_MULTIPLE[severity] * _SHEAR_MAX_RAW / MNIST1D_RAW_STD
    return _on_3d(_linear_shear, x, key, jnp.asarray(coeff, x.dtype))


@jax.jit
def _iid_noise(x, key, sigma):
    return _per_example(lambda r, key: r + sigma * jax.random.normal(key, r.shape, r.dtype), x, key)


@register(
    "iid_noise",
    applies_to="sequence",
    description="Add i.i.d. Gaussian noise, std 1..6x the generator's iid_noise_scale.",
)
def iid_noise(x: jax.Array, *, key: jax.Array, severity: int) -> jax.Array:
    """``out = x + sigma_s N(0, 1)``, ``sigma_s = IID_NOISE_MULTIPLE[severity] * 0.02 / 0.1547``."""
    if _check(x, severity) == 0:
        return x
    sigma = IID_NOISE_MULTIPLE[severity] * _IID_RAW / MNIST1D_RAW_STD
    return _on_3d(_iid_noise, x, key, jnp.asarray(sigma, x.dtype))


def _gaussian_filter1d(x: np.ndarray, sigma: float, **options) -> np.ndarray:
    # Imported on use: scipy.ndimage is slow to import, which every process that
    # imports the shifts (a sweep worker, a notebook's first evaluate) would pay for nothing.
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x, sigma, **options)


def _corr_raw() -> float:
    """Marginal std of the generator's corr noise, 0.25 * ||g_2|| (about 0.25 * 0.3756)."""
    return 0.25 * float(np.linalg.norm(_gaussian_filter1d(np.eye(1, 41, 20)[0], _CORR_SIGMA_GRID)))


def _smoothing_matrix(length: int, sigma: float) -> np.ndarray:
    """(L, L + 2r) matrix: Gaussian smoothing (scipy's kernel, truncate 4) of a longer white
    noise, so the result is stationary up to the ends; rows scaled to unit output std."""
    radius = int(4.0 * sigma + 0.5)
    kernel = _gaussian_filter1d(np.eye(1, 2 * radius + 1, radius)[0], sigma, truncate=4.0)
    kernel /= np.linalg.norm(kernel)
    rows = np.zeros((length, length + 2 * radius))
    for i in range(length):
        rows[i, i : i + 2 * radius + 1] = kernel
    return rows


@functools.partial(jax.jit, static_argnames=("sigma",))
def _correlated_noise(x, key, std, sigma):
    smooth = jnp.asarray(_smoothing_matrix(x.shape[1], sigma), dtype=x.dtype)

    def row(r, key):
        eps = jax.random.normal(key, (smooth.shape[1], r.shape[1]), r.dtype)
        return r + std * (smooth @ eps)

    return _per_example(row, x, key)


@register(
    "correlated_noise",
    applies_to="sequence",
    description="Add Gaussian noise smoothed over positions, like MNIST-1D's corr noise.",
)
def correlated_noise(
    x: jax.Array, *, key: jax.Array, severity: int, sigma: float = _CORR_SIGMA_GRID * 39 / 71
) -> jax.Array:
    """``out = x + std_s * (g_sigma * eps) / ||g_sigma||``, eps white Gaussian noise.

    ``g_sigma`` is a Gaussian kernel of ``sigma`` positions (default: the generator's
    ``gaussian_filter(noise, 2)`` on its 72-sample grid, i.e. 2 x 39/71 output positions).
    ``std_s = CORR_NOISE_MULTIPLE[severity] * 0.25 * 0.3756 / 0.1547``: 0.25 * 0.3756 raw is
    the marginal std of the generator's corr noise. Unlike the generator, which fills only the
    zero padding, the noise is added at every position.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    if _check(x, severity) == 0:
        return x
    std = CORR_NOISE_MULTIPLE[severity] * _corr_raw() / MNIST1D_RAW_STD
    return _on_3d(_correlated_noise, x, key, jnp.asarray(std, x.dtype), sigma=float(sigma))


@jax.jit
def _shuffle(x, key, moved):
    length = x.shape[1]
    order = jax.random.permutation(key, length)
    rank = jnp.arange(length)
    # order[r] takes the value at order[r + 1] within the first `moved` ranks (one cycle).
    source = jnp.where(rank < moved, order[jnp.where(rank + 1 < moved, rank + 1, 0)], order)
    return x[:, jnp.zeros(length, jnp.int32).at[order].set(source)]


@register(
    "shuffle",
    applies_to="sequence",
    description="Permute 5..100% of positions by one fixed permutation (shuffled MNIST-1D).",
)
def shuffle(x: jax.Array, *, key: jax.Array, severity: int) -> jax.Array:
    """``out[:, i] = x[:, p(i)]`` for one permutation ``p`` of the positions, drawn from ``key``.

    ``p`` moves ``m = max(2, round(SHUFFLE_FRACTION[severity] * L))`` positions: a subset
    ``o_0..o_{m-1}`` (a prefix of one random order, so subsets nest across severities) with
    ``p(o_j) = o_{(j+1) mod m}``; at severity 5 every position moves, the spatially shuffled
    MNIST-1D (Greydanus 2020). The permutation is shared by the batch, as the generator's is
    by the dataset: reuse one key for every batch of a test set.
    """
    if _check(x, severity) == 0:
        return x
    moved = max(2, round(SHUFFLE_FRACTION[severity] * x.shape[1]))
    return _on_3d(_shuffle, x, key, jnp.int32(moved))
