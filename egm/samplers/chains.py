r"""Persistent chains of any kernel, as a training step needs them.

A CD/PCD step (:mod:`egm.train.fe_step`) only needs four things from a sampler, whatever
its state looks like: the kernel, a way to start a chain at a visible configuration
(CD starts at the data; the hiddens, if the state has any, are drawn from their
conditional), the visible part of a state (the negative samples), and a ``refresh``
applied to persistent chains before they move under NEW parameters.  Block Gibbs
states hold only samples, so refresh is the identity; gradient kernels (HMC, MALA)
cache ``log p`` and ``∇ log p`` of the current position, computed under the parameters
of the previous update, so refresh recomputes them and keeps each chain's step size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from jaxtyping import Array, Float, PRNGKeyArray

from egm.samplers.gibbs import BlockUpdate, Kernel, block_gibbs
from egm.samplers.hmc import GradState

Params = Any
State = Any


class ChainSpec(NamedTuple):
    """What a train step needs of a sampler (see the module docstring)."""

    kernel: Kernel
    from_visible: Callable[[PRNGKeyArray, Params, Float[Array, " D"]], State]
    visible: Callable[[State], Float[Array, " D"]]
    refresh: Callable[[State, Params], State]


def _identity(state: State, params: Params) -> State:
    return state


def _v(state: State) -> Float[Array, " D"]:
    return state.v


def gibbs_chain(
    blocks: Sequence[BlockUpdate],
    from_visible: Callable[[PRNGKeyArray, Params, Float[Array, " D"]], State],
    visible: Callable[[State], Float[Array, " D"]] = _v,
) -> ChainSpec:
    """Block Gibbs over ``blocks`` (one sweep per kernel step); ``from_visible(key, params, v)``
    builds a state at ``v`` (e.g. :func:`egm.energies.rbm.sample_state`)."""
    return ChainSpec(block_gibbs(blocks), from_visible, visible, _identity)


def gradient_chain(kernel: Kernel) -> ChainSpec:
    """A gradient kernel (:func:`egm.samplers.hmc`, :func:`egm.samplers.mala`) on ``v`` itself.

    The kernel's ``init(position, params)`` sets the step size it was built with;
    ``refresh`` re-evaluates ``log p`` and its gradient under the new parameters and keeps
    each chain's own (possibly adapted) step size.
    """

    def from_visible(key: PRNGKeyArray, params: Params, v: Float[Array, " D"]) -> GradState:
        return kernel.init(v, params)

    def refresh(state: GradState, params: Params) -> GradState:
        return kernel.init(state.position, params)._replace(step_size=state.step_size)

    return ChainSpec(kernel, from_visible, lambda s: s.position, refresh)
