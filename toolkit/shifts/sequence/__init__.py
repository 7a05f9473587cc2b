"""Shifts of MNIST-1D-style sequences (N, L) or (N, L, C).

``ops`` registers the shifts (``translation``, ``time_scale``, ``linear_shear``,
``iid_noise``, ``correlated_noise``, ``shuffle``; severity tables in its docstring);
``generator`` is the unstandardized MNIST-1D generator that the regenerated test sets
(:mod:`toolkit.evaluation.regenerated`) and the unseen-template OOD set rely on.
"""

from toolkit.shifts.sequence import ops
from toolkit.shifts.sequence.generator import raw_mnist1d, raw_stats

__all__ = ["ops", "raw_mnist1d", "raw_stats"]
