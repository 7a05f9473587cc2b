"""Things drawn over the image: dotted_line, zigzag (MNIST-C) and occlusion.

Lengths are in pixels of a 28x28 image and scale by ``S = min(H, W) / 28``.

===========  ==================================================  ==========================
shift        parameter                                           severity 1..5
===========  ==================================================  ==========================
dotted_line  number of dashed lines across the image             1 2 3 4 5
zigzag       number of zigzag lines                              1 2 3 4 5
occlusion    side of a random square, fraction of min(H, W)      .1 .2 .3 .4 .5
===========  ==================================================  ==========================

MNIST-C draws one line or one zigzag and has no severities: severity 1 here is MNIST-C's
corruption and each higher severity adds one more, drawn from the same key, so the marks
of severity s are a subset of those of s + 1. Strokes follow MNIST-C's
``line_from_points``: ink ``clip(log(1 - d / 2.3) + 1, 0, 1)`` at vertical distance d from
the segment (2.3 scaled by S, at least 1 pixel), only in the columns
``[floor(c0), ceil(c1))``, added to the image and clipped. dotted_line: endpoints at
columns 0 and W - 1, rows uniform in [0, H - 1), every other dash of 2 S pixels (at
least 1) left blank, the first one blank. zigzag: from column 2 S to W - 3 S, start row
uniform in [0, H - 1), end row within +-5 S of it (MNIST-C draws integer rows 0..26 and
an integer rise in [-5, 5); continuous draws here scale to any size), teeth of
half-period and amplitude 2 S (six teeth); MNIST-C's last vertex sits at an odd
offset from the centre line, here the zigzag ends on the centre line. occlusion (not in
MNIST-C; cf. Cutout, DeVries & Taylor 2017): a square of side f min(H, W) at a uniform
position inside the image, filled with ``fill`` (default 0.5, gray), with partially
covered edge pixels mixed by their covered area.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toolkit.shifts.image._ops import image_shift, per_example, pixel_scale, uniform

__all__ = ["OCCLUSION_FRACTION", "dotted_line", "occlusion", "segment_ink", "zigzag"]

MAX_MARKS = 5  # marks drawn per image; severity s shows the first s
OCCLUSION_FRACTION = (0.1, 0.2, 0.3, 0.4, 0.5)
_INK_WIDTH = 2.3  # MNIST-C's stroke decay length in pixels at 28x28


def segment_ink(c0, r0, c1, r1, h: int, w: int, width: float) -> jax.Array:
    """Ink of segments (c0, r0) -> (c1, r1) on an (h, w) grid, MNIST-C's line_from_points.

    Arguments are arrays of shape (K,); returns (K, h, w) in [0, 1]. Vertical segments
    (c0 == c1) leave no ink, as in MNIST-C.
    """
    rows = jnp.arange(h, dtype=jnp.float32)[None, :, None]
    cols = jnp.arange(w, dtype=jnp.float32)[None, None, :]
    c0, r0, c1, r1 = (v[:, None, None] for v in (c0, r0, c1, r1))
    run = c1 - c0
    slope = (r1 - r0) / jnp.where(run == 0, 1.0, run)
    dist = jnp.minimum(jnp.abs(rows - (slope * (cols - c0) + r0)), width * (1.0 - 1e-6))
    ink = jnp.clip(jnp.log1p(-dist / width) + 1.0, 0.0, 1.0)
    inside = (cols >= jnp.floor(c0)) & (cols < jnp.ceil(c1)) & (run != 0)
    return jnp.where(inside, ink, 0.0)


def _ink_width(s: float) -> float:
    return max(_INK_WIDTH * s, 1.0)


def _add_ink(img: jax.Array, ink: jax.Array) -> jax.Array:
    return img + jnp.sum(ink, axis=0)[..., None]


@image_shift("dotted_line", "1..5 dashed straight lines across the image (MNIST-C dotted_line).")
def dotted_line(x: jax.Array, *, key: jax.Array, severity: int) -> jax.Array:
    """Adds ``severity`` dashed lines from column 0 to W - 1 at random rows."""
    h, w = x.shape[1], x.shape[2]
    s = pixel_scale(x)
    dash = max(1, round(2 * s))
    on = ((jnp.arange(w) // dash) % 2 == 1).astype(jnp.float32)

    def one(k, img):
        ends = uniform(k, (2, MAX_MARKS), 0.0, h - 1.0)[:, :severity]
        c0 = jnp.zeros((severity,), jnp.float32)
        c1 = jnp.full((severity,), w - 1.0, jnp.float32)
        ink = segment_ink(c0, ends[0], c1, ends[1], h, w, _ink_width(s))
        return _add_ink(img, ink * on)

    return per_example(one, x, key)


def _zigzag_vertices(u: jax.Array, h: int, w: int, s: float) -> tuple[jax.Array, jax.Array]:
    """Columns and rows (8,) of one zigzag's vertices from two U(0, 1) draws ``u``."""
    c_start, c_end = 2.0 * s, w - 3.0 * s
    r_start = u[0] * (h - 1.0)
    rise = (2.0 * u[1] - 1.0) * (5.0 * s)
    run = c_end - c_start
    length = jnp.sqrt(run * run + rise * rise)
    cos, sin = run / length, rise / length
    a = b = 2.0 * s
    teeth = [(2 * i + 1) * a for i in range(6)]
    along = jnp.concatenate([jnp.zeros((1,)), jnp.asarray(teeth, jnp.float32), length[None]])
    across = jnp.asarray([0.0] + [b * (-1) ** i for i in range(6)] + [0.0], jnp.float32)
    cols = c_start + along * cos - across * sin
    rows = r_start + along * sin + across * cos
    return cols, rows


@image_shift("zigzag", "1..5 zigzag lines across the image (MNIST-C zigzag).")
def zigzag(x: jax.Array, *, key: jax.Array, severity: int) -> jax.Array:
    """Adds ``severity`` zigzags, each seven strokes with six teeth, at random rows and tilts."""
    h, w = x.shape[1], x.shape[2]
    s = pixel_scale(x)

    def one(k, img):
        u = uniform(k, (MAX_MARKS, 2))[:severity]
        cols, rows = jax.vmap(lambda ui: _zigzag_vertices(ui, h, w, s))(u)  # (severity, 8)
        c0, c1 = cols[:, :-1].reshape(-1), cols[:, 1:].reshape(-1)
        r0, r1 = rows[:, :-1].reshape(-1), rows[:, 1:].reshape(-1)
        return _add_ink(img, segment_ink(c0, r0, c1, r1, h, w, _ink_width(s)))

    return per_example(one, x, key)


def _coverage(start: jax.Array, side: float, n: int) -> jax.Array:
    """(n,) length of [start, start + side) inside each pixel [i, i + 1)."""
    i = jnp.arange(n, dtype=jnp.float32)
    return jnp.clip(jnp.minimum(i + 1.0, start + side) - jnp.maximum(i, start), 0.0, 1.0)


@image_shift("occlusion", "A random square of side 10%..50% of the image, filled with gray.")
def occlusion(x: jax.Array, *, key: jax.Array, severity: int, fill: float = 0.5) -> jax.Array:
    """Replaces a square of side ``f min(H, W)`` at a uniform position by ``fill``."""
    if isinstance(fill, int | float) and not 0.0 <= fill <= 1.0:
        raise ValueError(f"occlusion fill must be in [0, 1], got {fill!r}")
    h, w = x.shape[1], x.shape[2]
    side = OCCLUSION_FRACTION[severity - 1] * min(h, w)

    def one(k, img):
        top, left = jax.random.uniform(k, (2,), jnp.float32) * jnp.array([h - side, w - side])
        cover = _coverage(top, side, h)[:, None] * _coverage(left, side, w)[None, :]
        return img + cover[..., None] * (fill - img)

    return per_example(one, x, key)
