"""ODIN: temperature scaling plus a small input perturbation (Liang et al. 2018)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toolkit.ood.scoring.base import Batch, check_range, register

__all__ = ["ODIN_CHUNK", "odin_perturb"]

ODIN_CHUNK = 1000
"""Inputs per gradient pass (bounds the backward pass's memory)."""


@jax.jit
def _odin_chunk(x, temperature, noise, logits_fn):
    def log_msp(xi):
        z = logits_fn(xi)
        label = jax.lax.stop_gradient(jnp.argmax(z, axis=-1))
        log_p = jax.nn.log_softmax(z / temperature, axis=-1)
        return jnp.sum(jnp.take_along_axis(log_p, label[:, None], axis=-1))

    x_tilde = x + noise * jnp.sign(jax.grad(log_msp)(x))
    return x_tilde, jnp.max(jax.nn.softmax(logits_fn(x_tilde) / temperature, axis=-1), axis=-1)


def odin_perturb(logits_fn, x, temperature: float, noise: float):
    """``(x_tilde, scores)``: ``x_tilde = x - eps sign(-grad_x log S_yhat(x; T))`` and the
    tempered max-softmax of ``x_tilde``, in chunks of ODIN_CHUNK examples."""
    if not isinstance(logits_fn, jax.tree_util.Partial):
        # A plain function is the program's static part: one compile per function. A
        # Partial's bound arguments (a model's variables) are traced instead, so every run
        # of one model shares one compiled program.
        logits_fn = jax.tree_util.Partial(logits_fn)
    x = jnp.asarray(x)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    x = x.astype(dtype)
    t, e = jnp.asarray(temperature, dtype), jnp.asarray(noise, dtype)
    parts = [
        _odin_chunk(x[i : i + ODIN_CHUNK], t, e, logits_fn)
        for i in range(0, x.shape[0], ODIN_CHUNK)
    ]
    return jnp.concatenate([p[0] for p in parts]), jnp.concatenate([p[1] for p in parts])


@register(
    "odin",
    needs=("inputs",),
    grid={"temperature": (1.0, 10.0, 100.0, 1000.0), "noise": (0.0014, 0.0028)},
    description="Tempered max softmax after an input perturbation (Liang et al. 2018).",
)
def fit_odin(reference, *, temperature: float = 1000.0, noise: float = 0.0014):
    """ODIN (Liang, Li & Srikant 2018, "Enhancing the reliability of out-of-distribution
    image detection in neural networks"): ``x_tilde = x - eps sign(-grad_x log
    S_yhat(x; T))`` with ``S_yhat(x; T) = max_c softmax(f(x) / T)_c`` and yhat the predicted
    class; score ``S_yhat(x_tilde; T)``. Needs the inputs and a differentiable
    ``logits_fn`` (in the model's input space; unlike OpenOOD the step is not divided by
    the image normalisation's std, as the toolkit's models read unnormalised inputs, and a
    zero gradient leaves its coordinate unmoved, sign(0) = 0). Grid: OpenOOD v1.5's."""
    check_range("odin", "temperature", temperature, 0.0, float("inf"))
    check_range("odin", "noise", noise, 0.0, float("inf"), closed="low")

    def score(batch: Batch) -> jax.Array:
        return odin_perturb(batch.logits_fn, batch.inputs, temperature, noise)[1]

    return score
