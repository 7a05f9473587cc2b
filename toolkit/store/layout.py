"""An experiment directory: run dirs, done markers, and the one reader of ``evals.jsonl``.

A ``done`` marker counts only when it parses and every eval row it lists is in
``evals.jsonl`` (:func:`finished_run_ids`); a run whose marker fails that is unfinished for
readers, and the sweep runner redoes it. New rows replace those with their
:data:`EVAL_KEY` in the file itself (:func:`append_evals`); in files written before that,
the last row per key wins. Rows and markers written before rows had a
``checkpoint`` and a ``split`` read as the final checkpoint on the test split.
"""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from toolkit.store.files import (
    ResultsWarning,
    RunLock,
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    dumps,
    now,
    read_json,
    read_jsonl,
)

__all__ = [
    "EVALS",
    "EVAL_KEY",
    "KEY_DEFAULTS",
    "REQUIRED",
    "SWEEP",
    "RunDir",
    "append_evals",
    "done_markers",
    "done_run_ids",
    "finished_run_ids",
    "missing_evals",
    "read_eval_rows",
    "read_evals",
    "row_key",
    "row_keys",
    "run_dirs",
    "why_incomplete",
]

EVALS = "evals.jsonl"
SWEEP = "sweep.json"
EVAL_KEY = ("run_id", "checkpoint", "split", "eval_set", "severity", "predictor")
"""A row's identity: a re-evaluation replaces the row with the same key. Rows without
``checkpoint``, ``split`` or ``predictor`` (written before they existed) are ``"final"``,
``"test"`` and ``"single"`` (the run itself, not its MC-dropout average or an ensemble)."""
KEY_DEFAULTS = {"checkpoint": "final", "split": "test", "predictor": "single"}
REQUIRED = ("run_id", "eval_set", "kind", "severity")
"""Fields without which an eval row is malformed and skipped."""


class RunDir:
    """Paths and readers/writers of one run's directory."""

    def __init__(self, experiment_dir: str | os.PathLike, run_id: str):
        self.run_id = run_id
        self.experiment_dir = Path(experiment_dir)
        self.path = self.experiment_dir / "runs" / run_id
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoint = self.path / "checkpoint"
        self.provenance = self.path / "provenance.json"
        self.done = self.path / "done"
        self.error = self.path / "error.json"  # why the last attempt failed, if it did
        self.lock = RunLock(self.path / "lock")

    def done_marker(self) -> dict[str, Any] | None:
        """The done marker's content, or None if the run is not finished."""
        marker = read_json(self.done)
        return marker if isinstance(marker, dict) and "finished" in marker else None

    def is_done(self) -> bool:
        return self.done_marker() is not None

    def write_done(
        self,
        diverged_step: int | None,
        *,
        step: int | None = None,
        evals: Iterable[tuple] = (),
        status: str | None = None,
        best_step: int | None = None,
    ) -> None:
        """The marker: when, the divergence step, the final step (the checkpoint to evaluate
        later), the ``(checkpoint, split, eval_set, severity)`` keys of the rows just
        appended, the run's status (finished, diverged or collapsed) and the step of its
        best-validation state (for re-evaluations' rows)."""
        marker = {
            "finished": now(),
            "diverged_step": diverged_step,
            "step": step,
            "status": status,
            "best_step": best_step,
            "evals": [_marker_entry(*key) for key in evals],
        }
        atomic_write_json(self.done, marker)

    def write_error(self, error: BaseException) -> None:
        """``error.json``: the type, message and traceback of the exception that failed the
        run's last attempt, and when (atomic; :meth:`clear_error` once it succeeds)."""
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        payload = {
            "type": type(error).__name__,
            "message": "\n".join([str(error), *getattr(error, "__notes__", ())]),
            "traceback": text,
            "time": now(),
        }
        atomic_write_json(self.error, payload)

    def clear_error(self) -> None:
        self.error.unlink(missing_ok=True)

    def remove_done(self) -> None:
        """Removes the marker: the run counts as unfinished and is redone."""
        self.done.unlink(missing_ok=True)

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics)

    def keep_metrics_until(self, step: int) -> None:
        """Keeps the curve's rows up to ``step`` (the checkpoint a resume starts from): the
        rows in file order while their steps increase, dropping later (and repeated) ones."""
        if not self.metrics.exists():
            return
        rows, last = [], 0
        for row in read_jsonl(self.metrics):
            at = row.get("step")
            if not isinstance(at, int) or not last < at <= step:
                break
            rows.append(row)
            last = at
        atomic_write_text(self.metrics, "".join(dumps(r) + "\n" for r in rows))


def run_dirs(experiment_dir: str | os.PathLike) -> Iterator[RunDir]:
    runs = Path(experiment_dir) / "runs"
    if runs.is_dir():
        for path in sorted(runs.iterdir()):
            if path.is_dir():
                yield RunDir(experiment_dir, path.name)


def done_run_ids(experiment_dir: str | os.PathLike) -> set[str]:
    """Runs with a readable ``done`` marker (see :func:`finished_run_ids` for complete ones)."""
    return {run.run_id for run in run_dirs(experiment_dir) if run.is_done()}


def done_markers(experiment_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{run_id: done marker}`` of the runs with a readable marker. Markers are written
    atomically, so one that exists but does not read is damage: that run is not finished
    (the runner redoes it), and it is skipped with a :class:`ResultsWarning`."""
    markers = {}
    for run in run_dirs(experiment_dir):
        marker = run.done_marker()
        if marker is not None:
            markers[run.run_id] = marker
        elif run.done.exists():
            warnings.warn(
                f"{run.done}: unreadable done marker; run skipped as unfinished",
                ResultsWarning,
                stacklevel=2,
            )
    return markers


def _marker_entry(checkpoint, split, eval_set, severity, predictor=None) -> list:
    """A done marker's entry: ``[checkpoint, split, eval_set, severity]``, with the
    predictor appended when it is not the run itself."""
    entry = [checkpoint, split, eval_set, int(severity)]
    return entry if predictor in (None, KEY_DEFAULTS["predictor"]) else [*entry, predictor]


def _entry_key(entry: Any) -> tuple[str, str, str, int, str] | None:
    """A done marker's entry as ``(checkpoint, split, eval_set, severity, predictor)``:
    markers list ``[checkpoint, split, eval_set, severity(, predictor)]``, older ones
    ``[eval_set, severity]`` (the final checkpoint on the test split); None for a
    malformed entry."""
    if not isinstance(entry, list) or len(entry) not in (2, 4, 5):
        return None
    if len(entry) == 2:
        entry = [KEY_DEFAULTS["checkpoint"], KEY_DEFAULTS["split"], *entry]
    if len(entry) == 4:
        entry = [*entry, KEY_DEFAULTS["predictor"]]
    try:
        return str(entry[0]), str(entry[1]), str(entry[2]), int(entry[3]), str(entry[4])
    except (TypeError, ValueError):
        return None


def missing_evals(marker: Mapping[str, Any], keys: set[tuple]) -> list[list]:
    """The entries a done marker lists that are not among ``keys`` (:func:`row_keys`;
    markers written before the list existed list none)."""
    listed = marker.get("evals") or []
    if not isinstance(listed, list):
        return [listed]
    # A malformed entry (None) is missing: the marker was not written by the runner.
    return [entry for entry in listed if _entry_key(entry) not in keys]


def row_key(row: Mapping[str, Any]) -> tuple[str, str, str, str, int, str]:
    """The row's :data:`EVAL_KEY` (missing checkpoint/split as final/test, severity an int);
    raises KeyError, TypeError or ValueError for a row without a set or severity."""
    checkpoint = row.get("checkpoint") or KEY_DEFAULTS["checkpoint"]
    split = row.get("split") or KEY_DEFAULTS["split"]
    return (
        str(row.get("run_id")),
        str(checkpoint),
        str(split),
        str(row["eval_set"]),
        int(row["severity"]),
        str(row.get("predictor") or KEY_DEFAULTS["predictor"]),
    )


def row_keys(rows: Iterable[Mapping[str, Any]]) -> dict[str, set[tuple]]:
    """``{run_id: {(checkpoint, split, eval_set, severity, predictor), ...}}`` of
    well-formed rows."""
    keys: dict[str, set[tuple]] = {}
    for row in rows:
        try:
            key = row_key(row)
        except (KeyError, TypeError, ValueError):
            continue
        keys.setdefault(str(row.get("run_id")), set()).add(key[1:])
    return keys


def append_evals(experiment_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Appends ``rows`` to ``evals.jsonl`` keeping one row per :data:`EVAL_KEY` in the file:
    rows already there with the key of a new row (a run recorded anew after an interrupted
    attempt, a re-evaluated set) and lines cut short by a killed writer are removed in the
    same locked step (:func:`~toolkit.store.files.append_jsonl`; the file is rewritten only
    when it holds a row of these runs or ends in a cut line). Rows of other keys stay: a
    run's rows added by re-evaluation survive its being recorded again."""
    ids = {str(row["run_id"]) for row in rows}
    keys = {row_key(row) for row in rows}

    def replaced(row: dict[str, Any]) -> bool:
        try:
            return row_key(row) in keys
        except (KeyError, TypeError, ValueError):
            return False

    hints = [dumps({"run_id": run_id})[1:-1].encode() for run_id in sorted(ids)]
    append_jsonl(Path(experiment_dir) / EVALS, rows, replace=replaced, hints=hints)


def why_incomplete(marker: Mapping[str, Any], keys: set[tuple]) -> str | None:
    """Why a done marker does not stand for a finished run given its rows' ``keys``
    (:func:`row_keys`), or None when every row it lists is there."""
    missing = missing_evals(marker, keys)
    if not missing:
        return None
    return (
        f"its done marker lists {len(missing)} eval row(s) missing from {EVALS}, e.g. {missing[0]}"
    )


def read_eval_rows(experiment_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every row of ``evals.jsonl`` in file order, damaged lines skipped with a warning:
    the one place the file is read (the runner, re-evaluation and the report)."""
    return read_jsonl(Path(experiment_dir) / EVALS)


def finished_run_ids(
    experiment_dir: str | os.PathLike, rows: list[dict] | None = None
) -> tuple[set[str], dict[str, str]]:
    """``(finished, incomplete)``: runs whose done marker parses and whose listed eval rows
    are all in ``evals.jsonl`` (``rows``, read if not given), and ``{run_id: why}`` for
    runs with a marker that fails that (e.g. rows lost from ``evals.jsonl``)."""
    if rows is None:
        rows = read_eval_rows(experiment_dir)
    keys = row_keys(rows)
    finished, incomplete = set(), {}
    for run in run_dirs(experiment_dir):
        marker = run.done_marker()
        if marker is None:
            continue
        problem = why_incomplete(marker, keys.get(run.run_id, set()))
        if problem:
            incomplete[run.run_id] = problem
        else:
            finished.add(run.run_id)
    return finished, incomplete


def _key(row: Mapping[str, Any]) -> tuple | None:
    """The row's :data:`EVAL_KEY` (:func:`row_key`), or None for a malformed row."""
    if any(row.get(k) is None for k in REQUIRED):
        return None
    try:
        return row_key(row)
    except (TypeError, ValueError):
        return None


def read_evals(
    experiment_dir: str | os.PathLike,
    *,
    done_only: bool = True,
    rows: list[dict] | None = None,
) -> list[dict]:
    """The eval rows readers use: the last row per :data:`EVAL_KEY`, in file order, of the
    finished runs (:func:`finished_run_ids`; every run with ``done_only=False``).

    ``rows`` are :func:`read_eval_rows` (read if not given). Malformed rows (one of
    :data:`REQUIRED` missing), rows of runs without a done marker and runs whose marker
    lists rows that are missing are skipped with a :class:`ResultsWarning` each.
    """
    experiment_dir = Path(experiment_dir)
    rows = read_eval_rows(experiment_dir) if rows is None else rows
    keyed = [(key, row) for row in rows if (key := _key(row)) is not None]
    if len(keyed) < len(rows):
        warnings.warn(
            f"{experiment_dir / EVALS}: skipped {len(rows) - len(keyed)} rows without one "
            f"of {REQUIRED}",
            ResultsWarning,
            stacklevel=2,
        )
    last = {key: i for i, (key, _) in enumerate(keyed)}
    kept = [row for i, (key, row) in enumerate(keyed) if last[key] == i]
    if not done_only:
        return kept
    finished, incomplete = finished_run_ids(experiment_dir, [row for _, row in keyed])
    unmarked = [r["run_id"] for _, r in keyed if r["run_id"] not in finished | set(incomplete)]
    if unmarked:
        ids = sorted(set(unmarked))
        warnings.warn(
            f"{experiment_dir}: skipped {len(unmarked)} rows of {len(ids)} run(s) without a "
            f"done marker (unfinished or interrupted): {', '.join(ids)}",
            ResultsWarning,
            stacklevel=2,
        )
    if incomplete:
        warnings.warn(
            f"{experiment_dir}: skipped {len(incomplete)} finished run(s) whose rows were lost "
            "(rerun the sweep to redo them): "
            + "; ".join(f"{r}: {why}" for r, why in sorted(incomplete.items())),
            ResultsWarning,
            stacklevel=2,
        )
    return [row for row in kept if row["run_id"] in finished]
