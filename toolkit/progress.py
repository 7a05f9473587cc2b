"""The progress line ``tk.train`` and ``tk.train_population`` print while they train."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["progress_printer"]


def progress_printer(
    verbose: bool, total: int, size: int
) -> Callable[[list[dict], int, float], None]:
    """Prints progress at most every 2 s: one member's loss and accuracy, or the healthy
    members' mean loss and model-steps/s, and the time left. The time left is measured
    from the end of the first chunk on, which carries the compilation."""
    last = [0.0]
    first: list[tuple[float, int]] = []  # (time, step) at the end of the first chunk

    def report(rows: list[dict], step: int, steps_per_sec: float) -> None:
        now = time.perf_counter()
        if not first:
            first.append((now, step))
        if not verbose or (now - last[0] <= 2.0 and step != total):
            return
        last[0] = now
        if size == 1 and rows:
            line = f"loss {rows[0]['loss']:.4f}  acc {rows[0]['accuracy']:.3f}  "
            line += f"{steps_per_sec:,.0f} steps/s"
        else:
            loss = np.asarray([row["loss"] for row in rows])
            finite = loss[np.isfinite(loss)]
            mean = float(finite.mean()) if finite.size else float("nan")
            line = f"mean loss {mean:.4f} ({finite.size}/{size} finite)  "
            line += f"{steps_per_sec * size:,.0f} model-steps/s"
        (start, start_step), left = first[0], ""
        if start_step < step < total:
            left = f"  {_duration((total - step) * (now - start) / (step - start_step))} left"
        print(f"step {step:>7}/{total}  {line}{left}", flush=True)

    return report


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
