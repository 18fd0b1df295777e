"""Vmapped sweeps: one jitted call trains N models that differ in seed and numeric
hyper-parameters (DESIGN.md §2).  Leading axis of every state leaf is the sweep axis.

Shape-changing choices (hidden size, k, number of chains) cannot be vmapped; loop
over them in Python, one compilation each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from egm.errors import ConfigError


def stack(trees: Sequence[Any]) -> Any:
    """Stack a list of identically-structured pytrees along a new leading (sweep) axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any) -> list[Any]:
    """Inverse of :func:`stack`."""
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], tree) for i in range(n)]


def sweep_epoch(epoch_fn: Callable, data_per_member: bool = False) -> Callable:
    """Vmap an epoch function over the sweep axis of the state and of the keys; the data is
    shared, or with ``data_per_member`` stacked along its own leading sweep axis (a phase
    that trains on what an earlier phase of each member produced, e.g. its features).

    ``sweep_epoch(epoch)(states, data, keys)`` with ``keys`` of shape ``(N,)``.
    """
    return jax.vmap(epoch_fn, in_axes=(0, 0 if data_per_member else None, 0))


def map_epoch(epoch_fn: Callable, data_per_member: bool = False) -> Callable:
    """:func:`sweep_epoch`'s contract, members one after another (``lax.map``) in one program:
    for models whose ops batch poorly under ``vmap`` on a device (measured: a DCGAN's
    transposed convolutions on XLA:CPU, 8 members at 0.59x one member's speed each under vmap,
    1.49x under lax.map)."""
    if data_per_member:
        return lambda states, data, keys: jax.lax.map(
            lambda a: epoch_fn(a[0], a[1], a[2]), (states, data, keys)
        )
    return lambda states, data, keys: jax.lax.map(
        lambda a: epoch_fn(a[0], data, a[1]), (states, keys)
    )


def sweep_keys(roots: PRNGKeyArray, epoch: int) -> PRNGKeyArray:
    """The epoch keys of every sweep member: ``fold_in(root_i, epoch)``."""
    return jax.vmap(lambda r: jax.random.fold_in(r, epoch))(roots)


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
    """Return ``opt_state`` (of an ``optax.inject_hyperparams`` optimiser such as
    :func:`egm.train.sgd`) with the named hyper-parameters replaced, e.g. to give each
    sweep member its own learning rate before :func:`stack`."""
    hp = dict(opt_state.hyperparams)
    for k, v in values.items():
        if k not in hp:
            raise KeyError(f"unknown hyper-parameter {k!r}; this optimiser has {sorted(hp)}")
        hp[k] = jnp.asarray(v, dtype=jnp.asarray(hp[k]).dtype)
    return opt_state._replace(hyperparams=hp)


def grid_states(state: Any, **grid: Sequence[float]) -> Any:
    """A grid of ``K`` copies of one train state stacked on a new leading axis, member ``i``
    with the optimiser hyper-parameters ``{name: values[i]}`` (every list of length ``K``),
    e.g. ``grid_states(state, weight_decay=[0.3, 1.0, 3.0])``: the candidates of a choice made
    on validation data, trained side by side within one run by :func:`grid_step` (and within
    each member of a sweep)."""
    lengths = {len(v) for v in grid.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ConfigError(f"grid_states needs value lists of one common length >= 1, got "
                         f"{ {k: len(v) for k, v in grid.items()} }")  # fmt: skip
    (k,) = lengths
    members = [
        state._replace(opt_state=set_hyperparams(state.opt_state,
                                                 **{n: v[i] for n, v in grid.items()}))
        for i in range(k)
    ]  # fmt: skip
    return stack(members)


def grid_step(step: Callable) -> Callable:
    """``step`` over the stacked states of :func:`grid_states`: every candidate sees the same
    batch and draws from its own key (``split(key, K)``), so candidate ``i`` trains exactly
    as a run of ``step`` alone would with its hyper-parameters and that key.  Metrics are the
    grid's mean (``<name>``) and lowest value (``<name>_min``)."""

    def stepped(states: Any, batch: Any, key: PRNGKeyArray):
        k = jax.tree_util.tree_leaves(states)[0].shape[0]
        states, metrics = jax.vmap(step, in_axes=(0, None, 0))(
            states, batch, jax.random.split(key, k)
        )
        out = {}
        for name, v in metrics.items():
            out[name], out[f"{name}_min"] = jnp.mean(v), jnp.min(v)
        return states, out

    return stepped
