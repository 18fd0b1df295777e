r"""Bernoulli–Bernoulli restricted Boltzmann machine (§20.2).

Energy of one configuration (Deep Learning eq. 20.5, in the book's sign):

.. math:: E(v, h) = -b^\top v - c^\top h - v^\top W h,

with ``v ∈ {0,1}^V`` and ``h ∈ {0,1}^H``.  Summing out ``h`` gives the free energy

.. math:: F(v) = -b^\top v - \sum_j \zeta(c_j + v^\top W_{:,j}),\qquad \zeta = \mathrm{softplus},

so ``p(v) = exp(-F(v)) / Z``.  The conditionals factorise (eqs. 20.10–20.12):
``P(h_j = 1 | v) = σ(c_j + v^T W_{:,j})`` and ``P(v_i = 1 | h) = σ(b_i + W_{i,:} h)``.

Every function here acts on ONE example; batches and chains come from ``jax.vmap``.
The RBM is a two-block model: block 0 is ``h`` given ``v``, block 1 is ``v`` given ``h``
(:data:`BLOCKS`), which is all :func:`egm.samplers.block_gibbs` needs.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError


class RBMParams(NamedTuple):
    """Parameters of a binary RBM: couplings ``W`` (V, H), visible bias ``b`` (V,), hidden bias ``c`` (H,)."""

    W: Float[Array, "V H"]
    b: Float[Array, " V"]
    c: Float[Array, " H"]


class RBMState(NamedTuple):
    """One joint configuration (or, vmapped, a batch of chains) of an RBM."""

    v: Float[Array, " V"]
    h: Float[Array, " H"]


def init(
    key: PRNGKeyArray,
    n_visible: int,
    n_hidden: int,
    *,
    scale: float = 0.01,
    data_mean: Float[Array, " V"] | None = None,
    eps: float = 1e-3,
) -> RBMParams:
    """Initial parameters as recommended by Hinton's practical guide (2010, §8).

    ``W ~ N(0, scale²)``, ``c = 0`` and, when ``data_mean`` is given, the visible biases
    are the base-rate logits ``b_i = log(p_i / (1 - p_i))`` with ``p`` clipped to
    ``[eps, 1 - eps]``; otherwise ``b = 0``.
    """
    if n_visible <= 0 or n_hidden <= 0:
        raise ConfigError(
            f"an RBM needs at least one visible and one hidden unit, got n_visible={n_visible}, "
            f"n_hidden={n_hidden}"
        )
    W = scale * jax.random.normal(key, (n_visible, n_hidden), dtype=jnp.float32)
    if data_mean is None:
        b = jnp.zeros((n_visible,), jnp.float32)
    else:
        data_mean = jnp.asarray(data_mean, jnp.float32)
        if data_mean.shape != (n_visible,):
            raise ConfigError(
                f"data_mean must have shape ({n_visible},), got {data_mean.shape}; pass x.mean(0)"
            )
        b = base_rate_logits(data_mean, eps)
    return RBMParams(W=W, b=b, c=jnp.zeros((n_hidden,), jnp.float32))


def base_rate_logits(p: Float[Array, " V"], eps: float = 1e-3) -> Float[Array, " V"]:
    """Logits ``log p - log(1-p)`` of marginal rates, clipped away from 0 and 1."""
    p = jnp.clip(jnp.asarray(p, jnp.float32), eps, 1.0 - eps)
    return jnp.log(p) - jnp.log1p(-p)


def energy(params: RBMParams, v: Float[Array, " V"], h: Float[Array, " H"]) -> Float[Array, ""]:
    """Joint energy ``E(v, h) = -bᵀv - cᵀh - vᵀWh`` (eq. 20.5)."""
    return -(params.b @ v) - (params.c @ h) - v @ params.W @ h


def hidden_preactivation(params: RBMParams, v: Float[Array, " V"]) -> Float[Array, " H"]:
    """``c + Wᵀv``: the input to every hidden unit."""
    return params.c + v @ params.W


def visible_preactivation(params: RBMParams, h: Float[Array, " H"]) -> Float[Array, " V"]:
    """``b + W h``: the input to every visible unit."""
    return params.b + params.W @ h


def free_energy(params: RBMParams, v: Float[Array, " V"]) -> Float[Array, ""]:
    """``F(v) = -bᵀv - Σ_j softplus(c_j + vᵀW_{:,j})``, so that ``log p(v) = -F(v) - log Z``."""
    return -(params.b @ v) - jnp.sum(jax.nn.softplus(hidden_preactivation(params, v)))


def free_energy_hidden(params: RBMParams, h: Float[Array, " H"]) -> Float[Array, ""]:
    """Free energy of ``h`` with ``v`` summed out: ``-cᵀh - Σ_i softplus(b_i + W_{i,:}h)``."""
    return -(params.c @ h) - jnp.sum(jax.nn.softplus(visible_preactivation(params, h)))


def log_density(params: RBMParams, v: Float[Array, " V"]) -> Float[Array, ""]:
    """Unnormalised log density of ``v`` (``-F(v)``), for user-supplied MCMC.

    ``functools.partial(log_density, params)`` is a function of one state, the form
    blackjax kernels (``logdensity_fn``) accept.
    """
    return -free_energy(params, v)


def joint_log_density(params: RBMParams, state: RBMState) -> Float[Array, ""]:
    """Unnormalised joint log density ``-E(v, h)`` of one :class:`RBMState`."""
    return -energy(params, state.v, state.h)


def hidden_probs(params: RBMParams, v: Float[Array, " V"]) -> Float[Array, " H"]:
    """``P(h_j = 1 | v) = σ(c_j + vᵀW_{:,j})`` (eq. 20.11)."""
    return jax.nn.sigmoid(hidden_preactivation(params, v))


def visible_probs(params: RBMParams, h: Float[Array, " H"]) -> Float[Array, " V"]:
    """``P(v_i = 1 | h) = σ(b_i + W_{i,:}h)`` (eq. 20.12)."""
    return jax.nn.sigmoid(visible_preactivation(params, h))


def bernoulli_logits(key: PRNGKeyArray, logits: Float[Array, "*n"]) -> Float[Array, "*n"]:
    """Draw ``x ~ Bernoulli(σ(logits))`` as float32 0/1."""
    u = jax.random.uniform(key, logits.shape, dtype=logits.dtype)
    return (u < jax.nn.sigmoid(logits)).astype(logits.dtype)


def sample_hidden(
    key: PRNGKeyArray, params: RBMParams, v: Float[Array, " V"]
) -> Float[Array, " H"]:
    """Draw ``h ~ P(h | v)``."""
    return bernoulli_logits(key, hidden_preactivation(params, v))


def sample_visible(
    key: PRNGKeyArray, params: RBMParams, h: Float[Array, " H"]
) -> Float[Array, " V"]:
    """Draw ``v ~ P(v | h)``."""
    return bernoulli_logits(key, visible_preactivation(params, h))


def bipartite_blocks(sample_h, sample_v) -> tuple:
    """Block updates ``(h | v, v | h)`` of any two-layer model whose state is an
    :class:`RBMState`, from its conditional samplers ``sample_h(key, params, v)`` and
    ``sample_v(key, params, h)`` (shared by the binary and the Gaussian–Bernoulli RBM)."""

    def update_hidden(key, params, state: RBMState) -> RBMState:
        return state._replace(h=sample_h(key, params, state.v))

    def update_visible(key, params, state: RBMState) -> RBMState:
        return state._replace(v=sample_v(key, params, state.h))

    return (update_hidden, update_visible)


#: Conditional block samplers in sweep order (h | v, then v | h); see
#: :func:`egm.samplers.block_gibbs`.
BLOCKS = bipartite_blocks(sample_hidden, sample_visible)


def init_state(params: RBMParams, v: Float[Array, " V"]) -> RBMState:
    """A chain state at visible configuration ``v`` with ``h = P(h=1 | v)`` (its mean):
    enough for sweeps that resample ``h`` first (:data:`BLOCKS`)."""
    v = jnp.asarray(v, jnp.float32)
    return RBMState(v=v, h=hidden_probs(params, v))


def sample_state(key: PRNGKeyArray, params: RBMParams, v: Float[Array, " V"]) -> RBMState:
    """A chain state at ``v`` with ``h ~ P(h | v)``: needed by sweeps that start with ``v | h``
    (the down-up sweeps of CD/PCD in :mod:`egm.estimators.contrastive`)."""
    v = jnp.asarray(v, jnp.float32)
    return RBMState(v=v, h=sample_hidden(key, params, v))


def reconstruction(params: RBMParams, v: Float[Array, " V"]) -> Float[Array, " V"]:
    """Mean-field up-down pass ``P(v | h = P(h|v))``: the usual reconstruction."""
    return visible_probs(params, hidden_probs(params, v))


def tempered(params: RBMParams, beta: Float[Array, ""], base_b: Float[Array, " V"]) -> RBMParams:
    r"""The RBM ``p_β(v, h) ∝ p_A(v, h)^{1-β} p(v, h)^β`` on the geometric path (of joint
    densities) from a base-rate model.

    With the base model ``p_A(v, h) ∝ exp(b_Aᵀv)`` (``W = 0, c = 0``), the intermediate
    distribution is itself an RBM with parameters ``(βW, (1-β)b_A + βb, βc)``
    (Salakhutdinov & Murray 2008, eq. 13), so every RBM sampler serves AIS unchanged.
    """
    return RBMParams(
        W=beta * params.W, b=(1.0 - beta) * base_b + beta * params.b, c=beta * params.c
    )


def check_data_shape(params: RBMParams, v: Float[Array, "B V"], name: str = "data") -> None:
    """Raise :class:`DataError` unless ``v`` is a batch ``(B, V)`` matching the RBM (static shapes:
    safe inside ``jit``)."""
    from egm.errors import DataError

    V = params.W.shape[0]
    if v.ndim != 2 or v.shape[1] != V:
        raise DataError(
            f"{name} has shape {tuple(v.shape)} but this RBM needs (batch, {V}); flatten images "
            f"with x.reshape(len(x), -1)"
        )


def check_shapes(params: RBMParams) -> None:
    """Raise :class:`ConfigError` if the parameter shapes are inconsistent."""
    V, H = params.W.shape
    if params.b.shape != (V,) or params.c.shape != (H,):
        raise ConfigError(
            f"inconsistent RBM parameters: W {params.W.shape}, b {params.b.shape}, c {params.c.shape}; "
            f"expected b ({V},) and c ({H},)"
        )
