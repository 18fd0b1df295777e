"""GAN losses, players and the v(a, b) = ab game of §20.10.4 (egm.models.gan).

Tolerances: the loss references are float64 formulas of the same quantities, the losses
float32 softplus values of O(1) (relative rounding ~1e-7, so 1e-6 absolute); the game runs
100 float32 steps whose exact recurrences are known (below), so the float32 trajectory matches
to ~100 · 1e-7 relative: 1e-4 is allowed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm import train
from egm.errors import ConfigError, DataError
from egm.models import gan


def test_losses_are_the_value_function():
    lr, lf = jnp.array([2.0, -1.0, 0.5]), jnp.array([-3.0, 0.0, 1.5])
    d_r, d_f = (1 / (1 + np.exp(-np.asarray(v, np.float64))) for v in (lr, lf))
    v = np.mean(np.log(d_r)) + np.mean(np.log(1 - d_f))  # eq. 20.80 / Goodfellow eq. 1
    assert float(gan.discriminator_loss(lr, lf)) == pytest.approx(-v / 2, abs=1e-6)
    assert float(gan.generator_loss(lf, "minimax")) == pytest.approx(
        np.mean(np.log(1 - d_f)), abs=1e-6
    )
    assert float(gan.generator_loss(lf, "non_saturating")) == pytest.approx(
        -np.mean(np.log(d_f)), abs=1e-6
    )
    with pytest.raises(ConfigError, match="generator loss"):
        gan.generator_loss(lf, "wasserstein")


def test_generator_gradients_when_the_discriminator_rejects_the_samples():
    """At d(g(z)) = σ(l) → 0 (l = −12: d ≈ 6e-6) the minimax loss mean log(1 − σ(l)) has
    derivative −σ(l)/m per logit (→ 0: it saturates) and the non-saturating −mean log σ(l)
    has −(1 − σ(l))/m (→ −1/m), the paper's reason for the switch (Goodfellow et al. §3)."""
    m, lf = 4, jnp.full((4,), -12.0)
    d = 1 / (1 + math.exp(12.0))
    g_mm = jax.grad(lambda l: gan.generator_loss(l, "minimax"))(lf)
    g_ns = jax.grad(lambda l: gan.generator_loss(l, "non_saturating"))(lf)
    assert np.asarray(g_mm) * m == pytest.approx(np.full(m, -d), rel=1e-5)
    assert np.asarray(g_ns) * m == pytest.approx(np.full(m, -(1 - d)), rel=1e-6)
    assert abs(float(g_mm[0])) * m < 1e-5 and float(g_ns[0]) * m < -0.99999


def _ab_players(eta):
    """v(a, b) = a·b: player a minimises v, player b maximises it (minimises −v)."""

    def grad_of(name, sign):
        def objective(params, batch, key, chains, aux):
            other = params["b" if name == "a" else "a"]
            return train.ObjectiveOut(sign * other, chains, aux, {"v": params["a"] * params["b"]})

        return objective

    return [
        train.Player("a", grad_of("a", 1.0), train.sgd(eta)),
        train.Player("b", grad_of("b", -1.0), train.sgd(eta)),
    ]


def test_gradient_play_on_ab_does_not_converge():
    """The equilibrium of v(a, b) = ab is (0, 0).  Simultaneous gradient steps
    (a, b) ← (a − ηb, b + ηa) multiply the distance from it by exactly sqrt(1 + η²) per step
    (the update matrix is sqrt(1 + η²) times a rotation): it spirals out.  Alternating steps
    (egm's multi-player step: b sees the new a), a' = a − ηb, b' = b + ηa', conserve
    Q = a² + b² − ηab exactly (expand Q(a', b')), so the distance stays within
    [sqrt(Q/(1 + η/2)), sqrt(Q/(1 − η/2))]: it circles forever and never shrinks to 0."""
    eta, steps = 0.1, 100
    start = {"a": jnp.array(1.0), "b": jnp.array(0.5)}
    players = _ab_players(eta)

    def simultaneous(params, batch, key, chains, aux):  # one group holding both players
        g = {"a": params["b"], "b": -params["a"]}
        return train.ObjectiveOut(g, chains, aux, {})

    sim = jax.jit(train.make_step(simultaneous, train.sgd(eta)))
    alt = jax.jit(train.make_multi_step(players))
    s_sim, s_alt = train.init_state(start, train.sgd(eta)), train.init_multi_state(start, players)
    key = jax.random.key(0)
    r0 = math.hypot(1.0, 0.5)
    q0 = 1.0 + 0.25 - eta * 0.5
    radii = []
    for t in range(1, steps + 1):
        s_sim, _ = sim(s_sim, jnp.zeros(1), key)
        s_alt, _ = alt(s_alt, jnp.zeros(1), key)
        r_sim = math.hypot(float(s_sim.params["a"]), float(s_sim.params["b"]))
        assert r_sim == pytest.approx(r0 * (1 + eta**2) ** (t / 2), rel=1e-4)
        a, b = float(s_alt.params["a"]), float(s_alt.params["b"])
        assert a * a + b * b - eta * a * b == pytest.approx(q0, rel=1e-4)
        radii.append(math.hypot(a, b))
    assert min(radii) >= math.sqrt(q0 / (1 + eta / 2)) * (1 - 1e-4)
    assert max(radii) <= math.sqrt(q0 / (1 - eta / 2)) * (1 + 1e-4)
    assert r_sim > 1.6 * r0  # (1.01)^50 = 1.64: the simultaneous play has moved away


def _tiny_gan(k=2):
    g = gan.MLPGenerator(3, (8,), out_dim=6)
    d = gan.MaxoutDiscriminator((4,), pieces=2)
    key = jax.random.key(3)
    params = {"gen": gan.init_generator(key, g), "disc": gan.init_discriminator(key, d, 6)}
    return g, d, params


def test_each_player_of_the_ab_game_updates_only_its_own_group():
    """One player's step moves its own parameter by exactly -η · (its gradient) and leaves
    the other's bits untouched."""
    start = {"a": jnp.array(1.0), "b": jnp.array(0.5)}
    for player in _ab_players(0.1):
        step = train.make_multi_step([player])
        new, _ = step(train.init_multi_state(start, [player]), jnp.zeros(1), jax.random.key(0))
        other = "b" if player.group == "a" else "a"
        assert float(new.params[other]) == float(start[other])
        want = {"a": 1.0 - 0.1 * 0.5, "b": 0.5 + 0.1 * 1.0}[player.group]
        assert float(new.params[player.group]) == pytest.approx(want, rel=1e-6)


@pytest.mark.slow
def test_each_gan_player_updates_only_its_own_group():
    g, d, params = _tiny_gan()
    pd, pg = gan.gan_players(g, d, train.adam(1e-2), train.adam(1e-2), k=2)
    x = jax.random.uniform(jax.random.key(4), (8, 6))
    for only, other in ((pd, "gen"), (pg, "disc")):
        state = train.init_multi_state(params, [only])
        new, metrics = jax.jit(train.make_multi_step([only]))(state, x, jax.random.key(5))
        same = jax.tree_util.tree_map(np.array_equal, new.params[other], params[other])
        assert all(jax.tree_util.tree_leaves(same)), f"{other} moved on {only.group}'s turn"
        moved = jax.tree_util.tree_map(
            lambda a, b: float(jnp.max(jnp.abs(a - b))), new.params[only.group], params[only.group]
        )
        assert max(jax.tree_util.tree_leaves(moved)) > 1e-4
        assert f"{only.group}/loss" in metrics
    assert pd.n_updates == 2 and pd.split_batch and pg.n_updates == 1


def test_samples_and_initial_bias():
    g = gan.MLPGenerator(5, (7,), out_dim=4)
    mean = np.array([0.1, 0.5, 0.9, 0.0])
    p = gan.init_generator(jax.random.key(6), g, mean)
    m = np.clip(mean, 1e-3, 1 - 1e-3)
    assert np.asarray(p["output"]["bias"]) == pytest.approx(np.log(m / (1 - m)), rel=1e-5)
    x = gan.sample(jax.random.key(7), g, p, 10)
    assert x.shape == (10, 4) and bool(jnp.all((x >= 0) & (x <= 1)))
    u = gan.MLPGenerator(5, (7,), out_dim=4, latent="uniform").noise(jax.random.key(8), 100)
    assert bool(jnp.all(jnp.abs(u) <= 1))


def test_goodfellow_sgd_momentum_schedule():
    """μ rises linearly from 0.5 at epoch 1 to 0.7 at epoch 250 (steps_per_epoch = 2)."""
    opt, p = gan.goodfellow_sgd(0.1, 2), jnp.zeros(3)

    def body(s, _):
        _, s = opt.update(jnp.ones(3), s, p)
        return s, s.hyperparams["momentum"]

    _, mus = jax.lax.scan(body, opt.init(p), None, length=600)  # mus[c]: μ at update c
    for count in (0, 2, 251, 499, 599):
        mu = 0.5 + 0.2 * min(max((count / 2 - 1) / 249, 0.0), 1.0)
        assert float(mus[count]) == pytest.approx(mu, abs=1e-6), count
    with pytest.raises(ConfigError, match="momenta"):
        gan.goodfellow_sgd(0.1, 2, momentum=(0.5, 1.0))


def test_bad_input():
    g, d, _ = _tiny_gan()
    with pytest.raises(ConfigError, match="k"):
        gan.gan_players(g, d, train.adam(1e-3), train.adam(1e-3), k=0)
    with pytest.raises(ConfigError, match="generator loss"):
        gan.gan_players(g, d, train.adam(1e-3), train.adam(1e-3), loss="hinge")
    with pytest.raises(ConfigError, match="latent_dim"):
        gan.MLPGenerator(0, (8,)).check()
    with pytest.raises(ConfigError, match="input_keep"):
        gan.MaxoutDiscriminator(input_keep=0.0).check()
    with pytest.raises(DataError, match="pixel_mean"):
        gan.init_generator(jax.random.key(0), g, np.zeros(5))


def test_latent_fn_maps_a_normal_prior_onto_the_generators_noise():
    """``latent_fn`` turns ``u ~ N(0, I)`` into the generator's own noise, checked through an
    identity generator on the normal quantiles ``u = Φ⁻¹(q)``: ``z = u`` for a Gaussian
    latent and ``z = 2q - 1`` for a uniform one, to float32 erf accuracy (1e-6) — so
    ``U[-1, 1]`` exactly in distribution; ``then(then_params, g(z))`` is applied after."""
    from scipy import stats

    q = np.linspace(0.01, 0.99, 4)
    u = jnp.asarray(stats.norm.ppf(q), jnp.float32)
    p = {"output": {"kernel": jnp.eye(4), "bias": jnp.zeros(4)}}
    ident = lambda latent: gan.MLPGenerator(4, (), 4, output="linear", latent=latent)  # noqa: E731
    np.testing.assert_allclose(gan.latent_fn(ident("uniform"), p)(u), 2 * q - 1, atol=1e-6)
    np.testing.assert_allclose(gan.latent_fn(ident("gaussian"), p)(u), u, atol=1e-6)
    twice = gan.latent_fn(ident("gaussian"), p, lambda s, h: s * h, 2.0)
    np.testing.assert_allclose(twice(u), 2 * np.asarray(u), atol=1e-6)
