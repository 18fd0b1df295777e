"""The binary RBM's evaluation (egm.eval.rbm) and its sample chains
(egm.samplers.persistent.rbm_base_rate_chains) against exact answers on tiny models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import random_rbm, rbm_gibbs_tv_after, tv, tv_tolerance

from egm.energies import rbm
from egm.estimators import exact
from egm.eval.rbm import rbm_monitor, rbm_pictures, rbm_results
from egm.samplers.persistent import rbm_base_rate_chains


def _product_bernoulli(mean: np.ndarray) -> np.ndarray:
    """The exact distribution over all_binary_states of independent Bernoulli(mean) bits."""
    states = np.asarray(exact.all_binary_states(len(mean)), np.float64)
    return np.prod(np.where(states == 1, mean, 1 - mean), axis=1)


def test_base_rate_chains_sample_the_rbm():
    """M = 4000 chains of a 4x3 RBM, T = 6 sweeps from Bernoulli(mean).  Tolerance
    (tests/_stats.py): the histogram of the final visibles is within tv_tolerance(p, M) of
    their exact law q K^T (McDiarmid, chance failure <= 1e-6), which is itself within the
    exact TV(q K^T, p) of p(v), computed from the sweep's transition matrix K.  Power: the
    start distribution q is checked to be farther from p than that total, so chains that
    did not move would fail."""
    params = random_rbm(0, 4, 3, scale=1.5)
    mean = np.array([0.1, 0.9, 0.2, 0.8])
    M, T = 4000, 6
    final = rbm_base_rate_chains(jax.random.key(1), params, mean, M, T)
    assert final.v.shape == (M, 4) and final.h.shape == (M, 3)
    p = np.asarray(exact.rbm_visible_distribution(params), np.float64)
    q = _product_bernoulli(mean)
    hist = np.bincount(np.asarray(exact.state_index(final.v)), minlength=16) / M
    tol = tv_tolerance(p, M) + rbm_gibbs_tv_after(params, q, T)
    assert tv(hist, p) <= tol
    assert tv(q, p) > tol  # the test can tell unmoved chains apart
    again = rbm_base_rate_chains(jax.random.key(1), params, mean, M, T)
    assert np.array_equal(np.asarray(again.v), np.asarray(final.v))  # same key, same draws


def _binary(key, n: int, p: float, d: int) -> np.ndarray:
    return np.asarray(jax.random.bernoulli(key, p, (n, d)), np.float32)


def test_rbm_results_against_exact_enumeration():
    """A 10x4 RBM, whose log Z enumerates 2^4 hidden states exactly.  (1) The exact mean test
    log-likelihood lies inside the AIS bracket (forward and reverse log Z widened by 3 s.e.:
    the bracket's claim); (2) the train and valid figures use the same forward log Ẑ as the
    test record, so train - test equals the exact difference of mean log-likelihoods, log Z
    cancelling: float32 rounding of -F(v) (~20 operations of magnitude <= 10, 1e-5 each)
    over means of 200 rows stays below 1e-3 nats."""
    params = random_rbm(2, 10, 4, scale=0.7)
    ks = jax.random.split(jax.random.key(3), 3)
    binary = {s: _binary(k, 200, p, 10) for s, k, p in zip(("train", "valid", "test"), ks,
                                                            (0.3, 0.35, 0.4), strict=True)}  # fmt: skip
    res = rbm_results(jax.random.key(4), params, binary, n_chains=64, n_temps=500,
                      reverse_burn_in=20, dataset="toy", protocol="bernoulli draws")  # fmt: skip
    exact_ll = {s: float(jnp.mean(exact.rbm_log_likelihood(params, jnp.asarray(v))))
                for s, v in binary.items()}  # fmt: skip
    test = res["test_loglik"]
    assert test.method == "ais_bracket" and test.split == "test" and test.dataset == "toy"
    assert test.lower <= exact_ll["test"] <= test.upper
    assert res["log_z_forward"] == test.extras["log_z_forward"]
    assert res["log_z_forward"] == pytest.approx(float(exact.rbm_log_partition(params)), abs=0.05)
    for s in ("train", "valid"):
        got = res[f"{s}_loglik_nats"] - test.value
        assert got == pytest.approx(exact_ll[s] - exact_ll["test"], abs=1e-3), s
    assert res["n_train"] == 200


def test_rbm_monitor_is_exact_for_independent_pixels():
    """With W = 0 every pixel is an independent Bernoulli(σ(b_i)), so on all-zero validation
    digits and all-one training digits (b_i = β): the reconstruction is σ(β) everywhere
    (error D σ(β)²), mean F(valid) - mean F(train) = Σ b_i = D β, and log P(v_i | v_-i) =
    log σ(-β) for every pixel, so the stochastic pseudo-log-likelihood is D log σ(-β)
    whichever pixel it draws.  float32 arithmetic: 1e-4 relative."""
    D, H, beta = 12, 5, -1.3
    params = rbm.RBMParams(W=jnp.zeros((D, H)), b=jnp.full(D, beta), c=jnp.linspace(-1, 1, H))
    out = rbm_monitor(jax.random.key(0), params, jnp.ones((7, D)), jnp.zeros((9, D)))
    s = 1 / (1 + np.exp(-beta))
    assert out["recon_error_valid"] == pytest.approx(D * s**2, rel=1e-4)
    assert out["free_energy_gap_valid_minus_train"] == pytest.approx(D * beta, rel=1e-4)
    assert out["pseudo_loglik_valid"] == pytest.approx(D * np.log(1 - s), rel=1e-4)


def test_rbm_pictures_show_the_chains_means_and_the_filters():
    """samples.png tiles P(v | h) of the given states (σ(b + W h), float32: 1e-6); filters.png
    the first min(100, H) columns of W."""
    params = random_rbm(5, 784, 3, scale=0.1)
    h = jnp.asarray(np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    final = rbm.RBMState(v=jnp.zeros((4, 784)), h=h)
    pics = rbm_pictures(params, final, 7)
    img, title = pics["samples.png"]
    assert "7 Gibbs sweeps" in title and img.min() >= 0 and img.max() <= 1
    first = np.asarray(jax.nn.sigmoid(params.b + params.W[:, 0])).reshape(28, 28)
    assert np.allclose(img[1:29, 1:29], first, atol=1e-6)  # the first tile, after 1 px padding
    assert "first 3 filters" in pics["filters.png"][1]
