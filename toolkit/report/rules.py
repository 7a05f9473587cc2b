"""Which runs each model-selection rule reports: :mod:`toolkit.selection` on recorded rows.

An untuned sweep reports every run under the rule ``default``. A tuned sweep (rows with a
``role``) reports, for each rule of its ``tune.select`` (else each rule whose picks have
seed runs), the ``role == "seed"`` runs that trained what the tuning run the rule picked
in their cell trained, seed aside: equal :func:`~toolkit.report.load.trained_config` of
their config.json (dataset, data axes and train config, with fields rows lack such as
weight_decay), or, where a run's config.json does not read, equal row config columns
(``CONFIG_KEYS``) for every run. Tuning runs are never averaged:
their scores chose the hparams, so averaging them would carry the winner's curse
(Gulrajani & Lopez-Paz 2021).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from toolkit import selection
from toolkit.report.load import trained_config
from toolkit.report.stats import group_keys, run_groups

__all__ = ["RuleRuns", "rule_runs", "rule_table", "tuned_keys"]


@dataclasses.dataclass
class RuleRuns:
    """One rule's view: ``runs`` (rows of ``per_run`` it reports), ``picks`` (its rows of
    ``selection.csv``) and ``notes`` (what is missing, in words)."""

    rule: str
    runs: pd.DataFrame
    picks: pd.DataFrame
    notes: list[str]


def _tuned(rows: pd.DataFrame) -> bool:
    return "role" in rows and rows["role"].notna().any()


def tuned_keys(runs: pd.DataFrame) -> list[str]:
    """Config keys that vary among the tuning runs of one cell: the tuned hparams."""
    tune = runs[runs["role"] == "tune"] if "role" in runs else runs.iloc[:0]
    keys = [k for k in group_keys(runs) if k in tune]
    if tune.empty:
        return []
    per_cell = _text(tune[keys]).groupby(tune["cell"].astype(str))
    return [k for k in keys if (per_cell[k].nunique() > 1).any()]


def _rule_names(sweep: Mapping[str, Any] | None) -> list[str] | None:
    tune = (sweep or {}).get("tune") or {}
    names = tune.get("select") if isinstance(tune, Mapping) else None
    if isinstance(names, str):
        names = [names]
    return list(names) if names else None


def rule_runs(
    rows: pd.DataFrame,
    runs: pd.DataFrame,
    sweep: Mapping[str, Any] | None = None,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RuleRuns]:
    """The runs each selection rule reports.

    Args:
      rows: every evaluation row (all splits and checkpoints: the rules score the tuning
        runs on validation rows).
      runs: ``per_run`` of the rows the report shows (one split and checkpoint).
      sweep: the sweep's config (``sweep.json``); its ``tune.select`` names the rules and
        ``tune.checkpoint`` the checkpoint they scored (default "final").
      configs: ``{run_id: config.json}`` (:func:`~toolkit.report.load.run_configs`).

    Returns:
      One :class:`RuleRuns` per rule, in the config's order; a rule whose seed runs are
      missing has empty ``runs`` and says so in ``notes``. Untuned: ``default`` with every
      run and no picks.
    """
    if not _tuned(rows):
        return [RuleRuns("default", runs.assign(selection="default"), pd.DataFrame(), [])]
    names = _rule_names(sweep)
    for name in names or ():
        selection.rules.entry(name)  # an unknown rule names the valid ones
    tune = ((sweep or {}).get("tune") or {}).get("checkpoint", "final")
    configs = configs or {}
    views = [
        _one_rule(rows, runs, name, tune, configs) for name in names or selection.rules.names()
    ]
    if names is None:  # no config: the rules whose picks were run at the seeds
        views = [view for view in views if not view.runs.empty] or views
    return views


def _one_rule(
    rows: pd.DataFrame,
    runs: pd.DataFrame,
    rule: str,
    checkpoint: str,
    configs: Mapping[str, Mapping[str, Any]],
) -> RuleRuns:
    picks = selection.select(rows, rule, checkpoint=checkpoint)
    identity = _identities(rows, configs)
    seeds = runs[runs["role"] == "seed"]
    seed_identity = seeds["run_id"].map(identity)
    hparams = _tuned_hparams(rows, configs)
    chosen, records, notes = [], [], []
    for pick in picks.itertuples(index=False):
        mine = seeds[seed_identity == identity[pick.run_id]]
        chosen.append(mine)
        values = hparams.get(pick.run_id, {})
        records.append(
            {
                "selection": rule,
                "cell": pick.cell,
                "trial": pick.trial,
                "run_id": pick.run_id,
                "score": pick.score,
                "candidates": pick.candidates,
                "hparams": json.dumps({k: _plain(v) for k, v in values.items()}, sort_keys=True),
                "seed_runs": len(mine),
                "seed_runs_finished": int((mine["status"] == "finished").sum()),
            }
        )
    cells = sorted(set(runs.loc[runs["role"] == "tune", "cell"].dropna()) - set(picks["cell"]))
    for cell in cells:
        records.append({"selection": rule, "cell": cell, "candidates": 0, "seed_runs": 0})
        notes.append(f"cell {cell}: no finished tuning run to select from")
    table = pd.DataFrame(records)
    if not picks.empty and table["seed_runs"].eq(0).all():
        notes.insert(0, "no seed runs at its selected hparams (its phase 2 has not run)")
    else:
        lacking = table.loc[table["seed_runs"].eq(0) & table["run_id"].notna(), "cell"]
        notes += [f"cell {cell}: no seed runs at the selected hparams" for cell in lacking]
    picked = pd.concat(chosen) if chosen else runs.iloc[:0]
    return RuleRuns(rule, picked.assign(selection=rule), table, notes)


def _identities(rows: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]]) -> pd.Series:
    """``{run_id: what it trained}``: from config.json, or from the row config columns when
    some run's config.json does not read (one kind of identity for all runs)."""
    groups = run_groups(rows)
    if not all(run_id in configs for run_id in groups.index):
        return groups
    return pd.Series({r: trained_config(configs[r]) for r in groups.index}, dtype=object)


def _tuned_hparams(
    rows: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The tuned hparams of each tuning run (by run_id): the train config fields (mappings
    flattened to ``loss_hparams.gamma``) that vary among the tuning runs of its cell; the
    rows' config columns for runs without a config.json."""
    tune = rows[rows["role"] == "tune"].groupby("run_id").first()
    if tune.empty:
        return {}
    fallback = tuned_keys(tune.reset_index())
    records = {}
    for run_id in tune.index:
        if run_id in configs:
            train = configs[run_id].get("train") or {}
            records[run_id] = _flatten({k: v for k, v in train.items() if k != "seed"})
        else:
            records[run_id] = {k: tune.at[run_id, k] for k in fallback}
    table = pd.DataFrame.from_dict(records, orient="index")
    cells = tune["cell"].astype(str)
    varying = _text(table).groupby(cells).nunique() > 1
    # Each run keeps the keys its own cell tunes (another cell's keys are not its choice).
    return {
        run_id: {k: table.at[run_id, k] for k in table.columns if varying.at[cells[run_id], k]}
        for run_id in table.index
    }


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """Values as JSON text, so None, NaN and numbers compare as values."""
    return frame.map(lambda v: json.dumps(_plain(v), sort_keys=True, default=str))


def _flatten(train: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in train.items():
        if isinstance(value, Mapping):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _plain(value: Any) -> Any:
    """A JSON-able value: canonical JSON strings (hparam mappings) parsed, NaN as None."""
    if isinstance(value, str) and value.startswith("{"):
        return json.loads(value)
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def rule_table(views: Sequence[RuleRuns]) -> pd.DataFrame:
    """``selection.csv``: every rule's picks, one row per (rule, cell)."""
    return pd.concat([view.picks for view in views], ignore_index=True)
