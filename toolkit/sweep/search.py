"""Trial grids and reproducible random search, for a config's ``sweep(config)``.

product(model=["mlp", "cnn"], seed=range(3))                  # the full grid
product(hp=random_search({"learning_rate": ("loguniform", 1e-4, 1e-1)}, 8), seed=range(3))
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toolkit.search_space import distributions, draw_trial
from toolkit.sweep.config import SweepConfigError

__all__ = ["distributions", "product", "random_search"]


def product(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """The grid over ``axes`` (``itertools.product``), one dict per point.

    A value that is a mapping is merged into the point instead of stored under its axis
    name, so one axis can set several fields together, e.g.
    ``model=[{"model": "gru", "steps": 3000}, ...]`` or the output of :func:`random_search`.
    """
    names = list(axes)
    points = []
    for values in itertools.product(*(list(axes[n]) for n in names)):
        point: dict[str, Any] = {}
        for name, value in zip(names, values, strict=True):
            if isinstance(value, Mapping):
                _merge(point, dict(value))
            else:
                point[name] = value
        points.append(point)
    return points


def _merge(point: dict, update: Mapping) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(point.get(key), dict):
            point[key] = {**point[key], **value}
        else:
            point[key] = dict(value) if isinstance(value, Mapping) else value


def random_search(
    space: Mapping[str, Sequence[Any]], num_trials: int, *, hparams_seed: int = 0
) -> list[dict[str, Any]]:
    """``num_trials`` points drawn from ``space`` (name -> ``(distribution, *args)``).

    Value ``i`` of hyperparameter ``name`` comes from its own generator,
    ``np.random.default_rng([hparams_seed, crc32(name), i])``, so adding seeds, trials or
    other hyperparameters never changes an existing trial's draws (the protocol of
    init2winit's random search; :func:`toolkit.search_space.draw_trial`). Dotted names
    (``"loss_hparams.gamma"``) set nested fields.
    """
    if isinstance(num_trials, bool) or not isinstance(num_trials, int) or num_trials < 1:
        raise SweepConfigError(f"num_trials must be a positive int, got {num_trials!r}")
    points = []
    for index in range(num_trials):
        point: dict[str, Any] = {}
        for name in space:
            *parents, leaf = name.split(".")
            node = point
            for parent in parents:
                node = node.setdefault(parent, {})
            try:
                node[leaf] = draw_trial(name, space[name], seed=hparams_seed, index=index)
            except ValueError as error:
                raise SweepConfigError(str(error)) from None
        points.append(point)
    return points
