"""MLP classifier initialised from pretrained RBMs (DBN / DBM fine-tuning)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import random_rbm

from egm.errors import ConfigError
from egm.models import dbn
from egm.models.mlp import MLP, mlp_params_from_rbms


def test_init_from_rbms_is_the_dbn_up_pass():
    """The hidden layers of the initialised MLP compute the DBN's mean-field up-pass exactly,
    and the parameter tree has the structure and shapes Flax's own init gives."""
    rbms = (random_rbm(0, 6, 5, 1.0), random_rbm(1, 5, 4, 1.0))
    module, params = mlp_params_from_rbms(rbms, 3, jax.random.key(0))
    flax_params = module.init(jax.random.key(1), jnp.zeros((1, 6)))["params"]
    assert jax.tree_util.tree_structure(flax_params) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(flax_params), jax.tree_util.tree_leaves(params),
                    strict=True):  # fmt: skip
        assert a.shape == b.shape
    x = jax.random.bernoulli(jax.random.key(2), 0.5, (7, 6)).astype(jnp.float32)
    top = jax.vmap(lambda v: dbn.up_pass(rbms, v)[-1])(x)
    out = params["output"]
    want = top @ out["kernel"] + out["bias"]
    np.testing.assert_allclose(module.apply({"params": params}, x), want, rtol=1e-5, atol=1e-6)
    # the rbms' own arrays are used, not random ones
    np.testing.assert_array_equal(params["hidden_0"]["kernel"], rbms[0].W)
    np.testing.assert_array_equal(params["hidden_1"]["bias"], rbms[1].c)


def test_generic_pairs_allow_augmented_inputs():
    """A DBM-style first layer taking the input plus appended features: (W, c) with W of
    shape (D + H2, H1)."""
    W1, c1 = jnp.ones((10, 4)) * 0.1, jnp.zeros(4)
    W2, c2 = jnp.ones((4, 3)) * 0.1, jnp.zeros(3)
    module, params = mlp_params_from_rbms([(W1, c1), (W2, c2)], 10, jax.random.key(0))
    assert module.apply({"params": params}, jnp.zeros((2, 10))).shape == (2, 10)
    assert module.hidden == (4, 3)


def test_mismatched_layers_are_rejected():
    with pytest.raises(ConfigError, match="takes 5 inputs"):
        mlp_params_from_rbms([random_rbm(0, 6, 4, 1.0), random_rbm(1, 5, 3, 1.0)], 3,
                             jax.random.key(0))  # fmt: skip
    with pytest.raises(ConfigError, match="do not match"):
        mlp_params_from_rbms([(jnp.ones((3, 2)), jnp.ones(3))], 3, jax.random.key(0))
    with pytest.raises(ConfigError, match="n_classes"):
        mlp_params_from_rbms([random_rbm(0, 6, 4, 1.0)], 1, jax.random.key(0))
    with pytest.raises(ConfigError, match="at least one"):
        mlp_params_from_rbms([], 3, jax.random.key(0))
    assert isinstance(MLP((2,), 3), MLP)
