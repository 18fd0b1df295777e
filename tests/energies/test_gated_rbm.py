"""Higher-order Boltzmann machines (§20.8) against brute-force enumeration.

Gated RBM (Memisevic & Hinton 2010), tiny model I = J = K = 3, F = 4: the factored energy
equals the full three-way tensor's, both conditionals and the free energy equal enumeration,
the phase formula equals the exact gradient of -log p(y|x), and the CD chain's kernel leaves
p(y|x) invariant (histogram).  Third-order BM, n = 4 units (16 states): conditionals are
energy differences, the Gibbs sampler's histogram matches the enumerated distribution, the
sampled log-likelihood gradient matches the exact one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, histogram, tv, tv_tolerance

from egm.energies import gated_rbm, third_order
from egm.estimators.exact import all_binary_states, state_index

I, J, K, F = 3, 3, 3, 4


def _gated(seed=0, scale=1.0):
    k = jax.random.split(jax.random.key(seed), 5)
    return gated_rbm.GatedRBMParams(
        Wx=scale * jax.random.normal(k[0], (I, F)),
        Wy=scale * jax.random.normal(k[1], (J, F)),
        Wh=scale * jax.random.normal(k[2], (K, F)),
        b=0.5 * jax.random.normal(k[3], (J,)),
        c=0.5 * jax.random.normal(k[4], (K,)),
    )


def _x(seed=1):
    return jax.random.normal(jax.random.key(seed), (I,))


@jax.jit
def _gated_tables(p, x):
    """-E(y, h; x) over all 2^J × 2^K states [y, h], by brute force."""
    ys, hs = all_binary_states(J), all_binary_states(K)
    return jax.vmap(lambda y: jax.vmap(lambda h: -gated_rbm.energy(p, x, y, h))(hs))(ys)


def test_factored_energy_equals_full_tensor_energy():
    """E = -Σ_ijk W_ijk x_i y_j h_k - bᵀy - cᵀh with W = Σ_f Wx Wy Wh, at every (y, h) and a
    real-valued x: the same sum in another order (float32, 1e-5)."""
    p, x = _gated(0), _x()
    W = gated_rbm.full_tensor(p)
    ys, hs = all_binary_states(J), all_binary_states(K)
    full = -jnp.einsum("ijk,i,yj,hk->yh", W, x, ys, hs) - (ys @ p.b)[:, None] - (hs @ p.c)[None]
    np.testing.assert_allclose(-_gated_tables(p, x), full, atol=1e-5)


def test_gated_conditionals_and_free_energy_equal_enumeration():
    """P(h_k=1|x,y) = Σ_h h_k e^{-E} / Σ_h e^{-E} for every y, P(y_j=1|x,h) likewise for
    every h, and F(y; x) = -log Σ_h e^{-E}: sums of 8 terms in float32 (1e-5)."""
    p, x = _gated(2), _x(3)
    ys, hs = all_binary_states(J), all_binary_states(K)
    t = _gated_tables(p, x)  # [y, h]
    ph = jax.nn.softmax(t, axis=1) @ hs  # E[h | x, y]
    py = jax.nn.softmax(t, axis=0).T @ ys  # E[y | x, h]
    np.testing.assert_allclose(jax.vmap(gated_rbm.hidden_probs, (None, None, 0))(p, x, ys), ph,
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(jax.vmap(gated_rbm.output_probs, (None, None, 0))(p, x, hs), py,
                               atol=1e-5)  # fmt: skip
    fe = jax.vmap(gated_rbm.free_energy, (None, None, 0))(p, x, ys)
    np.testing.assert_allclose(fe, -jax.nn.logsumexp(t, axis=1), atol=1e-5)


def test_gated_phase_formula_equals_exact_conditional_gradient():
    """∇[F(y; x) − Σ_y' p(y'|x) F(y'; x)] (p held fixed) = ∇ −log p(y | x), with log p(y|x)
    = −F(y; x) − log Σ_y' e^{−F(y'; x)} by enumeration over the 8 outputs; float32 (1e-5).
    (The phase formula is what :func:`gated_rbm.cd_surrogate` estimates with CD samples.)"""
    p, x, y = _gated(4), _x(5), jnp.array([1.0, 0.0, 1.0])
    ys = all_binary_states(J)
    fe = lambda p: jax.vmap(gated_rbm.free_energy, (None, None, 0))(p, x, ys)  # noqa: E731

    @jax.jit
    def grads(p):
        exact = jax.grad(lambda p: gated_rbm.free_energy(p, x, y) + jax.nn.logsumexp(-fe(p)))(p)
        w = jax.lax.stop_gradient(jax.nn.softmax(-fe(p)))
        phase = jax.grad(lambda p: gated_rbm.free_energy(p, x, y) - w @ fe(p))(p)
        return exact, phase

    for a, b in zip(*grads(p), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_gated_cd_chain_samples_p_y_given_x():
    """M = 20,000 chains at one x, all started at y = (1,1,1), T = 10 sweeps of
    :func:`gated_rbm.cd_negatives`: histogram over the 8 outputs vs p(y|x).  Tolerance
    (tests/_stats.py): E[TV] bound + McDiarmid at δ = 1e-6, plus the exact TV after T sweeps
    from the start, from the exact transition matrix K[y, y'] = Σ_h p(h|x,y) p(y'|x,h)."""
    p, x = _gated(6, scale=0.7), _x(7)
    t = _gated_tables(p, x)
    exact = np.asarray(jax.nn.softmax(jax.nn.logsumexp(t, axis=1)), np.float64)
    ph = np.asarray(jax.nn.softmax(t, axis=1), np.float64)  # [y, h] = p(h | x, y)
    py = np.asarray(jax.nn.softmax(t, axis=0), np.float64).T  # [h, y'] = p(y' | x, h)
    start = np.zeros(2**J)
    start[-1] = 1.0
    bias = tv(start @ np.linalg.matrix_power(ph @ py, 10), exact)
    M = 20_000
    xs, y0 = jnp.broadcast_to(x, (M, I)), jnp.ones((M, J))
    yn = jax.jit(gated_rbm.cd_negatives, static_argnums=4)(jax.random.key(8), p, xs, y0, 10)
    assert tv(histogram(np.asarray(state_index(yn)), 2**J), exact) < tv_tolerance(exact, M) + bias


# ------------------------------------------------------------------ third-order Boltzmann machine
N = 4


def _third(seed=10, scale=0.7):
    return third_order.init(jax.random.key(seed), N, scale=scale)


def test_third_order_conditionals_are_energy_differences():
    """logit P(s_i=1|s_-i) = E(s_i←0) − E(s_i←1) at all 16 states and 4 units (float32,
    1e-5), and the symmetrized T has no term with a repeated index (so s_i² = s_i cannot
    hide a lower-order term)."""
    p = _third()
    S = all_binary_states(N)

    @jax.jit
    def both(s):
        def one(i):
            e0, e1 = (third_order.energy(p, s.at[i].set(v)) for v in (0.0, 1.0))
            return e0 - e1, third_order.unit_logit(p, s, i)

        return jax.vmap(one)(jnp.arange(N))

    diff, logit = jax.vmap(both)(S)
    np.testing.assert_allclose(logit, diff, atol=1e-5)
    T = np.asarray(p.T)
    assert all(T[i, i, k] == 0 and T[i, k, i] == 0 for i in range(N) for k in range(N))
    np.testing.assert_allclose(T, T.transpose(1, 0, 2), atol=1e-7)


def _sweep_matrix(p) -> np.ndarray:
    """Exact transition matrix of one systematic scan: the product of the 4 single-site
    Gibbs kernels over the 16 states."""
    S = all_binary_states(N)
    idx = np.asarray(state_index(S))
    Kmat = np.eye(2**N)
    for i in range(N):
        Ki = np.zeros((2**N, 2**N))
        p1 = np.asarray(jax.nn.sigmoid(jax.vmap(lambda s: third_order.unit_logit(p, s, i))(S)))
        for a, s in enumerate(np.asarray(S)):
            for v, pr in ((1.0, p1[a]), (0.0, 1.0 - p1[a])):
                t = s.copy()
                t[i] = v
                Ki[a, idx[a] - int(s[i]) * 2 ** (N - 1 - i) + int(v) * 2 ** (N - 1 - i)] += pr
        Kmat = Kmat @ Ki
    return Kmat


def _chains(p, M, T, seed):
    """M independent chains from s = 0 after T sweeps."""

    @jax.jit
    def run(key):
        def body(s, k):
            return jax.vmap(third_order.gibbs_sweep, (0, None, 0))(
                jax.random.split(k, M), p, s
            ), None

        return jax.lax.scan(body, jnp.zeros((M, N)), jax.random.split(key, T))[0]

    return run(jax.random.key(seed))


@pytest.mark.slow
def test_third_order_gibbs_matches_enumeration_and_gradient_matches_exact():
    """M = 20,000 chains from s = 0, T = 12 sweeps.

    (1) Histogram vs the enumerated p(s): TV below E[TV] bound + McDiarmid (δ = 1e-6) + the
    exact TV after T sweeps from the start (transition matrix).  (2) The sampled gradient
    (:func:`third_order.sampled_gradient`) vs jax.grad of the exact mean −log p(data) (log Z
    by enumeration): per coordinate |Δ| ≤ z · sd/√M + 2 · TV_T · max|g| with z = 5 (CLT over
    the M independent chains; the second term bounds the mixing bias of a mean of a function
    bounded by max|g|); 84 coordinates, chance failure ≈ 84 × 5.7e-7."""
    p = _third()
    S = all_binary_states(N)
    exact = np.asarray(jax.nn.softmax(-jax.vmap(third_order.energy, (None, 0))(p, S)), np.float64)
    start = np.zeros(2**N)
    start[0] = 1.0
    T, M = 12, 20_000
    bias = tv(start @ np.linalg.matrix_power(_sweep_matrix(p), T), exact)
    s = _chains(p, M, T, 11)
    assert tv(histogram(np.asarray(state_index(s)), 2**N), exact) < tv_tolerance(exact, M) + bias

    data = S[jnp.array([3, 5, 6, 15, 9])]

    @jax.jit
    def grads(p, s):
        def nll(p):
            q = third_order.symmetrize(p)
            log_z = jax.nn.logsumexp(-jax.vmap(third_order.energy, (None, 0))(q, S))
            return jnp.mean(jax.vmap(third_order.energy, (None, 0))(q, data)) + log_z

        per = jax.vmap(jax.grad(lambda p, x: third_order.energy(third_order.symmetrize(p), x)),
                       (None, 0))(p, s)  # fmt: skip
        return jax.grad(nll)(p), third_order.sampled_gradient(p, data, s), per

    g_exact, g_sampled, per = grads(p, s)
    for ge, gs, gp in zip(g_exact, g_sampled, per, strict=True):
        gp = np.asarray(gp, np.float64).reshape(M, -1)
        sd = gp.std(axis=0, ddof=1)
        tol = Z * sd / np.sqrt(M) + 2 * bias * np.abs(gp).max(axis=0) + 1e-6
        assert np.all(np.abs(np.asarray(gs - ge).reshape(-1)) <= tol)


# ----------------------------------------------- the shifted-pairs experiment's plumbing
# (egm.run.boltzmann_extra, used by experiments/gated_rbm_shifts.py)


def test_shifted_pairs_are_the_stated_cyclic_shifts():
    """Every y is exactly x rolled by the (dr, dc) its class encodes, class = (dr + m)(2m + 1)
    + (dc + m); all 9 classes of m = 1 occur in 200 draws (the chance that one is missing is
    below 9 (8/9)^200 < 1e-9); the split sizes and the seed's determinism hold; aliasing
    shifts are refused."""
    from egm.errors import ConfigError
    from egm.run import boltzmann_extra as bx

    x, y, cls = bx.shifted_pairs(np.random.default_rng(0), 200, 5, 1, 0.3)
    assert x.shape == y.shape == (200, 25) and set(np.unique(x)) <= {0.0, 1.0}
    assert set(cls) == set(range(9))
    for a, b, c in zip(x, y, cls, strict=True):
        want = np.roll(a.reshape(5, 5), (c // 3 - 1, c % 3 - 1), axis=(0, 1)).reshape(-1)
        np.testing.assert_array_equal(b, want)
    d = bx.shift_pairs(30, 20, 5, 1, 0.3, seed=4)
    assert d.train[0].shape == (30, 25) and d.test[1].shape == (20, 25)
    np.testing.assert_array_equal(
        d.shifts["test"], bx.shift_pairs(30, 20, 5, 1, 0.3, 4).shifts["test"]
    )
    with pytest.raises(ConfigError, match="alias"):
        bx.shifted_pairs(np.random.default_rng(0), 10, 4, 2, 0.3)


def test_analogy_partners_and_probe_accuracy_exact_cases():
    """Partners: a permutation that keeps the class, with no fixed point where a class has two
    or more members.  The ridge probe: one-hot class features are read perfectly (accuracy
    exactly 1); a constant feature carries no information, so the probe predicts the training
    majority class and scores exactly that class's share of the test set."""
    from egm.run import boltzmann_extra as bx

    cls = np.array([2, 0, 2, 1, 0, 2, 3])
    p = bx.analogy_partners(cls)
    assert sorted(p) == list(range(7)) and np.array_equal(cls[p], cls)
    assert p[3] == 3 and p[6] == 6 and all(p[i] != i for i in (0, 1, 2, 4, 5))  # 3, 6 alone
    rng = np.random.default_rng(1)
    c_tr, c_te = rng.integers(0, 4, 300), rng.integers(0, 4, 100)
    one_hot = np.eye(4)
    assert bx.probe_accuracy(one_hot[c_tr], c_tr, one_hot[c_te], c_te, 4) == 1.0
    const = lambda n: np.ones((n, 1))  # noqa: E731
    majority = np.bincount(c_tr, minlength=4).argmax()
    got = bx.probe_accuracy(const(300), c_tr, const(100), c_te, 4)
    assert got == pytest.approx(np.mean(c_te == majority), abs=1e-12)
