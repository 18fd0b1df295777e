"""Convolutional generators, un-pooling and the DCGAN players (egm.models.dcgan).

Tolerances: the convolution references are float64 loops over the definition; the float32
results sum at most k²·C = 4·4·3 = 48 products of O(1) numbers (rounding ≲ 48 · 2^-24 · |y| ≈
3e-6 |y|, |y| ≲ 15 here), so 1e-4 absolute.  Un-pooling moves values without arithmetic:
exact.  The sweep test compares a vmapped step with separate steps of the same float32
program: XLA may order a batched reduction differently, so 1e-5 relative (a few float32
ulps of the O(1) statistics and the ~1e-4 Adam updates).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm import train
from egm.errors import ConfigError, DataError
from egm.models import dcgan


def test_unpool_is_the_explicit_construction():
    """§20.10.6: each value in the upper-left corner of a k×k block of zeros; max pooling
    (stride = width = k) of the result gives back x when x ≥ 0 (the book's conditions)."""
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)[None, :, :, None]
    want = np.array([[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(np.asarray(dcgan.unpool(x, 2))[0, :, :, 0], want)
    y = np.asarray(dcgan.unpool(jnp.arange(12.0).reshape(1, 2, 2, 3), 3))
    assert y.shape == (1, 6, 6, 3) and y.sum() == np.arange(12.0).sum()
    for i in range(2):
        for j in range(2):
            np.testing.assert_array_equal(
                y[0, 3 * i, 3 * j], np.arange(12.0).reshape(2, 2, 3)[i, j]
            )
    pooled = np.asarray(dcgan.unpool(x, 2)).reshape(1, 2, 2, 2, 2, 1).max(axis=(2, 4))
    np.testing.assert_array_equal(pooled, np.asarray(x))
    with pytest.raises(ConfigError, match="un-pooling width"):
        dcgan.unpool(x, 0)


def _conv_ref(x, w, s, p):
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
    k, ho, wo = w.shape[0], (x.shape[1] - w.shape[0]) // s + 1, (x.shape[2] - w.shape[0]) // s + 1
    y = np.zeros((x.shape[0], ho, wo, w.shape[-1]))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, s * i : s * i + k, s * j : s * j + k, :]
            y[:, i, j] = np.einsum("bacd,acde->be", patch, w)
    return y


def _conv_t_ref(x, w, s, p):
    b, h, wd, _ = x.shape
    k = w.shape[0]
    full = np.zeros((b, (h - 1) * s + k, (wd - 1) * s + k, w.shape[-1]))
    for i in range(h):
        for j in range(wd):
            full[:, s * i : s * i + k, s * j : s * j + k] += np.einsum(
                "bi,acio->baco", np.asarray(x[:, i, j], np.float64), np.asarray(w, np.float64)
            )
    return full[:, p : full.shape[1] - p, p : full.shape[2] - p]


@pytest.mark.parametrize("impl", ["matmul", "xla"])
def test_conv_and_transposed_conv_are_their_definitions(impl):
    """Both implementations against loops over the definitions (PyTorch's Conv2d and
    ConvTranspose2d conventions; 4/2/1 halves and doubles 7 <-> 14), and convT is conv's
    adjoint: <conv(u; W), v> = <u, convT(v; Wᵀ)> (Wᵀ: in/out channels swapped)."""
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    u, v = jax.random.normal(k1, (2, 14, 14, 3)), jax.random.normal(k2, (2, 7, 7, 2))
    w = jax.random.normal(k3, (4, 4, 3, 2))
    conv = jax.jit(dcgan.conv, static_argnums=(2, 3, 4))
    conv_t = jax.jit(dcgan.conv_transpose, static_argnums=(2, 3, 4))
    y = conv(u, w, 2, 1, impl)
    assert y.shape == (2, 7, 7, 2)
    np.testing.assert_allclose(np.asarray(y), _conv_ref(u, np.asarray(w), 2, 1), atol=1e-4)
    wt = jnp.swapaxes(w, 2, 3)
    yt = conv_t(v, wt, 2, 1, impl)
    assert yt.shape == (2, 14, 14, 3)
    np.testing.assert_allclose(np.asarray(yt), _conv_t_ref(np.asarray(v), np.asarray(wt), 2, 1),
                               atol=1e-4)  # fmt: skip
    assert float(jnp.sum(y * v)) == pytest.approx(float(jnp.sum(u * yt)), rel=1e-5)
    w5 = jax.random.normal(k4, (5, 5, 3, 2))  # the un-pooling generator's stride-1 conv
    np.testing.assert_allclose(np.asarray(conv(u, w5, 1, 2, impl)),
                               _conv_ref(u, np.asarray(w5), 1, 2), atol=1e-4)  # fmt: skip
    with pytest.raises(ConfigError, match="multiple of stride"):
        dcgan.conv_transpose(v, jax.random.normal(k4, (3, 3, 2, 1)), 2, 1, impl)


@pytest.mark.parametrize("upsample", ["transpose", "unpool"])
def test_generator_and_discriminator_shapes_and_bad_sizes(upsample):
    key = jax.random.key(1)
    size = 28
    g = dcgan.ConvGenerator(3, 2, size, upsample, conv_impl="xla")
    d = dcgan.ConvDiscriminator(2, size, conv_impl="xla")

    @jax.jit
    def run(key, g=g, d=d):
        params, stats = dcgan.init_dcgan(key, g, d)
        x = dcgan.sample(key, g, params["gen"], stats["gen"], 5)
        return x, dcgan.discriminator_logits(d, params["disc"], stats["disc"], x)

    x, logits = run(key)
    assert x.shape == (5, size * size) and bool(jnp.all((x >= 0) & (x <= 1)))
    assert logits.shape == (5,) and bool(jnp.all(jnp.isfinite(logits)))
    with pytest.raises(ConfigError, match="latent_dim"):
        dcgan.ConvGenerator(0, 2, 28, upsample).check()
    with pytest.raises(ConfigError, match="multiple of 4"):
        dcgan.ConvGenerator(3, 2, 30, upsample).check()
    with pytest.raises(ConfigError, match="multiple of 4"):
        dcgan.ConvDiscriminator(2, 30).check()
    with pytest.raises(ConfigError, match="features"):
        dcgan.ConvGenerator(3, 0, 28, upsample).check()
    with pytest.raises(ConfigError, match="image sizes differ"):
        dcgan.init_dcgan(key, dcgan.ConvGenerator(3, 2, 32), dcgan.ConvDiscriminator(2, 28))
    d28 = dcgan.ConvDiscriminator(2, 28)
    with pytest.raises(DataError, match="28x28"):
        jax.eval_shape(lambda: d28.init(key, jnp.zeros((2, 1024))))


# slow (13 s cold): the sweep == separate runs claim for every model is
# tests/train/test_train.py::test_sweep_of_n_equals_n_separate_runs (vmap and map), and
# test_smoke[dcgan_mnist] trains with the statistics in aux and samples from them
@pytest.mark.slow
def test_batch_stats_ride_in_aux_per_sweep_member():
    """One multi-player step moves the running statistics kept in ``aux`` (and nothing else
    holds them); eval mode treats examples independently (the first 2 samples of a batch of 4
    are the samples of those 2 draws of z alone), train mode does not (batch statistics);
    a vmapped sweep of two seeds equals two separate steps (each member its own statistics)."""
    g = dcgan.ConvGenerator(3, 2, 28, conv_impl="xla")
    d = dcgan.ConvDiscriminator(2, 28, conv_impl="xla")
    opt = train.adam(2e-4, 0.5, 0.999)
    players = dcgan.dcgan_players(g, d, opt, opt)
    step = train.make_multi_step(players)
    x = jax.random.uniform(jax.random.key(9), (4, 784))

    def member(seed):
        params, stats = dcgan.init_dcgan(jax.random.key(seed), g, d)
        return train.init_multi_state(params, players, aux=stats)

    s0, s1 = member(0), member(1)
    one = jax.jit(step)
    a0, m0 = one(s0, x, jax.random.key(10))
    a1, _ = one(s1, x, jax.random.key(11))
    for grp in ("gen", "disc"):
        moved = jax.tree_util.tree_map(lambda p, q: float(jnp.max(jnp.abs(p - q))), s0.aux[grp],
                                       a0.aux[grp])  # fmt: skip
        assert min(jax.tree_util.tree_leaves(moved)) > 0, grp
    assert {"disc/loss", "disc/d_real", "disc/d_fake", "gen/loss"} == set(m0)
    stacked = jax.tree_util.tree_map(lambda p, q: jnp.stack([p, q]), s0, s1)
    both, _ = jax.jit(jax.vmap(step))(stacked, jnp.stack([x, x]),
                                      jnp.stack([jax.random.key(10), jax.random.key(11)]))  # fmt: skip
    for j, sep in enumerate((a0, a1)):
        for p, q in zip(jax.tree_util.tree_leaves(sep), jax.tree_util.tree_leaves(both),
                        strict=True):  # fmt: skip
            np.testing.assert_allclose(np.asarray(q[j]), np.asarray(p), rtol=1e-5, atol=1e-7)
    z = g.noise(jax.random.key(3), 4)
    v = {"params": a0.params["gen"], "batch_stats": a0.aux["gen"]}
    np.testing.assert_allclose(np.asarray(g.apply(v, z)[:2]), np.asarray(g.apply(v, z[:2])),
                               atol=1e-6)  # fmt: skip
    t4 = g.apply(v, z, train=True, mutable=["batch_stats"])[0][:2]
    t2 = g.apply(v, z[:2], train=True, mutable=["batch_stats"])[0]
    assert float(jnp.max(jnp.abs(t4 - t2))) > 1e-4


def test_init_and_chunked_generate_match_flax():
    """`init_dcgan` draws every random leaf from one normal draw: the same pytree (names,
    shapes) as Flax's ``init``, kernels of standard deviation 0.02 (the 0.02 N(0, 1) draws of
    `_dcgan_normal`: the generator's 8·392 projection entries give a sample sd within
    0.02 · (1 ± 6/√(2·3136)) at 6 sd), BN scales 1 + 0.02 N(0, 1) (all within 1 ± 0.02·6),
    biases and running means 0, variances 1 (exact).  `generate` on concrete codes (chunks of
    128, zero-padded) equals one eval-mode ``apply`` on n = 130 codes (two chunks): the same
    float32 program per example, tolerance 1e-6 on values in [0, 1]."""
    g, d = dcgan.ConvGenerator(8, 4, 28), dcgan.ConvDiscriminator(4, 28)
    key = jax.random.key(5)
    params, stats = dcgan.init_dcgan(key, g, d)
    flax_g = jax.eval_shape(g.init, key, jnp.zeros((2, 8)))
    same = jax.tree_util.tree_map(lambda a, b: a.shape == b.shape, params["gen"], flax_g["params"])
    assert all(jax.tree_util.tree_leaves(same))
    assert jax.tree_util.tree_structure(stats["gen"]) == jax.tree_util.tree_structure(
        flax_g["batch_stats"]
    )
    sd = float(np.std(np.asarray(params["gen"]["project"]["kernel"])))
    assert abs(sd / 0.02 - 1) < 6 / np.sqrt(2 * 3136)
    scales = np.asarray(params["disc"]["bn1"]["scale"])
    assert np.all(np.abs(scales - 1) < 0.12) and np.std(scales) > 0
    assert float(np.abs(np.asarray(params["disc"]["down1"]["bias"])).max()) == 0.0
    assert np.all(np.asarray(stats["gen"]["bn0"]["var"]) == 1.0)
    z = g.noise(jax.random.key(6), 130)
    got = dcgan.generate(g, params["gen"], stats["gen"], z)
    want = jax.jit(lambda z: dcgan.generate(g, params["gen"], stats["gen"], z))(z)  # one apply
    assert got.shape == (130, 784)
    np.testing.assert_allclose(got, want, atol=1e-6)
