"""Denoising: MAP under a Gaussian free energy equals the Wiener estimate (analytic), the
PCA and pixel-space variants against their closed forms, a non-Gaussian prior against
a 1-D root solve, the Wiener formula, PSNR, and the errors.

Tolerances: map_denoise runs in float32 on O(1) values with D <= 5 (relative round-off
~1e-7 per operation, condition numbers below ~100 here), so 1e-4 absolute leaves a
margin of ~10x; the descent itself is converged to far below that (contraction factors
stated per test, raised to the number of steps)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from egm.data import fit_whitening
from egm.errors import ConfigError, DataError
from egm.eval import denoise
from egm.eval.denoise import map_denoise, psnr, wiener_denoise

ATOL = 1e-4


def gaussian_fe(params, z):
    """F(z) = ½||z||²: the standard normal prior the whitening maps the data to."""
    return 0.5 * jnp.sum(z**2)


def logcosh_fe(params, z):
    """F(z) = a Σ log cosh(z_i): a heavy-tailed (sparse) prior with 0 <= F'' <= a."""
    return params * jnp.sum(jnp.logaddexp(z, -z) - jnp.log(2.0))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(5, 5)) * np.array([0.3, 0.2, 0.1, 0.05, 0.03])
    x_train = rng.normal(size=(3000, 5)) @ mix.T + 0.5
    x_clean = rng.normal(size=(40, 5)) @ mix.T + 0.5
    y = x_clean + 0.1 * rng.normal(size=x_clean.shape)
    return x_train, x_clean, y


@pytest.mark.parametrize(("step_size", "n_steps"), [(None, 5), (0.4, 120)])
def test_map_with_gaussian_free_energy_is_wiener(data, step_size, n_steps) -> None:
    """ZCA with eps = 0 maps the training Gaussian N(m, Σ) to N(0, I); the MAP estimate
    under F = ½||z||² then solves (Σ^{-1} + I/σ²) x̂ = Σ^{-1} m + y/σ², i.e. the Wiener
    estimate m + Σ(Σ + σ²I)^{-1}(y - m). With η = 1 the preconditioned step is Newton's
    (exact in one step); with η = 0.4 the error contracts by 0.6 per step: 0.6^120 ~ 1e-27."""
    x_train, _, y = data
    w = fit_whitening(x_train, "zca", eps=0.0)
    got = map_denoise(gaussian_fe, None, y, 0.1, w, n_steps=n_steps, step_size=step_size)
    assert got.shape == y.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, wiener_denoise(x_train, y, 0.1), atol=ATOL)
    assert np.abs(got - y).max() > 100 * ATOL  # the prior moved the estimate


def test_map_under_pca_whitening(data) -> None:
    """PCA keeping K = 2 components: the prior constrains only the kept directions, so
    x̂ = m + [U_K diag(λ_K/(λ_K+σ²)) U_Kᵀ + (I - U_K U_Kᵀ)] (y - m), with the whitening's
    eps added to λ_K."""
    x_train, _, y = data
    w = fit_whitening(x_train, "pca", n_components=2, eps=1e-3)
    got = map_denoise(gaussian_fe, None, y, 0.1, w)
    c = x_train - x_train.mean(0)
    lam, u = np.linalg.eigh(c.T @ c / len(c))
    uk, lk = u[:, ::-1][:, :2], lam[::-1][:2] + 1e-3
    gain = (uk * (lk / (lk + 0.01))) @ uk.T + np.eye(5) - uk @ uk.T
    np.testing.assert_allclose(got, x_train.mean(0) + (y - x_train.mean(0)) @ gain, atol=ATOL)


def test_map_in_pixel_space() -> None:
    """No whitening, F(x) = ½||x||²/τ²: x̂ = y τ²/(τ² + σ²)."""
    y = np.linspace(-2, 2, 12).reshape(4, 3)
    got = map_denoise(lambda p, x: 0.5 * jnp.sum(x**2) / p**2, 0.5, y, 0.3, None)
    np.testing.assert_allclose(got, y * 0.25 / (0.25 + 0.09), atol=1e-6)


def test_map_with_a_non_gaussian_prior() -> None:
    """standardize (diagonal) whitening separates the problem per pixel:
    minimise a log cosh((x - m)/s) + (x - y)²/(2σ²), whose derivative is increasing, so
    bisection finds the root to float64 precision. F'' <= a = 1 in whitened units, so the
    step η = 1 majorises; the contraction factor is at most a/s² / (a/s² + 1/σ²) =
    1/(1 + s²/σ²) <= 0.7 here, and 0.7^300 ~ 1e-47."""
    rng = np.random.default_rng(1)
    x_train = rng.laplace(size=(500, 2)) * np.array([0.2, 0.1]) + 0.4
    w = fit_whitening(x_train, "standardize", eps=1e-6)
    sigma = 0.15
    y = rng.uniform(-0.2, 1.2, size=(30, 2))
    got = map_denoise(logcosh_fe, 1.0, y, sigma, w)
    m, s = w.mean, 1.0 / np.diag(w.forward)
    assert np.all(1 / (1 + s**2 / sigma**2) <= 0.7)

    def dE(x):  # derivative of the per-pixel objective
        return np.tanh((x - m) / s) / s + (x - y) / sigma**2

    lo, hi = y - 10.0, y + 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        neg = dE(mid) < 0
        lo, hi = np.where(neg, mid, lo), np.where(neg, hi, mid)
    np.testing.assert_allclose(got, 0.5 * (lo + hi), atol=ATOL)
    assert np.abs(got - y).max() > 0.05  # the prior shrinks towards the mean


def test_map_with_a_steep_prior_still_converges(data) -> None:
    """F = 50||z||² curves 100x more than the preconditioner assumes: plain steps of size 1
    would multiply the error by about -99 each time and overflow; the per-row step control
    rejects them, so the result is still the exact MAP estimate of this Gaussian prior,
    x̂ = m + (100 A Aᵀ + I/σ²)^{-1} (y - m) / σ² (closed form, A = forward)."""
    x_train, _, y = data
    w = fit_whitening(x_train, "zca", eps=0.0)
    sigma = 0.1
    got = map_denoise(lambda p, z: 50.0 * jnp.sum(z**2), None, y, sigma, w, n_steps=400)
    A, m = np.asarray(w.forward, np.float64), np.asarray(w.mean, np.float64)
    H = 100.0 * A @ A.T + np.eye(len(A)) / sigma**2
    want = m + np.linalg.solve(H, (np.asarray(y, np.float64) - m).T / sigma**2).T
    np.testing.assert_allclose(got, want, atol=ATOL)


def test_wiener_formula(data) -> None:
    x_train, x_clean, y = data
    m = x_train.mean(0)
    c = x_train - m
    sig = c.T @ c / len(c)
    expected = m + (y - m) @ np.linalg.solve(sig + 0.01 * np.eye(5), sig)
    got = wiener_denoise(x_train, y, 0.1)
    np.testing.assert_allclose(got, expected, atol=1e-6)  # float64 math, float32 output
    # the limits: no noise keeps y, overwhelming noise returns the mean
    np.testing.assert_allclose(wiener_denoise(x_train, y, 1e-6), y, atol=1e-5)
    np.testing.assert_allclose(
        wiener_denoise(x_train, y, 1e3), np.broadcast_to(m, y.shape), atol=1e-5
    )
    # the Bayes estimator beats the noisy input on data drawn from its own prior
    assert psnr(x_clean, got) > psnr(x_clean, y) + 1.0


def test_psnr_formula() -> None:
    x = np.zeros((3, 4))
    assert psnr(x, x + 0.1) == pytest.approx(20.0, abs=1e-9)  # 10 log10(1 / 0.01)
    assert psnr(x, x + 25.5, data_range=255.0) == pytest.approx(20.0, abs=1e-9)
    half = x.copy()
    half[0] = 0.2  # MSE = 0.04 / 3
    assert psnr(x, half) == pytest.approx(10 * np.log10(3 / 0.04), abs=1e-9)
    assert psnr(x, x) == float("inf")
    with pytest.raises(DataError, match=r"same, non-empty shape"):
        psnr(x, x[:2])
    with pytest.raises(ConfigError, match=r"data_range"):
        psnr(x, x, data_range=0.0)


def test_config_errors(data) -> None:
    x_train, _, y = data
    w = fit_whitening(x_train)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match=r"noise_std must be a finite number > 0"):
            map_denoise(gaussian_fe, None, y, bad, w)
        with pytest.raises(ConfigError, match=r"noise_std must be a finite number > 0"):
            wiener_denoise(x_train, y, bad)
    with pytest.raises(ConfigError, match=r"n_steps must be an integer >= 1"):
        map_denoise(gaussian_fe, None, y, 0.1, w, n_steps=0)
    with pytest.raises(ConfigError, match=r"step_size must be a finite number > 0"):
        map_denoise(gaussian_fe, None, y, 0.1, w, step_size=-0.1)
    with pytest.raises(DataError, match=r"expected shape \(N, 5\)"):
        map_denoise(gaussian_fe, None, y[:, :4], 0.1, w)
    with pytest.raises(DataError, match=r"expected shape \(N, 5\)"):
        wiener_denoise(x_train, y[:, :4], 0.1)
    assert denoise.map_denoise is map_denoise
