"""Shifts of MNIST-1D-style sequences (N, L) or (N, L, C): pure functions of the inputs.

``ops`` registers the shifts (``translation``, ``time_scale``, ``linear_shear``,
``iid_noise``, ``correlated_noise``, ``shuffle``; severity tables in its docstring). Test sets
drawn anew from the MNIST-1D generator with shifted arguments are evaluation sets, not
shifts (:mod:`toolkit.evaluation.regenerated`).
"""

from toolkit.shifts.sequence import ops

__all__ = ["ops"]
