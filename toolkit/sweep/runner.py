"""``run_sweep``: expand, check, skip what is done, run the rest, report progress; a tuned
sweep runs its tuning runs, then the seed runs at the selected hparams (``tuning``).

Rerunning the same command is always safe: finished runs (``done`` marker) are skipped,
unfinished ones resume from their newest checkpoint, and runs another process is training
right now (its lock is held) are left to it. A sweep split across processes or machines
that share the results directory fills one experiment directory. A ``done`` marker whose
run is not intact (its listed eval rows missing from ``evals.jsonl``, or its
``config.json`` unreadable or not the trial's) is removed under the run's lock, so that
run is redone: resumed from its last checkpoint, i.e. evaluated again without retraining.
A results directory that is a file or cannot be written is refused before any compute; a
finished sweep reruns on a read-only copy (nothing to write: ``sweep.json`` is rewritten
only when its content changes).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit import store
from toolkit.sweep.checks import check_options, check_trials
from toolkit.sweep.cli import config_file_of, sweep_specs
from toolkit.sweep.config import SweepConfigError, Trial, expand, trial_from_record
from toolkit.sweep.defaults import CHECKPOINT_EVERY, CHECKPOINT_INTERVAL_S
from toolkit.sweep.ensembles import evaluate_ensembles
from toolkit.sweep.evals import parse_evals
from toolkit.sweep.execute import Task
from toolkit.sweep.executors import (
    EXECUTOR_CHOICES,
    choose_executor,
    default_workers,
    executor_numerics,
    executors,
)
from toolkit.sweep.provenance import check_numerics
from toolkit.sweep.tuning import SeedPlan, Tune, plan_seeds, plan_tuning, tuning_json
from toolkit.training import json_ready

__all__ = ["SweepResult", "check_writable", "plan", "run_sweep"]


@dataclasses.dataclass
class SweepResult:
    """What one invocation did. ``summaries`` has one entry per trial it ran or skipped."""

    experiment_dir: Path
    trials: list[Trial]
    executor: str
    summaries: list[dict[str, Any]]

    def count(self, status: str) -> int:
        return sum(s["status"] == status for s in self.summaries)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.summaries if s["status"] == "failed"]


# Sweeps of more trials than this start only when asked twice (``max_trials=None``, the
# command line's --yes): a typo in a grid can plan a million runs.
MAX_TRIALS = 10_000


def plan(
    config: Any, sweep_fn: Callable[[Any], Sequence[Mapping]], *, max_trials: int | None = None
) -> tuple[list[Trial], dict]:
    """The sweep's trials and evaluation entries, everything checked (no compute, no write).

    For a tuned sweep the trials are its tuning runs; its seed runs depend on their results.
    """
    trials, evals, _ = _plan(config, sweep_fn, max_trials)
    return trials, evals


def _plan(
    config: Any, sweep_fn: Callable, max_trials: int | None = None
) -> tuple[list[Trial], dict, tuple | None]:
    """:func:`plan`, plus ``(Tune, cells)`` for a tuned sweep (None otherwise)."""
    check_options(config, EXECUTOR_CHOICES)
    tune = Tune.from_config(config)
    trials = expand(config, sweep_specs(config, sweep_fn))
    tuning = None
    if tune is not None:
        cells, trials = plan_tuning(config, trials, tune)
        tuning = (tune, cells)
    planned = len(trials)  # and a tuned sweep's seed runs, at most one per rule and seed:
    if tuning is not None:
        planned += sum(len(cell.seeds) for cell in tuning[1]) * len(tune.select)
    if max_trials is not None and planned > max_trials:
        raise SweepConfigError(
            f"the sweep plans {planned:,} runs, more than {max_trials:,}: check the grid with "
            f"--dry_run, then pass --yes to run them"
        )
    evals = config.get("evals") or {}
    entries = parse_evals(evals)
    check_trials(trials, entries)
    return trials, _plain(evals), tuning


def _plain(value: Any) -> Any:
    return json_ready(value.to_dict() if hasattr(value, "to_dict") else value)


def group_line(group: str, rows: list[dict], num_runs: int) -> str:
    """``mlp/adam: 17 runs, mean ID acc 0.67, mean shifted acc 0.52, 3 diverged``."""

    def mean(kinds: tuple[str, ...]) -> str:
        values = [r["accuracy"] for r in rows if r["kind"] in kinds and r["accuracy"] is not None]
        return f"{np.mean(values):.2f}" if values else "n/a"

    diverged = len({r["run_id"] for r in rows if r["diverged"]})
    return (
        f"{group}: {num_runs} runs, mean ID acc {mean(('clean',))}, "
        f"mean shifted acc {mean(('shift', 'set'))}, {diverged} diverged"
    )


def _config_problem(run_dir: store.RunDir) -> str | None:
    """Why ``config.json`` is not the record of run ``run_dir.run_id`` (None: it is)."""
    try:
        trial_from_record(store.read_json(run_dir.config), run_dir.run_id)
    except ValueError as error:
        return str(error)
    return None


def _problem(run_dir: store.RunDir) -> str | None:
    marker = run_dir.done_marker()
    if marker is None:
        return None
    rows = store.read_eval_rows(run_dir.experiment_dir)
    keys = store.row_keys(r for r in rows if r.get("run_id") == run_dir.run_id)
    problem = store.why_incomplete(marker, keys.get(run_dir.run_id, set()))
    return problem or _config_problem(run_dir)


def reopen_damaged(experiment_dir: Path, trials: Sequence[Trial]) -> list[str]:
    """Removes the done marker of each planned run that is marked done but not intact
    (:func:`_problem`), under the run's lock; returns their run ids. A run whose lock
    another process holds is left to it."""
    rows = store.read_eval_rows(experiment_dir)
    _, incomplete = store.finished_run_ids(experiment_dir, rows)
    reopened = []
    for trial in trials:
        run_dir = store.RunDir(experiment_dir, trial.run_id)
        if not run_dir.is_done():
            continue
        if trial.run_id not in incomplete and _config_problem(run_dir) is None:
            continue
        check_writable(experiment_dir)
        with run_dir.lock as held:
            problem = _problem(run_dir) if held else None  # re-checked: someone may have redone it
            if problem is not None:
                warnings.warn(f"{run_dir.path}: {problem}; redoing this run", stacklevel=2)
                run_dir.remove_done()
                reopened.append(trial.run_id)
    return reopened


def describe_plan(
    config: Any, sweep_fn: Callable[[Any], Sequence[Mapping]], *, shown: int = 5
) -> str:
    """What :func:`run_sweep` would run, checked as it checks it, nothing run or written:
    the trial count, the first ``shown`` trials and the training steps in all."""
    trials, evals, tuning = _plan(config, sweep_fn)
    steps = sum(int(t.train["steps"]) for t in trials)
    lines = [f"experiment {trials[0].experiment!r}: {len(trials):,} runs, {steps:,} steps"]
    if tuning is not None:
        tune, cells = tuning
        seeds = sum(len(c.seeds) for c in cells)
        lines[0] = (
            f"experiment {trials[0].experiment!r}: {len(trials):,} tuning runs ({steps:,} "
            f"steps) in {len(cells)} cells, then up to {seeds * len(tune.select):,} seed runs "
            f"({seeds} per rule: {', '.join(tune.select)})"
        )
    lines += [
        f"  {t.run_id}  {t.group}  {t.variant}  {t.describe()}, "
        f"learning_rate={t.train['learning_rate']:g}, steps={t.train['steps']}"
        for t in trials[:shown]
    ]
    if len(trials) > shown:
        lines.append(f"  ... and {len(trials) - shown:,} more")
    lines.append(f"evaluations: {', '.join(evals) or 'none'}")
    return "\n".join(lines)


def run_sweep(
    config: Any,
    sweep_fn: Callable[[Any], Sequence[Mapping]],
    *,
    results_dir: str | Path = "results",
    progress: bool = True,
    out=None,
    max_trials: int | None = None,
) -> SweepResult:
    """Runs every trial of ``sweep_fn(config)`` not yet done into ``results_dir/<experiment>``.

    Everything is checked first (:func:`plan`); an invalid config raises
    :class:`~toolkit.sweep.config.SweepConfigError` and writes nothing. The executor is
    ``config.executor`` (``auto``: populations on GPU/TPU, worker processes on CPU) with
    ``config.workers`` workers (0: one per core). A tuned sweep (``config.tune.trials`` > 0)
    runs its tuning runs, then the seed runs of the trials each rule in ``config.tune.select``
    picks (:mod:`toolkit.sweep.tuning`); ``sweep.json`` holds the config and that plan.
    A sweep of more than ``max_trials`` runs (None: no limit) is refused before any check.
    A directory whose runs were computed with other numerics (another executor's XLA
    threading, other jax versions: :func:`~toolkit.sweep.provenance.check_numerics`) is
    refused before anything is computed or written.
    """
    trials, evals, tuning = _plan(config, sweep_fn, max_trials)
    out = out or sys.stderr
    name = choose_executor(config.get("executor", "auto"), trials, out)
    experiment_dir = _make_dir(Path(results_dir) / trials[0].experiment)
    numerics = check_numerics(experiment_dir, executor_numerics(name))
    _write_sweep_json(experiment_dir, config, tuning, None, numerics)
    summaries = _execute(experiment_dir, trials, evals, config, sweep_fn, name, progress, out)
    if tuning is not None:
        tune, cells = tuning
        rows = pd.DataFrame(store.read_evals(experiment_dir))
        seeds = plan_seeds(cells, rows, store.done_run_ids(experiment_dir), tune)
        _write_sweep_json(experiment_dir, config, tuning, seeds, numerics)
        for label in seeds.waiting:
            print(
                f"cell {label}: tuning runs not all done; its seed runs wait for a rerun", file=out
            )
        for rule, labels in seeds.unselected.items():
            for label in labels:
                print(
                    f"cell {label}: no finished tuning run with {rule!r} scores "
                    f"(checkpoint {tune.checkpoint!r}); it gets no seed runs for {rule!r}",
                    file=out,
                )
        if seeds.trials:
            summaries += _execute(
                experiment_dir, seeds.trials, evals, config, sweep_fn, name, progress, out
            )
        trials = [*trials, *seeds.trials]
    evaluate_ensembles(experiment_dir, trials, evals, out=out)
    result = SweepResult(experiment_dir, trials, name, summaries)
    print(
        f"{experiment_dir}: {len(trials)} runs; trained {result.count('trained')}, "
        f"skipped {result.count('skipped')} (done), locked by another process "
        f"{result.count('locked')}, failed {result.count('failed')}",
        file=out,
    )
    return result


def _write_sweep_json(
    experiment_dir: Path,
    config: Any,
    tuning: tuple | None,
    seeds: SeedPlan | None,
    numerics: dict[str, Any],
) -> None:
    """``sweep.json``: the resolved config, what its runs' numerics depend on under
    ``"numerics"`` (checked on resume), and a tuned sweep's plan under ``"tuning"``."""
    payload = {**_plain(config), "numerics": numerics}
    if tuning is not None:
        payload["tuning"] = json_ready(tuning_json(tuning[1], tuning[0], seeds))
    path = experiment_dir / store.SWEEP
    if store.read_json(path) == json.loads(json.dumps(store.json_safe(payload))):
        return  # unchanged: a finished sweep reruns on a read-only copy
    check_writable(experiment_dir)
    store.atomic_write_json(path, payload)


def _make_dir(experiment_dir: Path) -> Path:
    """``experiment_dir``, created if missing; a clear error for a path through a file or
    one that cannot be created (the caller checks writing where it writes)."""
    try:
        experiment_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        file = store.nearest_existing(experiment_dir)
        raise SweepConfigError(
            f"results directory {str(experiment_dir)!r} cannot be made: {str(file)!r} is a "
            f"file, not a directory; choose another results_dir"
        ) from None
    except OSError as error:
        raise SweepConfigError(
            f"results directory {str(experiment_dir)!r} cannot be made: {error.strerror}; "
            f"choose a results_dir you can write to"
        ) from None
    return experiment_dir


def check_writable(directory: str | Path) -> None:
    """Raises :class:`SweepConfigError` unless a file can be made in ``directory``, tried by
    making and removing one: the answer the writes that follow would get (permissions,
    ACLs, a read-only mount), where ``os.access`` says yes to root whatever the bits."""
    problem = store.why_not_writable(directory)
    if problem is not None:
        raise SweepConfigError(
            f"results directory {str(directory)!r} is not writable ({problem}); "
            f"run on a writable copy or choose another results_dir"
        )


def _execute(
    experiment_dir: Path,
    trials: list[Trial],
    evals: dict,
    config: Any,
    sweep_fn: Callable,
    name: str,
    progress: bool,
    out,
) -> list[dict[str, Any]]:
    """Runs the ``trials`` not yet done with executor ``name``; one summary per trial."""
    reopen_damaged(experiment_dir, trials)
    done = store.done_run_ids(experiment_dir)
    pending = [t for t in trials if t.run_id not in done]
    if pending:
        check_writable(experiment_dir)
    store.warn_missing(
        experiment_dir, [t.run_id for t in trials if t.run_id in done], checkpoint=True
    )
    saves = {
        "checkpoint_every": int(config.get("checkpoint_every", CHECKPOINT_EVERY)),
        "checkpoint_interval_s": float(config.get("checkpoint_interval_s", CHECKPOINT_INTERVAL_S)),
        "tensorboard": bool(config.get("tensorboard", False)),
    }
    tasks = [Task(str(experiment_dir), t.to_json(), evals, **saves) for t in pending]
    workers = int(config.get("workers", 0)) or default_workers()
    summaries = [
        {"run_id": t.run_id, "group": t.group, "status": "skipped"}
        for t in trials
        if t.run_id in done
    ]

    from tqdm import tqdm

    bar = tqdm(
        total=len(trials),
        initial=len(trials) - len(pending),
        unit="run",
        disable=not progress,
        file=out,
        desc=f"{trials[0].experiment} [{name}]",
        dynamic_ncols=True,
    )
    open_runs: dict[str, set[str]] = {}
    for trial in pending:
        open_runs.setdefault(trial.group, set()).add(trial.run_id)
    group_runs = {g: sum(t.group == g for t in trials) for g in {t.group for t in trials}}
    run = executors.get(name)
    options = {
        "workers": workers,
        "folder": experiment_dir / "submitit",
        "submitit": _plain(config.get("submitit") or {}),
        "population_size": config.get("population_size"),
        # Worker processes run the config file again for its own registrations.
        "config_file": config_file_of(sweep_fn),
    }
    try:
        for summary in run(tasks, **options):
            summaries.append(summary)
            bar.update(1)
            if summary["status"] == "failed":
                bar.write(f"run {summary['run_id']} failed:\n{summary.get('error', '')}", file=out)
            remaining = open_runs.get(summary["group"], set())
            remaining.discard(summary["run_id"])
            if not remaining and summary["group"] in open_runs:
                del open_runs[summary["group"]]
                ids = {t.run_id for t in trials if t.group == summary["group"]}
                ids &= store.done_run_ids(experiment_dir)
                every_row = store.read_evals(experiment_dir, done_only=False)
                rows = [r for r in every_row if r["run_id"] in ids
                        and store.row_key(r)[1:3] == ("final", "test")]  # fmt: skip
                bar.write(
                    group_line(summary["group"], rows, group_runs[summary["group"]]), file=out
                )
    finally:
        bar.close()
    return summaries
