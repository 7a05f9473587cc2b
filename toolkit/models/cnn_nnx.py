"""The MNIST-1D CNN written as a Flax NNX module: ``cnn_nnx`` is ``cnn`` in NNX.

The same function as :class:`toolkit.models.conv.CNN` (same layers, initializers and
convolution code, :func:`toolkit.models.layers.conv_im2col` on CPU), registered through
:mod:`toolkit.models.nnx_bridge`: an example of a model written the NNX way that trains,
checkpoints and sweeps like every other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from toolkit.models.base import IMAGES, register
from toolkit.models.layers import (
    CONV_IMPLS,
    check_choice,
    check_dropout,
    conv_im2col,
    conv_xla,
    resolve_padding,
)

__all__ = ["CNNNNX"]


class _Conv(nnx.Module):
    """A convolution with ``flax.linen.Conv``'s parameters and initializers (LeCun normal
    kernel of shape (*window, in, out), zero bias) over 1 or 2 spatial dims."""

    def __init__(
        self,
        in_features: int,
        features: int,
        window: Sequence[int],
        *,
        strides: Sequence[int],
        padding: int,
        impl: str,
        rngs: nnx.Rngs,
    ):
        shape = (*window, in_features, features)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((features,)))
        self.strides, self.padding, self.impl = tuple(strides), padding, impl

    def pads(self, spatial: Sequence[int]) -> list[tuple[int, int]]:
        return resolve_padding(self.padding, spatial, self.kernel.shape[:-2], self.strides)

    def __call__(self, x: jax.Array) -> jax.Array:
        impl = self.impl
        if impl == "auto":
            impl = "im2col" if jax.default_backend() == "cpu" else "xla"
        conv = conv_im2col if impl == "im2col" else conv_xla
        return conv(x, self.kernel[...], self.strides, self.pads(x.shape[1:-1])) + self.bias[...]


@register(
    "cnn_nnx",
    description="The MNIST-1D reference conv net (cnn) as a Flax NNX module (5,210 params).",
    meta=IMAGES,
    search_space={"channels": ("choice", 16, 25, 32)},
)
class CNNNNX(nnx.Module):
    """Conv(k5, s2, pad 1) -> ReLU -> 2 x [Conv(k3, s2, pad 1) -> ReLU] -> flatten -> Dense,
    Greydanus 2020's ``ConvBase`` with ``channels=25`` (see :class:`toolkit.models.conv.CNN`).

    ``input_shape`` is one example's shape, (L,) or (L, C) for sequences and (H, W, C) for
    images: NNX layers are built with their input sizes. ``dropout`` drops the head's input
    units (Srivastava et al. 2014), train only, as ``cnn``'s.
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 25,
        conv_impl: str = "auto",
        dropout: float = 0.0,
        *,
        input_shape: Sequence[int],
        rngs: nnx.Rngs,
    ):
        check_choice("conv_impl", conv_impl, CONV_IMPLS)
        check_dropout(dropout)
        if not 1 <= len(input_shape) <= 3:
            raise ValueError(
                f"expected examples that are sequences (L,) or (L, C) or images (H, W, C); "
                f"got examples of shape {tuple(input_shape)}"
            )
        shape = (*input_shape, 1) if len(input_shape) == 1 else tuple(input_shape)
        spatial, width = list(shape[:-1]), shape[-1]
        for index, kernel in enumerate((5, 3, 3)):
            window, strides = (kernel,) * len(spatial), (2,) * len(spatial)
            conv = _Conv(
                width, channels, window, strides=strides, padding=1, impl=conv_impl, rngs=rngs
            )
            pads = conv.pads(spatial)
            spatial = [
                (n + lo + hi - kernel) // 2 + 1 for n, (lo, hi) in zip(spatial, pads, strict=True)
            ]
            setattr(self, f"conv{index}", conv)  # string names: checkpoint paths
            width = channels
        # The bridge gives a 'dropout' stream only when the Linen call has a dropout rng.
        self.dropout = nnx.Dropout(dropout, rngs=rngs if "dropout" in rngs else None)
        self.head = nnx.Linear(width * math.prod(spatial), num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        h = x[..., None] if x.ndim == 2 else x
        for conv in (self.conv0, self.conv1, self.conv2):
            h = nnx.relu(conv(h))
        h = self.dropout(h.reshape(h.shape[0], -1), deterministic=not train)
        return self.head(h)
