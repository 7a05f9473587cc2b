"""What a finished run's directory lacks of its record (``config.json``, the curve, the
final checkpoint), warned about by the sweep, the report and re-evaluation so that a
damaged run is never skipped silently."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from toolkit.store.files import ResultsWarning, read_json
from toolkit.store.layout import RunDir

__all__ = ["warn_missing", "what_is_missing"]


def what_is_missing(run: RunDir, marker: Mapping[str, Any], *, checkpoint: bool) -> list[str]:
    """What a finished run's directory lacks of its record ([] if nothing): ``config.json``,
    the training curve up to the final step its done marker names (``metrics.jsonl`` cut
    or gone) and, with ``checkpoint``, that step's checkpoint (which re-evaluation restores;
    committed results leave checkpoints out)."""
    missing = []
    if not isinstance(read_json(run.config), Mapping):
        missing.append("config.json (missing or unreadable)")
    step = marker.get("step")
    try:
        data = run.metrics.read_bytes()
    except FileNotFoundError:
        data = None
    if data is None or not data.strip():
        missing.append("metrics.jsonl (missing or empty)")
    elif not data.endswith(b"\n"):
        missing.append("the end of metrics.jsonl (its last line is cut)")
    elif isinstance(step, int) and marker.get("diverged_step") is None:
        try:
            last = json.loads(data.rstrip(b"\n").rsplit(b"\n", 1)[-1])
        except (json.JSONDecodeError, UnicodeDecodeError):
            last = None
        reached = last.get("step") if isinstance(last, dict) else None
        if not isinstance(reached, int) or reached < step:
            missing.append(f"metrics.jsonl rows after step {reached} (the run ends at {step})")
    if checkpoint and isinstance(step, int) and not (run.checkpoint / str(step)).is_dir():
        missing.append(f"its final checkpoint (step {step})")
    return missing


def warn_missing(
    experiment_dir: str | os.PathLike, run_ids: Iterable[str], *, checkpoint: bool
) -> dict[str, list[str]]:
    """``{run_id: what_is_missing}`` of the finished runs ``run_ids`` whose record is not
    whole, reported in one :class:`ResultsWarning` that names each run and what it lacks."""
    found = {}
    for run_id in sorted(run_ids):
        run = RunDir(experiment_dir, run_id)
        marker = run.done_marker()
        missing = what_is_missing(run, marker, checkpoint=checkpoint) if marker else []
        if missing:
            found[run_id] = missing
    if found:
        named = [f"{r} lacks {' and '.join(m)}" for r, m in list(found.items())[:5]]
        more = f"; and {len(found) - 5} more" if len(found) > 5 else ""
        warnings.warn(
            f"{experiment_dir}: {len(found)} finished run(s) lack part of their record: "
            + "; ".join(named)
            + more,
            ResultsWarning,
            stacklevel=2,
        )
    return found
