"""mcRBM: free energy and conditionals against the energy, the exact Gaussian sampler, and
block Gibbs / HMC against exact moments (enumeration + analytic Gaussian integrals, or 2-D
quadrature with input normalisation)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, clt_z

from egm.energies import _factored, mcrbm
from egm.errors import ConfigError
from egm.estimators.exact import all_binary_states
from egm.samplers import block_gibbs, hmc, run

NORM = (False, True)


def _params(seed, D, F, N, M, c_scale=1.2):
    k = jax.random.split(jax.random.key(seed), 6)
    return mcrbm.MCRBMParams(
        C=c_scale * jax.random.normal(k[0], (D, F)),
        P=jax.random.uniform(k[1], (F, N), minval=0.1, maxval=1.0),
        b_c=jax.random.normal(k[2], (N,)),
        W=0.8 * jax.random.normal(k[3], (D, M)),
        b_m=0.5 * jax.random.normal(k[4], (M,)),
        b_v=0.7 * jax.random.normal(k[5], (D,)),
    )


def _split(hs, N):
    return hs[:, :N], hs[:, N:]


@pytest.mark.parametrize("norm", NORM)
def test_free_energy_sums_out_both_hidden_layers(norm):
    """F(v) = −log Σ_{h_c, h_m} exp(−E(v, h_c, h_m)), enumerating all 2^(N+M) = 32 states,
    at several random v; float32 agreement (rtol 1e-5)."""
    D, F, N, M = 3, 4, 3, 2
    p = _params(0, D, F, N, M)
    hc, hm = _split(all_binary_states(N + M), N)
    for v in 1.5 * jax.random.normal(jax.random.key(1), (4, D)):
        E = jax.vmap(lambda a, b: mcrbm.energy(p, v, a, b, normalize_input=norm))(hc, hm)
        np.testing.assert_allclose(
            mcrbm.free_energy(p, v, normalize_input=norm), -jax.nn.logsumexp(-E), rtol=1e-5
        )


@pytest.mark.parametrize("norm", NORM)
def test_conditionals_are_energy_differences(norm):
    """logit P(h_k = 1 | v, rest) = E(h_k = 0) − E(h_k = 1), for every unit of both layers,
    at random v and random states of the other units (the layers factorise given v)."""
    D, F, N, M = 3, 4, 3, 2
    p = _params(2, D, F, N, M)
    keys = jax.random.split(jax.random.key(3), 3)
    v = 1.5 * jax.random.normal(keys[0], (D,))
    h = jax.random.bernoulli(keys[1], 0.5, (N + M,)).astype(jnp.float32)
    logits = jnp.concatenate(
        [
            mcrbm.covariance_hidden_logits(p, v, normalize_input=norm),
            mcrbm.mean_hidden_logits(p, v),
        ]
    )

    def E(x):
        return mcrbm.energy(p, v, x[:N], x[N:], normalize_input=norm)

    for i in range(N + M):
        diff = E(h.at[i].set(0.0)) - E(h.at[i].set(1.0))
        np.testing.assert_allclose(diff, logits[i], atol=1e-4)


def test_normalised_input_is_contrast_invariant():
    """ṽ = v / sqrt(mean(v²) + ε): scaling a high-contrast v leaves ṽ (nearly) unchanged and
    ‖ṽ‖² < D always."""
    v = jnp.array([3.0, -4.0, 5.0])
    a, b = _factored.normalize(v), _factored.normalize(10 * v)
    np.testing.assert_allclose(a * jnp.sqrt(1 + 0.5 / jnp.mean(v**2)), b * 1.0, rtol=1e-2)
    assert float(jnp.sum(b**2)) < 3.0
    np.testing.assert_allclose(_factored.normalize(v, 0.0), v / jnp.sqrt(jnp.mean(v**2)))


def _exact_hidden_law(p):
    logw, hc, hm, mu, cov = _hidden_law(p)
    return logw, hc, hm, np.asarray(mu, np.float64), np.asarray(cov, np.float64)


@jax.jit
def _hidden_law(p):
    """p(h) ∝ exp(−F_h(h)) over all (h_c, h_m), the Gaussian means Λ⁻¹m and covariances Λ⁻¹."""
    N, M = p.b_c.shape[0], p.b_m.shape[0]
    hc, hm = _split(all_binary_states(N + M), N)
    logw = -jax.vmap(lambda a, b: mcrbm.free_energy_hidden(p, a, b))(hc, hm)
    lam = jax.vmap(lambda a: _factored.precision(p.C, p.P, a))(hc)
    cov = jnp.linalg.inv(lam)
    mu = jnp.einsum("sij,sj->si", cov, p.b_v + hm @ p.W.T)
    return logw, hc, hm, mu, cov


def _grid(lo, hi, step):
    axes = [np.arange(lo[i], hi[i], step) for i in range(2)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)


def _quadrature(logf_fn, p, step):
    """log ∫ exp(logf) and the moments E[v], E[v vᵀ] (flattened) on a 2-D grid covering
    ±10 sd of every mean-part component (the density is bounded by that Gaussian mixture
    times a constant, see _exact_draws)."""
    M = p.b_m.shape[0]
    means = np.asarray(p.b_v + all_binary_states(M) @ p.W.T)
    grid = _grid(means.min(0) - 10, means.max(0) + 10, step)
    logf = np.asarray(jax.jit(jax.vmap(logf_fn))(jnp.asarray(grid, jnp.float32)), np.float64)
    w = np.exp(logf - logf.max())
    log_int = np.log(w.sum()) + logf.max() + 2 * np.log(step)
    w /= w.sum()
    mean = w @ grid
    second = w @ (grid[:, :, None] * grid[:, None, :]).reshape(-1, 4)
    return log_int, mean, second


def _moments_of(v):
    v = np.asarray(v, np.float64)
    return v, (v[:, :, None] * v[:, None, :]).reshape(len(v), -1)


@functools.partial(jax.jit, static_argnums=2)
def _mean_part_draws(key, p, n):
    """Exact draws from p_mean(v) ∝ exp(−F_mean(v)) = Σ_{h_m} exp(b_mᵀh_m − ½vᵀv + mᵀv),
    m = b_v + W h_m: h_m ~ p(h_m) ∝ exp(b_mᵀh_m + ½‖m‖²) by enumeration, v | h_m ~ N(m, I)."""
    M = p.b_m.shape[0]
    hm = all_binary_states(M)
    m = p.b_v + hm @ p.W.T
    logw = hm @ p.b_m + 0.5 * jnp.sum(m**2, 1)
    k1, k2 = jax.random.split(key)
    idx = jax.random.categorical(k1, logw, shape=(n,))
    return m[idx] + jax.random.normal(k2, (n, p.b_v.shape[0]))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _propose(key, p, n, norm):
    k1, k2 = jax.random.split(key)
    prop = _mean_part_draws(k1, p, n)
    logits = jax.vmap(lambda v: mcrbm.covariance_hidden_logits(p, v, normalize_input=norm))(prop)
    log_acc = jnp.sum(jax.nn.softplus(logits) - jax.nn.softplus(p.b_c), axis=1)
    return prop, jnp.log(jax.random.uniform(k2, (n,))) < log_acc


def _exact_draws(key, p, n, norm):
    """Exact draws of p(v) ∝ exp(−F(v)) by rejection from the mean part: F = F_mean + F_cov
    with F_cov(v) = −Σ_k ζ(b_c,k − q_k(v)), q_k ≥ 0 (P ≥ 0), so
    exp(−F_cov) ≤ Π_k (1 + e^{b_c,k}); accept with probability exp(−F_cov)/that bound."""
    prop, keep = _propose(key, p, 8 * n, norm)
    keep = np.asarray(keep)
    assert keep.sum() >= n, "rejection sampler: too few acceptances, raise the proposal count"
    return jnp.asarray(np.asarray(prop)[keep][:n]), prop[:n]


def test_exact_log_partition_matches_quadrature():
    """Without normalisation log Z = logsumexp_h −F_h(h) (Gaussian integrals over v) equals
    the 2-D grid integral of exp(−F(v)); the grid sum's own error is bounded by comparing
    two spacings (0.04 vs 0.02): they agree to 1e-4 (float32 evaluation of F), below the
    tolerance (rtol 1e-4 of log Z ≈ 6, i.e. 6e-4)."""
    p = _params(4, 2, 3, 2, 2)
    logw = _exact_hidden_law(p)[0]
    log_z = float(jax.nn.logsumexp(logw))
    fn = functools.partial(mcrbm.log_density, p)
    coarse, fine = _quadrature(fn, p, 0.04)[0], _quadrature(fn, p, 0.02)[0]
    assert abs(coarse - fine) < 1e-4
    np.testing.assert_allclose(fine, log_z, rtol=1e-4)


def test_gaussian_sampler_moments():
    """v ~ N(Λ⁻¹b, Λ⁻¹), Λ = I + C diag(P h_c) Cᵀ: 20,000 exact draws; means and all second
    moments within 5 CLT standard errors (sample sd) of the analytic values."""
    p = _params(5, 3, 4, 3, 2)
    h_c = jnp.array([1.0, 0.0, 1.0])
    b = jnp.array([0.5, -1.0, 2.0])
    n = 20000
    draw = jax.jit(jax.vmap(lambda k: _factored.sample_gaussian(k, p.C, p.P, h_c, b)))
    v = draw(jax.random.split(jax.random.key(6), n))
    cov = np.linalg.inv(np.asarray(_factored.precision(p.C, p.P, h_c), np.float64))
    mean = cov @ np.asarray(b, np.float64)
    np.testing.assert_allclose(_factored.gaussian_mean(p.C, p.P, h_c, b), mean, rtol=1e-4)
    v = np.asarray(v, np.float64)
    vv = (v[:, :, None] * v[:, None, :]).reshape(n, -1)
    assert np.max(clt_z(v, mean)) < Z
    assert np.max(clt_z(vv, (cov + np.outer(mean, mean)).ravel())) < Z
    # power: the same statistics see the covariance term (Λ = I would be rejected)
    assert np.max(clt_z(vv, (np.eye(3) + np.outer(b, b)).ravel())) > Z


def test_block_gibbs_and_hmc_match_exact_moments_without_normalisation():
    """D = 2, N = M = 2.  Chains start at exact draws (h ~ p(h) by enumeration, v | h exact),
    so after any number of steps of a p-invariant kernel they are still exact draws and each
    moment over 20,000 independent chains is within z = 5 CLT standard errors of the exact
    mixture moments E[v] = Σ_h p(h) μ_h, E[vvᵀ] = Σ_h p(h)(Λ_h⁻¹ + μ_h μ_hᵀ), which agree
    with a 2-D quadrature of exp(−F(v)) to 1e-4 (a check independent of the Gaussian code).
    Power: the mean-part proposal (no covariance units) is rejected by the same statistics."""
    p = _params(7, 2, 3, 2, 2)
    logw, hc, hm, mu, cov = _exact_hidden_law(p)
    ph = np.asarray(jax.nn.softmax(logw), np.float64)
    mean = ph @ mu
    second = ph @ (cov + mu[:, :, None] * mu[:, None, :]).reshape(len(ph), -1)
    # the analytic moments agree with an independent 2-D quadrature of exp(−F(v))
    _, q_mean, q_second = _quadrature(functools.partial(mcrbm.log_density, p), p, 0.03)
    np.testing.assert_allclose(mean, q_mean, atol=1e-4)
    np.testing.assert_allclose(second, q_second, atol=1e-4)
    n = 20000
    k = jax.random.split(jax.random.key(8), 5)

    @jax.jit
    def start(k0, k1):
        idx = jax.random.categorical(k0, logw, shape=(n,))
        v0 = jax.vmap(mcrbm.sample_visible, in_axes=(0, None, 0, 0))(
            jax.random.split(k1, n), p, hc[idx], hm[idx]
        )
        return mcrbm.MCRBMState(v0, hc[idx], hm[idx])

    s0 = start(k[0], k[1])
    v0 = s0.v
    gibbs = block_gibbs(mcrbm.gibbs_blocks())
    sg, _ = jax.jit(run, static_argnums=(0, 4))(gibbs, k[2], s0, p, 30)
    kernel = hmc(mcrbm.log_density, n_leapfrog=5, step_size=0.25)
    sh = jax.jit(jax.vmap(kernel.init, in_axes=(0, None)))(v0, p)
    sh, _ = jax.jit(run, static_argnums=(0, 4))(kernel, k[3], sh, p, 30)
    for v in (sg.v, sh.position):
        m1, m2 = _moments_of(v)
        assert np.max(clt_z(m1, mean)) < Z
        assert np.max(clt_z(m2, second)) < Z
    # the rejection sampler used for the normalised model is exact here too
    exact, proposal = _exact_draws(k[4], p, n, False)
    m1, m2 = _moments_of(exact)
    assert np.max(clt_z(m1, mean)) < Z and np.max(clt_z(m2, second)) < Z
    m1, m2 = _moments_of(proposal)
    assert max(np.max(clt_z(m1, mean)), np.max(clt_z(m2, second))) > Z


def test_hmc_matches_quadrature_moments_with_normalisation():
    """With ṽ = v / sqrt(mean(v²) + ε) there is no Gaussian v | h; the exact moments come from
    a 2-D grid integral of exp(−F(v)) (spacing 0.03; grid-sum error checked against spacing
    0.06 to be < 1e-5, negligible next to the CLT standard errors ≈ 1e-2).  Chains start at
    exact draws (rejection sampler, _exact_draws), take 30 HMC steps on −F, and every moment
    over 20,000 chains is within z = 5 CLT standard errors.  Power: the mean-part proposal
    (the model without its covariance units) is rejected by the same statistics."""
    p = _params(9, 2, 3, 2, 2, c_scale=1.5)
    fn = functools.partial(mcrbm.log_density, p, normalize_input=True)
    _, mean, second = _quadrature(fn, p, 0.03)
    _, mean_c, second_c = _quadrature(fn, p, 0.06)
    assert np.max(np.abs(mean - mean_c)) < 1e-5 and np.max(np.abs(second - second_c)) < 1e-5
    n = 20000
    k = jax.random.split(jax.random.key(10), 3)
    v0, proposal = _exact_draws(k[0], p, n, True)
    logd = functools.partial(mcrbm.log_density, normalize_input=True)
    kernel = hmc(logd, n_leapfrog=5, step_size=0.25)
    sh = jax.jit(jax.vmap(kernel.init, in_axes=(0, None)))(v0, p)
    sh, info = jax.jit(run, static_argnums=(0, 4))(kernel, k[1], sh, p, 30)
    m1, m2 = _moments_of(sh.position)
    assert np.max(clt_z(m1, mean)) < Z
    assert np.max(clt_z(m2, second)) < Z
    m1, m2 = _moments_of(proposal)
    assert max(np.max(clt_z(m1, mean)), np.max(clt_z(m2, second))) > Z


def test_gibbs_blocks_refuse_normalised_input():
    with pytest.raises(ConfigError, match="HMC"):
        mcrbm.gibbs_blocks(normalize_input=True)


def test_project_keeps_pooling_nonnegative_and_normalised():
    """After project: P ≥ 0 with unit-L1 columns (an all-negative column becomes uniform),
    C columns of L2 norm c_norm (None: all equal to the mean norm); project is idempotent."""
    p = _params(11, 5, 6, 4, 3)
    P = p.P.at[:, 0].set(-1.0).at[2, 1].set(-3.0)
    C = p.C * jnp.arange(1.0, 7.0)
    project = jax.jit(mcrbm.project, static_argnames="c_norm")
    q = project(p._replace(C=C, P=P))
    assert float(q.P.min()) >= 0.0
    np.testing.assert_allclose(q.P.sum(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(q.P[:, 0], 1 / 6, rtol=1e-6)
    assert float(q.P[2, 1]) == 0.0
    np.testing.assert_allclose(jnp.linalg.norm(q.C, axis=0), 1.0, rtol=1e-5)
    r = project(p._replace(C=C, P=P), c_norm=None)
    norms = jnp.linalg.norm(C, axis=0)
    np.testing.assert_allclose(jnp.linalg.norm(r.C, axis=0), norms.mean(), rtol=1e-5)
    np.testing.assert_allclose(r.C / jnp.linalg.norm(r.C, axis=0), C / norms, rtol=1e-5)
    for a, b in zip(project(q), q, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ConfigError, match="c_norm"):
        mcrbm.project(p, c_norm=0.0)


def test_init_pooling_and_sizes():
    p = mcrbm.init(jax.random.key(0), 64, 64, 16, 8, pooling="topographic")
    assert p.P.shape == (64, 16) and float(p.P.min()) >= 0
    np.testing.assert_allclose(p.P.sum(0), 1.0, rtol=1e-6)
    assert int((p.P[:, 0] > 0).sum()) == 9  # a 3×3 window of factors
    np.testing.assert_allclose(jnp.linalg.norm(p.C, axis=0), 1.0, rtol=1e-5)
    q = mcrbm.init(jax.random.key(0), 10, 7, 7, 3)
    np.testing.assert_allclose(q.P, jnp.eye(7))
    with pytest.raises(ConfigError, match="identity"):
        mcrbm.init(jax.random.key(0), 10, 7, 5, 3)
    with pytest.raises(ConfigError, match="perfect squares"):
        mcrbm.init(jax.random.key(0), 10, 50, 16, 3, pooling="topographic")
    with pytest.raises(ConfigError, match="n_mean"):
        mcrbm.init(jax.random.key(0), 10, 7, 7, 0)
