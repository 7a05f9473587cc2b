"""Flax Linen classifiers by name: ``tk.models.get("cnn", num_classes=10, channels=32)``.

Every model is a ``flax.linen.Module`` (a Flax NNX module registers too, wrapped by
:mod:`toolkit.models.nnx_bridge`) called as
``model.apply(variables, x, train=bool, rngs={"dropout": key}, mutable=["batch_stats"])``
and maps a batch of sequences (B, L) / (B, L, C) or images (B, H, W, C) to float32 logits
(B, num_classes); 1-D or 2-D layers are chosen from the input rank at trace time. Dropout
draws from the 'dropout' rng; BatchNorm keeps running statistics in 'batch_stats'.

A model's hyperparameters are its dataclass fields (``num_classes`` included), registered as
its defaults, so unknown hyperparameters fail before any module is built. ``base`` holds the
registry and ``register``; ``dense``, ``conv``, ``resnet``, ``recurrent`` and
``transformer`` the models, built from ``layers``.
"""

from toolkit.models import base
from toolkit.models.base import (  # noqa: F401  (re-exported via base.__all__)
    describe,
    entry,
    get,
    hparams,
    models,
    module_hparams,
    names,
    reads_images,
    register,
    search_space,
)

# Each module registers its models, in this order (simplest first): the order of ``names()``.
# isort: off
from toolkit.models import dense  # noqa: F401
from toolkit.models import conv  # noqa: F401
from toolkit.models import cnn_nnx  # noqa: F401
from toolkit.models import resnet  # noqa: F401
from toolkit.models import recurrent  # noqa: F401
from toolkit.models import transformer  # noqa: F401
# isort: on

__all__ = base.__all__
