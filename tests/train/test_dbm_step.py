"""DBM train step: joint PCD with mean-field positive phase, centering, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from egm.energies import dbm
from egm.errors import ConfigError, DataError
from egm.estimators import exact
from egm.train import make_epoch, make_step
from egm.train.dbm_step import (
    DBMStepConfig,
    dbm_data_check,
    dbm_objective,
    init_centered_params,
    init_dbm_state,
)

SIZES = (6, 4, 3)


def _data():
    """Two prototypes with 10% pixel noise: a structured target a 6-4-3 DBM can learn."""
    protos = jnp.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], jnp.float32)
    k1, k2 = jax.random.split(jax.random.key(0))
    x = protos[jax.random.bernoulli(k1, 0.5, (256,)).astype(jnp.int32)]
    flip = jax.random.bernoulli(k2, 0.1, x.shape)
    return jnp.where(flip, 1 - x, x)


def _exact_objective(p, v):
    """Mean variational bound (200 mean-field sweeps, converged) minus exact log Z."""
    mus = jax.vmap(lambda x: dbm.mean_field_unrolled(p, x, 200))(v)
    b = jax.vmap(lambda x, *m: dbm.variational_bound(p, x, m))(v, *mus)
    return float(jnp.mean(b) - exact.bm_log_partition(dbm.to_boltzmann(p)))


def _train(config, params, offsets, n_epochs=30, lr=0.05):
    x = _data()
    opt = optax.sgd(lr, momentum=0.5)
    state = init_dbm_state(jax.random.key(1), params, opt, x.mean(0), 64, offsets=offsets)
    epoch = jax.jit(make_epoch(make_step(dbm_objective(config), opt), 32))
    for e in range(n_epochs):
        state, metrics = epoch(state, x, jax.random.fold_in(jax.random.key(2), e))
    return state, metrics


@pytest.mark.parametrize(
    "centering",
    [pytest.param(True, marks=pytest.mark.slow), False],  # True: 9 s cold
)
def test_training_from_random_init_raises_the_exact_objective(centering):
    """Deterministic given the keys.  The objective is exact (bound with converged mean field,
    log Z by enumeration); the untrained model is the random init.  The gain measured here is
    over 1 nat; we ask for half a nat, far above float round-off."""
    x = _data()
    params, offsets = init_centered_params(jax.random.key(3), SIZES, x.mean(0), scale=0.01)
    before = _exact_objective(params, x)
    state, metrics = _train(DBMStepConfig(centering=centering), params, offsets)
    after = _exact_objective(state.params, x)
    assert after > before + 0.5, (before, after)
    assert set(metrics) == {"mean_h1", "chain_h1", "mean_h2", "chain_h2"}
    if centering:  # hidden offsets track the data's mean-field means
        mus = jax.vmap(lambda v: dbm.mean_field_unrolled(state.params, v, 10))(x)
        for o, m in zip(state.aux[1:], mus, strict=True):
            assert float(jnp.max(jnp.abs(o - m.mean(0)))) < 0.2
    else:
        for o, o0 in zip(state.aux, offsets, strict=True):
            np.testing.assert_array_equal(o, o0)


@pytest.mark.slow  # 9 s cold (eager scans); the step's exact-gradient tests stay in the default suite
def test_step_is_deterministic_and_jit_matches_eager():
    x = _data()
    params, offsets = init_centered_params(jax.random.key(3), SIZES, x.mean(0))
    opt = optax.sgd(0.05)
    state = init_dbm_state(jax.random.key(1), params, opt, x.mean(0), 8, offsets=offsets)
    step = make_step(dbm_objective(DBMStepConfig(k=2, mean_field_init="bottom_up")), opt)
    a, _ = step(state, x[:16], jax.random.key(5))
    b, _ = jax.jit(step)(state, x[:16], jax.random.key(5))
    for u, w in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(u, w, rtol=1e-5, atol=1e-6)


def test_init_centered_params_defines_the_centered_model():
    m = jnp.linspace(0.1, 0.9, SIZES[0])
    p, off = init_centered_params(jax.random.key(0), SIZES, m, scale=0.0)
    # zero weights: visible units independent with P(v_i = 1) = data mean
    np.testing.assert_allclose(jax.nn.sigmoid(p.biases[0]), m, rtol=1e-5)
    assert [o.shape for o in off] == [(n,) for n in SIZES]


def test_bad_config_and_data_are_reported():
    with pytest.raises(ConfigError, match="mean_field_iters"):
        DBMStepConfig(mean_field_iters=0).validate()
    with pytest.raises(ConfigError, match="mean_field_init"):
        DBMStepConfig(mean_field_init="random").validate()
    with pytest.raises(ConfigError, match="binarization"):
        DBMStepConfig(binarization="fixed").validate()
    p = dbm.init(jax.random.key(0), SIZES)
    with pytest.raises(ConfigError, match="visible units"):
        init_dbm_state(jax.random.key(0), p, optax.sgd(0.1), jnp.zeros(5), 4)
    bad = dbm.DBMParams((p.weights[0], p.weights[1].T), p.biases)
    with pytest.raises(ConfigError, match="weights\\[1\\]"):
        init_dbm_state(jax.random.key(0), bad, optax.sgd(0.1), jnp.zeros(6), 4)
    with pytest.raises(DataError, match="0 and 1"):
        dbm_data_check(6)(np.full((3, 6), 0.5))
    dbm_data_check(6, DBMStepConfig(binarization="dynamic"))(np.full((3, 6), 0.5))
