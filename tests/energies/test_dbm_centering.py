"""Centered DBM parameterisation, the centered gradient, and composing pretrained RBMs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import random_dbm

from egm.energies import dbm, rbm
from egm.energies.rbm import RBMParams
from egm.errors import ConfigError
from egm.estimators import contrastive, dbm_pcd, exact

SIZES = (4, 3, 2, 2)


def _offsets(seed):
    ks = jax.random.split(jax.random.key(seed), len(SIZES))
    return tuple(
        jax.random.uniform(k, (n,), minval=0.1, maxval=0.9) for k, n in zip(ks, SIZES, strict=True)
    )


def _split(x, sizes=SIZES):
    return tuple(jnp.split(x, np.cumsum(sizes)[:-1]))


def test_centered_and_ordinary_energies_differ_by_a_constant():
    """Same distribution: E_c(x) - E(x) is the same number for all 2^11 states (float32
    round-off on O(10) energies: 1e-4)."""
    pc, mu = random_dbm(0, SIZES, 1.0), _offsets(1)
    p = dbm.from_centered(pc, mu)
    xs = exact.all_binary_states(sum(SIZES))
    diff = jax.vmap(lambda x: dbm.centered_energy(pc, mu, _split(x)) - dbm.energy(p, _split(x)))(xs)
    assert float(jnp.max(diff) - jnp.min(diff)) < 1e-4
    back = dbm.to_centered(p, mu)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(pc), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="offsets"):
        dbm.from_centered(pc, mu[:-1])


def test_centered_gradient_is_the_step_taken_in_centered_coordinates():
    """``from_centered`` is linear in the centered parameters for fixed offsets, so a gradient
    step in centered coordinates moves the ordinary parameters by ``J Jᵀ g``; computed here
    by autodiff (vjp then jvp) and compared with the closed form."""
    pc, mu = random_dbm(2, SIZES, 1.0), _offsets(3)
    g = random_dbm(4, SIZES, 1.0)  # any gradient pytree
    f = lambda q: dbm.from_centered(q, mu)
    _, vjp = jax.vjp(f, pc)
    (jt_g,) = vjp(g)
    _, j_jt_g = jax.jvp(f, (pc,), (jt_g,))
    got = dbm_pcd.centered_gradient(g, mu)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(j_jt_g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    zero = tuple(jnp.zeros_like(m) for m in mu)
    for a, b in zip(
        jax.tree_util.tree_leaves(dbm_pcd.centered_gradient(g, zero)),
        jax.tree_util.tree_leaves(g),
        strict=True,
    ):
        np.testing.assert_allclose(a, b)


def test_one_hidden_layer_centered_gradient_is_the_rbm_one():
    """The RBM's centered gradient (Melchior et al. 2016, eq. 11-13, written out in
    contrastive.py) is the one-hidden-layer case."""
    k = jax.random.split(jax.random.key(5), 5)
    g = RBMParams(
        jax.random.normal(k[0], (4, 3)),
        jax.random.normal(k[1], (4,)),
        jax.random.normal(k[2], (3,)),
    )
    mu, lam = jax.random.uniform(k[3], (4,)), jax.random.uniform(k[4], (3,))
    got = contrastive.centered_gradient(g, mu, lam)
    dW = g.W - jnp.outer(mu, g.c) - jnp.outer(g.b, lam)
    np.testing.assert_allclose(got.W, dW, rtol=1e-6)
    np.testing.assert_allclose(got.b, g.b - dW @ lam, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.c, g.c - dW.T @ mu, rtol=1e-5, atol=1e-6)


def _rbm(seed, V, H):
    k = jax.random.split(jax.random.key(seed), 3)
    return RBMParams(
        jax.random.normal(k[0], (V, H)),
        0.5 * jax.random.normal(k[1], (V,)),
        0.5 * jax.random.normal(k[2], (H,)),
    )


def test_composed_dbm_conditionals_match_the_doubled_rbms():
    """Salakhutdinov & Hinton (2009): bottom RBM trained with doubled visibles, top with
    doubled hiddens, middle ones plain.  In the composed DBM, P(v|h¹) is the bottom RBM's,
    P(h^L|h^{L-1}) the top RBM's, and every middle layer's logit is the mean of the two
    adjacent RBMs' doubled-input logits (middle RBMs' weights halved)."""
    sizes = (5, 4, 3, 2)
    rbms = [_rbm(10 + i, a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))]
    p = dbm.from_pretrained_rbms(rbms)
    x = _split(
        jax.random.bernoulli(jax.random.key(0), 0.5, (sum(sizes),)).astype(jnp.float32), sizes
    )
    # visible layer: the bottom RBM's P(v|h)
    np.testing.assert_allclose(
        dbm.layer_logits(p, x, 0), rbm.visible_preactivation(rbms[0], x[1]), rtol=1e-5, atol=1e-5
    )
    # top layer: the top RBM's P(h|v)
    np.testing.assert_allclose(
        dbm.layer_logits(p, x, 3), rbm.hidden_preactivation(rbms[2], x[2]), rtol=1e-5, atol=1e-5
    )
    # layer 1: between the bottom RBM (doubled visibles: c + 2Wᵀv) and the middle RBM (plain,
    # its input from above counts twice in the average because the middle weights are halved)
    up = rbms[0].c + 2 * x[0] @ rbms[0].W
    down = rbms[1].b + rbms[1].W @ x[2]
    np.testing.assert_allclose(
        dbm.layer_logits(p, x, 1), 0.5 * up + 0.5 * down, rtol=1e-5, atol=1e-5
    )
    # layer 2: middle RBM from below (halved), top RBM from above (doubled hiddens: b + 2Wh)
    up = rbms[1].c + x[1] @ rbms[1].W
    down = rbms[2].b + 2 * rbms[2].W @ x[3]
    np.testing.assert_allclose(
        dbm.layer_logits(p, x, 2), 0.5 * up + 0.5 * down, rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ConfigError, match="chain"):
        dbm.from_pretrained_rbms([rbms[0], rbms[2]])


def test_bottom_up_init_is_the_doubled_recognition_pass():
    p = random_dbm(6, SIZES, 1.0)
    v = jnp.array([1.0, 0.0, 1.0, 1.0])
    mu = dbm.mean_field_init(p, v, "bottom_up")
    h1 = jax.nn.sigmoid(p.biases[1] + 2 * v @ p.weights[0])
    h2 = jax.nn.sigmoid(p.biases[2] + 2 * h1 @ p.weights[1])
    h3 = jax.nn.sigmoid(p.biases[3] + h2 @ p.weights[2])
    for a, b in zip(mu, (h1, h2, h3), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # both inits reach the same fixed point when mean field has a unique one (weak couplings)
    q = random_dbm(7, SIZES, 0.3)
    a, _ = dbm.mean_field(q, v, tol=1e-7, init="half")
    b, info = dbm.mean_field(q, v, tol=1e-7, init="bottom_up")
    assert float(info.residual) <= 1e-7
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)
    with pytest.raises(ConfigError, match="init"):
        dbm.mean_field_init(q, v, "top_down")
