"""Evaluate finished runs on new shifts from their checkpoints, without retraining.

New rows are appended to ``evals.jsonl``; a row whose (run_id, checkpoint, split, eval_set,
severity) already exists is replaced in the file, so re-evaluating is idempotent. Each
run's ``config.json`` is read as data and must hash to its run id, and only the run's final
checkpoint (the step its ``done`` marker names) is evaluated, on the test split and, for a
run trained with a validation split, on that split (rebuilt from the trial:
:func:`toolkit.sweep.data.training_data`), whose temperature recalibrates the rows. A run
whose record or final checkpoint is damaged is skipped with a warning, never evaluated from
an older step, and nothing in its directory is changed; the closing count names the
finished runs skipped and why. Runs of sweeps before validation splits existed have none
(their data axes lack ``validation_fraction``).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toolkit import store
from toolkit.data import Split
from toolkit.sweep.config import SweepConfigError, Trial, trial_from_record
from toolkit.sweep.data import load_dataset
from toolkit.sweep.ensembles import evaluate_ensembles
from toolkit.sweep.evals import check_evals, parse_evals
from toolkit.sweep.loading import RunUnavailableError, restore_finished
from toolkit.sweep.records import evaluate_trial
from toolkit.sweep.runner import check_writable

__all__ = ["reevaluate"]


def _trials(
    experiment_dir: Path, skipped: dict[str, str]
) -> list[tuple[store.RunDir, Trial, dict]]:
    """The finished runs to evaluate; the others that are finished go to ``skipped``
    (``{run_id: why}``), each with a warning."""
    found = []
    finished, _ = store.finished_run_ids(experiment_dir)
    for run_dir in store.run_dirs(experiment_dir):
        if run_dir.run_id not in finished:
            continue
        try:
            trial = trial_from_record(store.read_json(run_dir.config), run_dir.run_id)
        except ValueError as error:
            skipped[run_dir.run_id] = f"its config.json: {error}"
            warnings.warn(f"{run_dir.path}: {error}; not re-evaluated", stacklevel=3)
            continue
        found.append((run_dir, trial, run_dir.done_marker()))
    return found


def reevaluate(
    experiment_dir: str | Path, evals: Mapping[str, Any], *, progress: bool = True, out=None
) -> int:
    """Evaluates every finished run of ``experiment_dir`` with ``evals`` (a config's
    ``evals`` mapping); returns the number of rows written. Checks everything first."""
    experiment_dir, out = Path(experiment_dir), out or sys.stderr
    if experiment_dir.exists() and not experiment_dir.is_dir():
        raise SweepConfigError(f"{str(experiment_dir)!r} is a file, not an experiment directory")
    entries = parse_evals(evals)
    if not entries:
        raise SweepConfigError("nothing to evaluate: give shifts, OOD sets or a config's evals")
    skipped: dict[str, str] = {}
    runs = _trials(experiment_dir, skipped)
    if not runs:
        raise SweepConfigError(f"{experiment_dir} has no finished runs to evaluate")
    store.warn_missing(experiment_dir, [r.run_id for r, _, _ in runs], checkpoint=False)
    seen = set()
    for _, trial, _ in runs:
        key = (trial.dataset, repr(sorted(trial.dataset_kwargs.items())))
        if key not in seen:
            seen.add(key)
            check_evals(entries, load_dataset(trial.dataset, dict(trial.dataset_kwargs)), trial)
    check_writable(experiment_dir)  # its rows are appended to evals.jsonl there

    from tqdm import tqdm

    written = evaluated = 0
    for run_dir, trial, marker in tqdm(runs, unit="run", disable=not progress, file=out):
        try:
            finished = restore_finished(run_dir, trial, marker)
        except RunUnavailableError as error:
            skipped[run_dir.run_id] = str(error)
            warnings.warn(f"{run_dir.path}: {error}; not re-evaluated", stacklevel=2)
            continue
        run = finished.run
        diverged_step = marker.get("diverged_step")
        checkpoint_runs = {"final": run} if run.best is None else {"final": run, "best": run.best}
        rows = evaluate_trial(
            checkpoint_runs,
            finished.dataset,
            trial,
            entries,
            validation=finished.data.validation,
            train=Split(finished.data.split.x, finished.data.labels),
            diverged_step=diverged_step,
            curve=run.curve,
        )
        store.append_evals(experiment_dir, rows)  # replacing the rows with their keys
        written += len(rows)
        evaluated += 1
    ensembles = evaluate_ensembles(
        experiment_dir, [trial for _, trial, _ in runs], evals, again=True
    )
    line = f"{experiment_dir}: wrote {written} rows for {evaluated} runs"
    if ensembles:
        line += f" and {ensembles} ensemble(s)"
    if skipped:
        line += f"; skipped {len(skipped)} finished run(s): " + "; ".join(
            f"{run_id}: {why}" for run_id, why in sorted(skipped.items())
        )
    print(line, file=out)
    return written
