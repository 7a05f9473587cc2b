"""The model registry: a Linen module's hyperparameters are its dataclass fields
(``num_classes`` included), registered as its defaults, so unknown hyperparameters fail
before any module is built. :func:`register` adds a model (see :mod:`toolkit.models`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from toolkit.models.nnx_bridge import is_nnx_class, nnx_factory, nnx_hparams
from toolkit.registry import InvalidHyperparameterError, Registry

__all__ = [
    "describe",
    "entry",
    "get",
    "hparams",
    "models",
    "module_hparams",
    "names",
    "reads_images",
    "register",
    "search_space",
]

models = Registry("model", typed=True)
names = models.names
entry = models.entry
hparams = models.hparams
describe = models.describe
search_space = models.search_space

# The meta of a model that reads (H, W, C) examples as images (2-D kernels or patches), and
# so reads a 2-D example (H, W) as a sequence of H steps with W channels; models without it
# flatten an example or read it as a sequence either way.
IMAGES = {"images": True}


def reads_images(name: str) -> bool:
    """Whether the model ``name`` reads (H, W, C) examples as images (its meta ``images``)."""
    return bool(models.entry(name).meta.get("images", False))


# Fields every Linen module has that are wiring, not hyperparameters.
_FLAX_FIELDS = ("parent", "name")


def module_hparams(cls: type[nn.Module]) -> dict[str, Any]:
    """A Linen module class's hyperparameters: its init fields and their defaults.

    Flax's own ``parent`` and ``name`` fields are excluded; a field without a default is an
    error, since every registered model must build from its defaults alone.
    """
    hparams = {}
    for field in dataclasses.fields(cls):
        if not field.init or field.name in _FLAX_FIELDS:
            continue
        if field.default is dataclasses.MISSING:
            raise TypeError(f"model field {cls.__name__}.{field.name} needs a default")
        hparams[field.name] = field.default
    return hparams


def register(
    name: str,
    *,
    description: str,
    meta: Mapping[str, Any] | None = None,
    search_space: Mapping[str, Any] | None = None,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: registers a Linen module, or a Flax NNX module
    (:mod:`toolkit.models.nnx_bridge`), under ``name`` with its hyperparameters as defaults
    and the ranges a tuned sweep draws them from (``search_space``)."""

    def decorator(cls: type) -> type:
        if is_nnx_class(cls):
            factory, defaults = nnx_factory(cls), nnx_hparams(cls)
        else:
            factory, defaults = cls, module_hparams(cls)
        models.add(
            name,
            factory,
            description=description,
            defaults=defaults,
            meta=meta,
            search_space=search_space,
        )
        return cls

    return decorator


def get(name: str, /, **hparams: Any) -> nn.Module:
    """Builds the model ``name`` with its defaults updated by ``hparams``.

    Flax's ``parent`` and ``name`` are refused here, before ``Registry.get`` (whose own
    ``name`` parameter would collide with a ``name`` keyword).
    """
    wiring = sorted(set(hparams) & set(_FLAX_FIELDS))
    if wiring:
        valid = ", ".join(sorted(models.entry(name).defaults))
        raise InvalidHyperparameterError(
            f"model {name!r} has no hyperparameter {wiring[0]!r} (Flax wiring, not a "
            f"hyperparameter). Valid hyperparameters: {valid}"
        )
    return models.get(name, **hparams)
