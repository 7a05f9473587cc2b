"""absl's info and warnings off for a while (errors still show): TFDS and orbax log through
absl, and neither what TFDS says while it builds the toolkit's own datasets nor orbax's
line per checkpoint save is something the user can act on."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["absl_errors_only"]


@contextlib.contextmanager
def absl_errors_only() -> Iterator[None]:
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
