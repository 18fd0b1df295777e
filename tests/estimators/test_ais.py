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
from egm.errors import ConfigError, DataError
from egm.estimators import ais, exact
from egm.eval import LogLikelihood, likelihood

BETAS = ais.betas_salakhutdinov_murray(2000)


def _tol(se):
    return 5 * float(se) + float(se) ** 2


@pytest.mark.parametrize(
    ("seed", "V", "H", "scale"),
    # two of the three in the slow suite (21 s cold); the bracket tests cover strong coupling
    [
        (0, 8, 5, 0.5),
        pytest.param(1, 10, 4, 1.5, marks=pytest.mark.slow),
        pytest.param(2, 6, 8, 3.0, marks=pytest.mark.slow),
    ],
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


@pytest.mark.slow  # 14 s cold; reverse AIS is in the default suite's bracket test
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


@pytest.mark.parametrize(
    ("seed", "scale"), [(0, 0.5), pytest.param(1, 1.5, marks=pytest.mark.slow)]
)
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


@pytest.mark.parametrize(
    ("seed", "sizes", "scale"),
    # the 3-hidden-layer case in the slow suite (10 s cold)
    [(0, (4, 3, 2), 1.0), pytest.param(1, (5, 3, 4, 2), 1.5, marks=pytest.mark.slow)],
)
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


# ------------------------------------------------------------------ DBM reverse AIS, MP-DBM
# The new tests share one schedule and chain count, mostly without reverse burn-in (and
# tests/eval/test_likelihood.py does the same), so that one compiled annealing program per
# model type serves forward and reverse runs alike: compilation, not sampling, is most of
# their cost.

BETAS_500 = ais.betas_salakhutdinov_murray(500)
CHAINS, BURN = 200, 0


def _dbm_exact_odd_samples(p, key, n):
    """Exact samples of a tiny DBM (every unit enumerated, general-BM form), odd layers only."""
    from egm.energies import dbm

    sizes = [b.shape[0] for b in p.biases]
    probs = exact.bm_distribution(dbm.to_boltzmann(p))
    idx = jax.random.categorical(key, jnp.log(probs), shape=(n,))
    states = exact.all_binary_states(sum(sizes))[idx]
    layers = jnp.split(states, np.cumsum(sizes)[:-1], axis=1)
    return tuple(layers[1::2])


def _mpdbm_exact(mp):
    """Exact log Z of a tiny MP-DBM and every (state, label) with its log-probability: all
    binary (v, h) states times the K one-hot labels."""
    from egm.estimators import mpdbm

    sizes = [b.shape[0] for b in mp.dbm.biases]
    K = mp.label_b.shape[0]
    xs = exact.all_binary_states(sum(sizes))
    cuts = np.cumsum(sizes)[:-1]
    ys = jnp.eye(K)

    def neg_e(x, y):
        return -mpdbm.energy(mp, tuple(jnp.split(x, cuts)), y)

    ne = jax.vmap(lambda x: jax.vmap(lambda y: neg_e(x, y))(ys))(xs)  # [state, k]
    log_z = jax.nn.logsumexp(ne)
    return float(log_z), xs, ne - log_z


def _random_mpdbm(seed, sizes, K, scale):
    from egm.estimators import mpdbm

    p = random_dbm(seed, sizes, scale)
    k1, k2 = jax.random.split(jax.random.key(100 + seed))
    U = scale * jax.random.normal(k1, (sizes[-1], K))
    return mpdbm.MPDBMParams(p, U, 0.5 * jax.random.normal(k2, (K,)))


def test_dbm_reverse_ais_from_exact_samples_matches_exact():
    """Reverse AIS of a 4-3-2 DBM started from EXACT samples (its odd layer h1 drawn from the
    enumerated joint; burn-in sweeps at β = 1 keep them exact) is consistent for log Z:
    |log Ẑ_rev - log Z| < 5 se + se² (module docstring).  The path of forward AIS walked
    backwards; ``log Z_A`` is the base-rate model's with every hidden unit free."""
    from egm.energies import dbm

    p = random_dbm(0, (4, 3, 2), 1.0)
    truth = float(exact.bm_log_partition(dbm.to_boltzmann(p)))
    x = _dbm_exact_odd_samples(p, jax.random.key(3), CHAINS)
    res = ais.dbm_reverse_ais(jax.random.key(4), p, jnp.zeros(4), x, betas=BETAS_500, burn_in=50)
    assert abs(float(res.log_z) - truth) < _tol(res.log_z_se), (float(res.log_z), truth)
    assert float(res.log_z_base) == pytest.approx(9 * np.log(2.0), rel=1e-6)
    assert res.log_weights.shape == (CHAINS,) and 1.0 < float(res.ess) <= CHAINS


def test_dbm_forward_is_low_and_reverse_high_in_expectation():
    """Jensen on the DBM path: E[log w_fwd] <= log Z - log Z_A <= -E[log w_rev] for every
    single chain (reverse from exact samples, so the upper side is rigorous in expectation).
    The schedule 0, 0.5 (x 499), 1 is two annealing steps (the repeated temperatures are
    Gibbs sweeps at β = 0.5, which add nothing to the weights), so on a strongly coupled
    4-3-2 DBM both biases are large.  Each of the R = 200 chains is an independent one-chain
    run, so by the CLT the mean of the per-chain ``log Ẑ - log Z`` is within z·sd/√R of its
    expectation: we assert fwd < 5·sd/√R and rev > -5·sd/√R (Jensen), and that the biases
    have the predicted signs beyond 5·sd/√R (measured: -1.56 ± 0.14 and +1.05 ± 0.08 nats,
    11 and 13 standard errors from 0)."""
    from egm.energies import dbm

    p = random_dbm(5, (4, 3, 2), 4.0)
    truth = float(exact.bm_log_partition(dbm.to_boltzmann(p)))
    betas = np.concatenate([[0.0], np.full(len(BETAS_500) - 2, 0.5), [1.0]]).astype(np.float32)
    fwd = ais.dbm_ais(jax.random.key(1), p, jnp.zeros(4), n_chains=CHAINS, betas=betas)
    x = _dbm_exact_odd_samples(p, jax.random.key(2), CHAINS)
    rev = ais.dbm_reverse_ais(jax.random.key(3), p, jnp.zeros(4), x, betas=betas, burn_in=BURN)
    f = float(fwd.log_z_base) + np.asarray(fwd.log_weights, np.float64) - truth
    r = float(rev.log_z_base) - np.asarray(rev.log_weights, np.float64) - truth
    se_f, se_r = f.std(ddof=1) / np.sqrt(CHAINS), r.std(ddof=1) / np.sqrt(CHAINS)
    assert f.mean() < -5 * se_f and r.mean() > 5 * se_r, (f.mean(), se_f, r.mean(), se_r)


def test_dbm_bidirectional_from_forward_states_agrees_with_exact():
    """With 500 temperatures both directions of :func:`ais.dbm_bidirectional_ais` (the reverse
    chains started from the forward run's final states) agree with the exact log Z within
    5 se + se² each; the schedule and the start are recorded."""
    from egm.energies import dbm

    p = random_dbm(0, (4, 3, 2), 1.0)
    truth = float(exact.bm_log_partition(dbm.to_boltzmann(p)))
    bi = ais.dbm_bidirectional_ais(
        jax.random.key(7), p, jnp.zeros(4), n_chains=CHAINS, betas=BETAS_500, burn_in=BURN
    )
    for side in (bi.forward, bi.reverse):
        assert abs(float(side.log_z) - truth) < _tol(side.log_z_se), (float(side.log_z), truth)
    assert (bi.temperatures, bi.burn_in, bi.start) == (500, BURN, "forward")


def test_anneal_adds_nothing_for_equal_temperatures():
    """Pairs with beta_from == beta_to (burn-in sweeps) contribute exactly 0 to log w, even
    when the model's increment is not computed as an exact 0."""
    step = lambda v, key, b0, b1: (v + 1.0, b1 - b0 + 0.25)  # noqa: E731
    b_from, b_to = jnp.array([1.0, 1.0, 0.5]), jnp.array([1.0, 1.0, 0.25])
    v, log_w = ais.anneal(jax.random.key(0), step, jnp.zeros((3, 2)), b_from, b_to)
    np.testing.assert_array_equal(np.asarray(log_w), 0.0)  # -0.25 + 0.25 from the last pair
    np.testing.assert_array_equal(np.asarray(v), 3.0)


@pytest.mark.slow  # the default suite checks the softmax path in tests/eval/test_likelihood.py
@pytest.mark.parametrize(("seed", "sizes"), [(0, (4, 3, 2)), (1, (4, 3))])
def test_softmax_top_ais_matches_exact_mpdbm(seed, sizes):
    """An MP-DBM as a DBM with a softmax top layer (:func:`ais.mpdbm_as_dbm`): the label layer
    is odd (carried, drawn from a softmax) for 4-3-2 and even (summed out with logsumexp) for
    4-3.  Forward AIS and reverse AIS from exact samples match the exact log Z (enumerating
    every binary state and the 3 one-hot labels) within 5 se + se²."""
    mp = _random_mpdbm(seed, sizes, 3, 1.5)
    P = ais.mpdbm_as_dbm(mp)
    truth, xs, logp = _mpdbm_exact(mp)
    kw = dict(betas=BETAS_500, softmax_top=True)
    fwd = ais.dbm_ais(jax.random.key(seed), P, jnp.zeros(4), n_chains=CHAINS, **kw)
    assert abs(float(fwd.log_z) - truth) < _tol(fwd.log_z_se), (float(fwd.log_z), truth)
    idx = jax.random.categorical(jax.random.key(seed + 9), logp.reshape(-1), shape=(CHAINS,))
    x, y = xs[idx // 3], jnp.eye(3)[idx % 3]
    layers = [*jnp.split(x, np.cumsum([b.shape[0] for b in mp.dbm.biases])[:-1], axis=1), y]
    rev = ais.dbm_reverse_ais(
        jax.random.key(seed + 1), P, jnp.zeros(4), tuple(layers[1::2]), burn_in=BURN, **kw
    )
    assert abs(float(rev.log_z) - truth) < _tol(rev.log_z_se), (float(rev.log_z), truth)
    n_free = sum(sizes[1:])  # binary hidden units; the free label contributes log 3
    assert float(fwd.log_z_base) == pytest.approx((4 + n_free) * np.log(2) + np.log(3), rel=1e-6)
    if len(P.biases) % 2 == 0:  # the label layer is odd: carried, and it stays one-hot
        np.testing.assert_array_equal(np.asarray(fwd.final_v[-1]).sum(axis=1), 1.0)


def test_dbm_reverse_ais_validation():
    p = random_dbm(0, (4, 3, 2), 1.0)
    good = (jnp.zeros((3, 3)),)
    key, b = jax.random.key(0), jnp.zeros(4)
    with pytest.raises(ConfigError, match="odd layers"):
        ais.dbm_reverse_ais(key, p, b, (good[0], good[0]), betas=BETAS_500)
    with pytest.raises(DataError, match="binary"):
        ais.dbm_reverse_ais(key, p, b, (good[0] + 0.5,), betas=BETAS_500)
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        ais.dbm_reverse_ais(key, p, b, (jnp.zeros((3, 2)),), betas=BETAS_500)
    with pytest.raises(ConfigError, match="at least 2"):
        ais.dbm_reverse_ais(key, p, b, (jnp.zeros((1, 3)),), betas=BETAS_500)
    with pytest.raises(ConfigError, match="burn_in"):
        ais.dbm_reverse_ais(key, p, b, good, betas=BETAS_500, burn_in=-1)
    with pytest.raises(ConfigError, match="base_b"):
        ais.dbm_reverse_ais(key, p, jnp.zeros(5), good, betas=BETAS_500)
    P = ais.mpdbm_as_dbm(_random_mpdbm(0, (4, 3, 2), 3, 1.0))
    bad_label = (jnp.zeros((3, 3)), jnp.ones((3, 3)))
    with pytest.raises(DataError, match="one-hot"):
        ais.dbm_reverse_ais(key, P, b, bad_label, betas=BETAS_500, softmax_top=True)
    with pytest.raises(ConfigError, match="softmax_top"):
        ais.dbm_ais(key, random_dbm(0, (4, 1), 1.0), b, betas=BETAS_500, softmax_top=True)
