"""Model selection rules: which tuning trial of each cell a comparison reports.

After Gulrajani & Lopez-Paz (2021, "In Search of Lost Domain Generalization", DomainBed):
a comparison is only as fair as the rule that picks each method's hyperparameters, so every
table names its rule. Each rule reads the evaluation rows of a cell's tuning runs (``role ==
"tune"``) and picks one trial index per cell:

- ``id_val``: the highest accuracy on the clean in-distribution validation split.
- ``oracle``: the highest mean accuracy over the *shifted* validation sets. An upper bound,
  not a method: it chooses with data from the shifted distributions, which a deployed model
  would not have seen.
- ``default``: trial 0, the registry defaults (no tuning).

For ``id_val`` and ``oracle`` only runs whose ``status`` at that checkpoint is
``finished`` are eligible (diverged and collapsed runs are not; the status is decided on
training and validation data, never the test set); ties go to the lowest trial index.
``default`` picks trial 0 whatever became of it: the defaults' failures are part of what
it reports. The rules are a step on recorded rows, so adding
one needs no retraining of the tuning runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from toolkit.registry import Registry

__all__ = ["ROW_DEFAULTS", "rules", "select", "with_row_defaults"]

ROW_DEFAULTS = {"split": "test", "checkpoint": "final", "status": None, "role": None}
"""Values of the protocol's row columns for rows written before they existed."""

rules = Registry("selection rule", build=lambda factory, **kw: factory)


def with_row_defaults(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with every column of :data:`ROW_DEFAULTS` present (old rows filled in);
    ``status`` falls back to ``diverged``/``finished`` from the ``diverged`` column."""
    rows = rows.copy()
    for column, default in ROW_DEFAULTS.items():
        if column not in rows:
            rows[column] = default
        elif default is not None:
            rows[column] = rows[column].fillna(default)
    if rows["status"].isna().any():
        diverged = rows.get("diverged", pd.Series(False, index=rows.index)).fillna(False)
        fallback = np.where(diverged.astype(bool), "diverged", "finished")
        rows["status"] = rows["status"].fillna(pd.Series(fallback, index=rows.index))
    return rows


def _validation(rows: pd.DataFrame, kind: str) -> pd.Series:
    """Mean validation accuracy per run over the rows of ``kind`` (NaN where it has none)."""
    picked = rows[(rows["split"] == "validation") & (rows["kind"] == kind)]
    return picked.groupby("run_id")["accuracy"].mean()


@rules.register("id_val", description="Best clean in-distribution validation accuracy.")
def _id_val(rows: pd.DataFrame) -> pd.Series:
    return _validation(rows, "clean")


@rules.register(
    "oracle",
    description="Best mean accuracy on the shifted validation sets (an upper bound: it "
    "chooses with shifted data).",
)
def _oracle(rows: pd.DataFrame) -> pd.Series:
    return _validation(rows, "shift")


@rules.register(
    "default",
    description="Trial 0: the config's values (registry defaults), no tuning.",
    meta={"any_status": True},
)
def _default(rows: pd.DataFrame) -> pd.Series:
    trials = rows.groupby("run_id")["trial"].first()
    return (trials == 0).astype(np.float64).where(trials == 0)


def select(rows: pd.DataFrame, rule: str, *, checkpoint: str = "final") -> pd.DataFrame:
    """One row per cell: the trial ``rule`` picks among the cell's finished tuning runs.

    Args:
      rows: evaluation rows (``evals.jsonl`` as a DataFrame) with ``run_id``, ``cell``,
        ``trial``, ``role``, ``split``, ``kind``, ``accuracy``, ``status`` (or
        ``diverged``) and ``checkpoint`` columns; rows of other roles are ignored.
      rule: a name in :data:`rules`.
      checkpoint: whose rows score the runs ("final" or "best": the best-validation state).

    Returns:
      Columns ``cell, trial, run_id, score, rule, candidates`` (``candidates``: eligible
      tuning runs in the cell). A cell with no eligible run is left out.
    """
    score_of: Callable[[pd.DataFrame], pd.Series] = rules.get(rule)
    any_status = rules.entry(rule).meta.get("any_status", False)
    missing = sorted({"run_id", "cell", "trial", "kind", "accuracy"} - set(rows.columns))
    if missing:
        raise ValueError(f"selection needs row column {missing[0]!r}; the rows have none")
    rows = with_row_defaults(rows)
    tuning = rows[(rows["role"] == "tune") & (rows["checkpoint"] == checkpoint)]
    out = []
    for cell, cell_rows in tuning.groupby("cell", sort=True):
        eligible = cell_rows if any_status else cell_rows[cell_rows["status"] == "finished"]
        trials = eligible.groupby("run_id")["trial"].first()
        scores = score_of(eligible).reindex(trials.index)
        table = pd.DataFrame({"trial": trials, "score": scores}).dropna()
        if table.empty:
            continue
        table = table.sort_values(["score", "trial"], ascending=[False, True], kind="stable")
        best_id = table.index[0]
        out.append(
            {
                "cell": cell,
                "trial": int(table.iloc[0]["trial"]),
                "run_id": best_id,
                "score": float(table.iloc[0]["score"]),
                "rule": rule,
                "candidates": len(trials),
            }
        )
    columns = ["cell", "trial", "run_id", "score", "rule", "candidates"]
    return pd.DataFrame(out, columns=columns)
