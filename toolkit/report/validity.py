"""Shift cells that destroy the label for every model: flagged and left out of the means.

A cell is one shift at one severity (rows of kind "shift"). It is invalid when no finished
run classifies it better than chance 1/C (C classes): each run's k = round(accuracy n)
correct of n gets the one-sided exact binomial p-value ``P(X >= k)``, X ~ Bin(n, 1/C), and
the cell is flagged when even the smallest p of its m runs is at least alpha / m, so that
no run stays above chance under Holm's correction (Holm 1979) at alpha = 0.05. Such a
cell (on 8x8 digits: pixelate 5, a 1x1 image; invert 3-5, which models read as other
digits) measures no robustness, and in a mean over cells it only pulls every model towards
chance. The report leaves these cells' rows out of every mean (corrupted metrics, severity
curves, accuracy on the line, selection rules), keeps them in the per-shift table, and
lists them with the numbers behind each flag in the ``invalid_cells`` README block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from toolkit.report.stats import finished
from toolkit.report.tables import markdown_table

__all__ = [
    "ALPHA",
    "class_count",
    "drop_cells",
    "flagged_cells",
    "invalid_cells",
    "invalid_cells_text",
]

ALPHA = 0.05
_CELL = ["dataset", "eval_set", "severity"]
_COLUMNS = [*_CELL, "runs", "best_accuracy", "chance", "p_value", "reason"]


def _with_dataset(rows: pd.DataFrame) -> pd.DataFrame:
    return rows if "dataset" in rows else rows.assign(dataset="")


def invalid_cells(
    rows: pd.DataFrame, num_classes: int | Mapping[str, int], *, alpha: float = ALPHA
) -> pd.DataFrame:
    """The shift cells of ``rows`` (test rows of one checkpoint) no finished run classifies
    above chance ``1 / num_classes`` (an int, or ``{dataset: int}`` when the runs use
    several datasets; a cell is one dataset's shift at one severity): one row per cell with
    ``runs`` (m), ``best_accuracy``, ``chance``, ``p_value`` (the smallest one-sided
    binomial p over the runs) and ``reason``."""
    counts = dict(num_classes) if isinstance(num_classes, Mapping) else None
    for value in counts.values() if counts is not None else [num_classes]:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {value!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    rows = _with_dataset(rows)
    shift = rows[(rows["kind"] == "shift") & finished(rows)]
    shift = shift.dropna(subset=["accuracy", "num_examples"])
    found = []
    for (dataset, name, severity), cell in shift.groupby(_CELL, sort=True):
        chance = 1.0 / (num_classes if counts is None else counts[dataset])
        n = cell["num_examples"].to_numpy(np.int64)
        k = np.rint(cell["accuracy"].to_numpy(np.float64) * n).astype(np.int64)
        p = float(scipy.stats.binom.sf(k - 1, n, chance).min())  # P(X >= k)
        if p < alpha / len(cell):
            continue
        best = float(cell["accuracy"].max())
        reason = (
            f"no run above chance ({100 * chance:.0f} %): best {100 * best:.1f} %, "
            f"smallest one-sided binomial p {p:.2g} >= {alpha:g}/{len(cell)} (Holm)"
        )
        found.append((dataset, name, int(severity), len(cell), best, chance, p, reason))
    return pd.DataFrame(found, columns=_COLUMNS)


def drop_cells(rows: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """``rows`` without the shift rows of ``cells`` (every split and checkpoint)."""
    if cells.empty:
        return rows
    flagged = pd.MultiIndex.from_frame(cells[_CELL].astype({"severity": np.int64}))
    keyed = _with_dataset(rows)
    index = pd.MultiIndex.from_arrays(
        [
            keyed["dataset"],
            keyed["eval_set"],
            pd.to_numeric(keyed["severity"], errors="coerce").fillna(-1),
        ]
    )
    drop = (rows["kind"] == "shift").to_numpy() & index.isin(flagged)
    return rows[~drop]


def invalid_cells_text(cells: pd.DataFrame, note: str = "") -> str:
    """The README block: the flagged cells and why, or a sentence saying there are none."""
    if note:
        return f"No shift cell was checked: {note}.\n"
    if cells.empty:
        return "Every shift cell has a run above chance; none is left out of the means.\n"
    table = cells.assign(
        best_accuracy=(100 * cells["best_accuracy"]).round(1),
        p_value=cells["p_value"].map(lambda p: f"{p:.2g}"),
    )[["dataset", "eval_set", "severity", "runs", "best_accuracy", "p_value"]]
    if table["dataset"].nunique() < 2:
        table = table.drop(columns="dataset")
    table = table.rename(
        columns={"eval_set": "shift", "best_accuracy": "best accuracy (%)", "p_value": "p"}
    )
    chances = sorted(set(cells["chance"]))
    chance = f"{100 * chances[0]:.0f} %" if len(chances) == 1 else "1/C of its dataset"
    return (
        f"{len(cells)} shift cell(s) destroy the label for every model and are left out of "
        f"every mean: no run is above chance ({chance}) in a one-sided binomial test "
        f"with Holm's correction over the runs at {ALPHA:g} (p: the smallest over the "
        "runs). They stay in the per-shift table.\n\n" + markdown_table(table)
    )


def class_count(configs: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, int] | None, str]:
    """``{dataset: number of classes}`` of the runs' datasets, read from ``tk.data.load``;
    ``(None, why)`` when a dataset does not load, or one name has two sets of arguments."""
    from toolkit import data

    datasets = {
        (c.get("dataset"), repr(sorted((c.get("dataset_kwargs") or {}).items()))): c
        for c in configs.values()
    }
    names = [name for name, _ in datasets]
    if len(set(names)) != len(names):
        return None, "one dataset is used with several sets of arguments"
    counts = {}
    for (name, _), config in datasets.items():
        try:
            dataset = data.load(name, **(config.get("dataset_kwargs") or {}))
        except Exception as error:  # any failure: the report goes on without flagging
            return None, f"dataset {name!r} did not load ({error})"
        counts[name] = int(dataset.num_classes)
    return counts, ""


def flagged_cells(
    df: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]]
) -> tuple[pd.DataFrame, str] | None:
    """The shift cells no run classifies above chance and
    a note saying why none were checked; None without shift rows."""
    if not (df["kind"] == "shift").any():
        return None
    num_classes, note = class_count(configs)
    if num_classes is None:
        return invalid_cells(df.iloc[:0], 2), note
    return invalid_cells(df, num_classes), ""
