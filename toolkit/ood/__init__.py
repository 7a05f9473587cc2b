"""Far-OOD sets by name, shaped like the in-distribution data.

    x_ood = tk.ood.load_ood("gaussian_noise", ds.test, key=jax.random.key(0), num=1000)

Registered: ``uniform_noise``, ``gaussian_noise`` (images and sequences),
``mnist1d_unseen_templates`` (sequences), ``sklearn_patches`` (images). Each builder is
``fn(shape, *, key, num, **hparams) -> (num, *shape) float32`` (see ``base``).

Post-hoc OOD scorers (MSP ... ODIN, MDS, KNN, ViM, ...) fitted on ID training features are
in the registry ``tk.ood.scorers``, with ``fit_scorer`` / ``select_scorer`` and the
``Reference`` / ``Batch`` containers (:mod:`toolkit.ood.scoring`).
"""

from toolkit.ood import noise, patches, templates  # noqa: F401  (registers the OOD sets)
from toolkit.ood.base import APPLIES_TO, example_shape, load_ood, ood_sets, register
from toolkit.ood.scoring import Batch, Fitted, Reference, fit_scorer, scorers, select_scorer

names = ood_sets.names
entry = ood_sets.entry
hparams = ood_sets.hparams
describe = ood_sets.describe
get = ood_sets.get

__all__ = [
    "APPLIES_TO",
    "Batch",
    "Fitted",
    "Reference",
    "describe",
    "entry",
    "example_shape",
    "fit_scorer",
    "get",
    "hparams",
    "load_ood",
    "names",
    "ood_sets",
    "register",
    "scorers",
    "select_scorer",
]
