"""What does a classifier look at? Gradient attributions and their sanity check.

    from toolkit import attributions
    attributions.names()             # vanilla_gradient, gradient_x_input, ...
    a = attributions.attribute("integrated_gradients", run, x, steps=64)
    s = attributions.attribute("smoothgrad", run, x, key=jax.random.key(0))
    attributions.model_randomization(run, x, key=jax.random.key(1))   # a DataFrame

The methods themselves are pure functions ``method(fn, x, target=None, **hparams)`` of a
logit function ``fn`` (see :mod:`toolkit.attributions.methods`), jit-able and vmapped over
examples; :func:`attribute` runs them on a trained Run under ``jax.jit``.
"""

from toolkit.attributions.attribute import attribute, needs_key
from toolkit.attributions.methods import (
    METHODS,
    RULES,
    gradient_x_input,
    integrated_gradients,
    quadrature,
    resolve_target,
    smoothgrad,
    vanilla_gradient,
)
from toolkit.attributions.sanity import (
    cascade,
    model_randomization,
    randomize_layers,
    rank_correlation,
)

names = METHODS.names

__all__ = [
    "METHODS",
    "RULES",
    "attribute",
    "cascade",
    "gradient_x_input",
    "integrated_gradients",
    "model_randomization",
    "names",
    "needs_key",
    "quadrature",
    "randomize_layers",
    "rank_correlation",
    "resolve_target",
    "smoothgrad",
    "vanilla_gradient",
]
