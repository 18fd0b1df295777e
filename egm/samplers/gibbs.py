"""Generic block Gibbs sampling (§20.2–20.4, "block Gibbs sampling").

A model exposes its conditional blocks as a tuple of functions
``update(key, params, state) -> state``, each resampling one block of units given
the others (e.g. :data:`egm.energies.rbm.BLOCKS`).  :func:`block_gibbs` turns them
into a kernel of the blackjax shape, ``init(state) -> state`` and
``step(key, state, params) -> (state, info)``, acting on ONE chain.  Chains come
from ``jax.vmap`` (:func:`step_chains`), runs from a ``lax.scan`` over pre-split
keys (:func:`run`), so step ``t`` of a run always uses ``fold``-free key ``keys[t]``
and any step is replayable.  ``params`` is an argument of ``step``, never a closure,
so persistent chains advance under the *current* parameters inside a jitted train step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
from jaxtyping import PRNGKeyArray

State = Any
Params = Any
BlockUpdate = Callable[[PRNGKeyArray, Params, State], State]


class GibbsInfo(NamedTuple):
    """Per-step information of a Gibbs kernel (the sweep index is implicit in the scan)."""

    n_blocks: int


class Kernel(NamedTuple):
    """A sampler in the blackjax shape: ``init(...) -> state`` (Gibbs: ``init(state)``; gradient
    kernels: ``init(position, params)``) and ``step(key, state, params) -> (state, info)``."""

    init: Callable[[State], State]
    step: Callable[[PRNGKeyArray, State, Params], tuple[State, Any]]


def block_gibbs(blocks: Sequence[BlockUpdate]) -> Kernel:
    """A single-chain kernel that resamples each block in turn (one sweep per step)."""
    blocks = tuple(blocks)
    if not blocks:
        raise ValueError("block_gibbs needs at least one block update function")

    def init(state: State) -> State:
        return state

    def step(key: PRNGKeyArray, state: State, params: Params) -> tuple[State, GibbsInfo]:
        keys = jax.random.split(key, len(blocks))
        for k, update in zip(keys, blocks, strict=True):
            state = update(k, params, state)
        return state, GibbsInfo(n_blocks=len(blocks))

    return Kernel(init=init, step=step)


def step_chains(
    kernel: Kernel, key: PRNGKeyArray, states: State, params: Params
) -> tuple[State, Any]:
    """Advance a batch of chains (leading axis of every leaf of ``states``) by one step."""
    n_chains = jax.tree_util.tree_leaves(states)[0].shape[0]
    keys = jax.random.split(key, n_chains)
    return jax.vmap(kernel.step, in_axes=(0, 0, None))(keys, states, params)


def run(
    kernel: Kernel,
    key: PRNGKeyArray,
    states: State,
    params: Params,
    n_steps: int,
    *,
    observe: Callable[[State], Any] | None = None,
) -> tuple[State, Any]:
    """Run ``n_steps`` steps of a batch of chains as one ``lax.scan``.

    Returns the final states and, if ``observe`` is given, the stacked
    ``observe(states)`` of every step (a streaming observer: keep it small, e.g. a
    mean, so long runs do not store their trace); otherwise ``None``.
    """
    keys = jax.random.split(key, n_steps)

    def body(states, k):
        states, _ = step_chains(kernel, k, states, params)
        return states, (observe(states) if observe is not None else None)

    return jax.lax.scan(body, states, keys)
