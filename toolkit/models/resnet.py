"""CIFAR-style ResNet (He et al. 2016, section 4.2): ResNet-8/14/20/32/44/56/110."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from toolkit.models.base import IMAGES, register
from toolkit.models.layers import CONV_IMPLS, Conv, check_choice, check_dropout, with_channels

__all__ = ["BasicBlock", "ResNet"]


class BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` with 3-wide kernels.

    The shortcut is the paper's option A: identity, subsampled by the stride and
    zero-padded to the new channel count, so it has no parameters (ResNet-20 keeps its
    published 0.27M params). Convs pad 1 as in PyTorch, so a stride-2 conv's output ``i``
    is centred on input ``2i``, the position the subsampled shortcut keeps.
    """

    features: int
    strides: int = 1
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = functools.partial(
            nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5
        )
        conv = functools.partial(
            Conv, self.features, 3, padding=1, use_bias=False, impl=self.conv_impl
        )
        h = nn.relu(norm()(conv(strides=self.strides)(x)))
        h = norm()(conv()(h))
        shortcut = x
        if self.strides != 1:
            shortcut = shortcut[(slice(None), *(slice(None, None, self.strides),) * (x.ndim - 2))]
        extra = self.features - x.shape[-1]
        if extra:
            pads = [(0, 0)] * (x.ndim - 1) + [(extra // 2, extra - extra // 2)]
            shortcut = jnp.pad(shortcut, pads)
        return nn.relu(h + shortcut)


@register(
    "resnet",
    meta=IMAGES,
    description="CIFAR ResNet-(6n+2) (He et al. 2016) with BatchNorm; 1-D on sequences.",
    search_space={"width": ("choice", 0.5, 1.0)},  # depth fixed: deeper costs more
)
class ResNet(nn.Module):
    """Conv(16w, k3) -> BN -> ReLU -> 3 stages of n basic blocks -> global avg pool -> Dense.

    He et al. 2016 (section 4.2): stages of 16w, 32w and 64w channels, the first block of
    stages 2 and 3 halving the resolution with stride 2; depth = 6n + 2 layers. ResNet-20
    (n = 3, w = 1) on 32x32x3 has 269,722 params. BatchNorm uses PyTorch's momentum 0.1
    (flax momentum 0.9) and epsilon 1e-5, running averages in 'batch_stats'. On sequences
    every kernel is 1-D.

    Attributes:
      depth: 6n + 2 for n >= 1 (8, 14, 20, 26, 32, 44, 56, 110, ...).
      width: channel multiplier; stage channels are round(16 * width) * (1, 2, 4).
      conv_impl: 'auto', 'im2col' or 'xla'.
      dropout: drop rate on the pooled features before the head (Srivastava et al. 2014),
        train only.
    """

    num_classes: int = 10
    depth: int = 20
    width: float = 1.0
    conv_impl: str = "auto"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(
                f"resnet depth must be 6n + 2 >= 8 (8, 14, 20, 32, ...), got {self.depth!r}"
            )
        if round(16 * self.width) < 1:
            raise ValueError(f"resnet width {self.width!r} gives fewer than 1 channel")
        check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        check_dropout(self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        base = round(16 * self.width)
        blocks = (self.depth - 2) // 6
        h = Conv(base, 3, padding=1, use_bias=False, impl=self.conv_impl)(with_channels(x))
        h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h))
        for stage, mult in enumerate((1, 2, 4)):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                h = BasicBlock(base * mult, strides, self.conv_impl)(h, train=train)
        h = jnp.mean(h, axis=tuple(range(1, h.ndim - 1)))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(self.num_classes, name="head")(h)
