r"""Mean-covariance RBM (Ranzato & Hinton 2010; §20.5.1 "mean and covariance RBM").

Visible ``v ∈ ℝ^D``; factor filters ``C`` (D, F); pooling ``P`` (F, N) kept NON-NEGATIVE
(the paper's ``P`` is non-positive; here the sign is written out so that ``P ≥ 0``);
binary covariance hiddens ``h_c ∈ {0,1}^N`` with biases ``b_c``; binary mean hiddens
``h_m ∈ {0,1}^M`` with weights ``W`` (D, M) and biases ``b_m``; visible bias ``b_v``:

.. math:: E(v, h_c, h_m) = \tfrac12 \sum_k h_{c,k} \sum_f P_{fk} (C_f^\top \tilde v)^2
          - b_c^\top h_c + \tfrac12 v^\top v - b_v^\top v - h_m^\top W^\top v - b_m^\top h_m .

``ṽ`` is the input of the covariance part: ``ṽ = v`` (``normalize_input=False``) or the
paper's normalised input ``ṽ = v / sqrt(mean(v²) + ε)`` (``normalize_input=True``,
default ``ε`` = :data:`egm.energies._factored.NORMALIZE_EPS` = 0.5,
:func:`egm.energies._factored.normalize`), which makes the covariance units respond to
the *pattern* of a patch rather than its contrast.  The mean part always sees ``v``.

Both hidden layers are conditionally independent given ``v``:
``P(h_c,k = 1 | v) = σ(b_c,k − ½ Σ_f P_fk (C_fᵀṽ)²)``, ``P(h_m,j = 1 | v) = σ(b_m,j + W_jᵀv)``,
and summing them out gives the free energy

.. math:: F(v) = -\sum_k \zeta\big(b_{c,k} - \tfrac12 \textstyle\sum_f P_{fk}(C_f^\top\tilde v)^2\big)
          + \tfrac12 v^\top v - b_v^\top v - \sum_j \zeta(b_{m,j} + W_j^\top v),
          \qquad \zeta = \mathrm{softplus}.

Without input normalisation ``p(v | h) = N(Λ⁻¹(b_v + W h_m), Λ⁻¹)`` with
``Λ = I + C diag(P h_c) Cᵀ`` exactly, so block Gibbs (:data:`BLOCKS`: ``h | v`` then
``v | h``) is available, and ``v`` integrates out analytically for each ``h``
(:func:`free_energy_hidden`).  With normalisation ``v | h`` is no longer Gaussian; sample
``v`` by HMC on the free energy (``egm.samplers.hmc(log_density)``), as the paper does.

Settings that are not parameters (``normalize_input``, ``eps``) are keyword arguments;
bind them with ``functools.partial`` to get ``free_energy(params, v)`` for training steps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import _factored
from egm.energies._factored import NORMALIZE_EPS, FactoredState
from egm.energies.rbm import bernoulli_logits
from egm.errors import ConfigError


class MCRBMParams(NamedTuple):
    """``C`` (D, F), ``P`` (F, N) ≥ 0, ``b_c`` (N,), ``W`` (D, M), ``b_m`` (M,), ``b_v`` (D,)."""

    C: Float[Array, "D F"]
    P: Float[Array, "F N"]
    b_c: Float[Array, " N"]
    W: Float[Array, "D M"]
    b_m: Float[Array, " M"]
    b_v: Float[Array, " D"]


#: A chain state ``(v, h_c, h_m)``.
MCRBMState = FactoredState


def init(
    key: PRNGKeyArray,
    n_visible: int,
    n_factors: int,
    n_cov: int,
    n_mean: int,
    *,
    pooling: str = "identity",
    c_norm: float = 1.0,
    w_scale: float = 0.05,
    b_c: float = 2.0,
    b_m: float = -2.0,
) -> MCRBMParams:
    """Initial parameters in the spirit of the paper (choices stated here).

    ``C``: Gaussian columns rescaled to L2 norm ``c_norm``; ``P``: identity (``F == N``) or
    a topographic ``3×3`` pooling (:func:`egm.energies._factored.init_pooling`), unit-L1
    columns; ``b_c = 2`` (covariance units start mostly ON, so the model starts as a
    constrained Gaussian); ``W ~ N(0, w_scale²)``; ``b_m = −2`` (mean units start sparse);
    ``b_v = 0`` (for whitened, zero-mean data).
    """
    _factored.check_sizes(n_visible=n_visible, n_factors=n_factors, n_cov=n_cov, n_mean=n_mean)
    k_c, k_w = jax.random.split(key)
    C, P = _factored.init_filters(k_c, n_visible, n_factors, n_cov, pooling, c_norm)
    return MCRBMParams(
        C=C,
        P=P,
        b_c=jnp.full((n_cov,), b_c, jnp.float32),
        W=w_scale * jax.random.normal(k_w, (n_visible, n_mean), jnp.float32),
        b_m=jnp.full((n_mean,), b_m, jnp.float32),
        b_v=jnp.zeros((n_visible,), jnp.float32),
    )


def covariance_input(
    v: Float[Array, " D"], *, normalize_input: bool = False, eps: float = NORMALIZE_EPS
) -> Float[Array, " D"]:
    """``ṽ``: ``v`` itself, or ``v / sqrt(mean(v²) + eps)`` when ``normalize_input``."""
    return _factored.normalize(v, eps) if normalize_input else v


def covariance_hidden_logits(
    params: MCRBMParams,
    v: Float[Array, " D"],
    *,
    normalize_input: bool = False,
    eps: float = NORMALIZE_EPS,
) -> Float[Array, " N"]:
    """``b_c − ½ Pᵀ(Cᵀṽ)²``: ``P(h_c = 1 | v) = σ(·)``."""
    vt = covariance_input(v, normalize_input=normalize_input, eps=eps)
    return params.b_c - _factored.pooled_squares(params.C, params.P, vt)


def mean_hidden_logits(params: MCRBMParams, v: Float[Array, " D"]) -> Float[Array, " M"]:
    """``b_m + Wᵀv``: ``P(h_m = 1 | v) = σ(·)``."""
    return _factored.mean_hidden_logits(params, v)


def energy(
    params: MCRBMParams,
    v: Float[Array, " D"],
    h_c: Float[Array, " N"],
    h_m: Float[Array, " M"],
    *,
    normalize_input: bool = False,
    eps: float = NORMALIZE_EPS,
) -> Float[Array, ""]:
    """``E(v, h_c, h_m)`` of the module docstring."""
    vt = covariance_input(v, normalize_input=normalize_input, eps=eps)
    cov = _factored.pooled_squares(params.C, params.P, vt) @ h_c - params.b_c @ h_c
    return cov + _factored.mean_energy(params, v, h_m)


def free_energy(
    params: MCRBMParams,
    v: Float[Array, " D"],
    *,
    normalize_input: bool = False,
    eps: float = NORMALIZE_EPS,
) -> Float[Array, ""]:
    """``F(v) = −Σ_k ζ(b_c,k − ½ Σ_f P_fk (C_fᵀṽ)²) + ½vᵀv − b_vᵀv − Σ_j ζ(b_m,j + W_jᵀv)``."""
    cov = -jnp.sum(
        jax.nn.softplus(
            covariance_hidden_logits(params, v, normalize_input=normalize_input, eps=eps)
        )
    )
    return cov + _factored.mean_free_energy(params, v)


def log_density(
    params: MCRBMParams,
    v: Float[Array, " D"],
    *,
    normalize_input: bool = False,
    eps: float = NORMALIZE_EPS,
) -> Float[Array, ""]:
    """Unnormalised ``log p(v) = −F(v)``: the target of HMC / Langevin on ``v``."""
    return -free_energy(params, v, normalize_input=normalize_input, eps=eps)


def free_energy_hidden(
    params: MCRBMParams, h_c: Float[Array, " N"], h_m: Float[Array, " M"]
) -> Float[Array, ""]:
    """``F_h(h) = −log ∫ exp(−E(v, h)) dv`` WITHOUT input normalisation (Gaussian integral):
    ``−b_cᵀh_c − b_mᵀh_m − ½ mᵀΛ⁻¹m − (D/2) log 2π + ½ log det Λ`` with ``m = b_v + W h_m``.
    ``log Z = logsumexp_h −F_h(h)`` for small hidden layers."""
    m = params.b_v + params.W @ h_m
    log_int = _factored.gaussian_log_integral(params.C, params.P, h_c, m)
    return -(params.b_c @ h_c) - (params.b_m @ h_m) - log_int


def sample_hidden(
    key: PRNGKeyArray,
    params: MCRBMParams,
    v: Float[Array, " D"],
    *,
    normalize_input: bool = False,
    eps: float = NORMALIZE_EPS,
) -> tuple[Float[Array, " N"], Float[Array, " M"]]:
    """``(h_c, h_m) ~ P(h_c | v) P(h_m | v)`` (Bernoulli, conditionally independent)."""
    k_c, k_m = jax.random.split(key)
    logits = covariance_hidden_logits(params, v, normalize_input=normalize_input, eps=eps)
    h_c = bernoulli_logits(k_c, logits)
    return h_c, _factored.sample_mean_hidden(k_m, params, v)


def sample_visible(
    key: PRNGKeyArray, params: MCRBMParams, h_c: Float[Array, " N"], h_m: Float[Array, " M"]
) -> Float[Array, " D"]:
    """``v ~ N(Λ⁻¹(b_v + W h_m), Λ⁻¹)``, ``Λ = I + C diag(P h_c) Cᵀ``: exact, and the
    conditional of the model WITHOUT input normalisation only."""
    return _factored.sample_visible(key, params, h_c, h_m)


def init_state(
    key: PRNGKeyArray,
    params: MCRBMParams,
    v: Float[Array, " D"],
    *,
    normalize_input: bool = False,
    eps: float = NORMALIZE_EPS,
) -> MCRBMState:
    """A chain state at ``v`` with both hidden layers drawn from ``P(h | v)`` (a
    ``from_visible`` for :func:`egm.samplers.gibbs_chain`)."""
    v = jnp.asarray(v, jnp.float32)
    h_c, h_m = sample_hidden(key, params, v, normalize_input=normalize_input, eps=eps)
    return FactoredState(v, h_c, h_m)


def _update_hidden(key: PRNGKeyArray, params: MCRBMParams, state: MCRBMState) -> MCRBMState:
    h_c, h_m = sample_hidden(key, params, state.v)
    return state._replace(h_c=h_c, h_m=h_m)


def _update_visible(key: PRNGKeyArray, params: MCRBMParams, state: MCRBMState) -> MCRBMState:
    return state._replace(v=sample_visible(key, params, state.h_c, state.h_m))


#: Block Gibbs (``h | v`` then ``v | h``) for the model WITHOUT input normalisation, for
#: :func:`egm.samplers.block_gibbs`.  With normalisation use HMC on :func:`log_density`.
BLOCKS = (_update_hidden, _update_visible)


def project(params: MCRBMParams, *, c_norm: float | None = 1.0) -> MCRBMParams:
    """Filter normalisation after each update (pass as ``make_fe_step(project=...)``):
    columns of ``C`` to L2 norm ``c_norm`` (``None``: the mean column norm), columns of
    ``P`` clipped to ``≥ 0`` and to unit L1 norm
    (:func:`egm.energies._factored.project_filters`)."""
    C, P = _factored.project_filters(params.C, params.P, c_norm)
    return params._replace(C=C, P=P)


def gibbs_blocks(*, normalize_input: bool = False) -> tuple:
    """:data:`BLOCKS`, or a :class:`ConfigError` if asked for with normalised input (then
    ``p(v | h)`` is not Gaussian and ``v`` must be sampled by HMC on :func:`log_density`)."""
    if normalize_input:
        raise ConfigError(
            "block Gibbs needs p(v | h) Gaussian, which holds only without input normalisation; "
            "use normalize_input=False or sample v by HMC on mcrbm.log_density"
        )
    return BLOCKS
