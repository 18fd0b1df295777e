"""Smoke test of experiments/benchmarks/grbm_gibbs.py (--quick): JSON lines with the
protocol's keys, and the hand-written dense references compute what egm computes."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, clt_z

from egm.energies import grbm, mcrbm
from egm.samplers import hmc


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
def test_grbm_gibbs_benchmark_quick(run_quick):
    lines = run_quick("grbm_gibbs")
    assert len(lines) == 2
    gibbs, hmc_rec = lines
    for rec in lines:
        assert rec["peer"] == "dense" and rec["peer_value"] > 0
    assert gibbs["bench"] == "gibbs_grbm_24x16" and gibbs["unit"] == "chain-sweeps/s"
    assert gibbs["egm_matmuls_in_hlo"] == 2  # one sweep: (β⊙v)·W and h·Wᵀ
    assert hmc_rec["bench"] == "hmc_mcrbm_16x16" and hmc_rec["unit"].startswith("chain-steps/s")
    assert 0 <= hmc_rec["egm_acceptance"] <= 1 and 0 <= hmc_rec["peer_acceptance"] <= 1


def test_dense_grbm_sweep_samples_the_gibbs_conditionals(load_bench):
    """20000 dense sweeps from one fixed v0: v' = b + W h + β^{-1/2} ξ with h ~ σ(c + Wᵀ(β⊙v0)),
    so E[v'] = b + W p and Var[v'_i] = 1/β_i + Σ_j W_ij² p_j (1 - p_j), p = σ(c + Wᵀ(β⊙v0))
    (egm's grbm.BLOCKS law).  Means of 20000 i.i.d. draws: z < 5 with the sample sd; the
    variance via the i.i.d. squared deviations from the exact mean, z < 5 likewise."""
    b = load_bench("grbm_gibbs")
    params = b.synthetic_grbm(12, 8, 0.5, 0)._replace(log_beta=jnp.linspace(-0.5, 0.5, 12))
    n = 20000
    v0 = jnp.broadcast_to(jax.random.normal(jax.random.key(0), (12,)), (n, 12))
    v1 = np.asarray(b.dense_grbm_gibbs(params, v0, jax.random.split(jax.random.key(1), 1)))
    prob = np.asarray(jax.nn.sigmoid(grbm.hidden_preactivation(params, v0[0])), np.float64)
    W = np.asarray(params.W, np.float64)
    mean = np.asarray(params.b, np.float64) + W @ prob
    var = np.exp(-np.asarray(params.log_beta, np.float64)) + (W**2) @ (prob * (1 - prob))
    assert np.max(clt_z(v1, mean)) < Z
    assert np.max(clt_z((v1 - mean) ** 2, var)) < Z


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
def test_dense_mcrbm_free_energy_and_hmc_match_egm(load_bench):
    """The dense free energy is mcrbm.free_energy (normalised input) row by row (float32
    round-off), and one dense HMC step has egm's acceptance probability: from the same
    4000 starts (ε = 0.8, 5 leapfrog steps: acceptance ≈ 0.76, so a wrong Hamiltonian or
    leapfrog would move it), the two acceptance frequencies are means of 4000 independent
    indicators each; their difference has sd sqrt(a₁(1-a₁)/n + a₂(1-a₂)/n): z < 5."""
    b = load_bench("grbm_gibbs")
    params = mcrbm.init(jax.random.key(1), 16, 16, 16, 8, pooling="topographic")
    params = params._replace(b_v=0.1 * jax.random.normal(jax.random.key(2), (16,)))
    X = 2.0 * jax.random.normal(jax.random.key(3), (7, 16))
    want = jax.vmap(lambda x: mcrbm.free_energy(params, x, normalize_input=True))(X)
    np.testing.assert_allclose(b.dense_mcrbm_free_energy(params, X), want, rtol=1e-5, atol=1e-4)

    n, eps = 4000, 0.8
    X = jax.random.normal(jax.random.key(4), (n, 16))
    kernel = hmc(partial(mcrbm.log_density, normalize_input=True), n_leapfrog=5, step_size=eps)
    states = jax.vmap(kernel.init, in_axes=(0, None))(X, params)
    keys = jax.random.split(jax.random.key(5), n)
    _, info = jax.jit(jax.vmap(kernel.step, in_axes=(0, 0, None)))(keys, states, params)
    a1 = float(jnp.mean(info.is_accepted))
    _, acc = jax.jit(b.dense_hmc, static_argnums=(3, 4))(
        params, X, jax.random.split(jax.random.key(6), 1), eps, 5
    )
    a2 = float(acc[0])
    assert 0.2 < a1 < 0.95
    assert abs(a1 - a2) / math.sqrt((a1 * (1 - a1) + a2 * (1 - a2)) / n) < Z
