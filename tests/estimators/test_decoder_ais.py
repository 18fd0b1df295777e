"""Decoder AIS over the latent space and BDMC against exact log-likelihoods.

Models with an exact answer:

* linear-Gaussian decoder ``x = W z + b + σ ε``, ``z ~ N(0, I)``:
  ``log p(x) = log N(x; b, W Wᵀ + σ² I)``;
* (tests/eval/test_decoder.py) a Bernoulli VAE decoder with a 2-D latent: ``log p(x)`` by
  a Riemann sum on a grid.

Tolerances.  Per example, ``log p̂ = log mean_c w_c``; by the delta method and the CLT over
the ``C`` independent chains, ``(log p̂ - log p) / se ≈ N(0, 1)`` with ``se`` the reported
``sd(w) / (√C mean w)``, plus the Jensen bias ``≈ -se²/2`` of a log of a mean (second-order
delta method), allowed as ``se²``.  With z = 5 a chance failure has probability ≈ 5.7e-7 per
example (as in tests/estimators/test_ais.py).  Means over ``N`` independent simulated
examples use the sample sd of the per-example differences: ``|mean| / (sd / √N) < 5``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial
from scipy import stats

from egm.errors import ConfigError, DataError
from egm.estimators import decoder_ais as da

D, L, SIGMA = 6, 2, 0.3
N, C, K = 16, 32, 100
BETAS = da.betas_sigmoid(K)


def _linear(W, b, z):
    return W @ z + b


def _linear_model(seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(D, L)).astype(np.float32)
    b = rng.normal(size=D).astype(np.float32)
    return W, b, da.gaussian_observation(Partial(_linear, jnp.asarray(W), jnp.asarray(b)), SIGMA)


def _linear_exact(W, b, x):
    """``log N(x; b, W Wᵀ + σ² I)`` in float64."""
    W, b, x = (np.asarray(a, np.float64) for a in (W, b, x))
    cov = W @ W.T + SIGMA**2 * np.eye(W.shape[0])
    d = x - b
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    return -0.5 * (quad + logdet + W.shape[0] * np.log(2 * np.pi))


def _linear_sampler(W, b):
    def sample(key, n):
        k_z, k_e = jax.random.split(key)
        z = jax.random.normal(k_z, (n, L))
        return z, z @ jnp.asarray(W).T + jnp.asarray(b) + SIGMA * jax.random.normal(k_e, (n, D))

    return sample


@pytest.fixture(scope="module")
def linear():
    W, b, ll = _linear_model()
    z, x = _linear_sampler(W, b)(jax.random.key(100), N)
    return W, b, ll, np.asarray(x)


@pytest.fixture(scope="module")
def forward(linear):
    W, b, ll, x = linear
    return da.decoder_ais(jax.random.key(1), ll, x, L, n_chains=C, betas=BETAS)


def test_linear_gaussian_matches_exact_and_se_is_honest(linear, forward):
    """Each example within 5 se + se² of the exact log p(x) (module docstring), with K = 100
    sigmoidal temperatures, 32 chains, 10 leapfrog steps.  Honest standard errors: the
    z-scores ``(log p̂_n - log p_n) / se_n`` of the 16 independent examples are ≈ N(0, 1), so
    ``Σ z²`` ≈ χ²_16; it must lie between the χ²_16 quantiles 1e-6 and 1 - 1e-6 (an se too
    small or too large by a factor ~2 fails).  Measured over 20 seeds: mean z² = 1.14."""
    W, b, _, x = linear
    truth = _linear_exact(W, b, x)
    est, se = np.asarray(forward.log_px, np.float64), np.asarray(forward.log_px_se, np.float64)
    assert np.all(np.abs(est - truth) < 5 * se + se**2), (est - truth, se)
    chi2 = float(np.sum(((est - truth) / se) ** 2))
    lo, hi = stats.chi2.ppf([1e-6, 1 - 1e-6], N)
    assert lo < chi2 < hi, chi2
    # shapes, ranges and the identity ESS = (Σw)²/Σw² of the returned log weights
    assert forward.log_weights.shape == (N, C) and forward.final_z.shape == (N, C, L)
    assert forward.step_sizes.shape == (N, K) and forward.acceptance_by_temperature.shape == (K,)
    lw = np.asarray(forward.log_weights, np.float64)
    w = np.exp(lw - lw.max(1, keepdims=True))
    np.testing.assert_allclose(forward.ess, w.sum(1) ** 2 / (w**2).sum(1), rtol=1e-4)
    assert np.all((np.asarray(forward.acceptance) >= 0) & (np.asarray(forward.acceptance) <= 1))


def test_same_key_same_numbers_other_key_other_numbers(linear, forward):
    W, b, ll, x = linear
    again = da.decoder_ais(jax.random.key(1), ll, x, L, n_chains=C, betas=BETAS)
    np.testing.assert_array_equal(again.log_weights, forward.log_weights)
    other = da.decoder_ais(jax.random.key(2), ll, x, L, n_chains=C, betas=BETAS)
    assert not np.allclose(other.log_weights, forward.log_weights)


def test_bdmc_brackets_exact_log_likelihood():
    """On data simulated from the linear-Gaussian model, E[forward] <= log p(x) <=
    E[reverse] (reverse AIS starts at the generating latents, exact posterior samples).
    The per-example differences ``d_n = side_n - log p(x_n)`` are independent over the 16
    simulated examples, so ``mean d / (sd(d) / √N)`` is ≈ N(0, 1) around its (signed) bias:
    the forward one must be < 5, the reverse one > -5.  Both directions are also exactly
    unbiased on the ratio scale, whatever the chains' correlation: E[p̂(x) / p(x)] = 1 and
    E[p(x) / p̂_rev(x)] = 1 (``1 / p̂_rev`` is the mean reverse weight, E[w_rev] = 1 / p(x)),
    so ``|mean_n exp(±d_n) - 1| < 5 sd / √N`` (CLT over examples; the ratios have a small
    spread at K = 100, so their variance is finite in practice).  This catches a too-high
    reverse side that the one-sided check cannot."""
    W, b, ll = _linear_model()
    res = da.bdmc(jax.random.key(3), ll, _linear_sampler(W, b), N, n_chains=C, betas=BETAS)
    truth = _linear_exact(W, b, res.x)
    d_f = np.asarray(res.forward.log_px, np.float64) - truth
    d_r = np.asarray(res.reverse.log_px, np.float64) - truth
    se = lambda d: d.std(ddof=1) / np.sqrt(d.size)
    assert d_f.mean() < 5 * se(d_f), (d_f.mean(), se(d_f))
    assert d_r.mean() > -5 * se(d_r), (d_r.mean(), se(d_r))
    for ratio in (np.exp(d_f), np.exp(-d_r)):
        assert abs(ratio.mean() - 1) < 5 * se(ratio), ratio
    assert abs(float(res.gap) - (d_r.mean() - d_f.mean())) < 1e-4
    np.testing.assert_array_equal(res.reverse.step_sizes, res.forward.step_sizes)
    assert res.reverse.direction == "reverse" and res.forward.direction == "forward"


def test_prior_importance_sampling_and_step_size_rule():
    """Schedule ``[0, 1, 1, ..., 1]``: the only weight increment is the first, so the log
    weights are exactly ``log p(x | z0)`` of the start states — importance sampling from the
    prior — whatever the transitions do afterwards.  The pilot chains (last rows of z0)
    carry no weight.  The step rule is ``log ε_{k+1} = log ε_k + rate (ā_k - target)`` with
    ``ā_k`` the pilots' mean acceptance (checked as an identity where unclipped); started
    at ε = 1e-3 the leapfrog energy error is O(ε²), acceptance ≈ 1 > 0.65, so ε grows."""
    W, b, ll = _linear_model()
    x = jnp.asarray(W @ np.array([0.5, -1.0], np.float32) + b)
    z0 = jax.random.normal(jax.random.key(7), (12, L))
    betas = np.array([0.0] + [1.0] * 40, np.float32)
    run = jax.jit(lambda k, z: da.anneal_latent(k, ll, x, z, betas, n_adapt=4, step_size=1e-3))
    logw, z_final, info = run(jax.random.key(8), z0)
    direct = jax.vmap(lambda z: ll(z, x))(z0[:8])
    np.testing.assert_allclose(logw, direct, rtol=1e-6)
    assert z_final.shape == (8, L) and info.step_size.shape == (40,)
    log_eps = np.log(np.asarray(info.step_size, np.float64))
    step = 0.5 * (np.asarray(info.adapt_acceptance, np.float64) - 0.65)
    inside = (log_eps[1:] > np.log(1e-5) + 1e-6) & (log_eps[1:] < -1e-6)
    np.testing.assert_allclose(np.diff(log_eps)[inside], step[:-1][inside], atol=1e-5)
    assert info.step_size[-1] > 10 * info.step_size[0]
    assert np.all((np.asarray(info.acceptance) >= 0) & (np.asarray(info.acceptance) <= 1))


def test_argument_errors(linear):
    W, b, ll, x = linear
    z = np.zeros((N, L), np.float32)
    with pytest.raises(ConfigError, match="latent_dim"):
        da.decoder_ais(jax.random.key(0), ll, x, 0, betas=BETAS)
    with pytest.raises(ConfigError, match="n_chains"):
        da.decoder_ais(jax.random.key(0), ll, x, L, n_chains=0, betas=BETAS)
    for bad in ([0.0, 0.7, 0.5, 1.0], [0.1, 0.5, 1.0], [0.0, 0.5, 0.9], [1.0, 0.5, 0.0], [0.0]):
        with pytest.raises(ConfigError, match="betas"):
            da.decoder_ais(jax.random.key(0), ll, x, L, betas=np.array(bad))
        with pytest.raises(ConfigError, match="betas"):
            da.reverse_decoder_ais(jax.random.key(0), ll, x, z, betas=np.array(bad))
    x_nan = x.copy()
    x_nan[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        da.decoder_ais(jax.random.key(0), ll, x_nan, L, betas=BETAS)
    with pytest.raises(DataError, match="shape"):
        da.decoder_ais(jax.random.key(0), ll, x[0], L, betas=BETAS)
    with pytest.raises(ConfigError, match="latent_dim"):  # decoder expects L = 2
        da.decoder_ais(jax.random.key(0), ll, x, 3, betas=BETAS)
    with pytest.raises(ConfigError, match="scalar"):
        da.decoder_ais(jax.random.key(0), lambda z, xx: xx - z.sum(), x, L, betas=BETAS)
    with pytest.raises(DataError, match="rows"):
        da.reverse_decoder_ais(jax.random.key(0), ll, x, z[:3], betas=BETAS)
    with pytest.raises(ConfigError, match="step_size"):
        da.reverse_decoder_ais(jax.random.key(0), ll, x, z, betas=BETAS, step_sizes=np.ones(7))
    for kw in ({"n_leapfrog": 0}, {"hmc_steps": 0}, {"target_accept": 1.0}, {"step_size": 0}):
        with pytest.raises(ConfigError):
            da.decoder_ais(jax.random.key(0), ll, x, L, betas=BETAS, **kw)
    with pytest.raises(ConfigError, match="adapt_chains"):
        da.decoder_ais(jax.random.key(0), ll, x, L, betas=BETAS, adapt_chains=-1)
    with pytest.raises(ConfigError, match="sigma"):
        da.gaussian_observation(Partial(_linear, W, b), 0.0)
    with pytest.raises(ConfigError, match="n_temps"):
        da.betas_sigmoid(0)
    with pytest.raises(DataError, match="sample_model"):
        da.bdmc(jax.random.key(0), ll, lambda k, n: (jnp.zeros((n, L)), jnp.zeros((n + 1, D))), 4)


def test_sigmoid_schedule():
    """``betas_sigmoid``: K + 1 values, exactly 0 and 1 at the ends, strictly increasing,
    symmetric about 1/2 (σ(-t) = 1 - σ(t)), denser at the ends than in the middle."""
    b = da.betas_sigmoid(100)
    assert b.shape == (101,) and b[0] == 0.0 and b[-1] == 1.0 and np.all(np.diff(b) > 0)
    np.testing.assert_allclose(b + b[::-1], 1.0, atol=1e-6)
    assert np.diff(b)[0] < np.diff(b)[50] / 5


@pytest.mark.slow
def test_batch_size_does_not_change_the_numbers(linear, forward):
    """Example n uses fold_in(key, n): batches of 5 (the last padded) give the same numbers."""
    W, b, ll, x = linear
    small = da.decoder_ais(jax.random.key(1), ll, x, L, n_chains=C, betas=BETAS, batch_size=5)
    np.testing.assert_allclose(small.log_weights, forward.log_weights, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_se_honest_over_seeds_and_bdmc_gap_shrinks():
    """(1) Over 5 seeds x 16 examples, Σ z² of forward AIS against the exact value lies
    between the χ²_80 quantiles 1e-6 and 1 - 1e-6.  (2) BDMC with K = 5 and K = 1000: both
    brackets contain the exact mean within 5 sd/√N of the per-example differences (module
    docstring), the K = 5 gap is significantly positive (mean gap > 5 sd/√N of the per-example
    gaps: too few temperatures is detectable) and the K = 1000 gap is smaller than it."""
    W, b, ll = _linear_model()
    sample = _linear_sampler(W, b)
    z2 = 0.0
    for seed in range(5):
        _, x = sample(jax.random.key(200 + seed), N)
        r = da.decoder_ais(jax.random.key(seed), ll, x, L, n_chains=C, betas=BETAS)
        est = np.asarray(r.log_px, np.float64)
        z2 += float(np.sum(((est - _linear_exact(W, b, x)) / np.asarray(r.log_px_se)) ** 2))
    lo, hi = stats.chi2.ppf([1e-6, 1 - 1e-6], 5 * N)
    assert lo < z2 < hi, z2
    gaps = {}
    for n_t in (5, 1000):
        res = da.bdmc(jax.random.key(n_t), ll, sample, 64, n_chains=C, betas=da.betas_sigmoid(n_t))
        truth = _linear_exact(W, b, res.x)
        d_f = np.asarray(res.forward.log_px, np.float64) - truth
        d_r = np.asarray(res.reverse.log_px, np.float64) - truth
        se = lambda d: d.std(ddof=1) / np.sqrt(d.size)
        assert d_f.mean() < 5 * se(d_f) and d_r.mean() > -5 * se(d_r), (n_t, d_f, d_r)
        g = d_r - d_f
        gaps[n_t] = (g.mean(), se(g))
    assert gaps[5][0] > 5 * gaps[5][1], gaps
    assert gaps[1000][0] < gaps[5][0], gaps


def test_bdmc_checks_its_settings_once_before_simulating(linear):
    """``bdmc`` validates its AIS settings through :class:`AISSettings` (the checks
    ``decoder_ais`` runs) before ``sample_model`` is called: a bad or unknown setting is a
    ConfigError and nothing is simulated; the settings' defaults are ``decoder_ais``'s."""
    import inspect

    _, _, ll, _ = linear

    def never(key, n):
        raise AssertionError("simulated before the settings were checked")

    bad = [({"n_chains": 0}, "n_chains"), ({"betas": np.array([0.0, 0.5])}, "betas"),
           ({"target_accept": 1.0}, "target_accept"), ({"step_size": -1.0}, "step_size"),
           ({"adapt_chains": -1}, "adapt_chains"), ({"n_chain": 4}, "unknown")]  # fmt: skip
    for kw, match in bad:
        with pytest.raises(ConfigError, match=match):
            da.bdmc(jax.random.key(0), ll, never, 4, **kw)
    params = inspect.signature(da.decoder_ais).parameters.values()
    defaults = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
    assert defaults == da.AISSettings()._asdict()
    s = da.AISSettings.of(n_chains=3)
    assert s.n_chains == 3 and np.array_equal(s.betas, da.betas_sigmoid(1000))
