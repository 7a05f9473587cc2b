"""MNIST-C fidelity (Mu & Gilmer 2019, google-research/mnist-c ``corruptions.py``).

The reference values below are copied from MNIST-C's code, not from the toolkit: the
default severity of each corruption function and its parameter table; the numpy
re-implementations follow its spatter and fog code line by line.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

import toolkit as tk
from toolkit.shifts.image import blur, edges, geometric, noise, photometric, weather
from toolkit.sweep.config import SweepConfigError, Trial
from toolkit.sweep.evals import MnistCShifted, check_evals, parse_evals

KEY = jax.random.key(0)

# corruptions.py: CORRUPTIONS (less 'identity') -> the default severity of each function
# (None: no severity argument) and the parameter that default selects.
MNIST_C_DEFAULTS = {
    "shot_noise": (5, 3),
    "impulse_noise": (4, 0.17),
    "glass_blur": (1, (0.7, 1, 2)),
    "motion_blur": (1, (10, 3)),
    "shear": (2, 0.4),
    "scale": (3, 1 / 0.7),
    "rotate": (2, 0.4),
    "brightness": (5, 0.5),
    "translate": (3, 3),
    "stripe": (None, 7 / 28),
    "fog": (5, (3.0, 1.4)),
    "spatter": (4, (0.65, 0.3, 1, 0.65, 1.5)),
    "dotted_line": (None, 1),
    "zigzag": (None, 1),
    "canny_edges": (None, 1.0),
}


def toolkit_parameter(name: str, severity: int, hparams: dict):
    """The parameter ``tk.shifts`` uses for ``name`` at ``severity`` with ``hparams``."""
    i = severity - 1
    own = hparams.get("levels") == "mnist_c"
    return {
        "shot_noise": lambda: noise.SHOT_PHOTONS[i],
        "impulse_noise": lambda: noise.IMPULSE_AMOUNT[i],
        "glass_blur": lambda: blur.GLASS[i],
        "motion_blur": lambda: blur.MOTION[i],
        "shear": lambda: geometric.SHEAR_RADIANS[i],
        "scale": lambda: 1 / geometric.SCALE_ZOOM[i],
        "rotate": lambda: geometric.ROTATE_RADIANS[i],
        "brightness": lambda: photometric.BRIGHTNESS[i],
        "translate": lambda: geometric.TRANSLATE_PIXELS[i],
        "stripe": lambda: photometric.STRIPE_FRACTION[i],
        "fog": lambda: (weather.FOG_MNIST_C if own else weather.FOG)[i],
        "spatter": lambda: (weather.SPATTER_MNIST_C if own else weather.SPATTER)[i],
        "dotted_line": lambda: severity,  # marks drawn
        "zigzag": lambda: severity,
        "canny_edges": lambda: edges.CANNY_MIX[i],
    }[name]()


def test_the_family_is_mnist_c_at_its_released_severities():
    assert list(tk.shifts.MNIST_C) == list(MNIST_C_DEFAULTS)
    for name, (_, expected) in MNIST_C_DEFAULTS.items():
        setting = tk.shifts.MNIST_C[name]
        got = toolkit_parameter(name, setting.severity, dict(setting.hparams))
        np.testing.assert_allclose(
            np.asarray(got, float), np.asarray(expected, float), err_msg=name
        )


def test_pixelate_truncates_like_mnist_c():
    # MNIST-C/ImageNet-C: x.resize((int(28 * c), int(28 * c)), BOX) with c = .6, .5, .4, .3
    assert blur.pixelate_sizes(28)[:4] == tuple(int(28 * c) for c in (0.6, 0.5, 0.4, 0.3))
    assert blur.pixelate_sizes(28)[0] == 16


def test_glass_blur_blurs_gray_images_along_rows_only():
    """skimage ``gaussian(x, multichannel=True)`` on a 2-D image blurs axis 0 only: a
    vertical line keeps its ink within the jitter's reach (2 iterations of at most 1
    pixel at severity 1), while a horizontal one is smeared over rows; colour images blur
    both axes."""
    x = np.zeros((16, 28, 28, 1), np.float32)
    x[:, :, 14] = 1.0
    out = np.asarray(tk.shifts.apply("glass_blur", x, key=KEY, severity=1))[..., 0]
    ink = out.sum(axis=(0, 1))
    assert ink[12:17].sum() > 0 and np.all(ink[:12] == 0) and np.all(ink[17:] == 0)
    across = x.transpose(0, 2, 1, 3)  # a horizontal line at row 14
    out = np.asarray(tk.shifts.apply("glass_blur", across, key=KEY, severity=1))[..., 0]
    assert (out.sum(axis=(0, 2))[[10, 18]] > 0).all()  # beyond the jitter's reach
    rgb = np.repeat(x, 3, axis=-1)
    out = np.asarray(tk.shifts.apply("glass_blur", rgb, key=KEY, severity=1))
    assert out[:, :, :11].sum() > 0


def _skimage_gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    # skimage.filters.gaussian's defaults: mode 'nearest', truncate 4
    return ndi.gaussian_filter(x, sigma, mode="nearest", truncate=4.0)


def _mnist_c_spatter_mask(rng, severity: int) -> np.ndarray:
    """MNIST-C's spatter mud mask m for one 28x28 image, line by line."""
    c = [(0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
         (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)][severity - 1]  # fmt: skip
    liquid = _skimage_gaussian(rng.normal(c[0], c[1], (28, 28)), c[2])
    liquid[liquid < c[3]] = 0
    m = _skimage_gaussian(np.where(liquid > c[3], 1.0, 0.0), c[4])
    m[m < 0.8] = 0
    return m


def _mud_statistics(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: share of mudded pixels and number of separate blobs (4-connected)."""
    share = (masks > 0).mean(axis=(1, 2))
    blobs = np.array([ndi.label(m > 0)[1] for m in masks], float)
    return share, blobs


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return abs(a.mean() - b.mean()) < 4 * se + 1e-3


@pytest.mark.parametrize("severity", [1, 4, 5])
def test_spatter_at_mnist_c_levels_matches_mnist_c_code(severity):
    n = 300
    rng = np.random.default_rng(severity)
    reference = np.stack([_mnist_c_spatter_mask(rng, severity) for _ in range(n)])
    zeros = jnp.zeros((n, 28, 28, 1), jnp.float32)
    got = tk.shifts.apply("spatter", zeros, key=KEY, severity=severity, levels="mnist_c")
    masks = np.asarray(got)[..., 0] / (63 / 255)  # on black, the image is colour * m
    for ours, theirs in zip(_mud_statistics(masks), _mud_statistics(reference), strict=True):
        assert _close(ours, theirs), (severity, ours.mean(), theirs.mean())


def test_spatter_toolkit_severity_4_is_not_mnist_c_severity_4():
    """The departure the levels fix: the toolkit's monotone severity 4 muds about twice
    MNIST-C's severity-4 share (32 % against 13.5 %)."""
    rng = np.random.default_rng(0)
    reference = np.stack([_mnist_c_spatter_mask(rng, 4) for _ in range(200)])
    ours = np.asarray(tk.shifts.apply("spatter", jnp.zeros((200, 28, 28, 1)), key=KEY, severity=4))
    assert (ours > 0).mean() > 2 * (reference > 0).mean()


def test_fog_at_mnist_c_levels_is_mnist_c_formula():
    x = jnp.asarray(tk.data.load("mnist5k").test.x[:3])
    keys = jax.random.split(KEY, 3)
    for severity, (t, decay) in enumerate(
        [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)], start=1
    ):
        got = np.asarray(tk.shifts.apply("fog", x, key=KEY, severity=severity, levels="mnist_c"))
        for i in range(3):
            img = np.asarray(x[i], np.float64)
            plasma = np.asarray(weather.plasma_fractal(keys[i], 256, decay))[:28, :28, None]
            top = img.max()
            expected = np.clip((img + t * plasma) * top / (top + t), 0, 1)
            np.testing.assert_allclose(got[i], expected, atol=1e-5)


def test_levels_must_be_toolkit_or_mnist_c():
    x = jnp.zeros((1, 28, 28, 1))
    for name in ("fog", "spatter"):
        with pytest.raises(ValueError, match=r"one of \('toolkit', 'mnist_c'\), got 'mnistc'"):
            tk.shifts.apply(name, x, key=KEY, severity=1, levels="mnistc")


def _trial(dataset: str) -> Trial:
    return Trial("e", dataset, {}, {}, {}, "g")


def test_mnist_c_evaluation_names_a_family_of_sets():
    dataset = tk.data.load("mnist5k")
    entries = parse_evals({"mnist_c": {}})
    check_evals(entries, dataset, _trial("mnist5k"))
    specs = entries["mnist_c"].specs(dataset, _trial("mnist5k"), "mnist_c")
    assert [s.name for s in specs] == [f"mnist_c/{n}" for n in MNIST_C_DEFAULTS]
    assert {s.kind for s in specs} == {"set"}  # out of the means over the 1-5 levels
    assert [s.severity for s in specs] == [tk.shifts.MNIST_C[n].severity for n in MNIST_C_DEFAULTS]


def test_mnist_c_sets_are_the_shifted_test_split():
    clean = tk.data.load("mnist5k").test.take(np.arange(8))
    entries = parse_evals({"c": {"type": "mnist_c", "names": ("shot_noise", "spatter")}})
    specs = entries["c"].specs(None, _trial("mnist5k"), "c")
    sets = MnistCShifted.build_all(specs, clean, key=KEY, cache=False, keep=False)
    assert [s.name for s in specs] == ["c/shot_noise", "c/spatter"]
    # the same key as the 1-5 levels (paired), spatter with MNIST-C's own levels
    level = tk.evaluation.sets.Shifted("shot_noise", 5)
    (same,) = type(level).build_all([level], clean, key=KEY, cache=False, keep=False)
    np.testing.assert_array_equal(sets[0].x, same.x)
    from toolkit.evaluation.cache import set_key

    mud = tk.shifts.apply(
        "spatter", jnp.asarray(clean.x), key=set_key(KEY, "spatter"), severity=4, levels="mnist_c"
    )
    np.testing.assert_array_equal(sets[1].x, np.asarray(mud))
    np.testing.assert_array_equal(sets[1].y, clean.y)


def test_mnist_c_evaluation_rejects_bad_names_and_sequence_data():
    with pytest.raises(SweepConfigError, match=r"'blurr'; valid: shot_noise, impulse_noise"):
        check_evals(
            parse_evals({"m": {"type": "mnist_c", "names": "blurr"}}),
            tk.data.load("mnist5k"),
            _trial("mnist5k"),
        )
    with pytest.raises(SweepConfigError, match="image data"):
        check_evals(
            parse_evals({"m": {"type": "mnist_c"}}),
            tk.data.load("mnist1d", num_samples=600),
            _trial("mnist1d"),
        )
