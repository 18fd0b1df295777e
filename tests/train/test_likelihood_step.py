"""The generic loss-minimising train step: exact update, metrics, determinism, jit, and its
use inside make_epoch / fit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from egm import train
from egm.errors import ConfigError, DivergenceError
from egm.train.likelihood_step import LossTrainState, init_loss_state, make_loss_step


def quadratic(params, batch, key):
    """0.5 * mean ||batch - w||² + noise-free; gradient w - mean(batch)."""
    return 0.5 * jnp.mean(jnp.sum((batch - params["w"]) ** 2, axis=1))


def test_sgd_step_is_the_exact_gradient_update():
    params = {"w": jnp.asarray([1.0, -2.0])}
    batch = jnp.asarray([[0.0, 0.0], [2.0, 2.0]])
    opt = optax.sgd(0.1)
    state = init_loss_state(params, opt)
    new, metrics = make_loss_step(quadratic, opt, track_grad_norm=True)(
        state, batch, jax.random.key(0)
    )
    grad = np.array([1.0, -2.0]) - np.array([1.0, 1.0])
    np.testing.assert_allclose(new.params["w"], np.array([1.0, -2.0]) - 0.1 * grad, rtol=1e-6)
    assert float(metrics["loss"]) == pytest.approx(0.5 * np.mean([1 + 4, 1 + 16]))
    assert float(metrics["grad_norm"]) == pytest.approx(np.linalg.norm(grad), rel=1e-6)
    assert int(new.step) == 1 and isinstance(new, LossTrainState)
    assert params["w"] is not state.params["w"]  # init copies: donation cannot touch the caller


def test_aux_metrics_key_use_and_determinism():
    """A stochastic loss (uses its key) with aux: same key -> same state; jit == no jit;
    different keys -> different updates."""

    def noisy(params, batch, key):
        eps = jax.random.normal(key, params["w"].shape)
        loss = quadratic(params, batch, key) + jnp.sum(eps * params["w"])
        return loss, {"eps_mean": jnp.mean(eps)}

    params = {"w": jnp.ones(3)}
    batch = jnp.zeros((4, 3))
    opt = optax.sgd(0.1, momentum=0.9)  # (Adam's first step is ±lr whatever the noise)
    step = make_loss_step(noisy, opt, has_aux=True)
    s0 = init_loss_state(params, opt)
    a, ma = step(s0, batch, jax.random.key(1))
    b, _ = step(s0, batch, jax.random.key(1))
    c, mc = jax.jit(step)(s0, batch, jax.random.key(1))
    d, _ = step(s0, batch, jax.random.key(2))
    assert set(ma) == {"loss", "eps_mean"}
    np.testing.assert_array_equal(a.params["w"], b.params["w"])
    np.testing.assert_allclose(a.params["w"], c.params["w"], rtol=1e-6)
    assert not np.allclose(a.params["w"], d.params["w"])


def test_plugs_into_make_epoch_and_fit_without_retracing():
    """Logistic regression trained by fit: the loss falls; the jitted epoch traces once."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3)).astype(np.float32)
    y = (x @ np.array([2.0, -1.0, 0.5]) > 0).astype(np.float32)
    data = jnp.asarray(np.concatenate([x, y[:, None]], axis=1))

    def nll(params, batch, key):
        logits = batch[:, :3] @ params["w"] + params["b"]
        t = batch[:, 3]
        return -jnp.mean(t * jax.nn.log_sigmoid(logits) + (1 - t) * jax.nn.log_sigmoid(-logits))

    opt = optax.adam(0.05)
    state = init_loss_state({"w": jnp.zeros(3), "b": jnp.zeros(())}, opt)
    losses = []

    @jax.jit
    @chex.assert_max_traces(n=1)
    def epoch(state, data, key):
        return train.make_epoch(make_loss_step(nll, opt), 64)(state, data, key)

    state = train.fit(
        state,
        data,
        epoch_fn=epoch,
        key=jax.random.key(0),
        n_epochs=5,
        on_epoch_end=lambda e, s, m: losses.append(m["loss"]),
        progress=False,
    )
    assert losses[-1] < 0.5 * losses[0]
    assert int(state.step) == 5 * (512 // 64)


def test_bad_loss_and_divergence():
    opt = optax.sgd(0.1)
    state = init_loss_state({"w": jnp.ones(2)}, opt)
    with pytest.raises(ConfigError, match="scalar"):
        make_loss_step(lambda p, b, k: b @ p["w"], opt)(state, jnp.ones((3, 2)), jax.random.key(0))
    with pytest.raises(ConfigError, match="callable"):
        make_loss_step("nll", opt)
    # a loss that overflows is caught by fit's divergence check
    huge = make_loss_step(lambda p, b, k: jnp.sum(jnp.exp(1e3 * p["w"])), opt)
    with pytest.raises(DivergenceError, match="epoch 0"):
        train.fit(
            state,
            jnp.ones((4, 2)),
            epoch_fn=jax.jit(train.make_epoch(huge, 2)),
            key=jax.random.key(0),
            n_epochs=1,
            progress=False,
        )
