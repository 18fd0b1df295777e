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
from egm.train import TrainState, init_state, loss_objective, make_step


def quadratic(params, batch, key):
    """0.5 * mean ||batch - w||² + noise-free; gradient w - mean(batch)."""
    return 0.5 * jnp.mean(jnp.sum((batch - params["w"]) ** 2, axis=1))


def test_sgd_step_is_the_exact_gradient_update():
    params = {"w": jnp.asarray([1.0, -2.0])}
    batch = jnp.asarray([[0.0, 0.0], [2.0, 2.0]])
    opt = optax.sgd(0.1)
    state = init_state(params, opt)
    new, metrics = make_step(loss_objective(quadratic), opt, track_grad_norm=True)(
        state, batch, jax.random.key(0)
    )
    grad = np.array([1.0, -2.0]) - np.array([1.0, 1.0])
    np.testing.assert_allclose(new.params["w"], np.array([1.0, -2.0]) - 0.1 * grad, rtol=1e-6)
    assert float(metrics["loss"]) == pytest.approx(0.5 * np.mean([1 + 4, 1 + 16]))
    assert float(metrics["grad_norm"]) == pytest.approx(np.linalg.norm(grad), rel=1e-6)
    assert int(new.step) == 1 and isinstance(new, TrainState)
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
    step = make_step(loss_objective(noisy, has_aux=True), opt)
    s0 = init_state(params, opt)
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
    state = init_state({"w": jnp.zeros(3), "b": jnp.zeros(())}, opt)
    losses = []

    @jax.jit
    @chex.assert_max_traces(n=1)
    def epoch(state, data, key):
        return train.make_epoch(make_step(loss_objective(nll), opt), 64)(state, data, key)

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
    state = init_state({"w": jnp.ones(2)}, opt)
    with pytest.raises(ConfigError, match="scalar"):
        make_step(loss_objective(lambda p, b, k: b @ p["w"]), opt)(
            state, jnp.ones((3, 2)), jax.random.key(0)
        )
    with pytest.raises(ConfigError, match="callable"):
        make_step(loss_objective("nll"), opt)
    # a loss that overflows is caught by fit's divergence check
    huge = make_step(loss_objective(lambda p, b, k: jnp.sum(jnp.exp(1e3 * p["w"]))), opt)
    with pytest.raises(DivergenceError, match="epoch 0"):
        train.fit(
            state,
            jnp.ones((4, 2)),
            epoch_fn=jax.jit(train.make_epoch(huge, 2)),
            key=jax.random.key(0),
            n_epochs=1,
            progress=False,
        )


def test_multi_player_step_equals_manual_updates_in_order():
    """A GAN-shaped step (k = 3 'discriminator' updates, each on its own third of the
    batch, then one 'generator' update seeing the updated discriminator) equals the same
    updates written out by hand with plain optax: exact up to float rounding (same ops)."""
    from egm.train import Player, init_multi_state, make_multi_step

    def d_loss(p, b, k):  # discriminator pulls d towards the batch mean shifted by g
        return jnp.mean((p["d"] - b - p["g"]) ** 2)

    def g_loss(p, b, k):  # generator pulls g towards -d
        return jnp.sum((p["g"] + p["d"]) ** 2)

    def only(group, f):
        obj = loss_objective(f)

        def objective(params, batch, key, chains, aux):
            out = obj(params, batch, key, chains, aux)
            return out._replace(grads=out.grads[group])

        return objective

    opt_d, opt_g = optax.sgd(0.1), optax.adam(0.05)
    players = [
        Player("d", only("d", d_loss), opt_d, n_updates=3, split_batch=True),
        Player("g", only("g", g_loss), opt_g),
    ]
    params = {"d": jnp.array([0.5, -1.0]), "g": jnp.array([0.2, 0.3])}
    state = init_multi_state(params, players)
    step = jax.jit(make_multi_step(players))
    batch = jnp.arange(12.0).reshape(6, 2) / 10
    s, metrics = step(state, batch, jax.random.key(0))
    s, _ = step(s, batch, jax.random.key(1))

    p = dict(params)
    od, og = opt_d.init(p["d"]), opt_g.init(p["g"])
    for _ in range(2):
        for i in range(3):
            g = jax.grad(d_loss)(p, batch[2 * i : 2 * i + 2], None)["d"]
            u, od = opt_d.update(g, od, p["d"])
            p["d"] = optax.apply_updates(p["d"], u)
        g = jax.grad(g_loss)(p, batch, None)["g"]
        u, og = opt_g.update(g, og, p["g"])
        p["g"] = optax.apply_updates(p["g"], u)
    np.testing.assert_allclose(s.params["d"], p["d"], rtol=1e-6)
    np.testing.assert_allclose(s.params["g"], p["g"], rtol=1e-6)
    assert int(s.step) == 2 and set(metrics) == {"d/loss", "g/loss"}


def test_multi_player_bad_input():
    from egm.train import Player, init_multi_state, make_multi_step

    obj = loss_objective(lambda p, b, k: jnp.sum(p["a"] ** 2))
    with pytest.raises(ConfigError, match="n_updates"):
        make_multi_step([Player("a", obj, optax.sgd(0.1), n_updates=0)])
    with pytest.raises(ConfigError, match="one Player"):
        make_multi_step([Player("a", obj, optax.sgd(0.1)), Player("a", obj, optax.sgd(0.1))])
    with pytest.raises(ConfigError, match="give every Player.group"):
        init_multi_state({"b": jnp.ones(2)}, [Player("a", obj, optax.sgd(0.1))])
    step = make_multi_step([Player("a", obj, optax.sgd(0.1), n_updates=2, split_batch=True)])
    state = init_multi_state({"a": jnp.ones(2)}, [Player("a", obj, optax.sgd(0.1))])
    with pytest.raises(ConfigError, match="divisible by 2"):
        step(state, jnp.ones((3, 2)), jax.random.key(0))


def test_adam_hyperparams_are_injected_and_match_optax():
    """egm.train.adam with injected numbers equals optax.adam (+ clip) update for update, and
    a member's learning rate can be changed in the state (what a sweep does).  rtol 2e-5:
    injected b2 = 0.999 is a float32 array (0.99900001), so the bias correction 1 - b2^t
    differs from optax's Python-float one by ~1.3e-5 relative, ~6.5e-6 after the sqrt."""
    g = {"w": jnp.array([[0.3, -2.0]]), "b": jnp.array([1.0])}
    p = {"w": jnp.zeros((1, 2)), "b": jnp.zeros(1)}
    ours, ref = (
        train.adam(1e-2, grad_clip=1.0),
        optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
    )
    so, sr = ours.init(p), ref.init(p)
    for _ in range(3):
        uo, so = ours.update(g, so, p)
        ur, sr = ref.update(g, sr, p)
        for k in p:
            np.testing.assert_allclose(uo[k], ur[k], rtol=2e-5)
    s2 = train.set_hyperparams(ours.init(p), learning_rate=2e-2)
    u2, _ = ours.update(g, s2, p)
    u1, _ = ours.update(g, ours.init(p), p)
    np.testing.assert_allclose(u2["w"], 2 * u1["w"], rtol=1e-6)
    with pytest.raises(ConfigError, match="b1"):
        train.adam(1e-3, b1=1.0)
