"""Every metric of one evaluation set from its logits, computed once per set.

Classification sets (clean, shifted, regenerated, label-shifted) give accuracy, NLL, Brier,
ECE (Ovadia et al. 2019), misclassification AUROC (Hendrycks & Gimpel 2017), the
reliability-diagram bins (Guo et al. 2017), ``max_class_fraction`` (the share of the set
predicted as its most predicted class: near 1 when a model collapsed to one class) and,
given a temperature fitted on held-out data, ``nll_ts``, ``ece_ts`` and ``brier_ts`` of the
logits divided by it (temperature scaling, Guo et al. 2017); far-OOD sets give the
detection metrics of every requested score against the clean set's logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from toolkit import metrics

__all__ = ["classification_row"]


def classification_row(logits: jax.Array, labels, temperature: float | None = None) -> dict:
    """The classification metrics of ``logits`` against ``labels``, ``max_class_fraction``,
    ``reliability`` (the bins' confidence, accuracy and count as lists) and, when
    ``temperature`` is given, ``temperature`` and the temperature-scaled ``nll_ts``,
    ``ece_ts`` and ``brier_ts`` (accuracy does not change with the temperature)."""
    labels = jnp.asarray(labels)
    row = {k: float(v) for k, v in metrics.summary(logits, labels).items()}
    predicted = np.asarray(jnp.argmax(logits, -1))
    row["max_class_fraction"] = float(np.bincount(predicted).max() / predicted.shape[0])
    if temperature is not None:
        scaled = metrics.summary(metrics.apply_temperature(logits, temperature), labels)
        row["temperature"] = float(temperature)
        row |= {f"{k}_ts": float(scaled[k]) for k in ("nll", "ece", "brier")}
    correct = predicted == np.asarray(labels)
    # Misclassification detection is undefined when every prediction is right (or wrong).
    row["misclassification_auroc"] = (
        float(metrics.misclassification_auroc(logits, labels))
        if 0 < correct.mean() < 1
        else float("nan")
    )
    diagram = metrics.reliability_diagram(logits, labels)
    row["reliability"] = {
        k: np.asarray(diagram[k]).tolist() for k in ("bin_confidence", "bin_accuracy", "bin_count")
    }
    return row
