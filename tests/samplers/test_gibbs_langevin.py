"""Gibbs–Langevin (Liao et al. 2022) on a tiny GRBM against exact moments (CLT z = 5).

Ground truth for V = 2, H = 3: ``P(h) ∝ exp(-F_h(h))`` by enumerating the 8 hidden states
(:func:`egm.estimators.exact.grbm_hidden_distribution`) and ``p(v | h) = N(m_h, diag(1/β))``
with ``m_h = b + W h``, so ``E[v] = Σ_h P(h) m_h`` and
``E[v vᵀ] = Σ_h P(h) m_h m_hᵀ + diag(1/β)``.  Every comparison is a mean of i.i.d. terms (the
final states of independent chains, or one step from independent exact draws):
``|mean - truth| / (sd/√n) < 5`` per statistic, 13 statistics (2 + 3 + 8), so a chance
failure has probability ≈ 13 · 5.7e-7 (tests/_stats.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, clt_z

from egm.energies import grbm
from egm.errors import ConfigError
from egm.estimators import exact
from egm.samplers import gibbs_langevin, gibbs_langevin_chain, run
from egm.samplers.langevin import GRBM, langevin_gaussian_map, step_sizes

V, H = 2, 3
HS = exact.all_binary_states(H)


def _params() -> grbm.GRBMParams:
    """Seed 6 couples strongly (|W| up to 1.9 against unit-scale noise) and spreads P(h)
    over all 8 states (largest 0.47): the mixture p(v) has several separated modes."""
    k1, k2, k3 = jax.random.split(jax.random.key(6), 3)
    return grbm.GRBMParams(
        W=jax.random.normal(k1, (V, H)),
        b=0.5 * jax.random.normal(k2, (V,)),
        c=0.5 * jax.random.normal(k3, (H,)),
        log_beta=jnp.log(jnp.array([0.8, 1.2])),
    )


P = _params()
BETA = np.exp(np.asarray(P.log_beta, np.float64))
PH = np.asarray(exact.grbm_hidden_distribution(P), np.float64)
MEANS = np.asarray(jax.vmap(lambda h: grbm.visible_mean(P, h))(HS), np.float64)  # (8, V)
EV = PH @ MEANS
EVV_MEANS = np.einsum("s,si,sj->ij", PH, MEANS, MEANS)
EVV = EVV_MEANS + np.diag(1 / BETA)
IU = np.triu_indices(V)


def _exact_states(key, n):
    """n independent draws (v, h) ~ p: h from P(h) by enumeration, then v | h."""
    k_h, k_v = jax.random.split(key)
    idx = jax.random.categorical(k_h, jnp.log(jnp.asarray(PH)), shape=(n,))
    v = jnp.asarray(MEANS, jnp.float32)[idx] + jnp.exp(-0.5 * P.log_beta) * jax.random.normal(
        k_v, (n, V)
    )
    return grbm.GRBMState(v=v, h=HS[idx])


def _statistics(states):
    """Per-chain terms whose means estimate E[v], E[v vᵀ] (upper triangle), P(h)."""
    v = np.asarray(states.v, np.float64)
    idx = np.asarray(exact.state_index(states.h))
    onehot = (idx[:, None] == np.arange(2**H)[None, :]).astype(np.float64)
    return np.concatenate([v, (v[:, :, None] * v[:, None, :])[:, IU[0], IU[1]], onehot], axis=1)


def _truth(evv=EVV):
    return np.concatenate([EV, evv[IU], PH])


def _one_step(kernel, states, seed):
    keys = jax.random.split(jax.random.key(seed), states.v.shape[0])
    return jax.jit(jax.vmap(kernel.step, in_axes=(0, 0, None)))(keys, states, P)


def test_step_size_schedules():
    np.testing.assert_array_equal(step_sizes(0.3, 4, "constant"), np.full(4, 0.3, np.float32))
    eta = step_sizes(1.0, 4, "cosine", min_step_size=0.2)
    # η_k = 0.2 + 0.8 (1 + cos(π (k-1)/4)) / 2: from the full step down towards the minimum
    expect = 0.2 + 0.8 * (1 + np.cos(np.pi * np.arange(4) / 4)) / 2
    np.testing.assert_allclose(eta, expect, rtol=1e-6)
    assert eta[0] == pytest.approx(1.0) and np.all(np.diff(eta) < 0) and eta[-1] > 0.2


def test_closed_form_map_matches_explicit_formula_and_the_langevin_steps():
    """(a, s²) of langevin_gaussian_map equal the product/sum formula of the module docstring,
    and K actual Langevin steps from a fixed (v0, h0) (the unadjusted kernel's v', which the
    h-resampling does not touch) have that mean and variance: 20000 independent draws,
    mean z < 5 with the sample sd; variance: for Gaussian x, Var[(x - μ)²] = 2 s⁴, so
    |mean (v' - μ)² - s²| / (s² sqrt(2/n)) < 5.  The schedule has 1 - η β < 0 steps."""
    etas = step_sizes(1.5, 5, "cosine")
    a, s2 = (np.asarray(x, np.float64) for x in langevin_gaussian_map(jnp.asarray(etas), BETA))
    e = etas.astype(np.float64)[:, None]
    r = 1 - e * BETA[None, :]
    a_ref = np.prod(r, axis=0)
    s2_ref = sum(2 * e[k] * np.prod(r[k + 1 :] ** 2, axis=0) for k in range(len(etas)))
    np.testing.assert_allclose(a, a_ref, rtol=1e-5)
    np.testing.assert_allclose(s2, s2_ref, rtol=1e-5)

    kernel = gibbs_langevin(GRBM, 1.5, 5, schedule="cosine", adjusted=False)
    n = 20000
    v0, h0 = jnp.array([0.7, -1.3]), HS[5]
    start = grbm.GRBMState(v=jnp.broadcast_to(v0, (n, V)), h=jnp.broadcast_to(h0, (n, H)))
    v1 = np.asarray(_one_step(kernel, start, 0)[0].v, np.float64)
    m = np.asarray(grbm.visible_mean(P, h0), np.float64)
    mu = m + a * (np.asarray(v0) - m)
    assert np.max(clt_z(v1, mu)) < Z
    assert np.all(np.abs(((v1 - mu) ** 2).mean(0) - s2) / (s2 * np.sqrt(2 / n)) < Z)


@pytest.mark.parametrize(
    ("adjusted", "step", "n_langevin", "schedule"),
    [
        # 17 s cold: slow; the exact invariance at a large step stays in the default suite
        pytest.param(True, 1.0, 10, "cosine", marks=pytest.mark.slow),
        pytest.param(False, 0.02, 10, "constant", marks=pytest.mark.slow),
    ],
)
def test_chains_reach_the_exact_moments(adjusted, step, n_langevin, schedule):
    """20000 independent chains from v ~ N(0, I), h ~ P(h | v); 150 steps; final states.

    Mixing bias: the v-part contracts by |a| = Π|1 - η_k β| per step (≤ (1 - 0.02·0.8)^10
    = 0.85 for the slow unadjusted setting; 0.85^150 ≈ 3e-11), far below the CLT scale.
    Discretisation bias of the unadjusted kernel at η = 0.02: given h, a Gaussian AR(1)
    with stationary variance 1/(β (1 - ηβ/2)), i.e. 1.2 % too large at most, which moves
    E[v_i²] by ≤ 0.012/β_i ≤ 0.015 -- under 0.5 of the sampling sd (≈ 0.04) of n = 20000
    chains, so z < 5 holds (the large-step case below shows the bias when it is not small).
    """
    kernel = gibbs_langevin(GRBM, step, n_langevin, schedule=schedule, adjusted=adjusted)
    n = 20000
    k0, k1, k2 = jax.random.split(jax.random.key(1), 3)
    v0 = jax.random.normal(k0, (n, V))
    states = jax.vmap(gibbs_langevin_chain(GRBM, step).from_visible, in_axes=(0, None, 0))(
        jax.random.split(k1, n), P, v0
    )
    states, _ = jax.jit(run, static_argnums=(0, 4))(kernel, k2, states, P, 150)
    z = clt_z(_statistics(states), _truth())
    assert np.max(z) < Z, z


def test_adjusted_kernel_leaves_p_invariant_at_a_large_step():
    """Start at 100000 exact draws and take 5 adjusted steps with η = 1.5 (η β_i = 1.2, 1.8:
    one unadjusted step would inflate the conditional variance about 9-fold, see below).

    If the kernel leaves p invariant the new states are again exact draws, so the 13
    moments match within z < 5.  Reversibility (detailed balance on the joint; K⁵ is then
    reversible too) makes the pair (v, v') exchangeable: E[v_i v_i'³ - v_i³ v_i'] = 0 and
    E[v' - v] = 0, each a mean of i.i.d. terms, z < 5.  The first step's acceptance rate is
    strictly between 0.05 and 0.95, so the MH step both accepts and rejects.  Power (checked
    when this test was written): a proposal variance s² off by 20 % gives z ≈ 10, a wrong
    sign of a gives z ≈ 7, dropping log P(h|v) from the ratio z ≈ 40."""
    kernel = gibbs_langevin(GRBM, 1.5, 5, schedule="constant", adjusted=True)
    n = 100_000
    start = _exact_states(jax.random.key(2), n)
    _, info = _one_step(kernel, start, 3)
    assert 0.05 < float(jnp.mean(info.acceptance_rate)) < 0.95
    new, _ = jax.jit(run, static_argnums=(0, 4))(kernel, jax.random.key(3), start, P, 5)
    assert np.max(clt_z(_statistics(new), _truth())) < Z
    x, y = np.asarray(start.v, np.float64), np.asarray(new.v, np.float64)
    antisym = x * y**3 - x**3 * y
    assert np.max(clt_z(np.concatenate([antisym, y - x], axis=1), np.zeros(2 * V))) < Z


def test_unadjusted_kernel_is_biased_at_the_same_large_step():
    """Same start and step without the MH correction.  From exact draws, given h the K
    Langevin steps give v' | h ~ N(m_h, a²/β + s²) (affine map of v ~ N(m_h, 1/β)), so
    E[v'v'ᵀ] = Σ P(h) m_h m_hᵀ + diag(a²/β + s²) exactly.  The sample moments match that
    prediction (z < 5), and the prediction is at least 20 sampling sd away from the true
    E[v vᵀ]: the discretisation bias the adjustment removes, measured with a wide margin."""
    kernel = gibbs_langevin(GRBM, 1.5, 5, schedule="constant", adjusted=False)
    n = 100_000
    new, info = _one_step(kernel, _exact_states(jax.random.key(2), n), 3)
    assert float(jnp.min(info.acceptance_rate)) == 1.0
    a, s2 = (
        np.asarray(x, np.float64)
        for x in langevin_gaussian_map(jnp.asarray(step_sizes(1.5, 5, "constant")), BETA)
    )
    biased = EVV_MEANS + np.diag(a**2 / BETA + s2)
    v = np.asarray(new.v, np.float64)
    terms = (v[:, :, None] * v[:, None, :])[:, IU[0], IU[1]]
    assert np.max(clt_z(terms, biased[IU])) < Z
    sd_mean = terms.std(0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(np.diag(biased) - np.diag(EVV)) > 20 * sd_mean[[0, 2]])
    assert np.all(clt_z(terms, EVV[IU])[[0, 2]] > Z)


def test_relative_step_size_is_scaled_by_the_mean_variance():
    """relative=True uses η · mean(1/β): the same draws as the absolute step η · mean(1/β)."""
    scale = float(np.mean(1 / BETA))
    rel = gibbs_langevin(GRBM, 0.8, 4, relative=True)
    ab = gibbs_langevin(GRBM, 0.8 * scale, 4, relative=False)
    s = _exact_states(jax.random.key(4), 1)
    s = jax.tree_util.tree_map(lambda x: x[0], s)
    a, ia = rel.step(jax.random.key(5), s, P)
    b, ib = ab.step(jax.random.key(5), s, P)
    np.testing.assert_allclose(a.v, b.v, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.h, b.h)
    np.testing.assert_allclose(ia.acceptance_rate, ib.acceptance_rate, rtol=1e-4)


def test_same_key_same_draws_jit_equals_nojit_and_chain_spec():
    chain = gibbs_langevin_chain(GRBM, 0.5, 3)
    s = chain.from_visible(jax.random.key(0), P, jnp.array([0.1, -0.2]))
    assert s.h.shape == (H,) and set(np.unique(np.asarray(s.h))) <= {0.0, 1.0}
    assert chain.refresh(s, P) is s and chain.visible(s) is s.v
    a, _ = chain.kernel.step(jax.random.key(1), chain.kernel.init(s), P)
    b, _ = jax.jit(chain.kernel.step)(jax.random.key(1), s, P)
    np.testing.assert_allclose(a.v, b.v, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.h, b.h)
    c, _ = chain.kernel.step(jax.random.key(2), s, P)
    assert not np.array_equal(a.v, c.v)


def test_bad_configuration_raises():
    with pytest.raises(ConfigError, match="step_size"):
        gibbs_langevin(GRBM, 0.0)
    with pytest.raises(ConfigError, match="Langevin steps"):
        gibbs_langevin(GRBM, 0.1, 0)
    with pytest.raises(ConfigError, match="schedule"):
        gibbs_langevin(GRBM, 0.1, schedule="linear")
    with pytest.raises(ConfigError, match="min_step_size"):
        gibbs_langevin(GRBM, 0.1, min_step_size=0.5)
