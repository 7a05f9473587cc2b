"""Deep ensembles (Lakshminarayanan et al. 2017): runs of one model evaluated as one
predictor whose probability is the mean of its members'.

``tk.ensemble(runs)`` takes any runs of the same model and hyperparameters (the seeds of
one config, or the members of a population) and is accepted where a run is:
``tk.predict`` gives ``log((1/M) sum_m softmax(z_m))`` in one program vmapped over the
members' stacked variables, and ``tk.evaluate`` reports it with an ``ensemble_size`` column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

__all__ = ["Ensemble", "ensemble"]


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """Runs averaged in probability; ``config``, ``model`` and ``info`` are the first
    member's (``info`` with ``ensemble_size``)."""

    members: tuple[Any, ...]

    @property
    def config(self):
        return self.members[0].config

    @property
    def model(self):
        return self.members[0].model

    @property
    def info(self) -> dict[str, Any]:
        return {**(self.members[0].info or {}), "ensemble_size": self.size}

    @property
    def size(self) -> int:
        return len(self.members)


def _fields(run) -> dict[str, Any]:
    """What members must share: the model, its hyperparameters, the input shape."""
    fields = {
        "model": run.config.model,
        "model_hparams": dict(run.config.model_hparams),
    }
    shape = (run.info or {}).get("input_shape")
    if shape is not None:
        fields["input_shape"] = tuple(shape)
    return fields


def ensemble(runs: Iterable[Any]) -> Ensemble:
    """An :class:`Ensemble` of ``runs`` (at least 2, all of one model, its hyperparameters
    and input shape, so their variables stack)."""
    members = tuple(runs)
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 runs, got {len(members)}")
    for member in members:
        if not hasattr(member, "config") or hasattr(member, "members"):
            raise ValueError(f"ensemble members must be trained runs, got {member!r:.80}")
    first = _fields(members[0])
    for index, member in enumerate(members[1:], start=1):
        fields = _fields(member)
        for name in ("model", "model_hparams", "input_shape"):
            if name in first and name in fields and first[name] != fields[name]:
                raise ValueError(
                    f"ensemble members differ in {name}: run 0 has {first[name]!r}, "
                    f"run {index} has {fields[name]!r}; an ensemble's members share the "
                    f"model, its hyperparameters and the input shape"
                )
    return Ensemble(members)
