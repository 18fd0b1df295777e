"""Tied copies of RBM layers (DBM pretraining, Salakhutdinov & Hinton 2009, §20.4.4).

The RBM with ``m_v`` tied visible copies and ``m_h`` tied hidden copies is the big RBM
``expand_copies(params, m_v, m_h)`` trained on data tiled ``m_v`` times; its gradient w.r.t.
the tied parameters is checked against ``jax.grad`` of the EXACT log-likelihood of the big
RBM (enumeration), taken w.r.t. the small parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _stats import random_rbm

from egm import train
from egm.energies import rbm
from egm.errors import ConfigError
from egm.estimators import exact
from egm.train.rbm_step import expand_copies, tie_gradient, tile_data

V, H = 3, 2


def _exact_loss(params, v, m_v, m_h):
    """``-mean log p_big(tile(v))`` of the big RBM, as a function of the tied parameters."""
    big = expand_copies(params, m_v, m_h)
    return -jnp.mean(exact.rbm_log_likelihood(big, tile_data(v, m_v)))


def _data(n=32, seed=1):
    return jax.random.bernoulli(jax.random.key(seed), 0.4, (n, V)).astype(jnp.float32)


@pytest.mark.parametrize("m_v,m_h", [(2, 1), (1, 2), (2, 2)])
def test_tie_gradient_is_the_chain_rule(m_v, m_h):
    """Deterministic: tie_gradient(∇_big L) == ∇_small (L ∘ expand_copies), to float32 rounding."""
    params = random_rbm(0, V, H, 0.5)
    v = _data()
    big = expand_copies(params, m_v, m_h)
    g_big = jax.grad(lambda p: -jnp.mean(exact.rbm_log_likelihood(p, tile_data(v, m_v))))(big)
    got = tie_gradient(g_big, m_v, m_h)
    want = jax.grad(_exact_loss)(params, v, m_v, m_h)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def _exact_big_samples(key, big, n):
    """``n`` exact draws of the big RBM's (v, h): v from the enumerated marginal, h ~ P(h|v)."""
    k1, k2 = jax.random.split(key)
    p = exact.rbm_visible_distribution(big)
    idx = jax.random.choice(k1, p.shape[0], (n,), p=p)
    v = exact.all_binary_states(big.W.shape[0])[idx]
    h = jax.vmap(rbm.sample_hidden, (0, None, 0))(jax.random.split(k2, n), big, v)
    return rbm.RBMState(v=v, h=h)


def _tied_step_gradient(params, v, chains, m_v, m_h, estimator="pcd"):
    """Run the real train step once with plain SGD(lr=1): the tied gradient is params - new."""
    opt = optax.sgd(1.0)
    cfg = train.RBMStepConfig(
        estimator=estimator, k=1, centering=False, visible_copies=m_v, hidden_copies=m_h
    )
    state = train.init_rbm_state(
        jax.random.key(5),
        params,
        opt,
        v.mean(0),
        chains.v.shape[0],
        visible_copies=m_v,
        hidden_copies=m_h,
    )
    state = state._replace(chains=chains)
    new, _ = jax.jit(train.make_step(train.rbm_objective(cfg), opt))(state, v, jax.random.key(9))
    grads = jax.tree_util.tree_map(lambda a, b: a - b, params, new.params)
    return grads, new.chains


def _per_sample_negative_terms(params, v_big, m_v, m_h):
    """Per-sample tied ∂F_big(ṽ)/∂θ: the estimator's negative phase is minus their mean."""
    return jax.vmap(
        jax.grad(lambda p, x: rbm.free_energy(expand_copies(p, m_v, m_h), x)), (None, 0)
    )(params, v_big)


@pytest.mark.parametrize("m_v,m_h", [(2, 2), pytest.param(2, 1, marks=pytest.mark.slow)])
def test_tied_pcd_step_matches_exact_gradient(m_v, m_h):
    """The tied-copies PCD step's gradient vs ``jax.grad`` of the exact big log-likelihood.

    The persistent chains are set to M exact draws of the big RBM's joint; one PCD sweep
    leaves that law invariant, so the negative phase is an unbiased mean of M i.i.d.
    per-sample tied gradients ``g_s = -∂F_big(ṽ_s)/∂θ`` and the positive phase is exact
    (hidden units enter by their conditional means).  Hence per coordinate
    ``(estimate - truth) / (sd(g)/√M)`` is asymptotically N(0, 1); with 2·(VH+V+H) = 22
    coordinates, ``z < 5`` fails by chance with probability < 22 · 5.7e-7 ≈ 1.3e-5.
    Power: chains drawn from a perturbed RBM (weights + 1.0) must fail the same bound.
    """
    M = 20000
    params = random_rbm(0, V, H, 0.5)
    v = _data()
    big = expand_copies(params, m_v, m_h)
    truth = jax.grad(_exact_loss)(params, v, m_v, m_h)

    def max_z(chain_params):
        chains = _exact_big_samples(jax.random.key(3), chain_params, M)
        est, new_chains = _tied_step_gradient(params, v, chains, m_v, m_h)
        terms = _per_sample_negative_terms(params, new_chains.v, m_v, m_h)
        zs = []
        for e, t, s in zip(est, truth, terms, strict=True):
            se = np.asarray(jnp.std(s, axis=0, ddof=1)) / np.sqrt(M)
            zs.append(np.abs(np.asarray(e) - np.asarray(t)) / np.maximum(se, 1e-7))
        return max(float(np.max(z)) for z in zs)

    assert max_z(big) < 5.0
    wrong = expand_copies(params._replace(W=params.W + 1.0), m_v, m_h)
    assert max_z(wrong) > 5.0


def test_default_copies_is_the_plain_rbm_step():
    """copies (1, 1) must be the plain step: same state shapes and bit-identical updates."""
    params = random_rbm(0, V, H, 0.5)
    v = _data()
    opt = train.sgd(0.05, 0.5)
    s0 = train.init_rbm_state(jax.random.key(1), params, opt, v.mean(0), 8)
    s1 = train.init_rbm_state(
        jax.random.key(1), params, opt, v.mean(0), 8, visible_copies=1, hidden_copies=1
    )
    a, _ = train.make_step(train.rbm_objective(), opt)(s0, v, jax.random.key(2))
    b, _ = train.make_step(
        train.rbm_objective(train.RBMStepConfig(visible_copies=1, hidden_copies=1)), opt
    )(s1, v, jax.random.key(2))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("m_v,m_h", [(2, 1), pytest.param(1, 2, marks=pytest.mark.slow)])
def test_tied_centered_training_raises_exact_big_likelihood(m_v, m_h):
    """300 centered tied-copies PCD-1 steps (the DBM-pretraining configuration) raise the
    exact log-likelihood of the big RBM on the tiled data by more than 0.05 nats/example
    from a random start; the offsets and chains stay in the big space."""
    params = random_rbm(4, V, H, 0.01)
    x = jax.random.bernoulli(jax.random.key(7), jnp.array([0.9, 0.1, 0.7]), (64, V)).astype(
        jnp.float32
    )
    opt = train.sgd(0.05, 0.5)
    cfg = train.RBMStepConfig(visible_copies=m_v, hidden_copies=m_h, centering=True)
    state = train.init_rbm_state(
        jax.random.key(1), params, opt, x.mean(0), 16, visible_copies=m_v, hidden_copies=m_h
    )
    assert state.aux.mu.shape == (m_v * V,) and state.aux.lam.shape == (m_h * H,)
    epoch = jax.jit(train.make_epoch(train.make_step(train.rbm_objective(cfg), opt), 16))
    before = -float(_exact_loss(params, x, m_v, m_h))
    for e in range(75):
        state, _ = epoch(state, x, jax.random.key(e))
    after = -float(_exact_loss(state.params, x, m_v, m_h))
    assert state.chains.v.shape == (16, m_v * V)
    assert after > before + 0.05, (before, after)


def test_bad_copies_are_rejected():
    with pytest.raises(ConfigError, match="visible_copies"):
        train.RBMStepConfig(visible_copies=0).validate()
    with pytest.raises(ConfigError, match="hidden_copies"):
        train.make_step(train.rbm_objective(train.RBMStepConfig(hidden_copies=1.5)), optax.sgd(0.1))
    params = random_rbm(0, V, H, 0.5)
    v = _data()
    opt = optax.sgd(0.1)
    plain = train.init_rbm_state(jax.random.key(0), params, opt, v.mean(0), 4)
    step = train.make_step(train.rbm_objective(train.RBMStepConfig(visible_copies=2)), opt)
    with pytest.raises(ConfigError, match="init_rbm_state"):
        step(plain, v, jax.random.key(1))
