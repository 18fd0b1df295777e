"""Chromatic Gibbs for a sparse general BM: colourings are valid, the sweep is the same Markov
kernel as a sequential sweep in colour order, and SML keeps a structural mask."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _stats import bm_sweep_matrix, histogram, random_dbm, tv, tv_tolerance

from egm.energies import boltzmann, dbm
from egm.errors import ConfigError
from egm.estimators import bm_sml, exact

N = 7


def _ring_mask():
    """A 7-cycle plus two chords: an odd cycle, so three colours are needed."""
    m = np.zeros((N, N), bool)
    for i in range(N):
        m[i, (i + 1) % N] = m[(i + 1) % N, i] = True
    for i, j in ((0, 3), (2, 5)):
        m[i, j] = m[j, i] = True
    return m


def _sparse_bm(seed, scale=1.5):
    k1, k2 = jax.random.split(jax.random.key(seed))
    U = boltzmann.symmetrize(scale * jax.random.normal(k1, (N, N))) * _ring_mask()
    return boltzmann.BMParams(U=U, a=0.5 * jax.random.normal(k2, (N,)))


def test_colourings_are_valid_and_small():
    m = _ring_mask()
    colors = boltzmann.greedy_coloring(m)
    assert sorted(np.concatenate(colors).tolist()) == list(range(N))
    for idx in colors:
        assert not m[np.ix_(idx, idx)].any()
    assert len(colors) == 3
    # a DBM's layers need two colours (odd/even), a fully connected BM one per unit
    bm = dbm.to_boltzmann(random_dbm(0, (3, 2, 2), 1.0))
    assert len(boltzmann.greedy_coloring(np.asarray(bm.U) != 0)) == 2
    assert len(boltzmann.greedy_coloring(np.ones((4, 4)))) == 4
    with pytest.raises(ConfigError, match="symmetric"):
        boltzmann.greedy_coloring(np.triu(np.ones((3, 3))))


def test_chromatic_sweep_is_the_sequential_kernel_in_colour_order():
    """From one fixed start, the law after 2 chromatic sweeps equals row ``s0`` of the exact
    sequential-sweep matrix squared (units of a colour are conditionally independent, so
    updating them together or in turn is the same kernel).  40000 chains; TV tolerance from
    tests/_stats.py (multinomial concentration, no mixing term: the target is the exact
    2-step law, not the stationary one)."""
    p = _sparse_bm(1)
    colors = boltzmann.greedy_coloring(_ring_mask())
    order = np.concatenate(colors).tolist()
    K = bm_sweep_matrix(p, order)
    s0 = np.array([1, 0, 1, 1, 0, 0, 1], np.float32)
    i0 = int(sum(int(s0[u]) << (N - 1 - k) for k, u in enumerate(order)))
    q = np.linalg.matrix_power(K, 2)[i0]
    m = 40000
    keys = jax.random.split(jax.random.key(2), m)

    def two(k):
        k1, k2 = jax.random.split(k)
        x = boltzmann.chromatic_gibbs_sweep(k1, p, jnp.asarray(s0), colors)
        return boltzmann.chromatic_gibbs_sweep(k2, p, x, colors)

    xs = np.asarray(jax.jit(jax.vmap(two))(keys)).astype(int)
    idx = sum(xs[:, u] << (N - 1 - k) for k, u in enumerate(order))
    err = tv(histogram(idx, 2**N), q)
    assert err < tv_tolerance(q, m), err


@pytest.mark.slow  # 14 s cold; the kernel equals the sequential sweep exactly (default suite)
def test_chromatic_chains_reach_the_exact_distribution_and_respect_clamps():
    """Stationarity: 20000 chains x 60 sweeps vs exact enumeration; the mixing bias is bounded
    by the TV of the exact kernel's 60-step law from the uniform start."""
    p = _sparse_bm(3)
    colors = boltzmann.greedy_coloring(_ring_mask())
    m, n_sweeps = 20000, 60
    x0 = jax.random.bernoulli(jax.random.key(4), 0.5, (m, N)).astype(jnp.float32)

    def chain(k, x):
        return bm_sml._sweeps(k, p, x, n_sweeps, None, colors)

    xs = jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(5), m), x0)
    p_exact = np.asarray(exact.bm_distribution(p))
    order = np.concatenate(colors).tolist()
    K = bm_sweep_matrix(p, order)
    perm = [
        int(sum(int(s[u]) << (N - 1 - k) for k, u in enumerate(order)))
        for s in np.asarray(exact.all_binary_states(N)).astype(int)
    ]
    q_ord = np.full(2**N, 2.0**-N) @ np.linalg.matrix_power(K, n_sweeps)
    q = q_ord[perm]
    err = tv(histogram(exact.state_index(xs), 2**N), p_exact)
    assert err < tv_tolerance(p_exact, m) + tv(q, p_exact)
    clamp = jnp.arange(N) >= 3
    y = boltzmann.chromatic_gibbs_sweep(jax.random.key(0), p, x0[0], colors, clamp)
    np.testing.assert_array_equal(y[:3], x0[0][:3])


@pytest.mark.slow  # a training run (6 s cold); the exact checks of its pieces stay in the default suite
def test_sml_with_a_structural_mask_trains_and_keeps_the_structure():
    """Visible units 0-3, hidden 4-6 on the ring structure; chromatic SML with the mask raises
    the exact log-likelihood (deterministic given the keys; gain > 0.3 nats asked, a fraction
    of what is measured) and never creates couplings off the mask."""
    V = 4
    mask = _ring_mask()
    colors = boltzmann.greedy_coloring(mask)
    p = _sparse_bm(6, scale=0.1)
    v_data = jax.random.bernoulli(jax.random.key(7), 0.3, (16, V)).astype(jnp.float32)
    v_data = v_data.at[:, 0].set(v_data[:, 1])
    opt = optax.sgd(0.1)
    st = opt.init(p)
    chains = jax.random.bernoulli(jax.random.key(8), 0.5, (64, N)).astype(jnp.float32)

    @jax.jit
    def step(p, st, chains, key):
        g, chains = bm_sml.sml_gradient(
            key, p, v_data, chains, k_pos=5, colors=colors, coupling_mask=jnp.asarray(mask)
        )
        upd, st = opt.update(g, st, p)
        return optax.apply_updates(p, upd), st, chains

    before = float(jnp.mean(exact.bm_log_likelihood(p, v_data)))
    for t in range(300):
        p, st, chains = step(p, st, chains, jax.random.key(100 + t))
    after = float(jnp.mean(exact.bm_log_likelihood(p, v_data)))
    assert after > before + 0.3, (before, after)
    assert np.all(np.asarray(p.U)[~mask] == 0)
