"""Convolutional classifiers: the MNIST-1D CNN, LeNet-5 and a small AlexNet.

Each works on sequences (1-D kernels) and images (2-D kernels): :class:`~toolkit.models.
layers.Conv` takes an int kernel size to mean that size along every spatial dim of its input.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from toolkit.models.base import IMAGES, register
from toolkit.models.layers import (
    CONV_IMPLS,
    Conv,
    activation,
    check_choice,
    check_dropout,
    pool,
    with_channels,
)

__all__ = ["CNN", "AlexNet", "LeNet5"]


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


@register(
    "cnn",
    meta=IMAGES,
    description="The MNIST-1D reference conv net: 3 strided convs + Dense (5,210 params).",
    search_space={"channels": ("choice", 16, 25, 32)},  # around the reference 25
)
class CNN(nn.Module):
    """Conv(k5, s2, pad 1) -> ReLU -> 2 x [Conv(k3, s2, pad 1) -> ReLU] -> flatten -> Dense.

    The MNIST-1D reference (Greydanus 2020, ``ConvBase``) with ``channels=25``: on (B, 40)
    the lengths go 40 -> 19 -> 10 -> 5, so the params are (1 * 5 * 25 + 25) +
    2 * (25 * 3 * 25 + 25) + (25 * 5 * 10 + 10) = 5,210. Images use k x k kernels. The
    flatten is position-major (L, C) where PyTorch's is channel-major (C, L): the same
    function up to a permutation of the head's input rows.

    Attributes:
      channels: channels of every conv layer.
      conv_impl: 'auto', 'im2col' or 'xla' (see :class:`~toolkit.models.layers.Conv`).
      dropout: drop rate on the head's input (Srivastava et al. 2014), train only.
    """

    num_classes: int = 10
    channels: int = 25
    conv_impl: str = "auto"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        check_dropout(self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        h = with_channels(x)
        for kernel in (5, 3, 3):
            h = nn.relu(Conv(self.channels, kernel, strides=2, padding=1, impl=self.conv_impl)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(_flatten(h))
        return nn.Dense(self.num_classes, name="head")(h)


@register(
    "lenet5",
    meta=IMAGES,
    description="LeNet-5 (LeCun et al. 1998): 6/16-channel 5x5 convs, pools, 120-84.",
    search_space={"activation": ("choice", "tanh", "relu")},  # the 1998 one, the modern one
)
class LeNet5(nn.Module):
    """Conv(6, k5) -> pool 2 -> Conv(16, k5) -> pool 2 -> Dense 120 -> Dense 84 -> Dense.

    LeCun et al. 1998, with C3 fully connected (the usual modern reading) and a plain
    Dense output instead of RBF units; ``activation`` follows every conv and hidden Dense.

    Padding: with ``padding='same'`` (default) both convs pad 2 so they keep the size and
    only the pools shrink it (by 2 each, floor), so any input of size >= 4 works: 8x8
    digits -> 16 x 2 x 2 features, 28x28 -> 16 x 7 x 7, 32x32 -> 16 x 8 x 8, length 40 ->
    16 x 10. ``padding='valid'`` is the original (32x32 -> 16 x 5 x 5, 61,706 params with
    10 classes) and needs inputs of size >= 16.

    Attributes:
      activation: a name in ``activations``; 'tanh' as in the original.
      pool: 'avg' (the original subsampling) or 'max'.
      padding: 'same' or 'valid' (see above).
      conv_impl: 'auto', 'im2col' or 'xla'.
      dropout: drop rate on the head's input (Srivastava et al. 2014), train only.
    """

    num_classes: int = 10
    activation: str = "tanh"
    pool: str = "avg"
    padding: str = "same"
    conv_impl: str = "auto"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        activation(self.activation)
        check_choice("pool", self.pool, ("avg", "max"))
        check_choice("padding", self.padding, ("same", "valid"))
        check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        check_dropout(self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        act = activation(self.activation)
        h = with_channels(x)
        for channels in (6, 16):
            h = act(Conv(channels, 5, padding=self.padding.upper(), impl=self.conv_impl)(h))
            h = pool(h, self.pool, 2)
        h = _flatten(h)
        for width in (120, 84):
            h = act(nn.Dense(width)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(self.num_classes, name="head")(h)


@register(
    "alexnet",
    meta=IMAGES,
    description="Small AlexNet (Krizhevsky et al. 2012) for 28x28/32x32: 5 convs, 3 pools.",
    # Krizhevsky et al. use dropout 0.5 in the classifier; widths stay small (cheap).
    search_space={"width": ("choice", 8, 16, 32), "dropout": ("uniform", 0.0, 0.5)},
)
class AlexNet(nn.Module):
    """AlexNet's layout scaled down for small inputs.

    Conv(w, k5) -> pool; Conv(2w, k5) -> pool; Conv(4w, k3) -> Conv(4w, k3) -> Conv(2w, k3)
    -> pool; then 2 x [Dense(hidden) -> ReLU -> dropout] -> Dense. All convs are 'SAME'
    with ReLU; pools are AlexNet's overlapping 3-wide max pools with stride 2 and 'SAME'
    padding, so sizes go 8 -> 4 -> 2 -> 1, 28 -> 14 -> 7 -> 4, 32 -> 16 -> 8 -> 4 and
    40 -> 20 -> 10 -> 5. No local response normalization (it adds little; Simonyan &
    Zisserman 2015).

    Attributes:
      width: channels of the first conv (w above).
      hidden: width of the two hidden Dense layers.
      dropout: drop rate after each hidden Dense layer (0.5 as in AlexNet).
      conv_impl: 'auto', 'im2col' or 'xla'.
    """

    num_classes: int = 10
    width: int = 16
    hidden: int = 256
    dropout: float = 0.5
    conv_impl: str = "auto"

    def __post_init__(self) -> None:
        check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        check_dropout(self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        w = self.width
        h = with_channels(x)
        stages = (((w, 5),), ((2 * w, 5),), ((4 * w, 3), (4 * w, 3), (2 * w, 3)))
        for stage in stages:
            for channels, kernel in stage:
                h = nn.relu(Conv(channels, kernel, impl=self.conv_impl)(h))
            h = pool(h, "max", 3, strides=2, padding="SAME")
        h = _flatten(h)
        for _ in range(2):
            h = nn.relu(nn.Dense(self.hidden)(h))
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(self.num_classes, name="head")(h)
