"""Optimizers by name, as ``optax.GradientTransformation``s with shared options.

    tx = tk.optimizers.get("adamw", learning_rate=1e-3)
    tx = tk.optimizers.get("sgd", learning_rate=0.1, schedule="warmup_cosine", total_steps=1000,
                           warmup_steps=100, weight_decay=5e-4, grad_clip=1.0)
    params_for_eval = tk.optimizers.eval_params(opt_state, params)

Every optimizer takes, besides its own hyperparameters (``tk.optimizers.hparams(name)``):

* ``learning_rate`` -- the peak rate (each entry has its own default), shaped over time by
  ``schedule`` (a name in :mod:`toolkit.schedules`, default ``"constant"``) with
  ``total_steps`` and ``warmup_steps``; the schedule's own options (``end_value``, ...) go
  in ``schedule_hparams``, a dict.
* ``weight_decay`` -- ``entry(name).meta["weight_decay"]`` says how it is applied:
  ``"decoupled"``: the optimizer's own argument, p <- p - eta_t * lambda * p next to the
  adaptive step (Loshchilov & Hutter 2019; adamw, lamb, lion, muon, schedule_free_adamw);
  ``"decoupled_unscaled"``: adafactor's ``weight_decay_rate``, p <- p - lambda * p, not
  multiplied by the learning rate; ``"l2"``: ``optax.add_decayed_weights`` adds lambda * p to
  the gradient before the optimizer (classic L2, as ``torch.optim`` does for sgd, adam and
  rmsprop), so momentum and adaptive scaling see it.
* ``grad_clip`` -- clip the gradient to this global L2 norm first
  (``optax.clip_by_global_norm``; None = off). Clipping comes before the weight decay.

``learning_rate`` and ``weight_decay`` may be traced JAX scalars, so a population can build
its optimizer inside ``jax.vmap`` over per-member rates. Transformations trace under
standard dtype promotion: optax computes ``b ** count`` with an int32 count (Adam's bias
correction), which ``jax_numpy_dtype_promotion="strict"`` rejects.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import optax
from optax.contrib import MuonDimensionNumbers, ScheduleFreeState

from toolkit import schedules
from toolkit.registry import Registry
from toolkit.schedules import check_nonnegative, check_positive, concrete_float

__all__ = ["describe", "entry", "eval_params", "get", "hparams", "names", "optimizers", "register"]

# Options every optimizer takes; the factories below take the rest.
_COMMON = {
    "schedule": "constant",
    "schedule_hparams": None,
    "total_steps": None,
    "warmup_steps": 0,
    "grad_clip": None,
}
# Decay rates of moving averages: must lie in [0, 1).
_UNIT_INTERVAL = ("b1", "b2", "momentum", "beta", "decay", "adam_b1", "adam_b2")


def _standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` with init and update traced under standard dtype promotion (see module doc)."""
    tx = optax.with_extra_args_support(tx)

    def init(params: optax.Params) -> optax.OptState:
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(
        updates: optax.Updates, state: optax.OptState, params: optax.Params | None = None, **extra
    ) -> tuple[optax.Updates, optax.OptState]:
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra)

    return optax.GradientTransformationExtraArgs(init, update)


def _build(
    factory: Callable[..., optax.GradientTransformation],
    *,
    learning_rate: Any,
    weight_decay: Any,
    schedule: str,
    schedule_hparams: dict[str, Any] | None,
    total_steps: int | None,
    warmup_steps: int,
    grad_clip: Any,
    **own: Any,
) -> optax.GradientTransformation:
    """Checks the options, builds the schedule, the optimizer, then clipping in front."""
    check_nonnegative("weight_decay", weight_decay)
    if grad_clip is not None:
        check_positive("grad_clip", grad_clip)
    for key in _UNIT_INTERVAL:
        value = concrete_float(key, own[key]) if own.get(key) is not None else None
        if value is not None and not 0.0 <= value < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {own[key]!r}")
    lr = schedules.get(
        schedule,
        learning_rate=learning_rate,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        **(schedule_hparams or {}),
    )
    tx = factory(learning_rate=lr, weight_decay=weight_decay, **own)
    if grad_clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
    return _standard_promotion(tx)


optimizers = Registry("optimizer", build=_build)
names = optimizers.names
entry = optimizers.entry
hparams = optimizers.hparams
describe = optimizers.describe
get = optimizers.get


WEIGHT_DECAY_KINDS = ("l2", "decoupled", "decoupled_unscaled")


def register(name: str, *, description: str, weight_decay: str) -> Callable[[Callable], Callable]:
    """Decorator: registers ``factory(*, learning_rate, weight_decay, **own)`` under ``name``.

    ``learning_rate`` arrives as a schedule, and the shared options (schedule, warmup,
    gradient clipping) are applied around the factory, so a new optimizer only builds its
    own transformation. ``weight_decay`` says how the factory applies it, one of
    ``WEIGHT_DECAY_KINDS`` (see the module docstring).
    """
    if weight_decay not in WEIGHT_DECAY_KINDS:
        raise ValueError(f"weight_decay must be one of {WEIGHT_DECAY_KINDS}, got {weight_decay!r}")

    def decorator(factory: Callable[..., optax.GradientTransformation]) -> Callable:
        own = {
            k: p.default
            for k, p in inspect.signature(factory).parameters.items()
            if p.default is not p.empty
        }
        optimizers.add(
            name,
            factory,
            description=description,
            defaults={**own, **_COMMON},
            meta={"weight_decay": weight_decay},
        )
        return factory

    return decorator


def _is_zero(value: Any) -> bool:
    """True only for a concrete 0 (a traced value may be anything)."""
    return concrete_float("weight_decay", value) == 0.0


def _l2(weight_decay: Any, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Adds weight_decay * p to the gradient before ``tx`` (coupled L2 regularisation)."""
    if _is_zero(weight_decay):
        return tx
    return optax.chain(optax.add_decayed_weights(weight_decay), tx)


# -- SGD family ------------------------------------------------------------------------
@register("sgd", weight_decay="l2", description="Plain stochastic gradient descent.")
def sgd(*, learning_rate: Any = 0.01, weight_decay: Any = 0.0) -> optax.GradientTransformation:
    """p <- p - eta_t (g + lambda p) (Robbins & Monro 1951)."""
    return _l2(weight_decay, optax.sgd(learning_rate))


@register("momentum", weight_decay="l2", description="SGD with heavy-ball momentum.")
def momentum(
    *, learning_rate: Any = 0.01, momentum: float = 0.9, weight_decay: Any = 0.0
) -> optax.GradientTransformation:
    """m <- mu m + g; p <- p - eta_t m (Polyak 1964; optax/PyTorch form, no dampening)."""
    return _l2(weight_decay, optax.sgd(learning_rate, momentum=momentum))


@register("nesterov", weight_decay="l2", description="SGD with Nesterov momentum.")
def nesterov(
    *, learning_rate: Any = 0.01, momentum: float = 0.9, weight_decay: Any = 0.0
) -> optax.GradientTransformation:
    """m <- mu m + g; p <- p - eta_t (g + mu m) (Nesterov 1983; Sutskever et al. 2013)."""
    return _l2(weight_decay, optax.sgd(learning_rate, momentum=momentum, nesterov=True))


# -- adaptive ---------------------------------------------------------------------------
@register("adam", weight_decay="l2", description="Adam; weight_decay is coupled L2.")
def adam(
    *,
    learning_rate: Any = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """p <- p - eta_t m_hat / (sqrt(v_hat) + eps), bias-corrected moments of g + lambda p.

    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return _l2(weight_decay, optax.adam(learning_rate, b1=b1, b2=b2, eps=eps))


@register("adamw", weight_decay="decoupled", description="Adam with decoupled weight decay.")
def adamw(
    *,
    learning_rate: Any = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: Any = 1e-4,
) -> optax.GradientTransformation:
    """p <- p - eta_t (m_hat / (sqrt(v_hat) + eps) + lambda p).

    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (optax's
    default lambda = 1e-4).
    """
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


@register("lamb", weight_decay="decoupled", description="LAMB: layer-wise trust-ratio Adam.")
def lamb(
    *,
    learning_rate: Any = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """r = m_hat / (sqrt(v_hat) + eps) + lambda p; p <- p - eta_t (||p|| / ||r||) r per leaf.

    You et al., "Large Batch Optimization for Deep Learning", ICLR 2020.
    """
    return optax.lamb(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


@register("lion", weight_decay="decoupled", description="Lion: signed momentum (Chen 2023).")
def lion(
    *, learning_rate: Any = 1e-4, b1: float = 0.9, b2: float = 0.99, weight_decay: Any = 1e-3
) -> optax.GradientTransformation:
    """p <- p - eta_t (sign(b1 m + (1 - b1) g) + lambda p); m <- b2 m + (1 - b2) g.

    Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023 (use a
    rate 3-10x below AdamW's and a decay 3-10x above; defaults are optax's).
    """
    return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


@register("rmsprop", weight_decay="l2", description="RMSProp; weight_decay is coupled L2.")
def rmsprop(
    *,
    learning_rate: Any = 1e-3,
    decay: float = 0.9,
    eps: float = 1e-8,
    centered: bool = False,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """v <- d v + (1 - d) g^2; p <- p - eta_t g / sqrt(v + eps) (Tieleman & Hinton 2012)."""
    return _l2(weight_decay, optax.rmsprop(learning_rate, decay=decay, eps=eps, centered=centered))


@register(
    "adafactor",
    weight_decay="decoupled_unscaled",
    description="Adafactor: factored second moments, relative step size.",
)
def adafactor(
    *,
    learning_rate: Any = 1e-2,
    decay_rate: float = 0.8,
    clipping_threshold: float | None = 1.0,
    multiply_by_parameter_scale: bool = True,
    min_dim_size_to_factor: int = 128,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """Adam-like step with row/column-factored v, update RMS clipped at ``clipping_threshold``
    and scaled by max(RMS(p), 1e-3); decay p <- p - lambda p is not scaled by eta_t.

    Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
    ICML 2018. Matrices with both sides below ``min_dim_size_to_factor`` keep a full v.
    """
    return optax.adafactor(
        learning_rate,
        min_dim_size_to_factor=min_dim_size_to_factor,
        decay_rate=decay_rate,
        clipping_threshold=clipping_threshold,
        multiply_by_parameter_scale=multiply_by_parameter_scale,
        weight_decay_rate=None if _is_zero(weight_decay) else weight_decay,
    )


# -- matrix-aware and schedule-free -----------------------------------------------------
# flax.linen.MultiHeadDotProductAttention projects in -> (heads, head_dim) with these.
_HEAD_PROJECTIONS = ("query", "key", "value")
# Flax's names for offsets and gains, which are never matrices (attention biases are 2-D).
_NOT_MATRICES = ("bias", "scale")


def _key_name(entry: Any) -> str:
    return str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", ""))))


def _muon_dimension_numbers(reshape_kernels: bool) -> Callable[[Any], Any]:
    """Which leaves Muon orthogonalises, and as what matrix; None sends a leaf to AdamW.

    Leaves of rank < 2, biases and gains (flax names "bias", "scale"; attention biases are
    (heads, head_dim)) and embedding tables (a name containing "embed": lookups, not
    linear maps) take AdamW, as Jordan et al. recommend. A rank-2 leaf is an (in, out)
    matrix. With ``reshape_kernels``, a higher-rank kernel becomes the matrix of the linear
    map it applies: a flax conv kernel (*window, in, out) is (prod(window) * in, out), the
    convolution as a matmul on patches (Jordan et al.'s convnet setup), and so is an
    attention output kernel (heads, head_dim, out); an attention query/key/value kernel
    (in, heads, head_dim) is (in, heads * head_dim). Without it they take AdamW (optax's
    default rule: only rank-2 leaves are matrices).
    """

    def spec(path: tuple[Any, ...], x: jax.Array) -> MuonDimensionNumbers | None:
        names = [_key_name(entry) for entry in path]
        name = names[-1] if names else ""
        if x.ndim < 2 or name in _NOT_MATRICES or "embed" in name:
            return None
        if x.ndim > 2 and not reshape_kernels:
            return None
        if x.ndim > 2 and len(names) > 1 and names[-2] in _HEAD_PROJECTIONS:
            return MuonDimensionNumbers(reduction_axis=0, output_axis=tuple(range(1, x.ndim)))
        return MuonDimensionNumbers(reduction_axis=tuple(range(x.ndim - 1)), output_axis=-1)

    return lambda params: jax.tree_util.tree_map_with_path(spec, params)


@register(
    "muon",
    weight_decay="decoupled",
    description="Muon: orthogonalised momentum for matrices, AdamW for the rest.",
)
def muon(
    *,
    learning_rate: Any = 0.02,
    beta: float = 0.95,
    ns_steps: int = 5,
    nesterov: bool = True,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    reshape_kernels: bool = True,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """For each matrix W: m <- beta m + (1 - beta) g; W <- W - eta_t (s NS(m~) + lambda W),
    with m~ the (Nesterov, bias-corrected) momentum, NS ``ns_steps`` Newton-Schulz steps
    towards the orthogonal polar factor U V^T and s = sqrt(max(1, fan_out / fan_in)).
    Other leaves take Nesterov AdamW(eta_t, adam_b1, adam_b2, lambda); both parts share
    the learning rate (optax's choice). Which leaves are
    matrices, and how higher-rank kernels are flattened, is set by ``reshape_kernels``
    (see ``_muon_dimension_numbers``); a classifier's last Dense kernel counts as a matrix
    although Jordan et al. give that layer to AdamW.

    Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024
    (kellerjordan.github.io/posts/muon); ``optax.contrib.muon``.
    """
    return optax.contrib.muon(
        learning_rate,
        ns_steps=ns_steps,
        beta=beta,
        weight_decay=weight_decay,
        nesterov=nesterov,
        adam_b1=adam_b1,
        adam_b2=adam_b2,
        adam_weight_decay=weight_decay,
        muon_weight_dimension_numbers=_muon_dimension_numbers(reshape_kernels),
    )


@register(
    "schedule_free_adamw",
    weight_decay="decoupled",
    description="Schedule-free AdamW; evaluate at eval_params(opt_state, params).",
)
def schedule_free_adamw(
    *,
    learning_rate: Any = 2.5e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_lr_power: float = 2.0,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """z <- z - eta_t (g(y) / (sqrt(v_hat) + eps) + lambda y); x <- (1 - c) x + c z with
    c = eta_t^2 / sum eta_i^2; y = (1 - b1) z + b1 x. Training steps at y (the params the
    optimizer returns); evaluate at x = ``eval_params``. Meant for a constant schedule
    with warmup, not a decaying one.

    Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    if concrete_float("b1", b1) == 0.0:
        raise ValueError("schedule_free_adamw needs b1 > 0 (eval params divide by b1), got 0")
    return optax.contrib.schedule_free_adamw(
        learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
        weight_lr_power=weight_lr_power,
    )  # fmt: skip


# -- evaluation parameters --------------------------------------------------------------
def eval_params(opt_state: optax.OptState, params: optax.Params) -> optax.Params:
    """The parameters to evaluate a model at: schedule-free's average x, else ``params``.

    Finds the ``ScheduleFreeState`` wherever it sits in ``opt_state`` (chains, clipping)
    and returns ``optax.contrib.schedule_free_eval_params``, x = (y - (1 - b1) z) / b1;
    any other state returns ``params`` unchanged. For a population stacked on a leading
    axis, call it inside the same ``jax.vmap`` as the train step (b1 is per member).
    """
    found = optax.tree.get_all_with_path(
        opt_state,
        "ScheduleFreeState",
        filtering=lambda _, value: isinstance(value, ScheduleFreeState),
    )
    if not found:
        return params
    if len(found) > 1:
        paths = ", ".join(jax.tree_util.keystr(path) for path, _ in found)
        raise ValueError(f"eval_params: several schedule-free states in opt_state at {paths}")
    return optax.contrib.schedule_free_eval_params(found[0][1], params)
