"""The model-randomization sanity check of Adebayo et al. (2018), "Sanity checks for
saliency maps": an attribution method that explains the model must change when the
model's weights are replaced by random ones.

Layers are re-initialized one by one from the top (the output layer) down, cumulatively
("cascading randomization"), with fresh draws from the model's own initializers; the
attributions of each randomized model are compared with the trained model's by the
Spearman rank correlation, per example, then averaged. A faithful method gives a
correlation near 1 for the trained model itself and drops towards 0 as layers are
randomized.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from toolkit.attributions.attribute import attribute, needs_key
from toolkit.attributions.methods import METHODS, resolve_target

__all__ = ["cascade", "model_randomization", "randomize_layers", "rank_correlation"]


def rank_correlation(a: Any, b: Any) -> np.ndarray:
    """Spearman's rho between ``a[i]`` and ``b[i]`` for each example i (flattened).

    ``rho = pearson(rank(a_i), rank(b_i))`` with tied values given their average rank
    (scipy.stats.spearmanr's definition). NaN where either example is constant.
    """
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"rank_correlation needs equal shapes, got {a.shape} and {b.shape}")
    ra = rankdata(a, axis=1) - (a.shape[1] + 1) / 2  # centred: the mean rank is (n + 1) / 2
    rb = rankdata(b, axis=1) - (b.shape[1] + 1) / 2
    num = np.sum(ra * rb, axis=1)
    den = np.sqrt(np.sum(ra * ra, axis=1) * np.sum(rb * rb, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def cascade(params: Mapping) -> list[str]:
    """Top-level parameter groups (layers) from the output layer down: the order in which
    cascading randomization re-initializes them (Flax keeps creation order)."""
    return list(params)[::-1]


def randomize_layers(
    model: Any, variables: Mapping, layers: Sequence[str], *, key: jax.Array, example_x: Any
) -> dict:
    """``variables`` with the params of ``layers`` replaced by a fresh initialization.

    The new values come from ``model.init(key, example_x)`` (the model's own initializers,
    so a randomized layer has the scale of an untrained one; ``example_x`` only fixes the
    shapes). Other collections (BatchNorm statistics) are kept.
    """
    params = variables["params"]
    unknown = [name for name in layers if name not in params]
    if unknown:
        raise ValueError(f"unknown layer {unknown[0]!r}; layers: {', '.join(params)}")
    sample = jnp.zeros((1, *jnp.shape(example_x)[1:]), jnp.float32)
    fresh = model.init({"params": key, "dropout": key}, sample, train=False)["params"]
    new = {name: (fresh[name] if name in layers else value) for name, value in params.items()}
    return {**variables, "params": new}


def model_randomization(
    run: Any,
    x: Any,
    target: Any = None,
    *,
    key: jax.Array,
    methods: Sequence[str] | None = None,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    absolute: bool = True,
):
    """Cascading model-randomization test (Adebayo et al. 2018, Sec. 3.1).

    Args:
      run: a trained Run (anything with ``.model`` and ``.variables``).
      x: the inputs to explain (B, ...).
      target: classes explained, default the trained model's prediction; kept fixed for
        every randomized model so only the weights change.
      key: typed PRNG key; ``jax.random.split(key)`` gives the re-initialization key (one
        fresh draw shared by all stages) and the noise key of the methods that draw noise
        (the same noise for every model, so only the weights differ).
      methods: names in :data:`METHODS` (default: all).
      hparams: per-method hyperparameters, e.g. ``{"smoothgrad": {"num_samples": 20}}``.
      absolute: compare ``|attribution|`` (what saliency maps show; the paper reports
        both), else the signed values.

    Returns:
      A DataFrame with one row per method and cascade stage: ``method``, ``stage`` (0 =
      the trained model, k = the top k layers re-initialized), ``randomized`` (the
      layer just re-initialized, ``"none"`` at stage 0), ``spearman`` (mean over
      examples) and ``spearman_se`` (its standard error over examples).
    """
    import pandas as pd

    methods = list(METHODS.names() if methods is None else methods)
    hparams = dict(hparams or {})
    for name in methods:
        METHODS.hparams(name, **hparams.get(name, {}))
    for name in sorted(set(hparams) - set(methods)):
        raise ValueError(f"hparams given for {name!r}, which is not among methods {methods}")
    x = jnp.asarray(x, jnp.float32)
    variables = dict(run.variables)

    def apply(v):
        return lambda batch: run.model.apply(v, batch, train=False)

    target = resolve_target(apply(variables), x, target)
    init_key, method_key = jax.random.split(key)
    layers = cascade(variables["params"])
    # One fresh draw for all stages: stage k re-initializes the top k layers of it.
    stages = [("none", variables)] + [
        (layer, randomize_layers(run.model, variables, layers[: k + 1], key=init_key, example_x=x))
        for k, layer in enumerate(layers)
    ]

    rows = []
    for name in methods:
        extra = {"key": method_key} if needs_key(name) else {}
        options = {**hparams.get(name, {}), **extra}
        maps = [
            np.asarray(attribute(name, run.model, x, target, variables=v, **options))
            for _, v in stages
        ]
        for stage, ((layer, _), other) in enumerate(zip(stages, maps, strict=True)):
            a, b = (np.abs(maps[0]), np.abs(other)) if absolute else (maps[0], other)
            rho = rank_correlation(a, b)
            finite = rho[np.isfinite(rho)]
            se = finite.std(ddof=1) / np.sqrt(finite.size) if finite.size > 1 else np.nan
            rows.append(
                {
                    "method": name,
                    "stage": stage,
                    "randomized": layer,
                    "spearman": float(finite.mean()) if finite.size else np.nan,
                    "spearman_se": float(se),
                }
            )
    return pd.DataFrame(rows)
