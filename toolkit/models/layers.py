"""Shared layers: a scan-friendly convolution, pooling, activations and input checks.

Why a custom convolution: on XLA's CPU backend a convolution inside ``jax.lax.scan`` runs
several times slower than the same convolution outside it (JAX issue #12868), and the
trainer runs whole training runs inside one scan. Writing the convolution as strided slices
(im2col) plus one matmul removes the gap with the same outputs and gradients, so on CPU
:class:`Conv` computes that way; on accelerators it calls ``lax.conv_general_dilated``.
Its parameters have the names and shapes of ``flax.linen.Conv`` ('kernel' of shape
``(*kernel_size, in_features, features)`` and 'bias'), so checkpoints are interchangeable.
Pooling is written the same way for the same reason.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from toolkit.registry import Registry

__all__ = [
    "CONV_IMPLS",
    "Conv",
    "activation",
    "activations",
    "check_choice",
    "conv_im2col",
    "conv_xla",
    "pool",
    "resolve_padding",
    "with_channels",
]

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]

CONV_IMPLS = ("auto", "im2col", "xla")

# ``get`` returns a partial, so ``activations.get("leaky_relu", negative_slope=0.2)`` works.
activations = Registry("activation", build=functools.partial, typed=True)
for _name, _fn, _formula in [
    ("relu", nn.relu, "max(x, 0)."),
    ("gelu", nn.gelu, "x Phi(x), tanh approximation (Hendrycks & Gimpel 2016)."),
    ("tanh", jnp.tanh, "tanh(x)."),
    ("sigmoid", nn.sigmoid, "1 / (1 + exp(-x))."),
    ("silu", nn.silu, "x sigmoid(x) (swish; Ramachandran et al. 2017)."),
    ("elu", nn.elu, "x if x > 0 else exp(x) - 1 (Clevert et al. 2016)."),
    ("leaky_relu", nn.leaky_relu, "x if x > 0 else 0.01 x."),
    ("identity", lambda x: x, "x (no nonlinearity)."),
]:
    activations.add(_name, _fn, description=_formula)


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function registered as ``name``; unknown names list the valid ones."""
    return activations.entry(name).factory


def check_choice(what: str, value: Any, choices: Sequence[Any]) -> None:
    """Raises ``ValueError`` naming ``value`` and the valid ``choices`` unless it is one."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {', '.join(map(str, choices))}")


def check_dropout(rate: float) -> None:
    """Raises ``ValueError`` naming ``rate`` unless it is a drop rate in [0, 1)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {rate!r}")


def with_channels(x: jax.Array) -> jax.Array:
    """Adds a channel axis to a batch of scalar sequences: (B, L) -> (B, L, 1).

    Rank 3 (B, L, C) sequences and rank 4 (B, H, W, C) images pass through unchanged; any
    other rank is an error, raised at trace time before any compute.
    """
    if x.ndim == 2:
        return x[..., None]
    if x.ndim in (3, 4):
        return x
    raise ValueError(
        f"expected a batch of sequences (B, L) or (B, L, C) or of images (B, H, W, C); "
        f"got an array of shape {tuple(x.shape)}"
    )


def _tuple(value: int | Sequence[int], ndim: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * ndim
    value = tuple(int(v) for v in value)
    if len(value) != ndim:
        raise ValueError(
            f"{what} {value} has {len(value)} entries; the input has {ndim} spatial dims"
        )
    return value


def resolve_padding(
    padding: Padding,
    spatial: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
) -> list[tuple[int, int]]:
    """Explicit (low, high) padding per spatial dim, as ``flax.linen.Conv`` reads ``padding``.

    'SAME' pads so that the output has ``ceil(n / stride)`` positions (extra on the high
    side, as TensorFlow/XLA do); 'VALID' pads nothing; an int ``p`` pads ``p`` on both
    sides of every dim; a sequence gives one int or (low, high) pair per dim.
    """
    ndim = len(window)
    if isinstance(padding, str):
        mode = padding.upper()
        check_choice("padding", mode, ("SAME", "VALID"))
        return [tuple(p) for p in lax.padtype_to_pads(spatial, window, strides, mode)]
    if isinstance(padding, int):
        pads = [(padding, padding)] * ndim
    else:
        pads = [(p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding]
    if len(pads) != ndim or any(lo < 0 or hi < 0 for lo, hi in pads):
        raise ValueError(
            f"padding {padding!r} must be 'SAME', 'VALID', a non-negative int or {ndim} "
            f"non-negative ints / (low, high) pairs"
        )
    return pads


def _output_sizes(spatial, window, strides, pads) -> list[int]:
    dims = zip(spatial, window, strides, pads, strict=True)
    sizes = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in dims]
    if min(sizes) < 1:
        raise ValueError(
            f"input of spatial size {tuple(spatial)} is too small for window {tuple(window)} "
            f"with padding {pads}"
        )
    return sizes


def _strided_windows(
    x: jax.Array, window: Sequence[int], strides: Sequence[int], pads, fill: float
) -> list[jax.Array]:
    """The ``prod(window)`` strided slices of padded ``x`` (B, *spatial, C), one per offset.

    Slice ``o`` holds ``x_padded[b, o + s * i, c]`` for each output position ``i``, so a
    convolution is ``sum_o slice_o @ kernel[o]`` and a max pool is ``max_o slice_o``.
    """
    out = _output_sizes(x.shape[1:-1], window, strides, pads)
    x = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    slices = []
    for offset in itertools.product(*(range(k) for k in window)):
        start = (0, *offset, 0)
        ends = (o + s * (n - 1) + 1 for o, s, n in zip(offset, strides, out, strict=True))
        limit = (x.shape[0], *ends)
        slices.append(lax.slice(x, start, (*limit, x.shape[-1]), (1, *strides, 1)))
    return slices


def conv_im2col(x: jax.Array, kernel: jax.Array, strides: Sequence[int], pads) -> jax.Array:
    """N-d convolution (cross-correlation, as in deep learning) as im2col plus one matmul.

    ``y[b, i, :] = sum_{o, c} x_padded[b, s * i + o, c] kernel[o, c, :]``: the slices of
    :func:`_strided_windows` are concatenated along channels in row-major offset order, which
    is the order of ``kernel.reshape(-1, features)``.
    """
    window = kernel.shape[:-2]
    patches = jnp.concatenate(_strided_windows(x, window, strides, pads, 0.0), axis=-1)
    return patches @ kernel.reshape(-1, kernel.shape[-1])


def conv_xla(x: jax.Array, kernel: jax.Array, strides: Sequence[int], pads) -> jax.Array:
    """The same convolution through ``lax.conv_general_dilated`` (channels last)."""
    _output_sizes(x.shape[1:-1], kernel.shape[:-2], strides, pads)  # same error as im2col
    numbers = lax.conv_dimension_numbers(x.shape, kernel.shape, _layout(x.ndim))
    return lax.conv_general_dilated(x, kernel, tuple(strides), pads, dimension_numbers=numbers)


def _layout(ndim: int) -> tuple[str, str, str]:
    if not 3 <= ndim <= 5:
        raise ValueError(f"convolutions support 1 to 3 spatial dims, got {ndim - 2}")
    spatial = "DHW"[5 - ndim :]
    return f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"


class Conv(nn.Module):
    """Convolution with ``flax.linen.Conv``'s parameters, computed as im2col on CPU.

    ``y[b, i, :] = bias + sum_{o, c} x_padded[b, s * i + o, c] kernel[o, c, :]`` over window
    offsets ``o`` and input channels ``c`` (cross-correlation, as in every deep learning
    library). 'im2col' unrolls the windows into one matrix and multiplies once (Chellapilla
    et al. 2006, "High performance convolutional neural networks for document processing").

    Attributes:
      features: output channels.
      kernel_size: window size; an int means that size in every spatial dim of the input,
        so one module serves sequences (B, L, C) and images (B, H, W, C).
      strides: int or one per spatial dim.
      padding: 'SAME', 'VALID', int or per-dim ints / (low, high) pairs (see
        :func:`resolve_padding`).
      use_bias: add a learned bias.
      impl: 'auto' (im2col on the CPU backend, XLA's convolution elsewhere), 'im2col' or 'xla'.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    use_bias: bool = True
    impl: str = "auto"
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        check_choice("conv impl", self.impl, CONV_IMPLS)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, *spatial, in_features) -> (B, *out_spatial, features), 1 to 3 spatial dims."""
        _layout(x.ndim)  # checks the rank before any parameter is made
        ndim = x.ndim - 2
        window = _tuple(self.kernel_size, ndim, "kernel_size")
        strides = _tuple(self.strides, ndim, "strides")
        pads = resolve_padding(self.padding, x.shape[1:-1], window, strides)
        kernel = self.param(
            "kernel", self.kernel_init, (*window, x.shape[-1], self.features), self.param_dtype
        )
        x = x.astype(kernel.dtype)
        impl = self.impl
        if impl == "auto":
            impl = "im2col" if jax.default_backend() == "cpu" else "xla"
        y = (conv_im2col if impl == "im2col" else conv_xla)(x, kernel, strides, pads)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        return y


def pool(
    x: jax.Array,
    kind: str,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> jax.Array:
    """Max or average pooling of (B, *spatial, C) over strided slices (scan-friendly on CPU).

    ``max``: ``max_o x_padded[s * i + o]`` with -inf padding. ``avg``: the mean over the
    window positions that fall inside the input (padding is not counted), as
    ``flax.linen.avg_pool(..., count_include_pad=False)``. ``strides`` defaults to the window.
    """
    check_choice("pool", kind, ("max", "avg"))
    ndim = x.ndim - 2
    window = _tuple(window, ndim, "pool window")
    strides = window if strides is None else _tuple(strides, ndim, "pool strides")
    pads = resolve_padding(padding, x.shape[1:-1], window, strides)
    if kind == "max":
        return _reduce(jnp.maximum, _strided_windows(x, window, strides, pads, -jnp.inf))
    total = _reduce(jnp.add, _strided_windows(x, window, strides, pads, 0.0))
    if all(lo == hi == 0 for lo, hi in pads):
        return total / math.prod(window)
    ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
    return total / _reduce(jnp.add, _strided_windows(ones, window, strides, pads, 0.0))


def _reduce(op: Callable[[jax.Array, jax.Array], jax.Array], arrays: list[jax.Array]) -> jax.Array:
    out = arrays[0]
    for a in arrays[1:]:
        out = op(out, a)
    return out
