r"""Approximate Bayesian computation (§20.13): posteriors from a simulator, without a likelihood.

A model is a prior :math:`p(θ)` and a simulator :math:`x \sim p(x \mid θ)` whose density we
cannot evaluate.  ABC compares a summary :math:`s(x)` of simulated data with the summary
:math:`s_{obs}` of the observed data and keeps the θ whose simulation came within a
tolerance ε: the kept θ are exact draws from the **ABC posterior**

.. math:: p_ε(θ \mid s_{obs}) ∝ p(θ)\, P\big(\lVert s(x) - s_{obs}\rVert ≤ ε \mid θ\big),

which tends to :math:`p(θ \mid s_{obs})` as ε → 0, and to the true posterior
:math:`p(θ \mid x_{obs})` when ``s`` is sufficient.  With an insufficient summary (a median
instead of a mean) the limit is the broader :math:`p(θ \mid s_{obs})`.

- :func:`rejection`: rejection ABC (Pritchard et al. 1999) — ``n`` prior draws, one
  simulation each, all in one vmapped call; the accepted ones are the sample.
- :func:`smc`: ABC population Monte Carlo (Beaumont, Cornuet, Marin & Robert 2009): a
  decreasing tolerance schedule; generation t resamples the previous weighted population,
  perturbs it with a Gaussian kernel of twice its weighted covariance, keeps proposals within
  ε_t (refilling in vmapped batches inside a ``lax.while_loop`` until ``n_particles`` are
  accepted), and weights them by :math:`p(θ) / \sum_j w_j K(θ \mid θ_j)`.  Each generation
  draws exactly from the ABC posterior at its ε_t in the limit of many particles, with far
  fewer simulations than rejection at small ε.

Models with an exact ABC posterior for tests and experiments: :func:`gaussian_mean_problem`
(the mean of Gaussian data under a Gaussian prior; summary the sample mean — sufficient — or
the sample median) and :func:`beta_binomial_problem` (a coin's bias; summary the count, where
ε = 0 is exact matching).  Their :meth:`ConjugateProblem.abc_posterior` gives
:math:`p_ε` on a grid by quadrature, in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from egm.errors import ConfigError, DataError

__all__ = [
    "ABCProblem",
    "ConjugateProblem",
    "Rejection",
    "SMCGeneration",
    "beta_binomial_problem",
    "check_tolerance",
    "gaussian_mean_problem",
    "grid_moments",
    "rejection",
    "simulate_distances",
    "smc",
    "tolerance_study",
    "wasserstein1",
    "wasserstein1_densities",
    "weighted_moments",
]


class ABCProblem(NamedTuple):
    """A simulator model: ``prior_sample(key, n) -> (n, d)``; ``prior_logpdf((n, d)) -> (n,)``
    (−inf outside the support); ``simulate(key, θ (d,)) -> x``; ``summary(x) -> (k,)``;
    ``observed``: the observed data ``x_obs`` (its summary is the target).  Distances are
    Euclidean between summaries."""

    prior_sample: Callable[[Array, int], Array]
    prior_logpdf: Callable[[Array], Array]
    simulate: Callable[[Array, Array], Array]
    summary: Callable[[Array], Array]
    observed: Array


def check_tolerance(tolerance: float | Sequence[float], *, allow_zero: bool = False) -> None:
    """:class:`ConfigError` unless every tolerance is a finite number > 0 (``allow_zero``: ≥ 0,
    for discrete summaries matched exactly)."""
    for eps in np.atleast_1d(np.asarray(tolerance, dtype=np.float64)):
        if not np.isfinite(eps) or eps < 0 or (eps == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(
                f"ABC tolerance must be a finite number {bound}, got {float(eps)!r}; it is the "
                "largest summary distance accepted (use e.g. 0.1, or a quantile of distances)"
            )


def _observed_summary(problem: ABCProblem) -> Array:
    s = jnp.atleast_1d(jnp.asarray(problem.summary(jnp.asarray(problem.observed)), jnp.float32))
    if not bool(jnp.all(jnp.isfinite(s))):
        raise DataError("the observed data's summary is not finite (NaN or inf in the data?)")
    return s


def _distances(problem: ABCProblem, key: Array, theta: Float[Array, "n d"], s_obs) -> Array:
    keys = jax.random.split(key, theta.shape[0])
    s = jax.vmap(lambda k, t: jnp.atleast_1d(problem.summary(problem.simulate(k, t))))(keys, theta)
    return jnp.linalg.norm(s - s_obs, axis=-1)


class Rejection(NamedTuple):
    """Rejection ABC: every proposal with its distance and whether it was accepted."""

    theta: Float[Array, "n d"]
    distance: Float[Array, " n"]
    accepted: Bool[Array, " n"]

    @property
    def samples(self) -> np.ndarray:
        """The accepted θ (host array, (n_accepted, d))."""
        return np.asarray(self.theta)[np.asarray(self.accepted)]

    @property
    def acceptance_rate(self) -> float:
        return float(np.mean(np.asarray(self.accepted)))


def simulate_distances(
    key: Array, problem: ABCProblem, n_proposals: int
) -> tuple[Float[Array, "n d"], Float[Array, " n"]]:
    """``n_proposals`` prior draws θ and the summary distance ``‖s(x) − s_obs‖`` of one
    simulation x ~ p(x | θ) each (one jitted, vmapped call)."""
    if n_proposals < 1:
        raise ConfigError(f"n_proposals must be >= 1, got {n_proposals}")
    s_obs = _observed_summary(problem)

    @jax.jit
    def go(key):
        k_prior, k_sim = jax.random.split(key)
        theta = problem.prior_sample(k_prior, n_proposals)
        return theta, _distances(problem, k_sim, theta, s_obs)

    return go(key)


def rejection(
    key: Array,
    problem: ABCProblem,
    n_proposals: int,
    tolerance: float,
    *,
    allow_zero: bool = False,
    simulated: tuple[Array, Array] | None = None,
) -> Rejection:
    """Rejection ABC: ``n_proposals`` draws θ ~ p(θ), one simulation each, accepted iff
    ``‖s(x) − s_obs‖ ≤ tolerance``; the accepted θ are independent exact draws of
    :math:`p_ε(θ \\mid s_{obs})`.  ``simulated``: the ``(θ, distance)`` of
    :func:`simulate_distances`, to threshold the same proposals at several tolerances
    (nested samples, one simulation budget)."""
    check_tolerance(tolerance, allow_zero=allow_zero)
    theta, d = simulate_distances(key, problem, n_proposals) if simulated is None else simulated
    return Rejection(theta, d, d <= tolerance)


class SMCGeneration(NamedTuple):
    """One ABC-PMC generation: the weighted population at ``tolerance``, the simulations it
    took, and its effective sample size :math:`1 / \\sum w^2`."""

    theta: Float[Array, "n d"]
    weights: Float[Array, " n"]
    distance: Float[Array, " n"]
    tolerance: float
    simulations: int
    ess: float


def _fill(key, propose, problem, s_obs, eps, n, batch, max_batches):
    """Propose in batches of ``batch`` until ``n`` proposals are within ``eps``; returns the
    accepted θ, their distances, the batches used and whether the buffer filled."""
    theta0 = propose(jax.random.key(0), 1)

    def body(c):
        buf, dist, count, b, key = c
        key, kp, ks = jax.random.split(key, 3)
        th = propose(kp, batch)
        finite = jnp.isfinite(problem.prior_logpdf(th))
        d = _distances(problem, ks, th, s_obs)
        ok = finite & (d <= eps)
        pos = jnp.where(ok, count + jnp.cumsum(ok) - 1, n)  # n: dropped
        buf = buf.at[pos].set(th, mode="drop")
        dist = dist.at[pos].set(d, mode="drop")
        return buf, dist, jnp.minimum(count + jnp.sum(ok), n), b + 1, key

    init = (jnp.zeros((n, theta0.shape[-1]), theta0.dtype), jnp.full((n,), jnp.inf), 0, 0, key)
    buf, dist, count, b, _ = jax.lax.while_loop(
        lambda c: (c[2] < n) & (c[3] < max_batches), body, init
    )
    return buf, dist, b, count >= n


def smc(
    key: Array,
    problem: ABCProblem,
    tolerances: Sequence[float],
    n_particles: int = 1000,
    *,
    batch: int = 4096,
    max_simulations: int = 50_000_000,
    allow_zero: bool = False,
) -> list[SMCGeneration]:
    """ABC population Monte Carlo (Beaumont et al. 2009) over a decreasing ``tolerances``
    schedule; one :class:`SMCGeneration` per tolerance.  Generation 0 is rejection ABC from the
    prior; generation t proposes θ* = θ_j + N(0, 2 Σ_{t−1}) with j drawn by weight (Σ the
    previous population's weighted covariance), keeps θ* with p(θ*) > 0 and distance ≤ ε_t,
    and weights :math:`w ∝ p(θ^*) / \\sum_j w_j\\, N(θ^*; θ_j, 2Σ)`.  A generation that needs
    more than ``max_simulations`` simulations raises :class:`ConfigError` (tolerance too small
    for the budget)."""
    tol = [float(t) for t in tolerances]
    check_tolerance(tol, allow_zero=allow_zero)
    if not tol or any(b > a for a, b in zip(tol, tol[1:], strict=False)):
        raise ConfigError(f"ABC-SMC tolerances must be a non-empty non-increasing list, got {tol}")
    if n_particles < 2 or batch < 1:
        raise ConfigError(f"need n_particles >= 2 and batch >= 1, got {n_particles}, {batch}")
    s_obs = _observed_summary(problem)
    max_batches = max(1, max_simulations // batch)

    def perturb(prev_theta, prev_logw, chol):
        def propose(k, m):
            k1, k2 = jax.random.split(k)
            j = jax.random.categorical(k1, prev_logw, shape=(m,))
            return prev_theta[j] + jax.random.normal(k2, (m, prev_theta.shape[1])) @ chol.T

        return propose

    @jax.jit
    def first(key, eps):
        buf, dist, b, full = _fill(key, problem.prior_sample, problem, s_obs, eps, n_particles,
                                   batch, max_batches)  # fmt: skip
        return buf, jnp.zeros(n_particles), dist, b, full  # prior proposals: equal weights

    @jax.jit
    def later(key, eps, prev_theta, prev_w):
        mean = jnp.sum(prev_w[:, None] * prev_theta, 0)
        cov = 2.0 * ((prev_w[:, None] * (prev_theta - mean)).T @ (prev_theta - mean))
        chol = jnp.linalg.cholesky(cov + 1e-12 * jnp.eye(cov.shape[0]))
        prev_logw = jnp.log(prev_w)
        buf, dist, b, full = _fill(key, perturb(prev_theta, prev_logw, chol), problem, s_obs,
                                   eps, n_particles, batch, max_batches)  # fmt: skip
        diff = jax.scipy.linalg.solve_triangular(
            chol, (buf[:, None, :] - prev_theta[None]).transpose(0, 2, 1), lower=True
        )  # (n, d, n_prev); the kernel's normaliser cancels in the weights
        log_q = jax.nn.logsumexp(prev_logw[None, :] - 0.5 * jnp.sum(diff**2, axis=1), axis=1)
        return buf, problem.prior_logpdf(buf) - log_q, dist, b, full

    out: list[SMCGeneration] = []
    theta = w = None
    for t, eps in enumerate(tol):
        key, k_fill = jax.random.split(key)
        e = jnp.float32(eps)
        buf, logw, dist, batches, full = first(k_fill, e) if t == 0 else later(k_fill, e, theta, w)
        sims = int(batches) * batch
        if not bool(full):
            raise ConfigError(
                f"ABC-SMC generation {t} (tolerance {eps:g}) accepted fewer than {n_particles} "
                f"proposals in {sims} simulations; raise max_simulations or use a larger tolerance"
            )
        theta, w = buf, jax.nn.softmax(logw)
        out.append(SMCGeneration(buf, w, dist, eps, sims, float(1.0 / jnp.sum(w**2))))
    return out


def wasserstein1(
    samples: np.ndarray, grid: np.ndarray, density: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """W1 distance between a (weighted) 1-D sample and a density tabulated on a uniform grid:
    :math:`\\int |F_n(θ) - F(θ)|\\, dθ` over the grid (float64)."""
    x = np.asarray(samples, np.float64).ravel()
    w = np.full(x.shape, 1.0 / x.size) if weights is None else np.asarray(weights, np.float64)
    order = np.argsort(x)
    cdf_n = np.concatenate([[0.0], np.cumsum(w[order] / w.sum())])
    f_n = cdf_n[np.searchsorted(x[order], grid, side="right")]
    dx = grid[1] - grid[0]
    cdf = np.cumsum(density) * dx
    cdf = cdf / cdf[-1]
    return float(np.sum(np.abs(f_n - cdf)) * dx)


def wasserstein1_densities(grid: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    r"""W1 distance between two densities tabulated on the same uniform grid:
    :math:`\int |F_p - F_q|\, dθ` (float64)."""
    fp, fq = np.cumsum(p), np.cumsum(q)
    return float(np.sum(np.abs(fp / fp[-1] - fq / fq[-1])) * (grid[1] - grid[0]))


class ConjugateProblem(NamedTuple):
    """A simulator model whose ABC posterior is known: ``problem`` (for :func:`rejection` /
    :func:`smc`), ``grid`` (a uniform θ grid covering the posterior), ``abc_posterior(ε)``:
    the density :math:`p_ε(θ \\mid s_{obs})` on ``grid`` (ε = 0: :math:`p(θ \\mid s_{obs})`),
    and ``posterior``: the exact :math:`p(θ \\mid x_{obs})` on ``grid``."""

    problem: ABCProblem
    grid: np.ndarray
    abc_posterior: Callable[[float], np.ndarray]
    posterior: np.ndarray
    name: str


def _normalise(p: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return p / (np.sum(p) * (grid[1] - grid[0]))


def gaussian_mean_problem(
    key: Array,
    n_obs: int = 10,
    sigma: float = 1.0,
    prior_mean: float = 0.0,
    prior_sd: float = 2.0,
    summary: str = "mean",
    true_theta: float | None = None,
) -> ConjugateProblem:
    """x_1..n ~ N(θ, σ²) with θ ~ N(μ₀, τ₀²); the observed data are drawn with ``key`` at
    ``true_theta`` (default a prior draw).  ``summary``: ``"mean"`` (sufficient:
    :math:`p_ε ∝ N(θ; μ₀, τ₀²)\\,[Φ((\\bar x + ε − θ)/s) − Φ((\\bar x − ε − θ)/s)]`,
    s = σ/√n) or ``"median"`` (n odd; insufficient: the median of n = 2k+1 normals has CDF
    :math:`I_{F(m)}(k+1, k+1)`, so :math:`P(|m − m_{obs}| ≤ ε \\mid θ)` is a difference of
    regularised incomplete beta functions)."""
    from scipy import special, stats

    if summary not in ("mean", "median"):
        raise ConfigError(f"summary must be 'mean' or 'median', got {summary!r}")
    if n_obs < 1 or (summary == "median" and n_obs % 2 == 0):
        raise ConfigError(f"n_obs must be >= 1 (odd for the median), got {n_obs}")
    if sigma <= 0 or prior_sd <= 0:
        raise ConfigError(f"sigma and prior_sd must be > 0, got {sigma}, {prior_sd}")
    k_theta, k_x = jax.random.split(key)
    if true_theta is None:
        true_theta = prior_mean + prior_sd * float(jax.random.normal(k_theta))
    x_obs = true_theta + sigma * jax.random.normal(k_x, (n_obs,))
    stat = jnp.mean if summary == "mean" else jnp.median

    problem = ABCProblem(
        prior_sample=lambda k, n: prior_mean + prior_sd * jax.random.normal(k, (n, 1)),
        prior_logpdf=lambda th: -0.5 * ((th[:, 0] - prior_mean) / prior_sd) ** 2,
        simulate=lambda k, th: th[0] + sigma * jax.random.normal(k, (n_obs,)),
        summary=lambda x: stat(x)[None],
        observed=x_obs,
    )
    xo = np.asarray(x_obs, np.float64)
    s_obs = float(np.mean(xo) if summary == "mean" else np.median(xo))
    post_var = 1.0 / (1.0 / prior_sd**2 + n_obs / sigma**2)
    post_mean = post_var * (prior_mean / prior_sd**2 + xo.sum() / sigma**2)
    half = 8.0 * math.sqrt(post_var) + 4.0 * sigma
    grid = np.linspace(post_mean - half, post_mean + half, 8001)
    prior = stats.norm.pdf(grid, prior_mean, prior_sd)
    se = sigma / math.sqrt(n_obs)
    kk = (n_obs - 1) // 2

    def abc_posterior(eps: float) -> np.ndarray:
        if summary == "mean":
            like = (
                stats.norm.pdf(s_obs, grid, se)
                if eps == 0
                else stats.norm.cdf((s_obs + eps - grid) / se)
                - stats.norm.cdf((s_obs - eps - grid) / se)
            )
        elif eps == 0:  # density of the median (order statistic k+1 of 2k+1) at s_obs
            f = stats.norm.cdf((s_obs - grid) / sigma)
            like = f**kk * (1 - f) ** kk * stats.norm.pdf(s_obs, grid, sigma)
        else:
            cdf = lambda m: special.betainc(kk + 1, kk + 1, stats.norm.cdf((m - grid) / sigma))  # noqa: E731
            like = cdf(s_obs + eps) - cdf(s_obs - eps)
        return _normalise(prior * like, grid)

    posterior = _normalise(stats.norm.pdf(grid, post_mean, math.sqrt(post_var)), grid)
    name = f"Gaussian mean, n={n_obs}, sigma={sigma:g}, prior N({prior_mean:g}, {prior_sd:g}^2), summary {summary}"
    return ConjugateProblem(problem, grid, abc_posterior, posterior, name)


def beta_binomial_problem(
    key: Array, n_trials: int = 20, a: float = 1.0, b: float = 1.0, true_theta: float = 0.3
) -> ConjugateProblem:
    """k ~ Binomial(n, θ) with θ ~ Beta(a, b); the summary is the count k (sufficient), so
    ε = 0 (exact matching, ``allow_zero=True``) gives the exact posterior Beta(a + k, b + n − k),
    and :math:`p_ε ∝ \\mathrm{Beta}(θ; a, b) \\sum_{|j − k| ≤ ε} \\mathrm{Bin}(j; n, θ)`."""
    from scipy import stats

    if n_trials < 1 or a <= 0 or b <= 0 or not 0 < true_theta < 1:
        raise ConfigError(f"need n_trials >= 1, a, b > 0, 0 < true_theta < 1; got "
                          f"{n_trials}, {a}, {b}, {true_theta}")  # fmt: skip
    k_obs = jax.random.binomial(key, n_trials, true_theta).astype(jnp.float32)

    def logpdf(th):
        t = th[:, 0]
        inside = (t > 0) & (t < 1)
        tc = jnp.clip(t, 1e-12, 1 - 1e-12)
        return jnp.where(inside, (a - 1) * jnp.log(tc) + (b - 1) * jnp.log1p(-tc), -jnp.inf)

    problem = ABCProblem(
        prior_sample=lambda k, n: jax.random.beta(k, a, b, (n, 1)),
        prior_logpdf=logpdf,
        simulate=lambda k, th: jnp.sum(
            jax.random.uniform(k, (n_trials,)) < th[0]
        ),  # Binomial(n, θ)
        summary=lambda x: jnp.asarray(x, jnp.float32)[None],
        observed=k_obs,
    )
    k = int(k_obs)
    grid = np.linspace(1e-6, 1 - 1e-6, 8001)
    prior = stats.beta.pdf(grid, a, b)

    def abc_posterior(eps: float) -> np.ndarray:
        js = np.arange(max(0, math.ceil(k - eps)), min(n_trials, math.floor(k + eps)) + 1)
        like = stats.binom.pmf(js[:, None], n_trials, grid[None]).sum(0)
        return _normalise(prior * like, grid)

    posterior = _normalise(stats.beta.pdf(grid, a + k, b + n_trials - k), grid)
    name = f"Beta-Binomial, n={n_trials}, prior Beta({a:g}, {b:g}), observed k={k}"
    return ConjugateProblem(problem, grid, abc_posterior, posterior, name)


def tolerance_study(
    key: Array,
    cp: ConjugateProblem,
    tolerances: Sequence[float],
    n_proposals: int,
    n_particles: int,
) -> tuple[list[dict], dict[float, np.ndarray]]:
    """How the ABC posterior approaches the exact one as the tolerance shrinks: one row per
    tolerance with rejection ABC's acceptances (``n_proposals`` prior draws, simulated once and
    thresholded at each ε: nested samples), the W1 of its sample to the exact posterior
    (``w1_to_posterior``) and to the exact ABC posterior p_ε (``w1_to_abc_posterior``, the
    sampler's own error), the exact W1(p_ε, p(θ | x)) by quadrature (``w1_exact_bias``: what
    ε itself costs; ``w1_summary_limit``: its ε → 0 limit, > 0 for an insufficient summary),
    and ABC-SMC's (``n_particles``, the same schedule) simulations, ESS and W1s.  Also the
    accepted rejection samples by tolerance."""
    k_rej, k_smc = jax.random.split(key)
    rows, kept = [], {}
    sims = simulate_distances(k_rej, cp.problem, n_proposals)
    limit = wasserstein1_densities(cp.grid, cp.abc_posterior(0.0), cp.posterior)
    for eps in tolerances:
        r = rejection(k_rej, cp.problem, n_proposals, eps, allow_zero=True, simulated=sims)
        s, dens = r.samples, cp.abc_posterior(eps)
        row = {"tolerance": eps, "accepted": int(s.shape[0]), "acceptance_rate": r.acceptance_rate,
               "w1_exact_bias": wasserstein1_densities(cp.grid, dens, cp.posterior),
               "w1_summary_limit": limit}  # fmt: skip
        if s.shape[0] >= 2:
            kept[eps] = s
            m, sd = weighted_moments(s)
            row |= {"w1_to_posterior": wasserstein1(s, cp.grid, cp.posterior),
                    "w1_to_abc_posterior": wasserstein1(s, cp.grid, dens), "mean": m, "sd": sd}  # fmt: skip
        rows.append(row)
    for row, g in zip(rows, smc(k_smc, cp.problem, tolerances, n_particles, allow_zero=True),
                      strict=True):  # fmt: skip
        th, w = np.asarray(g.theta), np.asarray(g.weights)
        dens = cp.abc_posterior(g.tolerance)
        row |= {"smc_simulations": g.simulations, "smc_ess": g.ess,
                "smc_w1_to_posterior": wasserstein1(th, cp.grid, cp.posterior, w),
                "smc_w1_to_abc_posterior": wasserstein1(th, cp.grid, dens, w)}  # fmt: skip
    return rows, kept


def weighted_moments(theta: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Mean and standard deviation of a (weighted) 1-D sample."""
    x = np.asarray(theta, np.float64).ravel()
    w = np.full(x.shape, 1.0 / x.size) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    m = float(np.sum(w * x))
    return m, float(np.sqrt(np.sum(w * (x - m) ** 2)))


def grid_moments(grid: np.ndarray, density: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a density tabulated on a uniform grid."""
    w = density / density.sum()
    m = float(np.sum(w * grid))
    return m, float(np.sqrt(np.sum(w * (grid - m) ** 2)))
