r"""Mean-product of Student-t (mPoT; Ranzato, Mnih & Hinton 2010, "Generating more realistic
images using gated MRF's"; §20.5.1).

The covariance hiddens of the mcRBM become positive, Gamma-distributed ``h_c ∈ (0, ∞)^N``
with shape parameters ``γ`` (N,); the mean part is the same unit-variance Gaussian–Bernoulli
RBM (binary ``h_m``, ``W``, ``b_m``, ``b_v``).  With filters ``C`` (D, F) and pooling
``P ≥ 0`` (F, N):

.. math:: E(v, h_c, h_m) = \sum_k \Big[h_{c,k}\big(1 + \tfrac12 \textstyle\sum_f P_{fk}
          (C_f^\top v)^2\big) + (1 - γ_k)\log h_{c,k}\Big]
          + \tfrac12 v^\top v - b_v^\top v - h_m^\top W^\top v - b_m^\top h_m .

With the rate ``r_k(v) = 1 + ½ Σ_f P_fk (C_fᵀv)²``:
``p(h_c,k | v) = Gamma(shape γ_k, rate r_k(v))`` and ``P(h_m,j = 1 | v) = σ(b_m,j + W_jᵀv)``.
Integrating ``∫_0^∞ h^{γ−1} e^{−h r} dh = Γ(γ) r^{−γ}`` out of each ``h_c,k`` and summing
out ``h_m`` gives the free energy

.. math:: F(v) = \sum_k \big[γ_k \log r_k(v) - \log Γ(γ_k)\big]
          + \tfrac12 v^\top v - b_v^\top v - \sum_j \zeta(b_{m,j} + W_j^\top v),

so each covariance unit contributes a Student-t-like factor ``r_k^{−γ_k}`` to ``p(v)``.
Given the hiddens, ``v ~ N(Λ⁻¹(b_v + W h_m), Λ⁻¹)`` with ``Λ = I + C diag(P h_c) Cᵀ``
(the shared exact Gaussian sampler), so block Gibbs (:data:`BLOCKS`: ``h_c, h_m | v`` then
``v | h``) runs between Gamma hiddens and Gaussian visibles; HMC on :func:`log_density`
is the alternative.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import _factored
from egm.energies._factored import FactoredState
from egm.errors import ConfigError

#: Default lower bound on ``γ`` kept by :func:`project`.
GAMMA_MIN = 0.5


class MPoTParams(NamedTuple):
    """``C`` (D, F), ``P`` (F, N) ≥ 0, Gamma shapes ``gamma`` (N,) > 0, ``W`` (D, M),
    ``b_m`` (M,), ``b_v`` (D,)."""

    C: Float[Array, "D F"]
    P: Float[Array, "F N"]
    gamma: Float[Array, " N"]
    W: Float[Array, "D M"]
    b_m: Float[Array, " M"]
    b_v: Float[Array, " D"]


#: A chain state ``(v, h_c, h_m)`` (``h_c`` positive reals).
MPoTState = FactoredState


def init(
    key: PRNGKeyArray,
    n_visible: int,
    n_factors: int,
    n_cov: int,
    n_mean: int,
    *,
    pooling: str = "identity",
    c_norm: float = 1.0,
    gamma: float = 2.0,
    w_scale: float = 0.05,
    b_m: float = -2.0,
) -> MPoTParams:
    """``C``: Gaussian columns of L2 norm ``c_norm``; ``P``: identity or topographic
    (:func:`egm.energies._factored.init_pooling`); ``γ = gamma`` for every unit;
    ``W ~ N(0, w_scale²)``, ``b_m = −2``, ``b_v = 0``."""
    _factored.check_sizes(n_visible=n_visible, n_factors=n_factors, n_cov=n_cov, n_mean=n_mean)
    if not gamma > 0:
        raise ConfigError(f"gamma (the Gamma shape) must be > 0, got {gamma!r}")
    k_c, k_w = jax.random.split(key)
    C, P = _factored.init_filters(k_c, n_visible, n_factors, n_cov, pooling, c_norm)
    return MPoTParams(
        C=C,
        P=P,
        gamma=jnp.full((n_cov,), gamma, jnp.float32),
        W=w_scale * jax.random.normal(k_w, (n_visible, n_mean), jnp.float32),
        b_m=jnp.full((n_mean,), b_m, jnp.float32),
        b_v=jnp.zeros((n_visible,), jnp.float32),
    )


def covariance_rate(params: MPoTParams, v: Float[Array, " D"]) -> Float[Array, " N"]:
    """``r(v) = 1 + ½ Pᵀ(Cᵀv)²``: the rate of ``p(h_c | v)``."""
    return 1.0 + _factored.pooled_squares(params.C, params.P, v)


def mean_hidden_logits(params: MPoTParams, v: Float[Array, " D"]) -> Float[Array, " M"]:
    """``b_m + Wᵀv``: ``P(h_m = 1 | v) = σ(·)``."""
    return _factored.mean_hidden_logits(params, v)


def energy(
    params: MPoTParams, v: Float[Array, " D"], h_c: Float[Array, " N"], h_m: Float[Array, " M"]
) -> Float[Array, ""]:
    """``E(v, h_c, h_m)`` of the module docstring (``h_c > 0``)."""
    cov = covariance_rate(params, v) @ h_c + (1.0 - params.gamma) @ jnp.log(h_c)
    return cov + _factored.mean_energy(params, v, h_m)


def free_energy(params: MPoTParams, v: Float[Array, " D"]) -> Float[Array, ""]:
    """``F(v) = Σ_k [γ_k log r_k(v) − log Γ(γ_k)] + ½vᵀv − b_vᵀv − Σ_j ζ(b_m,j + W_jᵀv)``."""
    cov = jnp.sum(
        params.gamma * jnp.log1p(_factored.pooled_squares(params.C, params.P, v))
        - gammaln(params.gamma)
    )
    return cov + _factored.mean_free_energy(params, v)


def log_density(params: MPoTParams, v: Float[Array, " D"]) -> Float[Array, ""]:
    """Unnormalised ``log p(v) = −F(v)``: the target of HMC / Langevin on ``v``."""
    return -free_energy(params, v)


def sample_hidden(
    key: PRNGKeyArray, params: MPoTParams, v: Float[Array, " D"]
) -> tuple[Float[Array, " N"], Float[Array, " M"]]:
    """``h_c,k ~ Gamma(γ_k, rate r_k(v))`` and ``h_m ~ Bernoulli(σ(b_m + Wᵀv))``."""
    k_c, k_m = jax.random.split(key)
    g = jax.random.gamma(k_c, params.gamma, dtype=params.gamma.dtype)
    return g / covariance_rate(params, v), _factored.sample_mean_hidden(k_m, params, v)


def sample_visible(
    key: PRNGKeyArray, params: MPoTParams, h_c: Float[Array, " N"], h_m: Float[Array, " M"]
) -> Float[Array, " D"]:
    """``v ~ N(Λ⁻¹(b_v + W h_m), Λ⁻¹)``, ``Λ = I + C diag(P h_c) Cᵀ`` (exact)."""
    return _factored.sample_visible(key, params, h_c, h_m)


def init_state(key: PRNGKeyArray, params: MPoTParams, v: Float[Array, " D"]) -> MPoTState:
    """A chain state at ``v`` with the hiddens drawn from ``p(h | v)`` (a ``from_visible``
    for :func:`egm.samplers.gibbs_chain`)."""
    v = jnp.asarray(v, jnp.float32)
    h_c, h_m = sample_hidden(key, params, v)
    return FactoredState(v, h_c, h_m)


def _update_hidden(key: PRNGKeyArray, params: MPoTParams, state: MPoTState) -> MPoTState:
    h_c, h_m = sample_hidden(key, params, state.v)
    return state._replace(h_c=h_c, h_m=h_m)


def _update_visible(key: PRNGKeyArray, params: MPoTParams, state: MPoTState) -> MPoTState:
    return state._replace(v=sample_visible(key, params, state.h_c, state.h_m))


#: Block Gibbs (``h_c, h_m | v`` then ``v | h``) for :func:`egm.samplers.block_gibbs`.
BLOCKS = (_update_hidden, _update_visible)


def project(
    params: MPoTParams, *, c_norm: float | None = 1.0, gamma_min: float = GAMMA_MIN
) -> MPoTParams:
    """Filter normalisation after each update (``make_fe_step(project=...)``): ``C``
    columns to L2 norm ``c_norm`` (``None``: their mean norm), ``P`` to ``≥ 0`` with unit-L1
    columns (:func:`egm.energies._factored.project_filters`), and ``γ`` clipped to
    ``≥ gamma_min`` so the Gamma shapes stay positive under any learning rate."""
    if not gamma_min > 0:
        raise ConfigError(f"gamma_min must be > 0, got {gamma_min!r}")
    C, P = _factored.project_filters(params.C, params.P, c_norm)
    return params._replace(C=C, P=P, gamma=jnp.maximum(params.gamma, gamma_min))
