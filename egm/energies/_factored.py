r"""Shared pieces of the factored covariance models of §20.5.1: the mcRBM and the mPoT.

Both models have ``D`` real visibles ``v``, ``F`` factors with filters ``C`` (D, F), a
NON-NEGATIVE pooling matrix ``P`` (F, N) from factors to ``N`` covariance hiddens ``h_c``,
and a *mean* part: a Gaussian–Bernoulli RBM with unit variance, ``M`` binary mean hiddens
``h_m``, weights ``W`` (D, M), biases ``b_m`` (M,) and visible bias ``b_v`` (D,).

Given the covariance hiddens the covariance energy is a quadratic form in ``v``,

.. math:: \tfrac12 \sum_k h_{c,k} \sum_f P_{fk} (C_f^\top v)^2
          = \tfrac12 v^\top C \,\mathrm{diag}(P h_c)\, C^\top v ,

so together with the mean energy ``½ vᵀv − b_vᵀv − h_mᵀWᵀv − b_mᵀh_m`` the conditional of
``v`` given ALL hiddens is Gaussian (eq. 20.42-style "covariance units" of §20.5.1):

.. math:: p(v \mid h_c, h_m) = \mathcal N\big(Λ^{-1}(b_v + W h_m),\ Λ^{-1}\big),\qquad
          Λ(h_c) = I + C\,\mathrm{diag}(P h_c)\,C^\top .

``Λ ⪰ I`` whenever ``P h_c ≥ 0`` (``P ≥ 0`` and ``h_c ≥ 0``: binary for the mcRBM, Gamma for
the mPoT), so its Cholesky factor always exists.  :func:`sample_gaussian` draws exactly
from it: ``Λ = L Lᵀ``, ``v = Λ⁻¹b + L⁻ᵀ z = L⁻ᵀ(L⁻¹b + z)`` with ``z ~ N(0, I)``
(``Cov = L⁻ᵀL⁻¹ = Λ⁻¹``).

Every function acts on ONE example (vmap for batches).  Functions taking ``params`` use
only the fields ``C, P, W, b_m, b_v``, which both :class:`egm.energies.mcrbm.MCRBMParams`
and :class:`egm.energies.mpot.MPoTParams` have.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve, solve_triangular
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies.rbm import bernoulli_logits
from egm.errors import ConfigError

#: ``ε`` of the input normalisation ``ṽ = v / sqrt(mean(v²) + ε)`` (see :func:`normalize`).
NORMALIZE_EPS = 0.5
#: Pooling initialisations understood by :func:`init_pooling`.
POOLINGS = ("identity", "topographic")

Params = Any  # any NamedTuple with fields C, P, W, b_m, b_v


class FactoredState(NamedTuple):
    """One chain state: visibles ``v`` (D,), covariance hiddens ``h_c`` (N,), mean hiddens ``h_m`` (M,)."""

    v: Float[Array, " D"]
    h_c: Float[Array, " N"]
    h_m: Float[Array, " M"]


# --------------------------------------------------------------------------- covariance part


def factor_responses(C: Float[Array, "D F"], v: Float[Array, " D"]) -> Float[Array, " F"]:
    """``Cᵀv``: the response of every factor filter to ``v``."""
    return v @ C


def pooled_squares(
    C: Float[Array, "D F"], P: Float[Array, "F N"], v: Float[Array, " D"]
) -> Float[Array, " N"]:
    """``½ Pᵀ (Cᵀv)²``: per covariance hidden, half the pooled squared factor responses."""
    return 0.5 * (factor_responses(C, v) ** 2) @ P


def precision(
    C: Float[Array, "D F"], P: Float[Array, "F N"], h_c: Float[Array, " N"]
) -> Float[Array, "D D"]:
    """``Λ(h_c) = I + C diag(P h_c) Cᵀ``: the precision of ``v`` given the hiddens."""
    d = P @ h_c
    return jnp.eye(C.shape[0], dtype=C.dtype) + (C * d) @ C.T


def _cholesky(C, P, h_c):
    return jnp.linalg.cholesky(precision(C, P, h_c))


def gaussian_mean(
    C: Float[Array, "D F"], P: Float[Array, "F N"], h_c: Float[Array, " N"], b: Float[Array, " D"]
) -> Float[Array, " D"]:
    """``Λ(h_c)⁻¹ b``: the mean of ``v`` given the hiddens when ``b = b_v + W h_m``."""
    return cho_solve((_cholesky(C, P, h_c), True), b)


def sample_gaussian(
    key: PRNGKeyArray,
    C: Float[Array, "D F"],
    P: Float[Array, "F N"],
    h_c: Float[Array, " N"],
    b: Float[Array, " D"],
) -> Float[Array, " D"]:
    """One exact draw of ``v ~ N(Λ⁻¹b, Λ⁻¹)`` with ``Λ = I + C diag(P h_c) Cᵀ`` (Cholesky)."""
    L = _cholesky(C, P, h_c)
    z = jax.random.normal(key, b.shape, b.dtype)
    # Λ⁻¹b + L⁻ᵀz = L⁻ᵀ(L⁻¹b + z): two triangular solves in sequence.  (Computing the mean
    # and the noise by two INDEPENDENT batched solves lets XLA:CPU run them concurrently,
    # and jaxlib's batched LAPACK kernels then wait on each other's thread-pool tasks:
    # a deadlock on a 2-thread pool, seen with 100 chains x 64 dims.)
    u = solve_triangular(L, b, lower=True)
    return solve_triangular(L.T, u + z, lower=False)


def gaussian_log_integral(
    C: Float[Array, "D F"], P: Float[Array, "F N"], h_c: Float[Array, " N"], b: Float[Array, " D"]
) -> Float[Array, ""]:
    """``log ∫ exp(-½ vᵀΛv + bᵀv) dv = ½ bᵀΛ⁻¹b + (D/2) log 2π - ½ log det Λ``."""
    L = _cholesky(C, P, h_c)
    D = b.shape[0]
    return (
        0.5 * b @ cho_solve((L, True), b)
        + 0.5 * D * jnp.log(2 * jnp.pi)
        - jnp.sum(jnp.log(jnp.diagonal(L)))
    )


def normalize(v: Float[Array, " D"], eps: float = NORMALIZE_EPS) -> Float[Array, " D"]:
    """The mcRBM's input normalisation ``ṽ = v / sqrt(mean(v²) + ε)``.

    It makes the covariance part (nearly) invariant to the contrast of ``v``: for
    ``mean(v²) ≫ ε``, ``ṽ`` has mean square 1 whatever the scale of ``v``; ``ε`` stops
    flat, low-contrast inputs from being blown up to unit contrast.  ``‖ṽ‖² < D`` always.
    """
    return v * jax.lax.rsqrt(jnp.mean(v**2) + eps)


# --------------------------------------------------------------------------- mean part


def mean_hidden_logits(params: Params, v: Float[Array, " D"]) -> Float[Array, " M"]:
    """``b_m + Wᵀv``: ``P(h_m = 1 | v) = σ(b_m + Wᵀv)``."""
    return params.b_m + v @ params.W


def mean_energy(params: Params, v: Float[Array, " D"], h_m: Float[Array, " M"]) -> Float[Array, ""]:
    """``½ vᵀv - b_vᵀv - h_mᵀWᵀv - b_mᵀh_m``: the unit-variance Gaussian–Bernoulli part."""
    return 0.5 * v @ v - params.b_v @ v - (v @ params.W) @ h_m - params.b_m @ h_m


def mean_free_energy(params: Params, v: Float[Array, " D"]) -> Float[Array, ""]:
    """``½ vᵀv - b_vᵀv - Σ_j softplus(b_m,j + W_jᵀv)``: the mean energy with ``h_m`` summed out."""
    return 0.5 * v @ v - params.b_v @ v - jnp.sum(jax.nn.softplus(mean_hidden_logits(params, v)))


def sample_mean_hidden(
    key: PRNGKeyArray, params: Params, v: Float[Array, " D"]
) -> Float[Array, " M"]:
    """``h_m ~ Bernoulli(σ(b_m + Wᵀv))``."""
    return bernoulli_logits(key, mean_hidden_logits(params, v))


def sample_visible(
    key: PRNGKeyArray, params: Params, h_c: Float[Array, " N"], h_m: Float[Array, " M"]
) -> Float[Array, " D"]:
    """``v ~ N(Λ(h_c)⁻¹(b_v + W h_m), Λ(h_c)⁻¹)`` exactly (Cholesky of ``Λ``)."""
    return sample_gaussian(key, params.C, params.P, h_c, params.b_v + params.W @ h_m)


# --------------------------------------------------------------------------- filters


def project_filters(
    C: Float[Array, "D F"], P: Float[Array, "F N"], c_norm: float | None = 1.0
) -> tuple[Float[Array, "D F"], Float[Array, "F N"]]:
    """Filter normalisation (Ranzato & Hinton 2010) as a projection after each update.

    - ``C``: every column rescaled to L2 norm ``c_norm``; with ``c_norm=None`` to the MEAN
      of the current column norms (all filters share one norm, whose size is learned: the
      paper's running-average norm with no smoothing).  All-zero columns stay zero.
    - ``P``: clipped to ``≥ 0`` and every column rescaled to unit L1 norm; a column that is
      all zero after clipping becomes uniform ``1/F`` (so the norm is always 1).
    """
    if c_norm is not None and not c_norm > 0:
        raise ConfigError(f"c_norm must be > 0 (or None for the mean norm), got {c_norm!r}")
    norms = jnp.sqrt(jnp.sum(C**2, axis=0))
    target = jnp.mean(norms) if c_norm is None else jnp.asarray(c_norm, C.dtype)
    C = C * (target / jnp.maximum(norms, 1e-12))
    P = jnp.maximum(P, 0.0)
    s = jnp.sum(P, axis=0)
    P = jnp.where(s > 0, P / jnp.where(s > 0, s, 1.0), 1.0 / P.shape[0])
    return C, P


def init_pooling(n_factors: int, n_cov: int, kind: str = "identity", width: int = 3):
    """Initial pooling matrix ``P`` (F, N), non-negative with unit-L1 columns.

    - ``"identity"``: ``F == N``, hidden ``k`` pools factor ``k`` alone.
    - ``"topographic"``: factors on a ``√F × √F`` torus, hiddens on a ``√N × √N`` grid
      placed on it with stride ``√F/√N``; hidden ``k`` pools the ``width × width``
      wrap-around window of factors centred on its position, with equal weights.
      Needs ``F`` and ``N`` perfect squares and ``√N`` dividing ``√F``.
    """
    if kind not in POOLINGS:
        raise ConfigError(f"pooling must be one of {POOLINGS}, got {kind!r}")
    if kind == "identity":
        if n_factors != n_cov:
            raise ConfigError(
                f"identity pooling needs n_factors == n_cov, got {n_factors} and {n_cov}; use "
                f"pooling='topographic' or equal sizes"
            )
        return jnp.asarray(np.eye(n_factors, dtype=np.float32))
    sf, sn = math.isqrt(n_factors), math.isqrt(n_cov)
    if sf * sf != n_factors or sn * sn != n_cov or sf % sn != 0:
        raise ConfigError(
            f"topographic pooling needs n_factors and n_cov perfect squares with sqrt(n_cov) "
            f"dividing sqrt(n_factors), got {n_factors} and {n_cov} (e.g. 64 and 16, or 64 and 64)"
        )
    if width < 1:
        raise ConfigError(f"pooling width must be >= 1, got {width}")
    stride, r = sf // sn, width // 2
    fi, fj = np.divmod(np.arange(n_factors), sf)  # factor positions on the torus
    ki, kj = np.divmod(np.arange(n_cov), sn)
    ci, cj = ki * stride, kj * stride  # hidden centres on the factor grid

    def torus_dist(a, b):
        d = np.abs(a[:, None] - b[None, :]) % sf
        return np.minimum(d, sf - d)

    P = ((torus_dist(fi, ci) <= r) & (torus_dist(fj, cj) <= r)).astype(np.float32)
    return jnp.asarray(P / P.sum(0))


def init_filters(
    key: PRNGKeyArray, n_visible: int, n_factors: int, n_cov: int, pooling: str, c_norm: float
):
    """``C``: Gaussian columns rescaled to norm ``c_norm``; ``P`` from :func:`init_pooling`."""
    P = init_pooling(n_factors, n_cov, pooling)
    C = jax.random.normal(key, (n_visible, n_factors), jnp.float32)
    return C * (c_norm / jnp.linalg.norm(C, axis=0)), P


def check_sizes(**sizes: int) -> None:
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ConfigError(
            "every layer size must be an integer >= 1, got "
            + ", ".join(f"{k}={v!r}" for k, v in bad.items())
        )
