"""Metric writers: where a run's curve goes while it trains, besides ``run.curve``.

A writer is any object with ``write_scalars(step, scalars)`` and ``close()``
(:class:`MetricWriter`, the shape of ``clu.metric_writers``), so Weights & Biases, MLflow
or anything else plugs in without being a dependency::

    class WandbWriter:
        def __init__(self, **init):
            import wandb
            self.run = wandb.init(**init)
        def write_scalars(self, step, scalars):
            self.run.log(dict(scalars), step=step)
        def close(self):
            self.run.finish()

    tk.train(ds, ..., writer=WandbWriter(project="shift"))

:class:`TensorBoardWriter` writes TensorBoard event files through tensorboardX (no
TensorFlow needed): ``tk.train(ds, ..., logdir="runs/cnn")``, then ``tensorboard --logdir
runs``. :func:`curve_scalars` names a curve row's values as the writers log them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from toolkit import store

__all__ = ["MetricWriter", "TensorBoardWriter", "check_logdir", "curve_scalars"]

# Curve row column -> logged name (TensorBoard groups names by their prefix).
_NAMES = {
    "loss": "train/loss",
    "accuracy": "train/accuracy",
    "val_accuracy": "validation/accuracy",
    "val_nll": "validation/nll",
}


@runtime_checkable
class MetricWriter(Protocol):
    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


def curve_scalars(
    row: Mapping[str, float], learning_rate: Callable[[int], float] | None = None
) -> dict[str, float]:
    """A curve row as logged scalars: train loss and accuracy, validation accuracy and NLL
    where the row has them, and ``learning_rate`` at the row's step when given."""
    scalars = {name: float(row[key]) for key, name in _NAMES.items() if key in row}
    if learning_rate is not None:
        scalars["learning_rate"] = float(learning_rate(int(row["step"])))
    return scalars


def check_logdir(logdir: str | Path) -> Path:
    """``logdir`` as a Path, refused (before anything is written) when it or a folder
    above it is a file."""
    path = Path(logdir)
    existing = store.nearest_existing(path)
    if not existing.is_dir():
        raise ValueError(f"logdir {str(path)!r} cannot be made: {str(existing)!r} is a file")
    return path


class TensorBoardWriter:
    """TensorBoard event files in ``logdir`` (created if missing), through tensorboardX.

    Non-finite values (a diverged run's loss) are written as they are: TensorBoard shows
    them as gaps.
    """

    def __init__(self, logdir: str | Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError(
                "TensorBoard logs need the tensorboardX package: pip install tensorboardX"
            ) from None
        self.logdir = Path(logdir)
        self._writer = SummaryWriter(logdir=str(self.logdir))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, float(value), global_step=int(step))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __repr__(self) -> str:
        return f"TensorBoardWriter({str(self.logdir)!r})"
