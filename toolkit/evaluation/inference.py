"""Batched, on-device inference: the logits of a trained run (or of an ensemble of runs),
every batch one program; optionally with the penultimate features from the same pass, or
averaged over Monte Carlo dropout passes.

Features are the input of the model's final Dense layer, the module named ``"head"`` (every
registered Linen model ends with ``nn.Dense(num_classes, name="head")``; an NNX model with
``self.head = nnx.Linear(...)``), read by intercepting that call
(``flax.linen.intercept_methods``), so no model needs code of its own. Monte Carlo dropout
(Gal & Ghahramani 2016) intercepts the dropout layers the same way and switches them on,
everything else staying in inference mode (BatchNorm running statistics, nothing mutated);
it predicts ``log((1/N) sum_n softmax(z_n))``, whose softmax is the mean probability. A deep
ensemble (Lakshminarayanan et al. 2017) predicts ``log((1/M) sum_m softmax(z_m))`` in one
program vmapped over the members' stacked variables.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from toolkit.models.nnx_bridge import FromNNX
from toolkit.train_step import data_mesh

__all__ = ["head_params", "predict"]

HEAD = "head"
HEAD_CONVENTION = (
    'the input of its final Dense layer named "head": a Linen model ends with '
    '`nn.Dense(num_classes, name="head")`, an NNX model with `self.head = nnx.Linear(...)`'
)


def _stochastic(module: nn.Module, next_fun, args, kwargs, rates: list):
    """Calls a dropout layer (``nn.Dropout``, or attention with ``dropout_rate``) with
    ``deterministic=False``, wherever its owner set it (attribute or call argument)."""
    rate = module.rate if isinstance(module, nn.Dropout) else module.dropout_rate
    if rate > 0:
        rates.append(rate)
    if getattr(module, "deterministic", None) is None:
        return next_fun(*args, **{**kwargs, "deterministic": False})
    # Set as an attribute: Flax refuses it twice. This module instance is this apply's own.
    saved = module.deterministic
    object.__setattr__(module, "deterministic", False)
    try:
        return next_fun(*args, **{k: v for k, v in kwargs.items() if k != "deterministic"})
    finally:
        object.__setattr__(module, "deterministic", saved)


def _forward(model, variables, x, *, features: bool, rng=None, probe: dict | None = None):
    """One inference-mode pass: ``(logits, features or None)``; with ``rng`` (a key), the
    dropout layers are on and draw from it. ``probe`` (a dict) receives the number of head
    calls and the active dropout rates seen while tracing."""
    heads: list = []
    rates: list = []

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if isinstance(module, FromNNX):
            hooks = {"head_inputs": heads if features else None}
            return next_fun(*args, **kwargs, **hooks, mc_dropout=rates if rng is not None else None)
        if features and module.name == HEAD:
            heads.append(args[0])
        if rng is not None and isinstance(module, nn.Dropout | nn.MultiHeadDotProductAttention):
            return _stochastic(module, next_fun, args, kwargs, rates)
        return next_fun(*args, **kwargs)

    rngs = None if rng is None else {"dropout": rng}
    with nn.intercept_methods(interceptor):
        logits = model.apply(variables, x, train=False, rngs=rngs)
    if probe is not None:
        probe.update(heads=len(heads), rates=list(rates))
    if features and len(heads) != 1:
        return logits, None
    return logits, (heads[0].reshape(x.shape[0], -1).astype(jnp.float32) if features else None)


def _members_forward(model, variables, batch, *, features, mc_samples, key, ensemble):
    """Logits (B, C) and features (B, D) or None of one batch: the model's own logits when
    one deterministic pass, else log of the mean probability over members and passes (the
    features then averaged over passes)."""

    def member(v):
        if mc_samples is None:
            logits, feats = _forward(model, v, batch, features=features)
            return logits[None], feats

        def one(total, sample):
            rng = jax.random.fold_in(key, sample)  # key: this batch's (see _predict)
            logits, feats = _forward(model, v, batch, features=features, rng=rng)
            return (total if feats is None else total + feats), logits

        shape = jax.eval_shape(lambda: _forward(model, v, batch, features=features)[1])
        start = jnp.zeros(()) if shape is None else jnp.zeros(shape.shape, shape.dtype)
        total, logits = jax.lax.scan(one, start, jnp.arange(mc_samples))
        return logits, (total / mc_samples if features else None)

    if ensemble:
        logits, feats = jax.vmap(member)(variables)  # (M, passes, B, C)
        logits = logits.reshape(-1, *logits.shape[2:])
    else:
        logits, feats = member(variables)
        if mc_samples is None:
            return logits[0], feats
    logps = jax.nn.log_softmax(logits)
    return jax.nn.logsumexp(logps, axis=0) - math.log(logps.shape[0]), feats


@functools.partial(
    jax.jit,
    static_argnames=("model", "batch_size", "batch_sharding", "features", "mc_samples", "ensemble"),
)
def _predict(
    model: nn.Module,
    variables,
    x: jax.Array,
    key=None,
    *,
    batch_size: int,
    batch_sharding=None,
    features: bool = False,
    mc_samples: int | None = None,
    ensemble: bool = False,
):
    if ensemble:  # the members' variables, stacked: the program is vmapped over them
        variables = jax.tree.map(lambda *a: jnp.stack(a), *variables)
    n = x.shape[0]
    num_batches = -(-n // batch_size)
    pad = num_batches * batch_size - n
    # Pad to whole batches so one compiled program serves every batch; padded rows are dropped.
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    batches = x.reshape(num_batches, batch_size, *x.shape[1:])

    def apply(args):
        index, batch = args
        if batch_sharding is not None:  # data-parallel: each device takes a slice of the batch
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        if not (features or mc_samples or ensemble):
            return model.apply(variables, batch, train=False)
        logits, feats = _members_forward(
            model,
            variables,
            batch,
            features=features,
            mc_samples=mc_samples,
            key=None if key is None else jax.random.fold_in(key, index),
            ensemble=ensemble,
        )
        return (logits, feats) if features else logits

    out = jax.lax.map(apply, (jnp.arange(num_batches), batches))
    return jax.tree.map(lambda a: a.reshape(num_batches * batch_size, -1)[:n], out)


def _model_name(run) -> str:
    return getattr(getattr(run, "config", None), "model", None) or type(run.model).__name__


def _check(run, x, *, features: bool, mc: bool) -> None:
    """Traces one example abstractly (no compile, no compute) to check the conventions."""
    probe: dict = {}
    example = jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32)
    rng = jax.random.key(0) if mc else None
    variables = _member_variables(run)
    jax.eval_shape(
        lambda v, e: _forward(run.model, v, e, features=features, rng=rng, probe=probe),
        variables,
        example,
    )
    name = _model_name(run)
    if features and probe["heads"] != 1:
        raise ValueError(
            f"model {name!r} has no single head to read features from ({probe['heads']} calls "
            f"of a module named {HEAD!r}); features are {HEAD_CONVENTION}"
        )
    if mc and not probe["rates"]:
        rate = getattr(run.model, "dropout", dict(getattr(run.model, "hparams", ())).get("dropout"))
        raise ValueError(
            f"mc_samples: model {name!r} has no dropout layer with a rate > 0 (dropout="
            f"{rate!r}), so its passes would all be the same; "
            f"MC dropout needs a model trained with dropout > 0 (model_hparams={{'dropout': "
            f"0.1}})"
        )


def _member_variables(run):
    members = getattr(run, "members", None)
    return members[0].variables if members is not None else run.variables


def predict(
    run,
    x: Any,
    *,
    batch_size: int = 1000,
    devices=None,
    features: bool = False,
    mc_samples: int | None = None,
    key: jax.Array | None = None,
):
    """Logits (N, C) of ``run`` on ``x`` (inference mode), computed on device in batches.

    ``run`` is a :class:`~toolkit.training.Run` or a :class:`~toolkit.ensembles.Ensemble`
    (log of its members' mean probability). ``features=True`` returns ``(logits, features)``,
    the features (N, D) float32 being the input of the model's head from the same pass
    (not for an ensemble: score each member). ``mc_samples=N`` averages N passes with
    dropout on, pass n of batch b drawing its masks from ``fold_in(fold_in(key, b), n)``
    (default key 0): the same key, batch size and device count give the same values; with
    ``mc_samples`` None or 1 and no key the pass is deterministic. With features, the
    features are their mean over the passes.

    Data-parallel over ``devices`` (default: every local device): the batch size is rounded
    up to a multiple of the device count and each batch is sharded across them.
    """
    ensemble = hasattr(run, "members")
    if features and ensemble:
        raise ValueError(
            "features=True with an ensemble: its members have features of their own; score "
            "each member (predict(member, x, features=True) for member in ensemble.members)"
        )
    if mc_samples is not None and (
        isinstance(mc_samples, bool)
        or not isinstance(mc_samples, int | np.integer)
        or mc_samples < 1
    ):
        raise ValueError(f"mc_samples must be a positive int or None, got {mc_samples!r}")
    if mc_samples == 1 and key is None:
        mc_samples = None
    elif mc_samples is None and key is not None:
        mc_samples = 1
    if mc_samples is not None:
        mc_samples = int(mc_samples)
        key = jax.random.key(0) if key is None else key
    if features or mc_samples is not None:
        _check(run, x, features=features, mc=mc_samples is not None)
    variables = tuple(m.variables for m in run.members) if ensemble else run.variables
    static = {"features": features, "mc_samples": mc_samples, "ensemble": ensemble}

    devices = list(jax.local_devices() if devices is None else devices)
    n = len(devices)
    batch_size = max(1, min(batch_size, x.shape[0]))
    batch_size = -(-batch_size // n) * n
    if n == 1:
        x = jax.device_put(jnp.asarray(x, jnp.float32), devices[0])
        return _predict(run.model, variables, x, key, batch_size=batch_size, **static)
    mesh = data_mesh(devices)
    replicated = NamedSharding(mesh, P())
    x, variables, key = jax.device_put((jnp.asarray(x, jnp.float32), variables, key), replicated)
    return _predict(
        run.model,
        variables,
        x,
        key,
        batch_size=batch_size,
        batch_sharding=NamedSharding(mesh, P("data")),
        **static,
    )


def head_params(run) -> tuple[jax.Array, jax.Array]:
    """The head's kernel W (D, C) and bias b (C,), float32: ``logits = features @ W + b``.

    The head is the one parameter dict named ``"head"`` holding a kernel and a bias
    (:data:`HEAD_CONVENTION`); an ensemble has one per member (ValueError).
    """
    if hasattr(run, "members"):
        raise ValueError("head_params of an ensemble: each member has its own; ask each member")
    found = []

    def walk(tree):
        for name, value in tree.items():
            if not isinstance(value, dict):
                continue
            if name == HEAD and {"kernel", "bias"} <= set(value):
                found.append(value)
            else:
                walk(value)

    walk(dict(run.params))
    if len(found) != 1:
        raise ValueError(
            f"model {_model_name(run)!r} has {len(found)} parameter dicts named {HEAD!r} with "
            f"a kernel and a bias, not one; the head is {HEAD_CONVENTION}"
        )
    w, b = (jnp.asarray(found[0][k], jnp.float32) for k in ("kernel", "bias"))
    return w, b
