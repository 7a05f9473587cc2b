"""Distribution shifts by name: ``tk.shifts.apply("rotate", x, key=k, severity=3)``."""

from toolkit.shifts import image, sequence  # noqa: F401  (registers the shifts)
from toolkit.shifts.base import (
    APPLIES_TO,
    SEVERITIES,
    apply,
    check_applies,
    check_severity,
    register,
    shifts,
)
from toolkit.shifts.mnist_c import MNIST_C

names = shifts.names
entry = shifts.entry
hparams = shifts.hparams
describe = shifts.describe
get = shifts.get

__all__ = [
    "APPLIES_TO",
    "MNIST_C",
    "SEVERITIES",
    "apply",
    "check_applies",
    "check_severity",
    "describe",
    "entry",
    "get",
    "hparams",
    "names",
    "register",
    "shifts",
]
