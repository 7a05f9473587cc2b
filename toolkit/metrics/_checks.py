"""Input checks shared by the metrics, run before any compute.

Shapes and dtypes are static, so they are checked even under ``jax.jit``. Checks on
values (labels in range, no NaN, enough examples of each kind) need concrete arrays:
they run on the host when the input is concrete and are skipped when it is a tracer,
which is what keeps every array metric jit-able.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "check_logits",
    "check_logits_labels",
    "check_num_bins",
    "check_scores",
    "check_scores_pair",
    "is_concrete",
]


def is_concrete(*xs: Any) -> bool:
    """True when no argument is a tracer, i.e. values can be read on the host."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _compute_dtype(*dtypes: Any) -> jnp.dtype:
    """float64 when an input already is (x64 mode), else float32 (bf16/f16 are upcast)."""
    return jnp.dtype(
        jnp.float64 if any(jnp.dtype(d) == jnp.float64 for d in dtypes) else jnp.float32
    )


def _cast(x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``x.astype(dtype)``, skipping the (eagerly compiled) no-op conversion."""
    return x if x.dtype == dtype else x.astype(dtype)


def _all_finite(x: jax.Array) -> bool:
    return bool(np.isfinite(np.asarray(x)).all())


def check_logits(logits: Any, *, name: str = "logits") -> jax.Array:
    """``logits`` as a non-empty (N, C) float array with finite values (upcast to >= f32)."""
    logits = jnp.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"{name} must have shape (N, C), got shape {logits.shape}")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"{name} must be a float array, got dtype {logits.dtype}")
    n, c = logits.shape
    if n == 0:
        raise ValueError(f"{name} is empty (shape {logits.shape}): metrics need >= 1 example")
    if c == 0:
        raise ValueError(f"{name} has no classes (shape {logits.shape})")
    if is_concrete(logits) and not _all_finite(logits):
        raise ValueError(f"{name} contain NaN or inf; metrics are only defined on finite logits")
    return _cast(logits, _compute_dtype(logits.dtype))


def check_logits_labels(
    logits: Any, labels: Any, *, names: tuple[str, str] = ("logits", "labels")
) -> tuple[jax.Array, jax.Array]:
    """Checks (N, C) float logits against (N,) integer labels in [0, C)."""
    logits = check_logits(logits, name=names[0])
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{names[1]} must have shape (N,) = ({logits.shape[0]},) to match {names[0]} of "
            f"shape {logits.shape}, got {names[1]} of shape {labels.shape}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{names[1]} must be integer class indices, got dtype {labels.dtype}")
    if is_concrete(labels):
        host = np.asarray(labels)
        num_classes = logits.shape[1]
        bad = (host < 0) | (host >= num_classes)
        if bad.any():
            raise ValueError(
                f"{names[1]} must lie in [0, {num_classes}) for {names[0]} with {num_classes} "
                f"classes; "
                f"got {int(bad.sum())} out of range, e.g. {int(host[bad][0])}"
            )
    return logits, _cast(labels, jnp.dtype(jnp.int32))


def check_num_bins(num_bins: Any) -> int:
    """``num_bins`` must be a Python int >= 1 (it fixes the output shape, so it is static)."""
    if isinstance(num_bins, bool) or not isinstance(num_bins, int | np.integer) or num_bins < 1:
        raise ValueError(f"num_bins must be an int >= 1, got {num_bins!r}")
    return int(num_bins)


def check_scores(scores: Any, *, name: str) -> jax.Array:
    """``scores`` as a non-empty 1-D real array without NaN."""
    scores = jnp.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per example), got shape {scores.shape}")
    if scores.shape[0] == 0:
        raise ValueError(f"{name} is empty: the metric needs at least one score on each side")
    if not (
        jnp.issubdtype(scores.dtype, jnp.floating) or jnp.issubdtype(scores.dtype, jnp.integer)
    ):
        raise ValueError(f"{name} must be real numbers, got dtype {scores.dtype}")
    if is_concrete(scores) and np.isnan(np.asarray(scores, dtype=np.float64)).any():
        raise ValueError(f"{name} contain NaN; scores must be orderable")
    return scores


def check_scores_pair(
    scores_in: Any, scores_out: Any, *, names: tuple[str, str] = ("scores_in", "scores_out")
) -> tuple[jax.Array, jax.Array]:
    """Both score sets checked and cast to one float dtype so they can be compared."""
    scores_in = check_scores(scores_in, name=names[0])
    scores_out = check_scores(scores_out, name=names[1])
    dtype = _compute_dtype(scores_in.dtype, scores_out.dtype)
    return _cast(scores_in, dtype), _cast(scores_out, dtype)
