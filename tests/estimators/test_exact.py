import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import random_rbm

from egm.energies import rbm
from egm.errors import ConfigError
from egm.estimators import exact


def test_enumeration_over_either_layer_agrees():
    """H < V enumerates hidden, H > V enumerates visible; the full joint sum is the truth."""
    for V, H in [(6, 3), (3, 6)]:
        p = random_rbm(V, V, H, 1.5)
        joint = jax.nn.logsumexp(
            jax.vmap(lambda s: -rbm.energy(p, s[:V], s[V:]))(exact.all_binary_states(V + H))
        )
        np.testing.assert_allclose(exact.rbm_log_partition(p), joint, rtol=1e-5)


def test_zero_weight_model_is_analytic():
    b, c = jnp.array([0.3, -1.0, 2.0]), jnp.array([0.5, -0.5])
    p = rbm.RBMParams(W=jnp.zeros((3, 2)), b=b, c=c)
    analytic = jnp.sum(jax.nn.softplus(b)) + jnp.sum(jax.nn.softplus(c))
    np.testing.assert_allclose(exact.rbm_log_partition(p), analytic, rtol=1e-6)


def test_chunked_enumeration_and_normalisation():
    p = random_rbm(0, 14, 13, 0.3)  # 2^13 hidden states: the chunked path
    full = jax.nn.logsumexp(
        jax.vmap(lambda h: -rbm.free_energy_hidden(p, h))(exact.all_binary_states(13))
    )
    np.testing.assert_allclose(exact.rbm_log_partition(p), full, rtol=1e-5)
    q = random_rbm(1, 5, 3, 1.0)
    ll = exact.rbm_log_likelihood(q, exact.all_binary_states(5))
    np.testing.assert_allclose(jax.nn.logsumexp(ll), 0.0, atol=1e-5)


def test_state_index_round_trip_and_limits():
    s = exact.all_binary_states(5)
    np.testing.assert_array_equal(exact.state_index(s), np.arange(32))
    with pytest.raises(ConfigError, match="AIS"):
        exact.all_binary_states(30)
