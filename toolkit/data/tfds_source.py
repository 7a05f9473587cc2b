"""Any TFDS image classification dataset as a toolkit ``Dataset``, by its TFDS name.

    load("mnist")                              # train/test, prepared beforehand
    load("cifar10_corrupted/fog_3")            # only 'test' exists: train is empty
    load("mnist_corrupted/shot_noise", split="test")
    load("eurosat/rgb", train_split="train[:80%]", test_split="train[80%:]")

The data dir is ``data_dir=``, else ``$TFDS_DATA_DIR`` (read at call time), else
``~/tensorflow_datasets``. A dataset that is not prepared there raises
:class:`DatasetNotPreparedError` with the command that prepares it; nothing is
downloaded unless ``download=True``. Preparation writes array_record files (readable
without TensorFlow) and holds a file lock, so two processes never prepare the same
dataset at once (TFDS writes into a temporary folder and renames it, but the process that
loses that race fails on the rename). What a load reads is kept on disk
(:mod:`toolkit.data.cache`), so the next load with the same arguments reads one file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import numbers
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from toolkit.data import cache
from toolkit.data.dataset import Dataset
from toolkit.data.tfds_names import base_name, is_tfds_name, unknown_name_error
from toolkit.data.tfds_read import choose_reader, feature_keys, input_scale, read_split
from toolkit.quiet import absl_errors_only
from toolkit.store.files import file_lock

__all__ = [
    "DatasetNotPreparedError",
    "dataset_from_builder",
    "ensure_prepared",
    "load",
    "load_toolkit_builder",
    "prepare_command",
    "resolve_data_dir",
    "resolve_splits",
]

PREPARE_FORMAT = "array_record"
_TEST_SPLIT_FALLBACKS = ("test", "validation", "valid", "val")


class DatasetNotPreparedError(FileNotFoundError):
    """A TFDS dataset that has not been downloaded and prepared in the data dir."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets`` (user expanded)."""
    chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.expanduser(os.fspath(chosen))


def prepare_command(name: str, data_dir: str) -> str:
    """How to prepare ``name`` into ``data_dir`` (shell and Python), as array_record."""
    return (
        f"    tfds build {name} --data_dir={data_dir} --file_format={PREPARE_FORMAT}\n"
        f"or in Python:\n"
        f"    tfds.builder({name!r}, data_dir={data_dir!r}).download_and_prepare("
        f"file_format={PREPARE_FORMAT!r})\n"
        f"or pass download=True to toolkit.data.load."
    )


def _make_tfds_builder(name: str, data_dir: str, **kwargs: Any) -> Any:
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir, **kwargs)
    except ValueError as e:
        if "BuilderConfig" not in str(e):
            raise
        base = base_name(name)
        valid = ", ".join(f"{base}/{c}" for c in tfds.builder_cls(base).builder_configs)
        raise ValueError(f"TFDS dataset {name!r} has no such config. Valid: {valid}") from None


def ensure_prepared(make: Callable[..., Any], *, name: str, data_dir: str, download: bool) -> Any:
    """A builder whose data is prepared, preparing it (as array_record) when ``download``.

    ``make(**kwargs)`` constructs the builder; it is called again after taking the lock
    because another process may have prepared the data in the meantime.
    """
    builder = make()
    if builder.is_prepared():
        return builder
    if not download:
        raise DatasetNotPreparedError(
            f"TFDS dataset {name!r} is not prepared in {data_dir} (looked for "
            f"{builder.data_dir}). toolkit.data.load never downloads on its own. "
            f"Prepare it once with\n{prepare_command(name, data_dir)}"
        )
    config = builder.builder_config.name if builder.builder_config else "default"
    lock = Path(data_dir) / builder.name / f".{config}-{builder.version}.lock"
    with file_lock(lock):
        builder = make()
        if not builder.is_prepared():
            builder = make(file_format=PREPARE_FORMAT)
            try:
                builder.download_and_prepare(file_format=PREPARE_FORMAT)
            except ModuleNotFoundError as e:
                if e.name != "importlib_resources":
                    raise
                # TFDS 4.9.10 locates its builders' checksum files through this backport.
                raise ModuleNotFoundError(
                    f"preparing {name!r} needs the importlib_resources package (an etils[epath] "
                    "dependency that TFDS uses to find checksum files): "
                    "pip install importlib_resources",
                    name=e.name,
                ) from e
    return builder


def _split_names(spec: str) -> list[str]:
    """Split names in a TFDS split spec: ``"train[:80%]+validation"`` -> train, validation."""
    return [p.strip() for p in re.sub(r"\[[^\]]*\]", "", spec).split("+") if p.strip()]


def resolve_splits(
    available: list[str],
    *,
    name: str,
    split: str | None = None,
    train_split: str | None = None,
    test_split: str | None = None,
) -> tuple[str | None, str]:
    """The (train, test) split specs to read; train None means an empty train split.

    ``split`` reads one split as the test set (an evaluation-only dataset). Otherwise
    train defaults to ``train`` when it exists (else none), and test to the first of
    test, validation, valid, val that exists. ``available`` empty means the split names
    are unknown (a builder under ``tfds.testing.mock_data``): nothing is checked then.
    """
    if split is not None and (train_split is not None or test_split is not None):
        raise ValueError("pass either split= (one evaluation split) or train_split=/test_split=")
    listed = ", ".join(sorted(available)) or "none"
    if split is not None:
        train, test = None, split
    else:
        train = train_split
        if train is None and (not available or "train" in available):
            train = "train"
        test = test_split
        if test is None:
            found = [s for s in _TEST_SPLIT_FALLBACKS if s in available]
            if available and not found:
                raise ValueError(
                    f"dataset {name!r} has no test split; available splits: {listed}. Pass "
                    "test_split= (e.g. train_split='train[:80%]', test_split='train[80%:]')"
                )
            test = found[0] if found else "test"
    for spec in (train, test):
        bad = [s for s in _split_names(spec or "") if available and s not in available]
        if bad:
            raise ValueError(
                f"dataset {name!r} has no split {bad[0]!r}; available splits: {listed}"
            )
    return train, test


def _decode(
    builder: Any,
    *,
    name: str,
    data_dir: str,
    split: str | None = None,
    train_split: str | None = None,
    test_split: str | None = None,
    max_examples: int | None = None,
    image_size: tuple[int, int] | None = None,
    extra_info: dict[str, Any] | None = None,
) -> cache.Decoded:
    info = builder.info
    x_key, y_key = feature_keys(info, name)
    train_spec, test_spec = resolve_splits(
        list(info.splits.keys()),
        name=name,
        split=split,
        train_split=train_split,
        test_split=test_split,
    )
    shape = tuple(info.features[x_key].shape)
    if image_size is None and None in shape:
        raise ValueError(
            f"dataset {name!r} has inputs of variable shape {shape}; pass image_size=(H, W) "
            "to resize them to one shape"
        )
    reader = choose_reader(builder)
    read = functools.partial(
        read_split,
        builder,
        reader=reader,
        x_key=x_key,
        y_key=y_key,
        max_examples=max_examples,
        image_size=image_size,
    )
    test = read(test_spec)
    train = read(train_spec) if train_spec is not None else (test[0][:0], test[1][:0])
    labels = info.features[y_key]
    return cache.Decoded(
        splits={"train": train, "test": test},
        scale=input_scale(info, x_key),
        name=name,
        num_classes=int(labels.num_classes),
        class_names=tuple(labels.names),
        info={
            "source": "tensorflow_datasets",
            "tfds_name": info.full_name,
            "version": str(builder.version),
            "config": builder.builder_config.name if builder.builder_config else None,
            "data_dir": data_dir,
            "splits": {"train": train_spec, "test": test_spec},
            "reader": reader,
            "features": {"input": x_key, "label": y_key},
            "max_examples": max_examples,
            "image_size": list(image_size) if image_size is not None else None,
            **(extra_info or {}),
        },
    )


def dataset_from_builder(builder: Any, **options: Any) -> Dataset:
    """Reads a prepared builder's train/test splits into a ``Dataset`` with its metadata.

    Options: ``name``, ``data_dir`` (recorded in ``info``), ``split``, ``train_split``,
    ``test_split``, ``max_examples``, ``image_size``, ``extra_info`` (see :func:`load`).
    """
    return _decode(builder, **options).dataset()


def _check_options(max_examples: int | None, image_size: tuple[int, int] | None) -> None:
    def positive_int(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0

    if max_examples is not None and not positive_int(max_examples):
        raise ValueError(f"max_examples must be a positive int or None, got {max_examples!r}")
    if image_size is not None and not (
        isinstance(image_size, tuple | list)
        and len(image_size) == 2
        and all(positive_int(s) for s in image_size)
    ):
        raise ValueError(f"image_size must be (height, width) positive ints, got {image_size!r}")


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    split: str | None = None,
    train_split: str | None = None,
    test_split: str | None = None,
    max_examples: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> Dataset:
    """Loads the TFDS image classification dataset ``name`` (``"dataset[/config][:version]"``).

    Args:
      name: a TFDS name, e.g. ``"mnist"``, ``"emnist/letters"``, ``"cifar10_corrupted/fog_3"``.
      data_dir: TFDS data dir (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      download: prepare the dataset (downloading it) when it is not prepared yet.
      split: read only this split, as the test set (train is empty).
      train_split, test_split: TFDS split specs (``"train[:80%]"``); defaults in
        :func:`resolve_splits`.
      max_examples: read only the first this many examples of each split.
      image_size: ``(H, W)`` to resize every image to (needed for variable-size images).

    Returns:
      A ``Dataset`` with float32 inputs in [0, 1] of shape (N, H, W, C), int32 labels,
      ``num_classes`` and ``class_names`` from the ``ClassLabel`` feature, and ``info``
      (``tfds_name``, ``version``, ``data_dir``, ``splits``, ``reader``).

    Under ``tfds.testing.mock_data`` pass ``download=True``: the mock turns preparation
    into a no-op and serves random examples through the data_source path.
    """
    if not is_tfds_name(name):
        raise unknown_name_error(name)
    _check_options(max_examples, image_size)
    root = resolve_data_dir(data_dir)
    size = tuple(int(s) for s in image_size) if image_size is not None else None
    splits = {"split": split, "train_split": train_split, "test_split": test_split}

    def read() -> tuple[cache.Decoded, Any]:
        builder = ensure_prepared(
            functools.partial(_make_tfds_builder, name, root),
            name=name,
            data_dir=root,
            download=download,
        )
        decoded = _decode(
            builder, name=name, data_dir=root, max_examples=max_examples, image_size=size, **splits
        )
        return decoded, builder

    call = {"tfds": name, "data_dir": os.path.abspath(root), "max_examples": max_examples}
    return cache.cached({**call, **splits, "image_size": list(size) if size else None}, read)


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """Silences TFDS while it builds one of the toolkit's own datasets locally: its
    "Downloading and preparing dataset Unknown size" line and progress bars (raw cursor
    escapes outside a terminal) are not something the user can act on, and nothing is
    downloaded. What was printed is shown after all if the build fails; Python warnings
    raised meanwhile are re-raised after it."""
    printed = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, absl_errors_only():
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                yield
        except BaseException:
            sys.stderr.write(printed.getvalue())
            raise
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def load_toolkit_builder(
    builder_name: str,
    args: dict[str, Any],
    *,
    name: str,
    data_dir: str | os.PathLike | None = None,
    max_examples: int | None = None,
) -> Dataset:
    """Loads one of the toolkit's own builders (``toolkit.data.builders.BUILDERS``), building
    it into the data dir on first use. A load made before with the same arguments is read
    back from :mod:`toolkit.data.cache` without importing TFDS."""
    _check_options(max_examples, None)
    root = resolve_data_dir(data_dir)

    def read() -> tuple[cache.Decoded, Any]:
        from toolkit.data.builders import BUILDERS

        builder_cls = BUILDERS[builder_name]
        extra = {"builder": f"{builder_cls.__module__}.{builder_cls.__qualname__}", **args}
        with _quietly():  # only while it builds: the redirect is process-wide
            builder = ensure_prepared(
                functools.partial(
                    builder_cls, config=builder_cls.config_for(**args), data_dir=root
                ),
                name=name,
                data_dir=root,
                download=True,  # generated locally: nothing to download
            )
        with absl_errors_only():
            decoded = _decode(
                builder, name=name, data_dir=root, max_examples=max_examples, extra_info=extra
            )
        return decoded, builder

    # The absolute dir: a relative one names another folder after a cd.
    call = {"builder": builder_name, "args": args, "data_dir": os.path.abspath(root)}
    return cache.cached({**call, "max_examples": max_examples}, read)
