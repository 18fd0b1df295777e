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


# ------------------------------------------------------------------ brackets of the bounds
# Shared with tests/estimators/test_ais.py (one compilation per program): 200 chains (50 for
# the DBN's top RBM, as above), the 500-temperature schedule and no reverse burn-in, so that
# forward and reverse runs are the same compiled program (the experiments' smoke tests run
# the front-ends with burn-in).
CHAINS, BURN = 200, 0


def _fake(log_z, se=0.0, n=10):
    """An AIS result carrying a given log Z (no run)."""
    lz = jnp.asarray(log_z, jnp.float32)
    return ais.AISResult(lz, jnp.asarray(se), jnp.array(float(n)), jnp.zeros(n), lz, ())


def _exact_bound(p, v):
    """The mean-field bound with the EXACT log Z: what the bracket must contain."""
    lz = exact.bm_log_partition(dbm.to_boltzmann(p))
    return dbm_log_likelihood_bound(None, p, v, ais_result=_fake(lz), mf_tol=1e-7).value


def test_dbm_bound_bracket_contains_the_exact_bound():
    """Forward and reverse AIS bracket the DBM bound: for 3 random 4-3-2 DBMs the bracket
    [lower, upper] contains the bound computed with the exact log Z.

    Tolerance: the bracket is [u - log Ẑ_rev - 3 se_r, u - log Ẑ_fwd + 3 se_f] (u the exact
    mean of the mean-field terms; wider when the directions cross), so it misses the exact
    bound only if log Ẑ_fwd - 3 se_f > log Z or log Ẑ_rev + 3 se_r < log Z; with 500
    temperatures both are close to unbiased (the Jensen biases point away from those misses)
    so each happens with probability ≈ P(N(0,1) > 3) = 0.13%.  Both log Ẑ also agree with the
    exact log Z within 5 se + se² (module docstring).  The record keeps the old figure
    (bound with the forward log Ẑ) as its value and carries both runs' counts."""
    from egm.eval import likelihood

    v = ALL_V4
    for seed in range(3):
        p = random_dbm(seed, (4, 3, 2), 1.0)
        truth_lz = float(exact.bm_log_partition(dbm.to_boltzmann(p)))
        key = jax.random.key(10 + seed)
        rec = dbm_log_likelihood_bound(
            key, p, v, jnp.zeros(4), reverse=True, reverse_burn_in=BURN, n_chains=CHAINS,
            betas=BETAS, mf_tol=1e-7,
        )  # fmt: skip
        exact_bound = _exact_bound(p, v)
        assert rec.lower <= exact_bound <= rec.upper, (seed, rec, exact_bound)
        for side in ("forward", "reverse"):
            lz, se = rec.extras[f"log_z_{side}"], rec.extras[f"log_z_{side}_se"]
            assert abs(lz - truth_lz) < _tol(se), (seed, side, lz, truth_lz)
        assert rec.method == "variational_bound" and rec.bound == "lower"
        assert rec.stderr == rec.extras["log_z_forward_se"] > 0
        unnorm = rec.extras["mean_bound_without_log_z"]
        assert rec.value == pytest.approx(unnorm - rec.extras["log_z_forward"], abs=1e-9)
        assert unnorm - truth_lz == pytest.approx(exact_bound, abs=1e-5)
        assert rec.counts == {
            "examples": 16, "chains": CHAINS, "chains_reverse": CHAINS, "temperatures": 500,
            "reverse_burn_in": BURN, "ess_forward": rec.counts["ess_forward"],
            "ess_reverse": rec.counts["ess_reverse"],
        }  # fmt: skip
        assert (
            1.0 < rec.counts["ess_reverse"] <= CHAINS and rec.extras["reverse_start"] == "forward"
        )
        # the same key through the raw estimators gives the same numbers
        bi = ais.dbm_bidirectional_ais(
            key, p, jnp.zeros(4), n_chains=CHAINS, betas=BETAS, burn_in=BURN
        )
        assert rec.extras["log_z_reverse"] == float(bi.reverse.log_z)
        reused = dbm_log_likelihood_bound(None, p, v, ais_result=bi, mf_tol=1e-7, split="train")
        assert (reused.value, reused.lower, reused.upper) == (rec.value, rec.lower, rec.upper)
    assert likelihood._BRACKET_NOTE in rec.notes


def test_dbm_bound_crossing_directions_are_reported_inconsistent():
    """When reverse log Ẑ falls below forward log Ẑ beyond its noise, the record says so
    (consistent=False, a note) and the bracket covers both sides and the estimate (the rule
    of egm.eval.record.bracket_from_log_z).  Given runs: log Z ± 0.5, se 0.01."""
    p = random_dbm(0, (4, 3, 2), 1.0)
    v = ALL_V4
    lz = float(exact.bm_log_partition(dbm.to_boltzmann(p)))
    bi = ais.BidirectionalAIS(_fake(lz + 0.5, 0.01), _fake(lz - 0.5, 0.01), 500, 0, "given")
    rec = dbm_log_likelihood_bound(None, p, v, ais_result=bi, mf_tol=1e-7)
    exact_bound = _exact_bound(p, v)
    assert not rec.consistent and "cross" in rec.notes
    lo, hi = rec.extras["lower_side"], rec.extras["upper_side"]
    assert lo == pytest.approx(exact_bound + 0.5 - 0.03, abs=1e-5)  # from the reverse side
    assert hi == pytest.approx(exact_bound - 0.5 + 0.03, abs=1e-5)  # from the forward side
    assert rec.value == pytest.approx(exact_bound - 0.5, abs=1e-5)
    assert rec.lower == min(lo, hi, rec.value) and rec.upper == max(lo, hi, rec.value)
    assert rec.lower <= rec.value <= rec.upper and "INCONSISTENT" in rec.describe()
    with pytest.raises(ConfigError, match="BidirectionalAIS"):
        dbm_log_likelihood_bound(None, p, v, ais_result=bi.forward, reverse=True)


def test_dbn_bound_bracket_contains_the_exact_bound():
    """The DBN bound with forward and reverse AIS of its top RBM (3 x 6, exact by
    enumeration): the bracket contains the exact bound (every expectation over Q enumerated,
    exact log Z_top).  Its sides are u - log Ẑ_rev - 3·hypot(se_r, se_q) and
    u - log Ẑ_fwd + 3·hypot(se_f, se_q) (u the Q-sample mean, error se_q), so as above each
    side misses with probability ≈ 0.13%.  Same key through the raw functions, same numbers;
    a forward-only ``ais_result`` reproduces :func:`dbn.ais_lower_bound`."""
    model = _dbn((4, 3, 6))
    v = jnp.tile(ALL_V4, (2, 1))
    base_b = ais.base_rate_biases(jax.nn.sigmoid(jnp.zeros((1, 3))))
    key = jax.random.key(4)
    kw = dict(n_chains=50, betas=BETAS, n_samples=20)
    rec = dbn_log_likelihood_bound(key, model, v, base_b=base_b, reverse=True,
                                   reverse_burn_in=BURN, **kw)  # fmt: skip
    truth = float(jnp.mean(dbn.lower_bound_exact(model, v)))
    assert rec.lower <= truth <= rec.upper, (rec, truth)
    assert rec.method == "variational_bound" and rec.bound == "lower"
    k_q, k_ais = jax.random.split(key)
    bi = ais.rbm_bidirectional_ais(k_ais, model[-1], base_b, n_chains=50, betas=BETAS,
                                   burn_in=BURN)  # fmt: skip
    lb = dbn.lower_bound(k_q, model, v, bi.forward.log_z, n_samples=20)
    se_f, se_q = float(bi.forward.log_z_se), lb.se_q
    assert rec.value == pytest.approx(lb.bound, abs=1e-9)
    assert rec.stderr == pytest.approx(math.hypot(se_f, se_q), rel=1e-12)
    assert rec.extras["log_z_reverse"] == float(bi.reverse.log_z)
    assert rec.extras["stderr_q"] == se_q and rec.extras["log_z_top"] == float(bi.forward.log_z)
    assert rec.counts["samples"] == 20 and rec.counts["reverse_burn_in"] == BURN
    assert rec.extras["upper_side"] == pytest.approx(lb.bound + 3 * math.hypot(se_f, se_q))
    truth_lz = float(exact.rbm_log_partition(model[-1]))
    for side in (bi.forward, bi.reverse):
        assert abs(float(side.log_z) - truth_lz) < _tol(side.log_z_se)
    # a finished forward run of the top RBM: the forward-only record of ais_lower_bound
    k_ais2, k_q2 = jax.random.split(key)
    raw = dbn.ais_lower_bound(key, model, v, base_b, **kw)
    fwd = ais.rbm_ais(k_ais2, model[-1], base_b, n_chains=50, betas=BETAS)
    given = dbn_log_likelihood_bound(k_q2, model, v, ais_result=fwd, n_samples=20)
    assert given.value == pytest.approx(raw.bound, abs=1e-9) and given.stderr == raw.se
    assert given.lower is None and given.counts["chains"] == 50
    with pytest.raises(ConfigError, match="exactly one"):
        dbn_log_likelihood_bound(key, model, v, base_b=base_b, ais_result=bi)
    with pytest.raises(ConfigError, match="BidirectionalAIS"):
        dbn_log_likelihood_bound(key, model, v, ais_result=fwd, reverse=True)


def _mpdbm_exact_log_lik(mp, v):
    """log p(v) of a tiny MP-DBM, labels and every hidden unit enumerated."""
    from egm.estimators import mpdbm

    sizes = [b.shape[0] for b in mp.dbm.biases]
    K = mp.label_b.shape[0]
    hs = exact.all_binary_states(sum(sizes[1:]))
    cuts = np.cumsum(sizes[1:])[:-1]

    def log_unnorm(x):
        def neg_e(h, y):
            return -mpdbm.energy(mp, (x, *jnp.split(h, cuts)), y)

        return jax.nn.logsumexp(jax.vmap(lambda h: jax.vmap(lambda y: neg_e(h, y))(jnp.eye(K)))(hs))

    all_v = exact.all_binary_states(sizes[0])
    log_z = jax.nn.logsumexp(jax.vmap(log_unnorm)(all_v))
    return jax.vmap(log_unnorm)(v) - log_z, float(log_z)


def test_mpdbm_bound_with_labels_summed_out():
    """MP-DBM 4-3-2 with 3 labels.  With the exact log Z the per-class mean-field bound
    logsumexp_k [c_k + B_k(v)] - log Z lies below the exact mean log p(v) (each B_k is a
    variational bound, KL >= 0).  Forward and reverse AIS of the DBM with a softmax top
    bracket that exact bound (each side misses with probability ≈ 0.13%, as for the DBM),
    and each agrees with the exact log Z (labels enumerated) within 5 se + se²."""
    from egm.estimators import mpdbm
    from egm.eval.likelihood import mpdbm_log_likelihood_bound

    k = jax.random.split(jax.random.key(8), 2)
    mp = mpdbm.MPDBMParams(random_dbm(3, (4, 3, 2), 1.5), 1.5 * jax.random.normal(k[0], (2, 3)),
                           0.5 * jax.random.normal(k[1], (3,)))  # fmt: skip
    v = ALL_V4
    per_ex, lz = _mpdbm_exact_log_lik(mp, v)
    ex = mpdbm_log_likelihood_bound(None, mp, v, ais_result=_fake(lz), mf_tol=1e-7)
    truth = float(jnp.mean(per_ex))
    assert ex.value <= truth + 1e-5 and ex.extras["mf_max_residual"] <= 1e-6
    rec = mpdbm_log_likelihood_bound(
        jax.random.key(9), mp, v, jnp.zeros(4), reverse=True, reverse_burn_in=BURN,
        n_chains=CHAINS, betas=BETAS, mf_tol=1e-7,
    )  # fmt: skip
    assert rec.lower <= ex.value <= rec.upper, (rec, ex.value)
    for side in ("forward", "reverse"):  # the softmax-top AIS itself (tests/estimators: slow)
        lz_side, se = rec.extras[f"log_z_{side}"], rec.extras[f"log_z_{side}_se"]
        assert abs(lz_side - lz) < _tol(se), (side, lz_side, lz)
    assert rec.value == pytest.approx(ex.value + lz - rec.extras["log_z_forward"], abs=1e-5)
    assert "labels summed out" in rec.notes and rec.counts["temperatures"] == 500
