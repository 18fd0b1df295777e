"""AIS log Z against exact enumeration.

Tolerance: the delta-method standard error ``se`` of ``log Ẑ`` (AISResult.log_z_se) with
z = 5, plus the Jensen bias of a log of a mean, ``≈ se²/2`` (second-order delta method),
which we allow as ``se²``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import random_dbm, random_rbm

from egm.energies import rbm
from egm.errors import ConfigError
from egm.estimators import ais, exact
from egm.eval import LogLikelihood, likelihood

BETAS = ais.betas_salakhutdinov_murray(2000)


def _tol(se):
    return 5 * float(se) + float(se) ** 2


@pytest.mark.parametrize(
    ("seed", "V", "H", "scale"), [(0, 8, 5, 0.5), (1, 10, 4, 1.5), (2, 6, 8, 3.0)]
)
def test_forward_ais_matches_exact(seed, V, H, scale):
    p = random_rbm(seed, V, H, scale)
    base_b = jnp.linspace(-1.0, 1.0, V)
    res = ais.rbm_ais(jax.random.key(seed), p, base_b, n_chains=1000, betas=BETAS)
    truth = float(exact.rbm_log_partition(p))
    assert abs(float(res.log_z) - truth) < _tol(res.log_z_se), (
        float(res.log_z),
        truth,
        float(res.log_z_se),
    )
    assert float(res.ess) > 1.0 and float(res.ess) <= 1000.0  # ESS lies in [1, n]


def test_reverse_ais_from_exact_samples_matches_exact():
    """Reverse AIS started from exact samples of p(v) is consistent for log Z (upper side)."""
    p = random_rbm(3, 9, 5, 2.0)
    probs = exact.rbm_visible_distribution(p)
    idx = jax.random.categorical(jax.random.key(0), jnp.log(probs), shape=(1000,))
    v = exact.all_binary_states(9)[idx]
    res = ais.rbm_reverse_ais(jax.random.key(1), p, jnp.zeros(9), v, betas=BETAS)
    truth = float(exact.rbm_log_partition(p))
    assert abs(float(res.log_z) - truth) < _tol(res.log_z_se)


def test_too_few_temperatures_is_detectably_biased():
    """The test above has power: with 3 temperatures on a strongly coupled model, forward
    AIS underestimates log Z by far more than its tolerance (Jensen bias)."""
    p = random_rbm(2, 20, 10, 2.0)
    res = ais.rbm_ais(
        jax.random.key(0), p, jnp.zeros(20), n_chains=100, betas=np.array([0, 0.5, 1.0])
    )
    assert float(exact.rbm_log_partition(p)) - float(res.log_z) > _tol(res.log_z_se)


def test_bracket_contains_exact_test_log_likelihood():
    p = random_rbm(4, 10, 6, 1.5)
    probs = exact.rbm_visible_distribution(p)
    idx = jax.random.categorical(jax.random.key(2), jnp.log(probs), shape=(500,))
    v_test = exact.all_binary_states(10)[idx]
    br = likelihood.rbm_log_likelihood_bracket(
        jax.random.key(5),
        p,
        ais.base_rate_biases(v_test),
        v_test,
        n_chains=500,
        betas=BETAS,
        reverse_burn_in=200,
    )
    truth = float(jnp.mean(exact.rbm_log_likelihood(p, v_test)))
    assert br.lower <= truth <= br.upper, (br, truth)
    assert br.consistent
    # the record (egm.eval.LogLikelihood): estimate from forward log Z, counts and extras
    assert isinstance(br, LogLikelihood) and br.method == "ais_bracket"
    nfe = likelihood.mean_negative_free_energy(rbm.free_energy, p, v_test)
    assert br.value == pytest.approx(nfe - br.extras["log_z_forward"], abs=1e-9)
    assert br.stderr == br.extras["log_z_forward_se"]
    assert br.counts["chains"] == 500 and br.counts["temperatures"] == len(BETAS) - 1
    assert br.counts["examples"] == 500 and br.counts["reverse_burn_in"] == 200
    # ESS = (Σw)²/Σw² of the same forward weights whose normalised s.e. is log_z_forward_se:
    # with r = w/mean(w), se = sd(r)/√n (ddof 1), so ESS = n / (1 + (n-1)·se²) exactly; rtol
    # 1e-3 covers float32 rounding of the two reductions.  A converged schedule on this tiny
    # model keeps the weights nearly equal, so ESS is most of the 500 chains (measured ~499).
    n, se = br.counts["chains"], br.extras["log_z_forward_se"]
    assert br.counts["ess_forward"] == pytest.approx(n / (1 + (n - 1) * se**2), rel=1e-3)
    assert br.counts["ess_forward"] > 0.9 * n and br.counts["ess_reverse"] > 0.9 * n


def test_forward_is_low_and_reverse_high_in_expectation():
    """Jensen: E[log Ẑ_fwd] <= log Z <= E[log Ẑ_rev] (reverse from exact samples).  With a
    short schedule the bias is large; averaged over R = 40 independent runs the sample mean
    is within z·sd/√R of its expectation, so we assert mean_fwd - log Z < 5·sd/√R and
    mean_rev - log Z > -5·sd/√R, and that the two biases have the predicted signs."""
    p = random_rbm(6, 10, 6, 2.5)
    truth = float(exact.rbm_log_partition(p))
    betas = ais.betas_salakhutdinov_murray(30)
    logp = jnp.log(exact.rbm_visible_distribution(p))
    R = 40
    fwd, rev = [], []
    for r in range(R):
        k1, k2 = jax.random.split(jax.random.key(100 + r))
        fwd.append(float(ais.rbm_ais(k1, p, jnp.zeros(10), n_chains=20, betas=betas).log_z))
        v = exact.all_binary_states(10)[jax.random.categorical(k2, logp, shape=(20,))]
        rev.append(float(ais.rbm_reverse_ais(k2, p, jnp.zeros(10), v, betas=betas).log_z))
    fwd, rev = np.array(fwd) - truth, np.array(rev) - truth
    assert fwd.mean() < 5 * fwd.std(ddof=1) / np.sqrt(R)
    assert rev.mean() > -5 * rev.std(ddof=1) / np.sqrt(R)
    assert fwd.mean() < 0 < rev.mean()


def test_schedule_and_validation():
    b = ais.betas_salakhutdinov_murray()
    assert b.shape == (14501,) and b[0] == 0.0 and b[-1] == 1.0 and np.all(np.diff(b) >= 0)
    p = random_rbm(0, 4, 3, 1.0)
    with pytest.raises(ConfigError, match="betas"):
        ais.rbm_ais(jax.random.key(0), p, jnp.zeros(4), betas=np.array([0.2, 1.0]))
    with pytest.raises(ConfigError, match="base_b"):
        ais.rbm_ais(jax.random.key(0), p, jnp.zeros(5), betas=BETAS)
    with pytest.raises(ConfigError, match="chains"):
        ais.rbm_ais(jax.random.key(0), p, jnp.zeros(4), n_chains=1, betas=BETAS)


def test_base_log_partition_is_exact():
    base_b = jnp.array([0.2, -0.7, 1.3])
    p0 = rbm.RBMParams(W=jnp.zeros((3, 2)), b=base_b, c=jnp.zeros(2))
    np.testing.assert_allclose(
        ais.base_log_partition(base_b, 2), exact.rbm_log_partition(p0), rtol=1e-6
    )


@pytest.mark.slow
def test_full_schedule_on_a_wide_rbm_matches_exact():
    """100 visible x 16 hidden (exact by enumerating 2^16 hidden states), MNIST-like biases,
    the full 14,500-temperature schedule and 100 chains, as used in the experiments."""
    p = random_rbm(11, 100, 16, 0.3)
    p = p._replace(b=p.b - 1.0)
    res = ais.rbm_ais(jax.random.key(3), p, p.b, n_chains=100)
    truth = float(exact.rbm_log_partition(p))
    assert abs(float(res.log_z) - truth) < _tol(res.log_z_se), (float(res.log_z), truth)
    rev = ais.rbm_reverse_ais(jax.random.key(4), p, p.b, res.final_v)
    assert abs(float(rev.log_z) - truth) < _tol(rev.log_z_se), (float(rev.log_z), truth)


@pytest.mark.parametrize(("seed", "scale"), [(0, 0.5), (1, 1.5)])
def test_grbm_ais_matches_exact(seed, scale):
    """Gaussian-Bernoulli RBM (6 visible, 5 hidden): AIS from a Gaussian base fitted to
    nothing in particular (mean 0, unit precision) vs exact log Z; same tolerance as above."""
    from egm.energies import grbm

    k = jax.random.split(jax.random.key(seed), 4)
    p = grbm.GRBMParams(
        W=scale * jax.random.normal(k[0], (6, 5)),
        b=jax.random.normal(k[1], (6,)),
        c=0.5 * jax.random.normal(k[2], (5,)),
        log_beta=0.3 * jax.random.normal(k[3], (6,)),
    )
    res = ais.grbm_ais(
        jax.random.key(seed + 5), p, jnp.zeros(6), jnp.zeros(6), n_chains=500, betas=BETAS
    )
    truth = float(exact.grbm_log_partition(p))
    assert abs(float(res.log_z) - truth) < _tol(res.log_z_se), (float(res.log_z), truth)


@pytest.mark.parametrize(("seed", "sizes", "scale"), [(0, (4, 3, 2), 1.0), (1, (5, 3, 4, 2), 1.5)])
def test_dbm_ais_matches_exact(seed, sizes, scale):
    """DBMs with 2 and 3 hidden layers; exact log Z by enumerating all units (general-BM form)."""
    from egm.energies import dbm

    p = random_dbm(seed, sizes, scale)
    res = ais.dbm_ais(jax.random.key(seed + 7), p, jnp.zeros(sizes[0]), n_chains=500, betas=BETAS)
    truth = float(exact.bm_log_partition(dbm.to_boltzmann(p)))
    assert abs(float(res.log_z) - truth) < _tol(res.log_z_se), (
        float(res.log_z),
        truth,
        float(res.log_z_se),
    )
