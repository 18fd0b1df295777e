"""Denoising autoencoders as generative models (egm.models.dae, §20.11).

Exact answers on 3 binary units (8 states): the corruption table ``C[x, x̃]`` and the
reconstruction table ``P[x̃, x']`` are enumerated from the model's own log-probabilities, so
the chain's transition matrix ``T = C P`` (§20.11.1), its stationary distribution and the
walk-back costs' expectations are exact.  Histogram tolerances come from tests/_stats.py:
for M independent chains run n steps from a start ``q``, TV(histogram, π) ≤ tv_tolerance(π, M)
(E[TV] bound + McDiarmid deviation, failure probability ≤ 1e-6) + TV(q Tⁿ, π) (the exact
mixing bias, computed from T).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, clt_z, histogram, tv, tv_tolerance

from egm.errors import ConfigError
from egm.estimators.exact import all_binary_states
from egm.models import dae

D = 3
STATES = np.asarray(all_binary_states(D), np.float32)  # row i: the bits of i
WEIGHTS = 1 << np.arange(D - 1, -1, -1)


def _index(x):
    return np.asarray(x, np.int64) @ WEIGHTS


def _tiny(output="bernoulli", corruption="salt_pepper", level=0.6, seed=0):
    m = dae.DAE(D, (5,), output, 2 if output != "bernoulli" else 1, corruption, level).check()
    p = dae.init_params(jax.random.key(seed), m)
    # a head 0.1x small gives near-uniform P(x|x̃): scale it up for a structured chain
    p = jax.tree_util.tree_map(lambda a: 3.0 * a if a.ndim else a, p)
    p["head"]["W"] = p["head"]["W"] * 10.0
    return m, p


def _tables(m, p):
    """C[x, x̃] and P[x̃, x'] over the 8 states (float64), from one jitted call."""
    xs, xt = np.repeat(STATES, 8, 0), np.tile(STATES, (8, 1))  # pairs (row, column)
    both = jax.jit(lambda p: (dae.corruption_log_prob(m, xt, xs), dae.recon_log_prob(m, p, xt, xs)))
    C, P = (np.exp(np.asarray(a, np.float64)).reshape(8, 8) for a in both(p))
    return C, P


def _stationary(T):
    w, v = np.linalg.eig(T.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    return pi / pi.sum()


@pytest.mark.parametrize("level", [-0.1, 1.5, float("nan")])
def test_corruption_level_outside_unit_interval_is_refused(level):
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        dae.DAE(D, level=level).check()
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        dae.check_corruption_level(level, "flip")
    with pytest.raises(ConfigError, match=">= 0"):
        dae.check_corruption_level(-1.0, "gaussian")


@pytest.mark.slow
def test_tables_are_distributions():
    """Every row of C and of P sums to 1 (float32 log-probabilities: 1e-5)."""
    for out in ("bernoulli", "bernoulli_mixture"):
        C, P = _tables(*_tiny(out))
        np.testing.assert_allclose(C.sum(1), 1, atol=1e-5)
        np.testing.assert_allclose(P.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize(
    "output", ["bernoulli", pytest.param("bernoulli_mixture", marks=pytest.mark.slow)]
)
def test_chain_stationary_distribution_equals_transition_matrix_one(output):
    """M = 20000 independent chains (uniform start q) for n = 12 steps: their final states'
    histogram against π, the stationary distribution of T(x'|x) = Σ_x̃ C(x̃|x) P(x'|x̃), within
    tv_tolerance(π, M) + TV(q Tⁿ, π) (module docstring; ≈ 0.030 + ~1e-6 here).  The
    corruption draws are checked too: 20000 corruptions of x = 101 against row C[5]."""
    m, p = _tiny(output)
    C, P = _tables(m, p)
    T = C @ P
    pi = _stationary(T)
    M, n = 20000, 12
    k0, k1, k2 = jax.random.split(jax.random.key(1), 3)
    x0 = jax.random.bernoulli(k0, 0.5, (M, D)).astype(jnp.float32)
    out = jax.jit(lambda k, x: dae.sample_chain(k, m, p, x, n, keep_every=n))(k1, x0)
    hist = histogram(_index(out.x[-1]), 8)
    bias = tv(np.full(8, 1 / 8) @ np.linalg.matrix_power(T, n), pi)
    assert tv(hist, pi) < tv_tolerance(pi, M) + bias
    assert np.max(np.abs(pi - 1 / 8)) > 0.03  # a structured chain, not the uniform one
    xt = dae.corrupt(k2, m, jnp.tile(STATES[5], (M, 1)))
    assert tv(histogram(_index(xt), 8), C[5]) < tv_tolerance(C[5], M)


@pytest.mark.slow
def test_chain_with_true_posterior_samples_the_data_distribution():
    """Bengio et al. (2013): with P(x|x̃) = C(x̃|x) p(x) / Σ C(x̃|·) p the chain is Gibbs
    sampling on p(x) C(x̃|x), so its stationary distribution is p itself.  The table chain
    runs through :func:`dae.markov_chain`; same bound as above, the mixing bias from the
    exact table transition."""
    m = dae.DAE(D, corruption="flip", level=0.3).check()
    rng = np.random.default_rng(0)
    data_p = rng.dirichlet(np.ones(8))
    C, _ = _tables(m, dae.init_params(jax.random.key(0), m))
    post = C * data_p[:, None]  # [x, x̃] ∝ p(x) C(x̃|x)
    post = (post / post.sum(0, keepdims=True)).T  # [x̃, x]
    log_post, states = jnp.log(jnp.asarray(post, jnp.float32)), jnp.asarray(STATES)

    def step(k, x):
        k_c, k_s = jax.random.split(k)
        xt = dae.corrupt(k_c, m, x)
        new = states[jax.random.categorical(k_s, log_post[_index_j(xt)], -1)]
        return new, new

    M, n = 20000, 15
    x0 = jnp.zeros((M, D))
    out = jax.jit(lambda k: dae.markov_chain(k, step, x0, n, keep_every=n))(jax.random.key(2))
    hist = histogram(_index(out.x[-1]), 8)
    T = C @ post
    np.testing.assert_allclose(_stationary(T), data_p, atol=1e-9)
    bias = tv(np.eye(8)[0] @ np.linalg.matrix_power(T, n), data_p)
    assert tv(hist, data_p) < tv_tolerance(data_p, M) + bias


def _index_j(x):
    return (x @ jnp.asarray(WEIGHTS, jnp.float32)).astype(jnp.int32)


def test_clamped_units_never_change_and_free_units_sample_the_conditional():
    """Clamp unit 0 at 1 (inpainting, §20.11.2): in every kept state of every chain it equals
    its start value bit for bit; the free units' histogram matches the stationary law of the
    clamped chain T_c[x, x'] = Σ_{x'': free(x'') = free(x')} T[x, x''] over the 4 states with
    x_0 = 1 (bound as above)."""
    m, p = _tiny("bernoulli", "flip", 0.3, seed=3)
    C, P = _tables(m, p)
    T = C @ P
    keep = [i for i in range(8) if STATES[i, 0] == 1]  # states 4..7
    free = (STATES[:, 1:] @ np.array([2, 1])).astype(np.int64)  # index of the free units
    Tc = np.stack([[T[i, free == free[j]].sum() for j in keep] for i in keep])
    pi_c = _stationary(Tc)
    M, n = 20000, 10
    k0, k1 = jax.random.split(jax.random.key(4))
    x0 = jax.random.bernoulli(k0, 0.5, (M, D)).astype(jnp.float32).at[:, 0].set(1.0)
    clamp = jnp.zeros((M, D), bool).at[:, 0].set(True)
    out = jax.jit(lambda k: dae.sample_chain(k, m, p, x0, n, clamp=clamp))(k1)
    assert out.x.shape == (n, M, D)
    assert bool(jnp.all(out.x[:, :, 0] == x0[:, 0])) and bool(jnp.all(out.mean[:, :, 0] == 1))
    assert bool(jnp.any(out.x[:, :, 1:] != x0[:, 1:]))  # the free units do move
    hist = histogram(free[_index(out.x[-1])], 4)
    start = histogram(free[_index(x0)], 4)
    bias = tv(start @ np.linalg.matrix_power(Tc, n), pi_c)
    assert tv(hist, pi_c) < tv_tolerance(pi_c, M) + bias


@pytest.mark.slow
def test_walkback_terms_have_their_exact_expectations():
    """Term j of the walk-back criterion from x has expectation Σ_x̃ [C (P C)^j](x, x̃) L(x, x̃)
    with L(x, x̃) = -log P(x|x̃) (egm.models.dae.walkback_terms).  For each of the 8 states,
    M = 4000 copies: per (state, term) the CLT z < 5 (8 x 3 coordinates, chance failure ≈
    24 · 5.7e-7).  ``walkback_loss`` with n_walkback = 0 is the ordinary DAE loss: the first
    term from the same key, exactly."""
    m, p = _tiny("bernoulli_mixture", "salt_pepper", 0.5, seed=5)
    C, P = _tables(m, p)
    L = -np.log(P.T)  # L[x, x̃] = -log P(x | x̃)
    M, k = 4000, 3
    x = jnp.asarray(np.repeat(STATES, M, 0))
    key = jax.random.key(6)
    terms = np.asarray(jax.jit(lambda kk: dae.walkback_terms(kk, m, p, x, k))(key))
    reach = C.copy()
    for j in range(k):
        truth = (reach * L).sum(1)
        z = clt_z(terms[j].reshape(8, M).T, truth)
        assert np.all(z < Z), (j, z)
        reach = reach @ P @ C
    loss, metrics = dae.walkback_loss(key, m, p, x[:M], 0)
    first = dae.walkback_terms(key, m, p, x[:M], 1)[0]
    assert float(loss) == pytest.approx(float(jnp.mean(first)), rel=1e-6)
    assert float(metrics["recon_nll"]) == pytest.approx(float(loss), rel=1e-6)


@pytest.mark.slow
def test_gaussian_mixture_reconstruction_is_a_density_and_samples_it():
    """1-D Gaussian-mixture output: the density integrates to 1 on a fine grid (midpoint rule
    on [-12, 12], step 1e-3; the components' sds are ≈ 1, so the midpoint error ~1e-7 and the
    float32 sum's ~1e-5 are far below the 1e-3 tolerance); the mean of 20000 draws matches
    ``recon_mean`` (CLT z < 5); the Gaussian corruption's sample sd is 0.5 within 5 standard
    errors (sd / sqrt(2N) for a normal sample)."""
    m = dae.DAE(1, (4,), "gaussian_mixture", 3, "gaussian", 0.5).check()
    p = dae.init_params(jax.random.key(7), m)
    p["head"]["W"] = p["head"]["W"] * 20.0
    xt = jnp.array([[0.3]])
    grid = jnp.arange(-12, 12, 1e-3, dtype=jnp.float32)[:, None] + 5e-4
    dens = jax.jit(lambda g: jnp.exp(dae.recon_log_prob(m, p, g, jnp.broadcast_to(xt, g.shape))))
    assert float(jnp.sum(dens(grid)) * 1e-3) == pytest.approx(1.0, abs=1e-3)
    draws, mean = dae.sample_recon(jax.random.key(8), m, p, jnp.broadcast_to(xt, (20000, 1)))
    assert clt_z(np.asarray(draws), np.asarray(mean[0])).max() < Z
    g = dae.corrupt(jax.random.key(9), m, jnp.zeros((20000, 1)))
    assert float(jnp.std(g)) == pytest.approx(0.5, rel=5 / math.sqrt(2 * 20000))


def test_bad_model_fields_are_refused():
    with pytest.raises(ConfigError, match="do not fit"):
        dae.DAE(2, output="gaussian_mixture", corruption="flip").check()
    with pytest.raises(ConfigError, match="output"):
        dae.DAE(2, output="made").check()
    with pytest.raises(ConfigError, match="nade_hidden"):
        dae.DAE(2, output="nade", nade_hidden=0).check()
    with pytest.raises(ConfigError, match="multiple"):
        m, p = _tiny()
        dae.sample_chain(jax.random.key(0), m, p, jnp.zeros((1, D)), 5, keep_every=2)


def test_nade_output_is_a_full_conditional_with_exact_block_marginals_and_samples():
    """The NADE reconstruction distribution on 3 units: every row of P(x' | x̃) sums to 1
    (float32: 1e-5) and is not factorial (the point of a richer output: some row differs from
    the product of its own marginals by > 0.01); the masked log-likelihood of the last two
    units equals the enumerated marginal Σ_{x_0} P(x | x̃) (1e-5), and a mask that is not a
    final block is refused; M = 20000 draws at x̃ = 101 follow row P[5] (TV bound of
    tests/_stats.py) and their Rao–Blackwellised means estimate E[x | x̃] (CLT z < 5, plus 1e-6
    of float32 rounding for the unit drawn first, whose conditional is constant)."""
    m = dae.DAE(D, (5,), "nade", 1, "salt_pepper", 0.6, nade_hidden=4).check()
    p = dae.init_params(jax.random.key(11), m)
    p["head"]["W"] = p["head"]["W"] * 30.0
    k_w, k_v = jax.random.split(jax.random.key(12))
    p["nade"] = {
        "W": 2.0 * jax.random.normal(k_w, (D, 4)),
        "V": 2.0 * jax.random.normal(k_v, (D, 4)),
    }
    C, P = _tables(m, p)
    np.testing.assert_allclose(P.sum(1), 1, atol=1e-5)
    marg = P @ STATES  # [x̃, unit]
    fact = np.prod(np.where(STATES[None] == 1, marg[:, None], 1 - marg[:, None]), -1)
    assert np.max(np.abs(fact - P)) > 0.01
    xt, mask = np.tile(STATES, (8, 1)), np.array([False, True, True])
    xs = np.repeat(STATES, 8, 0)
    got = np.exp(np.asarray(dae.recon_log_prob(m, p, xt, xs, np.broadcast_to(mask, xt.shape))))
    tail = (STATES[:, 1:] @ np.array([2, 1])).astype(np.int64)
    want = np.stack([[P[i, tail == tail[j]].sum() for j in range(8)] for i in range(8)])
    np.testing.assert_allclose(got.reshape(8, 8), want, atol=1e-5)
    with pytest.raises(ConfigError, match="final block"):
        dae.recon_log_prob(m, p, xt, xs, np.broadcast_to(~mask, xt.shape))
    M = 20000
    x, probs = jax.jit(lambda k: dae.sample_recon(k, m, p, jnp.tile(STATES[5], (M, 1))))(
        jax.random.key(13)
    )
    assert tv(histogram(_index(x), 8), P[5]) < tv_tolerance(P[5], M)
    probs = np.asarray(probs, np.float64)  # the first unit drawn has a constant conditional:
    se = probs.std(0, ddof=1) / np.sqrt(M)  # so the float32 rounding floor 1e-6 beside 5 s.e.
    assert np.all(np.abs(probs.mean(0) - marg[5]) <= Z * se + 1e-6)
    with pytest.raises(ConfigError, match="no closed form"):
        dae.recon_mean(m, p, xt)
