"""VAE / IWAE bounds, output distributions and discrete-latent estimators (§20.9, §20.10.3).

Exact references:
* a linear-Gaussian VAE (``hidden=()``, Gaussian output with a learned per-pixel scale):
  ``p(z) = N(0, I)``, ``p(x|z) = N(K^T z + b, diag σ²)``, so ``log p(x)`` is the Gaussian
  ``N(x; b, K^T K + diag σ²)`` and the ELBO of a diagonal Gaussian ``q`` has a closed form;
* a tiny categorical-latent VAE (2 variables x 3 classes), where ``log p(x)`` and the ELBO
  are sums over the 9 codes.
Tolerances are CLT z-bounds (z = 5, see tests/_stats.py) plus a float32 floor, derived in
each docstring.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from egm import random_bits as rb
from egm.errors import ConfigError
from egm.estimators.importance import importance_log_likelihood
from egm.models import vae

Z = 5.0
F32_FLOOR = 1e-4  # float32 round-off of sums of ~10 terms of size ~10, relative


# ----------------------------------------------------------------------------------------
# Linear-Gaussian VAE with analytic marginal and ELBO
# ----------------------------------------------------------------------------------------

D, L = 4, 2


def _lin_model():
    return vae.VAE(
        x_dim=D, latent_dim=L, hidden=(), likelihood="gaussian", gaussian_scale="learned"
    )


def _lin_params(exact_posterior: bool, seed: int = 0):
    """Decoder with orthogonal columns and isotropic noise, so the exact posterior is a
    diagonal Gaussian whose mean is affine in x and whose covariance is constant: the
    encoder can represent it exactly (``exact_posterior=True``) or be perturbed."""
    rng = np.random.default_rng(seed)
    q_mat, _ = np.linalg.qr(rng.normal(size=(D, L)))
    scales = np.array([1.5, 0.7])
    Wd = (q_mat * scales).T  # K: (L, D), rows orthogonal
    b = rng.normal(size=D) * 0.3
    log_sig = np.full(D, math.log(0.5))
    s2 = math.exp(2 * log_sig[0])
    post_var = 1.0 / (1.0 + (scales**2) / s2)  # (L,)
    A = (Wd / s2).T * post_var  # (D, L): mu = (x - b) K^T / s2 * post_var
    c = -b @ A
    d = 0.5 * np.log(post_var)
    Bm = np.zeros((D, L))
    if not exact_posterior:
        A = A + rng.normal(size=A.shape) * 0.3
        c = c + 0.4
        Bm = rng.normal(size=(D, L)) * 0.1
        d = d + 0.3
    f = lambda a: jnp.asarray(a, jnp.float32)
    return {
        "params": {
            "encoder": {
                "q_mu": {"kernel": f(A), "bias": f(c)},
                "q_log_sigma": {"kernel": f(Bm), "bias": f(d)},
            },
            "decoder": {"p_out": {"kernel": f(Wd), "bias": f(b)}, "p_log_scale": f(log_sig)},
        }
    }


def _exact_log_px(params, x):
    p = params["params"]["decoder"]
    K = p["p_out"]["kernel"]
    cov = K.T @ K + jnp.diag(jnp.exp(2 * p["p_log_scale"]))
    r = x - p["p_out"]["bias"]
    _, logdet = jnp.linalg.slogdet(cov)
    return -0.5 * (D * math.log(2 * math.pi) + logdet + r @ jnp.linalg.solve(cov, r))


def _exact_elbo(params, x):
    """``E_q log p(x|z) + E_q log p(z) + H[q]`` in closed form for ``q = N(m, diag s²)``."""
    e, dd = params["params"]["encoder"], params["params"]["decoder"]
    m = x @ e["q_mu"]["kernel"] + e["q_mu"]["bias"]
    log_s = x @ e["q_log_sigma"]["kernel"] + e["q_log_sigma"]["bias"]
    s2 = jnp.exp(2 * log_s)
    K, b, ls = dd["p_out"]["kernel"], dd["p_out"]["bias"], dd["p_log_scale"]
    mean = m @ K + b
    var_mean = (K**2).T @ s2  # Var_q of each output mean
    e_lik = jnp.sum(
        -0.5 * math.log(2 * math.pi) - ls - ((x - mean) ** 2 + var_mean) / (2 * jnp.exp(2 * ls))
    )
    e_prior = jnp.sum(-0.5 * math.log(2 * math.pi) - 0.5 * (m**2 + s2))
    entropy = jnp.sum(0.5 * math.log(2 * math.pi * math.e) + log_s)
    return e_lik + e_prior + entropy


X0 = jnp.array([0.3, -1.2, 0.8, 0.1])


def _replicates(fn, n, seed=0):
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(jax.jit(jax.vmap(fn))(keys), np.float64)


def test_exact_posterior_makes_every_bound_exact():
    """With ``q(z|x) = p(z|x)`` every weight equals ``p(x)``: ELBO = IWAE_k = log p(x) for any
    draw (float32 floor only)."""
    m, p = _lin_model(), _lin_params(exact_posterior=True)
    truth = float(_exact_log_px(p, X0))
    lw = vae.log_weights(jax.random.key(0), m, p, X0, 64)
    np.testing.assert_allclose(np.asarray(lw), truth, atol=F32_FLOOR * (1 + abs(truth)))
    assert float(_exact_elbo(p, X0)) == pytest.approx(truth, abs=F32_FLOOR * (1 + abs(truth)))
    for k in (1, 7):
        got = float(vae.iwae_bound(jax.random.key(k), m, p, X0, k))
        assert got == pytest.approx(truth, abs=F32_FLOOR * (1 + abs(truth)))


@pytest.mark.parametrize("analytic_kl", [True, False])
def test_elbo_estimator_is_unbiased(analytic_kl):
    """Mean of M = 4000 single-draw ELBO estimates vs the closed form: the estimates are iid,
    so ``|mean - L| / (sd/√M)`` is ~N(0,1) (CLT); fail above z = 5 (p ≈ 6e-7).  The analytic-KL
    estimator must also have smaller variance than the Monte-Carlo-KL one (checked via sd)."""
    m, p = _lin_model(), _lin_params(exact_posterior=False)
    truth = float(_exact_elbo(p, X0))
    est = _replicates(lambda k: vae.elbo(k, m, p, X0, 1, analytic_kl=analytic_kl), 4000)
    se = est.std(ddof=1) / math.sqrt(len(est))
    assert abs(est.mean() - truth) < Z * se + F32_FLOOR * abs(truth), (est.mean(), truth, se)
    # and the bound is strictly below log p(x) here (q is not the posterior)
    assert truth < float(_exact_log_px(p, X0)) - 0.05


def test_bounds_are_ordered_and_converge_to_log_px():
    """``E L_1 <= E L_k <= E L_{k+1} <= log p(x)`` (Burda et al. 2016, Thm 1).

    For each k, M = 3000 iid replicates of the one-draw estimate of ``L_k``; each mean has
    standard error ``se_k = sd_k/√M``.  An ordering ``E L_a <= E L_b`` is rejected only if
    ``mean_a - mean_b > 5 sqrt(se_a² + se_b²)`` (one-sided CLT bound, p < 3e-7).  Power:
    the gaps ``L_50 - L_1`` and ``log p - L_1`` must be *significant* (> 5 combined se),
    so the ordering test is not vacuous.  Convergence: the importance-sampling estimate
    with k = 5000 (:func:`importance_log_likelihood`) must lie within
    ``5·mc_se + mc_se²`` of the exact ``log p(x)``; ``mc_se`` is its delta-method
    Monte-Carlo standard error and ``mc_se²`` bounds its Jensen bias to first order
    (``log p - E L_k ≈ Var(w)/(2k p²) = mc_se²/2``)."""
    m, p = _lin_model(), _lin_params(exact_posterior=False)
    truth = float(_exact_log_px(p, X0))
    ks = (1, 2, 5, 50)
    stats = {}
    for k in ks:
        est = _replicates(lambda kk, k=k: vae.iwae_bound(kk, m, p, X0, k), 3000, seed=k)
        stats[k] = (est.mean(), est.std(ddof=1) / math.sqrt(len(est)))
    for a, b in itertools.pairwise(ks):
        (ma, sa), (mb, sb) = stats[a], stats[b]
        assert ma - mb < Z * math.hypot(sa, sb), (a, b, stats)
    for k in ks:
        assert stats[k][0] < truth + Z * stats[k][1]
    (m1, s1), (m50, s50) = stats[1], stats[50]
    assert m50 - m1 > Z * math.hypot(s1, s50)
    assert truth - m1 > Z * s1
    res = importance_log_likelihood(
        jax.random.key(9), Partial(vae.log_weights_fn(m), p), X0[None], 5000
    )
    se = float(res.mc_stderr[0])
    assert abs(float(res.per_example[0]) - truth) < Z * se + se**2 + 1e-4, (res, truth)


def test_reparameterised_elbo_gradient_matches_analytic():
    """The reparameterised gradient (§20.9) of the one-draw ELBO, averaged over M = 4000
    iid draws, vs ``jax.grad`` of the closed-form ELBO, for every parameter coordinate:
    ``|mean - truth| < 5 sd/√M + 1e-4 (1 + |truth|)`` (CLT bound per coordinate; with
    ~30 coordinates the chance of a false failure is < 2e-5; the floor is float32
    round-off, for coordinates whose per-draw gradient has zero variance)."""
    m, p = _lin_model(), _lin_params(exact_posterior=False, seed=1)
    truth = jax.jit(jax.grad(_exact_elbo))(p, X0)
    for analytic_kl in (True, False):

        def g1(key, analytic_kl=analytic_kl):
            return jax.grad(lambda pp: vae.elbo(key, m, pp, X0, 1, analytic_kl=analytic_kl))(p)

        grads = jax.jit(jax.vmap(g1))(jax.random.split(jax.random.key(3), 4000))
        for path, g in jax.tree_util.tree_leaves_with_path(grads):
            t = np.asarray(_get(truth, path), np.float64)
            g = np.asarray(g, np.float64)
            se = g.std(0, ddof=1) / math.sqrt(g.shape[0])
            err = np.abs(g.mean(0) - t)
            assert np.all(err < Z * se + F32_FLOOR * (1 + np.abs(t))), (path, err, se)


def _get(tree, path):
    for k in path:
        tree = tree[k.key]
    return tree


# ----------------------------------------------------------------------------------------
# Tiny categorical-latent VAE, by enumeration
# ----------------------------------------------------------------------------------------


def _cat_model():
    return vae.VAE(x_dim=5, latent_dim=2, n_classes=3, hidden=(), latent="categorical")


def _cat_setup(seed=0):
    m = _cat_model()
    p = vae.init_params(jax.random.key(seed), m)
    p = jax.tree_util.tree_map(lambda a: a * 2.0 + 0.1, p)  # non-trivial q and p
    x = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0])
    return m, p, x


def _codes():
    idx = np.array(list(itertools.product(range(3), repeat=2)))
    return jnp.asarray(jax.nn.one_hot(idx, 3))  # (9, 2, 3)


def _exact_cat(m, p, x):
    codes = _codes()
    logits = m.apply(p, x, method=vae.VAE.encode)
    logq = jnp.sum(codes * jax.nn.log_softmax(logits, -1), axis=(-2, -1))
    out = m.apply(p, codes, method=vae.VAE.decode)
    log_joint = vae.bernoulli_log_prob(out, x) - 2 * math.log(3)
    log_px = jax.nn.logsumexp(log_joint)
    elbo = jnp.sum(jnp.exp(logq) * (log_joint - logq))
    return log_px, elbo


def test_categorical_bounds_against_enumeration():
    """Categorical latents: MC ELBO (both KL forms) unbiased for the enumerated ELBO, and
    the k = 5000 importance-sampling estimate equal to the enumerated log p(x), with the
    tolerances derived in the two Gaussian tests above."""
    m, p, x = _cat_setup()
    log_px, exact_elbo = (float(v) for v in _exact_cat(m, p, x))
    assert exact_elbo < log_px
    for analytic_kl in (True, False):
        est = _replicates(lambda k, a=analytic_kl: vae.elbo(k, m, p, x, 1, analytic_kl=a), 4000)
        se = est.std(ddof=1) / math.sqrt(len(est))
        assert abs(est.mean() - exact_elbo) < Z * se + F32_FLOOR * abs(exact_elbo)
    res = importance_log_likelihood(
        jax.random.key(1), Partial(vae.log_weights_fn(m), p), x[None], 5000
    )
    se = float(res.mc_stderr[0])
    assert abs(float(res.log_likelihood) - log_px) < Z * se + se**2 + 1e-4


def test_reinforce_surrogate_gradient_is_unbiased():
    """The REINFORCE surrogate of :func:`vae.discrete_elbo_surrogate` (score function with
    the leave-one-out baseline + pathwise decoder term + closed-form KL gradient): the
    mean of M = 6000 per-call gradients vs ``jax.grad`` of the enumerated ELBO, per
    coordinate within a 5-sd CLT bound plus the float32 floor (as in the Gaussian gradient
    test).  Power: the mean Gumbel-Softmax gradient at τ = 2 (a biased estimator) must be
    rejected by the same bound on at least one coordinate.  Its *value* output is the
    one-draw ELBO estimate, unbiased too."""
    m, p, x = _cat_setup(seed=2)
    truth = jax.grad(lambda pp: _exact_cat(m, pp, x)[1])(p)

    def per_call(est, tau):
        def g(key):
            return jax.grad(lambda pp: vae.discrete_elbo_surrogate(key, m, pp, x, est, tau)[0])(p)

        return jax.jit(jax.vmap(g))(jax.random.split(jax.random.key(5), 6000))

    def max_excess(grads):
        worst = -np.inf
        for path, g in jax.tree_util.tree_leaves_with_path(grads):
            t = np.asarray(_get(truth, path), np.float64)
            g = np.asarray(g, np.float64)
            se = g.std(0, ddof=1) / math.sqrt(g.shape[0])
            worst = max(
                worst, float(np.max(np.abs(g.mean(0) - t) - Z * se - F32_FLOOR * (1 + np.abs(t))))
            )
        return worst

    assert max_excess(per_call("reinforce", 1.0)) < 0
    assert max_excess(per_call("gumbel", 2.0)) > 0
    vals = _replicates(lambda k: vae.discrete_elbo_surrogate(k, m, p, x, "reinforce")[1], 4000)
    exact_elbo = float(_exact_cat(m, p, x)[1])
    assert abs(vals.mean() - exact_elbo) < Z * vals.std(ddof=1) / math.sqrt(len(vals)) + 1e-3


def test_gumbel_estimators_run_and_straight_through_sees_one_hot():
    m, p, x = _cat_setup()
    for est in ("gumbel", "st_gumbel"):
        sur, val = vae.discrete_elbo_surrogate(jax.random.key(0), m, p, x, est, 0.5)
        assert np.isfinite(float(sur)) and float(sur) == pytest.approx(float(val))
    # straight-through value equals the log-joint of a discrete code (<= log p(x) - ... is
    # not a bound for one draw, but it must equal log p(x|z) - KL for some one-hot z)
    _, val = vae.discrete_elbo_surrogate(jax.random.key(0), m, p, x, "st_gumbel", 0.5)
    logits = m.apply(p, x, method=vae.VAE.encode)
    kl = float(vae.categorical_kl_uniform(logits))
    codes = _codes()
    liks = np.asarray(vae.bernoulli_log_prob(m.apply(p, codes, method=vae.VAE.decode), x))
    assert np.min(np.abs(liks - kl - float(val))) < 1e-4
    with pytest.raises(ConfigError, match="estimator"):
        vae.discrete_elbo_surrogate(jax.random.key(0), m, p, x, "score", 1.0)


# ----------------------------------------------------------------------------------------
# Output distributions, architectures, invariants
# ----------------------------------------------------------------------------------------


def test_discretized_logistic_sums_to_one_over_the_bins():
    """The 256 bin probabilities of each pixel sum to 1 (edge bins take the tails), for
    means inside and outside [0, 1] and scales from tiny to wide."""
    bins = jnp.arange(256) / 255.0
    for mean, log_scale in [(0.3, -3.0), (0.0, -6.0), (1.2, 0.5), (-0.5, -1.0), (0.5, -9.0)]:
        lp = jax.vmap(
            lambda v: vae.discretized_logistic_log_prob(
                jnp.full((1,), mean), jnp.full((1,), log_scale), jnp.full((1,), v)
            )
        )(bins)
        assert float(jnp.sum(jnp.exp(lp))) == pytest.approx(1.0, abs=2e-4), (mean, log_scale)


def test_bernoulli_and_gaussian_log_probs():
    a = jnp.array([0.3, -2.0, 4.0])
    x = jnp.array([1.0, 0.0, 1.0])
    p = jax.nn.sigmoid(a)
    ref = jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))
    assert float(vae.bernoulli_log_prob(a, x)) == pytest.approx(float(ref), rel=1e-5)
    mu, ls = jnp.array([0.1, 0.2, 0.3]), jnp.array([-1.0, 0.0, 0.5])
    s = jnp.exp(ls)
    ref = jnp.sum(-0.5 * ((x - mu) / s) ** 2 - jnp.log(s * jnp.sqrt(2 * jnp.pi)))
    assert float(vae.gaussian_log_prob(mu, ls, x)) == pytest.approx(float(ref), rel=1e-5)


def _fast_and_reference_draws():
    """One jitted function returning pairs (fast draw, ``jax.random`` draw) for one key:
    split, uniform on an odd-sized (3, 7) range [-1, 2), Bernoulli, normal vmapped over keys."""

    def draws(k, ks, p, split, uniform, normal, bernoulli):
        return (
            jax.random.key_data(split(k, 5)), uniform(k, (3, 7), -1.0, 2.0), bernoulli(k, p),
            jax.vmap(lambda kk: normal(kk, (1, 5)))(ks),
        )  # fmt: skip

    def ref_uniform(k, s, lo, hi):
        return jax.random.uniform(k, s, minval=lo, maxval=hi)

    def ref_bernoulli(k, p):
        return jax.random.bernoulli(k, p).astype(jnp.float32)

    fast = (rb.fast_split, rb.fast_uniform, rb.fast_normal, rb.fast_bernoulli)
    ref = (jax.random.split, ref_uniform, jax.random.normal, ref_bernoulli)

    @jax.jit
    def both(k, ks, p):
        return draws(k, ks, p, *fast), draws(k, ks, p, *ref)

    return both


def _assert_fast_draws_equal_jax_random(partitionable):
    with jax.threefry_partitionable(partitionable):
        key = jax.random.key(7)
        got, want = _fast_and_reference_draws()(
            key, jax.random.split(key, 3), jnp.linspace(0.0, 1.0, 33).reshape(3, 11)
        )
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(
            np.asarray(g), np.asarray(w), f"partitionable={partitionable}"
        )


def test_fast_draws_are_jax_randoms_own_stream():
    """``fast_split`` / ``fast_uniform`` / ``fast_normal`` / ``fast_bernoulli`` (the VAE
    losses' draws, the Threefry hash unrolled) return bit for bit what ``jax.random``
    returns for the same key under ``jax_threefry_partitionable=False`` (the experiments'
    and benchmarks' CPU setting), for odd and even sizes, jitted and vmapped over keys.
    Exact equality: the same integer hash and the same float operations.  (The other
    setting and the non-threefry fallback: the slow test below.)"""
    _assert_fast_draws_equal_jax_random(False)
    # a fixed layout: partitionable=False gives that setting's numbers under either setting
    key = jax.random.key(5)
    with jax.threefry_partitionable(False):
        want = jax.random.uniform(key, (3, 7))
    with jax.threefry_partitionable(True):
        got = jax.jit(lambda k: rb.fast_uniform(k, (3, 7), partitionable=False))(key)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.slow  # the default test above keeps the claim for the experiments' RNG setting
def test_fast_draws_partitionable_and_fallback():
    """As above under ``jax_threefry_partitionable=True`` (JAX's default); an ``rbg`` key
    falls back to ``jax.random`` (equal by construction)."""
    _assert_fast_draws_equal_jax_random(True)
    rbg = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(rb.fast_uniform(rbg, (5,)), jax.random.uniform(rbg, (5,)))


def _make_loss_against_jax_random(ks):
    from egm.distributions import bernoulli_log_prob
    from egm.estimators.gradients import reparam_gaussian

    m = vae.VAE(x_dim=12, latent_dim=3, hidden=(8,))
    p = vae.init_params(jax.random.key(0), m)
    grey = jax.random.uniform(jax.random.key(1), (6, 12))

    def reference(params, batch, key, k):
        k_bin, k_z = jax.random.split(key)
        x = jax.random.bernoulli(k_bin, batch).astype(jnp.float32)

        def one(kk, xi):
            mu, ls = m.apply(params, xi, method=vae.VAE.encode)
            z = reparam_gaussian(kk, mu, ls, k)
            ll = bernoulli_log_prob(m.apply(params, z, method=vae.VAE.decode), xi)
            return jnp.mean(ll) - vae.gaussian_kl(mu, ls)

        return -jnp.mean(jax.vmap(one)(jax.random.split(k_z, x.shape[0]), x))

    losses = [vae.make_loss(m, "elbo", k, dynamic_binarization=True) for k in ks]

    @jax.jit
    def both(pp, b, kk):
        return [(loss(pp, b, kk)[0], reference(pp, b, kk, k)) for loss, k in zip(losses, ks, strict=True)]  # fmt: skip

    for got, want in both(p, grey, jax.random.key(4)):
        assert float(got) == pytest.approx(float(want), rel=1e-5)


@pytest.mark.slow  # test_fast_draws_are_jax_randoms_own_stream keeps the bit-equality claim
def test_make_loss_draws_the_jax_random_stream():
    """``make_loss`` with k = 1 (dynamic binarization, per-example keys, reparameterised
    draws, the decoder fed the one code) equals the same loss written with ``jax.random``,
    ``reparam_gaussian`` and ``egm.distributions.bernoulli_log_prob`` (the definition before
    the fast draws): the same draws, so the values agree to float32 round-off of sums of
    ~20 terms of size ~10 (rel 1e-5)."""
    _make_loss_against_jax_random((1,))


@pytest.mark.slow  # as above, with k = 3 draws per example
def test_make_loss_draws_the_jax_random_stream_k3():
    """As above with k = 3 draws per example (the stack of codes decoded together)."""
    _make_loss_against_jax_random((3,))


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(
            dict(architecture="conv", likelihood="logistic", latent="categorical", latent_dim=4),
            marks=pytest.mark.slow,
        ),
        pytest.param(dict(architecture="conv", likelihood="bernoulli"), marks=pytest.mark.slow),
        pytest.param(
            dict(architecture="mlp", likelihood="gaussian", hidden=(32,)), marks=pytest.mark.slow
        ),
    ],
)
def test_architectures_shapes_and_finite_gradients(kwargs):
    """Conv and MLP encoders/decoders with each output distribution: shapes, finite loss and
    gradients, generation and reconstruction (8x8 images keep compilation short)."""
    conv = dict(image_shape=(8, 8, 1), conv_channels=(4, 8), hidden=(16,))
    m = vae.VAE(x_dim=64, latent_dim=kwargs.pop("latent_dim", 3), **(conv | kwargs))
    p = vae.init_params(jax.random.key(0), m)
    x = jax.random.uniform(jax.random.key(1), (3, 64))
    x = jnp.round(x * 255) / 255
    if m.latent == "categorical":
        loss = vae.make_discrete_loss(m, "gumbel", 0.5)
    else:
        loss = vae.make_loss(m, "iwae", 3)
    (val, _), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(p, x, jax.random.key(2))
    assert np.isfinite(float(val))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree_util.tree_leaves(g))
    assert vae.reconstruct(m, p, x).shape == (3, 64)
    smp = vae.generate(jax.random.key(3), m, p, 5, mean=False)
    assert smp.shape == (5, 64) and np.all(np.isfinite(np.asarray(smp)))


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
def test_conv_networks_shapes():
    """Conv encoder/decoder (stride-2 convolutions, mirrored transposed convolutions): output
    shapes for a batch and for one example, and the two-channel (mean, log-scale) output of a
    logistic decoder.  (Gradients of the conv nets: the ``slow`` parametrisations above.)"""
    m = vae.VAE(
        x_dim=64, latent_dim=3, hidden=(16,), architecture="conv", image_shape=(8, 8, 1),
        conv_channels=(4, 8), likelihood="logistic",
    )  # fmt: skip
    p = vae.init_params(jax.random.key(0), m)
    x = jnp.zeros((5, 64))
    mu, log_sigma = m.apply(p, x, method=vae.VAE.encode)
    assert mu.shape == log_sigma.shape == (5, 3)
    mean, log_scale = m.apply(p, mu, method=vae.VAE.decode)
    assert mean.shape == log_scale.shape == (5, 64)
    assert m.apply(p, x[0], method=vae.VAE.encode)[0].shape == (3,)
    assert m.apply(p, mu[0], method=vae.VAE.decode)[0].shape == (64,)


@pytest.mark.slow  # 8 s cold (eager); the bounds' exact checks stay in the default suite
def test_same_key_same_output_and_jit_equals_nojit():
    m = vae.VAE(x_dim=20, latent_dim=3, hidden=(8,))
    p = vae.init_params(jax.random.key(0), m)
    x = (jax.random.uniform(jax.random.key(1), (6, 20)) > 0.5).astype(jnp.float32)
    loss = vae.make_loss(m, "iwae", 5, dynamic_binarization=True)
    a = loss(p, x, jax.random.key(4))[0]  # op by op
    b = jax.jit(loss)(p, x, jax.random.key(4))[0]
    c = jax.jit(loss)(p, x, jax.random.key(4))[0]
    assert float(b) == float(c)
    assert float(c) == pytest.approx(float(a), rel=1e-5)
    assert float(jax.jit(loss)(p, x, jax.random.key(5))[0]) != float(a)
    per = vae.bound_on_data(jax.random.key(0), m, p, x, k=5, batch_size=4)
    assert per.shape == (6,) and np.all(np.asarray(per) < 0)


def test_bad_configs_raise_clear_errors():
    with pytest.raises(ConfigError, match="likelihood"):
        vae.init_params(jax.random.key(0), vae.VAE(likelihood="poisson"))
    with pytest.raises(ConfigError, match="conv VAE needs"):
        vae.init_params(jax.random.key(0), vae.VAE(x_dim=100, architecture="conv"))
    with pytest.raises(ConfigError, match="objective"):
        vae.make_loss(vae.VAE(), "wake-sleep")
    with pytest.raises(ConfigError, match="k must be"):
        vae.make_loss(vae.VAE(), "iwae", 0)
    with pytest.raises(ConfigError, match="categorical"):
        vae.discrete_elbo_surrogate(jax.random.key(0), vae.VAE(), None, jnp.zeros(784), "reinforce")


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_generated_binary_samples_follow_the_exact_marginal(latent):
    """``vae.generate(..., mean=False)`` (the experiments' sampler: ``z ~ p(z)``, then
    ``x ~ Bernoulli(E[x|z])``) on a 4-pixel VAE with enlarged weights: the histogram of
    M = 20000 draws over the 16 images is within TV of the exact ``p(x) = E_z Π_d p(x_d|z)``
    — a sum over the 9 codes of 2 categorical latents of 3 classes, or a Riemann sum of
    ``N(z; 0, 1) p(x|z)`` on ``[-8, 8]`` over one Gaussian latent (prior mass outside below
    e^{-32}; error bounded by the distance between spacings 0.01 and 0.02, asserted < 1e-5).
    Tolerance: the E[TV] + McDiarmid bound of tests/_stats.py at δ = 1e-6, plus that bound."""
    from _stats import histogram, tv, tv_tolerance

    from egm.estimators import exact

    cat = latent == "categorical"
    m = vae.VAE(x_dim=4, latent_dim=2 if cat else 1, n_classes=3, latent=latent, hidden=(5,))
    p = jax.tree_util.tree_map(lambda a: 3.0 * a, vae.init_params(jax.random.key(0), m))
    states = np.asarray(exact.all_binary_states(4))

    def p_exact(h):
        if cat:
            z = jnp.asarray([np.eye(3)[list(c)] for c in itertools.product(range(3), repeat=2)])
            w = np.full(9, 1 / 9)
        else:
            t = np.arange(-8.0, 8.0 + h / 2, h)
            z, w = (
                jnp.asarray(t[:, None], jnp.float32),
                np.exp(-0.5 * t**2) * h / np.sqrt(2 * np.pi),
            )
        mean = np.asarray(jax.nn.sigmoid(m.apply(p, z, method=vae.VAE.decode)), np.float64)
        return np.prod(np.where(states[:, None] == 1, mean, 1 - mean), -1) @ w

    probs = p_exact(0.01)
    assert cat or np.abs(probs - p_exact(0.02)).max() < 1e-5
    assert probs.sum() == pytest.approx(1.0, abs=1e-5) and probs.max() > 2.0 / 16
    x = vae.generate(jax.random.key(1), m, p, 20000, mean=False)
    assert set(np.unique(np.asarray(x))) <= {0.0, 1.0}
    hist = histogram(np.asarray(exact.state_index(x)), 16)
    assert tv(hist, probs) < tv_tolerance(probs, 20000) + 1e-5
