"""Classification losses by name: ``tk.losses.get("softmax_focal", gamma=2.0)``.

Every loss is a pure function ``loss(logits, labels, *, **hparams) -> (B,)`` in optax
style: ``logits`` (B, C) float, ``labels`` (B,) integer class indices, one unreduced value
per example. ``get`` returns ``functools.partial(loss, **defaults_and_overrides)``, so the
result can be jitted, vmapped, or picked per population member with ``jax.lax.switch``::

    import toolkit as tk
    tk.losses.names()                              # every registered loss
    fn = tk.losses.get("softmax_focal", gamma=2.0)
    per_example = fn(logits, labels)               # (B,)
    print(tk.losses.describe())                    # name, description, defaults

Families: ``cross_entropy`` (CE, label smoothing, sigmoid CE, focal, Poly-1, LogitNorm),
``margin`` (hinges), ``square`` (square loss on logits, Brier), ``robust`` (MAE, GCE, SCE,
NCE+RCE, arctan) and ``tempered`` (bi-tempered logistic loss).
"""

from toolkit.losses import cross_entropy, margin, robust, square, tempered  # noqa: F401
from toolkit.losses.base import losses, register
from toolkit.losses.tempered import exp_t, log_t, tempered_log_softmax, tempered_softmax

names = losses.names
entry = losses.entry
hparams = losses.hparams
describe = losses.describe
get = losses.get
search_space = losses.search_space

__all__ = [
    "describe",
    "entry",
    "exp_t",
    "get",
    "hparams",
    "log_t",
    "losses",
    "names",
    "register",
    "search_space",
    "tempered_log_softmax",
    "tempered_softmax",
]
