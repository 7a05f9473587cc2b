"""What a sweep run writes while it trains: its curve rows (``metrics.jsonl`` and, when
asked, TensorBoard events) after every chunk, and checkpoints on a schedule."""

from __future__ import annotations

import time

from toolkit import store
from toolkit.sweep.checkpoint import Checkpoints
from toolkit.sweep.config import Trial
from toolkit.train_config import learning_rate_schedule
from toolkit.train_step import TrainState
from toolkit.writers import TensorBoardWriter, curve_scalars

__all__ = ["Recorder", "SaveSchedule"]


class SaveSchedule:
    """Which chunks end with a checkpoint: every ``every``-th chunk that ends at least
    ``interval_s`` seconds after the previous save began (or after training began, for the
    first). ``interval_s=0`` checkpoints every ``every`` chunks exactly. A population shares
    one schedule, so its members checkpoint at the same steps."""

    def __init__(self, every: int, interval_s: float, *, clock=time.monotonic):
        self.every, self.interval_s, self.clock = every, interval_s, clock
        self.chunks = 0
        self.last = clock()

    def due(self) -> bool:
        """Called once per finished chunk: whether to checkpoint now."""
        self.chunks += 1
        if self.chunks % self.every:
            return False
        now = self.clock()
        if now - self.last < self.interval_s:
            return False
        self.last = now
        return True


class Recorder:
    """Writes a run's curve rows (to ``metrics.jsonl`` and, with ``tensorboard``, as
    TensorBoard events) and, when asked, its checkpoint."""

    def __init__(
        self, run_dir: store.RunDir, checkpoints: Checkpoints, trial: Trial, tensorboard: bool
    ):
        self.run_dir, self.checkpoints = run_dir, checkpoints
        self.writer = TensorBoardWriter(run_dir.path / "tensorboard") if tensorboard else None
        self.learning_rate = learning_rate_schedule(trial.train_config())

    def __call__(self, row: dict[str, float] | None, state: TrainState, *, save: bool) -> None:
        if row is None:  # a population member that diverged in an earlier chunk
            return
        store.append_jsonl(self.run_dir.metrics, [row])
        if self.writer is not None:
            self.writer.write_scalars(row["step"], curve_scalars(row, self.learning_rate))
        if save:
            self.checkpoints.save(state)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
