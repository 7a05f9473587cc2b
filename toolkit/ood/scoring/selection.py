"""Choosing a scorer's hyperparameters on validation OOD sets (OpenOOD v1.5's protocol,
Zhang et al. 2023: a grid search on ID / OOD validation data disjoint from the test OOD
sets, which fixes v1.0's tuning-on-test leak)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from toolkit.metrics.ranking import aupr_in, aupr_out, auroc, fpr_at_95_tpr
from toolkit.ood.scoring.base import (
    Batch,
    Fitted,
    InapplicableError,
    Reference,
    fit_scorer,
    scorers,
)

__all__ = ["SELECTION_METRICS", "select_scorer"]

SELECTION_METRICS = {
    "auroc": (auroc, True),
    "aupr_in": (aupr_in, True),
    "aupr_out": (aupr_out, True),
    "fpr_at_95_tpr": (fpr_at_95_tpr, False),
}
"""Metric name -> (function of (scores_in, scores_out), whether higher is better)."""


def select_scorer(
    name: str,
    reference: Reference | None,
    id_batch: Batch,
    ood_batches: Sequence[Batch],
    *,
    metric: str = "auroc",
) -> tuple[dict[str, Any], Fitted, list[dict[str, Any]]]:
    """Grid search over ``scorers.entry(name).meta["grid"]`` (the product of its values)
    for the best mean ``metric`` of ``id_batch`` against each of ``ood_batches``.

    Returns ``(hparams, fitted, table)``: the chosen full hyperparameters, the scorer
    fitted with them, and one row per grid point (its grid values, ``metric``, and
    ``skipped``: why a point the data cannot take was left out, else None). Ties go to the
    first grid point. The batches must be VALIDATION data, disjoint from the test sets.
    """
    entry = scorers.entry(name)
    if metric not in SELECTION_METRICS:
        raise ValueError(
            f"unknown selection metric {metric!r}; valid metrics: {', '.join(SELECTION_METRICS)}"
        )
    if isinstance(ood_batches, Batch) or not isinstance(ood_batches, Sequence):
        raise TypeError(
            f"ood_batches must be a sequence of Batch, got {type(ood_batches).__name__}"
        )
    if not ood_batches:
        raise ValueError("select_scorer needs at least one validation OOD batch, got none")
    metric_fn, higher = SELECTION_METRICS[metric]
    grid = entry.meta["grid"]
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    for point in points:  # every grid value is checked before anything is fitted
        scorers.hparams(name, **point)
    best, best_value, table = None, None, []
    for point in points:
        try:
            fitted = fit_scorer(name, reference, **point)
        except InapplicableError as err:
            table.append({**point, metric: None, "skipped": str(err)})
            continue
        s_in = fitted(id_batch)
        value = float(np.mean([float(metric_fn(s_in, fitted(b))) for b in ood_batches]))
        table.append({**point, metric: value, "skipped": None})
        if best is None or (value > best_value if higher else value < best_value):
            best, best_value = fitted, value
    if best is None:
        raise ValueError(
            f"no grid point of ood scorer {name!r} applies to this data: "
            + "; ".join(row["skipped"] for row in table)
        )
    return dict(best.hparams), best, table
