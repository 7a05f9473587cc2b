"""Checks before a run is evaluated: the inputs are finite, and the run is a trained model
that takes inputs of their shape.

Without them the failures come late and point elsewhere: NaN inputs give NaN logits (an
error about logits, or metrics of NaN), a run that diverged gives overflowing logits, and
inputs of another shape a Flax ``ScopeParamShapeError`` from inside the compiled predict.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import errors as flax_errors

__all__ = ["check_run"]


def _diverged(run) -> None:
    info = getattr(run, "info", None) or {}
    step = info.get("diverged_step")
    if step is not None and info.get("checkpoint") != "best":
        config = run.config
        raise ValueError(
            f"the run diverged at step {step} (its loss or gradients stopped being finite; "
            f"learning_rate={config.learning_rate!r}, optimizer {config.optimizer!r}): it is "
            f"no trained model, and a diverged run's metrics are not reported (the sweep "
            f"records them as null). Train again with a smaller learning_rate or with "
            f"grad_clip, or evaluate run.best (trained with a validation split: its best "
            f"state before diverging)"
        )
    # A run built from saved weights may carry no info: its parameters tell.
    leaves = jax.tree_util.tree_leaves((run.state.params, run.state.model_state))
    bad = sum(not np.isfinite(np.asarray(leaf)).all() for leaf in leaves)
    if bad:
        raise ValueError(
            f"the run's parameters hold NaN or inf ({bad} of {len(leaves)} arrays): the run "
            f"diverged (step unknown) and is no trained model to evaluate"
        )


def _shape_fits(run, name: str, shape: tuple[int, ...]) -> None:
    trained = (getattr(run, "info", None) or {}).get("input_shape")
    if trained is not None:
        if tuple(shape) != tuple(trained):
            raise ValueError(
                f"{name}: examples have shape {tuple(shape)}, but the run was trained on "
                f"examples of shape {tuple(trained)}"
            )
        return
    # No recorded shape (a run rebuilt from a checkpoint): trace the model on the shape,
    # abstractly (no compile, no compute).
    variables = {"params": run.state.params, **run.state.model_state}
    example = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    try:
        jax.eval_shape(lambda v, x: run.model.apply(v, x, train=False), variables, example)
    except (flax_errors.FlaxError, TypeError, ValueError) as error:
        detail = str(error).splitlines()[0]
        raise ValueError(
            f"{name}: examples of shape {tuple(shape)} do not fit the run's model "
            f"{run.config.model!r} ({type(error).__name__}: {detail})"
        ) from None


def check_run(run, sets: dict[str, tuple[int, ...]]) -> None:
    """Raises ValueError unless ``run`` is a trained model (it did not diverge; its
    parameters are finite) that takes examples of each shape in ``sets`` (set name ->
    example shape): the shape it was trained on (``run.info["input_shape"]``), or, where
    that is not recorded, one its model traces on. An ensemble is checked member by member
    (the error names the member)."""
    members = getattr(run, "members", None)
    if members is not None:
        for index, member in enumerate(members):
            try:
                check_run(member, sets)
            except ValueError as error:
                raise ValueError(f"ensemble member {index}: {error}") from None
        return
    _diverged(run)
    for name, shape in sets.items():
        _shape_fits(run, name, shape)
