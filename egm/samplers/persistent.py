"""Chains of the real-valued models: HMC with a per-chain step size adapted along
persistent chains, the GRBM's samplers by name, and long runs of independent chains (of any
chain, and of a binary RBM from its base-rate model: :func:`rbm_base_rate_chains`).

:func:`adaptive_step_size` is the rule of Ranzato & Hinton (2010) for the persistent
chains of PCD (each chain's step multiplied by ``1 ± rate`` after every proposal, to keep
the acceptance near a target); an adapted chain is not a fixed Markov kernel, so final
samples use plain HMC at the median adapted step (``hmc_chain(..., target_accept=None)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.energies import grbm, rbm
from egm.errors import ConfigError
from egm.samplers.chains import ChainSpec, gibbs_chain, gradient_chain
from egm.samplers.gibbs import Kernel, block_gibbs, run
from egm.samplers.hmc import GradState, hmc

__all__ = [
    "GRBM_SAMPLERS",
    "adaptive_step_size",
    "grbm_chain",
    "hmc_chain",
    "long_chains",
    "median_step_size",
    "rbm_base_rate_chains",
]

GRBM_SAMPLERS = ("gibbs", "gibbs_langevin", "hmc")


def adaptive_step_size(kernel: Kernel, target_accept: float, rate: float = 0.02) -> Kernel:
    """A gradient kernel whose per-chain step size is multiplied by ``1 + rate`` after a
    proposal with acceptance probability above ``target_accept`` and by ``1 - rate`` after
    one below (clipped to [1e-4, 1])."""
    if not 0 < target_accept < 1:
        raise ConfigError(f"target_accept must be in (0, 1), got {target_accept}")

    def step(key, state: GradState, params):
        new, info = kernel.step(key, state, params)
        factor = jnp.where(info.acceptance_rate > target_accept, 1.0 + rate, 1.0 - rate)
        return new._replace(step_size=jnp.clip(new.step_size * factor, 1e-4, 1.0)), info

    return Kernel(kernel.init, step)


def hmc_chain(
    log_density: Callable[[Any, Float[Array, " D"]], Float[Array, ""]],
    n_leapfrog: int,
    step_size: float,
    target_accept: float | None = None,
) -> ChainSpec:
    """HMC on ``v`` (:func:`egm.samplers.hmc`), its step size adapted per chain towards
    ``target_accept`` (:func:`adaptive_step_size`) unless that is None."""
    kernel = hmc(log_density, n_leapfrog=n_leapfrog, step_size=step_size)
    return gradient_chain(
        kernel if target_accept is None else adaptive_step_size(kernel, target_accept)
    )


def grbm_chain(
    sampler: str,
    *,
    langevin_step_size: float = 0.1,
    langevin_steps: int = 10,
    langevin_adjusted: bool = True,
) -> ChainSpec:
    """The GRBM's samplers: ``"gibbs"`` (block Gibbs), ``"hmc"`` (10 leapfrog steps of 0.1 on
    the free energy) or ``"gibbs_langevin"`` (Liao et al. 2022: ``langevin_steps`` Langevin
    steps on ``v`` per sweep, the first of ``langevin_step_size`` times the mean variance,
    Metropolis-adjusted if ``langevin_adjusted``)."""
    if sampler == "gibbs":
        return gibbs_chain(grbm.BLOCKS, grbm.sample_state)
    if sampler == "hmc":
        return gradient_chain(hmc(grbm.log_density, n_leapfrog=10, step_size=0.1))
    if sampler == "gibbs_langevin":
        from egm.samplers import langevin

        return langevin.gibbs_langevin_chain(
            langevin.GRBM, langevin_step_size, langevin_steps, relative=True,
            adjusted=langevin_adjusted,
        )  # fmt: skip
    raise ConfigError(f"sampler must be one of {GRBM_SAMPLERS}, got {sampler!r}")


def long_chains(
    key: PRNGKeyArray,
    chain: ChainSpec,
    params: Any,
    data: Float[ArrayLike, "N D"],
    n_chains: int,
    n_steps: int,
) -> tuple[np.ndarray, Any]:
    """Run ``n_chains`` independent chains of ``chain`` for ``n_steps`` steps, started at
    random rows of ``data``; returns the visible samples and the final states."""
    k_rows, k0, k1 = jax.random.split(key, 3)
    data = jnp.asarray(data, jnp.float32)
    v0 = data[jax.random.choice(k_rows, data.shape[0], (n_chains,))]
    keys = jax.random.split(k0, n_chains)
    states = jax.vmap(chain.from_visible, in_axes=(0, None, 0))(keys, params, v0)
    states, _ = jax.jit(run, static_argnums=(0, 4))(chain.kernel, k1, states, params, n_steps)
    return np.asarray(jax.vmap(chain.visible)(states)), states


def median_step_size(chains) -> float | None:
    """The median adapted step size of persistent HMC chains (:func:`hmc_chain` with
    adaptation keeps one per chain), or ``None`` for chains without one (Gibbs)."""
    step = getattr(chains, "step_size", None)
    return None if step is None else float(np.median(np.asarray(step)))


def rbm_base_rate_chains(
    key: PRNGKeyArray,
    params: rbm.RBMParams,
    data_mean: Float[ArrayLike, " V"],
    n_chains: int,
    n_sweeps: int,
) -> rbm.RBMState:
    """``n_chains`` independent block Gibbs chains of a binary RBM (:data:`egm.energies.rbm.
    BLOCKS`), started at draws of the base-rate model ``v ~ Bernoulli(data_mean)`` and run for
    ``n_sweeps`` sweeps in one jitted scan; returns the final states."""
    k_start, k_run = jax.random.split(key)
    mean = jnp.asarray(data_mean, jnp.float32)
    v0 = jax.random.bernoulli(k_start, mean, (n_chains, mean.shape[0])).astype(jnp.float32)
    states = jax.vmap(rbm.init_state, in_axes=(None, 0))(params, v0)
    kernel = block_gibbs(rbm.BLOCKS)
    return jax.jit(run, static_argnums=(0, 4))(kernel, k_run, states, params, n_sweeps)[0]
