"""Where a population lives: one device, its member axis split across devices, or every
member data-parallel across devices.

Modes (the ``shard`` argument of ``train_population``; ``Placement.mode`` reports which):

* ``"none"`` (also ``False``, the default) -- every member on the first local device.
* ``"population"`` (also ``True``) -- a 1-D mesh ``("pop",)`` over ``d = min(K, D)`` of
  the D local devices; everything stacked over members is split along axis 0
  (``P("pop")``) and the training data is replicated (``P()``), so each device trains K/d
  members with no communication (the members are independent; XLA's partitioner keeps
  them apart). When K is not a multiple of d, the population is padded with copies of
  member 0 up to the next multiple; the copies train alongside (wasted but harmless
  work, identical to member 0) and are dropped from the results.
* ``"data"`` -- data parallel, as ``tk.train`` runs one model: a 1-D mesh ``("data",)``
  over all D devices, every member's state replicated and each member's batch split
  across the devices (the batch size must be a multiple of D); gradients and BatchNorm
  statistics are reduced over the global batch on every step.
* ``"auto"`` -- the rule the sweep runner uses (``toolkit.sweep.execute``):

  1. one local device: ``"none"``;
  2. K >= D: ``"population"`` -- every device gets whole members and never waits for
     another, where data parallelism would all-reduce the gradients at every step;
  3. K < D and the batch size a multiple of D: ``"data"`` -- population sharding would
     leave D - K devices idle;
  4. otherwise ``"population"`` over K devices.

Meshes use ``AxisType.Auto`` (JAX >= 0.9 defaults to explicit axes): the partitioner
propagates the population sharding through the vmapped program on its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from toolkit.train_step import data_mesh

__all__ = ["AXIS", "MODES", "Placement", "choose_mode", "plan"]

AXIS = "pop"
MODES = ("none", "population", "data")
_ALIASES = {False: "none", True: "population"}


@dataclasses.dataclass(frozen=True)
class Placement:
    """How K members map to devices: ``order[i]`` is the member in slot i (padding
    repeats member 0) and ``mesh`` is None when the population stays on one device.
    """

    num_members: int
    order: tuple[int, ...]
    mesh: jax.sharding.Mesh | None
    mode: str = "none"
    device: jax.Device | None = None  # where a population without a mesh lives

    @property
    def device_count(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    @property
    def devices(self) -> list[jax.Device]:
        if self.mesh is None:
            return [self.device or jax.local_devices()[0]]
        return list(self.mesh.devices.flat)

    @property
    def sharding(self) -> NamedSharding | None:
        """The sharding of stacked trees, None on one device: axis 0 over the mesh for
        ``"population"``, replicated for ``"data"``."""
        if self.mesh is None:
            return None
        spec = PartitionSpec(AXIS) if self.mode == "population" else PartitionSpec()
        return NamedSharding(self.mesh, spec)

    @property
    def data_mesh(self) -> jax.sharding.Mesh | None:
        """The mesh each member's batches are split over (``"data"`` mode), else None."""
        return self.mesh if self.mode == "data" else None

    def stacked(self, tree: Any) -> Any:
        """Puts a tree stacked over the padded population on its devices."""
        if self.mesh is None:
            return jax.device_put(tree, self.devices[0])
        return _put(tree, self.sharding)

    def replicated(self, tree: Any) -> Any:
        """Puts a tree every member reads (the training data) on every device."""
        if self.mesh is None:
            return jax.device_put(tree, self.devices[0])
        return _put(tree, NamedSharding(self.mesh, PartitionSpec()))


def _put(tree: Any, sharding: NamedSharding) -> Any:
    """``jax.device_put(tree, sharding)``; with several processes (a multi-host mesh, whose
    devices are not all addressable here), each process puts its own shards of the same
    host values (every process computes them from the same seeds and data)."""
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def put(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def choose_mode(num_members: int, num_devices: int, batch_size: int) -> str:
    """The ``"auto"`` rule (module docstring): ``"none"``, ``"population"`` or ``"data"``."""
    if num_devices == 1:
        return "none"
    if num_members < num_devices and batch_size % num_devices == 0:
        return "data"
    return "population"


def plan(
    num_members: int,
    shard: bool | str,
    batch_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> Placement:
    """The placement of ``num_members`` members under ``shard`` (module docstring) on
    ``devices`` (default: every local device).

    ``batch_size`` (each member's) is needed by ``"data"`` and ``"auto"``.
    """
    valid = (True, False, "auto", *MODES)
    if isinstance(shard, bool):
        mode = _ALIASES[shard]
    elif shard in valid:
        mode = shard
    else:
        raise ValueError(f"shard must be one of {', '.join(map(repr, valid))}; got {shard!r}")
    devices = list(jax.local_devices() if devices is None else devices)
    if mode in ("auto", "data") and batch_size is None:
        raise ValueError(f"shard={mode!r} needs the members' batch_size")
    if mode == "auto":
        mode = choose_mode(num_members, len(devices), batch_size)
    if mode == "none" or len(devices) == 1:
        return Placement(num_members, tuple(range(num_members)), None, "none", devices[0])
    if mode == "data":
        if batch_size % len(devices):
            raise ValueError(
                f"shard='data' splits each batch over the {len(devices)} local devices: "
                f"batch_size {batch_size} is not a multiple of {len(devices)}; use "
                f"shard='population' or a batch size that is"
            )
        return Placement(num_members, tuple(range(num_members)), data_mesh(devices), "data")
    used = min(num_members, len(devices))
    padded = math.ceil(num_members / used) * used
    mesh = jax.make_mesh(
        (used,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:used]
    )
    order = tuple(range(num_members)) + (0,) * (padded - num_members)
    return Placement(num_members, order, mesh, "population")
