r"""Annealed importance sampling (AIS) for the partition function of an RBM (§18.7).

Path: the geometric interpolation of the JOINT densities,
``p_β(v, h) ∝ p_A(v, h)^{1-β} p_B(v, h)^β``, from a base-rate model ``A`` (independent
visibles with biases ``b_A``, free hidden units, no couplings; Salakhutdinov & Murray
2008, §4.1) to the target RBM ``B``.  Each intermediate is itself an RBM
(:func:`egm.energies.rbm.tempered`); its hidden units are summed out in

.. math:: \log f_β(v) = (1-β)\, b_A^\top v + β\, b^\top v + \sum_j \zeta\big(β (c_j + v^\top W_{:,j})\big).

Forward AIS: ``v_1 ~ p_A``; for ``k = 1..K``: ``log w += log f_k(v) - log f_{k-1}(v)``,
then one Gibbs sweep at ``β_k``.  ``E[w] = Z_B / Z_A``, so ``log Ẑ_B`` is unbiased in
``Z`` and, by Jensen, a stochastic *lower* bound on ``log Z_B`` — the log-likelihood
``-F(v) - log Ẑ`` it gives is therefore optimistic.

Reverse AIS (Grosse et al. 2015, "bidirectional Monte Carlo"): start from samples of
``p_B`` and anneal ``B → A``; ``E[w] = Z_A / Z_B``, so ``log Z_A - log mean w`` is a
stochastic *upper* bound on ``log Z_B`` when the start samples are exact.  With
approximate samples (the forward run's final states plus extra sweeps) it is the
conventional upper side of the bracket; both sides are reported.

Cost: the pre-activation ``c + vᵀW`` is computed ONCE per temperature and serves
both importance-weight terms and the hidden draw, so a temperature costs exactly
two matrix products (``vW`` and ``hWᵀ``) per chain batch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.data.validate import check_binary, check_shape
from egm.energies import dbm, grbm, rbm
from egm.energies.rbm import RBMParams
from egm.errors import ConfigError


class AISResult(NamedTuple):
    """Outcome of one AIS run.

    ``log_z``: the estimate of ``log Z_B``; ``log_z_se``: its standard error by the delta
    method, ``sd(w) / (√n · mean(w))``; ``ess``: effective sample size
    ``(Σw)² / Σw²``; ``log_weights``: per-chain log importance weights;
    ``log_z_base``: the exact ``log Z_A``; ``final_v``: the chains' last visible states.
    """

    log_z: Float[Array, ""]
    log_z_se: Float[Array, ""]
    ess: Float[Array, ""]
    log_weights: Float[Array, " C"]
    log_z_base: Float[Array, ""]
    final_v: Float[Array, "C V"]


def betas_salakhutdinov_murray(n_temps: int = 14500) -> np.ndarray:
    """The schedule of Salakhutdinov & Murray (2008): spacing 1/1000 on [0, 0.5], 1/10000 on
    [0.5, 0.9] and 1/100000 on [0.9, 1] for 14,500 temperatures; other counts keep the proportions
    (500 : 4000 : 10000).  Returns ``K + 1`` values from 0 to 1 inclusive, ``K = n_temps``."""
    if n_temps < 3:
        raise ConfigError(f"AIS needs at least 3 temperatures, got n_temps={n_temps}")
    n1 = max(1, round(n_temps * 500 / 14500))
    n2 = max(1, round(n_temps * 4000 / 14500))
    n3 = max(1, n_temps - n1 - n2)
    return np.concatenate(
        [
            np.linspace(0.0, 0.5, n1, endpoint=False),
            np.linspace(0.5, 0.9, n2, endpoint=False),
            np.linspace(0.9, 1.0, n3 + 1),
        ]
    ).astype(np.float32)


def base_rate_biases(v_data: Float[Array, "N V"], eps: float = 1e-3) -> Float[Array, " V"]:
    """Biases ``b_A`` of the base-rate model fitted to data: logits of the pixel means
    (smoothed away from 0 and 1), as in Salakhutdinov & Murray (2008)."""
    return rbm.base_rate_logits(jnp.mean(jnp.asarray(v_data, jnp.float32), axis=0), eps)


def base_log_partition(base_b: Float[Array, " V"], n_hidden: int) -> Float[Array, ""]:
    """``log Z_A = Σ_i softplus(b_A,i) + H log 2`` (the hidden units are free in the base model)."""
    return jnp.sum(jax.nn.softplus(base_b)) + n_hidden * jnp.log(2.0)


def _log_f(beta, a_v, b_v, x):
    """``log f_β(v)`` from ``a_v = b_Aᵀv``, ``b_v = bᵀv`` and ``x = c + vᵀW``."""
    return (1.0 - beta) * a_v + beta * b_v + jnp.sum(jax.nn.softplus(beta * x))


def anneal(key: PRNGKeyArray, chain_step, v0, betas_from, betas_to):
    """The generic AIS loop: a ``lax.scan`` over temperature pairs, chains vmapped.

    ``chain_step(v, key, beta_from, beta_to) -> (v', Δlog w)`` acts on ONE chain: it adds
    ``log f_to(v) - log f_from(v)`` to the weight and then applies a transition that leaves
    ``p_to`` invariant.  Models supply it (:func:`_rbm_chain_step`, :func:`_grbm_chain_step`)
    so that shared intermediate products (``c + vᵀW``) are computed once.  Returns the final
    states and the log weights.
    """
    n_chains = jax.tree_util.tree_leaves(v0)[0].shape[0]

    def body(carry, inp):
        v, logw = carry
        k, b_from, b_to = inp
        v, dw = jax.vmap(chain_step, in_axes=(0, 0, None, None))(
            v, jax.random.split(k, n_chains), b_from, b_to
        )
        return (v, logw + dw), None

    keys = jax.random.split(key, betas_from.shape[0])
    (v, logw), _ = jax.lax.scan(
        body, (v0, jnp.zeros((n_chains,), jnp.float32)), (keys, betas_from, betas_to)
    )
    return v, logw


def _rbm_chain_step(params, base_b):
    """Binary RBM on the base-rate path: one ``vW`` and one ``hWᵀ`` per temperature."""

    def chain_step(v, key, beta_from, beta_to):
        k_h, k_v = jax.random.split(key)
        x = rbm.hidden_preactivation(params, v)
        a_v, b_v = base_b @ v, params.b @ v
        dw = _log_f(beta_to, a_v, b_v, x) - _log_f(beta_from, a_v, b_v, x)
        h = rbm.bernoulli_logits(k_h, beta_to * x)
        v_logits = (1.0 - beta_to) * base_b + beta_to * rbm.visible_preactivation(params, h)
        return rbm.bernoulli_logits(k_v, v_logits), dw

    return chain_step


def _anneal(key, params, base_b, v0, betas_from, betas_to):
    return anneal(key, _rbm_chain_step(params, base_b), v0, betas_from, betas_to)


def _summarise(log_w):
    n = log_w.shape[0]
    lse = jax.nn.logsumexp(log_w)
    log_mean_w = lse - jnp.log(n)
    r = jnp.exp(log_w - log_mean_w)  # weights normalised to mean 1
    se = jnp.std(r, ddof=1) / jnp.sqrt(n)
    ess = jnp.exp(2.0 * lse - jax.nn.logsumexp(2.0 * log_w))
    return log_mean_w, se, ess


def _check(params: RBMParams, base_b, betas) -> np.ndarray:
    rbm.check_shapes(params)
    betas = np.asarray(betas, np.float32)
    if betas.ndim != 1 or betas.shape[0] < 2 or betas[0] != 0.0 or betas[-1] != 1.0:
        raise ConfigError("betas must be a 1-D increasing schedule from 0.0 to 1.0 inclusive")
    if np.any(np.diff(betas) < 0):
        raise ConfigError("betas must be non-decreasing")
    if jnp.shape(base_b) != params.b.shape:
        raise ConfigError(f"base_b has shape {jnp.shape(base_b)}, expected {params.b.shape}")
    return betas


def rbm_ais(
    key: PRNGKeyArray,
    params: RBMParams,
    base_b: Float[Array, " V"],
    *,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
) -> AISResult:
    """Forward AIS estimate of ``log Z`` of a binary RBM (stochastic lower bound).

    ``base_b``: base-rate biases (:func:`base_rate_biases` of the training data);
    ``betas``: schedule from 0 to 1 (default :func:`betas_salakhutdinov_murray`).
    Jit-compatible when ``betas`` is a concrete array.
    """
    betas = _check(params, base_b, betas_salakhutdinov_murray() if betas is None else betas)
    if n_chains < 2:
        raise ConfigError(f"AIS needs at least 2 chains for a standard error, got {n_chains}")
    return rbm_ais_unchecked(
        key, params, jnp.asarray(base_b, jnp.float32), jnp.asarray(betas), n_chains
    )


@jax.jit(static_argnums=(4,))
def rbm_ais_unchecked(
    key: PRNGKeyArray,
    params: RBMParams,
    base_b: Float[Array, " V"],
    betas: Float[Array, " K1"],
    n_chains: int,
) -> AISResult:
    """:func:`rbm_ais` without its host-side argument checks: jitted, and vmappable over
    ``key`` and ``params`` (e.g. to score every member of a sweep in one call)."""
    k0, k1 = jax.random.split(key)
    H = params.W.shape[1]
    v0 = rbm.bernoulli_logits(k0, jnp.broadcast_to(base_b, (n_chains, base_b.shape[0])))
    v, log_w = _anneal(k1, params, base_b, v0, betas[:-1], betas[1:])
    log_za = base_log_partition(base_b, H)
    log_mean_w, se, ess = _summarise(log_w)
    return AISResult(log_za + log_mean_w, se, ess, log_w, log_za, v)


def rbm_reverse_ais(
    key: PRNGKeyArray,
    params: RBMParams,
    base_b: Float[Array, " V"],
    v_start: Float[Array, "C V"],
    *,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
) -> AISResult:
    """Reverse AIS from (approximate) model samples ``v_start``: a stochastic upper bound on ``log Z``.

    Anneal ``B → A``; ``log Ẑ_B = log Z_A - log mean w``.  The bound is exact in
    expectation only if ``v_start ~ p_B``; use long-run chains (e.g. the forward run's
    ``final_v`` after extra Gibbs sweeps).
    """
    betas = _check(params, base_b, betas_salakhutdinov_murray() if betas is None else betas)
    check_shape(v_start, params.W.shape[0], "v_start")
    check_binary(v_start, "v_start")
    if np.shape(v_start)[0] < 2:
        raise ConfigError("reverse AIS needs at least 2 start samples for a standard error")
    return _rbm_reverse_ais(
        key, params, jnp.asarray(base_b, jnp.float32), jnp.asarray(betas), jnp.asarray(v_start)
    )


@jax.jit
def _rbm_reverse_ais(key, params, base_b, betas, v_start):
    rb = betas[::-1]
    v, log_w = _anneal(key, params, base_b, v_start.astype(jnp.float32), rb[:-1], rb[1:])
    log_za = base_log_partition(base_b, params.W.shape[1])
    log_mean_w, se, ess = _summarise(log_w)
    return AISResult(log_za - log_mean_w, se, ess, log_w, log_za, v)


def grbm_ais(
    key: PRNGKeyArray,
    params: grbm.GRBMParams,
    base_mean: Float[Array, " V"],
    base_log_beta: Float[Array, " V"],
    *,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
) -> AISResult:
    r"""Forward AIS for ``log Z`` of a Gaussian–Bernoulli RBM from a Gaussian base model.

    Base ``A``: ``v ~ N(base_mean, diag(1/β_A))`` with free hidden units, so
    ``log Z_A = ½ Σ log(2π/β_A) + H log 2``.  On the joint geometric path, ``p_β(v|h)`` is
    Gaussian with precision ``β' = (1-β)β_A + β β_B`` and mean
    ``((1-β)β_A b_A + β β_B (b + W h)) / β'``, and ``P(h=1|v) = σ(β (c + Wᵀ(β_B ⊙ v)))``;
    ``log f_β(v) = -½ Σ[(1-β)β_A (v-b_A)² + β β_B (v-b)²] + Σ softplus(β (c + Wᵀ(β_B ⊙ v)))``.
    """
    betas = np.asarray(betas_salakhutdinov_murray() if betas is None else betas, np.float32)
    if betas.ndim != 1 or betas[0] != 0.0 or betas[-1] != 1.0 or np.any(np.diff(betas) < 0):
        raise ConfigError("betas must be a non-decreasing 1-D schedule from 0.0 to 1.0 inclusive")
    if n_chains < 2:
        raise ConfigError(f"AIS needs at least 2 chains for a standard error, got {n_chains}")
    return _grbm_ais(
        key,
        params,
        jnp.asarray(base_mean, jnp.float32),
        jnp.asarray(base_log_beta, jnp.float32),
        jnp.asarray(betas),
        n_chains,
    )


@jax.jit(static_argnums=(5,))
def _grbm_ais(key, params, base_mean, base_log_beta, betas, n_chains):
    beta_a, beta_b = jnp.exp(base_log_beta), jnp.exp(params.log_beta)

    def log_f(t, v, x):
        quad = (1 - t) * beta_a * (v - base_mean) ** 2 + t * beta_b * (v - params.b) ** 2
        return -0.5 * jnp.sum(quad) + jnp.sum(jax.nn.softplus(t * x))

    def chain_step(v, key, t_from, t_to):
        k_h, k_v = jax.random.split(key)
        x = grbm.hidden_preactivation(params, v)
        dw = log_f(t_to, v, x) - log_f(t_from, v, x)
        h = rbm.bernoulli_logits(k_h, t_to * x)
        prec = (1 - t_to) * beta_a + t_to * beta_b
        mean = (
            (1 - t_to) * beta_a * base_mean + t_to * beta_b * grbm.visible_mean(params, h)
        ) / prec
        v = mean + jax.random.normal(k_v, v.shape, v.dtype) / jnp.sqrt(prec)
        return v, dw

    k0, k1 = jax.random.split(key)
    V, H = params.W.shape
    v0 = base_mean + jax.random.normal(k0, (n_chains, V)) / jnp.sqrt(beta_a)
    v, log_w = anneal(k1, chain_step, v0, betas[:-1], betas[1:])
    log_za = 0.5 * jnp.sum(jnp.log(2 * jnp.pi) - base_log_beta) + H * jnp.log(2.0)
    log_mean_w, se, ess = _summarise(log_w)
    return AISResult(log_za + log_mean_w, se, ess, log_w, log_za, v)


def dbm_ais(
    key: PRNGKeyArray,
    params: dbm.DBMParams,
    base_b: Float[Array, " V"],
    *,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
) -> AISResult:
    r"""Forward AIS for ``log Z`` of a deep Boltzmann machine (Salakhutdinov & Hinton 2009).

    The chains carry only the ODD layers; given them the even layers (``v`` included) are
    independent and are summed out analytically:

    .. math:: \log f_β(x_{odd}) = β \sum_{l\,odd} b_l^\top x_l
              + \sum_{l\,even} \sum_i \zeta\big(β z_{l,i}\big),
              \quad z_l = b_l + W_l^\top x_{l-1} + W_{l+1} x_{l+1},

    with ``(1-β) b_A + β z_0`` for the visible layer on the path from the base-rate model
    ``A`` (visible biases ``b_A``, every other unit free).  Transitions are odd/even block
    Gibbs at ``β``.  ``final_v`` holds the chains' last odd-layer states (a tuple).
    """
    betas = np.asarray(betas_salakhutdinov_murray() if betas is None else betas, np.float32)
    if betas.ndim != 1 or betas[0] != 0.0 or betas[-1] != 1.0 or np.any(np.diff(betas) < 0):
        raise ConfigError("betas must be a non-decreasing 1-D schedule from 0.0 to 1.0 inclusive")
    if n_chains < 2:
        raise ConfigError(f"AIS needs at least 2 chains for a standard error, got {n_chains}")
    if jnp.shape(base_b) != params.biases[0].shape:
        raise ConfigError(
            f"base_b has shape {jnp.shape(base_b)}, expected {params.biases[0].shape}"
        )
    return _dbm_ais(key, params, jnp.asarray(base_b, jnp.float32), jnp.asarray(betas), n_chains)


@jax.jit(static_argnums=(4,))
def _dbm_ais(key, params, base_b, betas, n_chains):
    L = len(params.biases)
    odd, even = list(range(1, L, 2)), list(range(0, L, 2))

    def full_state(odd_state):
        state = [None] * L
        for i, l in enumerate(odd):
            state[l] = odd_state[i]
        for l in even:  # even layers do not enter the logits of other even layers
            state[l] = jnp.zeros_like(params.biases[l])
        return state

    def even_logits(t, z, l):
        return (1 - t) * base_b + t * z if l == 0 else t * z

    def chain_step(odd_state, key, t_from, t_to):
        state = full_state(odd_state)
        z = {l: dbm.layer_logits(params, tuple(state), l) for l in even}

        def log_f(t):
            lf = sum(t * (params.biases[l] @ state[l]) for l in odd)
            return lf + sum(jnp.sum(jax.nn.softplus(even_logits(t, z[l], l))) for l in even)

        dw = log_f(t_to) - log_f(t_from)
        keys = jax.random.split(key, L)
        for l in even:
            state[l] = rbm.bernoulli_logits(keys[l], even_logits(t_to, z[l], l))
        for l in odd:
            state[l] = rbm.bernoulli_logits(
                keys[l], t_to * dbm.layer_logits(params, tuple(state), l)
            )
        return tuple(state[l] for l in odd), dw

    k0, k1 = jax.random.split(key)
    ks = jax.random.split(k0, len(odd))
    x0 = tuple(
        jax.random.bernoulli(k, 0.5, (n_chains, params.biases[l].shape[0])).astype(jnp.float32)
        for k, l in zip(ks, odd, strict=True)
    )
    x, log_w = anneal(k1, chain_step, x0, betas[:-1], betas[1:])
    n_free = sum(params.biases[l].shape[0] for l in range(1, L))
    log_za = jnp.sum(jax.nn.softplus(base_b)) + n_free * jnp.log(2.0)
    log_mean_w, se, ess = _summarise(log_w)
    return AISResult(log_za + log_mean_w, se, ess, log_w, log_za, x)
