"""Log-likelihood front-ends (egm.eval.likelihood) return one LogLikelihood record each.

Each front-end is checked against the raw estimator it wraps (same key, same numbers: the
record must not change the figure) and against exact enumeration on a tiny model where one
exists.  Tolerances are those of the raw estimators' tests: |estimate - truth| < 5 se + se²
(CLT z = 5 plus the Jensen bias of a log of a mean, tests/estimators/test_ais.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import random_dbm, random_rbm
from jax.tree_util import Partial

from egm.energies import dbm, rbm
from egm.errors import ConfigError
from egm.estimators import ais, exact
from egm.estimators.importance import importance_log_likelihood
from egm.eval import (
    LogLikelihood,
    ais_log_likelihood,
    dbm_log_likelihood_bound,
    dbn_log_likelihood_bound,
    importance_record,
    importance_sampled_log_likelihood,
    mean_negative_free_energy,
)
from egm.models import dbn

BETAS = ais.betas_salakhutdinov_murray(500)
ALL_V4 = exact.all_binary_states(4)


def _tol(se):
    return 5 * float(se) + float(se) ** 2


def _gaussian_lw(params, key, x, n):
    """z ~ N(0,1), x|z ~ N(a z, s²); q = N(posterior mean + shift, posterior var)."""
    a, s, shift = params
    v = 1 / (1 + a * a / s / s)
    qm, qs = v * a * x[0] / s / s + shift, jnp.sqrt(v)
    z = qm + qs * jax.random.normal(key, (n,))
    log_p = jax.scipy.stats.norm.logpdf(z) + jax.scipy.stats.norm.logpdf(x[0], a * z, s)
    return log_p - jax.scipy.stats.norm.logpdf(z, qm, qs)


def test_is_front_end_is_the_raw_estimate_as_a_record():
    x = jnp.array([[0.3], [1.2], [-2.0], [0.0], [3.1]])
    fn = Partial(_gaussian_lw, (1.5, 0.7, 0.4))
    key = jax.random.key(3)
    raw = importance_log_likelihood(key, fn, x, 200, chunk_size=64)
    rec = importance_sampled_log_likelihood(
        key, fn, x, 200, chunk_size=64, dataset="toy", protocol="none"
    )
    assert isinstance(rec, LogLikelihood) and rec == importance_record(
        raw, dataset="toy", protocol="none"
    )
    assert rec.method == "importance" and rec.bound == "lower" and rec.split == "test"
    assert rec.value == pytest.approx(float(raw.log_likelihood), abs=1e-5)
    assert rec.stderr == pytest.approx(float(raw.mc_stderr_mean), rel=1e-6)
    assert rec.stderr_examples == pytest.approx(float(raw.stderr), rel=1e-4)
    assert rec.counts == {"examples": 5, "samples": 200}
    truth = float(np.mean(jax.scipy.stats.norm.logpdf(x[:, 0], 0.0, math.sqrt(1.5**2 + 0.49))))
    assert abs(rec.value - truth) < _tol(rec.stderr)


def _dbn(sizes, scale=1.0):
    return tuple(random_rbm(i, sizes[i], sizes[i + 1], scale) for i in range(len(sizes) - 1))


def test_dbn_bound_front_end_matches_raw_functions():
    model = _dbn((4, 3, 6))
    v = jnp.tile(ALL_V4, (2, 1))
    log_z = float(exact.rbm_log_partition(model[-1]))
    key = jax.random.key(1)
    raw = dbn.lower_bound(key, model, v, log_z, n_samples=20)
    rec = dbn_log_likelihood_bound(key, model, v, log_z_top=log_z, n_samples=20, split="train")
    assert rec.method == "variational_bound" and rec.bound == "lower" and rec.split == "train"
    assert rec.value == pytest.approx(raw.bound, abs=1e-9) and rec.stderr == raw.se_q
    assert rec.counts == {"examples": 32, "samples": 20}
    base_b = ais.base_rate_biases(jax.nn.sigmoid(jnp.zeros((1, 3))))
    raw = dbn.ais_lower_bound(key, model, v, base_b, n_chains=50, betas=BETAS, n_samples=20)
    rec = dbn_log_likelihood_bound(
        key, model, v, base_b=base_b, n_chains=50, betas=BETAS, n_samples=20
    )
    assert rec.value == pytest.approx(raw.bound, abs=1e-9) and rec.stderr == raw.se
    assert rec.counts["chains"] == 50 and rec.counts["temperatures"] == 500
    assert rec.extras["log_z_top"] == raw.log_z_top and rec.extras["stderr_q"] == raw.se_q
    truth = float(jnp.mean(dbn.lower_bound_exact(model, v)))
    assert abs(rec.value - truth) < 5 * rec.stderr + raw.log_z_top_se**2
    with pytest.raises(ConfigError, match="exactly one"):
        dbn_log_likelihood_bound(key, model, v)


def _dbm_exact_log_lik(p, v):
    """log p(v) of a tiny DBM: enumerate every hidden layer and every unit for log Z."""
    sizes = [b.shape[0] for b in p.biases]
    hs = exact.all_binary_states(sum(sizes[1:]))
    cuts = np.cumsum(sizes[1:])[:-1]

    def log_unnorm(x):
        def neg_e(h):
            return -dbm.energy(p, (x, *jnp.split(h, cuts)))

        return jax.nn.logsumexp(jax.vmap(neg_e)(hs))

    return jax.vmap(log_unnorm)(v) - exact.bm_log_partition(dbm.to_boltzmann(p))


def test_dbm_bound_front_end_is_below_exact_log_likelihood():
    """With the exact log Z (an AISResult carrying it, se 0) the mean-field bound is
    deterministic and lies below the exact mean log p(v) (KL(Q || posterior) >= 0); with
    forward AIS it agrees with that value within 5 se + se²."""
    p = random_dbm(0, (4, 3, 2), 1.0)
    v = ALL_V4
    lz = exact.bm_log_partition(dbm.to_boltzmann(p))
    fake = ais.AISResult(lz, jnp.zeros(()), jnp.array(10.0), jnp.zeros(10), lz, ())
    exact_rec = dbm_log_likelihood_bound(None, p, v, ais_result=fake, mf_tol=1e-7)
    truth = float(jnp.mean(_dbm_exact_log_lik(p, v)))
    assert exact_rec.value <= truth + 1e-5 and truth - exact_rec.value > 1e-4
    assert exact_rec.method == "variational_bound" and exact_rec.bound == "lower"
    assert exact_rec.extras["mf_max_residual"] <= 1e-6
    assert "temperatures" not in exact_rec.counts
    rec = dbm_log_likelihood_bound(
        jax.random.key(2), p, v, jnp.zeros(4), n_chains=200, betas=BETAS, mf_tol=1e-7
    )
    assert rec.counts["temperatures"] == 500 and rec.counts["chains"] == 200
    assert rec.stderr > 0 and abs(rec.value - exact_rec.value) < _tol(rec.stderr)
    assert rec.stderr_examples == pytest.approx(exact_rec.stderr_examples, rel=1e-6)


def test_forward_ais_front_end():
    p = random_rbm(4, 8, 5, 1.0)
    v = exact.all_binary_states(8)[::3]
    res = ais.rbm_ais(jax.random.key(0), p, jnp.zeros(8), n_chains=300, betas=BETAS)
    rec = ais_log_likelihood(rbm.free_energy, p, v, res, temperatures=500, protocol="toy")
    nfe = mean_negative_free_energy(rbm.free_energy, p, v)
    assert rec.value == pytest.approx(nfe - float(res.log_z), abs=1e-9)
    assert rec.method == "ais" and rec.bound == "upper" and rec.stderr == float(res.log_z_se)
    assert rec.counts["chains"] == 300 and rec.counts["temperatures"] == 500
    truth = float(jnp.mean(exact.rbm_log_likelihood(p, v)))
    assert abs(rec.value - truth) < _tol(rec.stderr)
