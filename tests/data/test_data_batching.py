"""Minibatch index arrays: shapes, permutation property, keys, jit, config errors."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from egm.data import check_batch_size, minibatch_indices
from egm.errors import ConfigError


def test_shape_and_permutation_subset() -> None:
    idx = np.asarray(minibatch_indices(jax.random.key(0), 103, 10))
    assert idx.shape == (10, 10) and idx.dtype == np.int32
    flat = idx.ravel()
    assert len(set(flat.tolist())) == 100  # distinct: a permutation with 3 left out
    assert flat.min() >= 0 and flat.max() < 103


def test_same_key_same_batches_and_jit() -> None:
    key = jax.random.key(42)
    a = minibatch_indices(key, 50, 7)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(minibatch_indices(key, 50, 7)))
    jitted = jax.jit(functools.partial(minibatch_indices, n=50, batch_size=7))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(jitted(key)))
    assert not np.array_equal(
        np.asarray(a), np.asarray(minibatch_indices(jax.random.key(43), 50, 7))
    )


def test_dropped_examples_are_random() -> None:
    """Each index is kept with probability (n // b) * b / n = 9/10 for n = 10, b = 3.

    Over K = 4000 independent keys the count of epochs keeping index i is
    Binomial(K, 0.9): mean 3600, sd sqrt(4000 * 0.9 * 0.1) = 19; we require every
    count within z = 5 sd of the mean (a fixed drop of the last index would give
    counts 4000 and 0).
    """
    keys = jax.random.split(jax.random.key(0), 4000)
    idx = np.asarray(jax.vmap(lambda k: minibatch_indices(k, 10, 3))(keys))
    counts = np.bincount(idx.reshape(len(keys), -1).ravel(), minlength=10)
    sd = np.sqrt(4000 * 0.9 * 0.1)
    assert np.all(np.abs(counts - 3600) < 5 * sd), counts


@pytest.mark.parametrize(
    ("n", "batch_size"), [(10, 11), (10, 0), (10, -2), (0, 1), (10, 2.0), (10, True)]
)
def test_bad_batch_sizes_raise(n, batch_size) -> None:
    with pytest.raises(ConfigError):
        check_batch_size(n, batch_size)
    with pytest.raises(ConfigError):
        minibatch_indices(jax.random.key(0), n, batch_size)


def test_batch_equal_to_n_is_one_batch() -> None:
    check_batch_size(5, 5)
    assert sorted(np.asarray(minibatch_indices(jax.random.key(1), 5, 5))[0].tolist()) == [
        0,
        1,
        2,
        3,
        4,
    ]
