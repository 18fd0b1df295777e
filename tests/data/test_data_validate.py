"""Host-side input checks: what they reject and what their messages say."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from egm.data import check_binary, check_finite, check_shape, check_unit_interval
from egm.errors import DataError


def test_check_binary_accepts_binary_numpy_jax_and_bool() -> None:
    x = np.array([[0, 1, 1], [1, 0, 0]], np.float32)
    check_binary(x)
    check_binary(jnp.asarray(x))
    check_binary(x.astype(bool))
    check_binary(x.astype(np.int32))


def test_check_binary_rejects_grey_data() -> None:
    grey = np.linspace(0.0, 0.996, 100, dtype=np.float32).reshape(10, 10)
    grey[:, 0] = 0.0  # 10 of the 100 entries are binary: 90 % non-binary
    with pytest.raises(DataError) as info:
        check_binary(grey, name="train")
    msg = str(info.value)
    assert msg.startswith("train contains values other than 0 and 1 (min 0.0, max 0.996, 90%")
    assert "Bernoulli-Bernoulli RBM needs binary data" in msg
    assert "binarize_fixed" in msg and "binarize_threshold" in msg
    assert isinstance(info.value, ValueError)


def test_check_binary_rejects_nan_and_inf() -> None:
    x = np.zeros((3, 4), np.float32)
    x[0, 0], x[1, 1], x[2, 2] = np.nan, np.nan, np.inf
    with pytest.raises(DataError, match="data contains 2 NaN and 1 infinite values out of 12"):
        check_binary(x)


def test_check_binary_rejects_3d_input() -> None:
    with pytest.raises(
        DataError,
        match=r"data: expected shape \(N, D\), got \(N, 28, 28\); flatten with x\.reshape",
    ):
        check_binary(np.zeros((5, 28, 28), np.float32))


def test_check_shape_messages() -> None:
    check_shape(np.zeros((2, 784)), 784)
    with pytest.raises(DataError) as info:
        check_shape(np.zeros((5, 28, 28)), 784, name="x")
    assert str(info.value) == (
        "x: expected shape (N, 784), got (N, 28, 28); flatten with x.reshape(len(x), -1)"
    )
    with pytest.raises(DataError, match=r"got \(N, 500\): 500 features instead of 784"):
        check_shape(np.zeros((5, 500)), 784)
    with pytest.raises(DataError, match=r"got \(N,\); a single example needs a batch axis"):
        check_shape(np.zeros(784), 784)
    with pytest.raises(DataError, match="do not flatten"):
        check_shape(np.zeros((5, 10, 10)), 784)
    with pytest.raises(DataError, match="empty"):
        check_shape(np.zeros((0, 784)), 784)


def test_check_unit_interval() -> None:
    check_unit_interval(np.array([[0.0, 0.3, 1.0]]))
    with pytest.raises(DataError, match=r"outside \[0, 1\] \(min 0\.0, max 255\.0\).*x / 255"):
        check_unit_interval(np.array([[0.0, 255.0]]), name="images")
    with pytest.raises(DataError, match=r"min -0\.5"):
        check_unit_interval(np.array([[-0.5, 0.5]]))
    with pytest.raises(DataError, match="NaN"):
        check_unit_interval(np.array([[np.nan, 0.5]]))


def test_check_finite() -> None:
    check_finite(np.ones((2, 2)))
    check_finite(np.ones((2, 2), np.int64))
    with pytest.raises(DataError, match="0 NaN and 2 infinite"):
        check_finite(jnp.array([np.inf, -np.inf, 1.0]))
    with pytest.raises(DataError, match="dtype"):
        check_finite(np.array(["a", "b"]))
