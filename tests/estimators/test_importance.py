"""Importance-sampled log p(x) (egm.estimators.importance) against analytic answers.

Model: z ~ N(0, 1), x | z ~ N(a z, s²), so p(x) = N(0, a² + s²) and the posterior is
N(μ, v) with v = 1 / (1 + a²/s²), μ = v a x / s².  Proposal q = N(μ + shift, (c √v)²).

Tolerance: the estimate L̂ = log mean w has delta-method standard error se = sd(w) /
(√k mean w) (reported as ``mc_stderr``) and, by a second-order expansion of the log, a
bias of -se²/2 ≤ 0; so |L̂ - log p(x)| < 5 se + se² fails by chance with probability
≈ 5.7e-7 per example (CLT z = 5, the same rule as the AIS tests).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from egm.errors import ConfigError, DataError
from egm.estimators.importance import ISEstimate, importance_log_likelihood, log_mean_exp

A, S = 1.5, 0.7
X = jnp.array([[0.3], [1.2], [-2.0], [0.0], [3.1]])


def gaussian_lw(params, key, x, n):
    shift, scale = params
    v = 1 / (1 + A * A / S / S)
    mu = v * A * x[0] / S / S
    qm, qs = mu + shift, scale * jnp.sqrt(v)
    z = qm + qs * jax.random.normal(key, (n,))
    log_p = jax.scipy.stats.norm.logpdf(z) + jax.scipy.stats.norm.logpdf(x[0], A * z, S)
    return log_p - jax.scipy.stats.norm.logpdf(z, qm, qs)


def truth():
    return np.asarray(jax.scipy.stats.norm.logpdf(X[:, 0], 0.0, math.sqrt(A * A + S * S)))


def test_log_mean_exp_is_stable():
    lw = jnp.array([1000.0, 1000.0 + math.log(3.0)])
    assert float(log_mean_exp(lw)) == pytest.approx(1000.0 + math.log(2.0), abs=1e-3)
    np.testing.assert_allclose(log_mean_exp(jnp.zeros((3, 5)), axis=0), np.zeros(5), atol=1e-7)


def test_exact_posterior_gives_exact_answer_with_zero_variance():
    """Every weight equals p(x) when q is the posterior: exact (float32 rounding) and
    Monte-Carlo standard error 0 up to rounding."""
    r = importance_log_likelihood(jax.random.key(0), Partial(gaussian_lw, (0.0, 1.0)), X, 1000)
    assert isinstance(r, ISEstimate) and r.n_samples == 1000
    np.testing.assert_allclose(r.per_example, truth(), atol=2e-5)
    assert float(jnp.max(r.mc_stderr)) < 1e-3
    assert float(r.log_likelihood) == pytest.approx(truth().mean(), abs=2e-5)
    assert float(r.stderr) == pytest.approx(truth().std(ddof=1) / math.sqrt(5), rel=1e-4)


def test_mismatched_proposal_converges_within_its_stderr():
    """Shifted, over-dispersed q with k = 5000 in chunks of 700 (last chunk partial) and
    batches of 2 examples (last batch padded): within 5 se + se² of log p(x) (module
    docstring)."""
    r = importance_log_likelihood(
        jax.random.key(1), Partial(gaussian_lw, (0.8, 1.7)), X, 5000, chunk_size=700, batch_size=2
    )
    se = np.asarray(r.mc_stderr)
    assert np.all(se > 0)
    assert np.all(np.abs(np.asarray(r.per_example) - truth()) < 5 * se + se**2)
    assert float(r.mc_stderr_mean) == pytest.approx(np.sqrt(np.sum(se**2)) / 5, rel=1e-5)


def test_streaming_matches_direct_computation():
    """k = 7 in chunks of 3: the streamed estimate and delta-method se equal a direct
    float64 computation from the very same weights (keys reproduced)."""
    key = jax.random.key(2)
    lw_fn = Partial(gaussian_lw, (1.0, 2.0))
    r = importance_log_likelihood(key, lw_fn, X, 7, chunk_size=3, batch_size=3)
    for n in range(X.shape[0]):
        kn = jax.random.fold_in(key, n)
        w = np.concatenate(
            [np.asarray(lw_fn(jax.random.fold_in(kn, c), X[n], 3)) for c in range(3)]
        )
        w = w[:7].astype(np.float64)
        est = np.log(np.mean(np.exp(w)))
        e = np.exp(w - w.max())
        se = e.std(ddof=1) / (math.sqrt(7) * e.mean())
        assert float(r.per_example[n]) == pytest.approx(est, abs=1e-5)
        assert float(r.mc_stderr[n]) == pytest.approx(se, rel=1e-4)


def test_invariance_same_key_batch_size_and_no_recompile():
    key = jax.random.key(3)
    f = lambda bs, p=(0.5, 1.5): (
        importance_log_likelihood(
            key, Partial(gaussian_lw, p), X, 50, chunk_size=20, batch_size=bs
        ).per_example
    )
    np.testing.assert_array_equal(f(2), f(2))
    np.testing.assert_allclose(f(2), f(5), rtol=1e-6)
    from egm.estimators import importance

    f(4)
    n_compiled = importance._batch._cache_size()
    f(4, (0.1, 1.2))  # new parameters inside the Partial: traced, no new compilation
    assert importance._batch._cache_size() == n_compiled


def test_bad_input_raises_clear_errors():
    lw = Partial(gaussian_lw, (0.0, 1.0))
    with pytest.raises(ConfigError, match="n_samples"):
        importance_log_likelihood(jax.random.key(0), lw, X, 0)
    with pytest.raises(ConfigError, match="chunk_size"):
        importance_log_likelihood(jax.random.key(0), lw, X, 10, chunk_size=0)
    with pytest.raises(DataError, match="NaN"):
        importance_log_likelihood(jax.random.key(0), lw, X.at[0, 0].set(jnp.nan), 10)
    with pytest.raises(DataError, match="leading example axis"):
        importance_log_likelihood(jax.random.key(0), lw, jnp.zeros((0, 1)), 10)
