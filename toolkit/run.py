"""A trained model (:class:`Run`): its config, module, final state and training curve."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from toolkit import optimizers
from toolkit.train_config import TrainConfig
from toolkit.train_step import TrainState

__all__ = ["Run"]


@dataclasses.dataclass
class Run:
    """A trained model: its config, module, final state and training curve.

    ``params`` are the parameters to evaluate: for schedule-free optimizers the averaged
    point, not the raw iterate (``tk.optimizers.eval_params``). A run trained with a
    validation split also has :attr:`best`, the run as of its best validation accuracy.
    """

    config: TrainConfig
    model: nn.Module
    state: TrainState
    curve: list[dict[str, float]]
    info: dict[str, Any]

    @property
    def params(self):
        return optimizers.eval_params(self.state.opt_state, self.state.params)

    @property
    def variables(self) -> dict[str, Any]:
        return {"params": self.params, **self.state.model_state}

    def apply(self, x: jax.Array) -> jax.Array:
        """Logits in inference mode (dropout off, BatchNorm running statistics)."""
        return self.model.apply(self.variables, x, train=False)

    @property
    def best(self) -> Run | None:
        """The run at its best-validation state (early stopping on validation accuracy:
        the earliest of the validated steps with the highest accuracy), or None when it
        was trained without a validation split. Its curve is the whole run's."""
        best = self.state.best
        if best is None:
            return None
        state = TrainState(
            step=best.step,
            params=best.params,
            model_state=best.model_state,
            opt_state=optax.EmptyState(),  # best.params already are the evaluation point
            diverged_step=jnp.full((), -1, jnp.int32),
        )
        info = {**self.info, "checkpoint": "best", "best_step": int(best.step)}
        return Run(self.config, self.model, state, self.curve, info)
