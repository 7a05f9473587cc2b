"""The names TFDS knows: all builders, the image classification ones; the unknown-name error."""

from __future__ import annotations

import contextlib
import difflib
import functools
import io

from toolkit.registry import UnknownNameError

__all__ = [
    "base_name",
    "image_classification_names",
    "is_tfds_name",
    "tfds_names",
    "unknown_name_error",
]


def base_name(name: str) -> str:
    """``"mnist_corrupted/shot_noise:1.0.0"`` -> ``"mnist_corrupted"``."""
    return name.split("/", 1)[0].split(":", 1)[0]


def tfds_names() -> tuple[str, ...]:
    """Every dataset builder that TFDS knows (community datasets left out: they need GCS)."""
    import tensorflow_datasets as tfds

    return tuple(tfds.list_builders(with_community_datasets=False))


def is_tfds_name(name: str) -> bool:
    return isinstance(name, str) and base_name(name) in tfds_names()


def unknown_name_error(
    name: object, registered: list[str] | tuple[str, ...] = ()
) -> UnknownNameError:
    """The error for a name that is neither a toolkit dataset nor a TFDS builder."""
    base = base_name(name) if isinstance(name, str) else str(name)
    match = difflib.get_close_matches(base, [*registered, *tfds_names()], n=1, cutoff=0.5)
    hint = f" Did you mean {match[0]!r}?" if match else ""
    ours = f" Toolkit datasets: {', '.join(registered)}." if registered else ""
    return UnknownNameError(
        f"unknown dataset {name!r}: neither a toolkit dataset nor a TFDS builder.{hint}{ours} "
        "Any TFDS image classification dataset also works by its TFDS name (e.g. 'mnist', "
        "'cifar10', 'mnist_corrupted/shot_noise'); list the valid names with "
        "toolkit.data.names(include_tfds=True)."
    )


@functools.cache
def image_classification_names() -> tuple[str, ...]:
    """TFDS builders whose supervised keys are an ``Image`` and a ``ClassLabel`` (slow to
    find, hence kept for the process)."""
    import tensorflow_datasets as tfds

    found = []
    sink = io.StringIO()  # some builders print import banners when TensorFlow is absent
    for name in tfds_names():
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                info = tfds.builder_cls(name)().info  # reads only
            x_key, y_key = info.supervised_keys
            features = info.features
            if isinstance(features[x_key], tfds.features.Image) and isinstance(
                features[y_key], tfds.features.ClassLabel
            ):
                found.append(name)
        except Exception:  # builders needing missing extras, or without supervised keys
            continue
    return tuple(found)
