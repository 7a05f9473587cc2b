"""A small name -> factory registry shared by models, losses, optimizers, data and shifts.

Every entry carries its default hyperparameters and a one-line description, so a
comparison is a list of names and a sweep config is plain data (init2winit style)::

    losses = Registry("loss", build=functools.partial)

    @losses.register("softmax_focal", description="Focal loss on the softmax (Lin et al. 2017).")
    def softmax_focal(logits, labels, *, gamma=2.0, alpha=None): ...

    losses.get("softmax_focal", gamma=1.0)   # -> partial(softmax_focal, gamma=1.0, alpha=None)
    losses.names()                           # -> ['softmax_focal']

An entry may also declare a search space beside its defaults, the ranges a tuned sweep
draws its hyperparameters from (:mod:`toolkit.search_space`, :mod:`toolkit.sweep.tuning`)::

    @losses.register("gce", description="...", search_space={"q": ("uniform", 0.1, 1.0)})

Unknown names and unknown hyperparameters raise before any compute, naming the bad
value, the valid choices and the closest match. A registry made with ``typed=True`` (models,
losses, optimizers, schedules, activations) also checks each value against the kind of its
default (:func:`value_kind`): ``gamma="2"`` or ``hidden=(0,)`` fail here, not inside a
compiled step.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from toolkit.search_space import check_space

__all__ = ["Entry", "InvalidHyperparameterError", "Registry", "UnknownNameError", "value_kind"]


class UnknownNameError(ValueError):
    """A name that is not in a registry."""


class InvalidHyperparameterError(ValueError):
    """A hyperparameter that the registered entry does not take."""


def _closest(name: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


def _signature_defaults(factory: Callable) -> dict[str, Any]:
    """Keyword parameters with defaults: a factory's hyperparameters.

    Positional parameters without defaults (a loss's ``logits, labels``) are inputs,
    not hyperparameters, so they are left out.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return {}
    return {
        name: p.default
        for name, p in params.items()
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _origin(factory: Callable) -> tuple[str, str]:
    """Where ``factory`` is defined: its module and qualified name (through
    ``functools.wraps`` wrappers and partials), the same for a definition run twice."""
    factory = inspect.unwrap(factory)
    while isinstance(factory, functools.partial):
        factory = inspect.unwrap(factory.func)
    return getattr(factory, "__module__", "?"), getattr(factory, "__qualname__", repr(factory))


def _accepts_any_keyword(factory: Callable) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in params)


def _array_of(value: Any, dtype_kinds: str) -> bool:
    """Whether ``value`` is an array or a traced value (a population's per-member learning
    rate) of one of numpy's ``dtype_kinds``: its value is checked where it is used."""
    dtype = getattr(value, "dtype", None)
    return dtype is not None and hasattr(value, "shape") and np.dtype(dtype).kind in dtype_kinds


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def value_kind(default: Any) -> tuple[str, Callable[[Any], bool]] | None:
    """What a hyperparameter whose default is ``default`` takes: ``(description, test)``, or
    None where the default says nothing (None, a callable, a mapping).

    The kinds: True/False; an int (> 0 for a positive default: a size or a count such as
    layers, units or iterations; >= 0 for a default of 0); a real number, not NaN; a string;
    a tuple (or list) whose items have the kind of the default's first item.
    """
    if isinstance(default, bool | np.bool_):
        return "True or False", lambda v: isinstance(v, bool | np.bool_) or _array_of(v, "b")
    if _is_int(default):
        low, what = (1, "a positive int") if default > 0 else (0, "an int >= 0")
        if default < 0:
            low, what = None, "an int"
        return what, lambda v: _array_of(v, "iu") or (_is_int(v) and (low is None or v >= low))
    if isinstance(default, numbers.Real):
        return (
            "a number (not NaN)",
            lambda v: (
                _array_of(v, "fiu")
                or (
                    isinstance(v, numbers.Real)
                    and not isinstance(v, bool | np.bool_)
                    and not math.isnan(v)
                )
            ),
        )
    if isinstance(default, str):
        return "a string", lambda v: isinstance(v, str)
    if isinstance(default, tuple | list):
        item = value_kind(default[0]) if default else None
        if item is None:
            return "a tuple", lambda v: isinstance(v, tuple | list)
        what, test = item
        return (
            f"a tuple whose items are each {what}",
            lambda v: isinstance(v, tuple | list) and all(test(i) for i in v),
        )
    return None


def _takes_none(factory: Callable, name: str) -> bool:
    """Whether the factory's annotation of ``name`` allows None (``float | None``)."""
    try:
        param = inspect.signature(factory).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return param is not None and "None" in str(param.annotation)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered thing: how to build it, its defaults, what it is, and the ranges its
    hyperparameters are tuned over (``search_space``: name -> ``(distribution, *args)``)."""

    name: str
    factory: Callable[..., Any]
    defaults: Mapping[str, Any]
    description: str
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    search_space: Mapping[str, tuple] = dataclasses.field(default_factory=dict)


def _call(factory: Callable[..., Any], **hparams: Any) -> Any:
    return factory(**hparams)


class Registry:
    """Maps names to factories with default hyperparameters.

    Args:
      kind: what the registry holds, used in error messages ("loss", "model", ...).
      build: how ``get`` turns an entry into an object, called as
        ``build(factory, **hparams)``. The default calls the factory; a loss registry
        passes ``functools.partial`` so that ``get`` returns a pure function.
      typed: every value must have the kind of its entry's default (:func:`value_kind`;
        None where the factory's annotation allows it), checked in :meth:`hparams`.
    """

    def __init__(self, kind: str, build: Callable[..., Any] = _call, *, typed: bool = False):
        self.kind = kind
        self._build = build
        self._typed = typed
        self._entries: dict[str, Entry] = {}

    # -- registration -------------------------------------------------------------
    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        description: str,
        defaults: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        search_space: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Registers ``factory`` under ``name``.

        ``defaults`` are the entry's default hyperparameters; when omitted they are the
        factory's keyword parameters that have defaults. ``meta`` holds facts about the
        entry that are not hyperparameters (e.g. which data rank a shift applies to).
        ``search_space`` maps some of the hyperparameters to ``(distribution, *args)``
        (:mod:`toolkit.search_space`); it is checked here, so a typo fails at import.
        """
        if name in self._entries and _origin(self._entries[name].factory) != _origin(factory):
            module, qualname = _origin(self._entries[name].factory)
            raise ValueError(
                f"{self.kind} {name!r} is already registered (by {module}.{qualname}); pick "
                f"another name for a different definition"
            )
        # The same definition registered again (a re-run notebook cell, a reloaded module)
        # replaces its entry, in place.
        if not description or "\n" in description.strip():
            raise ValueError(f"{self.kind} {name!r} needs a one-line description")
        if defaults is None:
            defaults = _signature_defaults(factory)
        space = check_space(search_space or {}, list(defaults), owner=f"{self.kind} {name!r}")
        entry = Entry(name, factory, dict(defaults), description.strip(), dict(meta or {}), space)
        self._entries[name] = entry
        return entry

    def register(
        self,
        name: str | None = None,
        *,
        description: str,
        defaults: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        search_space: Mapping[str, Any] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`add`; returns the factory unchanged."""

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            self.add(
                name or factory.__name__,
                factory,
                description=description,
                defaults=defaults,
                meta=meta,
                search_space=search_space,
            )
            return factory

        return decorator

    # -- lookup -------------------------------------------------------------------
    def entry(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name lists the valid ones."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            choices = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{_closest(str(name), choices)} "
                f"Valid {self.kind} names: {', '.join(choices)}"
            ) from None

    def hparams(self, name: str, /, **overrides: Any) -> dict[str, Any]:
        """The entry's defaults updated by ``overrides``, checked against what it takes."""
        entry = self.entry(name)
        unknown = sorted(set(overrides) - set(entry.defaults))
        if unknown and not _accepts_any_keyword(entry.factory):
            valid = ", ".join(sorted(entry.defaults)) or "none"
            hint = _closest(unknown[0], sorted(entry.defaults))
            raise InvalidHyperparameterError(
                f"{self.kind} {name!r} has no hyperparameter {unknown[0]!r}.{hint} "
                f"Valid hyperparameters: {valid}"
            )
        if self._typed:
            for key, value in overrides.items():
                self._check_value(entry, key, value)
        return {**entry.defaults, **overrides}

    def _check_value(self, entry: Entry, key: str, value: Any) -> None:
        kind = value_kind(entry.defaults.get(key))
        if kind is None or (value is None and _takes_none(entry.factory, key)):
            return
        what, test = kind
        if not test(value):
            none = " or None" if _takes_none(entry.factory, key) else ""
            raise InvalidHyperparameterError(
                f"{self.kind} {entry.name!r}: {key}={value!r} ({type(value).__name__}) is not "
                f"valid; {key} must be {what}{none} (default {entry.defaults[key]!r})"
            )

    def search_space(self, name: str) -> dict[str, tuple]:
        """The entry's search space: hyperparameter -> ``(distribution, *args)`` ({}: none)."""
        return dict(self.entry(name).search_space)

    def get(self, name: str, /, **overrides: Any) -> Any:
        """Builds the entry ``name`` with its defaults updated by ``overrides``."""
        entry = self.entry(name)
        return self._build(entry.factory, **self.hparams(name, **overrides))

    def origin(self, name: str) -> tuple[str, str]:
        """Where the entry ``name`` is defined: ``(module, qualified name)``; the module is
        ``"__main__"`` for code run as a script or in a notebook."""
        return _origin(self.entry(name).factory)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def describe(self) -> str:
        """A plain-text table: name, description, defaults."""
        rows = [
            f"{e.name:<24} {e.description}  {dict(e.defaults) if e.defaults else ''}".rstrip()
            for e in self._entries.values()
        ]
        return "\n".join(rows)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
