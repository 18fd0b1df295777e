"""mPoT: free energy by numerical integration of the Gamma hiddens, conditionals against the
energy, and block Gibbs / HMC against exact moments from 2-D quadrature of exp(−F(v))."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, clt_z
from jax.scipy.special import digamma
from jax.scipy.stats import gamma as gamma_dist

from egm.energies import mpot
from egm.errors import ConfigError
from egm.estimators.exact import all_binary_states
from egm.samplers import block_gibbs, hmc, run


def _params(seed, D, F, N, M, c_scale=1.5):
    k = jax.random.split(jax.random.key(seed), 6)
    return mpot.MPoTParams(
        C=c_scale * jax.random.normal(k[0], (D, F)),
        P=jax.random.uniform(k[1], (F, N), minval=0.1, maxval=1.0),
        gamma=jax.random.uniform(k[2], (N,), minval=0.7, maxval=2.5),
        W=0.8 * jax.random.normal(k[3], (D, M)),
        b_m=0.5 * jax.random.normal(k[4], (M,)),
        b_v=0.7 * jax.random.normal(k[5], (D,)),
    )


@functools.partial(jax.jit, static_argnums=2)
def _log_integral_of_energy(p, v, step):
    """log Σ_{h_m} ∫_{(0,∞)²} exp(−E(v, h_c, h_m)) dh_c on a grid in u = log h_c (dh = e^u du):
    u ∈ [−45, 8] per axis.  The integrand in u is smooth and decays like e^{γu} as u → −∞
    (γ ≥ 0.7: < e^{−31} at −45) and doubly exponentially as u → +∞, so the grid sum converges
    geometrically in the spacing (checked in the test by halving it)."""
    u = jnp.arange(-45.0, 8.0, step)
    U = jnp.stack(jnp.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    hm = all_binary_states(p.b_m.shape[0])

    def logf(uu, h_m):
        return -mpot.energy(p, v, jnp.exp(uu), h_m) + jnp.sum(uu)

    vals = jax.vmap(lambda h_m: jax.vmap(lambda uu: logf(uu, h_m))(U))(hm)
    return jax.nn.logsumexp(vals) + 2 * jnp.log(step)


def test_free_energy_integrates_out_gamma_and_binary_hiddens():
    """F(v) = −log Σ_{h_m} ∫ exp(−E(v, h_c, h_m)) dh_c (N = 2 Gamma hiddens integrated on a
    2-D grid, M = 2 binary hiddens enumerated) at several random v.  Grid error: spacing 0.05
    vs 0.1 agree to < 1e-4; tolerance 1e-4 absolute plus float32 rounding of the ~3·10⁵ terms."""
    D, F, N, M = 3, 4, 2, 2
    p = _params(0, D, F, N, M)
    for v in 1.2 * jax.random.normal(jax.random.key(1), (3, D)):
        fine = float(_log_integral_of_energy(p, v, 0.05))
        coarse = float(_log_integral_of_energy(p, v, 0.1))
        assert abs(fine - coarse) < 1e-4
        np.testing.assert_allclose(-mpot.free_energy(p, v), fine, atol=3e-4)


def test_conditionals_match_the_energy():
    """p(h_c,k | v, rest) ∝ exp(−E) must be Gamma(γ_k, rate r_k(v)): log pdf + E is constant
    in h_c,k.  logit P(h_m,j = 1 | v) = E(h_m,j = 0) − E(h_m,j = 1)."""
    D, F, N, M = 3, 4, 3, 2
    p = _params(2, D, F, N, M)
    v = jnp.array([0.4, -1.1, 0.9])
    h_c = jnp.array([0.3, 1.7, 0.9])
    h_m = jnp.array([1.0, 0.0])
    rate = mpot.covariance_rate(p, v)
    for k in range(N):
        xs = jnp.array([0.05, 0.4, 1.3, 4.0])
        resid = jax.vmap(
            lambda x: (
                gamma_dist.logpdf(x * rate[k], p.gamma[k])
                + jnp.log(rate[k])
                + mpot.energy(p, v, h_c.at[k].set(x), h_m)
            )
        )(xs)
        np.testing.assert_allclose(resid - resid[0], 0.0, atol=2e-5)
    logits = mpot.mean_hidden_logits(p, v)
    for j in range(M):
        diff = mpot.energy(p, v, h_c, h_m.at[j].set(0.0)) - mpot.energy(
            p, v, h_c, h_m.at[j].set(1.0)
        )
        np.testing.assert_allclose(diff, logits[j], atol=1e-5)


def test_gamma_hidden_sampler_moments():
    """20,000 draws of h_c | v: E[h] = γ/r and E[log h] = ψ(γ) − log r, each within 5 CLT
    standard errors (sample sd)."""
    p = _params(3, 3, 4, 3, 2)
    v = jnp.array([0.8, -0.5, 1.2])
    n = 20000
    draw = jax.jit(jax.vmap(lambda k: mpot.sample_hidden(k, p, v)[0]))
    h = np.asarray(draw(jax.random.split(jax.random.key(4), n)), np.float64)
    rate = np.asarray(mpot.covariance_rate(p, v), np.float64)
    g = np.asarray(p.gamma, np.float64)
    assert np.max(clt_z(h, g / rate)) < Z
    assert np.max(clt_z(np.log(h), np.asarray(digamma(p.gamma)) - np.log(rate))) < Z
    # power: a draw with the rate ignored is rejected
    assert np.max(clt_z(h, g)) > Z


@functools.partial(jax.jit, static_argnums=2)
def _propose(key, p, n):
    """Mean-part proposal (h_m by enumeration, v | h_m ~ N(b_v + W h_m, I)) and the
    rejection test: exp(−F_cov(v)) ∝ Π_k r_k(v)^{−γ_k} ≤ 1 since r_k ≥ 1."""
    k1, k2, k3 = jax.random.split(key, 3)
    hm = all_binary_states(p.b_m.shape[0])
    m = p.b_v + hm @ p.W.T
    idx = jax.random.categorical(k1, hm @ p.b_m + 0.5 * jnp.sum(m**2, 1), shape=(n,))
    prop = m[idx] + jax.random.normal(k2, (n, p.b_v.shape[0]))
    log_acc = -jax.vmap(lambda v: p.gamma @ jnp.log(mpot.covariance_rate(p, v)))(prop)
    return prop, jnp.log(jax.random.uniform(k3, (n,))) < log_acc


def _exact_draws(key, p, n):
    prop, keep = _propose(key, p, 20 * n)
    keep = np.asarray(keep)
    assert keep.sum() >= n, "rejection sampler: too few acceptances, raise the proposal count"
    return jnp.asarray(np.asarray(prop)[keep][:n]), prop[:n]


def _quadrature_moments(p, step):
    """E[v] and E[v vᵀ] (flattened) under exp(−F(v)) on a 2-D grid covering ±10 around every
    mean-part component (the density is bounded by that unit-variance mixture)."""
    means = np.asarray(p.b_v + all_binary_states(p.b_m.shape[0]) @ p.W.T)
    lo, hi = means.min(0) - 10, means.max(0) + 10
    axes = [np.arange(lo[i], hi[i], step) for i in range(2)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    logf = jax.jit(jax.vmap(functools.partial(mpot.log_density, p)))(jnp.asarray(grid, jnp.float32))
    logf = np.asarray(logf, np.float64)
    w = np.exp(logf - logf.max())
    w /= w.sum()
    return w @ grid, w @ (grid[:, :, None] * grid[:, None, :]).reshape(-1, 4)


def _moments_of(v):
    v = np.asarray(v, np.float64)
    return v, (v[:, :, None] * v[:, None, :]).reshape(len(v), -1)


@pytest.mark.slow  # 17 s cold; the Gamma sampler's moments and the conditionals stay in the default suite
def test_block_gibbs_and_hmc_match_quadrature_moments():
    """D = 2, F = 3, N = M = 2.  Exact moments from a 2-D grid integral of exp(−F(v))
    (spacing 0.03; the grid-sum error, checked against spacing 0.06, is < 1e-5, negligible
    next to the CLT standard errors ≈ 1e-2).  20,000 chains start at exact draws (rejection
    sampler above), so after 30 steps of a p-invariant kernel — block Gibbs between Gamma
    hiddens and Gaussian visibles, or HMC on −F — each moment is within z = 5 CLT standard
    errors.  Power: the proposal (the model without its covariance units) is rejected."""
    p = _params(5, 2, 3, 2, 2, c_scale=1.0)
    mean, second = _quadrature_moments(p, 0.03)
    mean_c, second_c = _quadrature_moments(p, 0.06)
    assert np.max(np.abs(mean - mean_c)) < 1e-5 and np.max(np.abs(second - second_c)) < 1e-5
    n = 20000
    k = jax.random.split(jax.random.key(6), 4)
    v0, proposal = _exact_draws(k[0], p, n)
    s0 = jax.jit(jax.vmap(mpot.init_state, in_axes=(0, None, 0)))(jax.random.split(k[1], n), p, v0)
    sg, _ = jax.jit(run, static_argnums=(0, 4))(block_gibbs(mpot.BLOCKS), k[2], s0, p, 30)
    kernel = hmc(mpot.log_density, n_leapfrog=5, step_size=0.25)
    sh = jax.jit(jax.vmap(kernel.init, in_axes=(0, None)))(v0, p)
    sh, _ = jax.jit(run, static_argnums=(0, 4))(kernel, k[3], sh, p, 30)
    for v in (sg.v, sh.position):
        m1, m2 = _moments_of(v)
        assert np.max(clt_z(m1, mean)) < Z
        assert np.max(clt_z(m2, second)) < Z
    m1, m2 = _moments_of(proposal)
    assert max(np.max(clt_z(m1, mean)), np.max(clt_z(m2, second))) > Z


def test_project_clips_gamma_and_normalises_filters():
    p = _params(7, 4, 5, 3, 2)
    bad = p._replace(gamma=jnp.array([-1.0, 0.2, 3.0]), P=p.P.at[0, 0].set(-2.0), C=3 * p.C)
    q = jax.jit(mpot.project)(bad)
    np.testing.assert_allclose(q.gamma, [mpot.GAMMA_MIN, mpot.GAMMA_MIN, 3.0])
    assert float(q.P.min()) >= 0 and float(q.P[0, 0]) == 0.0
    np.testing.assert_allclose(q.P.sum(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(q.C, axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(mpot.project(bad, gamma_min=1.0).gamma, [1.0, 1.0, 3.0])
    with pytest.raises(ConfigError, match="gamma_min"):
        mpot.project(p, gamma_min=0.0)


def test_init_validates():
    p = mpot.init(jax.random.key(0), 16, 16, 4, 3, pooling="topographic", gamma=1.5)
    assert p.P.shape == (16, 4) and float(p.P.min()) >= 0
    np.testing.assert_allclose(p.gamma, 1.5)
    with pytest.raises(ConfigError, match="gamma"):
        mpot.init(jax.random.key(0), 16, 16, 16, 3, gamma=0.0)
    with pytest.raises(ConfigError, match="pooling"):
        mpot.init(jax.random.key(0), 16, 16, 16, 3, pooling="random")
