"""The Laplacian pyramid of LAPGAN (egm.models.lapgan).

Tolerance of the reconstruction: each level adds back ``h = I - u(d(I))`` computed in float32,
so ``u(d(I)) + (I - u(d(I)))`` equals ``I`` up to one rounding of a sum of two numbers of at
most |I| ≤ 1 per level: ≤ 2 levels · 2^-24 · 2 ≈ 2.4e-7; 1e-6 is allowed.  On dyadic grey
levels (multiples of 1/4, where every mean of 4 and every difference is exact in float32) the
reconstruction is bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm import data
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
