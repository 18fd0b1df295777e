"""Binarization protocols: determinism, exact Bernoulli means, jit, descriptions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.data import (
    BINARIZATIONS,
    binarize_dynamic,
    binarize_fixed,
    binarize_threshold,
    describe_protocol,
    load_mnist,
)
from egm.errors import ConfigError, DataError

Z = 5.0


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    """4000 x 784 MNIST grey images (the embedded subset: always available, fast)."""
    return load_mnist("train", source="embedded").x


def _mean_tolerance(size: int) -> float:
    """z * sd bound of the mean of ``size`` independent Bernoullis (see the tests)."""
    return Z * 0.5 / np.sqrt(size)


def _check_independent_draws(a, b, p) -> None:
    """Two independent draws of Bernoulli(p) disagree on a pixel with probability
    2 p (1 - p), independently across the M pixels, so the disagreement rate d has
    mean mean(2 p (1 - p)) and sd <= 0.5 / sqrt(M); require it within 5 sd. (Equal
    draws, i.e. a seed or key that is ignored, give d = 0, far outside for MNIST.)"""
    a, b, p = np.asarray(a), np.asarray(b), np.asarray(p, np.float64)
    expected = np.mean(2 * p * (1 - p))
    assert abs(np.mean(a != b) - expected) < _mean_tolerance(p.size)
    assert expected > 10 * _mean_tolerance(p.size)  # the test has power


def test_fixed_is_deterministic_and_seed_dependent(grey: np.ndarray) -> None:
    a = binarize_fixed(grey, seed=0)
    assert a.dtype == np.float32 and a.shape == grey.shape
    assert set(np.unique(a)) == {0.0, 1.0}
    np.testing.assert_array_equal(a, binarize_fixed(grey, seed=0))
    _check_independent_draws(a, binarize_fixed(grey, seed=1), grey)


def test_fixed_is_pinned_across_machines() -> None:
    """The draw of PCG64(seed=0) float32 uniforms is part of the protocol: if numpy ever
    changes the stream, fixed-binarized results stop being comparable, and this fails."""
    b = binarize_fixed(np.full((4, 8), 0.5, np.float32), seed=0)
    assert np.packbits(b.astype(np.uint8)).tolist() == [31, 128, 9, 145]


def test_fixed_mean_matches_grey_mean(grey: np.ndarray) -> None:
    """CLT bound on the mean of the binarized data.

    With b_i ~ Bernoulli(x_i) independent over the M = N * D pixels, the mean
    m = (1/M) sum_i b_i has E[m] = (1/M) sum_i x_i = mean(x) exactly and
    Var[m] = (1/M^2) sum_i x_i (1 - x_i) <= 1 / (4 M), so sd(m) <= 0.5 / sqrt(M).
    We require |m - mean(x)| < 5 * 0.5 / sqrt(M) (z = 5: a correct implementation
    fails with probability < 6e-7; for M = 3.1e6 the tolerance is 1.4e-3).
    Also exactly: pixels with x = 0 stay 0 and pixels with x = 1 stay 1.
    """
    for seed in (0, 1):
        b = binarize_fixed(grey, seed=seed)
        assert abs(b.mean(dtype=np.float64) - grey.mean(dtype=np.float64)) < _mean_tolerance(
            grey.size
        )
        assert np.all(b[grey == 0.0] == 0.0) and np.all(b[grey == 1.0] == 1.0)


def test_fixed_rejects_grey_out_of_range_and_bad_seed(grey: np.ndarray) -> None:
    with pytest.raises(DataError, match="outside"):
        binarize_fixed(grey * 255, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        binarize_fixed(grey[:2], seed=-1)


def test_dynamic_is_jittable_and_key_dependent(grey: np.ndarray) -> None:
    """Same key -> same draw (jit == no jit); another key -> another draw; the mean
    obeys the same CLT bound as the fixed protocol (derivation above)."""
    x = jnp.asarray(grey[:1000])
    key = jax.random.key(0)
    eager = binarize_dynamic(key, x)
    jitted = jax.jit(binarize_dynamic)(key, x)
    assert eager.dtype == jnp.float32 and eager.shape == x.shape
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))
    _check_independent_draws(eager, binarize_dynamic(jax.random.key(1), x), x)
    assert set(np.unique(np.asarray(eager))) == {0.0, 1.0}
    assert abs(float(eager.mean()) - float(x.mean())) < _mean_tolerance(x.size)


def test_threshold() -> None:
    x = np.array([[0.0, 0.5, 0.51, 1.0]], np.float32)
    out = binarize_threshold(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert binarize_threshold(x, threshold=0.25).tolist() == [[0.0, 1.0, 1.0, 1.0]]
    jax_out = jax.jit(binarize_threshold)(jnp.asarray(x))
    assert isinstance(jax_out, jax.Array)
    np.testing.assert_array_equal(np.asarray(jax_out), out)


def test_describe_protocol() -> None:
    assert describe_protocol("fixed", seed=0) == (
        "fixed binarization: one Bernoulli(p=grey) draw per pixel, numpy PCG64 seed 0"
    )
    assert "seed 3" in describe_protocol("dynamic", seed=3)
    assert "0.5" in describe_protocol("threshold")
    for name in BINARIZATIONS:
        assert name in describe_protocol(name, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        describe_protocol("fixed")
    with pytest.raises(ConfigError, match="unknown binarization"):
        describe_protocol("stochastic")
