"""Named evaluation sets: what one row of an evaluation is computed on.

A spec names its set (``name``, ``kind``, ``severity``: the row's identity) and builds the
set's inputs from the clean split and the evaluation's PRNG key. Kinds:

* ``shift``: a ``tk.shifts`` corruption of the clean inputs (a pure function of ``x``);
* ``set``: another labelled test set: MNIST-1D regenerated with shifted generator
  arguments (a new draw of the generator, Greydanus 2020), the test split resampled to new
  class priors (Lipton et al. 2018), or a given split;
* ``ood``: far-OOD inputs (``tk.ood`` sets or another dataset's test split), detected
  against the clean set's logits.

The clean set itself is no spec: every evaluation has it. Specs of one class build together
(:meth:`EvalSet.build_all`), so that processes sharing the disk cache split the building.
A TFDS test set can become one more ``set`` spec whose ``build_all`` loads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from toolkit import data
from toolkit.data import Split
from toolkit.data.checks import check_finite
from toolkit.data.tfds_names import is_tfds_name
from toolkit.evaluation import cache as setcache

__all__ = ["EvalSet", "FarOod", "Given", "LabelShifted", "Regenerated", "Shifted"]


class EvalSet:
    """One named evaluation set; subclasses say how to check and build it."""

    name: str
    kind: str = "set"
    severity: int = 0
    # Specs with equal ``group`` build together even when the sets are not kept in memory.
    group: Any = None

    def check(self, clean: Split) -> None:
        """Raises ValueError (naming the valid choices) before any compute."""

    def size(self, clean: Split, *, key: jax.Array) -> int:
        """The set's number of examples, without predicting (for rows of diverged runs)."""
        return len(clean)

    @classmethod
    def build_all(
        cls, specs: Sequence[EvalSet], clean: Split, *, key: jax.Array, cache: bool, keep: bool
    ) -> list[Split]:
        """The sets of ``specs`` (all of this class), in order."""
        return [spec.build(clean, key=key) for spec in specs]

    def build(self, clean: Split, *, key: jax.Array) -> Split:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, eq=False)
class Shifted(EvalSet):
    """Shift ``shift`` of ``tk.shifts`` at ``severity`` applied to the clean inputs."""

    shift: str
    severity: int
    kind = "shift"

    @property
    def name(self) -> str:
        return self.shift

    @property
    def group(self) -> str:  # one shift's severities at a time: all a caller then holds
        return self.shift

    def check(self, clean: Split) -> None:
        from toolkit import shifts

        shifts.check_severity(self.severity)
        shifts.check_applies(self.shift, clean.x.shape)

    @classmethod
    def build_all(cls, specs, clean, *, key, cache, keep):
        if not cache:
            return [setcache.shifted_set(clean, s.shift, s.severity, key=key) for s in specs]
        pairs = [(s.shift, s.severity) for s in specs]
        return setcache.shifted_sets(clean, pairs, key=key, keep=keep)


# Dataset arguments that do not change the generated data.
_NOT_GENERATOR = ("data_dir", "max_examples")


@dataclasses.dataclass(frozen=True, eq=False)
class Regenerated(EvalSet):
    """The MNIST-1D test set regenerated with ``REGENERATED_ARGS[shift][severity]``
    (:mod:`toolkit.evaluation.regenerated`), named ``<entry>/<shift>``.
    ``generator_args`` are the clean dataset's (``tk.data.load("mnist1d", **args)``)."""

    shift: str
    severity: int
    entry: str = "regenerated"
    standardize: str = "clean"
    generator_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.entry}/{self.shift}"

    def check(self, clean: Split) -> None:
        from toolkit.evaluation.regenerated import check_regenerated

        check_regenerated(self.shift, self.severity, self.standardize)

    def cache_spec(self) -> dict[str, Any]:
        args = {k: v for k, v in self.generator_args.items() if k not in _NOT_GENERATOR}
        return {
            "kind": self.shift,
            "severity": self.severity,
            "standardize": self.standardize,
            **args,
        }

    @classmethod
    def build_all(cls, specs, clean, *, key, cache, keep):
        from toolkit.data.mnist1d_raw import generator_fingerprint
        from toolkit.evaluation.regenerated import mnist1d_shifted_test

        keys = [s.cache_spec() for s in specs]
        if not cache:
            return [mnist1d_shifted_test(**k) for k in keys]
        # Keyed on the generator's code and packages too, so a changed generator rebuilds.
        generator = generator_fingerprint()

        def build(generator, **spec):
            return mnist1d_shifted_test(**spec)

        return setcache.cached_sets([{**k, "generator": generator} for k in keys], build, keep=keep)


@dataclasses.dataclass(frozen=True, eq=False)
class LabelShifted(EvalSet):
    """Draw ``draw`` of the clean split resampled to new class priors
    (``tk.data.label_shift`` with ``options``), named ``<entry>/<draw>``."""

    draw: int
    entry: str = "label_shift"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.entry}/{self.draw}"

    def check(self, clean: Split) -> None:
        self.build(clean, key=jax.random.key(0))  # cheap host resampling; raises on bad priors

    def size(self, clean: Split, *, key: jax.Array) -> int:
        return len(self.build(clean, key=key))

    def build(self, clean: Split, *, key: jax.Array) -> Split:
        from toolkit.data.label_shift import label_shift

        key = jax.random.fold_in(setcache.set_key(key, "label_shift"), self.draw)
        return label_shift(clean, key=key, **self.options).split


@dataclasses.dataclass(frozen=True, eq=False)
class Given(EvalSet):
    """A labelled split given by the caller, under ``name``."""

    name: str
    split: Split

    def check(self, clean: Split) -> None:
        if len(self.split) == 0:
            raise ValueError(f"evaluation set {self.name!r} is empty")
        if self.split.x.shape[1:] != clean.x.shape[1:]:
            raise ValueError(
                f"evaluation set {self.name!r} has examples of shape {self.split.x.shape[1:]}, "
                f"the evaluated split {clean.x.shape[1:]}: they must match"
            )
        check_finite(self.split.x, f"evaluation set {self.name!r}")

    def size(self, clean: Split, *, key: jax.Array) -> int:
        return len(self.split)

    def build(self, clean: Split, *, key: jax.Array) -> Split:
        return self.split


@dataclasses.dataclass(frozen=True, eq=False)
class FarOod(EvalSet):
    """Far-OOD inputs named ``name``: ``given`` (a Split or array), else a registered
    ``tk.ood`` set of the clean set's size, else the test split of dataset ``name``
    (loaded with ``data_kwargs``)."""

    name: str
    given: Any = None
    data_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    kind = "ood"

    def check(self, clean: Split) -> None:
        from toolkit import ood

        known = self.given is not None or self.name in ood.names() or self.name in data.names()
        if not known and not is_tfds_name(self.name):
            raise ValueError(
                f"unknown OOD set {self.name!r}. Registered OOD sets: {', '.join(ood.names())}; "
                "or a dataset name from tk.data.names(include_tfds=True)"
            )

    def size(self, clean: Split, *, key: jax.Array) -> int:
        from toolkit import ood

        if self.given is not None:
            return len(self.given)
        if self.name in ood.names():
            return len(clean)
        return len(data.load(self.name, **self.data_kwargs).test)

    def build(self, clean: Split, *, key: jax.Array) -> Split:
        from toolkit import ood

        if self.given is not None:
            given = self.given
            other = given.x if isinstance(given, Split) else np.asarray(given, np.float32)
        elif self.name in ood.names():
            x = setcache.ood_set(
                self.name, clean.x.shape[1:], key=setcache.set_key(key, self.name), num=len(clean)
            )
            return _unlabelled(x)
        else:
            other = data.load(self.name, **self.data_kwargs).test.x
        if other.shape[1:] != clean.x.shape[1:]:
            raise ValueError(
                f"OOD set {self.name!r} has examples of shape {other.shape[1:]}, but the "
                f"evaluated data has {clean.x.shape[1:]}. Registered OOD sets: "
                f"{', '.join(ood.names())}"
            )
        return _unlabelled(other)


def _unlabelled(x: np.ndarray) -> Split:
    return Split(x, np.zeros(len(x), np.int32))
