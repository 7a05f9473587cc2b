"""Recurrent classifiers (Elman RNN, LSTM, GRU) over ``flax.linen.RNN``.

Sequences (B, L) / (B, L, C) are read one position per step; images (B, H, W, C) are read
row by row as H steps of W * C features. The defaults of all three are the MNIST-1D
reference GRU's (hidden 6, bidirectional, all outputs flattened into the head), so that a
comparison varies only the cell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from toolkit.models.base import register
from toolkit.models.layers import check_choice, check_dropout, with_channels

__all__ = ["GRU", "LSTM", "READOUTS", "RNN", "TorchGRUCell"]

READOUTS = ("flatten", "last", "mean")


def _per_gate(init: Callable[..., jax.Array], gates: int) -> Callable[..., jax.Array]:
    """Initializes a (hidden, gates * hidden) kernel one square gate block at a time.

    An orthogonal init of the whole (h, 3h) matrix would only make its rows orthonormal;
    per block, each gate's recurrent matrix is orthogonal, as in ``flax.linen.GRUCell``.
    """

    def initializer(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        block = (*shape[:-1], shape[-1] // gates)
        keys = jax.random.split(key, gates)
        return jnp.concatenate([init(k, block, dtype) for k in keys], axis=-1)

    return initializer


class TorchGRUCell(nn.RNNCellBase):
    r"""GRU cell with PyTorch's ``nn.GRU`` parameters (Cho et al. 2014)::

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    ``flax.linen.GRUCell`` computes the same function but drops ``b_hr`` and ``b_hz``, which
    only add to ``b_ir`` and ``b_iz``; it has 2 * hidden fewer params per direction (the
    MNIST-1D reference GRU would count 5,110 instead of 5,134). This cell keeps PyTorch's
    layout so parameter counts match the published reference and PyTorch weights load one to
    one: 'input' holds ``[W_ir | W_iz | W_in]^T`` (in, 3h) and ``[b_ir | b_iz | b_in]``;
    'hidden' holds ``[W_hr | W_hz | W_hn]^T`` (h, 3h) and ``[b_hr | b_hz | b_hn]``. Fusing
    the gates also makes a step two matmuls instead of six.

    Initialization follows Flax (LeCun normal inputs, orthogonal recurrent blocks, zero
    biases), not PyTorch's uniform(-1/sqrt(h), 1/sqrt(h)).
    """

    features: int
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    recurrent_kernel_init: Callable[..., jax.Array] = _per_gate(nn.initializers.orthogonal(), 3)
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, carry: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        dense = lambda name, init: nn.Dense(
            3 * self.features,
            kernel_init=init,
            bias_init=self.bias_init,
            param_dtype=self.param_dtype,
            name=name,
        )
        i_r, i_z, i_n = jnp.split(dense("input", self.kernel_init)(inputs), 3, axis=-1)
        h_r, h_z, h_n = jnp.split(dense("hidden", self.recurrent_kernel_init)(carry), 3, axis=-1)
        r = nn.sigmoid(i_r + h_r)
        z = nn.sigmoid(i_z + h_z)
        n = jnp.tanh(i_n + r * h_n)
        new_h = (1.0 - z) * n + z * carry
        return new_h, new_h

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        """Zero hidden state of shape ``input_shape[:-1] + (features,)``."""
        del rng
        return jnp.zeros((*input_shape[:-1], self.features), self.param_dtype)

    @property
    def num_feature_axes(self) -> int:
        return 1


def _as_steps(x: jax.Array) -> jax.Array:
    """(B, L) -> (B, L, 1); (B, L, C) unchanged; images (B, H, W, C) -> (B, H, W * C)."""
    x = with_channels(x)
    return x.reshape(*x.shape[:2], -1)


class _Recurrent(nn.Module):
    """An RNN over the steps of the input, then a Dense head on a readout of its outputs.

    Readouts: 'flatten' concatenates the outputs of all steps (the MNIST-1D reference;
    the head then has L * D inputs, D = hidden or 2 * hidden); 'last' takes the forward
    direction's last output and the backward direction's output at step 0 (each the state
    after reading the whole sequence); 'mean' averages the outputs over steps. ``dropout``
    drops the readout's units before the head (Srivastava et al. 2014), train only.
    """

    num_classes: int = 10
    hidden: int = 6
    bidirectional: bool = True
    readout: str = "flatten"
    dropout: float = 0.0

    cell_type: ClassVar[Callable[..., nn.RNNCellBase]]

    def __post_init__(self) -> None:
        check_choice("readout", self.readout, READOUTS)
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden!r}")
        check_dropout(self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = _as_steps(x)
        # Cells made here belong to this module, so their params sit under 'forward' and
        # 'backward' ('backward' outputs re-reversed into input order by keep_order).
        cell = lambda name: type(self).cell_type(features=self.hidden, name=name)
        outputs = [nn.RNN(cell("forward"))(x)]
        if self.bidirectional:
            outputs.append(nn.RNN(cell("backward"), reverse=True, keep_order=True)(x))
        if self.readout == "last":
            h = jnp.concatenate([outputs[0][:, -1], *(o[:, 0] for o in outputs[1:])], axis=-1)
        else:
            y = jnp.concatenate(outputs, axis=-1)  # (B, L, D): forward then backward features
            h = y.reshape(y.shape[0], -1) if self.readout == "flatten" else jnp.mean(y, axis=1)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(self.num_classes, name="head")(h)


# Hidden sizes from the MNIST-1D reference bi-GRU-6 up (cheap: the sequences are short).
HIDDEN_SPACE = {"hidden": ("choice", 6, 12, 24)}


@register(
    "rnn",
    description="Elman RNN (tanh; Elman 1990) over the input's steps, bidirectional.",
    search_space=HIDDEN_SPACE,
)
class RNN(_Recurrent):
    """Elman RNN ``h' = tanh(W_i x + W_h h + b)`` (``flax.linen.SimpleCell``)."""

    cell_type = nn.SimpleCell


@register(
    "lstm",
    description="LSTM (Hochreiter & Schmidhuber 1997) over the input's steps, bidirectional.",
    search_space=HIDDEN_SPACE,
)
class LSTM(_Recurrent):
    """LSTM with input, forget and output gates (``flax.linen.LSTMCell``)."""

    cell_type = nn.LSTMCell


@register(
    "gru",
    description="GRU with PyTorch's biases; MNIST-1D reference bi-GRU-6 (5,134 params).",
    search_space=HIDDEN_SPACE,
)
class GRU(_Recurrent):
    """GRU with PyTorch's parameter layout (:class:`TorchGRUCell`).

    With the defaults on (B, 40) it is the MNIST-1D reference ``GRU``: per direction
    3 * 6 * (1 + 6) weights + 2 * 3 * 6 biases = 162, two directions 324, and a head on
    40 * 12 features: 480 * 10 + 10 = 4,810; 5,134 in all.
    """

    cell_type = TorchGRUCell
