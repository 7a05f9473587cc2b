"""Metrics for classifiers under distribution shift: pure functions on logits and labels.

    import toolkit as tk
    tk.metrics.summary(logits, labels)            # accuracy, nll, brier, ece
    tk.metrics.ood_metrics(logits_in, logits_out, score="energy")
    t = tk.metrics.fit_temperature(val_logits, val_labels)
    tk.metrics.ece(tk.metrics.apply_temperature(test_logits, t), test_labels)
    tk.metrics.conformal_metrics(val_probs, val_labels, test_probs, test_labels, method="aps")
    tk.metrics.aurc(confidence, predictions == labels)

Conventions: logits are (N, C) floats, labels (N,) integer class indices, OOD scores are
higher = more in-distribution, and in-distribution (or correct) examples are the
positive class (AUPR-Out and ``fpr_at_95_tpr_ood``, OpenOOD's convention, take OOD as
positive). Array metrics return 0-d JAX arrays and are jit-able; checks on values
(labels in range, NaN, degenerate splits) run whenever the inputs are concrete.
"""

from toolkit.metrics.calibration import apply_temperature, ece, fit_temperature, reliability_diagram
from toolkit.metrics.classification import accuracy, brier, nll, summary
from toolkit.metrics.conformal import (
    CONFORMAL_METHODS,
    conformal_metrics,
    conformal_threshold,
    prediction_sets,
)
from toolkit.metrics.ood import (
    OOD_SCORES,
    energy,
    entropy,
    max_logit,
    misclassification_auroc,
    msp,
    ood_metrics,
    ood_scores,
)
from toolkit.metrics.ranking import (
    aupr_in,
    aupr_out,
    auroc,
    fpr_at_95_tpr,
    fpr_at_95_tpr_ood,
    fpr_at_tpr,
)
from toolkit.metrics.robustness import (
    PROBIT_EPS,
    accuracy_on_the_line,
    corruption_errors,
    effective_robustness,
    mce,
    relative_mce,
)
from toolkit.metrics.selective import aurc, e_aurc, risk_coverage

__all__ = [
    "CONFORMAL_METHODS",
    "OOD_SCORES",
    "PROBIT_EPS",
    "accuracy",
    "accuracy_on_the_line",
    "apply_temperature",
    "aupr_in",
    "aupr_out",
    "aurc",
    "auroc",
    "brier",
    "conformal_metrics",
    "conformal_threshold",
    "corruption_errors",
    "e_aurc",
    "ece",
    "effective_robustness",
    "energy",
    "entropy",
    "fit_temperature",
    "fpr_at_95_tpr",
    "fpr_at_95_tpr_ood",
    "fpr_at_tpr",
    "max_logit",
    "mce",
    "misclassification_auroc",
    "msp",
    "nll",
    "ood_metrics",
    "ood_scores",
    "prediction_sets",
    "relative_mce",
    "reliability_diagram",
    "risk_coverage",
    "summary",
]
