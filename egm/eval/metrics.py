"""Cheap training-time diagnostics of energy models (evaluated on a fixed data subset).

- reconstruction error of one mean-field up-down pass (a rough signal only: it is not
  the objective CD optimises);
- the free-energy gap ``mean F(valid) - mean F(train)`` (Hinton 2010, §6): it grows when the
  model overfits, since ``log Z`` cancels;
- the pseudo-log-likelihood ``Σ_i log P(v_i | v_{-i})`` (§18.3), stochastically estimated
  by flipping one random bit per example and multiplying by ``D``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import rbm
from egm.energies.rbm import RBMParams


def reconstruction_error(params: RBMParams, v: Float[Array, "N V"]) -> Float[Array, ""]:
    """Mean over examples of ``||v - P(v | h = P(h|v))||²``."""
    recon = jax.vmap(rbm.reconstruction, in_axes=(None, 0))(params, v)
    return jnp.mean(jnp.sum((v - recon) ** 2, axis=-1))


def mean_free_energy(
    free_energy: Callable[[Any, Array], Array], params: Any, v: Float[Array, "N V"]
) -> Float[Array, ""]:
    """``mean_n F(v_n)``."""
    return jnp.mean(jax.vmap(free_energy, in_axes=(None, 0))(params, v))


def free_energy_gap(
    free_energy: Callable[[Any, Array], Array],
    params: Any,
    v_train: Float[Array, "N V"],
    v_valid: Float[Array, "M V"],
) -> Float[Array, ""]:
    """``mean F(valid) - mean F(train)``: positive and growing means overfitting."""
    return mean_free_energy(free_energy, params, v_valid) - mean_free_energy(
        free_energy, params, v_train
    )


def stochastic_pseudo_log_likelihood(
    key: PRNGKeyArray,
    free_energy: Callable[[Any, Array], Array],
    params: Any,
    v: Float[Array, "N V"],
) -> Float[Array, ""]:
    """Unbiased estimate of :func:`pseudo_log_likelihood`: one random bit ``i`` per example,
    ``D · log P(v_i | v_{-i})`` (two free energies per example instead of ``D + 1``)."""
    D = v.shape[1]
    fe = jax.vmap(free_energy, in_axes=(None, 0))
    rows = jnp.arange(v.shape[0])
    i = jax.random.randint(key, (v.shape[0],), 0, D)
    flipped = v.at[rows, i].set(1.0 - v[rows, i])
    return D * jnp.mean(-jax.nn.softplus(fe(params, v) - fe(params, flipped)))


def pseudo_log_likelihood(
    free_energy: Callable[[Any, Array], Array],
    params: Any,
    v: Float[Array, "N V"],
) -> Float[Array, ""]:
    """Mean pseudo-log-likelihood ``Σ_i log P(v_i | v_{-i})`` per example of binary data (§18.3).

    ``log P(v_i | v_{-i}) = -softplus(F(v) - F(ṽ))`` with ``ṽ`` = ``v`` with bit ``i``
    flipped: ``D + 1`` free energies per example.
    """
    D = v.shape[1]
    fe = jax.vmap(free_energy, in_axes=(None, 0))
    f = fe(params, v)

    def one_bit(i):
        flipped = v.at[:, i].set(1.0 - v[:, i])
        return -jax.nn.softplus(f - fe(params, flipped))

    return jnp.mean(jnp.sum(jax.lax.map(one_bit, jnp.arange(D)), axis=0))
