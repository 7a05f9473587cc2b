"""Batched, on-device evaluation of a trained :class:`~toolkit.training.Run`.

``evaluate(run, split)`` gives a dict of in-distribution metrics. With ``shifts``, ``ood``
or named ``sets`` it gives one tidy table (a pandas DataFrame): one row per evaluation set
and severity, with the classification and calibration metrics on shifted data and the
OOD-detection metrics (every score in ``tk.metrics.ood_scores``) on far-OOD data.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from toolkit import data, evalsets, metrics
from toolkit.data import Split
from toolkit.data.tfds_names import is_tfds_name
from toolkit.train_step import data_mesh

__all__ = ["evaluate", "predict"]


@functools.partial(jax.jit, static_argnames=("model", "batch_size", "batch_sharding"))
def _predict(
    model: nn.Module, variables, x: jax.Array, *, batch_size: int, batch_sharding=None
) -> jax.Array:
    n = x.shape[0]
    num_batches = -(-n // batch_size)
    pad = num_batches * batch_size - n
    # Pad to whole batches so one compiled program serves every batch; padded rows are dropped.
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    batches = x.reshape(num_batches, batch_size, *x.shape[1:])

    def apply(batch):
        if batch_sharding is not None:  # data-parallel: each device takes a slice of the batch
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return model.apply(variables, batch, train=False)

    logits = jax.lax.map(apply, batches)
    return logits.reshape(num_batches * batch_size, -1)[:n]


def predict(run, x: Any, *, batch_size: int = 1000, devices=None) -> jax.Array:
    """Logits of ``run`` on ``x`` (inference mode), computed on device in batches.

    Data-parallel over ``devices`` (default: every local device): the batch size is rounded
    up to a multiple of the device count and each batch is sharded across them.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    n = len(devices)
    batch_size = max(1, min(batch_size, x.shape[0]))
    batch_size = -(-batch_size // n) * n
    if n == 1:
        x = jax.device_put(jnp.asarray(x, jnp.float32), devices[0])
        return _predict(run.model, run.variables, x, batch_size=batch_size)
    mesh = data_mesh(devices)
    replicated = NamedSharding(mesh, P())
    x, variables = jax.device_put((jnp.asarray(x, jnp.float32), run.variables), replicated)
    return _predict(
        run.model,
        variables,
        x,
        batch_size=batch_size,
        batch_sharding=NamedSharding(mesh, P("data")),
    )


def _classification_row(logits: jax.Array, labels: jax.Array) -> dict[str, float]:
    row = {k: float(v) for k, v in metrics.summary(logits, labels).items()}
    correct = np.asarray(jnp.argmax(logits, -1) == labels)
    # Misclassification detection is undefined when every prediction is right (or wrong).
    row["misclassification_auroc"] = (
        float(metrics.misclassification_auroc(logits, labels))
        if 0 < correct.mean() < 1
        else float("nan")
    )
    return row


def _ood_row(logits_in: jax.Array, logits_out: jax.Array, scores: Sequence[str]) -> dict:
    row = {}
    for score in scores:
        for name, value in metrics.ood_metrics(logits_in, logits_out, score=score).items():
            row[f"{name}_{score}"] = float(value)
    return row


def _check_severities(severities: Iterable[int]) -> list[int]:
    from toolkit import shifts

    return [shifts.check_severity(s) for s in severities]


def _resolve_ood(name: str, given, split: Split, *, key: jax.Array, data_kwargs) -> np.ndarray:
    """A given array/Split, a registered far-OOD set, or another dataset's test split."""
    from toolkit import ood

    if given is not None:
        other = given.x if isinstance(given, Split) else np.asarray(given, np.float32)
    elif name in ood.names():
        return evalsets.ood_set(name, split.x.shape[1:], key=key, num=len(split))
    else:
        other = data.load(name, **data_kwargs).test.x
    if other.shape[1:] != split.x.shape[1:]:
        raise ValueError(
            f"OOD set {name!r} has examples of shape {other.shape[1:]}, but the evaluated data "
            f"has {split.x.shape[1:]}. Registered OOD sets: {', '.join(ood.names())}"
        )
    return other


def evaluate(
    run,
    split: Split,
    *,
    batch_size: int = 1000,
    shifts: Sequence[str] | None = None,
    severities: Iterable[int] = range(1, 6),
    ood: Sequence[str] | Mapping[str, Split | np.ndarray] | None = None,
    sets: Mapping[str, Split] | None = None,
    ood_scores: Sequence[str] = metrics.OOD_SCORES,
    key: jax.Array | None = None,
    data_kwargs: Mapping[str, Any] | None = None,
    cache: bool = True,
):
    """Evaluates ``run`` on ``split`` and, optionally, on shifted and OOD data.

    Args:
      run: a trained :class:`~toolkit.training.Run`.
      split: the in-distribution evaluation split (e.g. ``ds.test``).
      shifts: names in ``tk.shifts`` applied to ``split`` at each of ``severities``.
      ood: far-OOD sets: names in ``tk.ood`` or datasets loadable by ``tk.data.load``
        whose examples have the same shape (loaded with ``data_kwargs``, e.g.
        ``{"data_dir": ...}``); or a mapping name -> Split/array of OOD inputs. Each is
        detected against ``split``.
      sets: extra named evaluation splits (e.g. regenerated or label-shifted test sets).
      ood_scores: OOD scores (``tk.metrics.ood_scores``) reported for each OOD set.
      key: typed PRNG key for random shifts and generated OOD sets (default key 0).
      cache: keep the shifted sets on disk (:mod:`toolkit.evalsets`, under
        ``$TOOLKIT_CACHE_DIR``; each takes about the size of ``split.x``), so that
        evaluating other runs on the same data and shifts, here or in another process,
        loads them instead of building them again; False builds them in memory on every
        call. The sets are the same either way.

    Returns:
      Without ``shifts``, ``ood`` and ``sets``: a dict (accuracy, nll, brier, ece,
      misclassification_auroc, num_examples). Otherwise a DataFrame with columns
      ``eval_set, kind, severity, num_examples`` then the metrics; rows of kind "shift"
      have severity 1..5, the clean row has severity 0, OOD rows carry ``auroc_<score>``,
      ``aupr_in_<score>``, ``aupr_out_<score>`` and ``fpr_at_95_tpr_<score>``.
    """
    from toolkit import ood as ood_module
    from toolkit import shifts as shift_module

    if len(split) == 0:
        raise ValueError("cannot evaluate on an empty split")
    given_ood = dict(ood) if isinstance(ood, Mapping) else {}
    shifts, ood, sets = list(shifts or []), list(ood or []), dict(sets or {})
    data_kwargs = dict(data_kwargs or {})
    # Check every name before any compute.
    if not isinstance(cache, bool):
        raise ValueError(f"cache must be True or False, got {cache!r}")
    severities = _check_severities(severities) if shifts else []
    for name in shifts:
        shift_module.check_applies(name, split.x.shape)
    for score in ood_scores:
        metrics.ood_scores.entry(score)
    for name in ood:
        known = name in given_ood or name in ood_module.names() or name in data.names()
        if not known and not is_tfds_name(name):
            raise ValueError(
                f"unknown OOD set {name!r}. Registered OOD sets: {', '.join(ood_module.names())}; "
                "or a dataset name from tk.data.names(include_tfds=True)"
            )
    key = jax.random.key(0) if key is None else key
    # OOD inputs are built (and their shapes checked) before the model runs, so a set that
    # does not fit the data fails at once rather than after the clean predictions.
    ood_inputs = {
        name: _resolve_ood(
            name,
            given_ood.get(name),
            split,
            key=evalsets.set_key(key, name),
            data_kwargs=data_kwargs,
        )
        for name in ood
    }
    labels = jnp.asarray(split.y)
    clean = predict(run, split.x, batch_size=batch_size)
    clean_row = {"eval_set": "clean", "kind": "clean", "severity": 0, "num_examples": len(split)}
    clean_row |= _classification_row(clean, labels)
    if not (shifts or ood or sets):
        clean_row.pop("eval_set"), clean_row.pop("kind"), clean_row.pop("severity")
        return clean_row

    import pandas as pd

    rows = [clean_row]
    for name in shifts:  # one shift at a time: its severities' sets are all that is held
        if cache:
            shifted = evalsets.shifted_sets(split, [(name, s) for s in severities], key=key)
        else:
            shifted = [evalsets.shifted_set(split, name, s, key=key) for s in severities]
        for severity, shifted_split in zip(severities, shifted, strict=True):
            logits = predict(run, shifted_split.x, batch_size=batch_size)
            rows.append(
                {
                    "eval_set": name,
                    "kind": "shift",
                    "severity": severity,
                    "num_examples": len(split),
                }
                | _classification_row(logits, labels)
            )
    for name, extra in sets.items():
        logits = predict(run, extra.x, batch_size=batch_size)
        rows.append(
            {"eval_set": name, "kind": "set", "severity": 0, "num_examples": len(extra)}
            | _classification_row(logits, jnp.asarray(extra.y))
        )
    for name, x_out in ood_inputs.items():
        logits_out = predict(run, x_out, batch_size=batch_size)
        rows.append(
            {"eval_set": name, "kind": "ood", "severity": 0, "num_examples": int(x_out.shape[0])}
            | _ood_row(clean, logits_out, ood_scores)
        )
    return pd.DataFrame(rows)
