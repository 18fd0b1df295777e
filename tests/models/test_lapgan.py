"""The Laplacian pyramid of LAPGAN (egm.models.lapgan).

Tolerance of the reconstruction: each level adds back ``h = I - u(d(I))`` computed in float32,
so ``u(d(I)) + (I - u(d(I)))`` equals ``I`` up to one rounding of a sum of two numbers of at
most |I| ≤ 1 per level: ≤ 2 levels · 2^-24 · 2 ≈ 2.4e-7; 1e-6 is allowed.  On dyadic grey
levels (multiples of 1/4, where every mean of 4 and every difference is exact in float32) the
reconstruction is bit for bit.

The generative pyramid is checked on 8 x 8 images (8 -> 4 -> 2), small enough to compile in
about a second: with its residual generators zeroed, a coarse-to-fine sample is the
up-sampled coarse sample bit for bit (tanh(0) = 0 and adding 0 and clipping a value already
in [0, 1] are exact); each level's training pairs rebuild its image to the tolerance above;
one multi-player step changes every group and a step of one level's players changes only
that level's groups, bit for bit, and a level's update is bit-identical whatever the other
levels' parameters (the levels train independently).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm import data, train
from egm.errors import ConfigError, DataError
from egm.models import lapgan


def test_pyramid_shapes_and_exact_reconstruction():
    x = jnp.asarray(data.load_mnist("test", source="embedded").x[:16]).reshape(16, 28, 28)
    pyramid = jax.jit(lambda x: lapgan.laplacian_pyramid(x, 2))
    coarse, res = pyramid(x)
    assert coarse.shape == (16, 7, 7) and [h.shape for h in res] == [(16, 28, 28), (16, 14, 14)]
    np.testing.assert_allclose(
        np.asarray(jax.jit(lapgan.reconstruct)(coarse, res)), np.asarray(x), atol=1e-6
    )
    # the coarsest level is the 4x4 block mean, and each residual has zero block means
    want = np.asarray(x).reshape(16, 7, 4, 7, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(coarse), want, atol=1e-6)
    assert float(np.max(np.abs(np.asarray(res[0]).reshape(16, 14, 2, 14, 2).mean((2, 4))))) < 1e-6
    q = jnp.floor(jax.random.uniform(jax.random.key(0), (3, 28, 28)) * 4) / 4  # dyadic
    c, r = pyramid(q)
    np.testing.assert_array_equal(np.asarray(jax.jit(lapgan.reconstruct)(c, r)), np.asarray(q))
    c0, r0 = lapgan.laplacian_pyramid(q, 0)
    assert r0 == [] and c0 is not None and np.array_equal(np.asarray(c0), np.asarray(q))


def test_pyramid_bad_sizes():
    with pytest.raises(ConfigError, match="divisible by 8"):
        lapgan.laplacian_pyramid(jnp.zeros((1, 28, 28)), 3)
    with pytest.raises(ConfigError, match="levels"):
        lapgan.laplacian_pyramid(jnp.zeros((1, 28, 28)), -1)
    with pytest.raises(DataError, match="even"):
        lapgan.downsample(jnp.zeros((1, 7, 7)))


def _small() -> lapgan.LapGAN:
    return lapgan.LapGAN(8, 2, 3, (8,), (4,), 2, 1.0, 1.0).check()  # no dropout: 3 s less XLA


def test_zero_residual_generators_sample_the_upsampled_coarse_sample():
    m = _small()
    p = lapgan.init_lapgan(jax.random.key(0), m, jnp.full((4,), 0.3))
    zero = {f"gen{k}": jax.tree_util.tree_map(jnp.zeros_like, p[f"gen{k}"]) for k in (0, 1)}
    p0 = {**p, "gen0": {**p["gen0"], "output": zero["gen0"]["output"]},
          "gen1": {**p["gen1"], "output": zero["gen1"]["output"]}}  # fmt: skip
    seq = lapgan.coarse_to_fine(m, p0, jax.random.key(1), 5)
    assert [a.shape for a in seq] == [(5, 2, 2), (5, 4, 4), (5, 8, 8)]
    c = np.asarray(seq[0])
    assert 0 < c.min() and c.max() < 1 and c.std() > 0  # sigmoid outputs, not all equal
    np.testing.assert_array_equal(np.asarray(seq[1]), np.asarray(lapgan.upsample(seq[0])))
    np.testing.assert_array_equal(np.asarray(seq[2]), np.asarray(lapgan.upsample(seq[1])))
    x = lapgan.sample(jax.random.key(1), m, p0, 5)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(seq[2]).reshape(5, 64))
    # with the trained-from-init residual generators the sample differs, and stays in [0, 1]
    y = np.asarray(lapgan.coarse_to_fine(m, p, jax.random.key(1), 5)[2])
    assert not np.array_equal(y, np.asarray(seq[2])) and 0 <= y.min() and y.max() <= 1


def test_conditional_generator_shapes_pairs_and_bad_sizes():
    g = lapgan.ConditionalGenerator(3, (8,), 4).check()
    z, cond = g.noise(jax.random.key(0), 6), jnp.full((6, 16), 0.5)
    params = jax.jit(g.init)(jax.random.key(1), z, cond)["params"]
    h = jax.jit(g.apply)({"params": params}, z, cond)
    assert h.shape == (6, 16) and float(jnp.max(jnp.abs(h))) < 1
    with pytest.raises(DataError, match="16 values"):
        g.apply({"params": params}, z, jnp.zeros((6, 9)))
    x = jax.random.uniform(jax.random.key(2), (3, 64))
    (h0, l0), (h1, l1), (c, none) = jax.jit(lapgan.pyramid_pairs, static_argnums=0)(_small(), x)
    assert none is None and [a.shape for a in (h0, l0, h1, l1, c)] == [(3, 64)] * 2 + [
        (3, 16)] * 2 + [(3, 4)]  # fmt: skip
    np.testing.assert_allclose(np.asarray(h0 + l0), np.asarray(x), atol=1e-6)
    with pytest.raises(ConfigError, match="divisible by 8"):
        lapgan.LapGAN(28, 3).check()
    with pytest.raises(ConfigError, match="latent_dim"):
        lapgan.LapGAN(28, 2, latent_dim=0).check()
    with pytest.raises(ConfigError, match="widths"):
        lapgan.LapGAN(28, 2, gen_hidden=(0,)).check()
    with pytest.raises(DataError, match="coarsest level has 4"):
        lapgan.init_lapgan(jax.random.key(0), _small(), jnp.zeros(49))
    with pytest.raises(ConfigError, match="generator loss"):
        lapgan.lapgan_players(_small(), train.adam(1e-3), train.adam(1e-3), loss="wasserstein")


# slow (6 s cold): the multi-player step's "each player moves only its own group" is
# tests/models/test_gan.py's default test; this repeats it for LAPGAN's six players
@pytest.mark.slow
def test_each_level_updates_only_its_own_parameters():
    m = _small()
    p = lapgan.init_lapgan(jax.random.key(0), m, jnp.full((4,), 0.3))
    players = lapgan.lapgan_players(m, train.adam(1e-2), train.adam(1e-2))
    assert [q.group for q in players] == ["disc0", "gen0", "disc1", "gen1", "disc2", "gen2"]
    x, key = jax.random.uniform(jax.random.key(1), (16, 64)), jax.random.key(2)
    step = jax.jit(train.make_multi_step(players))
    init = jax.jit(lambda p: train.init_multi_state(p, players))
    leaves = lambda t: [np.asarray(a) for a in jax.tree_util.tree_leaves(t)]  # noqa: E731
    new = step(init(p), x, key)[0].params
    for g in p:  # every group moved
        assert not any(map(np.array_equal, leaves(p[g]), leaves(new[g])))
    for k in range(3):  # level k's update is the same whatever the other levels hold
        mine = (f"gen{k}", f"disc{k}")
        other = {g: (v if g in mine else jax.tree_util.tree_map(lambda a: a + 0.1, v))
                 for g, v in p.items()}  # fmt: skip
        moved = step(init(other), x, key)[0].params
        for g in mine:
            for a, b in zip(leaves(new[g]), leaves(moved[g]), strict=True):
                np.testing.assert_array_equal(a, b)
    mid = [q for q in players if q.group.endswith("1")]  # one level's players alone
    s_mid = jax.jit(lambda p: train.init_multi_state(p, mid))(p)
    only = jax.jit(train.make_multi_step(mid))(s_mid, x, key)[0].params
    for g in p:
        same = [np.array_equal(a, b) for a, b in zip(leaves(p[g]), leaves(only[g]), strict=True)]
        assert all(same) if not g.endswith("1") else not any(same), g
