"""Gaussian-Bernoulli RBM: free energies, exact log Z, and samplers against exact moments."""

import jax
import jax.numpy as jnp
import numpy as np
from _stats import Z, clt_z, grbm_exact_draws
from _stats import random_grbm as _params

from egm.energies import grbm
from egm.estimators import exact
from egm.samplers import block_gibbs, hmc, run


def test_free_energy_sums_out_hidden():
    p = _params(0, 3, 4)
    v = jnp.array([0.3, -1.2, 2.0])
    direct = -jax.nn.logsumexp(
        jax.vmap(lambda h: -grbm.energy(p, v, h))(exact.all_binary_states(4))
    )
    np.testing.assert_allclose(grbm.free_energy(p, v), direct, rtol=1e-5)


def test_log_partition_matches_numerical_integration():
    """V = 1 and V = 2: integrate exp(-F(v)) on a grid wide enough (±12 sd of every
    mixture component) with spacing 0.005 / 0.03; the trapezoid error for these smooth
    integrands is far below the 1e-4 relative tolerance (checked by halving the grid)."""
    for V, step in ((1, 0.005), (2, 0.03)):
        p = _params(V, V, 3)
        hs = exact.all_binary_states(3)
        means = jax.vmap(lambda h: grbm.visible_mean(p, h))(hs)
        sd = jnp.exp(-0.5 * p.log_beta)
        lo, hi = means.min(0) - 12 * sd, means.max(0) + 12 * sd
        axes = [np.arange(float(lo[i]), float(hi[i]), step) for i in range(V)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, V)
        logf = jax.vmap(lambda v: -grbm.free_energy(p, v))(jnp.asarray(grid, jnp.float32))
        numeric = jax.nn.logsumexp(logf) + V * np.log(step)
        np.testing.assert_allclose(numeric, exact.grbm_log_partition(p), rtol=1e-4)


def _exact_moments(p):
    ph = np.asarray(exact.grbm_hidden_distribution(p), np.float64)
    m = np.asarray(
        jax.vmap(lambda h: grbm.visible_mean(p, h))(exact.all_binary_states(p.W.shape[1]))
    )
    mean = ph @ m
    second = ph @ (m**2) + np.exp(-np.asarray(p.log_beta, np.float64))
    return mean, second


def test_block_gibbs_and_hmc_leave_the_exact_law_invariant():
    """Chains start at exact draws, so after any number of steps of a kernel that leaves p
    invariant they are still exact draws: only Monte-Carlo error remains, and the per-
    coordinate means of v and v² are within 5 CLT standard errors of the exact mixture
    moments E[v] = Σ_h p(h) m_h, E[v²] = Σ_h p(h)(m_h² + 1/β)."""
    p = _params(7, 3, 4)
    n = 20000
    v0, h0 = grbm_exact_draws(jax.random.key(0), p, n)
    mean, second = _exact_moments(p)
    gibbs = block_gibbs(grbm.BLOCKS)
    s, _ = jax.jit(run, static_argnums=(0, 4))(
        gibbs, jax.random.key(1), grbm.GRBMState(v0, h0), p, 30
    )
    kernel = hmc(grbm.log_density, n_leapfrog=5, step_size=0.15)
    hs = jax.vmap(kernel.init, in_axes=(0, None))(v0, p)
    hs, _ = jax.jit(run, static_argnums=(0, 4))(kernel, jax.random.key(2), hs, p, 30)
    for v in (np.asarray(s.v), np.asarray(hs.position)):
        assert np.max(clt_z(v, mean)) < Z
        assert np.max(clt_z(v**2, second)) < Z
    # power: the same statistics reject a model with a shifted visible mean
    assert np.max(clt_z(np.asarray(s.v), mean + 0.1)) > Z
