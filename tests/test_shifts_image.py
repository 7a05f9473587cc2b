"""Image shifts: the contract for every registered image shift, and independent references.

Every shift is compiled once (a single jit holding its five severities on 8x8 digits and
on 28x28 MNIST digits, severity 3 vmapped over three keys, and severity 5 on a
non-square RGB batch); the contract tests read that one result. The reference tests
compare with numpy/scipy/PIL/matplotlib re-implementations of the published
definitions (MNIST-C, CIFAR-10-C, Ovadia et al. 2019) and with hand-computed cases.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image

import toolkit.shifts as shifts
from toolkit import data
from toolkit.shifts.image import (
    OVADIA_ROLLS,
    OVADIA_ROTATIONS,
    blur,
    canny,
    gaussian_blur,
    geometric,
    noise,
    overlay,
    photometric,
    roll_by,
    rotate_by,
    weather,
)
from toolkit.shifts.image._ops import filter_matrix

IMAGE_SHIFTS = [n for n in shifts.names() if shifts.shifts.entry(n).meta["applies_to"] == "image"]
MNIST_C = [
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
]
EXTRA = ["gaussian_noise", "contrast", "invert", "pixelate", "occlusion"]
DETERMINISTIC = {"scale", "brightness", "contrast", "invert", "pixelate", "stripe", "canny_edges"}
SEVERITIES = (1, 2, 3, 4, 5)
XLA_FAST_COMPILE = {"xla_backend_optimization_level": 0}
KEY = jax.random.key(0)
OTHER_KEY = jax.random.key(1)


@functools.cache
def digits8() -> jax.Array:
    return jnp.asarray(data.load("digits").test.x[:32])


@functools.cache
def digits28() -> jax.Array:
    return jnp.asarray(data.load("mnist5k").test.x[:32])


@functools.cache
def colour_batch() -> jax.Array:
    """Two smooth random RGB images, 12x16 (non-square)."""
    rng = np.random.default_rng(0)
    x = ndi.gaussian_filter(rng.uniform(0, 1, (2, 12, 16, 3)), sigma=(0, 2, 2, 0))
    return jnp.asarray((x - x.min()) / (x.max() - x.min()), jnp.float32)


class Runs(NamedTuple):
    sweep8: list[np.ndarray]  # severities 1..5 on 8x8 digits
    sweep28: list[np.ndarray]  # severities 1..5 on 28x28 digits
    vmapped: np.ndarray  # severity 3 on 8x8 digits for keys (KEY, KEY, OTHER_KEY)
    colour: np.ndarray  # severity 5 on the 12x16 RGB batch
    copies: np.ndarray  # severity 3 on four copies of one 8x8 digit
    eager: np.ndarray  # severity 3 on 8x8 digits without jit


@functools.cache
def runs(name: str) -> Runs:
    fn = shifts.get(name)

    def compiled(x8, x28, rgb, copies, key, keys):
        return (
            [fn(x8, key=key, severity=s) for s in SEVERITIES],
            [fn(x28, key=key, severity=s) for s in SEVERITIES],
            jax.vmap(lambda k: fn(x8, key=k, severity=3))(keys),
            fn(rgb, key=key, severity=5),
            fn(copies, key=key, severity=3),
        )

    keys = jnp.stack([KEY, KEY, OTHER_KEY])
    copies = jnp.repeat(digits8()[:1], 4, axis=0)
    args = (digits8(), digits28(), colour_batch(), copies, KEY, keys)
    # XLA's backend optimisations change speed, not results; skipping them halves the
    # compile time of this test file on a 2-core CPU
    executable = jax.jit(compiled).lower(*args).compile(XLA_FAST_COMPILE)
    sweep8, sweep28, vmapped, colour, copies = jax.device_get(executable(*args))
    eager = np.asarray(fn(digits8(), key=KEY, severity=3))
    return Runs(sweep8, sweep28, vmapped, colour, copies, eager)


def mean_distance(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def multiscale_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference averaged over Gaussian scales 0, 1 and 2 px (at 28x28).

    At pixel scale alone the distance saturates once strokes stop overlapping (shifts of
    more than a stroke width, long motion blur), so the larger severities of geometric
    shifts tie; at coarser scales it keeps growing with the displacement.
    """
    s = a.shape[1] / 28
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    total = mean_distance(a, b)
    for sigma in (1.0, 2.0):
        blurred = [
            ndi.gaussian_filter(v, (0, sigma * s, sigma * s, 0), mode="constant") for v in (a, b)
        ]
        total += mean_distance(*blurred)
    return total / 3


# -- registry and contract ------------------------------------------------------------


def test_registry_holds_the_mnist_c_and_extra_image_shifts():
    assert sorted(IMAGE_SHIFTS) == sorted(MNIST_C + EXTRA)
    for name in IMAGE_SHIFTS:
        assert shifts.shifts.entry(name).description


@pytest.mark.parametrize("name", IMAGE_SHIFTS)
def test_severity_zero_returns_the_input(name):
    x = digits8()
    assert shifts.get(name)(x, key=KEY, severity=0) is x
    assert shifts.apply(name, x, key=KEY, severity=0) is x


@pytest.mark.parametrize("name", IMAGE_SHIFTS)
def test_outputs_keep_shape_dtype_and_range(name):
    r = runs(name)
    for out, x in (
        [(o, digits8()) for o in r.sweep8]
        + [(o, digits28()) for o in r.sweep28]
        + [(r.colour, colour_batch())]
    ):
        assert out.shape == x.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert mean_distance(r.colour, colour_batch()) > 1e-3  # severity 5 changes RGB images


@pytest.mark.parametrize("name", IMAGE_SHIFTS)
@pytest.mark.parametrize("size", [8, 28])
def test_distance_to_clean_grows_with_severity(name, size):
    r = runs(name)
    x, sweep = (digits8(), r.sweep8) if size == 8 else (digits28(), r.sweep28)
    dist = [multiscale_distance(out, np.asarray(x)) for out in sweep]
    assert dist[0] > 1e-3, dist
    if name == "pixelate" and size == 28:
        # MNIST-C's int(28 * .6) = 16 pixels: its 1.75-pixel blocks alias more than the
        # whole 2-pixel blocks of severity 2 (14 pixels); the rest still grows
        assert dist[1] < dist[0] < dist[2], dist
        dist = dist[1:]
    assert all(a < b for a, b in itertools.pairwise(dist)), dist


@pytest.mark.parametrize("name", IMAGE_SHIFTS)
def test_keys_jit_and_vmap(name):
    r = runs(name)
    same_a, same_b, other = r.vmapped
    np.testing.assert_array_equal(same_a, same_b)  # deterministic given the key
    np.testing.assert_allclose(same_a, r.sweep8[2], atol=1e-5)  # vmap over keys = one key
    np.testing.assert_allclose(r.eager, r.sweep8[2], atol=1e-4)  # jit = eager
    if name in DETERMINISTIC:
        np.testing.assert_array_equal(other, same_a)
        np.testing.assert_array_equal(r.copies, np.repeat(r.copies[:1], 4, axis=0))
    else:
        assert np.abs(other - same_a).max() > 1e-2
        # each example draws its own randomness: copies of one digit do not all come out
        # alike (shear and rotate only draw a sign, so some copies may match)
        assert max(np.abs(r.copies[i] - r.copies[0]).max() for i in (1, 2, 3)) > 1e-2


def test_apply_rejects_bad_severity_rank_key_and_dtype():
    x = digits8()
    with pytest.raises(ValueError, match=r"severity must be an int in 0..5.*6"):
        shifts.apply("rotate", x, key=KEY, severity=6)
    with pytest.raises(ValueError, match=r"applies to image data.*\(4, 40\)"):
        shifts.apply("rotate", jnp.zeros((4, 40)), key=KEY, severity=1)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        shifts.get("rotate")(jnp.zeros((4, 40)), key=KEY, severity=1)
    with pytest.raises(TypeError, match="typed key"):
        shifts.get("rotate")(x, key=jax.random.PRNGKey(0), severity=1)
    with pytest.raises(TypeError, match="floating"):
        shifts.get("invert")(jnp.zeros((1, 8, 8, 1), jnp.uint8), key=KEY, severity=1)


# -- geometric: scipy.ndimage and numpy references -------------------------------------


def test_ovadia_sweeps():
    assert OVADIA_ROTATIONS == (15, 30, 45, 60, 75, 90, 105, 120, 135, 150, 165, 180)
    assert OVADIA_ROLLS == (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26)


def test_rotate_by_multiples_of_90_are_rot90():
    rotate = jax.jit(rotate_by)  # degrees traced: one compile for the sweep
    for x in (digits8(), digits28()):
        for degrees, k in ((90, 1), (180, 2), (270, 3), (-90, 3)):
            expected = np.rot90(np.asarray(x), k=k, axes=(1, 2))
            np.testing.assert_allclose(rotate(x, degrees), expected, atol=1e-5)


def test_rotate_by_matches_scipy_rotate():
    x = np.asarray(digits28())
    for degrees in (15, 30, 135):
        expected = ndi.rotate(x, degrees, axes=(1, 2), reshape=False, order=1, mode="constant")
        np.testing.assert_allclose(rotate_by(x, degrees), expected, atol=1e-4)


def test_roll_by_is_np_roll_along_width():
    x = np.asarray(digits28())
    roll = jax.jit(roll_by)
    for pixels in (2, 13, 26):
        np.testing.assert_array_equal(roll(x, pixels), np.roll(x, pixels, axis=2))


def _skimage_to_rowcol(m_xy: np.ndarray) -> np.ndarray:
    """skimage's (x=col, y=row) 2x2 inverse map written for (row, col)."""
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])
    return swap @ m_xy @ swap


def _scipy_warp(img: np.ndarray, m_xy: np.ndarray) -> np.ndarray:
    """MNIST-C's warp about the centre ((n-1)/2) by scipy.ndimage.affine_transform, order 1."""
    m = _skimage_to_rowcol(m_xy)
    centre = (np.array(img.shape[:2]) - 1) / 2
    offset = centre - m @ centre
    return np.stack(
        [
            ndi.affine_transform(img[..., c], m, offset, order=1, mode="constant", cval=0.0)
            for c in range(img.shape[-1])
        ],
        axis=-1,
    )


# skimage<0.19 AffineTransform(shear=c) / (rotation=c) / (scale=s) matrices, as MNIST-C used
SKIMAGE_MATRIX = {
    "shear": lambda c: np.array([[1.0, -math.sin(c)], [0.0, math.cos(c)]]),
    "rotate": lambda c: np.array([[math.cos(c), -math.sin(c)], [math.sin(c), math.cos(c)]]),
    "scale": lambda c: np.array([[c, 0.0], [0.0, c]]),
}
PARAMETERS = {
    "shear": (0.2, 0.4, 0.6, 0.8, 1.0),
    "rotate": (0.2, 0.4, 0.6, 0.8, 1.0),
    "scale": tuple(1 / z for z in (0.9, 0.8, 0.7, 0.6, 0.5)),
}


@pytest.mark.parametrize("name", ["shear", "rotate", "scale"])
def test_affine_shifts_match_scipy_affine_transform(name):
    x = np.asarray(digits28())
    for severity in (1, 5):
        out = runs(name).sweep28[severity - 1]
        c = PARAMETERS[name][severity - 1]
        signs = (1.0,) if name == "scale" else (1.0, -1.0)
        seen = set()
        for img, got in zip(x, out, strict=True):
            errors = {
                s: np.abs(_scipy_warp(img, SKIMAGE_MATRIX[name](s * c)) - got).max() for s in signs
            }
            best = min(errors, key=errors.get)
            assert errors[best] < 1e-4, errors
            seen.add(best)
        assert seen == set(signs)  # both directions occur in the batch


def test_translate_shifts_whole_pixels_at_28x28():
    x = np.asarray(digits28())
    for severity in (1, 3, 5):
        out = runs("translate").sweep28[severity - 1]
        for img, got in zip(x, out, strict=True):
            candidates = []
            for dr in (severity, -severity):
                for dc in (severity, -severity):
                    # the output at p reads the input at p + (dr, dc), zero outside
                    padded = np.pad(img, ((severity, severity), (severity, severity), (0, 0)))
                    r0, c0 = severity + dr, severity + dc
                    candidates.append(np.abs(padded[r0 : r0 + 28, c0 : c0 + 28] - got).max())
            assert min(candidates) < 1e-6


# -- intensity shifts: numpy / matplotlib / PIL references -------------------------------


def test_brightness_is_an_hsv_value_shift():
    fn = shifts.get("brightness")
    rgb = np.asarray(colour_batch())
    gray = np.asarray(digits8())
    for severity, c in zip(SEVERITIES, (0.1, 0.2, 0.3, 0.4, 0.5), strict=True):
        np.testing.assert_allclose(
            fn(gray, key=KEY, severity=severity), np.clip(gray + c, 0, 1), atol=1e-6
        )
        hsv = rgb_to_hsv(rgb)
        hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
        np.testing.assert_allclose(fn(rgb, key=KEY, severity=severity), hsv_to_rgb(hsv), atol=1e-5)


def test_contrast_and_invert_match_their_formulas():
    for x in (np.asarray(digits8()), np.asarray(colour_batch())):
        mean = x.mean(axis=(1, 2), keepdims=True)
        for severity, c in zip(SEVERITIES, (0.4, 0.3, 0.2, 0.1, 0.05), strict=True):
            got = shifts.get("contrast")(x, key=KEY, severity=severity)
            np.testing.assert_allclose(got, np.clip((x - mean) * c + mean, 0, 1), atol=1e-6)
        for severity, a in zip(SEVERITIES, (0.2, 0.4, 0.6, 0.8, 1.0), strict=True):
            got = shifts.get("invert")(x, key=KEY, severity=severity)
            np.testing.assert_allclose(got, (1 - a) * x + a * (1 - x), atol=1e-6)
    x = np.asarray(digits8())
    np.testing.assert_allclose(shifts.get("invert")(x, key=KEY, severity=5), 1 - x, atol=1e-6)


def test_stripe_inverts_the_outer_quarters_like_mnist_c():
    x = np.asarray(digits28())
    expected = x.copy()
    expected[:, :, :7] = 1 - x[:, :, :7]
    expected[:, :, 21:] = 1 - x[:, :, 21:]
    np.testing.assert_allclose(runs("stripe").sweep28[4], expected, atol=1e-6)
    x20 = np.asarray(colour_batch())[:, :, :4].repeat(5, axis=2)  # width 20: bands of s px
    for severity in SEVERITIES:
        expected = x20.copy()
        expected[:, :, :severity] = 1 - x20[:, :, :severity]
        expected[:, :, 20 - severity :] = 1 - x20[:, :, 20 - severity :]
        got = shifts.get("stripe")(x20, key=KEY, severity=severity)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def _pil_box(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL BOX resize of one float (H, W) image to (h, w), as MNIST-C/CIFAR-10-C pixelate."""
    return np.asarray(Image.fromarray(img, mode="F").resize(size[::-1], Image.Resampling.BOX))


@pytest.mark.parametrize("shape", [(8, 8), (28, 28), (32, 32), (12, 16)])
def test_pixelate_matches_pil_box_down_and_up(shape):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (2, *shape, 2)).astype(np.float32)
    sizes = list(zip(blur.pixelate_sizes(shape[0]), blur.pixelate_sizes(shape[1]), strict=True))
    for severity in SEVERITIES:
        got = np.asarray(shifts.get("pixelate")(x, key=KEY, severity=severity))
        for i in range(2):
            for c in range(2):
                small = _pil_box(x[i, ..., c], sizes[severity - 1])
                np.testing.assert_allclose(got[i, ..., c], _pil_box(small, shape), atol=1e-5)


def test_pixelate_sizes_fall_every_severity():
    assert blur.pixelate_sizes(8) == (5, 4, 3, 2, 1)
    assert blur.pixelate_sizes(28) == (16, 14, 11, 8, 5)
    assert blur.pixelate_sizes(32) == (19, 16, 12, 9, 6)


# -- filters, noise, overlays -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect"])
def test_gaussian_blur_matches_scipy_gaussian_filter(mode):
    x = np.asarray(colour_batch())
    for sigma in (0.2, 0.7, 1.5, 4.0):
        expected = ndi.gaussian_filter(x, sigma=sigma, mode=mode, truncate=4.0, axes=(1, 2))
        np.testing.assert_allclose(gaussian_blur(x, sigma, mode), expected, atol=1e-5)


def test_filter_matrix_matches_scipy_correlate1d():
    v = np.random.default_rng(2).normal(size=11)
    for weights in ((-1.0, 0.0, 1.0), (1.0, 2.0, 1.0), (0.5, -2.0, 3.0, 1.0, 0.25)):
        for mode in ("nearest", "constant", "reflect", "wrap"):
            expected = ndi.correlate1d(v, weights, mode=mode)
            np.testing.assert_allclose(filter_matrix(11, weights, mode) @ v, expected, atol=1e-12)


def test_noise_statistics_match_their_distributions():
    x = jnp.full((4, 64, 64, 1), 0.5, jnp.float32)
    rng = np.random.default_rng(3)
    for severity in SEVERITIES:
        got = np.asarray(shifts.get("gaussian_noise")(x, key=KEY, severity=severity))
        std = noise.GAUSSIAN_STD[severity - 1]
        reference = np.clip(0.5 + rng.normal(0, std, 10**6), 0, 1)
        assert abs(got.std() - reference.std()) < 0.03 * reference.std()

        photons = noise.SHOT_PHOTONS[severity - 1]
        counts = np.round(
            np.asarray(shifts.get("shot_noise")(x, key=KEY, severity=severity)) * photons
        )
        ks = np.arange(int(photons) + 1)
        pmf = scipy.stats.poisson.pmf(ks, 0.5 * photons)
        pmf[-1] += scipy.stats.poisson.sf(photons, 0.5 * photons)  # clipped at 1
        freq = np.array([(counts == k).mean() for k in ks])
        assert np.abs(freq - pmf).max() < 0.015

        amount = noise.IMPULSE_AMOUNT[severity - 1]
        got = np.asarray(shifts.get("impulse_noise")(x, key=KEY, severity=severity))
        assert set(np.unique(got)) <= {0.0, 0.5, 1.0}
        assert abs((got == 0).mean() - amount / 2) < 0.01
        assert abs((got == 1).mean() - amount / 2) < 0.01


@pytest.mark.parametrize("name", ["glass_blur", "motion_blur", "pixelate"])
def test_blurs_keep_a_constant_image(name):
    x = jnp.full((2, 12, 16, 3), 0.37, jnp.float32)
    np.testing.assert_allclose(shifts.get(name)(x, key=KEY, severity=5), x, atol=1e-5)


def test_motion_blur_spreads_a_point_along_a_ray():
    """An impulse spreads with ImageMagick's one-sided Gaussian weights over 2r+1 taps."""
    radius, sigma = 10, 3.0  # MNIST-C severity 1
    i = np.arange(2 * radius + 1)
    w = np.exp(-(i**2) / (2 * sigma**2))
    mean_reach = (w * i).sum() / w.sum()
    x = np.zeros((6, 28, 28, 1), np.float32)
    x[:, 14, 20] = 1.0  # the streak runs from the point towards smaller columns
    out = np.asarray(shifts.get("motion_blur")(x, key=KEY, severity=1))[..., 0]
    rows, cols = np.mgrid[:28, :28]
    for img in out:
        assert abs(img.sum() - 1.0) < 1e-4
        dr, dc = (img * rows).sum() - 14, (img * cols).sum() - 20
        assert abs(math.hypot(dr, dc) - mean_reach) < 1e-3  # bilinear taps keep the mean
        assert dc < 0 and abs(dr) <= -dc + 1e-4  # angle within +-45 degrees


def test_occlusion_covers_a_square_of_the_given_side():
    x = jnp.zeros((3, 20, 20, 1), jnp.float32)
    for severity in SEVERITIES:
        got = np.asarray(shifts.apply("occlusion", x, key=KEY, severity=severity, fill=0.25))
        side = overlay.OCCLUSION_FRACTION[severity - 1] * 20
        np.testing.assert_allclose(got.sum(axis=(1, 2, 3)) / 0.25, side**2, rtol=1e-5)
        assert got.max() <= 0.25 + 1e-6
    with pytest.raises(ValueError, match="fill"):
        shifts.apply("occlusion", x, key=KEY, severity=1, fill=1.5)


@pytest.mark.parametrize("name", ["dotted_line", "zigzag"])
def test_marks_of_a_severity_include_those_below(name):
    for sweep in (runs(name).sweep8, runs(name).sweep28):
        for lower, higher in itertools.pairwise(sweep):
            assert (higher >= lower - 1e-6).all()


def test_dotted_line_dashes_every_other_pair_of_columns():
    x = jnp.zeros((4, 28, 28, 1), jnp.float32)
    ink = np.asarray(shifts.get("dotted_line")(x, key=KEY, severity=1))[..., 0]
    inked = ink.max(axis=(0, 1)) > 0
    on = (np.arange(28) // 2) % 2 == 1
    on[27] = False  # MNIST-C's line stops before column ceil(27)
    np.testing.assert_array_equal(inked, on)
    for img in ink:  # one stroke per image: at most 2 rows inked in each dash column
        assert ((img[:, on] > 0.5).sum(axis=0) <= 2).all()


def test_spatter_mixes_in_mud_colour():
    gray = np.asarray(shifts.get("spatter")(jnp.zeros((4, 28, 28, 1)), key=KEY, severity=5))
    mud = gray[gray > 0]
    assert mud.size > 0 and mud.max() <= 63 / 255 + 1e-6 and mud.min() >= 0.8 * 63 / 255 - 1e-6
    rgb = np.asarray(shifts.get("spatter")(jnp.zeros((2, 32, 32, 3)), key=KEY, severity=5))
    covered = rgb[..., 0] > 0
    np.testing.assert_allclose(rgb[covered][:, 1] / rgb[covered][:, 0], 42 / 63, rtol=1e-5)
    np.testing.assert_allclose(rgb[covered][:, 2] / rgb[covered][:, 0], 20 / 63, rtol=1e-5)


def _plasma_reference(u: np.ndarray, decay: float) -> np.ndarray:
    """MNIST-C's diamond-square (strided numpy updates), using draw u[point] for a point."""
    size = u.shape[0]
    heights = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        h = step // 2
        corners = heights[0::step, 0::step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares = squares + np.roll(squares, -1, axis=1)
        heights[h::step, h::step] = squares / 4 + wibble**2 * u[h::step, h::step]
        dr, ul = heights[h::step, h::step], heights[0::step, 0::step]
        along = dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        heights[0::step, h::step] = along / 4 + wibble**2 * u[0::step, h::step]
        down = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        heights[h::step, 0::step] = down / 4 + wibble**2 * u[h::step, 0::step]
        step, wibble = h, wibble / decay
    heights -= heights.min()
    return heights / heights.max()


def test_plasma_fractal_matches_the_diamond_square_reference():
    rng = np.random.default_rng(4)
    for size, decay in ((2, 2.0), (8, 1.7), (64, 1.4)):
        u = rng.uniform(-1, 1, (size, size)).astype(np.float32)
        got = weather.plasma_from_uniforms(jnp.asarray(u), decay)
        np.testing.assert_allclose(got, _plasma_reference(u.astype(np.float64), decay), atol=1e-5)
    with pytest.raises(ValueError, match="power of two"):
        weather.plasma_fractal(KEY, 24, 2.0)


# -- Canny ------------------------------------------------------------------------------


def test_canny_outlines_a_square():
    x = np.zeros((1, 28, 28, 1), np.float32)
    x[0, 8:20, 8:20] = 1.0
    edges = np.asarray(canny(x))[0, ..., 0]
    band = np.zeros((28, 28), bool)  # within one pixel of the square's border
    band[7:21, 7:21] = True
    band[10:18, 10:18] = False
    assert edges.sum() > 0 and not edges[~band].any()
    for side in (
        edges[7:9, 8:20].any(axis=0),
        edges[19:21, 8:20].any(axis=0),
        edges[8:20, 7:9].any(axis=1),
        edges[8:20, 19:21].any(axis=1),
    ):
        assert side.sum() >= 8  # each side of 12 pixels is mostly traced
    mixed = np.asarray(shifts.get("canny_edges")(x, key=KEY, severity=2))
    np.testing.assert_allclose(mixed[0, ..., 0], 0.6 * x[0, ..., 0] + 0.4 * edges, atol=1e-6)


def test_canny_matches_skimage_on_digits():
    skimage_feature = pytest.importorskip("skimage.feature")
    for x in (np.asarray(digits8()), np.asarray(digits28())):
        ours = np.asarray(canny(x))[..., 0]
        reference = np.stack([skimage_feature.canny(img[..., 0].astype(np.float64)) for img in x])
        assert (ours != reference).mean() < 1e-3
    assert np.asarray(canny(digits28()))[:, 0].sum() == 0  # never on the image border


def test_geometric_matrices_are_the_skimage_ones():
    for c in (0.3, -0.8):
        np.testing.assert_allclose(
            geometric.shear_matrix(c), _skimage_to_rowcol(SKIMAGE_MATRIX["shear"](c)), atol=1e-6
        )
        np.testing.assert_allclose(
            geometric.rotation_matrix(c), _skimage_to_rowcol(SKIMAGE_MATRIX["rotate"](c)), atol=1e-6
        )


def test_stripe_mask_covers_fractional_columns():
    np.testing.assert_allclose(
        photometric.stripe_mask(10, 0.15), [1, 0.5, 0, 0, 0, 0, 0, 0, 0.5, 1], atol=1e-6
    )
