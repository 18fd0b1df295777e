r"""Annealed importance sampling (AIS) for the partition function of an RBM or a DBM (§18.7).

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
conventional upper side of the bracket; both sides are reported.  The same pair exists for
the DBM (:func:`dbm_ais`, :func:`dbm_reverse_ais`; odd layers carried, even layers summed
out; also with a softmax top layer, the MP-DBM's labels) and both are run together by
:func:`rbm_bidirectional_ais` / :func:`dbm_bidirectional_ais`.

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
from egm.errors import ConfigError, DataError
from egm.estimators import mpdbm
from egm.estimators.mpdbm import MPDBMParams


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
    ``p_to`` invariant; a pair with ``beta_from == beta_to`` (a burn-in sweep) adds exactly 0.
    Models supply it (:func:`_rbm_chain_step`, :func:`_grbm_chain_step`)
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
        dw = jnp.where(b_from == b_to, 0.0, dw)  # exactly 0 (burn-in sweeps at a fixed β)
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
    k0, k1 = jax.random.split(key)
    base_b = jnp.asarray(base_b, jnp.float32)
    betas = jnp.asarray(betas)
    v0 = _rbm_base_draw(k0, base_b, n_chains)
    v, log_w, log_mean_w, se, ess = _rbm_run(k1, params, base_b, v0, betas[:-1], betas[1:])
    log_za = base_log_partition(base_b, params.W.shape[1])
    return AISResult(log_za + log_mean_w, se, ess, log_w, log_za, v)


@jax.jit(static_argnums=2)
def _rbm_base_draw(key, base_b, n_chains):
    return rbm.bernoulli_logits(key, jnp.broadcast_to(base_b, (n_chains, base_b.shape[0])))


@jax.jit
def _rbm_run(key, params, base_b, v0, b_from, b_to):
    """One annealing scan and its summary.  Forward and reverse runs of the same shapes (a
    reverse run without burn-in) share this compiled program."""
    v, log_w = _anneal(key, params, base_b, v0, b_from, b_to)
    return v, log_w, *_summarise(log_w)


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
    v0 = _rbm_base_draw(k0, base_b, n_chains)
    v, log_w, log_mean_w, se, ess = _rbm_run(k1, params, base_b, v0, betas[:-1], betas[1:])
    log_za = base_log_partition(base_b, params.W.shape[1])
    return AISResult(log_za + log_mean_w, se, ess, log_w, log_za, v)


def rbm_reverse_ais(
    key: PRNGKeyArray,
    params: RBMParams,
    base_b: Float[Array, " V"],
    v_start: Float[Array, "C V"],
    *,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    burn_in: int = 0,
) -> AISResult:
    """Reverse AIS from (approximate) model samples ``v_start``: a stochastic upper bound on ``log Z``.

    Anneal ``B → A``; ``log Ẑ_B = log Z_A - log mean w``.  The bound is exact in
    expectation only if ``v_start ~ p_B``; use long-run chains (e.g. the forward run's
    ``final_v`` after extra Gibbs sweeps: ``burn_in`` block-Gibbs sweeps at ``β = 1`` run
    first, inside the same jitted call).
    """
    betas = _check(params, base_b, betas_salakhutdinov_murray() if betas is None else betas)
    check_shape(v_start, params.W.shape[0], "v_start")
    check_binary(v_start, "v_start")
    if np.shape(v_start)[0] < 2:
        raise ConfigError("reverse AIS needs at least 2 start samples for a standard error")
    if burn_in < 0:
        raise ConfigError(f"burn_in must be >= 0 Gibbs sweeps, got {burn_in}")
    base_b = jnp.asarray(base_b, jnp.float32)
    b_from, b_to = _reverse_pairs(jnp.asarray(betas), int(burn_in))
    v0 = jnp.asarray(v_start, jnp.float32)
    v, log_w, log_mean_w, se, ess = _rbm_run(key, params, base_b, v0, b_from, b_to)
    log_za = base_log_partition(base_b, params.W.shape[1])
    return AISResult(log_za - log_mean_w, se, ess, log_w, log_za, v)


def _reverse_pairs(betas, burn_in: int):
    """``(β_from, β_to)`` of a reverse run: ``burn_in`` pairs ``(1, 1)`` (Gibbs sweeps at
    ``β = 1``; :func:`anneal` adds exactly 0 for them) followed by the schedule walked from 1
    down to 0: one scan, and without burn-in the same shapes as the forward run."""
    rb = betas[::-1]
    ones = jnp.ones((burn_in,), betas.dtype)
    return jnp.concatenate([ones, rb[:-1]]), jnp.concatenate([ones, rb[1:]])


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


# --------------------------------------------------------------------------- bidirectional


class BidirectionalAIS(NamedTuple):
    """A forward and a reverse AIS run of the same model on the same schedule.

    ``forward.log_z`` is a stochastic lower bound on ``log Z`` and ``reverse.log_z`` a
    stochastic upper bound (when the reverse start states are model samples); together they
    bracket ``log Z`` (:func:`egm.eval.record.bracket_from_log_z`).  ``temperatures``:
    ``len(betas) - 1``; ``burn_in``: Gibbs sweeps at ``β = 1`` before the reverse run;
    ``start``: where the reverse chains started, ``"forward"`` (the forward run's final
    states) or ``"given"`` (states passed by the caller, e.g. persistent training chains).
    """

    forward: AISResult
    reverse: AISResult
    temperatures: int
    burn_in: int
    start: str


def rbm_bidirectional_ais(
    key: PRNGKeyArray,
    params: RBMParams,
    base_b: Float[Array, " V"],
    *,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    burn_in: int = 1000,
    v_start: Float[Array, "C V"] | None = None,
) -> BidirectionalAIS:
    """Forward AIS (:func:`rbm_ais`) and reverse AIS (:func:`rbm_reverse_ais`) of a binary RBM.

    The reverse chains start from ``v_start`` if given, else from the forward run's final
    states, and run ``burn_in`` Gibbs sweeps at ``β = 1`` first (the recipe of
    :func:`egm.eval.rbm_log_likelihood_bracket`).  Either start is only approximately a
    sample of ``p``: forward AIS's unweighted final states follow the law of the annealed
    chain, which equals ``p`` only for a perfect schedule, and a finite Gibbs run from any
    start only approaches ``p``; so the reverse upper bound holds to the extent that the
    start is close to ``p``.
    """
    betas = _check(params, base_b, betas_salakhutdinov_murray() if betas is None else betas)
    k_f, k_r = jax.random.split(key)
    fwd = rbm_ais(k_f, params, base_b, n_chains=n_chains, betas=betas)
    start = fwd.final_v if v_start is None else v_start
    rev = rbm_reverse_ais(k_r, params, base_b, start, betas=betas, burn_in=burn_in)
    return BidirectionalAIS(
        fwd, rev, int(betas.shape[0] - 1), int(burn_in), "forward" if v_start is None else "given"
    )


# --------------------------------------------------------------------------- DBM (and MP-DBM)


def mpdbm_as_dbm(params: MPDBMParams) -> dbm.DBMParams:
    """The MP-DBM ``v - h¹ - … - h^L - y`` (:mod:`egm.estimators.mpdbm`) as a DBM whose top
    layer is its label layer: weights ``(W_1, …, W_L, U)``, biases ``(b_0, …, b_L, c)``.

    ``E(v, h, y) = E_DBM(v, h) - h^{L⊤} U y - cᵀy`` is the DBM energy of that stack, with
    ``y`` restricted to one-hot states: use it with ``softmax_top=True`` in :func:`dbm_ais`,
    :func:`dbm_reverse_ais` and :func:`dbm_bidirectional_ais`."""
    mpdbm.check_params(params)
    return dbm.DBMParams(
        (*params.dbm.weights, params.label_W), (*params.dbm.biases, params.label_b)
    )


def _sample_layer(key, logits, softmax: bool):
    """Bernoulli units, or one one-hot categorical unit over the layer when ``softmax``."""
    if softmax:
        k = jax.random.categorical(key, logits)
        return jax.nn.one_hot(k, logits.shape[-1], dtype=logits.dtype)
    return rbm.bernoulli_logits(key, logits)


def _uniform_layer(key, shape, softmax: bool):
    """A layer of the base model's free units: uniform bits, or a uniform one-hot state."""
    if softmax:
        return _sample_layer(key, jnp.zeros(shape, jnp.float32), True)
    return jax.random.bernoulli(key, 0.5, shape).astype(jnp.float32)


def _dbm_chain_step(params: dbm.DBMParams, base_b, softmax_top: bool):
    """One chain of the DBM path: carries the odd layers, sums out the even ones."""
    L = len(params.biases)
    odd, even = list(range(1, L, 2)), list(range(0, L, 2))
    top = L - 1 if softmax_top else None

    def full_state(odd_state):
        state = [None] * L
        for i, l in enumerate(odd):
            state[l] = odd_state[i]
        for l in even:  # even layers do not enter the logits of other even layers
            state[l] = jnp.zeros_like(params.biases[l])
        return state

    def even_logits(t, z, l):
        return (1 - t) * base_b + t * z if l == 0 else t * z

    def log_sum(l, a):  # log Σ over the states of one even layer of exp(aᵀx)
        return jax.nn.logsumexp(a) if l == top else jnp.sum(jax.nn.softplus(a))

    def chain_step(odd_state, key, t_from, t_to):
        state = full_state(odd_state)
        z = {l: dbm.layer_logits(params, tuple(state), l) for l in even}

        def log_f(t):
            lf = sum(t * (params.biases[l] @ state[l]) for l in odd)
            return lf + sum(log_sum(l, even_logits(t, z[l], l)) for l in even)

        dw = log_f(t_to) - log_f(t_from)
        keys = jax.random.split(key, L)
        for l in even:
            state[l] = _sample_layer(keys[l], even_logits(t_to, z[l], l), l == top)
        for l in odd:
            logits = t_to * dbm.layer_logits(params, tuple(state), l)
            state[l] = _sample_layer(keys[l], logits, l == top)
        return tuple(state[l] for l in odd), dw

    return chain_step


def _dbm_log_z_base(params: dbm.DBMParams, base_b, softmax_top: bool):
    """``log Z_A``: base-rate visibles, every hidden unit free (a free softmax layer of ``K``
    states contributes ``log K``)."""
    sizes = [b.shape[0] for b in params.biases]
    n_free = sum(sizes[1:-1]) + (0 if softmax_top else sizes[-1])
    log_top = jnp.log(float(sizes[-1])) if softmax_top else 0.0
    return jnp.sum(jax.nn.softplus(base_b)) + n_free * jnp.log(2.0) + log_top


def _check_dbm(params: dbm.DBMParams, base_b, betas, softmax_top: bool) -> np.ndarray:
    betas = np.asarray(betas_salakhutdinov_murray() if betas is None else betas, np.float32)
    if betas.ndim != 1 or betas[0] != 0.0 or betas[-1] != 1.0 or np.any(np.diff(betas) < 0):
        raise ConfigError("betas must be a non-decreasing 1-D schedule from 0.0 to 1.0 inclusive")
    if jnp.shape(base_b) != params.biases[0].shape:
        raise ConfigError(
            f"base_b has shape {jnp.shape(base_b)}, expected {params.biases[0].shape}"
        )
    if softmax_top and (len(params.biases) < 2 or params.biases[-1].shape[0] < 2):
        raise ConfigError(
            "softmax_top needs a top layer of at least 2 states above the visible layer, got "
            f"layer sizes {[b.shape[0] for b in params.biases]}"
        )
    return betas


def dbm_ais(
    key: PRNGKeyArray,
    params: dbm.DBMParams,
    base_b: Float[Array, " V"],
    *,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    softmax_top: bool = False,
) -> AISResult:
    r"""Forward AIS for ``log Z`` of a deep Boltzmann machine (Salakhutdinov & Hinton 2009).

    Path: ``p_β(x) ∝ exp((1-β) b_Aᵀv - β E(x))`` (§18.7), from the base-rate model ``A``
    (``v ~ Bernoulli(σ(b_A))``, every hidden unit free) at ``β = 0`` to the DBM at ``β = 1``:
    the whole energy is scaled by ``β``, the base model enters only through the visible
    biases.  The chains carry only the ODD layers; given them the even layers (``v``
    included) are independent and are summed out analytically:

    .. math:: \log f_β(x_{odd}) = β \sum_{l\,odd} b_l^\top x_l
              + \sum_{l\,even} \sum_i \zeta\big(β z_{l,i}\big),
              \quad z_l = b_l + W_l^\top x_{l-1} + W_{l+1} x_{l+1},

    with ``(1-β) b_A + β z_0`` for the visible layer.  Transitions are even/odd block Gibbs
    at ``β``.  ``softmax_top``: the top layer is one categorical unit (one-hot states; an
    MP-DBM's label layer, :func:`mpdbm_as_dbm`): summed out with ``logsumexp`` when even,
    drawn from a softmax when odd, ``log K`` in ``log Z_A``.  ``final_v`` holds the chains'
    last odd-layer states (a tuple), the start of :func:`dbm_reverse_ais`.
    """
    betas = _check_dbm(params, base_b, betas, softmax_top)
    if n_chains < 2:
        raise ConfigError(f"AIS needs at least 2 chains for a standard error, got {n_chains}")
    k0, k1 = jax.random.split(key)
    base_b = jnp.asarray(base_b, jnp.float32)
    betas = jnp.asarray(betas)
    x0 = _dbm_base_draw(k0, params, n_chains, softmax_top)
    x, log_w, log_mean_w, se, ess = _dbm_run(
        k1, params, base_b, x0, betas[:-1], betas[1:], softmax_top
    )
    log_za = _dbm_log_z_base(params, base_b, softmax_top)
    return AISResult(log_za + log_mean_w, se, ess, log_w, log_za, x)


@jax.jit(static_argnums=(2, 3))
def _dbm_base_draw(key, params, n_chains, softmax_top):
    """Odd layers of the base model: its hidden units are free (uniform bits, or a uniform
    one-hot softmax top layer)."""
    L = len(params.biases)
    odd = list(range(1, L, 2))
    ks = jax.random.split(key, len(odd))
    return tuple(
        _uniform_layer(k, (n_chains, params.biases[l].shape[0]), softmax_top and l == L - 1)
        for k, l in zip(ks, odd, strict=True)
    )


@jax.jit(static_argnums=6)
def _dbm_run(key, params, base_b, x0, b_from, b_to, softmax_top):
    """One annealing scan of the DBM path and its summary; forward runs and reverse runs of
    the same shapes (no burn-in) share this compiled program."""
    x, log_w = anneal(key, _dbm_chain_step(params, base_b, softmax_top), x0, b_from, b_to)
    return x, log_w, *_summarise(log_w)


def _check_odd_start(params: dbm.DBMParams, x_start, softmax_top: bool) -> tuple:
    L = len(params.biases)
    odd = list(range(1, L, 2))
    if not isinstance(x_start, tuple | list) or len(x_start) != len(odd):
        raise ConfigError(
            f"x_start must be a tuple of the {len(odd)} odd layers {odd} (e.g. dbm_ais(...)"
            f".final_v, or chains[1::2] of persistent chains), got {type(x_start).__name__}"
            + (f" of length {len(x_start)}" if isinstance(x_start, tuple | list) else "")
        )
    n = None
    for x, l in zip(x_start, odd, strict=True):
        name = f"x_start[{odd.index(l)}] (layer {l})"
        check_shape(x, params.biases[l].shape[0], name)
        check_binary(x, name)
        if n is not None and np.shape(x)[0] != n:
            raise DataError(
                f"every layer of x_start must hold the same chains; {name} has "
                f"{np.shape(x)[0]} rows, layer 1 has {n}"
            )
        n = np.shape(x)[0]
        if softmax_top and l == L - 1 and not np.all(np.asarray(x).sum(axis=1) == 1):
            raise DataError(f"{name} is the softmax top layer: every row must be one-hot")
    if n < 2:
        raise ConfigError("reverse AIS needs at least 2 start states for a standard error")
    return tuple(jnp.asarray(x, jnp.float32) for x in x_start)


def dbm_reverse_ais(
    key: PRNGKeyArray,
    params: dbm.DBMParams,
    base_b: Float[Array, " V"],
    x_start: tuple[Float[Array, "C n"], ...],
    *,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    burn_in: int = 0,
    softmax_top: bool = False,
) -> AISResult:
    r"""Reverse AIS for ``log Z`` of a DBM: a stochastic UPPER bound on ``log Z``.

    The path of :func:`dbm_ais` walked backwards, ``β: 1 → 0``, with the same odd-layer
    marginal ``f_β`` and the same block-Gibbs transitions (Grosse, Ghahramani & Adams 2015,
    "Sandwiching the marginal likelihood using bidirectional Monte Carlo").  From ``x ~ p_B``
    the weights ``w = Π_k f_{β_{k-1}}(x_k) / f_{β_k}(x_k)`` have ``E[w] = Z_A / Z_B``, so
    ``log Ẑ_B = log Z_A - log mean w`` over-estimates ``log Z_B`` in expectation (Jensen).
    (RAISE, Burda, Grosse & Salakhutdinov 2015, is a different reverse-annealing estimator:
    it starts from each test example and estimates ``log p(v)`` per example.)

    ``x_start``: the ODD layers ``(h¹, h³, …)`` of ``C`` start states, each ``(C, n_l)``
    (the even layers are summed out, so they are not needed); ``burn_in`` block-Gibbs sweeps
    at ``β = 1`` run first.  The start should be a sample of the DBM; in practice it is
    the final states of a forward run (:func:`dbm_bidirectional_ais`) or the persistent
    chains of training, after the burn-in.  Neither is exact: the forward run's unweighted
    final states follow the annealed chain's law (``p_B`` only for a perfect schedule), and
    a finite Gibbs run only approaches ``p_B``; so the upper bound holds to the extent that
    the start is close to the model.  The returned ``final_v`` are the states at ``β = 0``.
    Jitted; burn-in and annealing are one ``lax.scan`` over temperature pairs (the burn-in
    pairs are ``(1, 1)``), chains vmapped; without burn-in it is the forward run's compiled
    program.
    """
    betas = _check_dbm(params, base_b, betas, softmax_top)
    if burn_in < 0:
        raise ConfigError(f"burn_in must be >= 0 Gibbs sweeps, got {burn_in}")
    x = _check_odd_start(params, x_start, softmax_top)
    base_b = jnp.asarray(base_b, jnp.float32)
    b_from, b_to = _reverse_pairs(jnp.asarray(betas), int(burn_in))
    x, log_w, log_mean_w, se, ess = _dbm_run(key, params, base_b, x, b_from, b_to, softmax_top)
    log_za = _dbm_log_z_base(params, base_b, softmax_top)
    return AISResult(log_za - log_mean_w, se, ess, log_w, log_za, x)


def dbm_bidirectional_ais(
    key: PRNGKeyArray,
    params: dbm.DBMParams,
    base_b: Float[Array, " V"],
    *,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    burn_in: int = 1000,
    x_start: tuple[Float[Array, "C n"], ...] | None = None,
    softmax_top: bool = False,
) -> BidirectionalAIS:
    """Forward (:func:`dbm_ais`, ``n_chains`` chains) and reverse (:func:`dbm_reverse_ais`)
    AIS of a DBM on the same schedule: a stochastic bracket on ``log Z``.

    The reverse chains start from ``x_start`` (odd layers, e.g. ``chains[1::2]`` of the
    persistent training chains) if given, else from the forward run's final states, and
    run ``burn_in`` Gibbs sweeps at ``β = 1`` first (why that start is approximate: see
    :func:`dbm_reverse_ais`)."""
    betas = _check_dbm(params, base_b, betas, softmax_top)
    k_f, k_r = jax.random.split(key)
    fwd = dbm_ais(k_f, params, base_b, n_chains=n_chains, betas=betas, softmax_top=softmax_top)
    start = fwd.final_v if x_start is None else x_start
    rev = dbm_reverse_ais(
        k_r, params, base_b, start, betas=betas, burn_in=burn_in, softmax_top=softmax_top
    )
    return BidirectionalAIS(
        fwd, rev, int(betas.shape[0] - 1), int(burn_in), "forward" if x_start is None else "given"
    )
