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
value, the valid choices and the closest match.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from toolkit.search_space import check_space

__all__ = ["Entry", "InvalidHyperparameterError", "Registry", "UnknownNameError"]


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


def _accepts_any_keyword(factory: Callable) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in params)


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
    """

    def __init__(self, kind: str, build: Callable[..., Any] = _call):
        self.kind = kind
        self._build = build
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
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
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
        return {**entry.defaults, **overrides}

    def search_space(self, name: str) -> dict[str, tuple]:
        """The entry's search space: hyperparameter -> ``(distribution, *args)`` ({}: none)."""
        return dict(self.entry(name).search_space)

    def get(self, name: str, /, **overrides: Any) -> Any:
        """Builds the entry ``name`` with its defaults updated by ``overrides``."""
        entry = self.entry(name)
        return self._build(entry.factory, **self.hparams(name, **overrides))

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
