r"""Gibbs–Langevin sampling (Liao, Kornblith, Ren, Fleet & Hinton 2022, "Gaussian–Bernoulli
RBMs without tears") for models whose visibles are Gaussian given the hiddens.

The model is described by a :class:`GaussianVisibleModel`: its energy ``E(v, h)`` is
quadratic in ``v`` for fixed ``h`` with a DIAGONAL precision,

.. math:: E(v, h) = \tfrac12 \sum_i β_i(h) (v_i - m_i(h))^2 + g(h),

so ``p(v | h) = N(m(h), diag(1/β(h)))`` (the GRBM of §20.5.1: ``m = b + W h``, ``β`` fixed;
:data:`GRBM`).  One kernel step on a chain state ``(v, h)``:

1. ``K`` Langevin steps on ``v`` with ``h`` fixed,
   ``v_k = v_{k-1} - η_k ∇_v E(v_{k-1}, h) + sqrt(2 η_k) ξ_k``, ``ξ_k ~ N(0, I)``, with
   step sizes ``η_1..η_K`` constant or on the paper's cosine schedule
   ``η_k = η_min + (η - η_min)(1 + cos(π (k-1)/K)) / 2`` (:func:`step_sizes`);
2. ``h' ~ P(h | v_K)``.

Metropolis adjustment (``adjusted=True``).  The pair ``(v', h')`` is a proposal with
density ``q(v' | v, h) P(h' | v')`` and is accepted on the joint ``p(v, h) ∝ exp(-E)`` with

.. math:: \log α = [-E(v', h') - \log P(h'|v')] - [-E(v, h) - \log P(h|v)]
                   + \log q(v | v', h') - \log q(v' | v, h),

the reverse move drawing the old ``v`` by Langevin from ``(v', h')`` and then the old ``h``.
(``-E(v,h) - log P(h|v) = -F(v)`` + const: the ratio is that of the visible marginal.)
``q`` is Gaussian in closed form: with ``u = v - m(h)`` each Langevin step is the affine map
``u_k = (1 - η_k β) u_{k-1} + sqrt(2η_k) ξ_k``, so

.. math:: v_K = a ⊙ v_0 + (1 - a) ⊙ m(h) + ε, \quad a = \prod_k (1 - η_k β), \quad
          \mathrm{Var}[ε] = s^2 = \sum_k 2 η_k \prod_{j>k} (1 - η_j β)^2

elementwise (:func:`langevin_gaussian_map`).  The chain is then reversible with respect to
``p(v, h)`` for ANY step sizes (large ones just lower the acceptance rate), whereas the
unadjusted chain (``adjusted=False``) is biased: a constant step ``η`` alone inflates the
conditional variance to ``1/(β (1 - ηβ/2))`` and diverges for ``ηβ > 2``.

``relative=True`` multiplies every ``η_k`` by the mean conditional variance
``mean(1/β(h))`` under the current parameters -- the paper's convention
(``η = Langevin_eta · mean σ²``), which keeps the step meaningful while a GRBM learns its
variances; with it, ``step_size=1`` and the cosine schedule are the paper's defaults.

Kernel shape as :func:`egm.samplers.block_gibbs`: ``init(state) -> state`` and
``step(key, state, params) -> (state, info)`` on ONE chain whose state is a NamedTuple
with fields ``v`` and ``h`` (:class:`egm.energies.rbm.RBMState` /
:data:`egm.energies.grbm.GRBMState`), so a chain can switch between block Gibbs and
Gibbs–Langevin.  :func:`gibbs_langevin_chain` packages the kernel for the CD/PCD train
step (:mod:`egm.train.fe_step`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.distributions import bernoulli_log_prob
from egm.energies import grbm
from egm.energies.rbm import RBMState, bernoulli_logits
from egm.errors import ConfigError
from egm.samplers.chains import ChainSpec
from egm.samplers.gibbs import Kernel

Params = Any
Hidden = Any
State = Any

SCHEDULES = ("constant", "cosine")


class GaussianVisibleModel(NamedTuple):
    """What Gibbs–Langevin needs of a model with ``p(v | h) = N(mean(h), diag(1/precision(h)))``.

    - ``energy(params, v, h) -> scalar``: ``E(v, h)``, quadratic in ``v`` as in the module
      docstring (only its ``v``-gradient and differences of it are used);
    - ``visible_mean(params, h) -> (V,)``: ``m(h)``, the minimiser of ``E(·, h)``;
    - ``visible_precision(params, h) -> (V,)``: ``β(h) > 0``, the diagonal of ``∇²_v E``;
    - ``sample_hidden(key, params, v) -> h``: a draw from ``P(h | v)``;
    - ``hidden_log_prob(params, v, h) -> scalar``: ``log P(h | v)`` (a density for continuous
      hiddens).  :func:`bernoulli_hiddens` builds the last two from hidden logits.
    """

    energy: Callable[[Params, Array, Hidden], Array]
    visible_mean: Callable[[Params, Hidden], Array]
    visible_precision: Callable[[Params, Hidden], Array]
    sample_hidden: Callable[[PRNGKeyArray, Params, Array], Hidden]
    hidden_log_prob: Callable[[Params, Array, Hidden], Array]


class GibbsLangevinInfo(NamedTuple):
    """``acceptance_rate``: min(1, α) of the composite proposal (1 when unadjusted);
    ``is_accepted``: whether the chain moved."""

    acceptance_rate: Float[Array, ""]
    is_accepted: Array


def bernoulli_hiddens(
    hidden_logits: Callable[[Params, Array], Array],
) -> tuple[Callable[[PRNGKeyArray, Params, Array], Array], Callable[[Params, Array, Array], Array]]:
    """``(sample_hidden, hidden_log_prob)`` for independent binary hiddens with
    ``P(h_j = 1 | v) = σ(hidden_logits(params, v)_j)``."""

    def sample_hidden(key: PRNGKeyArray, params: Params, v: Array) -> Array:
        return bernoulli_logits(key, hidden_logits(params, v))

    def hidden_log_prob(params: Params, v: Array, h: Array) -> Array:
        return bernoulli_log_prob(hidden_logits(params, v), h)

    return sample_hidden, hidden_log_prob


def _grbm_precision(params: grbm.GRBMParams, h: Float[Array, " H"]) -> Float[Array, " V"]:
    return jnp.exp(params.log_beta)


#: The Gaussian–Bernoulli RBM (:mod:`egm.energies.grbm`): ``m(h) = b + W h``, ``β = exp(log_beta)``.
GRBM = GaussianVisibleModel(
    grbm.energy, grbm.visible_mean, _grbm_precision, *bernoulli_hiddens(grbm.hidden_preactivation)
)


def step_sizes(
    step_size: float, n_steps: int, schedule: str = "cosine", min_step_size: float = 0.0
) -> np.ndarray:
    """The ``n_steps`` Langevin step sizes ``η_1..η_K`` (float32).

    ``"constant"``: all ``step_size``.  ``"cosine"`` (the paper's annealing):
    ``η_k = min_step_size + (step_size - min_step_size)(1 + cos(π (k-1)/K)) / 2``, from
    ``step_size`` down towards ``min_step_size``.
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ConfigError(f"the number of Langevin steps must be an integer >= 1, got {n_steps!r}")
    if not np.isfinite(step_size) or step_size <= 0:
        raise ConfigError(f"step_size must be a finite number > 0, got {step_size!r}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown step-size schedule {schedule!r}; choose one of {SCHEDULES}")
    if schedule == "constant":
        return np.full(n_steps, step_size, np.float32)
    if not 0.0 <= min_step_size <= step_size:
        raise ConfigError(
            f"the cosine schedule needs 0 <= min_step_size <= step_size, got "
            f"min_step_size={min_step_size!r}, step_size={step_size!r}"
        )
    k = np.arange(n_steps)
    eta = min_step_size + (step_size - min_step_size) * (1 + np.cos(np.pi * k / n_steps)) / 2
    return eta.astype(np.float32)


def langevin_gaussian_map(
    etas: Float[Array, " K"], precision: Float[Array, " V"]
) -> tuple[Float[Array, " V"], Float[Array, " V"]]:
    """``(a, s²)`` of ``K`` Langevin steps on ``½ Σ β (v - m)²``: ``v_K ~ N(m + a (v_0 - m), s²)``.

    ``a = Π_k (1 - η_k β)`` and ``s² = Σ_k 2 η_k Π_{j>k} (1 - η_j β)²`` (module docstring),
    by the forward recursion ``a ← (1 - η_k β) a``, ``s² ← (1 - η_k β)² s² + 2 η_k``.
    """

    def body(carry, eta):
        a, s2 = carry
        r = 1.0 - eta * precision
        return (r * a, r * r * s2 + 2.0 * eta), None

    init = (jnp.ones_like(precision), jnp.zeros_like(precision))
    (a, s2), _ = jax.lax.scan(body, init, etas)
    return a, s2


def _log_q(v_to, v_from, mean, a, s2):
    """``log N(v_to; mean + a (v_from - mean), diag(s2))``."""
    d = v_to - mean - a * (v_from - mean)
    return -0.5 * jnp.sum(d * d / s2 + jnp.log(2 * jnp.pi * s2))


def gibbs_langevin(
    model: GaussianVisibleModel,
    step_size: float,
    n_langevin: int = 10,
    *,
    schedule: str = "cosine",
    min_step_size: float = 0.0,
    adjusted: bool = True,
    relative: bool = False,
) -> Kernel:
    """The Gibbs–Langevin kernel of the module docstring on one ``(v, h)`` chain.

    ``step_size``/``schedule``/``min_step_size`` give ``η_1..η_K`` (:func:`step_sizes`),
    ``K = n_langevin``; ``relative=True`` scales them by ``mean(1/β(h))``.  ``adjusted``
    applies the Metropolis–Hastings correction on the joint ``p(v, h)`` (exact invariance
    for any step size); without it the kernel always moves and is biased by the
    discretisation.  Info: :class:`GibbsLangevinInfo` (acceptance rate).
    """
    base = jnp.asarray(step_sizes(step_size, n_langevin, schedule, min_step_size))
    grad_v = jax.grad(model.energy, argnums=1)

    def etas_for(params: Params, h: Hidden) -> Float[Array, " K"]:
        if not relative:
            return base
        return base * jnp.mean(1.0 / model.visible_precision(params, h))

    def init(state: State) -> State:
        return state

    def step(key: PRNGKeyArray, state: State, params: Params) -> tuple[State, GibbsLangevinInfo]:
        k_noise, k_h, k_u = jax.random.split(key, 3)
        v0, h0 = state.v, state.h
        etas = etas_for(params, h0)
        noise = jax.random.normal(k_noise, (n_langevin, *v0.shape), v0.dtype)

        def langevin(v, inp):
            eta, xi = inp
            return v - eta * grad_v(params, v, h0) + jnp.sqrt(2.0 * eta) * xi, None

        v1, _ = jax.lax.scan(langevin, v0, (etas, noise))
        h1 = model.sample_hidden(k_h, params, v1)
        proposal = state._replace(v=v1, h=h1)
        if not adjusted:
            return proposal, GibbsLangevinInfo(jnp.ones((), v0.dtype), jnp.ones((), bool))

        a0, s0 = langevin_gaussian_map(etas, model.visible_precision(params, h0))
        a1, s1 = langevin_gaussian_map(etas_for(params, h1), model.visible_precision(params, h1))
        log_fwd = _log_q(v1, v0, model.visible_mean(params, h0), a0, s0)
        log_bwd = _log_q(v0, v1, model.visible_mean(params, h1), a1, s1)
        log_p1 = -model.energy(params, v1, h1) - model.hidden_log_prob(params, v1, h1)
        log_p0 = -model.energy(params, v0, h0) - model.hidden_log_prob(params, v0, h0)
        log_alpha = log_p1 - log_p0 + log_bwd - log_fwd
        log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
        accept = jnp.log(jax.random.uniform(k_u, dtype=v0.dtype)) < log_alpha
        new = jax.tree_util.tree_map(lambda x, y: jnp.where(accept, x, y), proposal, state)
        return new, GibbsLangevinInfo(jnp.minimum(1.0, jnp.exp(log_alpha)), accept)

    return Kernel(init=init, step=step)


def from_visible(model: GaussianVisibleModel) -> Callable[[PRNGKeyArray, Params, Array], RBMState]:
    """``(key, params, v) -> RBMState(v, h ~ P(h | v))``: a chain state at ``v``."""

    def build(key: PRNGKeyArray, params: Params, v: Array) -> RBMState:
        v = jnp.asarray(v, jnp.float32)
        return RBMState(v=v, h=model.sample_hidden(key, params, v))

    return build


def gibbs_langevin_chain(
    model: GaussianVisibleModel, step_size: float, n_langevin: int = 10, **kwargs: Any
) -> ChainSpec:
    """:func:`gibbs_langevin` as a :class:`egm.samplers.ChainSpec` for CD/PCD training
    (states hold only samples, so ``refresh`` is the identity)."""
    kernel = gibbs_langevin(model, step_size, n_langevin, **kwargs)
    return ChainSpec(kernel, from_visible(model), lambda s: s.v, lambda s, params: s)
