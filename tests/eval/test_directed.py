"""The directed-model report (egm.eval.directed) against exact log-likelihoods.

The model: the linear-Gaussian VAE of tests/models/test_vae.py with its exact posterior as
the encoder (``p(z) = N(0, I)``, ``p(x|z) = N(Kᵀz + b, σ² I)`` with orthogonal rows of ``K``,
so ``p(z|x)`` is a diagonal Gaussian affine in ``x``): ``log p(x) = log N(x; b, KᵀK + σ² I)``
in closed form and every importance weight equals ``p(x)``.

Tolerances.  Importance sampling with the exact posterior has no Monte-Carlo error: equal
to the exact mean to float32 round-off of sums of ~10 terms of size ~10 (1e-4 relative).
Decoder AIS: each record's value is the mean over ``N`` examples of per-example estimates
``log p̂_n ≈ log p_n + se_n ε_n - se_n²/2`` (delta method, CLT over chains; the last term is
the Jensen bias of a log of a mean); the record's ``stderr`` is ``s = sqrt(Σ se_n²) / N``, so
the mean bias is ``Σ se_n² / (2N) = N s² / 2``; allowed ``|value - mean log p| < 5 s + N s²``
(z = 5: a chance failure ≈ 5.7e-7).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError
from egm.eval import decoder as ed
from egm.eval import directed as ev
from egm.models import vae

N, D, L = 4, 4, 2
MODEL = vae.VAE(x_dim=D, latent_dim=L, hidden=(), likelihood="gaussian", gaussian_scale="learned")
FIELDS = dict(dataset="simulated", split="test", protocol="x ~ p(x|z)")


def _exact_posterior_params():
    """Decoder ``K`` (rows orthogonal, scales 1.5 and 0.7), ``b``, ``σ = 0.5``; encoder
    ``mu = (x - b) Kᵀ / σ² · v``, ``log sigma = log √v`` with ``v = 1 / (1 + scale² / σ²)``."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(D, L)))
    scales, s2 = np.array([1.5, 0.7]), 0.25
    K, b = (q * scales).T, rng.normal(size=D) * 0.3
    v = 1.0 / (1.0 + scales**2 / s2)
    A = (K / s2).T * v
    f = lambda a: jnp.asarray(a, jnp.float32)
    enc = {
        "q_mu": {"kernel": f(A), "bias": f(-b @ A)},
        "q_log_sigma": {"kernel": f(np.zeros((D, L))), "bias": f(0.5 * np.log(v))},
    }
    dec = {"p_out": {"kernel": f(K), "bias": f(b)}, "p_log_scale": f(np.full(D, math.log(0.5)))}
    return {"params": {"encoder": enc, "decoder": dec}}, K, b, s2  # fmt: skip


@pytest.fixture(scope="module")
def setting():
    params, K, b, s2 = _exact_posterior_params()
    _, x = ed.vae_simulator(MODEL, params)(jax.random.key(1), 2 * N)
    x = np.asarray(x, np.float64)
    cov = K.T @ K + s2 * np.eye(D)
    r = x - b
    quad = np.einsum("ni,ij,nj->n", r, np.linalg.inv(cov), r)
    truth = -0.5 * (quad + np.linalg.slogdet(cov)[1] + D * math.log(2 * math.pi))
    return params, x.astype(np.float32), truth


def _close(rec, truth):
    s = rec.stderr
    assert abs(rec.value - truth) < 5 * s + rec.counts["examples"] * s**2, (rec.value, truth, s)


# slow: ~7 s (the AIS and reverse-AIS compilations); the default suite runs the same report on
# the tiny VAE preset (tests/experiments/test_experiment_vae.py), without the exact answers
@pytest.mark.slow
def test_vae_report_ais_beside_is_on_the_same_digits(setting):
    """IS on all 2N examples and, with a DecoderAIS plan, decoder AIS and IS on the first N
    and BDMC on N simulated examples: IS and L_50 (exact posterior: every weight is p(x)) equal to
    the exact means, decoder AIS within its tolerance; the same-example IS is IS on exactly those
    examples (with ``is_test_size = N`` it is the main IS record to the bit: the same key,
    the same per-example draws); the BDMC bracket contains its estimate and reports the gap
    of its two means."""
    params, x, truth = setting
    plan = ev.DecoderAIS(temps=50, chains=8, size=N, bdmc_examples=N)  # one AIS program
    out = ev.vae_report(jax.random.key(2), MODEL, params, x, "m", is_samples=50,
                        is_test_size=0, decoder_ais=plan, **FIELDS)  # fmt: skip
    assert out["m_test_loglik"].counts == {"samples": 50, "examples": 2 * N}
    assert out["m_test_loglik"].value == pytest.approx(truth.mean(), rel=1e-4)
    assert out["m_test_L50"] == pytest.approx(truth.mean(), rel=1e-4)  # every weight is p(x)
    ais, same = out["m_test_loglik_decoder_ais"], out["m_test_loglik_is_same_digits"]
    assert ais.method == "ais" and ais.counts["examples"] == same.counts["examples"] == N
    assert same.value == pytest.approx(truth[:N].mean(), rel=1e-4)
    _close(ais, truth[:N].mean())
    assert out["m_decoder_ais_minus_is_nats"] == pytest.approx(ais.value - same.value)
    b = out["m_bdmc"]
    assert b.method == "ais_bracket" and b.counts["examples"] == N
    assert b.lower <= b.value <= b.upper and out["m_bdmc_gap_nats"] == b.extras["gap"]
    assert out["m_active_units"] == 2  # both latents carry information about x
    again = ev.vae_report(jax.random.key(2), MODEL, params, x, "m", is_samples=50,
                          is_test_size=N, decoder_ais=plan._replace(bdmc_examples=0), **FIELDS)  # fmt: skip
    assert again["m_test_loglik"].to_dict() == same.to_dict()
    assert "m_bdmc" not in again
    bare = ev.vae_report(jax.random.key(2), MODEL, params, x, "m", is_samples=50)
    assert "m_test_loglik_decoder_ais" not in bare and "m_test_L50" in bare


def test_bound_record_and_bad_sizes():
    rec = ev.bound_record(np.array([-3.0, -5.0]), "an ELBO", samples=2, **FIELDS)
    assert rec.method == "variational_bound" and rec.bound == "lower" and rec.value == -4.0
    assert rec.counts == {"samples": 2, "examples": 2} and rec.notes == "an ELBO"
    with pytest.raises(ConfigError, match="sizes"):
        ev.vae_report(jax.random.key(0), MODEL, None, np.zeros((2, D)), "m", is_samples=1,
                      decoder_ais=ev.DecoderAIS(10, size=-1))  # fmt: skip


def _linear_generator():
    """``g(z) = Kᵀz + b`` (the decoder mean above) and ``σ0 = 0.1``; data
    ``x ~ N(b, KᵀK + σ0² I)``: the exact model of :func:`ev.generator_report` at ``σ = σ0``."""
    rng = np.random.default_rng(1)
    K = rng.normal(size=(L, D)).astype(np.float32)
    b = (rng.normal(size=D) * 0.3).astype(np.float32)
    from jax.tree_util import Partial

    g = Partial(lambda K, b, z: z @ K + b, jnp.asarray(K), jnp.asarray(b))
    return K, b, g, 0.1


def _gauss_logpdf(x, mean, cov):
    d = np.asarray(x, np.float64) - mean
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    return -0.5 * (quad + logdet + d.shape[1] * math.log(2 * math.pi))


def test_generator_report_picks_the_true_sigma_and_matches_exact():
    """Wu et al.'s protocol on a linear generator with Gaussian observations (exact
    ``log p(x) = log N(x; b, KᵀK + σ² I)``).  σ selection: on 12 validation draws at σ0 = 0.1,
    the exact mean log-likelihood at σ = 0.03 and 0.3 is more than 1 nat per example below
    σ0's (computed below, asserted; measured 5.8 and 1.5), against AIS errors of ~0.01 nats on
    this 4-dim problem, so the choice must be σ0.  The test record: the module docstring's
    ``5 s + N s²``.  BDMC: the bracket on data simulated at the chosen σ is ordered (its
    exactness is tests/eval/test_decoder.py's)."""
    K, b, g, s0 = _linear_generator()
    cov = lambda s: K.T.astype(np.float64) @ K + s**2 * np.eye(D)  # noqa: E731
    rng = np.random.default_rng(2)
    x = rng.multivariate_normal(b, cov(s0), size=24).astype(np.float32)
    xv, xt = x[:12], x[12:]  # one size: one compiled AIS program
    exact_valid = {s: _gauss_logpdf(xv, b, cov(s)).mean() for s in (0.03, 0.1, 0.3)}
    assert min(exact_valid[0.1] - exact_valid[s] for s in (0.03, 0.3)) > 1.0
    settings = ev.DecoderAIS(temps=100, chains=16, size=len(xt), bdmc_examples=len(xt))
    out = ev.generator_report(jax.random.key(3), g, L, xv, xt, settings, sigmas=(0.03, 0.1, 0.3),
                              select_size=len(xv), **FIELDS)  # fmt: skip
    assert out["decoder_ais_sigma"] == 0.1
    rec, truth = out["test_loglik_decoder_ais"], _gauss_logpdf(xt, b, cov(s0)).mean()
    s = rec.stderr
    assert rec.method == "ais" and rec.bound == "lower" and rec.extras["sigma"] == 0.1
    assert abs(rec.value - truth) < 5 * s + len(xt) * s**2, (rec.value, truth, s)
    assert {k for k in rec.extras if k.startswith("valid_")} == {
        f"valid_log_density[sigma={s:g}]" for s in (0.03, 0.1, 0.3)
    }
    br = out["bdmc"]
    assert br.lower <= br.upper and out["bdmc_gap_nats"] >= 0
    with pytest.raises(ConfigError, match="sigmas"):
        ev.generator_report(jax.random.key(0), g, L, xv, xt, settings, sigmas=(0.1, -1.0))
