"""Approximate Bayesian computation against exact ABC posteriors (egm.estimators.abc).

The conjugate models give the ABC posterior p_ε(θ | s_obs) by quadrature for every ε, so the
samplers are checked against the exact distribution they should draw from at that ε, not
only in the ε → 0 limit.  Tolerances:

- Kolmogorov–Smirnov: for n independent draws of a continuous F,
  P(sup |F_n − F| > c) ≤ 2 exp(−2 n c²) (Dvoretzky–Kiefer–Wolfowitz, Massart's constant);
  c = sqrt(ln(2/α) / (2n)) with α = 1e-6 fails a correct sampler once in a million runs.
  The quadrature CDF is accurate to ~1e-6 on an 8001-point grid, far below c.
- Weighted means (ABC-SMC): given the previous generation, the accepted proposals are
  independent draws of q(θ) P(accept | θ) / Z and the weights p(θ)/q(θ) make the weighted
  mean a self-normalised importance-sampling estimate of E_{p_ε}[θ], standard error
  sd_ε / sqrt(ESS); 5 standard errors (two-sided p ≈ 6e-7).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from egm.errors import ConfigError, DataError
from egm.estimators import abc


def _ks(samples: np.ndarray, grid: np.ndarray, density: np.ndarray) -> float:
    x = np.sort(np.asarray(samples, np.float64).ravel())
    cdf = np.cumsum(density)
    cdf = cdf / cdf[-1]
    f = np.interp(x, grid, cdf)
    n = x.size
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def _ks_bound(n: int, alpha: float = 1e-6) -> float:
    return float(np.sqrt(np.log(2 / alpha) / (2 * n)))


@pytest.fixture(scope="module")
def gauss():
    return abc.gaussian_mean_problem(jax.random.key(0), n_obs=11, sigma=1.0, prior_sd=2.0)


def test_abc_posterior_quadrature_is_exact_and_converges(gauss):
    """p_0 for a sufficient summary is the conjugate posterior N(μ_n, σ_n²) (to quadrature
    accuracy, 1e-4 relative on an 8001-point grid), and W1(p_ε, posterior) shrinks
    monotonically to 0 with ε; the median's limit p(θ | median) is broader than the posterior
    (the median discards information: its asymptotic variance is π/2 times the mean's)."""
    d0 = gauss.abc_posterior(0.0)
    assert np.max(np.abs(d0 - gauss.posterior)) < 1e-4 * np.max(gauss.posterior)
    w = []
    for eps in (2.0, 1.0, 0.5, 0.2, 0.1, 0.02):
        dens = gauss.abc_posterior(eps)
        m = (gauss.grid * dens).sum() / dens.sum()
        w.append(abc.wasserstein1(np.array([m]), gauss.grid, dens))  # spread about the mean
    assert all(a > b for a, b in zip(w, w[1:], strict=False))
    med = abc.gaussian_mean_problem(jax.random.key(0), n_obs=11, summary="median")
    sd_med = abc.grid_moments(med.grid, med.abc_posterior(0.0))[1]
    assert sd_med > abc.grid_moments(med.grid, med.posterior)[1]


@pytest.mark.parametrize("summary, eps", [("mean", 0.3), ("median", 0.2)])
def test_rejection_draws_the_abc_posterior(summary, eps):
    """The accepted θ of rejection ABC are independent draws of p_ε: KS against the quadrature
    CDF at the same ε, for the sufficient (mean) and the insufficient (median) summary."""
    cp = abc.gaussian_mean_problem(jax.random.key(1), n_obs=11, summary=summary)
    r = abc.rejection(jax.random.key(2), cp.problem, 100_000, eps)
    s = r.samples
    assert s.shape[0] > 5000 and 0 < r.acceptance_rate < 1
    assert _ks(s, cp.grid, cp.abc_posterior(eps)) < _ks_bound(s.shape[0])
    assert np.all(np.asarray(r.distance)[np.asarray(r.accepted)] <= eps)


def test_rejection_exact_matching_gives_the_exact_posterior():
    """A discrete sufficient summary matched exactly (ε = 0) gives the exact posterior
    Beta(a + k, b + n − k): KS against it."""
    bb = abc.beta_binomial_problem(jax.random.key(5), n_trials=20, a=2.0, b=2.0)
    r = abc.rejection(jax.random.key(6), bb.problem, 100_000, 0.0, allow_zero=True)
    s = r.samples
    assert s.shape[0] > 2000
    assert _ks(s, bb.grid, bb.posterior) < _ks_bound(s.shape[0])


def test_smc_generations_match_the_abc_posterior_with_fewer_simulations(gauss):
    """Every ABC-PMC generation's weighted mean is within 5 standard errors (sd_ε / sqrt(ESS))
    of p_ε's mean at its tolerance; weights are a distribution; the last generation at
    ε = 0.05 takes fewer simulations than rejection needs for as many acceptances (n /
    P(accept), P(accept) from the quadrature of the prior predictive)."""
    tol = [1.0, 0.3, 0.05]
    gens = abc.smc(jax.random.key(3), gauss.problem, tol, 1000, batch=2048)
    for g in gens:
        w = np.asarray(g.weights, np.float64)
        assert (
            np.all(w >= 0)
            and abs(w.sum() - 1) < 1e-5
            and np.all(np.asarray(g.distance) <= g.tolerance)
        )
        m, _ = abc.weighted_moments(np.asarray(g.theta), w)
        m_exact, sd_exact = abc.grid_moments(gauss.grid, gauss.abc_posterior(g.tolerance))
        assert abs(m - m_exact) < 5 * sd_exact / np.sqrt(g.ess)
    # rejection's expected cost at ε: P(|x̄ - s_obs| <= ε) under the prior predictive N(0, 4 + 1/11)
    from scipy import stats

    s_obs = float(np.mean(np.asarray(gauss.problem.observed)))
    sd = np.sqrt(4.0 + 1.0 / 11)
    p_acc = stats.norm.cdf((s_obs + 0.05) / sd) - stats.norm.cdf((s_obs - 0.05) / sd)
    assert gens[-1].simulations < 1000 / p_acc / 2


@pytest.mark.slow  # default coverage: test_smc_generations_match... and test_rejection_exact_matching...
def test_smc_respects_the_prior_support_and_exact_matching():
    """Perturbed proposals outside the prior's support (θ ∉ (0, 1)) are never kept, and a
    schedule ending at ε = 0 targets the exact Beta posterior (weighted mean within 5 SE)."""
    bb = abc.beta_binomial_problem(jax.random.key(7), n_trials=20, a=1.0, b=1.0, true_theta=0.05)
    gens = abc.smc(jax.random.key(8), bb.problem, [4.0, 1.0, 0.0], 500, batch=1024,
                   allow_zero=True)  # fmt: skip
    th = np.asarray(gens[-1].theta)
    assert np.all((th > 0) & (th < 1))
    m, _ = abc.weighted_moments(th, np.asarray(gens[-1].weights))
    m_exact, sd_exact = abc.grid_moments(bb.grid, bb.posterior)
    assert abs(m - m_exact) < 5 * sd_exact / np.sqrt(gens[-1].ess)


def test_bad_input(gauss):
    for eps in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="tolerance"):
            abc.rejection(jax.random.key(0), gauss.problem, 10, eps)
    with pytest.raises(ConfigError, match="non-increasing"):
        abc.smc(jax.random.key(0), gauss.problem, [0.1, 0.5])
    with pytest.raises(ConfigError, match="max_simulations"):
        abc.smc(jax.random.key(0), gauss.problem, [1e-6], 100, batch=64, max_simulations=128)
    bad = gauss.problem._replace(observed=np.full(11, np.nan, np.float32))
    with pytest.raises(DataError, match="not finite"):
        abc.rejection(jax.random.key(0), bad, 10, 0.1)
    with pytest.raises(ConfigError, match="odd"):
        abc.gaussian_mean_problem(jax.random.key(0), n_obs=10, summary="median")
