"""Generative stochastic networks (egm.models.gsn, §20.12).

Exact answers through the GSN's reduction to a DAE: with one hidden layer and no hidden noise
(σ = 0) the hidden state is the deterministic ``h(x̃) = tanh(x̃ W + b)`` of the corrupted
visible state, so on 3 binary units the corruption table ``C[x, x̃]`` (salt-and-pepper: a flip
with probability level/2 per unit) and ``P[x̃, x'] = p(x' | h(x̃))`` give the chain's exact
transition ``T = C P``.  Tolerances as in tests/_stats.py (TV bound for histograms, CLT z = 5
for Monte-Carlo means).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, histogram, tv, tv_tolerance

from egm.errors import ConfigError
from egm.estimators.exact import all_binary_states
from egm.models import dae, gsn

D = 3
STATES = np.asarray(all_binary_states(D), np.float32)
WEIGHTS = np.array([4, 2, 1])


def _tiny(level=0.6, seed=0):
    m = gsn.GSN(D, (4,), level=level, sigma=0.0).check()
    p = gsn.init_params(jax.random.key(seed), m)
    p["W"] = [3.0 * w for w in p["W"]]
    p["b"] = [jnp.linspace(-1, 1, 4)]
    p["c"] = jnp.array([0.5, -1.0, 0.2])
    return m, p


def _tables(m, p):
    """C[x, x̃], P[x̃, x'] (float64) of the σ = 0, L = 1 GSN."""
    corr = dae.DAE(D, corruption="salt_pepper", level=m.level)
    xs, xt = np.repeat(STATES, 8, 0), np.tile(STATES, (8, 1))
    C = np.exp(np.asarray(dae.corruption_log_prob(corr, xt, xs), np.float64)).reshape(8, 8)
    logits = jnp.tanh(STATES @ p["W"][0] + p["b"][0]) @ p["W"][0].T + p["c"]  # [x̃, D]
    P = np.exp(np.asarray(gsn.recon_log_prob(STATES[None], logits[:, None]), np.float64))
    return C, P


def test_bad_input_is_refused():
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        gsn.GSN(D, (4,), level=1.5).check()
    with pytest.raises(ConfigError, match="n_classes"):
        gsn.GSN(D, (4,), n_classes=1).check()
    with pytest.raises(ConfigError, match="sigma"):
        gsn.GSN(D, (4,), sigma=-1.0).check()
    m, p = _tiny()
    with pytest.raises(ConfigError, match="n_steps"):
        gsn.walkback_loss(jax.random.key(0), m, p, jnp.zeros((2, D)), 0)


@pytest.mark.slow
def test_chain_stationary_distribution_and_clamping():
    """σ = 0, L = 1: M = 20000 chains (uniform start q) for n = 12 transitions; their final
    states' histogram is within tv_tolerance(π, M) + TV(q Tⁿ, π) of T's stationary π.  With
    unit 2 clamped every kept state keeps it bit for bit."""
    m, p = _tiny()
    C, P = _tables(m, p)
    np.testing.assert_allclose(P.sum(1), 1, atol=1e-5)
    T = C @ P
    w, v = np.linalg.eig(T.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    pi /= pi.sum()
    M, n = 20000, 12
    k0, k1 = jax.random.split(jax.random.key(1))
    x0 = jax.random.bernoulli(k0, 0.5, (M, D)).astype(jnp.float32)
    clamp = jnp.zeros((M, D), bool).at[: M // 2, 2].set(True)
    chain = jax.jit(lambda k, c: gsn.sample_chain(k, m, p, x0, n, clamp=c, keep_every=2))
    free = chain(k1, jnp.zeros((M, D), bool))
    hist = histogram(np.asarray(free.x[-1], np.int64) @ WEIGHTS, 8)
    bias = tv(np.full(8, 1 / 8) @ np.linalg.matrix_power(T, n), pi)
    assert tv(hist, pi) < tv_tolerance(pi, M) + bias
    held = chain(k1, clamp)
    assert held.x.shape == (n // 2, M, D) and held.h1.shape == (n // 2, M, 4)
    assert bool(jnp.all(held.x[:, : M // 2, 2] == x0[: M // 2, 2]))
    assert bool(jnp.any(held.x[:, M // 2 :, 2] != x0[M // 2 :, 2]))


def test_walkback_one_step_is_the_dae_criterion_in_expectation():
    """One walk-back step from x costs -log p(x | h(x̃)), x̃ ~ C(·|x): expectation
    Σ_x̃ C[x, x̃] (-log P[x̃, x]).  The loss of M = 4000 copies of each of the 8 states is a
    mean of 32000 independent costs with expectation the mean of the 8 exact values; its
    standard error is from the exact per-state variances (Σ_x var_x / (8² M))^(1/2); z < 5."""
    m, p = _tiny(seed=2)
    C, P = _tables(m, p)
    L = -np.log(P.T)  # [x, x̃]
    mean_x = (C * L).sum(1)
    var_x = (C * L**2).sum(1) - mean_x**2
    M = 4000
    x = jnp.asarray(np.repeat(STATES, M, 0))
    loss, metrics = jax.jit(lambda k: gsn.walkback_loss(k, m, p, x, 1))(jax.random.key(3))
    se = math.sqrt(var_x.sum() / (64 * M))
    assert abs(float(loss) - mean_x.mean()) / se < Z
    assert float(metrics["recon_nll"]) == pytest.approx(float(loss), rel=1e-6)


def test_csl_estimate_is_consistent_with_the_chain_marginal():
    """CSL (Bengio, Yao & Cho 2013) from S = 20000 independent chains, each kept once after
    ``burn_in`` = 5 transitions: exp(CSL(x)) = (1/S) Σ_s p(x | h_s), an average of i.i.d.
    values P[x̃_s, x] with x̃_s distributed as r = q T⁵ C (q uniform: Bernoulli(0.5) starts),
    so its mean is [q T⁶](x) and its sd sqrt(Var_r P[·, x] / S), both exact; z < 5 for each
    of the 8 states.  As burn_in grows, q T⁶ → π: the estimator is consistent."""
    m, p = _tiny(seed=4)
    C, P = _tables(m, p)
    T = C @ P
    r = np.full(8, 1 / 8) @ np.linalg.matrix_power(T, 5) @ C
    mean = r @ P
    sd = np.sqrt(r @ P**2 - mean**2)
    S = 20000
    csl = jax.jit(lambda k: gsn.csl_log_likelihood(k, m, p, STATES, n_chains=S, n_steps=1,
                                                  burn_in=5, chunk=4))(jax.random.key(5))  # fmt: skip
    z = np.abs(np.exp(np.asarray(csl, np.float64)) - mean) / (sd / math.sqrt(S))
    assert np.all(z < Z), z


def test_discriminative_walkback_is_the_clamped_label_chain_in_expectation():
    """The discriminative GSN's walk-back loss (no corruption, σ = 0, one layer, K = 3) is
    the conditional chain over y with x clamped: step 1 from the uniform label state,
    ``h_1 = tanh(x W + b + ū V)``, ``p_1 = softmax(h_1 Vᵀ + d)``; step 2 from the drawn label
    ``s ~ p_1``, ``h_2(s) = tanh(x W + b + e_s V)`` with the *data* x.  So 1 step is a
    deterministic closed form (float32 vs float64: rtol 1e-5), and 2 steps have the exact
    expectation ``[w c_1 + l_1 + Σ_s p_1(s) (w c_2(s) + l_2(s))] / 2`` per example (c: −log
    p(x | h), l: −log p(y | h), w = recon_weight) and variance ``Var_{p_1}[(w c_2 + l_2)/2]``:
    the loss over M = 3000 copies of 4 (x, y) pairs is within z = 5 standard errors
    (Σ var / N²)^(1/2), N = 4M.  A chain that resampled x instead would move h_2 and the
    expectation."""
    m = gsn.GSN(D, (4,), level=0.0, sigma=0.0, n_classes=3).check()
    p = gsn.init_params(jax.random.key(7), m)
    p["W"], p["V"] = [2.0 * p["W"][0]], 3.0 * p["V"]
    p["b"], p["c"] = [jnp.linspace(-1, 1, 4)], jnp.array([0.3, -0.5, 0.1])
    p["d"] = jnp.array([0.2, 0.0, -0.4])
    x = STATES[[1, 3, 4, 6]]
    y = np.array([0, 2, 1, 2])
    W, b, V, c, d = (np.asarray(a, np.float64) for a in (p["W"][0], p["b"][0], p["V"], p["c"],
                                                         p["d"]))  # fmt: skip

    def terms(y_in):  # (c(x|h), l(y|h), p(.|h)) per pair for label input rows y_in
        h = np.tanh(x @ W + b + y_in @ V)
        lx = h @ W.T + c
        cx = -np.sum(x * -np.logaddexp(0, -lx) + (1 - x) * -np.logaddexp(0, lx), 1)
        ly = h @ V.T + d
        logp = ly - np.logaddexp.reduce(ly, 1, keepdims=True)
        return cx, -logp[np.arange(4), y], np.exp(logp)

    w = 0.5
    c1, l1, p1 = terms(np.full((4, 3), 1 / 3))
    M = 3000
    xs, ys = jnp.asarray(np.tile(x, (M, 1))), np.tile(y, M)
    loss1, loss2 = jax.jit(lambda k: [gsn.walkback_loss(k, m, p, xs, n, ys, recon_weight=w)[0]
                                      for n in (1, 2)])(jax.random.key(1))  # fmt: skip
    assert float(loss1) == pytest.approx(np.mean(w * c1 + l1), rel=1e-5)
    step2 = np.stack([w * terms(np.eye(3)[[s] * 4])[0] + terms(np.eye(3)[[s] * 4])[1]
                      for s in range(3)], 1)  # fmt: skip
    mean = (w * c1 + l1 + np.sum(p1 * step2, 1)) / 2
    var = np.sum(p1 * (step2 / 2) ** 2, 1) - np.sum(p1 * step2 / 2, 1) ** 2
    se = math.sqrt(M * var.sum()) / (4 * M)
    assert abs(float(loss2) - mean.mean()) / se < Z


@pytest.mark.slow
def test_discriminative_gsn_trains_to_a_label_and_keeps_x_clamped():
    """A discriminative GSN on 2 clusters (x = 1111 → y = 0, 0000 → y = 1, 4 units): after
    200 Adam steps on the walk-back loss, ``classify`` (x clamped) puts > 0.9 on the right
    label for both patterns (a separable problem; measured ≈ 0.99), and its rows sum to 1."""
    import optax

    m = gsn.GSN(4, (8,), level=0.2, sigma=0.5, n_classes=2).check()
    p = gsn.init_params(jax.random.key(0), m)
    x = jnp.array([[1.0] * 4, [0.0] * 4] * 16)
    y = jnp.array([0, 1] * 16)
    opt = optax.adam(0.05)

    @jax.jit
    def step(p, s, k):
        g = jax.grad(lambda q: gsn.walkback_loss(k, m, q, x, 2, y)[0])(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    s = opt.init(p)
    for i in range(200):
        p, s = step(p, s, jax.random.fold_in(jax.random.key(1), i))
    probs = gsn.classify(jax.random.key(2), m, p, x[:2], 10)
    np.testing.assert_allclose(np.asarray(probs.sum(1)), 1, atol=1e-5)
    assert float(probs[0, 0]) > 0.9 and float(probs[1, 1]) > 0.9


def test_sample_states_means_are_the_probabilities_of_the_drawn_states():
    """``means=True`` gives each state's ``p(x | h)`` instead of its binary draw, from the same
    chain (same key).  On the σ = 0, one-layer GSN every ``p(x | h)`` is ``sigmoid(tanh(x̃ W +
    b) Wᵀ + c)`` for one of the 8 corrupted states x̃ (exact table; float32 against float32
    computed in another order: 1e-5), and the draws of the same key are Bernoulli of those
    probabilities: their mean difference is within z = 5 standard errors of 0."""
    m, p = _tiny()
    key = jax.random.key(3)
    x = np.asarray(gsn.sample_states(key, m, p, 4000, 5, n_chains=200))
    mu = np.asarray(gsn.sample_states(key, m, p, 4000, 5, n_chains=200, means=True))
    table = np.asarray(jax.nn.sigmoid(jnp.tanh(STATES @ p["W"][0] + p["b"][0]) @ p["W"][0].T
                                      + p["c"]))  # fmt: skip
    assert set(np.unique(x)) <= {0.0, 1.0} and mu.shape == x.shape == (4000, D)
    assert np.abs(mu[:, None, :] - table[None]).max(-1).min(-1).max() < 1e-5
    assert len(np.unique(mu.round(5), axis=0)) > 1  # not a constant
    se = math.sqrt(float((mu * (1 - mu)).sum())) / mu.size
    assert abs(float((x - mu).mean())) < Z * se
