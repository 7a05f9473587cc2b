"""Optimizers by name, as ``optax.GradientTransformation``s with shared options.

    tx = tk.optimizers.get("adamw", learning_rate=1e-3)
    tx = tk.optimizers.get("sgd", learning_rate=0.1, schedule="warmup_cosine", total_steps=1000,
                           warmup_steps=100, weight_decay=5e-4, grad_clip=1.0)
    params_for_eval = tk.optimizers.eval_params(opt_state, params)

Every optimizer takes, besides its own hyperparameters (``tk.optimizers.hparams(name)``):

* ``learning_rate`` -- the peak rate (each entry has its own default), shaped over time by
  ``schedule`` (a name in ``tk.schedules``, default ``"constant"``) with
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

Modules: ``base`` (the registry, the shared options, ``register``), ``classic`` (the SGD
family and the adaptive optimizers), ``contrib`` (Muon, schedule-free AdamW and
``eval_params``; both from ``optax.contrib``) and ``schedules`` (the learning-rate
schedules, public as ``tk.schedules``).
"""

from toolkit.optimizers import classic, contrib, schedules  # noqa: F401  (registers them)
from toolkit.optimizers.base import WEIGHT_DECAY_KINDS, optimizers, register
from toolkit.optimizers.contrib import eval_params

names = optimizers.names
entry = optimizers.entry
hparams = optimizers.hparams
describe = optimizers.describe
get = optimizers.get
search_space = optimizers.search_space

__all__ = [
    "WEIGHT_DECAY_KINDS",
    "describe",
    "entry",
    "eval_params",
    "get",
    "hparams",
    "names",
    "optimizers",
    "register",
    "schedules",
    "search_space",
]
