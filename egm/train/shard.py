"""Device meshes for sweeps and data parallelism on JAX's SPMD engine (DESIGN.md §2, Devices).

Two ways to use several devices, both by placing arrays with
:class:`~jax.sharding.NamedSharding` and letting ``jax.jit`` partition the program
(no ``pmap``):

* **Sweeps** (:func:`sweep_mesh`, :func:`shard_sweep`, :func:`sharded_sweep_epoch`): the
  leading (sweep) axis of a stacked train state (:func:`egm.train.stack`) is split over a
  1-D mesh with axis ``"sweep"``; the data is replicated.  Members are independent, so the
  compiled epoch has no cross-device communication.
* **Data parallelism** (:func:`data_mesh`, :func:`data_parallel_epoch`): one model, its
  state replicated, each minibatch split over a 1-D mesh with axis ``"batch"``; the
  partitioner inserts one all-reduce per step for the gradient (and the batch-mean metrics).

The meshes use :attr:`jax.sharding.AxisType.Auto` axes (``jax.make_mesh`` defaults to
``Explicit``), so sharding propagates through un-annotated model code exactly as the
partitioner decides; the same functions run unchanged on a mesh of one device.

Random numbers: sharded and unsharded runs give the same numbers under the same
``jax_threefry_partitionable`` setting, either way (tests/train/test_sharding.py checks
both); the two settings are two different streams.  Keep it ``True`` (the default) for
sharded runs: then XLA draws the random bits of a sharded array on the devices that hold
it, while with ``False`` a data-parallel step needs extra all-gathers and
collective-permutes to draw them (a sweep is unaffected: each member's draws are local).

Placement: :func:`shard_sweep`, :func:`replicate` and :func:`shard_batch` take host or
device values; in a multi-process run every process must pass the same values (build them
from the same seeds and files everywhere).

Multi-host: call ``jax.distributed.initialize()`` in every process before any other JAX
call; ``jax.devices()`` then lists the devices of all hosts and the meshes built here span
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import PRNGKeyArray

from egm.errors import ConfigError
from egm.train.loop import Step, make_epoch
from egm.train.sweep import sweep_epoch

__all__ = [
    "BATCH_AXIS",
    "SWEEP_AXIS",
    "batch_sharded_step",
    "data_mesh",
    "data_parallel_epoch",
    "replicate",
    "shard_batch",
    "shard_sweep",
    "sharded_sweep_epoch",
    "sweep_mesh",
]

SWEEP_AXIS = "sweep"
BATCH_AXIS = "batch"


def _device_list(devices: Sequence[jax.Device] | None) -> list[jax.Device]:
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise ConfigError("the device list is empty; pass devices=None to use jax.devices()")
    return devs


def _mesh_1d(n: int, name: str, devices: list[jax.Device]) -> Mesh:
    return jax.make_mesh((n,), (name,), axis_types=(AxisType.Auto,), devices=devices[:n])


def _axis_size(mesh: Mesh, name: str, maker: str) -> int:
    if name not in mesh.axis_names:
        raise ConfigError(
            f"the mesh has axes {tuple(mesh.axis_names)}, not {name!r}; build it with "
            f"egm.train.shard.{maker}(...)"
        )
    return int(mesh.shape[name])


def _ndim(x: Any) -> int:
    return int(getattr(x, "ndim", np.ndim(x)))


def _leading(x: Any) -> int:
    return int(getattr(x, "shape", np.shape(x))[0])


def sweep_mesh(n_members: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"sweep"`` for a sweep of ``n_members`` models.

    It spans the largest number ``d`` of devices with ``d <= len(devices)`` and ``d``
    dividing ``n_members``, so every device holds ``n_members // d`` whole members: 16
    members on 8 devices use 8, 12 use 6, 3 use 3, 7 use 7 and 13 use 1 (pad such a sweep,
    e.g. with repeated seeds, to use more).  ``devices`` defaults to ``jax.devices()``
    (every device of every host after ``jax.distributed.initialize``); the first ``d`` are
    taken.

    Raises:
      ConfigError: if ``n_members`` is not a positive int or ``devices`` is empty.
    """
    if isinstance(n_members, bool) or not isinstance(n_members, int | np.integer) or n_members < 1:
        raise ConfigError(f"n_members must be a positive int, got {n_members!r}")
    devs = _device_list(devices)
    d = max(k for k in range(1, min(len(devs), int(n_members)) + 1) if n_members % k == 0)
    return _mesh_1d(d, SWEEP_AXIS, devs)


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"batch"`` over ``devices`` (default: ``jax.devices()``), for
    data-parallel training of one model (:func:`data_parallel_epoch`)."""
    devs = _device_list(devices)
    return _mesh_1d(len(devs), BATCH_AXIS, devs)


def shard_sweep(tree: Any, mesh: Mesh) -> Any:
    """``jax.device_put`` every leaf of ``tree`` split over ``mesh``'s ``"sweep"`` axis
    along its leading (sweep) axis; 0-d leaves are replicated.  Works for any pytree of
    arrays, typed PRNG key arrays (``jax.random.key``) included, e.g. a stacked train
    state (:func:`egm.train.stack`) or the sweep keys (:func:`egm.train.sweep_keys`).

    Raises:
      ConfigError: if a leading axis is not divisible by the mesh size (build the mesh with
        :func:`sweep_mesh` for that number of members).
    """
    d = _axis_size(mesh, SWEEP_AXIS, "sweep_mesh")
    split, whole = NamedSharding(mesh, P(SWEEP_AXIS)), NamedSharding(mesh, P())

    def put(path, x):
        if _ndim(x) == 0:
            return jax.device_put(x, whole)
        if _leading(x) % d:
            raise ConfigError(
                f"leaf {jax.tree_util.keystr(path) or '<root>'} has leading (sweep) axis "
                f"{_leading(x)}, not divisible by the {d} devices of the 'sweep' mesh axis; "
                f"build the mesh with sweep_mesh({_leading(x)}), which picks a divisor"
            )
        return jax.device_put(x, split)

    return jax.tree_util.tree_map_with_path(put, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``jax.device_put`` every leaf of ``tree`` whole onto every device of ``mesh``
    (``PartitionSpec()``), e.g. the training data shared by a sweep or a data-parallel
    model's state."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(data: Any, mesh: Mesh) -> Any:
    """``jax.device_put`` an array, or a pytree of arrays sharing the leading (example)
    axis, split along that axis over ``mesh``'s ``"batch"`` axis.

    This saves device memory against :func:`replicate`, at a price: a minibatch of random
    rows must then be assembled across devices (an all-reduce of the minibatch in every
    step).  Replicate the data when it fits.

    Raises:
      ConfigError: if the number of examples is not divisible by the number of devices.
    """
    d = _axis_size(mesh, BATCH_AXIS, "data_mesh")
    leaves = jax.tree_util.tree_leaves(data)
    sizes = {_leading(x) if _ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ConfigError(
            f"data must be an array or a pytree of arrays sharing the leading (example) axis; "
            f"got leaves of shapes {[np.shape(x) for x in leaves]}"
        )
    n = sizes.pop()
    if n % d:
        raise ConfigError(
            f"{n} examples cannot be split evenly over the {d} devices of the 'batch' mesh "
            f"axis; drop {n % d} examples (data[: {n - n % d}]), or build the mesh over a "
            f"number of devices that divides {n} (data_mesh(jax.devices()[:k])), or "
            f"replicate the data instead (replicate(data, mesh))"
        )
    return jax.device_put(data, NamedSharding(mesh, P(BATCH_AXIS)))


def batch_sharded_step(step: Step, mesh: Mesh) -> Step:
    """``step`` with its minibatch constrained to be split over ``mesh``'s ``"batch"`` axis
    (``jax.lax.with_sharding_constraint``), so that under ``jax.jit`` every device computes
    its slice of the batch and the partitioner all-reduces what is summed over it.

    The constraint on the gathered minibatch is what partitions the step: without it the
    partitioner keeps the whole minibatch, and all the work, on every device (checked in the
    compiled HLO: per-device matmuls over ``batch / devices`` rows and one all-reduce of the
    gradients and batch-mean metrics per step with it; without it full-batch matmuls on every
    device, with replicated data and with data split by :func:`shard_batch` alike).
    """
    _axis_size(mesh, BATCH_AXIS, "data_mesh")
    split = NamedSharding(mesh, P(BATCH_AXIS))

    def sharded(state, batch, key):
        return step(state, jax.lax.with_sharding_constraint(batch, split), key)

    return sharded


def data_parallel_epoch(
    step: Step, batch_size: int, mesh: Mesh, *, donate: bool = True
) -> Callable[[Any, Any, PRNGKeyArray], tuple[Any, Any]]:
    """The jitted ``epoch(state, data, key) -> (state, mean metrics)`` of
    :func:`egm.train.make_epoch` training one model data-parallel over ``mesh`` (from
    :func:`data_mesh`): state, key and metrics replicated, each minibatch split over the
    ``"batch"`` axis (:func:`batch_sharded_step`).  Same numbers as the single-device epoch
    up to the order of float sums.

    ``data`` keeps its own placement: replicated (:func:`replicate`, fastest, no
    communication to form a minibatch) or split (:func:`shard_batch`, less memory).  The
    input state is donated unless ``donate=False``.

    Raises:
      ConfigError: if ``batch_size`` is not divisible by the number of devices.
    """
    d = _axis_size(mesh, BATCH_AXIS, "data_mesh")
    if batch_size % d:
        raise ConfigError(
            f"batch_size {batch_size} cannot be split evenly over the {d} devices of the "
            f"'batch' mesh axis; use a multiple of {d} (e.g. {max(d, batch_size - batch_size % d)})"
        )
    whole = NamedSharding(mesh, P())
    return jax.jit(
        make_epoch(batch_sharded_step(step, mesh), batch_size),
        in_shardings=(whole, None, whole),
        out_shardings=(whole, whole),
        donate_argnums=(0,) if donate else (),
    )


def sharded_sweep_epoch(
    epoch_fn: Callable, mesh: Mesh, *, donate: bool = True, data_per_member: bool = False
) -> Callable[[Any, Any, PRNGKeyArray], tuple[Any, Any]]:
    """The jitted :func:`egm.train.sweep_epoch` of ``epoch_fn`` over ``mesh`` (from
    :func:`sweep_mesh`): ``epoch(states, data, keys) -> (states, metrics)`` with states,
    keys and per-member metrics split over the ``"sweep"`` axis and the data replicated
    (with ``data_per_member``: split like the states, its leading axis the sweep axis).

    The state comes back with the shardings it went in with, so a loop of epochs never
    moves it; the input state is donated unless ``donate=False``.  Arguments placed
    otherwise (e.g. on one device) are moved on the call; place them once with
    :func:`shard_sweep` / :func:`replicate` to avoid that every epoch.
    """
    _axis_size(mesh, SWEEP_AXIS, "sweep_mesh")
    split, whole = NamedSharding(mesh, P(SWEEP_AXIS)), NamedSharding(mesh, P())
    return jax.jit(
        sweep_epoch(epoch_fn, data_per_member),
        in_shardings=(split, split if data_per_member else whole, split),
        out_shardings=(split, split),
        donate_argnums=(0,) if donate else (),
    )
