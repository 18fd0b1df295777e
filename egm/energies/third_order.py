r"""A fully visible Boltzmann machine with a third-order energy term (§20.8, higher-order BMs).

Binary units ``s ∈ {0,1}^n`` with energy

.. math:: E(s) = -\sum_i b_i s_i - \sum_{i<j} W_{ij} s_i s_j - \sum_{i<j<k} T_{ijk} s_i s_j s_k,

stored as a symmetric ``W`` with zero diagonal and a fully symmetric ``T`` that is zero
wherever two indices coincide, so that ``E(s) = -bᵀs - ½ sᵀWs - ⅙ Σ_ijk T_ijk s_i s_j s_k``
(:func:`symmetrize`).  Each unit's conditional is the energy difference of flipping it:

.. math:: \mathrm{logit}\, P(s_i = 1 | s_{-i}) = E(s_{i←0}) - E(s_{i←1})
          = b_i + \sum_j W_{ij} s_j + \tfrac12 \sum_{jk} T_{ijk} s_j s_k,

so Gibbs sampling stays one unit at a time (a systematic scan, :func:`gibbs_sweep`), and the
log-likelihood gradient is ``-⟨∂E/∂θ⟩_data + ⟨∂E/∂θ⟩_model`` as for any BM (§18.2): exact on
tiny models by enumeration, or with Gibbs samples for the model term (:func:`sampled_gradient`).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError

__all__ = [
    "ThirdOrderParams",
    "energy",
    "gibbs_sweep",
    "init",
    "sampled_gradient",
    "symmetrize",
    "unit_logit",
]


class ThirdOrderParams(NamedTuple):
    """Biases ``b`` (n,), pairwise couplings ``W`` (n, n) and three-way couplings ``T`` (n, n, n)."""

    b: Float[Array, " n"]
    W: Float[Array, "n n"]
    T: Float[Array, "n n n"]


def _distinct_mask(n: int) -> np.ndarray:
    """1 where ``i, j, k`` are pairwise distinct."""
    i, j, k = np.ogrid[:n, :n, :n]
    return ((i != j) & (j != k) & (i != k)).astype(np.float32)


def symmetrize(params: ThirdOrderParams) -> ThirdOrderParams:
    """Project onto valid couplings: ``W`` symmetric with zero diagonal; ``T`` the mean over
    the 6 index permutations, zeroed where any two indices coincide."""
    n = params.b.shape[0]
    W = 0.5 * (params.W + params.W.T) * (1.0 - jnp.eye(n, dtype=params.W.dtype))
    perms = itertools.permutations(range(3))
    T = sum(jnp.transpose(params.T, p) for p in perms) / 6.0
    return ThirdOrderParams(params.b, W, T * _distinct_mask(n))


def init(key: PRNGKeyArray, n_units: int, *, scale: float = 0.5) -> ThirdOrderParams:
    """Random ``N(0, scale²)`` biases and couplings, projected by :func:`symmetrize`."""
    if n_units < 3:
        raise ConfigError(f"a third-order BM needs at least 3 units, got {n_units}")
    kb, kw, kt = jax.random.split(key, 3)
    n = n_units
    return symmetrize(ThirdOrderParams(
        scale * jax.random.normal(kb, (n,)), scale * jax.random.normal(kw, (n, n)),
        scale * jax.random.normal(kt, (n, n, n)),
    ))  # fmt: skip


def energy(params: ThirdOrderParams, s: Float[Array, " n"]) -> Float[Array, ""]:
    """``E(s) = -bᵀs - ½ sᵀWs - ⅙ Σ_ijk T_ijk s_i s_j s_k`` (valid, symmetrized couplings)."""
    cubic = jnp.einsum("ijk,i,j,k->", params.T, s, s, s)
    return -(params.b @ s) - 0.5 * s @ params.W @ s - cubic / 6.0


def unit_logit(params: ThirdOrderParams, s: Float[Array, " n"], i: int | Array) -> Float[Array, ""]:
    """Logit of ``P(s_i = 1 | s_{-i})``: ``b_i + Σ_j W_ij s_j + ½ Σ_jk T_ijk s_j s_k``."""
    return params.b[i] + params.W[i] @ s + 0.5 * s @ params.T[i] @ s


def gibbs_sweep(
    key: PRNGKeyArray, params: ThirdOrderParams, s: Float[Array, " n"]
) -> Float[Array, " n"]:
    """One systematic-scan Gibbs sweep: ``s_0, s_1, …`` resampled in turn from their
    conditionals (a ``fori_loop``; one uniform per unit)."""
    u = jax.random.uniform(key, s.shape, dtype=s.dtype)

    def body(i, s):
        return s.at[i].set((u[i] < jax.nn.sigmoid(unit_logit(params, s, i))).astype(s.dtype))

    return jax.lax.fori_loop(0, s.shape[0], body, s)


def sampled_gradient(
    params: ThirdOrderParams, data: Float[Array, "N n"], samples: Float[Array, "M n"]
) -> ThirdOrderParams:
    """Estimate of ``∇_θ mean(-log p(data))``: ``mean_data ∂E/∂θ − mean_samples ∂E/∂θ``, the
    model term from (Gibbs) samples.  Taken through :func:`symmetrize`, so the gradient lives
    in the space of valid couplings (each distinct pair / triple one free number)."""

    def mean_energy(p, x):
        return jnp.mean(jax.vmap(energy, (None, 0))(symmetrize(p), x))

    g_data = jax.grad(mean_energy)(params, data)
    g_model = jax.grad(mean_energy)(params, samples)
    return jax.tree_util.tree_map(jnp.subtract, g_data, g_model)
