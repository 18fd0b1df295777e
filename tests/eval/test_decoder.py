"""Records of decoder AIS and BDMC (egm.eval.decoder) against exact log-likelihoods.

The model: a Bernoulli VAE decoder, 12 pixels, 2-D latent, one tanh layer of 8 units, its
weights scaled by 3 so that the posterior is far narrower than the prior.  Exact
``log p(x) = log ∫ N(z; 0, I) p(x | z) dz`` by a Riemann sum on ``[-7, 7]²``: the integrand
is smooth and outside the square below e^{-24} of its peak (prior), so the sum is exact far
beyond the AIS noise; checked in the test by halving the spacing (0.1 vs 0.05 agree to
1e-5 nats; measured: 1e-6).

Tolerances (as in tests/estimators/test_decoder_ais.py): per example, ``(log p̂ - log p) /
se ≈ N(0, 1)`` (delta method, CLT over chains) plus the Jensen bias ``≈ -se²/2``, allowed as
``se²``; z = 5 (chance failure ≈ 5.7e-7 per example).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError, DataError
from egm.estimators import decoder_ais as da
from egm.eval import LogLikelihood
from egm.eval import decoder as ed
from egm.models import vae

N, C, K = 16, 32, 100
BETAS = da.betas_sigmoid(K)
MODEL = vae.VAE(x_dim=12, latent_dim=2, hidden=(8,), likelihood="bernoulli")


@pytest.fixture(scope="module")
def params():
    p = vae.init_params(jax.random.key(0), MODEL)
    dec = jax.tree_util.tree_map(lambda a: 3.0 * a, p["params"]["decoder"])
    return {"params": {**p["params"], "decoder": dec}}


def _log_quadrature(params, x, h):
    """``log Σ_grid N(z; 0, I) p(x | z) h²`` on ``[-7, 7]²`` with spacing ``h`` (float64)."""
    g = np.arange(-7.0, 7.0 + h / 2, h)
    zz = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    logits = np.asarray(MODEL.apply(params, jnp.asarray(zz), method=vae.VAE.decode), np.float64)
    ll = np.asarray(x, np.float64) @ logits.T - np.logaddexp(0.0, logits).sum(1)
    a = ll - 0.5 * np.sum(zz**2, 1) - np.log(2 * np.pi)
    m = a.max(1, keepdims=True)
    return m[:, 0] + np.log(np.exp(a - m).sum(1)) + 2 * np.log(h)


@pytest.fixture(scope="module")
def simulated(params):
    _, x = ed.vae_simulator(MODEL, params)(jax.random.key(1), N)
    truth = _log_quadrature(params, x, 0.05)
    np.testing.assert_allclose(truth, _log_quadrature(params, x, 0.1), atol=1e-5)
    return np.asarray(x), truth


def test_vae_record_matches_quadrature(params, simulated):
    """Decoder AIS (K = 100 sigmoidal temperatures, 32 chains, 10 leapfrog steps) per
    example within 5 se + se² of the quadrature; the record is the same run (same key, same
    numbers: value = mean of the per-example estimates) with the fields it promises."""
    x, truth = simulated
    kw = dict(n_chains=C, betas=BETAS)
    res = da.decoder_ais(jax.random.key(2), ed.vae_log_likelihood_fn(MODEL, params), x, 2, **kw)
    est, se = np.asarray(res.log_px, np.float64), np.asarray(res.log_px_se, np.float64)
    assert np.all(np.abs(est - truth) < 5 * se + se**2), (est - truth, se)
    rec = ed.vae_decoder_log_likelihood(
        jax.random.key(2), MODEL, params, x, dataset="toy", protocol="simulated", **kw
    )
    assert isinstance(rec, LogLikelihood)
    assert rec.method == "ais" and rec.bound == "lower" and rec.dataset == "toy"
    assert rec.protocol == "simulated" and rec.split == "test"
    np.testing.assert_allclose(rec.value, est.mean(), rtol=1e-6)
    np.testing.assert_allclose(rec.stderr, np.sqrt(np.sum(se**2)) / N, rtol=1e-5)
    np.testing.assert_allclose(rec.stderr_examples, est.std(ddof=1) / math.sqrt(N), rtol=1e-5)
    c = rec.counts
    assert (c["examples"], c["chains"], c["temperatures"], c["leapfrog"]) == (N, C, K, 10)
    assert (c["hmc_steps"], c["adapt_chains"]) == (1, 4)
    np.testing.assert_allclose(c["ess_forward"], float(np.mean(res.ess)), rtol=1e-6)
    assert 0 < rec.extras["acceptance"] < 1
    assert LogLikelihood.from_dict(rec.to_dict()) == rec
    assert "32 chains x 100 temps" in rec.describe()


def test_bdmc_record_brackets_quadrature(params):
    """BDMC on 16 digits simulated from the model: the record's bracket (sides widened by
    z = 5 Monte-Carlo standard errors of the means) contains the exact mean log p(x).  The
    lower side fails by chance with probability ≈ 3e-7 (forward AIS is a lower bound in
    expectation with an honest se, tests/estimators/test_decoder_ais.py); the upper side
    likewise — the reverse chains of an example share their start, so their se could
    understate the noise, but measured over 4 seeds it is within 0.8-1.2x of the spread of
    the per-example differences from the truth.  The bracket is consistent, its value is
    the forward mean, and the extras hold the raw sides and the gap."""
    ll = ed.vae_log_likelihood_fn(MODEL, params)
    res = da.bdmc(
        jax.random.key(3), ll, ed.vae_simulator(MODEL, params), N, n_chains=C, betas=BETAS
    )
    truth = float(np.mean(_log_quadrature(params, res.x, 0.05)))
    rec = ed.bdmc_record(res, 5.0)
    assert rec.method == "ais_bracket" and rec.bound is None and rec.consistent
    assert rec.lower <= truth <= rec.upper, (rec.lower, truth, rec.upper)
    np.testing.assert_allclose(rec.value, float(res.lower), rtol=1e-6)
    np.testing.assert_allclose(rec.extras["gap"], float(res.gap), atol=1e-5)
    e = rec.extras
    np.testing.assert_allclose(e["lower_side"], rec.value - 5 * rec.stderr, rtol=1e-6)
    np.testing.assert_allclose(e["upper_side"], e["log_px_reverse"] + 5 * e["log_px_reverse_se"])
    assert rec.counts["ess_reverse"] > 0 and rec.counts["examples"] == N


def _fake(log_px, se, direction):
    n = len(log_px)
    return da.DecoderAISResult(
        log_px=np.asarray(log_px, np.float32),
        log_px_se=np.asarray(se, np.float32),
        ess=np.full(n, 8.0, np.float32),
        log_weights=np.zeros((n, 8), np.float32),
        acceptance=np.full(n, 0.6, np.float32),
        acceptance_by_temperature=np.full(5, 0.6, np.float32),
        step_sizes=np.ones((n, 5), np.float32),
        final_z=np.zeros((n, 8, 2), np.float32),
        n_leapfrog=10,
        hmc_steps=1,
        adapt_chains=4,
        direction=direction,
    )


def _bdmc(fwd, rev):
    f, r = _fake(*fwd, "forward"), _fake(*rev, "reverse")
    lo, hi = float(np.mean(f.log_px)), float(np.mean(r.log_px))
    return da.BDMCResult(np.zeros((2, 3)), np.zeros((2, 2)), f, r, lo, hi, hi - lo)


def test_bdmc_record_crossing_rule():
    """The rule of egm.eval.record.bracket_from_log_z, mirrored: consistent iff the upper
    side ``U + z se_U`` is not below the estimate ``L``; otherwise the interval covers both
    sides and the estimate, with a note.  Mean standard errors: ``sqrt(Σ se²) / N``."""
    # sides cross beyond the noise: U = -11 ± 0.0707 (z = 3: upper side -10.79) < L = -10
    rec = ed.bdmc_record(_bdmc(([-10, -10], [0.1, 0.1]), ([-11, -11], [0.1, 0.1])), 3.0)
    se = math.sqrt(0.02) / 2
    assert not rec.consistent and "cross" in rec.notes and "INCONSISTENT" in rec.describe()
    np.testing.assert_allclose([rec.lower, rec.upper], [-11 + 3 * se, -10], rtol=1e-6)
    assert rec.lower <= rec.value <= rec.upper
    assert LogLikelihood.from_dict(rec.to_dict()) == rec
    # crossing within the noise: U = -10.1, upper side -10.1 + 3·0.3536 > L
    rec = ed.bdmc_record(_bdmc(([-10, -10], [0.1, 0.1]), ([-10.1, -10.1], [0.5, 0.5])), 3.0)
    assert rec.consistent and "within 3 reverse standard errors" in rec.notes
    np.testing.assert_allclose(rec.lower, -10 - 3 * se, rtol=1e-6)
    np.testing.assert_allclose(rec.upper, -10.1 + 3 * math.sqrt(0.5) / 2, rtol=1e-6)
    # the ordinary case: no crossing note
    rec = ed.bdmc_record(_bdmc(([-10, -10], [0.1, 0.1]), ([-9, -9], [0.1, 0.1])), 3.0)
    assert rec.consistent and "cross" not in rec.notes and "within" not in rec.notes
    # one chain per example: no standard errors, sides not widened
    rec = ed.bdmc_record(_bdmc(([-10, -10], [np.nan] * 2), ([-9, -9], [np.nan] * 2)), 3.0)
    assert rec.stderr is None and "one chain" in rec.notes
    assert (rec.lower, rec.upper) == (-10.0, -9.0)
    with pytest.raises(ConfigError, match="z"):
        ed.bdmc_record(_bdmc(([-10, -10], [0.1, 0.1]), ([-9, -9], [0.1, 0.1])), -1.0)
    with pytest.raises(ConfigError, match="bdmc_record"):
        ed.decoder_ais_record(_fake([-9, -9], [0.1, 0.1], "reverse"))


def test_argument_errors(params):
    cat = vae.VAE(x_dim=12, latent_dim=2, hidden=(8,), latent="categorical", n_classes=3)
    with pytest.raises(ConfigError, match="latent"):
        ed.vae_log_likelihood_fn(cat, None)  # refused before the parameters are used
    grey = np.full((4, 12), 0.5, np.float32)
    with pytest.raises(DataError, match="binary"):
        ed.vae_decoder_log_likelihood(jax.random.key(0), MODEL, params, grey, betas=BETAS)
    with pytest.raises(DataError, match="12"):
        ed.vae_decoder_log_likelihood(jax.random.key(0), MODEL, params, np.zeros((4, 10)))


@pytest.mark.slow
def test_linear_gaussian_vae_matches_exact():
    """A Gaussian VAE with ``hidden=()`` and a learned per-pixel scale is the linear-Gaussian
    model ``x = W z + b + s ⊙ ε``: ``log p(x) = log N(x; b, WᵀW + diag(s²))`` (W the (L, D)
    kernel).  The record's mean within 5 stderr + mean se² of the exact mean."""
    m = vae.VAE(x_dim=6, latent_dim=2, hidden=(), likelihood="gaussian", gaussian_scale="learned")
    p = vae.init_params(jax.random.key(5), m)
    dec = dict(p["params"]["decoder"])
    dec["p_out"] = {"kernel": 2.0 * dec["p_out"]["kernel"], "bias": dec["p_out"]["bias"]}
    dec["p_log_scale"] = jnp.full((6,), math.log(0.3))
    p = {"params": {**p["params"], "decoder": dec}}
    _, x = ed.vae_simulator(m, p)(jax.random.key(6), 64)
    W = np.asarray(dec["p_out"]["kernel"], np.float64)
    cov = W.T @ W + 0.09 * np.eye(6)
    d = np.asarray(x, np.float64) - np.asarray(dec["p_out"]["bias"], np.float64)
    quad = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    exact = -0.5 * (quad + np.linalg.slogdet(cov)[1] + 6 * np.log(2 * np.pi))
    res = da.decoder_ais(
        jax.random.key(7), ed.vae_log_likelihood_fn(m, p), x, 2, n_chains=C, betas=BETAS
    )
    rec = ed.decoder_ais_record(res)
    se2 = float(np.mean(np.asarray(res.log_px_se, np.float64) ** 2))
    assert abs(rec.value - exact.mean()) < 5 * rec.stderr + se2, (rec.value, exact.mean())
