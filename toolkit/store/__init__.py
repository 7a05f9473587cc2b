"""The results layout on disk, and the only code that reads or writes it.

::

    <experiment>/sweep.json                 the resolved sweep config (a tuned sweep's plan
                                            under "tuning": cells, picks, seed runs)
    <experiment>/runs/<run_id>/config.json  the trial
    <experiment>/runs/<run_id>/metrics.jsonl training curve, one row per chunk
    <experiment>/runs/<run_id>/checkpoint/  orbax checkpoints (``toolkit.sweep.checkpoint``)
    <experiment>/runs/<run_id>/provenance.json
    <experiment>/runs/<run_id>/done         written last: the run is finished (its final
                                            step, status and the (checkpoint, split,
                                            eval_set, severity) keys of its rows)
    <experiment>/runs/<run_id>/error.json   why the run's last attempt failed (type,
                                            message, traceback, time); gone once it succeeds
    <experiment>/runs/<run_id>/lock         who is training the run (fcntl lock)
    <experiment>/evals.jsonl                one evaluation row per line
    <experiment>/report/                    the report (replaced as a whole)

The sweep runner writes it, and the runner, re-evaluation and the report read it, all
through this package: :mod:`~toolkit.store.files` (atomic writes, locked appends, the run
lock) and :mod:`~toolkit.store.layout` (run dirs, done markers, :func:`read_evals`).
"""

from toolkit.store.completeness import warn_missing, what_is_missing
from toolkit.store.files import (
    ResultsWarning,
    RunLock,
    append_jsonl,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    file_lock,
    json_safe,
    nearest_existing,
    now,
    read_json,
    read_jsonl,
    replace_dir,
    why_not_writable,
)
from toolkit.store.layout import (
    EVAL_KEY,
    EVALS,
    KEY_DEFAULTS,
    REQUIRED,
    SWEEP,
    RunDir,
    append_evals,
    done_markers,
    done_run_ids,
    finished_run_ids,
    missing_evals,
    read_eval_rows,
    read_evals,
    row_key,
    row_keys,
    run_dirs,
    why_incomplete,
)

__all__ = [
    "EVALS",
    "EVAL_KEY",
    "KEY_DEFAULTS",
    "REQUIRED",
    "SWEEP",
    "ResultsWarning",
    "RunDir",
    "RunLock",
    "append_evals",
    "append_jsonl",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "done_markers",
    "done_run_ids",
    "file_lock",
    "finished_run_ids",
    "json_safe",
    "missing_evals",
    "nearest_existing",
    "now",
    "read_eval_rows",
    "read_evals",
    "read_json",
    "read_jsonl",
    "replace_dir",
    "row_key",
    "row_keys",
    "run_dirs",
    "warn_missing",
    "what_is_missing",
    "why_incomplete",
    "why_not_writable",
]
