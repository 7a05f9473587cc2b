"""Models on the flattened input: logistic regression and the multilayer perceptron."""

from __future__ import annotations

import flax.linen as nn
import jax

from toolkit.models.base import register
from toolkit.models.layers import activation, check_dropout, with_channels

__all__ = ["MLP", "Linear"]


def _flatten(x: jax.Array) -> jax.Array:
    return with_channels(x).reshape(x.shape[0], -1)


@register(
    "linear", description="Logistic regression on the flattened input (MNIST-1D: 410 params)."
)
class Linear(nn.Module):
    """Multinomial logistic regression: ``logits = W vec(x) + b``.

    On MNIST-1D (B, 40) this is the reference ``Linear(40, 10)``: 40 * 10 + 10 = 410 params.

    Attributes:
      dropout: drop rate on the input (Srivastava et al. 2014), train only.
    """

    num_classes: int = 10
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_dropout(self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        h = nn.Dropout(self.dropout, deterministic=not train)(_flatten(x))
        return nn.Dense(self.num_classes, name="head")(h)


@register(
    "mlp",
    description="Multilayer perceptron on the flattened input (MNIST-1D: 15,210 params).",
    # Widths around the MNIST-1D reference (100, 100); dropout as in Srivastava et al. 2014
    # (0.5 for hidden units, less for small nets).
    search_space={
        "hidden": ("choice", (50, 50), (100, 100), (200, 200)),
        "dropout": ("uniform", 0.0, 0.5),
    },
)
class MLP(nn.Module):
    """``h_{k+1} = dropout(act(W_k h_k + b_k))`` for each width in ``hidden``, then a Dense head.

    The default is the MNIST-1D reference 40-100-100-10 ReLU network:
    (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10) = 15,210 params.

    Attributes:
      hidden: widths of the hidden layers.
      activation: a name in ``toolkit.models.layers.activations``.
      dropout: drop rate after each hidden activation (Srivastava et al. 2014), train only.
    """

    num_classes: int = 10
    hidden: tuple[int, ...] = (100, 100)
    activation: str = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        activation(self.activation)
        check_dropout(self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        act = activation(self.activation)
        h = _flatten(x)
        for width in self.hidden:
            h = act(nn.Dense(width)(h))
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(self.num_classes, name="head")(h)
