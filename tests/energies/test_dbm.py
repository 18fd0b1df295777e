"""Deep Boltzmann machine: energy, block Gibbs against the exact joint, mean-field inference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import bm_sweep_matrix, histogram, random_dbm, tv, tv_tolerance

from egm.energies import boltzmann, dbm
from egm.estimators import exact
from egm.samplers import block_gibbs, run

SIZES = (3, 2, 2)


def _dbm(seed, scale=1.0):
    return random_dbm(seed, SIZES, scale)


def _split(x):
    return tuple(jnp.split(x, np.cumsum(SIZES)[:-1]))


def test_energy_equals_general_bm_form():
    p = _dbm(0)
    bm = dbm.to_boltzmann(p)
    for x in exact.all_binary_states(sum(SIZES)):
        np.testing.assert_allclose(
            dbm.energy(p, _split(x)), boltzmann.energy(bm, x), rtol=1e-5, atol=1e-5
        )


@pytest.mark.slow  # 13 s cold; test_sample_matches_exact_visible_marginal checks the same sweep
def test_block_gibbs_matches_exact_joint():
    """20000 independent chains; tolerance as in tests/_stats.py, with the mixing bias from
    the exact transition matrix of one odd-then-even sweep (units of one parity are
    conditionally independent, so a sequential scan in that order has the same kernel)."""
    p = _dbm(1, scale=1.5)
    m, n_sweeps = 20000, 40
    x0 = jax.random.bernoulli(jax.random.key(2), 0.5, (m, sum(SIZES))).astype(jnp.float32)
    states = jax.vmap(_split)(x0)
    states, _ = jax.jit(run, static_argnums=(0, 4))(
        block_gibbs(dbm.BLOCKS), jax.random.key(3), states, p, n_sweeps
    )
    idx = exact.state_index(jnp.concatenate(states, axis=1))
    bm = dbm.to_boltzmann(p)
    p_exact = np.asarray(exact.bm_distribution(bm))
    odd, even = [3, 4], [0, 1, 2, 5, 6]  # layer 1 = units 3-4; layers 0 and 2
    K = bm_sweep_matrix(bm, odd + even)
    # bm_sweep_matrix indexes states of the updated units in the order given: map to natural order
    order = odd + even
    perm = [
        int(exact.state_index(jnp.asarray(s)[None, np.argsort(order)])[0])
        for s in np.asarray(exact.all_binary_states(7))
    ]
    Kn = np.zeros_like(K)
    Kn[np.ix_(perm, perm)] = K
    q = np.full(128, 1 / 128) @ np.linalg.matrix_power(Kn, n_sweeps)
    err = tv(histogram(idx, 128), p_exact)
    assert err < tv_tolerance(p_exact, m) + tv(q, p_exact), (err, tv(q, p_exact))


def _exact_posterior_means(p, v):
    bm = dbm.to_boltzmann(p)
    H = sum(SIZES[1:])
    hs = exact.all_binary_states(H)
    x = jnp.concatenate([jnp.broadcast_to(v, (hs.shape[0], SIZES[0])), hs], axis=1)
    w = jax.nn.softmax(-jax.vmap(lambda s: boltzmann.energy(bm, s))(x))
    return w @ hs


def test_mean_field_is_exact_when_upper_weights_are_zero():
    """With W_2 = 0 the posterior factorises: Q(h1|v) = σ(b1 + W1ᵀv), Q(h2) = σ(b2) exactly."""
    p = _dbm(4)
    p = p._replace(weights=(p.weights[0], jnp.zeros_like(p.weights[1])))
    v = jnp.array([1.0, 0.0, 1.0])
    mu, info = dbm.mean_field(p, v, tol=1e-7)
    np.testing.assert_allclose(jnp.concatenate(mu), _exact_posterior_means(p, v), atol=1e-5)
    assert int(info.n_iter) <= 3


def test_mean_field_fixed_point_and_unrolled_version():
    p = _dbm(5, scale=0.8)
    v = jnp.array([0.0, 1.0, 1.0])
    mu, info = dbm.mean_field(p, v, tol=1e-6, damping=0.3)
    assert float(info.residual) <= 1e-6 and int(info.n_iter) < 200
    state = (v, *mu)
    for l in (1, 2):  # the fixed point satisfies μ_l = σ(b_l + W_lᵀμ_{l-1} + W_{l+1}μ_{l+1})
        np.testing.assert_allclose(
            mu[l - 1], jax.nn.sigmoid(dbm.layer_logits(p, state, l)), atol=1e-5
        )
    unrolled = dbm.mean_field_unrolled(p, v, 50)
    np.testing.assert_allclose(jnp.concatenate(unrolled), jnp.concatenate(mu), atol=1e-5)
    g = jax.grad(lambda q: jnp.sum(jnp.concatenate(dbm.mean_field_unrolled(q, v, 10))))(p)
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(g))


def test_variational_bound_is_below_exact_and_tight_when_factorial():
    bm_exact = lambda p, v: float(
        exact.bm_log_likelihood(dbm.to_boltzmann(p), v[None])[0]
        + exact.bm_log_partition(dbm.to_boltzmann(p))
    )  # log Σ_h exp(-E(v, h))
    v = jnp.array([1.0, 1.0, 0.0])
    p = _dbm(6, scale=1.5)
    mu, _ = dbm.mean_field(p, v, tol=1e-7)
    assert float(dbm.variational_bound(p, v, mu)) <= bm_exact(p, v) + 1e-5
    assert bm_exact(p, v) - float(dbm.variational_bound(p, v, mu)) > 1e-3  # strictly below here
    p0 = p._replace(weights=(p.weights[0], jnp.zeros_like(p.weights[1])))
    mu0, _ = dbm.mean_field(p0, v, tol=1e-7)
    np.testing.assert_allclose(float(dbm.variational_bound(p0, v, mu0)), bm_exact(p0, v), atol=1e-4)


def _even_chain_matrix(p):
    """Exact transition matrix of one :func:`dbm.sample` sweep on the EVEN layers (v, h²) of a
    3-layer DBM: ``M[e, e'] = Σ_{h¹} P(h¹ | e) P(e' | h¹)``.  The sweep redraws h¹ from the
    even layers first, so the even layers alone are a Markov chain with this kernel, and the
    start value of h¹ does not matter.  States: bits of (v, h²), v most significant."""
    nv, n1, n2 = (b.shape[0] for b in p.biases)
    evens, odds = exact.all_binary_states(nv + n2), exact.all_binary_states(n1)
    v, h2 = evens[:, :nv], evens[:, nv:]

    def cond(logits, states):  # [row, state] = P(states | logits of row)
        return jnp.exp(jax.nn.log_sigmoid(logits) @ states.T
                       + jax.nn.log_sigmoid(-logits) @ (1 - states).T)  # fmt: skip

    a = cond(p.biases[1] + v @ p.weights[0] + h2 @ p.weights[1].T, odds)  # [e, h1]
    b = cond(jnp.concatenate([p.biases[0] + odds @ p.weights[0].T,
                              p.biases[2] + odds @ p.weights[1]], axis=1), evens)  # fmt: skip
    return np.asarray(a @ b, np.float64)


def _exact_even_and_v(p):
    """Exact p(v, h²) (bits of (v, h²)) and p(v) of a 3-layer DBM, by enumeration."""
    nv, n1, n2 = (b.shape[0] for b in p.biases)
    joint = np.asarray(exact.bm_distribution(dbm.to_boltzmann(p)), np.float64)
    joint = joint.reshape(2**nv, 2**n1, 2**n2)  # the natural order is (v, h1, h2)
    return joint.sum(axis=1).reshape(-1), joint.sum(axis=(1, 2))


def test_sample_matches_exact_visible_marginal():
    """:func:`dbm.sample`'s final visible draws from M chains vs the exact p(v) of a 3-2-2 DBM.

    Tolerance (tests/_stats.py): E[TV] bound + McDiarmid deviation at δ = 1e-6 for M i.i.d.
    draws, plus the exact TV between the even layers' law after T sweeps and p(v, h²): from
    the start law (v ~ Bernoulli(v_mean), h² ~ Bernoulli(0.5)) through the exact kernel of one
    sweep on the even layers (:func:`_even_chain_matrix`); v's marginal is a function of the
    even layers, so its TV is at most that.  Power: the same histogram is rejected against a
    DBM with perturbed bottom weights.  Same key, same draws; every layer binary."""
    p = _dbm(7, scale=1.5)
    m, sweeps = 20000, 8
    v_mean = jnp.array([0.2, 0.5, 0.9])
    states = dbm.sample(jax.random.key(0), p, m, sweeps, v_mean)
    assert [s.shape for s in states] == [(m, 3), (m, 2), (m, 2)]
    assert all(set(np.unique(np.asarray(s))) <= {0.0, 1.0} for s in states)
    evens = exact.all_binary_states(5)
    start = np.prod(np.where(np.asarray(evens) == 1, np.r_[v_mean, 0.5, 0.5],
                             1 - np.r_[v_mean, 0.5, 0.5]), axis=1)  # fmt: skip
    p_even, p_v = _exact_even_and_v(p)
    q = start @ np.linalg.matrix_power(_even_chain_matrix(p), sweeps)
    tol = tv_tolerance(p_v, m) + tv(q, p_even)
    h = histogram(np.asarray(exact.state_index(states[0])), 8)
    assert tv(h, p_v) < tol, (tv(h, p_v), tol, tv(q, p_even))
    wrong = p._replace(weights=(p.weights[0] + 1.0, p.weights[1]))
    assert tv(h, _exact_even_and_v(wrong)[1]) > tol
    again = dbm.sample(jax.random.key(0), p, m, sweeps, v_mean)
    np.testing.assert_array_equal(np.asarray(again[0]), np.asarray(states[0]))


def test_sample_rejects_bad_arguments():
    import pytest

    from egm.errors import ConfigError

    p = _dbm(0)
    with pytest.raises(ConfigError, match="n >= 1"):
        dbm.sample(jax.random.key(0), p, 0, 5)
    with pytest.raises(ConfigError, match="v_mean must have shape"):
        dbm.sample(jax.random.key(0), p, 4, 5, jnp.zeros(4))
