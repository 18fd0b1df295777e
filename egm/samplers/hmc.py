r"""Gradient-based MCMC for continuous states: HMC and (Metropolis-adjusted) Langevin.

Same kernel shape as :func:`egm.samplers.block_gibbs`: ``init(position, params)`` builds a
state and ``step(key, state, params) -> (state, info)`` advances ONE chain; chains come
from ``jax.vmap`` and runs from :func:`egm.samplers.run`.  The target is any
``logdensity_fn(params, x) -> scalar`` (e.g. minus a free energy), so a model's parameters
stay an argument and the samplers run inside jitted training steps.

The step size lives in the state, so each chain may have its own and
:func:`adapt_step_size` (dual averaging, Hoffman & Gelman 2014, §3.2) can tune it during
burn-in; plain ``step`` never changes it, so adaptation stops when burn-in ends.

- HMC (Neal 2011): momentum ``p ~ N(0, I)``, ``n_leapfrog`` leapfrog steps, Metropolis
  accept with ``exp(-ΔH)``.
- MALA: one Langevin proposal ``x' = x + ε²/2 ∇log p(x) + ε ξ`` with the
  Metropolis–Hastings correction; ``adjusted=False`` gives the unadjusted Langevin
  algorithm (ULA), which is biased by O(ε²) — useful only when that is acceptable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.samplers.gibbs import Kernel

LogDensity = Callable[[Any, Array], Array]


class GradState(NamedTuple):
    """State of a gradient-based chain: position, its log density and gradient, step size."""

    position: Float[Array, " D"]
    logdensity: Float[Array, ""]
    grad: Float[Array, " D"]
    step_size: Float[Array, ""]


class GradInfo(NamedTuple):
    """``acceptance_rate``: min(1, exp(log α)) of the proposal; ``is_accepted``: the draw."""

    acceptance_rate: Float[Array, ""]
    is_accepted: Array


def _init_fn(logdensity_fn: LogDensity, step_size: float):
    def init(position: Float[Array, " D"], params: Any) -> GradState:
        position = jnp.asarray(position, jnp.float32)
        logp, grad = jax.value_and_grad(logdensity_fn, argnums=1)(params, position)
        return GradState(position, logp, grad, jnp.asarray(step_size, jnp.float32))

    return init


def _accept(key, state: GradState, proposal: GradState, log_alpha) -> tuple[GradState, GradInfo]:
    log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
    accept = jnp.log(jax.random.uniform(key)) < log_alpha
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), proposal, state)
    return new, GradInfo(jnp.minimum(1.0, jnp.exp(log_alpha)), accept)


def hmc(logdensity_fn: LogDensity, n_leapfrog: int = 10, step_size: float = 0.1) -> Kernel:
    """Hamiltonian Monte Carlo with identity mass matrix and ``n_leapfrog`` leapfrog steps."""
    if not isinstance(n_leapfrog, int) or n_leapfrog < 1:
        raise ConfigError(f"n_leapfrog must be an integer >= 1, got {n_leapfrog!r}")
    value_and_grad = jax.value_and_grad(logdensity_fn, argnums=1)

    def step(key: PRNGKeyArray, state: GradState, params: Any) -> tuple[GradState, GradInfo]:
        k_p, k_u = jax.random.split(key)
        eps = state.step_size
        p0 = jax.random.normal(k_p, state.position.shape, state.position.dtype)

        def leapfrog(carry, _):
            x, p, g = carry
            p = p + 0.5 * eps * g
            x = x + eps * p
            logp, g = value_and_grad(params, x)
            p = p + 0.5 * eps * g
            return (x, p, g), logp

        (x, p, g), logps = jax.lax.scan(
            leapfrog, (state.position, p0, state.grad), None, length=n_leapfrog
        )
        proposal = GradState(x, logps[-1], g, state.step_size)
        log_alpha = (proposal.logdensity - 0.5 * p @ p) - (state.logdensity - 0.5 * p0 @ p0)
        return _accept(k_u, state, proposal, log_alpha)

    return Kernel(init=_init_fn(logdensity_fn, step_size), step=step)


def mala(logdensity_fn: LogDensity, step_size: float = 0.1, *, adjusted: bool = True) -> Kernel:
    """Metropolis-adjusted Langevin (``adjusted=False``: unadjusted Langevin, always accepts)."""
    value_and_grad = jax.value_and_grad(logdensity_fn, argnums=1)

    def log_q(x_to, x_from, grad_from, eps):  # log N(x_to; x_from + eps²/2 ∇, eps² I) + const
        d = x_to - x_from - 0.5 * eps**2 * grad_from
        return -0.5 * (d @ d) / eps**2

    def step(key: PRNGKeyArray, state: GradState, params: Any) -> tuple[GradState, GradInfo]:
        k_n, k_u = jax.random.split(key)
        eps = state.step_size
        noise = jax.random.normal(k_n, state.position.shape, state.position.dtype)
        x = state.position + 0.5 * eps**2 * state.grad + eps * noise
        logp, g = value_and_grad(params, x)
        proposal = GradState(x, logp, g, state.step_size)
        if not adjusted:
            return proposal, GradInfo(jnp.ones(()), jnp.ones((), bool))
        log_alpha = (
            logp
            - state.logdensity
            + log_q(state.position, x, g, eps)
            - log_q(x, state.position, state.grad, eps)
        )
        return _accept(k_u, state, proposal, log_alpha)

    return Kernel(init=_init_fn(logdensity_fn, step_size), step=step)


class DualAveraging(NamedTuple):
    """Dual-averaging state (Hoffman & Gelman 2014, Algorithm 5) of one chain."""

    log_step: Float[Array, ""]
    log_step_avg: Float[Array, ""]
    h_avg: Float[Array, ""]
    mu: Float[Array, ""]


def adapt_step_size(
    kernel: Kernel,
    key: PRNGKeyArray,
    state: GradState,
    params: Any,
    n_steps: int,
    *,
    target_accept: float = 0.8,
    gamma: float = 0.05,
    t0: float = 10.0,
    kappa: float = 0.75,
) -> tuple[GradState, Float[Array, " n_steps"]]:
    """Burn in ONE chain for ``n_steps`` while tuning its step size by dual averaging.

    Returns the state with the averaged step size ``exp(log ε̄)`` fixed for sampling, and the
    per-step acceptance rates.  Vmap it over chains for per-chain step sizes.
    """
    if not 0.0 < target_accept < 1.0:
        raise ConfigError(f"target_accept must be in (0, 1), got {target_accept}")
    log0 = jnp.log(state.step_size)
    da0 = DualAveraging(log0, jnp.zeros(()), jnp.zeros(()), jnp.log(10.0) + log0)

    def body(carry, inp):
        state, da = carry
        t, k = inp
        state, info = kernel.step(k, state._replace(step_size=jnp.exp(da.log_step)), params)
        w = 1.0 / (t + t0)
        h_avg = (1.0 - w) * da.h_avg + w * (target_accept - info.acceptance_rate)
        log_step = da.mu - jnp.sqrt(t) / gamma * h_avg
        eta = t ** (-kappa)
        log_step_avg = eta * log_step + (1.0 - eta) * da.log_step_avg
        return (state, DualAveraging(log_step, log_step_avg, h_avg, da.mu)), info.acceptance_rate

    ts = jnp.arange(1, n_steps + 1, dtype=jnp.float32)
    (state, da), acc = jax.lax.scan(body, (state, da0), (ts, jax.random.split(key, n_steps)))
    return state._replace(step_size=jnp.exp(da.log_step_avg)), acc
