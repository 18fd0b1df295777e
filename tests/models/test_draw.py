"""DRAW (Gregor et al. 2015): attention filterbanks, read/write, both network variants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError
from egm.models import draw


def _raw(gx=0.0, gy=0.0, log_s2=0.0, log_d=0.0, log_g=0.0):
    return jnp.array([gx, gy, log_s2, log_d, log_g], jnp.float32)


def test_filterbank_rows_are_normalised():
    """Σ_a F_X[i, a] = 1 and Σ_b F_Y[j, b] = 1 for random windows (eq. 25's Z_X, Z_Y),
    including windows centred outside the canvas and very narrow/wide filters."""
    keys = jax.random.split(jax.random.key(0), 20)
    for k in keys:
        raw = jax.random.normal(k, (5,)) * jnp.array([1.5, 1.5, 3.0, 1.0, 1.0])
        att = draw.attention_window(raw, 5, 12, 17)
        fx, fy = draw.filterbank(att, 5, 12, 17)
        assert fx.shape == (5, 17) and fy.shape == (5, 12)
        np.testing.assert_allclose(np.asarray(fx.sum(1)), 1.0, atol=1e-5)
        np.testing.assert_allclose(np.asarray(fy.sum(1)), 1.0, atol=1e-5)
        assert np.all(np.asarray(fx) >= 0)


def test_window_parameterisation_matches_the_paper():
    """g̃ = 0 centres the grid, δ̃ = 1 spreads N filters over the whole image
    (δ = (max(A,B) - 1)/(N - 1)), and the filter centres are g + (i - N/2 - 0.5) δ."""
    att = draw.attention_window(_raw(log_g=np.log(2.0)), 4, 28, 28)
    assert float(att.gx) == pytest.approx(14.5) and float(att.gy) == pytest.approx(14.5)
    assert float(att.delta) == pytest.approx(9.0) and float(att.gamma) == pytest.approx(2.0)
    att = att._replace(sigma2=jnp.float32(1e-3))
    fx, _ = draw.filterbank(att, 4, 28, 28)
    # centres at 14.5 + (i - 2.5) * 9 for i = 1..4 -> 1, 10, 19, 28 (1-indexed pixels)
    np.testing.assert_array_equal(np.argmax(np.asarray(fx), 1) + 1, [1, 10, 19, 28])


@pytest.mark.parametrize("size", [28, 9])
def test_full_canvas_read_reproduces_the_image_and_write_inverts_it(size):
    """With N = A = B, g̃ = 0, δ̃ = 1 (stride 1 pixel) and σ² → 0 every filter is a unit
    impulse on its own pixel, so ``read(x) = γ x`` and ``write(read(x)) = x`` exactly (up
    to exp(-1/(2σ²)) = e^-50 leakage between neighbours)."""
    x = jax.random.uniform(jax.random.key(1), (size, size))
    att = draw.attention_window(_raw(log_s2=np.log(0.01), log_g=np.log(1.5)), size, size, size)
    glimpse = draw.read_attention(x, att, size)
    np.testing.assert_allclose(np.asarray(glimpse), 1.5 * np.asarray(x), atol=1e-5)
    back = draw.write_attention(glimpse, att, size, size)
    np.testing.assert_allclose(np.asarray(back), np.asarray(x), atol=1e-5)


@pytest.mark.slow  # 10 s cold; the loss, sampler and filterbank tests build the same modules
def test_read_write_shapes_and_module_paths():
    """Module read: 2N² numbers with attention, 2D without; write: D numbers."""
    for attention, r_len in ((True, 2 * 3 * 3), (False, 2 * 20 * 16)):
        m = draw.DRAW(
            height=20, width=16, n_steps=3, enc_size=8, dec_size=8, latent_dim=2,
            attention=attention, read_n=3, write_n=4,
        )  # fmt: skip
        p = draw.init_params(jax.random.key(0), m)
        x = jnp.zeros(320)
        h = jnp.ones(8)
        r = m.apply(p, x, x, h, method=draw.DRAW.read)
        w = m.apply(p, h, method=draw.DRAW.write)
        assert r.shape == (r_len,) and w.shape == (320,)
    att = draw.attention_window(_raw(), 4, 20, 16)
    patch = draw.read_attention(jnp.ones((20, 16)), att, 4)
    assert patch.shape == (4, 4)
    assert draw.write_attention(patch, att, 20, 16).shape == (20, 16)


@pytest.mark.parametrize(
    "attention", [pytest.param(True, marks=pytest.mark.slow), False]
)  # the attention path also runs in tests/test_experiment_vae.py (tiny DRAW training)
def test_draw_loss_is_negative_elbo_and_differentiable(attention):
    """loss = L^x + Σ_t KL_t with every KL_t >= 0; gradients finite; same key same value;
    jit == no-jit; generation returns T canvases in (0, 1)."""
    m = draw.DRAW(
        height=10, width=12, n_steps=3, enc_size=8, dec_size=8, latent_dim=3,
        attention=attention, read_n=2, write_n=3,
    )  # fmt: skip
    p = draw.init_params(jax.random.key(0), m)
    x = (jax.random.uniform(jax.random.key(1), (2, 120)) > 0.6).astype(jnp.float32)
    out = draw.draw_forward(jax.random.key(2), m, p, x[0], return_canvases=True)
    assert float(out.loss) == pytest.approx(float(out.loss_x + out.kl.sum()), rel=1e-6)
    assert np.all(np.asarray(out.kl) >= 0) and out.canvases.shape == (3, 120)
    loss = draw.make_loss(m)
    vg = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (v, metrics), g = vg(p, x, jax.random.key(3))
    assert all(np.all(np.isfinite(np.asarray(t))) for t in jax.tree_util.tree_leaves(g))
    assert float(loss(p, x, jax.random.key(3))[0]) == pytest.approx(float(v), rel=1e-5)
    assert float(vg(p, x, jax.random.key(3))[0][0]) == float(v)
    assert float(metrics["loss_x"] + metrics["loss_z"]) == pytest.approx(float(v), rel=1e-5)
    samples = draw.generate(jax.random.key(4), m, p, 3)
    assert samples.shape == (3, 3, 120)
    assert np.all((np.asarray(samples) > 0) & (np.asarray(samples) < 1))
    per = draw.nll_bound(jax.random.key(5), m, p, x, batch_size=1)
    assert per.shape == (2,) and np.all(np.asarray(per) > 0)


@pytest.mark.slow
def test_a_few_adam_steps_lower_the_draw_loss():
    """Training signal flows through read, both LSTMs, the latent and write: after 60 Adam
    steps on a fixed batch, the loss evaluated with the same 32 keys (same noise draws,
    paired) has dropped.  The paired differences d_j are iid over keys, so the drop is
    significant if mean(d) > 5 sd(d)/√32 (CLT, z = 5)."""
    import optax

    m = draw.DRAW(height=8, width=8, n_steps=2, enc_size=8, dec_size=8, latent_dim=3)
    p0 = draw.init_params(jax.random.key(0), m)
    x = (jax.random.uniform(jax.random.key(1), (16, 64)) > 0.7).astype(jnp.float32)
    loss = draw.make_loss(m)
    opt = optax.adam(1e-2)

    @jax.jit
    def step(p, s, k):
        (v, _), g = jax.value_and_grad(loss, has_aux=True)(p, x, k)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    p, s = p0, opt.init(p0)
    for i in range(60):
        p, s = step(p, s, jax.random.key(100 + i))
    keys = jax.random.split(jax.random.key(7), 32)
    ev = jax.jit(jax.vmap(lambda pp, k: loss(pp, x, k)[0], in_axes=(None, 0)))
    d = np.asarray(ev(p0, keys) - ev(p, keys), np.float64)
    assert d.mean() > 5 * d.std(ddof=1) / np.sqrt(len(d)), d


def test_bad_draw_config():
    with pytest.raises(ConfigError, match="read_n"):
        draw.init_params(jax.random.key(0), draw.DRAW(read_n=1))
    with pytest.raises(ConfigError, match="n_steps"):
        draw.init_params(jax.random.key(0), draw.DRAW(n_steps=0))


def test_ancestral_samples_follow_the_exact_marginal():
    """``draw.sample`` on a 2x2 DRAW (T = 2 steps of one latent, no attention, enlarged
    weights so that p(x) is far from uniform): the histogram of M = 20000 samples over the
    16 images is within TV of the exact ``p(x) = E_z Π_d Bern(x_d; σ(c_T(z))_d)``, computed by
    a Riemann sum of ``N(z; 0, I) p(x|z)`` on ``[-7, 7]²`` (outside it the prior mass is
    below e^{-24}).  Tolerance: the E[TV] + McDiarmid bound of tests/_stats.py at δ = 1e-6
    (≈ 0.03 here), plus the quadrature error, bounded by the distance between the sums of
    spacing 0.2 and 0.1 (asserted below 1e-5; measured 4.6e-6, and 1.7e-9 between 0.1 and
    0.05)."""
    from _stats import histogram, tv, tv_tolerance

    from egm.estimators import exact

    m = draw.DRAW(height=2, width=2, n_steps=2, enc_size=3, dec_size=3, latent_dim=1,
                  attention=False)  # fmt: skip
    p = jax.tree_util.tree_map(lambda a: 2.0 * a, draw.init_params(jax.random.key(0), m))
    states = np.asarray(exact.all_binary_states(4))
    decode = jax.jit(jax.vmap(lambda zz: draw.decode(m, p, zz)))

    def p_exact(h):
        g = np.arange(-7.0, 7.0 + h / 2, h)
        z = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        w = np.exp(-0.5 * np.sum(z**2, 1)) / (2 * np.pi) * h * h
        mean = np.asarray(decode(jnp.asarray(z[:, :, None], jnp.float32)), np.float64)
        return np.prod(np.where(states[:, None] == 1, mean, 1 - mean), -1) @ w

    probs = p_exact(0.1)
    assert np.abs(probs - p_exact(0.2)).max() < 1e-5 and probs.sum() == pytest.approx(1.0, abs=1e-6)
    assert probs.max() > 2.0 / 16  # far from uniform: the test can tell models apart
    x = draw.sample(jax.random.key(1), m, p, 20000)
    assert x.shape == (20000, 4) and set(np.unique(np.asarray(x))) <= {0.0, 1.0}
    hist = histogram(np.asarray(exact.state_index(x)), 16)
    assert tv(hist, probs) < tv_tolerance(probs, 20000) + 1e-5
    # the sampler's mean image is the last canvas of generate (same generator, other draws)
    last = np.asarray(draw.generate(jax.random.key(2), m, p, 4))[:, -1]
    z = jax.random.normal(jax.random.key(2), (4, 2, 1))
    np.testing.assert_allclose(last, jax.vmap(lambda zz: draw.decode(m, p, zz))(z), rtol=1e-5)
