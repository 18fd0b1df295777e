"""Exact partition functions and log-likelihoods by enumeration, for small models.

These are the ground truth every stochastic estimator in egm is tested against
(DESIGN.md §5).  The RBM is enumerated over its *smaller* layer: with ``H`` hidden
units, ``log Z = logsumexp_h -F_h(h)`` costs ``2^H`` free-energy evaluations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from egm.energies import boltzmann, grbm, rbm
from egm.energies.boltzmann import BMParams
from egm.energies.rbm import RBMParams
from egm.errors import ConfigError

MAX_ENUMERATION_UNITS = 20  # 2^20 x 20 states: 80 MB as float32


def all_binary_states(n: int) -> Float[Array, "2**n n"]:
    """All ``2^n`` binary vectors, row ``i`` holding the bits of ``i`` (most significant first)."""
    if n > MAX_ENUMERATION_UNITS:
        raise ConfigError(
            f"exact enumeration over {n} binary units needs 2^{n} states; the limit is "
            f"{MAX_ENUMERATION_UNITS} units. Use AIS (egm.estimators.ais) for larger models."
        )
    idx = np.arange(2**n, dtype=np.int64)[:, None]
    bits = (idx >> np.arange(n - 1, -1, -1, dtype=np.int64)[None, :]) & 1
    return jnp.asarray(bits, dtype=jnp.float32)


def _logsumexp_chunked(fn, states: Float[Array, "S n"], chunk: int = 4096) -> Float[Array, ""]:
    """``logsumexp_s fn(states[s])`` computed in chunks so memory stays bounded."""
    n_states = states.shape[0]
    if n_states <= chunk:
        return jax.nn.logsumexp(jax.vmap(fn)(states))
    chunks = states.reshape(n_states // chunk, chunk, states.shape[1])
    per_chunk = jax.lax.map(lambda s: jax.nn.logsumexp(jax.vmap(fn)(s)), chunks)
    return jax.nn.logsumexp(per_chunk)


def rbm_log_partition(params: RBMParams) -> Float[Array, ""]:
    """Exact ``log Z`` of a binary RBM, enumerating the smaller layer (differentiable)."""
    V, H = params.W.shape
    if H <= V:
        return _logsumexp_chunked(
            lambda h: -rbm.free_energy_hidden(params, h), all_binary_states(H)
        )
    return _logsumexp_chunked(lambda v: -rbm.free_energy(params, v), all_binary_states(V))


def rbm_log_likelihood(params: RBMParams, v: Float[Array, "N V"]) -> Float[Array, " N"]:
    """Exact ``log p(v) = -F(v) - log Z`` for each row of ``v``."""
    log_z = rbm_log_partition(params)
    return -jax.vmap(rbm.free_energy, in_axes=(None, 0))(params, v) - log_z


def rbm_visible_distribution(params: RBMParams) -> Float[Array, " 2**V"]:
    """Exact ``p(v)`` over all ``2^V`` visible vectors, in :func:`all_binary_states` order."""
    V = params.W.shape[0]
    logp = -jax.vmap(rbm.free_energy, in_axes=(None, 0))(params, all_binary_states(V))
    return jax.nn.softmax(logp)


def rbm_joint_distribution(params: RBMParams) -> Float[Array, " 2**(V+H)"]:
    """Exact ``p(v, h)`` over all joint states, index ``= index(v) * 2^H + index(h)``."""
    V, H = params.W.shape
    x = all_binary_states(V + H)
    logp = -jax.vmap(lambda s: rbm.energy(params, s[:V], s[V:]))(x)
    return jax.nn.softmax(logp)


def bm_log_partition(params: BMParams) -> Float[Array, ""]:
    """Exact ``log Z`` of a general Boltzmann machine by enumerating all ``2^n`` states."""
    n = params.a.shape[0]
    return _logsumexp_chunked(lambda x: -boltzmann.energy(params, x), all_binary_states(n))


def bm_distribution(params: BMParams) -> Float[Array, " 2**n"]:
    """Exact distribution of a general BM over all ``2^n`` states."""
    n = params.a.shape[0]
    logp = -jax.vmap(lambda x: boltzmann.energy(params, x))(all_binary_states(n))
    return jax.nn.softmax(logp)


def state_index(x: Float[Array, "N n"]) -> Array:
    """Index of each binary row in :func:`all_binary_states` order."""
    n = x.shape[-1]
    weights = 2 ** jnp.arange(n - 1, -1, -1)
    return jnp.sum(x.astype(jnp.int32) * weights, axis=-1)


def bm_log_likelihood(params: BMParams, v: Float[Array, "N V"]) -> Float[Array, " N"]:
    """Exact ``log p(v) = log Σ_h exp(-E(v, h)) - log Z`` of a general BM (units visible first)."""
    n, V = params.a.shape[0], v.shape[1]
    hs = all_binary_states(n - V)
    log_z = bm_log_partition(params)

    def one(vv):
        x = jnp.concatenate([jnp.broadcast_to(vv, (hs.shape[0], V)), hs], axis=1)
        return jax.nn.logsumexp(jax.vmap(lambda s: -boltzmann.energy(params, s))(x))

    return jax.vmap(one)(v) - log_z


def grbm_log_partition(params: grbm.GRBMParams) -> Float[Array, ""]:
    """Exact ``log Z`` of a Gaussian–Bernoulli RBM: enumerate ``h``, integrate ``v`` analytically."""
    hs = all_binary_states(params.W.shape[1])
    return jax.nn.logsumexp(-jax.vmap(lambda h: grbm.free_energy_hidden(params, h))(hs))


def grbm_hidden_distribution(params: grbm.GRBMParams) -> Float[Array, " 2**H"]:
    """Exact marginal ``p(h)`` over all hidden states (``∝ exp(-F_h(h))``)."""
    hs = all_binary_states(params.W.shape[1])
    return jax.nn.softmax(-jax.vmap(lambda h: grbm.free_energy_hidden(params, h))(hs))


def grbm_log_likelihood(params: grbm.GRBMParams, v: Float[Array, "N V"]) -> Float[Array, " N"]:
    """Exact ``log p(v) = -F(v) - log Z`` of a small-hidden-layer GRBM (a density on ``ℝ^V``)."""
    return -jax.vmap(grbm.free_energy, (None, 0))(params, v) - grbm_log_partition(params)
