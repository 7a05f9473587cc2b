"""Post-hoc OOD scorers: fitted on ID training data, scoring logits / features / inputs.

    ref = Reference(features=h_train, logits=z_train, labels=y_train, head=(W, b))
    fitted = fit_scorer("vim", ref, dim=32)
    scores = fitted(Batch(logits=z, features=h))          # (N,), higher = more ID
    hparams, fitted, table = select_scorer("knn", ref, val_id, [val_ood1, val_ood2])

The registry ``scorers`` lists them; each entry's meta says what it ``needs`` beyond
logits and the ``grid`` its hyperparameters are searched over on validation OOD data.
"""

from toolkit.ood.scoring import logit  # noqa: I001, F401  (registers: logit scores first)
from toolkit.ood.scoring import activations, features, gradient  # noqa: F401
from toolkit.ood.scoring.base import (
    NEEDS,
    Batch,
    Fitted,
    InapplicableError,
    Reference,
    fit_scorer,
    register,
    scorers,
)
from toolkit.ood.scoring.selection import SELECTION_METRICS, select_scorer

__all__ = [
    "NEEDS",
    "SELECTION_METRICS",
    "Batch",
    "Fitted",
    "InapplicableError",
    "Reference",
    "fit_scorer",
    "register",
    "scorers",
    "select_scorer",
]
