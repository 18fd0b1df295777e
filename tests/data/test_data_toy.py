"""Toy data: bars and stripes enumeration, 2-D samplers against their exact densities."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.data import (
    bars_and_stripes,
    log_density_checkerboard,
    log_density_gaussian_mixture,
    log_density_rings,
    sample_checkerboard,
    sample_gaussian_mixture,
    sample_rings,
)
from egm.errors import ConfigError

Z = 5.0
N_SAMPLES = 20_000


def _is_bar_or_stripe(p: np.ndarray) -> bool:
    rows_constant = bool(np.all(p == p[:, :1]))  # every row all-on or all-off: stripes
    cols_constant = bool(np.all(p == p[:1, :]))  # every column constant: bars
    return rows_constant or cols_constant


def test_bars_and_stripes_3x3_is_exactly_the_14_patterns() -> None:
    """Enumerate all 2^9 binary 3 x 3 images: exactly 14 are bars or stripes, and
    bars_and_stripes(3) returns each of them once."""
    bs = bars_and_stripes(3)
    assert bs.shape == (14, 9) and bs.dtype == np.float32
    got = {tuple(r) for r in bs.astype(int).tolist()}
    assert len(got) == 14
    every = [np.array(b).reshape(3, 3) for b in itertools.product([0, 1], repeat=9)]
    valid = {tuple(p.ravel().tolist()) for p in every if _is_bar_or_stripe(p)}
    assert got == valid


@pytest.mark.parametrize("n", [1, 2, 4, 5])
def test_bars_and_stripes_counts(n: int) -> None:
    bs = bars_and_stripes(n)
    assert bs.shape == (2 ** (n + 1) - 2, n * n)
    assert len({tuple(r) for r in bs.tolist()}) == len(bs)
    assert all(_is_bar_or_stripe(r.reshape(n, n)) for r in bs)


def test_bars_and_stripes_rejects_bad_n() -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError):
            bars_and_stripes(bad)


def _binomial_ok(counts: np.ndarray, n: int, p: float) -> bool:
    """Every count within z = 5 sd of n p, sd = sqrt(n p (1 - p)) (binomial CLT)."""
    return bool(np.all(np.abs(counts - n * p) < Z * np.sqrt(n * p * (1 - p))))


def test_gaussian_mixture_sample_statistics() -> None:
    """CLT checks of sample_gaussian_mixture (K = 8, r = 2, s = 0.05, n = 20000).

    * Nearest-mean counts are Binomial(n, 1/K) (the components are 40 s apart, so
      nearest mean = component): each within 5 sd.
    * Each coordinate has mean 0 and variance r^2 / 2 + s^2 (the means sit at angles
      2 pi k / K, so the average of cos^2 is 1/2); the sample mean has sd
      sqrt((r^2/2 + s^2) / n) = 0.01; require |mean| < 5 sd.
    * |x - mu|^2 / s^2 is chi-square with 2 degrees of freedom: mean 2, variance 4;
      its sample mean has sd 2 / sqrt(n); require it within 5 sd of 2.
    """
    k, r, s = 8, 2.0, 0.05
    x = np.asarray(sample_gaussian_mixture(jax.random.key(0), N_SAMPLES), np.float64)
    assert x.shape == (N_SAMPLES, 2)
    angles = 2 * np.pi * np.arange(k) / k
    means = r * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    sq = ((x[:, None, :] - means) ** 2).sum(-1)
    nearest = sq.argmin(1)
    assert _binomial_ok(np.bincount(nearest, minlength=k), N_SAMPLES, 1 / k)
    assert np.all(np.abs(x.mean(0)) < Z * np.sqrt((r**2 / 2 + s**2) / N_SAMPLES))
    chi2 = sq[np.arange(N_SAMPLES), nearest] / s**2
    assert abs(chi2.mean() - 2.0) < Z * 2.0 / np.sqrt(N_SAMPLES)


def test_samplers_jit_and_keys() -> None:
    """Same key -> same samples, jit == no jit, float32 (n, 2); another key differs."""
    key = jax.random.key(3)
    for sampler in (sample_gaussian_mixture, sample_rings, sample_checkerboard):
        eager = sampler(key, 64)
        jitted = jax.jit(functools.partial(sampler, n=64))(key)
        assert eager.shape == (64, 2) and eager.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), rtol=1e-6, atol=1e-6)
        assert not np.allclose(np.asarray(eager), np.asarray(sampler(jax.random.key(4), 64)))


def _grid_mass(log_density, half_width: float, h: float) -> float:
    """Riemann sum of exp(log_density) on a grid of step h over [-w, w]^2, in float64."""
    g = np.arange(-half_width + h / 2, half_width, h)
    xx, yy = np.meshgrid(g, g)
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1), jnp.float32)
    return float(np.exp(np.asarray(log_density(pts), np.float64)).sum() * h * h)


def test_mixture_and_ring_densities_integrate_to_one() -> None:
    """The densities are exact if they integrate to 1 (and the sampler checks above
    match them). The midpoint rule with step h = s/5 on a Gaussian of sd s has a
    relative error of order exp(-2 pi^2 s^2 / h^2) = exp(-493) (the error of the
    periodic/decaying trapezoid rule); the mass beyond [-3, 3]^2 is > 20 s from any
    mean, about exp(-200). What is left is float32 rounding of each density value
    (relative ~1e-6), so we require |mass - 1| < 1e-4."""
    for log_density in (log_density_gaussian_mixture, log_density_rings):
        assert abs(_grid_mass(log_density, 3.0, 0.01) - 1.0) < 1e-4


def test_mixture_density_matches_direct_formula() -> None:
    x = np.array([[2.0, 0.0], [0.0, 0.0], [1.4, 1.41], [-2.03, 0.01]])
    angles = 2 * np.pi * np.arange(8) / 8
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], -1)
    dens = np.exp(-((x[:, None] - means) ** 2).sum(-1) / (2 * 0.05**2)) / (2 * np.pi * 0.05**2)
    with np.errstate(divide="ignore"):
        want = np.log(dens.mean(1))
    got = np.asarray(log_density_gaussian_mixture(jnp.asarray(x, jnp.float32)), np.float64)
    finite = np.isfinite(want)  # the origin is 40 sd from every mean: exp underflows
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5)
    assert got[1] < -300  # finite in log space thanks to logsumexp


def test_ring_density_matches_angle_quadrature() -> None:
    """log_density_rings' Bessel closed form vs. averaging the Gaussian over the angle
    numerically (2000-point periodic trapezoid rule: exact to float64 rounding for
    this smooth periodic integrand)."""
    radii, s = (0.5, 1.0, 1.5, 2.0), 0.05
    x = np.array([[0.5, 0.0], [0.7, 0.7], [0.0, -1.52], [1.2, 1.3], [0.3, 0.1]])
    t = 2 * np.pi * np.arange(2000) / 2000
    dens = np.zeros(len(x))
    for r in radii:
        mu = r * np.stack([np.cos(t), np.sin(t)], -1)
        sq = ((x[:, None] - mu) ** 2).sum(-1)
        dens += np.exp(-sq / (2 * s**2)).mean(1) / (2 * np.pi * s**2) / len(radii)
    got = np.asarray(log_density_rings(jnp.asarray(x, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, np.log(dens), rtol=1e-4)


def test_rings_sample_statistics() -> None:
    """Nearest-ring counts are Binomial(n, 1/4) (rings 10 s apart); the angle is
    uniform, so each coordinate has mean 0 and sd at most 2 (the largest radius);
    require |mean| < 5 * 2 / sqrt(n)."""
    x = np.asarray(sample_rings(jax.random.key(1), N_SAMPLES), np.float64)
    rho = np.linalg.norm(x, axis=1)
    nearest = np.abs(rho[:, None] - np.array([0.5, 1.0, 1.5, 2.0])).argmin(1)
    assert _binomial_ok(np.bincount(nearest, minlength=4), N_SAMPLES, 0.25)
    assert np.all(np.abs(x.mean(0)) < Z * 2.0 / np.sqrt(N_SAMPLES))


def test_checkerboard_samples_and_density() -> None:
    """Every sample lies on a dark cell (finite log density), and the 8 dark cells
    are hit Binomial(n, 1/8) times each (within 5 sd)."""
    x = np.asarray(sample_checkerboard(jax.random.key(2), N_SAMPLES))
    assert np.all(np.isfinite(np.asarray(log_density_checkerboard(jnp.asarray(x)))))
    cells = np.floor(x).astype(int) + 2  # 0..3
    counts = np.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16)
    dark = [(i * 4 + j) for i in range(4) for j in range(4) if (i + j) % 2 == 0]
    assert counts.sum() == counts[dark].sum()
    assert _binomial_ok(counts[dark], N_SAMPLES, 1 / 8)
    # cells (0, 0) dark, (-2, -1) light, (2, 0) outside, (-1, -1) dark, (1, 1.99..) dark
    pts = jnp.array([[0.5, 0.5], [-1.5, -0.5], [2.5, 0.5], [-0.5, -0.5], [1.5, 1.9999]])
    np.testing.assert_allclose(
        np.asarray(log_density_checkerboard(pts)),
        [-np.log(8), -np.inf, -np.inf, -np.log(8), -np.log(8)],
    )


def test_ring_mode_coverage_counts_by_hand():
    """Hand-placed points on the ring of 8 (radius 2, sd 0.05): 40 at mode 0, 40 at mode 2
    (within 3 sd: 0.1 off the mean), 20 far from every mode.  High quality 80/100; a mode is
    covered with >= 0.008 x 100 = 0.8 of its samples: modes 0 and 2; the high-quality shares
    (1/2, 1/2, 0 x 6) are 1/2 - 1/8 = 3/8 off uniform at each of the two, TV = 3/4."""
    from egm.data import toy

    m0, m2 = np.array([2.0, 0.0]), np.array([0.0, 2.0])
    x = np.concatenate([np.tile(m0 + [0.1, 0.0], (40, 1)), np.tile(m2, (40, 1)),
                        np.zeros((20, 2))])  # fmt: skip
    got = toy.ring_mode_coverage(x)
    assert got == {"modes_covered": 2.0, "high_quality_fraction": 0.8, "mode_weight_tv": 0.75}
    with pytest.raises(ConfigError, match=r"\(n, 2\)"):
        toy.ring_mode_coverage(np.zeros((3, 3)))
