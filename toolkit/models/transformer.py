"""A small pre-LN transformer encoder classifier: tokens per position, ViT patches on images."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from toolkit.models.base import IMAGES, register
from toolkit.models.layers import check_dropout, with_channels

__all__ = ["EncoderBlock", "Transformer", "patchify"]


def patchify(x: jax.Array, patch_size: int) -> jax.Array:
    """Images (B, H, W, C) -> (B, ceil(H/p) * ceil(W/p), p * p * C) non-overlapping patches.

    The image is zero-padded at the bottom and right to a multiple of ``p`` so every size
    works (28x28 with p = 3 gives 10 x 10 patches). A Dense layer on these patches is
    ViT's patch embedding (Dosovitskiy et al. 2021), a conv with kernel = stride = p.
    """
    b, h, w, c = x.shape
    p = patch_size
    x = jnp.pad(x, [(0, 0), (0, -h % p), (0, -w % p), (0, 0)])
    gh, gw = x.shape[1] // p, x.shape[2] // p
    x = x.reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, gh * gw, p * p * c)


class EncoderBlock(nn.Module):
    """Pre-LN block (Xiong et al. 2020): ``x += MHA(LN(x))``; ``x += MLP(LN(x))``."""

    heads: int
    mlp_dim: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        drop = nn.Dropout(self.dropout, deterministic=not train)
        h = nn.LayerNorm()(x)
        h = nn.MultiHeadDotProductAttention(num_heads=self.heads, dropout_rate=self.dropout)(
            h, deterministic=not train
        )
        x = x + drop(h)
        h = nn.gelu(nn.Dense(self.mlp_dim)(nn.LayerNorm()(x)))
        h = nn.Dense(x.shape[-1])(drop(h))
        return x + drop(h)


@register(
    "transformer",
    meta=IMAGES,
    description="Pre-LN transformer: a token per position (ViT patches on images), mean pool.",
    # Widths divisible by the 4 heads; dropout as ViT's 0.0-0.1 (Dosovitskiy et al. 2021).
    search_space={"d_model": ("choice", 32, 64), "dropout": ("uniform", 0.0, 0.2)},
)
class Transformer(nn.Module):
    """Tokens -> Dense embedding + learned positions -> ``depth`` pre-LN blocks -> LN -> mean
    over tokens -> Dense.

    Sequences (B, L, C) give one token per position (its C features embedded by a Dense);
    images give one token per ``patch_size`` x ``patch_size`` patch (:func:`patchify`). The
    learned positional embedding is sized by the number of tokens at init, so a model
    applies to inputs of the shape it was initialized on.

    Attributes:
      d_model: token width; must be divisible by ``heads``.
      depth: number of encoder blocks.
      heads: attention heads.
      mlp_ratio: MLP hidden width = round(mlp_ratio * d_model).
      dropout: rate on attention weights, the residual branches and the embedding.
      patch_size: patch side for images.
    """

    num_classes: int = 10
    d_model: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    patch_size: int = 4

    def __post_init__(self) -> None:
        if self.heads < 1 or self.d_model % self.heads:
            raise ValueError(
                f"d_model {self.d_model!r} must be a positive multiple of heads {self.heads!r}"
            )
        for field, value, low in [("depth", self.depth, 1), ("patch_size", self.patch_size, 1)]:
            if value < low:
                raise ValueError(f"{field} must be >= {low}, got {value!r}")
        if round(self.mlp_ratio * self.d_model) < 1:
            raise ValueError(f"mlp_ratio {self.mlp_ratio!r} gives an empty MLP")
        check_dropout(self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = with_channels(x)
        tokens = patchify(x, self.patch_size) if x.ndim == 4 else x
        h = nn.Dense(self.d_model, name="embed")(tokens)
        pos = self.param(
            "pos_embedding", nn.initializers.normal(0.02), (1, *h.shape[1:]), jnp.float32
        )
        h = nn.Dropout(self.dropout, deterministic=not train)(h + pos)
        mlp_dim = round(self.mlp_ratio * self.d_model)
        for _ in range(self.depth):
            h = EncoderBlock(self.heads, mlp_dim, self.dropout)(h, train=train)
        h = jnp.mean(nn.LayerNorm(name="final_norm")(h), axis=1)
        return nn.Dense(self.num_classes, name="head")(h)
