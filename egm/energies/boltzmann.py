r"""The general Boltzmann machine of §20.1.

Units ``x = (v, h)`` are binary; the energy (eq. 20.2 / 20.4, with hidden units) is

.. math:: E(x) = -\tfrac12 x^\top U x - a^\top x,

with ``U`` symmetric with zero diagonal, so the couplings within the visible layer,
within the hidden layer and between them are the blocks of ``U``.  Every unit's
conditional is ``P(x_i = 1 | x_{-i}) = σ(a_i + Σ_j U_ij x_j)``.

An RBM is the special case whose within-layer blocks are zero
(:func:`from_rbm` builds it), which is how the tests check one against the other.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies.rbm import RBMParams
from egm.errors import ConfigError


class BMParams(NamedTuple):
    """Couplings ``U`` (n, n) (symmetric, zero diagonal) and biases ``a`` (n,) over units ``(v, h)``."""

    U: Float[Array, "n n"]
    a: Float[Array, " n"]


def symmetrize(U: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """``(U + Uᵀ)/2`` with the diagonal zeroed: the projection onto valid BM couplings."""
    U = 0.5 * (U + U.T)
    return U * (1.0 - jnp.eye(U.shape[0], dtype=U.dtype))


def init(key: PRNGKeyArray, n_units: int, *, scale: float = 0.01) -> BMParams:
    """Random symmetric couplings ``N(0, scale²)`` and zero biases."""
    U = symmetrize(scale * jax.random.normal(key, (n_units, n_units), jnp.float32) * jnp.sqrt(2.0))
    return BMParams(U=U, a=jnp.zeros((n_units,), jnp.float32))


def energy(params: BMParams, x: Float[Array, " n"]) -> Float[Array, ""]:
    """``E(x) = -½ xᵀUx - aᵀx`` for one configuration of all units."""
    return -0.5 * x @ params.U @ x - params.a @ x


def energy_vh(params: BMParams, v: Float[Array, " V"], h: Float[Array, " H"]) -> Float[Array, ""]:
    """Energy of visible ``v`` and hidden ``h`` (units ordered visible first)."""
    return energy(params, jnp.concatenate([v, h]))


def log_density(params: BMParams, x: Float[Array, " n"]) -> Float[Array, ""]:
    """Unnormalised log density ``-E(x)`` of one state, for user-supplied MCMC."""
    return -energy(params, x)


def unit_logit(params: BMParams, x: Float[Array, " n"], i: int | Array) -> Float[Array, ""]:
    """Logit of ``P(x_i = 1 | x_{-i})``: ``a_i + Σ_j U_ij x_j`` (the diagonal is zero)."""
    return params.a[i] + params.U[i] @ x


def from_rbm(params: RBMParams) -> BMParams:
    """The general-BM form of an RBM: ``U = [[0, W], [Wᵀ, 0]]``, ``a = (b, c)``."""
    V, H = params.W.shape
    U = jnp.zeros((V + H, V + H), params.W.dtype)
    U = U.at[:V, V:].set(params.W).at[V:, :V].set(params.W.T)
    return BMParams(U=U, a=jnp.concatenate([params.b, params.c]))


def sequential_gibbs_sweep(
    key: PRNGKeyArray,
    params: BMParams,
    x: Float[Array, " n"],
    update: Array | None = None,
) -> Float[Array, " n"]:
    """One systematic-scan Gibbs sweep: update ``x_0, x_1, ...`` in turn from their conditionals.

    ``update``: optional boolean mask (n,) of the units to resample; the others stay clamped
    (e.g. the visible units during the data-clamped positive phase).
    """
    n = x.shape[0]
    u = jax.random.uniform(key, (n,), dtype=x.dtype)
    mask = jnp.ones((n,), bool) if update is None else jnp.asarray(update, bool)

    def body(i, x):
        p = jax.nn.sigmoid(unit_logit(params, x, i))
        new = (u[i] < p).astype(x.dtype)
        return x.at[i].set(jnp.where(mask[i], new, x[i]))

    return jax.lax.fori_loop(0, n, body, x)


def greedy_coloring(coupling_mask) -> tuple[np.ndarray, ...]:
    """Colour the units so that no two coupled units share a colour (greedy, largest degree
    first); returns one index array per colour.

    ``coupling_mask`` (n, n): nonzero where two units may interact (a structural mask, or
    ``U != 0``).  Units of one colour are conditionally independent given the rest, so a
    chromatic Gibbs sweep (:func:`chromatic_gibbs_sweep`) updates each colour in parallel.
    A fully connected BM needs ``n`` colours (a sequential sweep); an RBM or DBM two.
    Host-side (numpy): the colouring is static structure, computed once.
    """
    m = np.asarray(coupling_mask) != 0
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ConfigError(f"coupling_mask must be square (n, n), got shape {m.shape}")
    if not np.array_equal(m, m.T):
        raise ConfigError("coupling_mask must be symmetric: couplings of a BM are undirected")
    np.fill_diagonal(m, False)
    n = m.shape[0]
    color = -np.ones(n, int)
    for i in sorted(range(n), key=lambda i: -int(m[i].sum())):
        used = set(color[m[i]].tolist())
        c = 0
        while c in used:
            c += 1
        color[i] = c
    return tuple(np.flatnonzero(color == c) for c in range(color.max() + 1))


def chromatic_gibbs_sweep(
    key: PRNGKeyArray,
    params: BMParams,
    x: Float[Array, " n"],
    colors: tuple[np.ndarray, ...],
    update: Array | None = None,
) -> Float[Array, " n"]:
    """One Gibbs sweep that resamples each colour class of :func:`greedy_coloring` at once.

    With a valid colouring (no coupling inside a class) this is the same Markov kernel as a
    sequential sweep visiting the classes in order, at one matrix-vector product per colour.
    ``update``: optional boolean mask of units to resample (others stay clamped).
    """
    mask = jnp.ones(x.shape, bool) if update is None else jnp.asarray(update, bool)
    keys = jax.random.split(key, len(colors))
    for k, idx in zip(keys, colors, strict=True):
        idx = np.asarray(idx)
        logits = params.a[idx] + params.U[idx] @ x
        new = jax.random.bernoulli(k, jax.nn.sigmoid(logits)).astype(x.dtype)
        x = x.at[idx].set(jnp.where(mask[idx], new, x[idx]))
    return x
