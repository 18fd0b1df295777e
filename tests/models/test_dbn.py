"""Deep belief networks (§20.3): the variational lower bound and the sampler against exact
enumeration on tiny DBNs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import histogram, random_rbm, rbm_gibbs_tv_after, tv, tv_tolerance

from egm.energies import rbm
from egm.energies.rbm import RBMParams
from egm.errors import ConfigError
from egm.estimators import ais, exact
from egm.models import dbn


def _dbn(sizes, seed=0, scale=1.5):
    return tuple(random_rbm(seed + i, sizes[i], sizes[i + 1], scale) for i in range(len(sizes) - 1))


def _transpose(p: RBMParams) -> RBMParams:
    return RBMParams(W=p.W.T, b=p.c, c=p.b)


ALL_V = exact.all_binary_states(4)


@pytest.mark.parametrize("sizes", [(4, 3, 3), (4, 3, 3, 2), (4, 2, 3, 3)])
def test_exact_bound_is_below_exact_log_likelihood(sizes):
    """Enumeration of every layer: bound(v) <= log p(v) for all 16 visible states (up to
    float32 rounding, 1e-5), and strictly below for a random DBN (Q is not the posterior)."""
    model = _dbn(sizes)
    ll = np.asarray(dbn.log_likelihood_exact(model, ALL_V))
    lb = np.asarray(dbn.lower_bound_exact(model, ALL_V))
    np.testing.assert_allclose(np.exp(ll).sum(), 1.0, rtol=1e-5)
    assert np.all(lb <= ll + 1e-5)
    assert np.max(ll - lb) > 1e-3


@pytest.mark.parametrize("depth", [2, 3])
def test_bound_is_exact_when_q_is_the_posterior(depth):
    """Complementary prior (Hinton et al. 2006): stacking an RBM P with its transpose (P, Pᵀ)
    or (P, Pᵀ, P) leaves p(v) the RBM's own marginal, and the up-pass Q(h¹|v) = P(h¹|v) is
    the exact posterior at every level, so the bound equals log p(v) (float32 rounding)."""
    p = random_rbm(3, 4, 3, 1.5)
    model = (p, _transpose(p)) if depth == 2 else (p, _transpose(p), p)
    ll_rbm = np.asarray(exact.rbm_log_likelihood(p, ALL_V))
    np.testing.assert_allclose(dbn.log_likelihood_exact(model, ALL_V), ll_rbm, atol=2e-5)
    np.testing.assert_allclose(dbn.lower_bound_exact(model, ALL_V), ll_rbm, atol=2e-5)


@pytest.mark.parametrize("sizes", [(4, 3, 3), (4, 3, 3, 2)])
def test_monte_carlo_bound_matches_enumerated_bound(sizes):
    """lower_bound with the exact log Z_top is an unbiased Monte-Carlo estimate of
    lower_bound_exact (the per-layer entropies are exact; only h ~ Q is sampled).  Its
    reported se_q = sqrt(Σ_n var_n / S)/N is the CLT standard error of the dataset mean, so
    |estimate - exact| < 5 se_q fails by chance with probability 5.7e-7."""
    model = _dbn(sizes)
    v = jnp.tile(ALL_V, (8, 1))
    log_z = exact.rbm_log_partition(model[-1])
    est = dbn.lower_bound(jax.random.key(0), model, v, log_z, n_samples=200)
    truth = float(jnp.mean(dbn.lower_bound_exact(model, v)))
    assert est.se_q > 0
    assert abs(est.bound - truth) < 5 * est.se_q, (est.bound, truth, est.se_q)
    # same key, same number
    again = dbn.lower_bound(jax.random.key(0), model, v, log_z, n_samples=200)
    assert again.bound == est.bound


def test_one_layer_bound_is_the_rbm_log_likelihood():
    p = random_rbm(1, 4, 3, 1.0)
    log_z = exact.rbm_log_partition(p)
    est = dbn.lower_bound(jax.random.key(0), (p,), ALL_V, log_z, n_samples=2)
    np.testing.assert_allclose(est.bound, float(exact.rbm_log_likelihood(p, ALL_V).mean()), 1e-5)
    assert est.se_q == 0.0


def test_ais_bound_matches_enumerated_bound():
    """ais_lower_bound (forward AIS for log Z_top, Salakhutdinov & Murray 2008) vs the
    enumerated bound.  Errors add: |Δ| < 5·se + se_z², where se combines the Q-sampling and
    AIS standard errors in quadrature and se_z² covers the Jensen bias of log Ẑ (the same
    bound as the AIS tests, tests/estimators/test_ais.py)."""
    model = _dbn((4, 3, 6), scale=1.0)
    v = jnp.tile(ALL_V, (4, 1))
    base_b = ais.base_rate_biases(jax.nn.sigmoid(jnp.zeros((1, 3))))
    res = dbn.ais_lower_bound(
        jax.random.key(1),
        model,
        v,
        base_b,
        n_chains=200,
        betas=ais.betas_salakhutdinov_murray(2000),
        n_samples=100,
    )
    truth = float(jnp.mean(dbn.lower_bound_exact(model, v)))
    log_z = float(exact.rbm_log_partition(model[-1]))
    assert abs(res.log_z_top - log_z) < 5 * res.log_z_top_se + res.log_z_top_se**2
    assert abs(res.bound - truth) < 5 * res.se + res.log_z_top_se**2
    assert res.n_temps == 2000 and res.n_chains == 200
    assert res.per_example.shape == (64,)
    assert float(np.mean(np.asarray(res.per_example, np.float64))) == pytest.approx(res.bound)


def _exact_joint_v_h1(model):
    """Exact p(v, h¹) = p_top(h¹) P(v | h¹) of a 2-layer DBN, indexed by the bits of (v, h¹)."""
    p, top = model
    hs, vs = exact.all_binary_states(p.W.shape[1]), exact.all_binary_states(p.W.shape[0])
    log_top = -jax.vmap(rbm.free_energy, (None, 0))(top, hs) - exact.rbm_log_partition(top)
    logits = hs @ p.W.T + p.b  # [h, i]
    log_pv_h = jax.nn.log_sigmoid(logits) @ vs.T + jax.nn.log_sigmoid(-logits) @ (1 - vs).T
    joint = jnp.exp(log_pv_h.T + log_top[None, :])  # [v, h]
    return np.asarray(joint, np.float64).reshape(-1)


def test_sampler_histogram_matches_exact_joint():
    """M draws of (v, h¹) (n_gibbs sweeps in the top RBM, then the ancestral step down) vs the
    exact joint p(v, h¹) = p_top(h¹) P(v|h¹) over all 128 states, and v alone vs p(v).

    Tolerance: E[TV] bound + McDiarmid deviation at δ = 1e-6 for M i.i.d. draws
    (tests/_stats.py), plus the exact TV of the top chain's law of h¹ after n_gibbs sweeps
    from its start distribution Bernoulli(σ(b_top)) (transition matrix of the top RBM); the
    down step applies the same kernel P(v|h¹) to both laws, so the joint's (and v's) TV
    equals (is at most) that of h¹.  Power: the same histograms are rejected against a DBN
    with perturbed bottom weights."""
    model = _dbn((4, 3, 3), scale=1.2)
    M, T = 20000, 30
    s = dbn.sample(jax.random.key(0), model, M, T)
    top = model[-1]
    start_logits = exact.all_binary_states(3) @ top.b - jnp.sum(jax.nn.softplus(top.b))
    start = np.asarray(jnp.exp(start_logits), np.float64)
    mixing = rbm_gibbs_tv_after(top, start, T)
    wrong = (model[0]._replace(W=model[0].W + 1.0), model[1])

    joint_idx = exact.state_index(jnp.concatenate([s.v, s.top_visible], axis=1))
    h = histogram(np.asarray(joint_idx), 128)
    p = _exact_joint_v_h1(model)
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-5)
    tol = tv_tolerance(p, M) + mixing
    assert tv(h, p) < tol, (tv(h, p), tol, mixing)
    assert tv(h, _exact_joint_v_h1(wrong)) > tol

    hv = histogram(np.asarray(exact.state_index(s.v)), 16)
    pv = np.asarray(dbn.visible_distribution_exact(model), np.float64)
    tol_v = tv_tolerance(pv, M) + mixing
    assert tv(hv, pv) < tol_v, (tv(hv, pv), tol_v, mixing)
    assert tv(hv, np.asarray(dbn.visible_distribution_exact(wrong), np.float64)) > tol_v
    # same key, same samples; v_probs are the down-pass means
    s2 = dbn.sample(jax.random.key(0), model, M, T)
    np.testing.assert_array_equal(np.asarray(s.v), np.asarray(s2.v))
    assert s.v_probs.shape == (M, 4) and float(s.v_probs.min()) > 0


def test_up_pass_shapes_and_values():
    model = _dbn((4, 3, 2))
    mus = dbn.up_pass(model, ALL_V[5])
    assert [m.shape for m in mus] == [(3,), (2,)]
    np.testing.assert_allclose(mus[0], jax.nn.sigmoid(model[0].c + ALL_V[5] @ model[0].W))


def test_bad_dbns_and_inputs_are_rejected():
    with pytest.raises(ConfigError, match="hidden units"):
        dbn.check((random_rbm(0, 4, 3, 1.0), random_rbm(1, 2, 3, 1.0)))
    with pytest.raises(ConfigError, match="at least one"):
        dbn.check(())
    model = _dbn((4, 3, 2))
    with pytest.raises(ConfigError, match="v must be"):
        dbn.lower_bound(jax.random.key(0), model, jnp.zeros((2, 5)), 0.0)
    with pytest.raises(ConfigError, match="n_samples"):
        dbn.lower_bound(jax.random.key(0), model, ALL_V, 0.0, n_samples=1)
    with pytest.raises(ConfigError, match="n_gibbs"):
        dbn.sample(jax.random.key(0), model, 4, -1)
