"""Training-time augmentation: on-device batch transforms inside the compiled training step.

A run selects one by name (``tk.train(..., augment="augmix", augment_hparams={...})``, a
sweep by the ``augment`` field). An augmentation maps a training batch ``x`` (B, ...) and a
typed key to ``views`` (V, B, ...): one view is the batch the model trains on; AugMix with
its consistency loss (``augmix_jsd``) gives three, the clean batch and two AugMix views,
and the step adds ``jsd_weight`` times their Jensen-Shannon divergence to the loss on the
clean view (:func:`jensen_shannon`). Augmentations draw from their own stream of the step
key (``fold_in``), so a run without one keeps its dropout keys and numbers.

Training draws and test shifts are kept apart twice over: augmentations draw from the
training keys (the seed's step keys), test shifts from the evaluation key, so no augmented
example is a test example's corruption; and a comparison that claims robustness to unseen
corruptions evaluates on shift types the augmentation does not use (AugMix's protocol;
``experiments/configs/augmentation.py`` holds its ops out of the evaluation).

Entries (``names()``):

* ``crop``: pad by ``padding`` with zeros and crop back at a random offset per example
  (images and sequences), with a random horizontal ``flip`` for images whose labels allow it
  (off by default: digits are not mirror-invariant).
* ``augmix`` / ``augmix_jsd``: AugMix (Hendrycks et al. 2020, ICLR): ``width`` chains of
  1-3 (or ``depth``) operations drawn from ``ops`` (the toolkit's image shifts, at
  ``severity``), mixed with Dirichlet(``alpha``) weights, then with the clean image by a
  Beta(``alpha``, ``alpha``) weight. The default ops are AugMix's geometric ones (rotate,
  shear, translate); they are also MNIST-C corruptions, so results on those shifts are not
  on unseen corruptions: pass ``ops`` disjoint from the evaluated shifts for that claim.
* ``mnist1d``: MNIST-1D's own generative transforms (Greydanus 2020) at train time: each of
  translation, time scaling, linear shear, correlated and i.i.d. noise, applied with
  probability ``p`` at ``severity`` (sequences).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from toolkit import shifts
from toolkit.registry import Registry

__all__ = [
    "augmentations",
    "check_applies",
    "check_config",
    "describe",
    "entry",
    "get",
    "hparams",
    "jensen_shannon",
    "names",
    "register",
    "search_space",
]

Augmentation = Callable[..., jax.Array]
augmentations = Registry("augmentation", build=functools.partial, typed=True)
names = augmentations.names
entry = augmentations.entry
hparams = augmentations.hparams
describe = augmentations.describe
search_space = augmentations.search_space
get = augmentations.get

APPLIES_TO = ("image", "sequence")


def register(
    name: str, *, applies_to: Sequence[str], views: int, description: str, search_space=None
) -> Callable[[Augmentation], Augmentation]:
    """Registers ``fn(x, *, key, **hparams) -> views (V, B, ...)`` for the data kinds in
    ``applies_to``; ``views`` is V (3: clean and two views for a consistency loss)."""
    bad = sorted(set(applies_to) - set(APPLIES_TO))
    if bad or not applies_to:
        raise ValueError(f"applies_to must be a non-empty subset of {APPLIES_TO}, got {applies_to}")
    return augmentations.register(
        name,
        description=description,
        meta={"applies_to": tuple(applies_to), "views": views},
        search_space=search_space,
    )


def check_config(config: Any, example_shape: Sequence[int]) -> None:
    """:func:`check_applies` for a TrainConfig's augmentation, if it has one."""
    if config.augment is not None:
        check_applies(config.augment, dict(config.augment_hparams), example_shape)


# Hyperparameter -> (test, what is valid), beyond the kind of its default.
_RANGES = {
    "ops": (lambda v: len(v) > 0, "at least one shift name"),
    "alpha": (lambda v: v > 0, "a number > 0 (the Dirichlet and Beta concentration)"),
    "p": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "jsd_weight": (lambda v: v >= 0, "a number >= 0"),
    "severity": (lambda v: 1 <= v <= 5, "an int in 1..5"),
}


def check_applies(name: str, overrides: dict[str, Any], example_shape: Sequence[int]) -> None:
    """Raises, before any compute, when augmentation ``name`` (with ``overrides``) does not
    apply to examples of ``example_shape`` (its data kind, each op it names) or one of its
    values is out of range."""
    meta = entry(name).meta
    kind = "image" if len(example_shape) == 3 else "sequence"
    if kind not in meta["applies_to"]:
        raise ValueError(
            f"augmentation {name!r} applies to {' and '.join(meta['applies_to'])} data, but the "
            f"examples have shape {tuple(example_shape)} ({kind} data). Augmentations for "
            f"{kind} data: {', '.join(n for n in names() if kind in entry(n).meta['applies_to'])}"
        )
    chosen = hparams(name, **overrides)
    if chosen.get("flip") and kind != "image":
        raise ValueError(f"augmentation {name!r}: flip=True needs images, got {kind} data")
    for key, (valid, what) in _RANGES.items():
        if key in chosen and not valid(chosen[key]):
            raise ValueError(f"augmentation {name!r}: {key} must be {what}, got {chosen[key]!r}")
    for op in chosen.get("ops", ()):
        shifts.check_applies(op, (1, *example_shape))


def _per_example(fn: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, key) -> jax.Array:
    """``fn(example, key)`` over the batch, one key per example."""
    return jax.vmap(fn)(x, jax.random.split(key, x.shape[0]))


def _shift(name: str, severity: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Shift ``name`` at ``severity`` on one example (the registry's functions take batches)."""
    fn = shifts.get(name)
    return lambda example, key: fn(example[None], key=key, severity=severity)[0]


@register(
    "crop",
    applies_to=("image", "sequence"),
    views=1,
    description="Zero-pad and crop back at a random offset; optional horizontal flip (images).",
    search_space={"padding": ("choice", 2, 4)},
)
def crop(x: jax.Array, *, key: jax.Array, padding: int = 4, flip: bool = False) -> jax.Array:
    spatial = x.shape[1:-1] if x.ndim == 4 else x.shape[1:2]
    pads = [(0, 0)] + [(padding, padding)] * len(spatial) + [(0, 0)] * (x.ndim - 1 - len(spatial))
    padded = jnp.pad(x, pads)

    def one(example: jax.Array, key: jax.Array) -> jax.Array:
        offset_key, flip_key = jax.random.split(key)
        offsets = jax.random.randint(offset_key, (len(spatial),), 0, 2 * padding + 1)
        starts = (*offsets, *([0] * (example.ndim - len(spatial))))
        out = jax.lax.dynamic_slice(example, starts, (*spatial, *example.shape[len(spatial) :]))
        if flip:
            out = jnp.where(jax.random.bernoulli(flip_key), out[:, ::-1], out)
        return out

    return _per_example(one, padded, key)[None]


def _augmix(
    x: jax.Array, key: jax.Array, ops: Sequence[str], width: int, depth: int, severity: int, alpha
) -> jax.Array:
    branches = [_shift(op, severity) for op in ops]

    def one(example: jax.Array, key: jax.Array) -> jax.Array:
        weights_key, mix_key, depth_key, chains_key = jax.random.split(key, 4)
        weights = jax.random.dirichlet(weights_key, jnp.full((width,), alpha, jnp.float32))
        mix = jax.random.beta(mix_key, alpha, alpha)
        depths = (
            jnp.full((width,), depth)
            if depth > 0
            else jax.random.randint(depth_key, (width,), 1, 4)
        )

        def chain(chain_depth: jax.Array, key: jax.Array) -> jax.Array:
            out = example
            for step, step_key in enumerate(jax.random.split(key, max(depth, 3))):
                op_key, shift_key = jax.random.split(step_key)
                index = jax.random.randint(op_key, (), 0, len(branches))
                shifted = jax.lax.switch(index, branches, out, shift_key)
                out = jnp.where(step < chain_depth, shifted, out)
            return out

        chains = jax.vmap(chain)(depths, jax.random.split(chains_key, width))
        mixed = jnp.tensordot(weights, chains, axes=1)
        return (mix * example + (1.0 - mix) * mixed).astype(example.dtype)

    return _per_example(one, x, key)


AUGMIX_OPS = ("rotate", "shear", "translate")
_AUGMIX_SPACE = {"severity": ("choice", 1, 3, 5), "width": ("choice", 1, 3)}


@register(
    "augmix",
    applies_to=("image",),
    views=1,
    description="AugMix (Hendrycks et al. 2020): mixed chains of shift ops, trained on alone.",
    search_space=_AUGMIX_SPACE,
)
def augmix(
    x: jax.Array,
    *,
    key: jax.Array,
    ops: tuple[str, ...] = AUGMIX_OPS,
    width: int = 3,
    depth: int = 0,
    severity: int = 3,
    alpha: float = 1.0,
) -> jax.Array:
    return _augmix(x, key, ops, width, depth, severity, alpha)[None]


@register(
    "augmix_jsd",
    applies_to=("image",),
    views=3,
    description="AugMix with its Jensen-Shannon consistency loss (clean + two AugMix views).",
    search_space=_AUGMIX_SPACE,
)
def augmix_jsd(
    x: jax.Array,
    *,
    key: jax.Array,
    ops: tuple[str, ...] = AUGMIX_OPS,
    width: int = 3,
    depth: int = 0,
    severity: int = 3,
    alpha: float = 1.0,
    jsd_weight: float = 12.0,  # the paper's lambda; read by the training step
) -> jax.Array:
    del jsd_weight
    first, second = jax.random.split(key)
    views = [_augmix(x, k, ops, width, depth, severity, alpha) for k in (first, second)]
    return jnp.stack([x, *views])


MNIST1D_OPS = ("translation", "time_scale", "linear_shear", "correlated_noise", "iid_noise")


@register(
    "mnist1d",
    applies_to=("sequence",),
    views=1,
    description="MNIST-1D's own transforms (shift, scale, shear, noise) at random, per example.",
    search_space={"severity": ("choice", 1, 2, 3)},
)
def mnist1d(x: jax.Array, *, key: jax.Array, p: float = 0.5, severity: int = 1) -> jax.Array:
    ops = [_shift(op, severity) for op in MNIST1D_OPS]

    def one(example: jax.Array, key: jax.Array) -> jax.Array:
        for op, op_key in zip(ops, jax.random.split(key, len(ops)), strict=True):
            use_key, shift_key = jax.random.split(op_key)
            example = jnp.where(jax.random.bernoulli(use_key, p), op(example, shift_key), example)
        return example

    return _per_example(one, x, key)[None]


def jensen_shannon(logits: jax.Array) -> jax.Array:
    """Per-example Jensen-Shannon divergence of V predictive distributions, ``logits``
    (V, B, C): ``(1/V) sum_v KL(p_v || M)`` with ``M`` their mean (Hendrycks et al. 2020,
    eq. 2, for V = 3: clean and two AugMix views)."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    p = jnp.exp(log_p)
    log_m = jnp.log(jnp.clip(p.mean(axis=0), 1e-7, 1.0))
    return jnp.mean(jnp.sum(p * (log_p - log_m), axis=-1), axis=0)
