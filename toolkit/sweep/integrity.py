"""Whether a run directory still holds its whole record: its ``config.json`` and an
unbroken curve (``metrics.jsonl``), checked before a run is resumed, evaluated and marked
done."""

from __future__ import annotations

from typing import Any

from toolkit import store
from toolkit.sweep.config import Trial
from toolkit.training import TrainConfig

__all__ = ["check_intact", "intact_until"]


def intact_until(rows: list[dict[str, Any]], config: TrainConfig) -> int:
    """The last step up to which the curve has every chunk's row, in order (0: none).

    Chunk rows are written at steps ``chunk, 2 chunk, ...`` and ``steps`` (the trainer's
    ``steps_per_dispatch``); a row lost to damage ends the intact prefix, so a resume must
    start at or before it.
    """
    chunk = config.steps_per_dispatch
    expected = [*range(chunk, config.steps, chunk), config.steps]
    last = 0
    for row, step in zip(rows, expected, strict=False):
        if row.get("step") != step:
            break
        last = step
    return last


def check_intact(run_dir: store.RunDir, trial: Trial, diverged_step: int | None) -> None:
    """Raises RuntimeError unless the run's directory still holds its record: its
    ``config.json`` and its curve from the first chunk to its last (the final step, unless
    it diverged). A directory deleted while the run trained is recreated by the next write
    without them; such a run must fail, not be marked done (its rerun starts afresh)."""
    config = trial.train_config()
    missing = []
    if not run_dir.config.is_file():
        missing.append("config.json")
    curve = run_dir.read_metrics()
    covered = intact_until(curve, config)
    end = config.steps if diverged_step is None else (curve[-1].get("step") if curve else 0)
    if covered != end:
        missing.append(f"curve rows (metrics.jsonl is whole up to step {covered} of {end})")
    if missing:
        raise RuntimeError(
            f"{run_dir.path} lost {' and '.join(missing)} while the run trained (was the "
            "directory deleted?); not marked done: rerun the sweep to train it afresh"
        )
