"""Block Gibbs on tiny RBMs samples the exact distribution (TV bound in tests/_stats.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import bm_sweep_matrix, histogram, random_rbm, rbm_gibbs_tv_after, tv, tv_tolerance

from egm.energies import boltzmann, rbm
from egm.estimators import exact
from egm.samplers import block_gibbs, run, step_chains

KERNEL = block_gibbs(rbm.BLOCKS)


def _chains_from_uniform(key, p, n):
    V = p.W.shape[0]
    v0 = jax.random.bernoulli(key, 0.5, (n, V)).astype(jnp.float32)
    return jax.vmap(rbm.init_state, in_axes=(None, 0))(p, v0)


@pytest.mark.parametrize(
    ("seed", "scale", "n_sweeps"),
    # the strongly coupled case in the slow suite (11 s cold)
    [(0, 1.0, 50), pytest.param(1, 3.0, 400, marks=pytest.mark.slow)],
)
def test_joint_histogram_matches_exact(seed, scale, n_sweeps):
    """20000 independent chains, last state each; scale 3 is strongly coupled (slow mixing).

    Tolerance: tv_tolerance (sampling) + exact TV of the chains' law after n_sweeps from the
    uniform start (mixing bias), see tests/_stats.py.
    """
    p = random_rbm(seed, 4, 3, scale)
    m = 20000
    states = _chains_from_uniform(jax.random.key(seed + 10), p, m)
    states, _ = jax.jit(run, static_argnums=(0, 4))(
        KERNEL, jax.random.key(seed), states, p, n_sweeps
    )
    idx = exact.state_index(jnp.concatenate([states.v, states.h], axis=1))
    p_joint = np.asarray(exact.rbm_joint_distribution(p))
    mix = rbm_gibbs_tv_after(p, np.full(16, 1 / 16), n_sweeps - 1)  # h is resampled each sweep
    err = tv(histogram(idx, 128), p_joint)
    assert err < tv_tolerance(p_joint, m) + mix, (err, mix)
    # the test has power: the same histogram is far from a model with perturbed weights
    p_wrong = np.asarray(exact.rbm_joint_distribution(p._replace(W=p.W * 0.8)))
    assert tv(histogram(idx, 128), p_wrong) > tv_tolerance(p_wrong, m) + mix


def test_same_key_same_samples_and_jit_equals_nojit():
    p = random_rbm(2, 6, 4, 1.0)
    s0 = _chains_from_uniform(jax.random.key(0), p, 8)
    a, _ = run(KERNEL, jax.random.key(1), s0, p, 5)
    b, _ = jax.jit(run, static_argnums=(0, 4))(KERNEL, jax.random.key(1), s0, p, 5)
    c, _ = run(KERNEL, jax.random.key(1), s0, p, 5)
    np.testing.assert_array_equal(a.v, b.v)
    np.testing.assert_array_equal(a.v, c.v)
    d, _ = run(KERNEL, jax.random.key(2), s0, p, 5)
    assert not np.array_equal(a.v, d.v)


def test_vmap_over_chains_equals_loop():
    p = random_rbm(3, 5, 3, 1.0)
    s0 = _chains_from_uniform(jax.random.key(0), p, 4)
    keys = jax.random.split(jax.random.key(5), 4)
    batched, _ = jax.vmap(KERNEL.step, in_axes=(0, 0, None))(keys, s0, p)
    for i in range(4):
        single, _ = KERNEL.step(keys[i], jax.tree_util.tree_map(lambda x, i=i: x[i], s0), p)
        np.testing.assert_array_equal(batched.v[i], single.v)
        np.testing.assert_array_equal(batched.h[i], single.h)


def test_observer_streams_a_statistic():
    p = random_rbm(4, 5, 3, 0.5)
    s0 = _chains_from_uniform(jax.random.key(0), p, 16)
    final, trace = run(KERNEL, jax.random.key(1), s0, p, 7, observe=lambda s: jnp.mean(s.v))
    assert trace.shape == (7,)
    # the observer saw exactly the states of the run: replay step by step with the same keys
    keys = jax.random.split(jax.random.key(1), 7)
    s = s0
    for t in range(7):
        s, _ = step_chains(KERNEL, keys[t], s, p)
        np.testing.assert_allclose(trace[t], jnp.mean(s.v), rtol=1e-6)
    np.testing.assert_array_equal(final.v, s.v)


def test_general_bm_sequential_gibbs_matches_exact():
    """Fully connected 5-unit BM (within-layer couplings): systematic-scan Gibbs histogram."""
    k1, k2 = jax.random.split(jax.random.key(7))
    params = boltzmann.BMParams(
        U=boltzmann.symmetrize(1.5 * jax.random.normal(k1, (5, 5))), a=jax.random.normal(k2, (5,))
    )
    m, n_sweeps = 20000, 60
    x0 = jax.random.bernoulli(jax.random.key(8), 0.5, (m, 5)).astype(jnp.float32)

    @jax.jit
    def chains(key, x):
        def body(x, k):
            return jax.vmap(boltzmann.sequential_gibbs_sweep, (0, None, 0))(
                jax.random.split(k, m), params, x
            ), None

        return jax.lax.scan(body, x, jax.random.split(key, n_sweeps))[0]

    x = chains(jax.random.key(9), x0)
    p = np.asarray(exact.bm_distribution(params))
    # mixing bias: exact sweep transition matrix of the 32-state chain
    K = bm_sweep_matrix(params, range(5))
    q = np.full(32, 1 / 32) @ np.linalg.matrix_power(K, n_sweeps)
    mix = tv(q, p)
    err = tv(histogram(exact.state_index(x), 32), p)
    assert err < tv_tolerance(p, m) + mix, (err, mix)
