"""The estimator study's problem and table (egm.estimators.gradient_study) against exact
answers: the enumerated gradient against finite differences, and the table's statistics on
an estimator whose bias and variance are known by construction.

Tolerances.  Finite differences: central differences of ``E_q[J]`` (a smooth function of
φ) with step 1e-3 in float32 have truncation error O(h²) ~ 1e-6 and round-off ~ 1e-7 / h ~
1e-4 relative to ``|E_q J|`` ~ 10, so 2e-3 absolute.  Synthetic estimator ``exact + b + σ ε``
(ε standard normal, R = 4000 repeats, q = 12 coordinates): the mean's error per coordinate
is N(0, σ²/R), so ``|bias_sq - ‖b‖²|`` stays below ``2‖b‖·5σ√(q/R) + 25σ²q/R`` (z = 5 on the
norm of the error, Cauchy-Schwarz); ``tr Var / (qσ²)`` is a mean of q chi-square(R - 1)/(R - 1)
variables, sd √(2/((R - 1) q)) ≈ 0.0065, allowed 5 sd.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError
from egm.estimators import gradient_study as gs


@pytest.fixture(scope="module")
def problem():
    return gs.categorical_decoder_problem(jax.random.key(0), 3, 4, 10)


def test_enumerated_gradient_matches_finite_differences(problem):
    g = np.asarray(jax.grad(problem.expected_J)(problem.phi))
    h, fd = 1e-3, np.zeros_like(g)
    for i in np.ndindex(*g.shape):
        e = jnp.zeros_like(problem.phi).at[i].set(h)
        fd[i] = (problem.expected_J(problem.phi + e) - problem.expected_J(problem.phi - e)) / (
            2 * h
        )
    np.testing.assert_allclose(g, fd, atol=2e-3)
    y = problem.sample(jax.random.key(1), problem.phi)
    assert y.shape == (3, 4) and np.all(np.asarray(y).sum(-1) == 1)  # one-hot per group


def test_table_statistics_on_a_known_estimator(problem):
    exact = jax.grad(problem.expected_J)(problem.phi)
    b, sigma, R = jnp.full((3, 4), 0.05), 0.3, 4000
    noisy = lambda k: exact + b + sigma * jax.random.normal(k, exact.shape)
    unbiased = lambda k: exact + sigma * jax.random.normal(k, exact.shape)
    rows = gs.bias_variance_rows({"biased": noisy, "reinforce/none": unbiased}, exact,
                                 jax.random.split(jax.random.key(2), R))  # fmt: skip
    biased, plain = rows
    q, nb = 12, float(jnp.linalg.norm(b))
    slack = 2 * nb * 5 * sigma * np.sqrt(q / R) + 25 * sigma**2 * q / R
    assert abs(biased["bias_sq"] - nb**2) < slack
    for r in rows:
        assert abs(r["total_variance"] / (q * sigma**2) - 1) < 5 * np.sqrt(2 / ((R - 1) * q))
        assert r["mse"] == pytest.approx(
            r["bias_sq"] - r["bias_sq_expected_from_noise"] + r["total_variance"]
        )
    assert plain["unbiased_at_z5"] and not biased["unbiased_at_z5"]  # 0.05 / (0.3/√R) ≈ 10.5
    assert plain["variance_reduction_vs_none"] == 1.0
    with pytest.raises(ConfigError, match="2 repeats"):
        gs.bias_variance_rows({"x": unbiased}, exact, jax.random.split(jax.random.key(0), 1))
    with pytest.raises(ConfigError, match="65536"):
        gs.categorical_decoder_problem(jax.random.key(0), 5, 10, 3)
