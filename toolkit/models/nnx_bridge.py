"""Flax NNX classifiers in the model registry, run through Linen's ``init``/``apply``.

An ``nnx.Module`` class registers like a Linen one (``@tk.models.register(name, ...)``);
its hyperparameters are its ``__init__`` keyword arguments with defaults, except the two
the toolkit supplies: ``rngs`` (NNX's random streams) and, when the constructor takes it,
``input_shape`` (one example's shape, e.g. ``(40,)`` or ``(28, 28, 1)``), since an NNX
layer is built with its input size while a Linen layer infers it from the first call.

The registry builds :class:`FromNNX`, a Linen module that constructs the NNX module through
``flax.nnx.bridge.to_linen`` at its first call. NNX ``Param`` variables become the Linen
collection ``params`` and ``BatchStat`` variables ``batch_stats``, and the module draws
dropout from the Linen ``dropout`` rng, so training, populations, checkpoints,
evaluation, attributions and sweeps use an NNX model exactly as a Linen one. The module's
``__call__`` takes ``(x, *, train: bool)`` like every registered model; its final layer is
``self.head = nnx.Linear(..., num_classes)``, the NNX form of Linen's ``nn.Dense(name="head")``
(:mod:`toolkit.evaluation.inference` reads the head's input as the penultimate features).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import nnx
from flax.nnx import bridge

__all__ = ["FromNNX", "is_nnx_class", "nnx_factory", "nnx_hparams"]

# Constructor arguments the toolkit supplies: not hyperparameters.
SUPPLIED = ("rngs", "input_shape")


def is_nnx_class(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, nnx.Module)


def _parameters(cls: type[nnx.Module]) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(cls.__init__).parameters


def nnx_hparams(cls: type[nnx.Module]) -> dict[str, Any]:
    """An NNX module class's hyperparameters: its ``__init__`` keyword arguments and their
    defaults, without ``rngs`` and ``input_shape``. An argument without a default is an
    error, since every registered model must build from its defaults alone."""
    params = _parameters(cls)
    if "rngs" not in params:
        raise TypeError(f"NNX model {cls.__name__}.__init__ must take rngs (an nnx.Rngs)")
    hparams = {}
    for name, param in list(params.items())[1:]:  # after self
        if name in SUPPLIED or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is inspect.Parameter.empty:
            raise TypeError(f"NNX model argument {cls.__name__}.{name} needs a default")
        hparams[name] = param.default
    return hparams


@contextlib.contextmanager
def _swapped(module: nnx.Module, wrap: Callable[[tuple, nnx.Module], Any]) -> Iterator[None]:
    """Within the block, every submodule for which ``wrap(path, submodule)`` is not None is
    replaced by that callable; the originals are put back after (so the module's state is
    untouched)."""
    replaced = []
    for path, sub in list(nnx.iter_modules(module)):
        wrapper = wrap(path, sub) if path else None
        if wrapper is not None:
            parent = functools.reduce(getattr, path[:-1], module)
            replaced.append((parent, path[-1], sub))
            setattr(parent, path[-1], wrapper)
    try:
        yield
    finally:
        for parent, attribute, sub in reversed(replaced):
            setattr(parent, attribute, sub)


def _probed_call(module, x, *, train, head_inputs, mc_dropout):
    """``module(x, train=train)``, recording the input of ``module.head`` in ``head_inputs``
    and, with ``mc_dropout``, running every ``nnx.Dropout`` with ``deterministic=False``
    (its rate recorded in ``mc_dropout``)."""

    def wrap(path, sub):
        if head_inputs is not None and path == ("head",):
            return lambda h, **kw: (head_inputs.append(h), sub(h, **kw))[1]
        if mc_dropout is not None and isinstance(sub, nnx.Dropout):
            if sub.rate > 0:
                mc_dropout.append(sub.rate)
            return lambda h, **kw: sub(h, **{**kw, "deterministic": False})
        return None

    with _swapped(module, wrap):
        return module(x, train=train)


class FromNNX(nn.Module):
    """A Linen module that builds and calls the NNX module ``nnx_class(**hparams)``.

    Attributes:
      nnx_class: the ``nnx.Module`` class; its ``__call__`` takes ``(x, *, train)``.
      hparams: its constructor arguments, as sorted (name, value) pairs.
    """

    nnx_class: type
    hparams: tuple[tuple[str, Any], ...] = ()

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        head_inputs: list | None = None,
        mc_dropout: list | None = None,
    ) -> jax.Array:
        """Logits of the NNX module. ``head_inputs`` (a list) receives the input of its
        ``head``; with ``mc_dropout`` (a list, receiving the rates) its dropout layers run
        stochastically whatever ``train`` is: the hooks of
        :mod:`toolkit.evaluation.inference`, which a Linen model gets by interception."""
        kwargs = dict(self.hparams)
        if "input_shape" in _parameters(self.nnx_class):
            kwargs["input_shape"] = tuple(x.shape[1:])
        module = bridge.to_linen(self.nnx_class, name="nnx", **kwargs)
        if head_inputs is None and mc_dropout is None:
            return module(x, train=train)
        probed = functools.partial(_probed_call, head_inputs=head_inputs, mc_dropout=mc_dropout)
        return module(x, train=train, nnx_method=probed)


def nnx_factory(nnx_class: type[nnx.Module]) -> Callable[..., FromNNX]:
    """The registry's factory for an NNX model: ``hparams -> FromNNX``, with the class's
    hyperparameters as its signature (so the registry refuses any other keyword)."""
    defaults = nnx_hparams(nnx_class)

    def build(**hparams: Any) -> FromNNX:
        return FromNNX(nnx_class=nnx_class, hparams=tuple(sorted(hparams.items())))

    build.__signature__ = inspect.Signature(
        [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
            for k, v in defaults.items()
        ]
    )
    build.__name__, build.__qualname__ = nnx_class.__name__, nnx_class.__qualname__
    build.__module__ = nnx_class.__module__  # where the model is defined (re-registration)
    return build
