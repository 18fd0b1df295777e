r"""Stochastic maximum likelihood for the general Boltzmann machine (§20.1, §18.2).

For ``E(x) = -½ xᵀUx - aᵀx`` over units ``x = (v, h)``, the log-likelihood gradient of a
visible vector is (eq. 20.7–20.9 in the book's notation)

.. math:: \nabla_U \log p(v) = \mathbb{E}_{h \sim p(h|v)}[x x^\top] - \mathbb{E}_{x \sim p}[x x^\top],
          \qquad \nabla_a \log p(v) = \mathbb{E}_{p(h|v)}[x] - \mathbb{E}_{p}[x].

Positive phase: with ``v`` clamped, ``k_pos`` sequential Gibbs sweeps over the hidden units
(``p(h|v)`` does not factorise when hidden units are coupled).  Negative phase: persistent
chains over all units advanced ``k_neg`` sweeps (SML/PCD).  The estimate returned is of
``-∇ mean log p`` (the loss gradient), symmetric with zero diagonal, shaped like
:class:`~egm.energies.boltzmann.BMParams`, so any optax optimiser applies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import boltzmann
from egm.energies.boltzmann import BMParams
from egm.errors import DataError


def _sweeps(key, params, x, n_sweeps, update, colors=None):
    def body(x, k):
        if colors is None:
            return boltzmann.sequential_gibbs_sweep(k, params, x, update), None
        return boltzmann.chromatic_gibbs_sweep(k, params, x, colors, update), None

    return jax.lax.scan(body, x, jax.random.split(key, n_sweeps))[0]


def clamped_hidden_samples(
    key: PRNGKeyArray,
    params: BMParams,
    v: Float[Array, "B V"],
    k_pos: int,
    colors: tuple[np.ndarray, ...] | None = None,
) -> Float[Array, "B n"]:
    """Full states ``(v, h)`` with ``h`` after ``k_pos`` Gibbs sweeps of ``p(h | v)`` from a
    uniform random start, one chain per row of ``v``; sequential sweeps, or chromatic ones
    when ``colors`` (:func:`egm.energies.boltzmann.greedy_coloring`) is given."""
    n, V = params.a.shape[0], v.shape[1]
    if v.ndim != 2 or V > n:
        raise DataError(f"v has shape {v.shape}; expected (batch, n_visible) with n_visible <= {n}")
    k0, k1 = jax.random.split(key)
    h0 = jax.random.bernoulli(k0, 0.5, (v.shape[0], n - V)).astype(v.dtype)
    x = jnp.concatenate([v, h0], axis=1)
    update = jnp.arange(n) >= V
    keys = jax.random.split(k1, v.shape[0])
    return jax.vmap(lambda k, x0: _sweeps(k, params, x0, k_pos, update, colors))(keys, x)


def sml_gradient(
    key: PRNGKeyArray,
    params: BMParams,
    v_data: Float[Array, "B V"],
    chains: Float[Array, "M n"],
    *,
    k_pos: int = 10,
    k_neg: int = 1,
    colors: tuple[np.ndarray, ...] | None = None,
    coupling_mask: Array | None = None,
) -> tuple[BMParams, Float[Array, "M n"]]:
    """SML estimate of ``-∇ mean log p(v_data)`` and the advanced persistent ``chains``.

    ``colors``: chromatic sweeps over these colour classes instead of sequential sweeps (same
    kernel when the colouring is valid for the couplings in use).  ``coupling_mask``: the
    structure of a sparse BM; the coupling gradient is zeroed outside it, so training keeps
    ``U`` on the mask (and a colouring of the mask stays valid).
    """
    k_p, k_n = jax.random.split(key)
    x_pos = clamped_hidden_samples(k_p, params, v_data, k_pos, colors)
    keys = jax.random.split(k_n, chains.shape[0])
    chains = jax.vmap(lambda k, x0: _sweeps(k, params, x0, k_neg, None, colors))(keys, chains)
    g = statistics_gradient(x_pos, chains)
    if coupling_mask is not None:
        g = g._replace(U=g.U * jnp.asarray(coupling_mask != 0, g.U.dtype))
    return g, chains


def statistics_gradient(x_pos: Float[Array, "B n"], x_neg: Float[Array, "M n"]) -> BMParams:
    """``-(⟨xxᵀ⟩_pos - ⟨xxᵀ⟩_neg)`` with zero diagonal, and ``-(⟨x⟩_pos - ⟨x⟩_neg)``.

    Entry ``(i, j)`` is the derivative with respect to the coupling ``u_ij = U_ij = U_ji`` as
    ONE parameter (the book's convention), so a step on ``U`` keeps it symmetric.  (Autodiff
    of ``-½xᵀUx`` w.r.t. the matrix entries gives half of it on each of ``U_ij``, ``U_ji``.)
    """
    x_neg = jax.lax.stop_gradient(x_neg)
    corr = x_neg.T @ x_neg / x_neg.shape[0] - x_pos.T @ x_pos / x_pos.shape[0]
    corr = corr * (1.0 - jnp.eye(corr.shape[0], dtype=corr.dtype))
    return BMParams(U=corr, a=jnp.mean(x_neg, 0) - jnp.mean(x_pos, 0))
