"""CD/PCD gradients against the exact log-likelihood gradient (CLT bounds, tests/_stats.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, clt_z, random_rbm, rbm_gibbs_tv_after

from egm.energies import rbm
from egm.estimators import contrastive, exact


def _exact_loss_grad(p, v_data):
    return jax.jit(jax.grad(lambda q: -jnp.mean(exact.rbm_log_likelihood(q, v_data))))(p)


def _flat(g):
    return np.concatenate([np.ravel(x) for x in g])


def test_closed_form_equals_autodiff_of_free_energy_gap():
    p = random_rbm(0, 7, 5, 1.0)
    pos = jax.random.bernoulli(jax.random.key(1), 0.4, (13, 7)).astype(jnp.float32)
    neg = jax.random.bernoulli(jax.random.key(2), 0.6, (9, 7)).astype(jnp.float32)
    gap, g_auto = contrastive.free_energy_gap_grad(rbm.free_energy, p, pos, neg)
    g_closed, aux = contrastive._rbm_gradient(p, pos, neg)
    np.testing.assert_allclose(_flat(g_closed), _flat(g_auto), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aux.free_energy_gap, gap, rtol=1e-5)


def _per_chain_grads(p, v_data, v_model):
    """Per-negative-sample gradient terms, so the CLT sd can be measured."""
    flat = lambda g: jnp.concatenate([jnp.ravel(x) for x in g])
    return np.asarray(
        jax.vmap(lambda v: flat(contrastive._rbm_gradient(p, v_data, v[None])[0]))(v_model)
    )


def test_gradient_with_exact_negatives_is_unbiased():
    """Negatives drawn exactly from p(v): E[grad] = exact ∇(-mean log p(data))."""
    p = random_rbm(1, 6, 4, 1.5)
    v_data = jax.random.bernoulli(jax.random.key(3), 0.3, (20, 6)).astype(jnp.float32)
    logp = jnp.log(exact.rbm_visible_distribution(p))
    idx = jax.random.categorical(jax.random.key(4), logp, shape=(40000,))
    per = _per_chain_grads(p, v_data, exact.all_binary_states(6)[idx])
    assert np.max(clt_z(per, _flat(_exact_loss_grad(p, v_data)))) < Z


@pytest.mark.slow  # 14 s cold; PCD's exact gradient is also checked in tests/train (fe_step, tied copies)
def test_pcd_gradient_matches_exact_in_expectation():
    """40000 persistent chains burnt in for T sweeps; the remaining mixing bias of each
    coordinate (all terms lie in [-1, 1], width 2) is at most 2·TV_T, added to the CLT bound."""
    p = random_rbm(2, 6, 4, 1.5)
    v_data = jax.random.bernoulli(jax.random.key(5), 0.5, (20, 6)).astype(jnp.float32)
    m, burn = 40000, 100
    v0 = jax.random.bernoulli(jax.random.key(6), 0.5, (m, 6)).astype(jnp.float32)
    chains = jax.vmap(rbm.sample_state, in_axes=(0, None, 0))(
        jax.random.split(jax.random.key(7), m), p, v0
    )
    _, chains, _ = jax.jit(contrastive.pcd_gradient, static_argnums=4)(
        jax.random.key(8), p, v_data, chains, burn
    )
    grads, _, aux = contrastive.pcd_gradient(jax.random.key(9), p, v_data, chains, 1)
    per = _per_chain_grads(p, v_data, aux.negatives)
    truth = _flat(_exact_loss_grad(p, v_data))
    np.testing.assert_allclose(_flat(grads), per.mean(0), rtol=1e-3, atol=1e-4)  # float32 sum order
    bias = 2 * rbm_gibbs_tv_after(p, np.full(64, 1 / 64), burn)
    sd = per.std(0, ddof=1) / np.sqrt(m)
    assert np.all(np.abs(per.mean(0) - truth) < Z * sd + bias)


@pytest.mark.slow  # 19 s cold; CD's exact-negatives unbiasedness stays in the default suite
def test_cd_k_approaches_exact_gradient_and_cd1_is_biased():
    """CD-k starts at the data, so its bias is ≤ 2·TV after k sweeps from the data distribution."""
    p = random_rbm(3, 5, 4, 2.0)
    v_data = jax.random.bernoulli(jax.random.key(10), 0.5, (32, 5)).astype(jnp.float32)
    reps = 1250  # 40000 negatives in total
    truth = _flat(_exact_loss_grad(p, v_data))
    start = np.asarray(jnp.bincount(exact.state_index(v_data), length=32)) / 32

    def sample(k):
        keys = jax.random.split(jax.random.key(k), reps)
        f = jax.jit(jax.vmap(lambda kk: contrastive.cd_gradient(kk, p, v_data, k)[1].negatives))
        return f(keys).reshape(-1, 5)

    # CD-100: unbiased up to the exact mixing bound
    per = _per_chain_grads(p, v_data, sample(100))
    bias = 2 * rbm_gibbs_tv_after(p, start, 100)
    sd = per.std(0, ddof=1) / np.sqrt(len(per))
    assert np.all(np.abs(per.mean(0) - truth) < Z * sd + bias)
    # CD-1 is a biased estimator (§18.2): some coordinate is off by more than 5 sd
    per1 = _per_chain_grads(p, v_data, sample(1))
    assert np.max(clt_z(per1, truth)) > Z


def test_centered_gradient():
    """Independent check by autodiff: with the centered parameterisation
    θ_c = (W, b_c, c_c) ↦ θ = (W, b_c - Wλ, c_c - Wᵀμ) =: T(θ_c), a gradient step in θ_c moves θ
    by J Jᵀ ∇_θ L (J the Jacobian of T); ``centered_gradient`` must equal J Jᵀ g."""
    g = random_rbm(4, 5, 3, 1.0)
    mu, lam = jnp.linspace(0.1, 0.9, 5), jnp.linspace(0.7, 0.2, 3)
    zero = contrastive.centered_gradient(g, jnp.zeros(5), jnp.zeros(3))
    np.testing.assert_allclose(_flat(zero), _flat(g), rtol=1e-6)

    def T(tc):
        W, bc, cc = tc
        return rbm.RBMParams(W=W, b=bc - W @ lam, c=cc - W.T @ mu)

    tc0 = random_rbm(5, 5, 3, 1.0)
    _, vjp = jax.vjp(T, tc0)
    (jt_g,) = vjp(g)
    _, j_jt_g = jax.jvp(T, (tc0,), (jt_g,))
    np.testing.assert_allclose(
        _flat(contrastive.centered_gradient(g, mu, lam)), _flat(j_jt_g), rtol=1e-5, atol=1e-6
    )
