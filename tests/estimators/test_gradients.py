"""Gradient estimators of §20.9 against exact gradients (enumeration, analytic Gaussians).

Tolerances (tests/_stats.py): Monte-Carlo means use the CLT, ``|mean - truth| / (sd/√M)
< 5`` per coordinate (chance failure ≈ 5.7e-7 per coordinate); histograms use the E[TV]
+ McDiarmid bound at δ = 1e-6.  Sample variances use the CLT for the mean of the
squared deviations: ``Var(s²) ≈ (μ₄ - σ⁴) / M`` with the *exact* central moments
``μ₄, σ²`` from enumeration, so ``|s² - σ²| < 5 sqrt((μ₄ - σ⁴)/M)``.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, clt_z, histogram, tv, tv_tolerance

from egm.errors import ConfigError
from egm.estimators import exact
from egm.estimators import gradients as G

OMEGA = jnp.array([0.3, -0.5, 1.0])
A = jnp.array([1.0, -2.0, 0.5])
STATES = exact.all_binary_states(3)


def log_prob(w, y):
    return jnp.sum(y * jax.nn.log_sigmoid(w) + (1 - y) * jax.nn.log_sigmoid(-w))


def objective(w, y):
    # the offset 10 makes baselines matter; sin(ω)·y depends on ω directly (pathwise term)
    return (A @ y) ** 2 + 10.0 + jnp.sum(jnp.sin(w) * y)


def sample(key, w):
    return jax.random.bernoulli(key, jax.nn.sigmoid(w)).astype(jnp.float32)


def exact_grad(w):
    def expected(w):
        p = jnp.exp(jax.vmap(log_prob, (None, 0))(w, STATES))
        return jnp.sum(p * jax.vmap(objective, (None, 0))(w, STATES))

    return jax.grad(expected)(w)


def baseline_kwargs(name):
    if name == "constant":
        return {"baseline_state": G.init_baseline_state("constant", 7.0)}
    if name == "moving_average":
        return {"baseline_state": G.init_baseline_state("moving_average", 5.0)}
    if name == "learned":
        return {"baseline_state": jnp.array(4.0), "baseline_fn": lambda phi: phi}
    return {}


def pair_table(name):
    """Every estimate with n = 2 over all 64 sample pairs, and the pair probabilities."""
    idx = np.array(list(itertools.product(range(8), repeat=2)))
    ys = STATES[idx]  # (64, 2, 3)
    kw = baseline_kwargs(name)
    est = jax.jit(
        jax.vmap(
            lambda y: (
                G.reinforce_from_samples(OMEGA, y, log_prob, objective, baseline=name, **kw).grad
            )
        )
    )(ys)
    p = np.exp(np.asarray(jax.vmap(log_prob, (None, 0))(OMEGA, STATES), np.float64))
    return np.asarray(est, np.float64), p[idx[:, 0]] * p[idx[:, 1]]


@pytest.mark.parametrize("name", G.BASELINES)
def test_reinforce_expectation_is_exact_gradient_by_enumeration(name):
    """E[ĝ] over all 64 pairs (n = 2), weighted by their probabilities, equals ∇E[J]
    computed by autodiff of the enumerated expectation: an exact identity for every
    baseline independent of the sample it multiplies (float32 rounding only, 1e-4)."""
    est, w = pair_table(name)
    np.testing.assert_allclose(w @ est, np.asarray(exact_grad(OMEGA)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", G.BASELINES)
def test_reinforce_sampled_estimates_are_unbiased(name):
    """M = 4000 independent calls of ``reinforce`` (n = 4 samples each): per coordinate
    the mean is within Z = 5 CLT standard errors of the exact gradient."""
    kw = baseline_kwargs(name)
    fn = jax.jit(
        jax.vmap(
            lambda k: (
                G.reinforce(k, OMEGA, sample, log_prob, objective, 4, baseline=name, **kw).grad
            )
        )
    )
    est = np.asarray(fn(jax.random.split(jax.random.key(1), 4000)))
    assert np.all(clt_z(est, np.asarray(exact_grad(OMEGA))) < Z)


def _moments(est, w):
    mean = w @ est
    var = w @ (est - mean) ** 2
    mu4 = w @ (est - mean) ** 4
    return var, mu4


def test_baselines_reduce_variance_measured_within_derived_bounds():
    """Exact per-coordinate variances of the n = 2 estimator by enumeration; the measured
    sample variance over M = 4000 calls lies within 5 sqrt((μ₄ - σ⁴)/M) of it (module
    docstring), and with the offset J ≈ 10 the leave-one-out and optimal baselines reduce
    the total variance by more than 4x (exact), which the measured variances confirm
    (measured ratio > the ratio of the bounds' worst ends)."""
    M = 4000
    exact_var, measured = {}, {}
    for name in ("none", "leave_one_out", "optimal", "moving_average"):
        est_all, w = pair_table(name)
        var, mu4 = _moments(est_all, w)
        kw = baseline_kwargs(name)
        fn = jax.jit(
            jax.vmap(
                lambda k: (
                    G.reinforce(k, OMEGA, sample, log_prob, objective, 2, baseline=name, **kw).grad
                )
            )
        )
        est = np.asarray(fn(jax.random.split(jax.random.key(2), M)), np.float64)
        s2 = est.var(axis=0, ddof=1)
        tol = Z * np.sqrt((mu4 - var**2) / M)
        assert np.all(np.abs(s2 - var) < tol), (name, s2, var, tol)
        exact_var[name], measured[name] = (var, tol), s2
    v0, t0 = exact_var["none"]
    for name in ("leave_one_out", "optimal"):
        v, t = exact_var[name]
        assert v.sum() * 4 < v0.sum(), name
        assert measured[name].sum() < measured["none"].sum()
        assert measured["none"].sum() / measured[name].sum() > (v0 - t0).sum() / (v + t).sum()


def _identity(phi):
    return phi


RFS = jax.jit(
    G.reinforce_from_samples,
    static_argnums=(2, 3),
    static_argnames=("baseline", "baseline_fn", "decay", "return_per_sample"),
)


def test_reinforce_baseline_states_and_per_sample():
    J = jax.vmap(objective, (None, 0))(OMEGA, STATES[:3])
    ys = STATES[:3]
    r = RFS(
        OMEGA, ys, log_prob, objective, baseline="moving_average",
        baseline_state=jnp.array(5.0), decay=0.8, return_per_sample=True,
    )  # fmt: skip
    np.testing.assert_allclose(r.baseline_state, 0.8 * 5.0 + 0.2 * float(J.mean()), rtol=1e-6)
    np.testing.assert_allclose(r.learning_signal, J - 5.0, rtol=1e-6)
    np.testing.assert_allclose(r.per_sample.mean(0), r.grad, rtol=1e-5)
    # per-sample term by hand: (J - b) ∇log p + ∇_ω J
    s0 = jax.grad(log_prob)(OMEGA, ys[0]) * (J[0] - 5.0) + jax.grad(objective)(OMEGA, ys[0])
    np.testing.assert_allclose(r.per_sample[0], s0, rtol=1e-5)
    r = RFS(
        OMEGA, ys, log_prob, objective, baseline="learned",
        baseline_state=jnp.array(4.0), baseline_fn=_identity,
    )  # fmt: skip
    # ∇_φ ½ mean (J - φ)² = φ - mean J
    np.testing.assert_allclose(r.baseline_grad, 4.0 - float(J.mean()), rtol=1e-5)
    r = RFS(OMEGA, ys, log_prob, objective, baseline="leave_one_out")
    np.testing.assert_allclose(r.learning_signal, J - (J.sum() - J) / 2, rtol=1e-5)


def test_reinforce_same_key_same_output_and_jit():
    k = jax.random.key(3)
    f = lambda k: G.reinforce(k, OMEGA, sample, log_prob, objective, 5, baseline="optimal").grad
    np.testing.assert_array_equal(f(k), f(k))
    np.testing.assert_allclose(jax.jit(f)(k), f(k), rtol=1e-5)


def test_reinforce_rejects_bad_configs():
    with pytest.raises(ConfigError, match="baseline must be one of"):
        G.reinforce(jax.random.key(0), OMEGA, sample, log_prob, objective, 2, baseline="avg")
    with pytest.raises(ConfigError, match=">= 2"):
        G.reinforce(jax.random.key(0), OMEGA, sample, log_prob, objective, 1, baseline="optimal")
    with pytest.raises(ConfigError, match="baseline_state"):
        G.reinforce(jax.random.key(0), OMEGA, sample, log_prob, objective, 2, baseline="constant")
    with pytest.raises(ConfigError, match="baseline_fn"):
        G.reinforce(jax.random.key(0), OMEGA, sample, log_prob, objective, 2, baseline="learned")


# ---------------------------------------------------------------------------- VIMCO


def test_vimco_signals_match_definition():
    lw = jnp.array([0.3, -1.2, 2.0, 0.1])
    sig = np.asarray(G.vimco_learning_signals(lw))
    L = math.log(np.mean(np.exp(np.asarray(lw, np.float64))))
    for k in range(4):
        other = np.delete(np.asarray(lw, np.float64), k)
        repl = np.insert(other, k, other.mean())
        assert sig[k] == pytest.approx(L - math.log(np.mean(np.exp(repl))), abs=1e-5)


def test_vimco_gradient_is_exact_in_expectation():
    """K = 2 proposals over h ∈ {0,1}²: averaging the VIMCO surrogate's gradient over all
    16 pairs (weighted by q) equals the gradient of the enumerated E_q[log ½(w₁ + w₂)]
    w.r.t. both the model and the proposal parameters (exact identity, float32 rounding)."""
    H = exact.all_binary_states(2)
    theta = jnp.array([0.4, -0.7, 1.1])  # log p(x, h) = θ₀h₀ + θ₁h₁ + θ₂h₀h₁ - log Z (x fixed)
    phi = jnp.array([0.2, -0.3])

    def log_p(th, h):
        return th[0] * h[0] + th[1] * h[1] + th[2] * h[0] * h[1] - 3.0

    def log_q(ph, h):
        return log_prob(ph, h)

    pairs = np.array(list(itertools.product(range(4), repeat=2)))

    def bound(params):
        th, ph = params
        hs = H[pairs]  # (16, 2, 2)
        lw = jax.vmap(jax.vmap(lambda h: log_p(th, h) - log_q(ph, h)))(hs)
        qpair = jnp.exp(jax.vmap(jax.vmap(lambda h: log_q(ph, h)))(hs).sum(1))
        return jnp.sum(qpair * (jax.nn.logsumexp(lw, -1) - math.log(2)))

    truth = jax.jit(jax.grad(bound))((theta, phi))

    def surrogate_grad(hs):
        def s(params):
            th, ph = params
            lq = jax.vmap(lambda h: log_q(ph, h))(hs)
            lw = jax.vmap(lambda h: log_p(th, h))(hs) - lq
            return G.vimco_surrogate(lw, lq)

        return jax.grad(s)((theta, phi))

    grads = jax.jit(jax.vmap(surrogate_grad))(H[pairs])
    q = np.exp(np.asarray(jax.vmap(lambda h: log_q(phi, h))(H)))
    w = q[pairs[:, 0]] * q[pairs[:, 1]]
    for est, tru in zip(grads, truth, strict=True):
        np.testing.assert_allclose(w @ np.asarray(est), tru, rtol=1e-4, atol=1e-5)
    lw = jnp.array([0.5, -0.5])
    assert float(G.vimco_surrogate(lw, jnp.zeros(2))) == pytest.approx(
        float(jax.nn.logsumexp(lw) - math.log(2))
    )


# ---------------------------------------------------------------------------- reparam


def test_reparam_gaussian_gradient_matches_analytic():
    """J(y) = y², y = μ + σε: E[J] = μ² + σ², so ∇_μ = 2μ and ∇_{log σ} = 2σ².  M = 20000
    per-sample gradients; CLT z < 5 on both coordinates."""
    mu, log_std = 0.7, math.log(1.3)

    def f(eps, p):
        return p[0] + jnp.exp(p[1]) * eps

    g, val, per = G.reparam_gradient(
        jax.random.key(0), lambda p, y: y**2, f, jnp.array([mu, log_std]),
        lambda k: jax.random.normal(k), 20000, return_per_sample=True,
    )  # fmt: skip
    truth = np.array([2 * mu, 2 * 1.3**2])
    assert np.all(clt_z(np.asarray(per), truth) < Z)
    np.testing.assert_allclose(g, per.mean(0), rtol=1e-5)
    # reparam_gaussian draws N(μ, σ²): mean and variance by CLT (Var(y²-ish) via 2σ⁴)
    y = np.asarray(G.reparam_gaussian(jax.random.key(1), mu, log_std, n_samples=20000))
    assert clt_z(y[:, None], np.array([mu]))[0] < Z
    assert clt_z(((y - mu) ** 2)[:, None], np.array([1.3**2]))[0] < Z


def test_reparam_general_hook_lognormal():
    """y = exp(a + bε): E[y] = exp(a + b²/2), ∇_a = E[y], ∇_b = b E[y]; CLT z < 5."""
    a, b = 0.2, 0.5
    _, _, per = G.reparam_gradient(
        jax.random.key(4), lambda p, y: y, lambda e, p: jnp.exp(p[0] + p[1] * e),
        jnp.array([a, b]), lambda k: jax.random.normal(k), 20000, return_per_sample=True,
    )  # fmt: skip
    m = math.exp(a + b * b / 2)
    assert np.all(clt_z(np.asarray(per), np.array([m, b * m])) < Z)
    g, _, none = G.reparam_gradient(
        jax.random.key(4), lambda p, y: y, lambda e, p: jnp.exp(p[0] + p[1] * e),
        jnp.array([a, b]), lambda k: jax.random.normal(k), 20000,
    )  # fmt: skip
    assert none is None
    np.testing.assert_allclose(g, np.asarray(per).mean(0), rtol=1e-4)


# ---------------------------------------------------------------------------- relaxations

LOGITS = jnp.array([1.0, -0.5, 0.2, 0.0])


def test_gumbel_softmax_low_temperature_is_categorical_one_hot():
    """With z = logits + g (the sample's own Gumbel noise, same key) and Δ the gap between
    its two largest entries, 1 - max y ≤ (K - 1) exp(-Δ/τ) exactly, so every sample tends
    to the one-hot argmax as τ → 0; the mean distance shrinks with τ; and the argmax
    histogram over M = 20000 draws is within the TV bound of softmax(logits) (Gumbel-max
    trick, exact for every τ)."""
    keys = jax.random.split(jax.random.key(0), 20000)
    z = np.sort(np.asarray(jax.vmap(lambda k: LOGITS + jax.random.gumbel(k, (4,)))(keys)), 1)
    gap = z[:, -1] - z[:, -2]
    dist = []
    for tau in (0.1, 0.01, 0.001):
        y = np.asarray(jax.vmap(lambda k: G.gumbel_softmax(k, LOGITS, tau))(keys), np.float64)
        assert np.all(1 - y.max(1) <= 3 * np.exp(-gap / tau) + 1e-6)
        dist.append(np.mean(1 - y.max(1)))
    assert dist[0] > dist[1] > dist[2] and dist[2] < 1e-3
    p = np.asarray(jax.nn.softmax(LOGITS), np.float64)
    assert tv(histogram(y.argmax(1), 4), p) < tv_tolerance(p, 20000)


def test_gumbel_softmax_high_temperature_is_uniform():
    """softmax is ½-Lipschitz from ‖·‖∞ to ‖·‖∞ (row i of its Jacobian has ℓ₁ norm
    2 y_i (1 - y_i) ≤ ½), so |y_i - 1/K| ≤ ½ max_j |(logits_j + g_j)/τ| with the very
    Gumbel noise the sample used (same key)."""
    for tau in (10.0, 1e3):
        key = jax.random.key(5)
        y = np.asarray(G.gumbel_softmax(key, LOGITS, tau))
        g = np.asarray(jax.random.gumbel(key, LOGITS.shape))
        bound = 0.5 * np.max(np.abs(np.asarray(LOGITS) + g)) / tau
        assert np.max(np.abs(y - 0.25)) <= bound + 1e-7
    assert np.max(np.abs(np.asarray(G.gumbel_softmax(key, LOGITS, 1e3)) - 0.25)) < 0.01


def test_gumbel_softmax_hard_forward_one_hot_gradient_soft():
    key, w = jax.random.key(7), jnp.array([0.3, -1.0, 2.0, 0.5])
    for tau in (0.5, 2.0):
        hard = G.gumbel_softmax(key, LOGITS, tau, hard=True)
        soft = G.gumbel_softmax(key, LOGITS, tau)
        assert set(np.asarray(hard).tolist()) <= {0.0, 1.0} and float(hard.sum()) == 1.0
        assert int(np.argmax(hard)) == int(np.argmax(soft))
        gh = jax.grad(lambda l: jnp.sum(w * G.gumbel_softmax(key, l, tau, hard=True)))(LOGITS)
        gs = jax.grad(lambda l: jnp.sum(w * G.gumbel_softmax(key, l, tau)))(LOGITS)
        np.testing.assert_allclose(gh, gs, rtol=1e-6)
    batch = G.gumbel_softmax(key, jnp.zeros((5, 3, 4)), 1.0, hard=True)
    np.testing.assert_array_equal(batch.sum(-1), np.ones((5, 3)))
    with pytest.raises(ConfigError, match="tau"):
        G.gumbel_softmax(key, LOGITS, 0.0)


def test_temperature_schedule():
    assert float(G.temperature_schedule(0, tau0=1.0, rate=1e-3, tau_min=0.5)) == 1.0
    assert float(G.temperature_schedule(100, 1.0, 1e-3, 0.5)) == pytest.approx(math.exp(-0.1))
    assert float(G.temperature_schedule(10**6, 1.0, 1e-3, 0.5)) == 0.5
    assert float(G.temperature_schedule(999, 1.0, 1e-3, 0.5, every=500)) == pytest.approx(
        math.exp(-0.5)
    )
    with pytest.raises(ConfigError):
        G.temperature_schedule(0, tau_min=0.0)


def test_straight_through_and_relaxed_bernoulli():
    """Forward values are Bernoulli(σ(logits)) draws: frequencies within CLT z < 5 of σ;
    the straight-through gradient is σ'(logits); P(relaxed > ½) = σ(logits) for every τ."""
    logits = jnp.array([-1.0, 0.0, 2.0])
    keys = jax.random.split(jax.random.key(8), 20000)
    z = np.asarray(jax.vmap(lambda k: G.straight_through_bernoulli(k, logits))(keys))
    assert set(np.unique(z).tolist()) <= {0.0, 1.0}
    p = np.asarray(jax.nn.sigmoid(logits))
    assert np.all(clt_z(z, p) < Z)
    g = jax.grad(lambda l: jnp.sum(G.straight_through_bernoulli(keys[0], l)))(logits)
    np.testing.assert_allclose(g, p * (1 - p), rtol=1e-6)
    r = np.asarray(jax.vmap(lambda k: G.relaxed_bernoulli(k, logits, 0.7))(keys))
    assert np.all(clt_z((r > 0.5).astype(float), p) < Z)
    h = np.asarray(jax.vmap(lambda k: G.relaxed_bernoulli(k, logits, 0.7, hard=True))(keys))
    np.testing.assert_array_equal(h, (r > 0.5).astype(np.float32))


def test_concrete_density_integrates_and_matches_samples():
    """K = 2: the density in y₁ integrates to 1 (trapezoid on a fine grid, error < 1e-3)
    and its CDF at 0.3 matches the frequency of relaxed-Bernoulli draws (which are the
    binary Concrete) within CLT z < 5."""
    logits, tau = jnp.array([0.8, 0.0]), 0.6
    grid = np.linspace(1e-6, 1 - 1e-6, 200001)
    y = jnp.stack([jnp.asarray(grid), 1 - jnp.asarray(grid)], -1)
    dens = np.exp(np.asarray(G.concrete_log_density(y, logits, tau), np.float64))
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-3)
    cdf = np.trapezoid(dens[grid < 0.3], grid[grid < 0.3])
    keys = jax.random.split(jax.random.key(9), 20000)
    s = np.asarray(jax.vmap(lambda k: G.relaxed_bernoulli(k, logits[0] - logits[1], tau))(keys))
    assert clt_z((s < 0.3).astype(float)[:, None], np.array([cdf]))[0] < Z
