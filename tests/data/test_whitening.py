"""Whitening: exact covariances of ZCA / PCA / standardize on the fitted sample, symmetry,
inverses, the default eps, numpy/jax paths, save/load, and the errors.

Exactness: the data are float64, so every identity holds to float64 round-off of a
D <= 6 eigen-decomposition: ~1e-12 relative to the largest eigenvalue (the tolerances
below leave a factor of ~100 on top of it)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.data import (
    Whitening,
    fit_whitening,
    load_whitening,
    save_whitening,
    unwhiten,
    whiten,
)
from egm.errors import ConfigError, CorruptFileError, DataError

TOL = 1e-10


@pytest.fixture
def x() -> np.ndarray:
    """600 correlated 5-D examples with distinct variances and a non-zero mean."""
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(5, 5)) * np.array([3.0, 1.0, 0.5, 0.2, 0.05])
    return rng.normal(size=(600, 5)) @ mix.T + np.arange(5.0)


def _cov(a: np.ndarray) -> np.ndarray:
    c = a - a.mean(axis=0)
    return c.T @ c / len(a)


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.5])
def test_zca_covariance_is_exact(x: np.ndarray, eps: float) -> None:
    """cov(whiten(x)) = C (C + eps I)^{-1} on the fitted sample (the identity at eps = 0)."""
    w = fit_whitening(x, "zca", eps=eps)
    c = _cov(x)
    expected = np.linalg.solve(c + eps * np.eye(5), c)  # symmetric: C and (C + eps I) commute
    np.testing.assert_allclose(_cov(whiten(w, x)), expected, atol=TOL)
    assert w.eps == eps and w.forward.shape == w.inverse.shape == (5, 5)


def test_zca_is_symmetric_and_squares_to_the_inverse_covariance(x: np.ndarray) -> None:
    w = fit_whitening(x, "zca", eps=0.02)
    np.testing.assert_array_equal(w.forward, w.forward.T)
    np.testing.assert_array_equal(w.inverse, w.inverse.T)
    np.testing.assert_allclose(
        w.forward @ w.forward, np.linalg.inv(_cov(x) + 0.02 * np.eye(5)), rtol=TOL, atol=TOL
    )
    np.testing.assert_allclose(w.eigvals, np.sort(np.linalg.eigvalsh(_cov(x)))[::-1], rtol=TOL)


@pytest.mark.parametrize("kind", ["zca", "standardize", "pca"])
def test_round_trip_is_exact(x: np.ndarray, kind: str) -> None:
    w = fit_whitening(x, kind)
    np.testing.assert_allclose(unwhiten(w, whiten(w, x)), x, atol=TOL * 10)
    np.testing.assert_allclose(w.inverse @ w.forward, np.eye(5), atol=TOL)
    # float32 data stays float32, exact to float32 round-off
    x32 = x.astype(np.float32)
    z32 = whiten(w, x32)
    assert z32.dtype == np.float32
    np.testing.assert_allclose(unwhiten(w, z32), x32, rtol=0, atol=2e-5 * np.abs(x32).max())


def test_pca_keeps_components_and_projects(x: np.ndarray) -> None:
    w = fit_whitening(x, "pca", n_components=2, eps=0.1)
    assert w.forward.shape == (5, 2) and w.inverse.shape == (2, 5)
    z = whiten(w, x)
    assert z.shape == (600, 2)
    np.testing.assert_allclose(
        _cov(z), np.diag(w.eigvals[:2] / (w.eigvals[:2] + 0.1)), atol=TOL * w.eigvals[0]
    )
    np.testing.assert_allclose(w.inverse, np.linalg.pinv(w.forward), atol=TOL * 100)
    # reconstruction = orthogonal projection of x - mean on the top-2 right singular vectors
    c = x - x.mean(axis=0)
    v = np.linalg.svd(c, full_matrices=False)[2][:2]
    np.testing.assert_allclose(unwhiten(w, z), c @ v.T @ v + x.mean(axis=0), atol=TOL * 100)
    assert fit_whitening(x, "pca").forward.shape == (5, 5)


def test_standardize_floors_constant_features() -> None:
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(2.0, 3.0, 400), np.full(400, 7.0), rng.normal(0, 1e-3, 400)])
    w = fit_whitening(x, "standardize", eps=0.01)
    z = whiten(w, x)
    var = x.var(axis=0)
    np.testing.assert_allclose(w.eigvals, var, rtol=TOL)
    np.testing.assert_allclose(z.var(axis=0), [1.0, 0.0, var[2] / 0.01], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=TOL)
    np.testing.assert_allclose(unwhiten(w, z), x, atol=TOL * 10)


def test_default_eps_is_relative_and_scale_free(x: np.ndarray) -> None:
    for kind in ("zca", "pca", "standardize"):
        w = fit_whitening(x, kind)
        assert w.eps == pytest.approx(0.01 * np.trace(_cov(x)) / 5, rel=TOL)
        np.testing.assert_allclose(
            whiten(fit_whitening(10 * x, kind), 10 * x), whiten(w, x), atol=TOL * 10
        )


def test_jax_path_matches_numpy_under_jit(x: np.ndarray) -> None:
    w = fit_whitening(x.astype(np.float32), "zca")
    x32 = jnp.asarray(x, jnp.float32)
    z = jax.jit(lambda a: whiten(w, a))(x32)
    assert isinstance(z, jax.Array) and z.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(z), whiten(w, np.asarray(x32)), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda a: unwhiten(w, a))(z)), x32, atol=1e-4)


# ----------------------------------------------------------------------------- errors


def test_fit_errors(x: np.ndarray) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown whitening kind 'ica'.*'zca', 'pca', 'standardize'"
    ):
        fit_whitening(x, "ica")
    with pytest.raises(ConfigError, match=r'n_components only applies to kind="pca"'):
        fit_whitening(x, "zca", n_components=2)
    for k in (0, 6):
        with pytest.raises(ConfigError, match=r"n_components must be in 1..5"):
            fit_whitening(x, "pca", n_components=k)
    with pytest.raises(ConfigError, match=r"eps must be a finite number >= 0"):
        fit_whitening(x, eps=-1.0)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match=r"1 NaN"):
        fit_whitening(bad)
    with pytest.raises(DataError, match=r"expected shape \(N, D\)"):
        fit_whitening(x[0])
    with pytest.raises(DataError, match=r"at least 2 rows"):
        fit_whitening(x[:1])
    with pytest.raises(DataError, match=r"constant"):
        fit_whitening(np.ones((10, 3)))


def test_exact_whitening_of_a_rank_deficient_covariance(x: np.ndarray) -> None:
    """N = 3 < D = 5 centred examples span 2 dimensions: three zero eigenvalues, which
    eps = 0 cannot invert."""
    with pytest.raises(DataError, match=r"3 of the 5 kept covariance eigenvalues are 0.*eps > 0"):
        fit_whitening(x[:3], "zca", eps=0.0)
    fit_whitening(x[:3], "pca", eps=0.0, n_components=2)  # the 2 non-zero ones are fine
    fit_whitening(x[:3], "zca")  # the default eps regularises them


def test_apply_errors(x: np.ndarray) -> None:
    w = fit_whitening(x, "pca", n_components=3)
    with pytest.raises(DataError, match=r"whiten: expected the last axis to hold the 5 features"):
        whiten(w, x[:, :4])
    with pytest.raises(
        DataError, match=r"unwhiten: expected the last axis to hold the 3 components"
    ):
        unwhiten(w, x)
    with pytest.raises(DataError, match=r"NaN"):
        whiten(w, np.full((2, 5), np.nan))


# --------------------------------------------------------------------------- save/load


@pytest.mark.parametrize(("kind", "k"), [("zca", None), ("pca", 2), ("standardize", None)])
def test_save_load_round_trip(tmp_path, x: np.ndarray, kind: str, k: int | None) -> None:
    w = fit_whitening(x, kind, n_components=k)
    path = tmp_path / "white.bin"  # the exact path, no .npz suffix added
    save_whitening(path, w)
    assert path.is_file()
    got = load_whitening(path)
    assert isinstance(got, Whitening) and got.kind == kind and got.eps == w.eps
    for a, b in zip(got[1:5], w[1:5], strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_rejects_other_files(tmp_path, x: np.ndarray) -> None:
    w = fit_whitening(x)
    good = tmp_path / "w.npz"
    save_whitening(good, w)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "notes.txt"
    text.write_text("not a whitening")
    other = tmp_path / "other.npz"
    np.savez(other, mean=w.mean, forward=w.forward)
    for path in (truncated, text, other):
        with pytest.raises(CorruptFileError, match=r"not a whitening file"):
            load_whitening(path)
    bad_shape = tmp_path / "bad_shape.npz"
    save_whitening(bad_shape, w._replace(inverse=w.inverse[:3]))
    with pytest.raises(CorruptFileError, match=r"inconsistent whitening file"):
        load_whitening(bad_shape)
    assert issubclass(CorruptFileError, DataError)
    with pytest.raises(FileNotFoundError):
        load_whitening(tmp_path / "missing.npz")
