"""The RBM's energy, free energy and conditionals agree with each other exactly (enumeration)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import random_rbm

from egm.energies import boltzmann, rbm
from egm.errors import ConfigError
from egm.estimators import exact


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_free_energy_is_log_sum_over_hidden(scale):
    p = random_rbm(0, 5, 4, scale)
    hs = exact.all_binary_states(4)
    for v in exact.all_binary_states(5):
        direct = -jax.nn.logsumexp(jax.vmap(lambda h, v=v: -rbm.energy(p, v, h))(hs))
        np.testing.assert_allclose(rbm.free_energy(p, v), direct, rtol=1e-5, atol=1e-5)


def test_hidden_free_energy_is_log_sum_over_visible():
    p = random_rbm(1, 4, 3, 1.5)
    vs = exact.all_binary_states(4)
    for h in exact.all_binary_states(3):
        direct = -jax.nn.logsumexp(jax.vmap(lambda v, h=h: -rbm.energy(p, v, h))(vs))
        np.testing.assert_allclose(rbm.free_energy_hidden(p, h), direct, rtol=1e-5, atol=1e-5)


def test_conditionals_match_joint():
    """P(h_j=1|v) from the formula equals the ratio of joint probabilities by enumeration."""
    p = random_rbm(2, 3, 3, 2.0)
    joint = np.asarray(exact.rbm_joint_distribution(p)).reshape(8, 8)  # [v, h]
    hs = np.asarray(exact.all_binary_states(3))
    vs = np.asarray(exact.all_binary_states(3))
    for i, v in enumerate(vs):
        p_h = joint[i] / joint[i].sum()
        np.testing.assert_allclose(rbm.hidden_probs(p, v), p_h @ hs, atol=1e-5)
    for j, h in enumerate(hs):
        p_v = joint[:, j] / joint[:, j].sum()
        np.testing.assert_allclose(rbm.visible_probs(p, h), p_v @ vs, atol=1e-5)


def test_general_bm_of_rbm_has_same_energy():
    p = random_rbm(3, 4, 3, 1.0)
    bm = boltzmann.from_rbm(p)
    for x in exact.all_binary_states(7):
        np.testing.assert_allclose(
            boltzmann.energy(bm, x), rbm.energy(p, x[:4], x[4:]), rtol=1e-5, atol=1e-5
        )
    np.testing.assert_allclose(exact.bm_log_partition(bm), exact.rbm_log_partition(p), rtol=1e-5)


def test_tempered_path_endpoints():
    p = random_rbm(4, 4, 3, 1.0)
    base_b = jnp.linspace(-1, 1, 4)
    p0, p1 = rbm.tempered(p, 0.0, base_b), rbm.tempered(p, 1.0, base_b)
    np.testing.assert_allclose(p0.W, 0.0)
    np.testing.assert_allclose(p0.b, base_b)
    for a, b in zip(p1, p, strict=True):
        np.testing.assert_allclose(a, b)


def test_log_density_is_function_of_one_state():
    p = random_rbm(5, 6, 2, 1.0)
    logdensity_fn = lambda v: rbm.log_density(p, v)  # the blackjax form
    v = jnp.ones(6)
    np.testing.assert_allclose(logdensity_fn(v), -rbm.free_energy(p, v))
    g = jax.grad(logdensity_fn)(v)  # differentiable, as gradient-based samplers need
    assert g.shape == (6,)


def test_init_validates():
    with pytest.raises(ConfigError, match="at least one"):
        rbm.init(jax.random.key(0), 0, 3)
    with pytest.raises(ConfigError, match="data_mean"):
        rbm.init(jax.random.key(0), 4, 3, data_mean=jnp.ones(5) * 0.5)
    p = rbm.init(jax.random.key(0), 4, 3, data_mean=jnp.array([0.0, 0.5, 1.0, 0.25]))
    assert np.all(np.isfinite(p.b)) and abs(float(p.b[1])) < 1e-6
