"""Evaluation of trained runs on named sets, each set predicted once.

``sets`` names the evaluation sets (shifted, regenerated, label-shifted, given, far-OOD;
``regenerated`` holds the MNIST-1D generator arguments of the regenerated sets); ``cache``
builds them once per machine (:mod:`toolkit.array_cache`); ``inference`` gives the logits;
``scoring`` turns one set's logits into its row; ``methods`` names the extras (OOD
scorers, conformal sets, AURC) and holds what is fitted once per run, which ``fitting``
fits; ``core`` runs a run over sets (``evaluate_sets``, and ``evaluate``: ``tk.evaluate``,
a tidy DataFrame). The sweep's side
(a config's ``evals`` entries, a trial's ``evals.jsonl`` rows, re-evaluating finished runs)
is in :mod:`toolkit.sweep` (``evals``, ``records``, ``reevaluation``), which uses this
package; this package does not import the sweep.
"""

from toolkit.evaluation.core import evaluate, evaluate_sets
from toolkit.evaluation.inference import predict
from toolkit.evaluation.sets import EvalSet, FarOod, Given, LabelShifted, Regenerated, Shifted

__all__ = [
    "EvalSet",
    "FarOod",
    "Given",
    "LabelShifted",
    "Regenerated",
    "Shifted",
    "evaluate",
    "evaluate_sets",
    "predict",
]
