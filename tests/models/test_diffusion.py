"""Diffusion models (§20.13, egm.models.diffusion) against exact answers.

The exact problem: 1-D data ``x_0 ~ N(μ, s²)`` and a reverse process whose ``ε_θ`` is linear
in ``x_t`` (the optimal one for Gaussian data, ``E[ε | x_t]``), so every ``p_θ(x_{t-1} | x_t)``
is a linear-Gaussian map and everything is computable in float64 by hand: the model's marginal
``p_θ(x_0) = N(m, v)``, each expected term of the bound (a Gaussian expectation of a quadratic),
and the bound's value.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError
from egm.models import diffusion as dm
from egm.train.state import TrainState

MU, S = 0.7, 0.5
BETAS = np.array([0.1, 0.2, 0.3, 0.5])


def _linear_eps(betas):
    """Params ``(w, c)`` of ``ε(x_t) = w_t x_t + c_t = E[ε | x_t]`` for ``x_0 ~ N(MU, S²)``:
    ``Cov(ε, x_t) / Var(x_t) (x_t - E x_t)``, ``Var x_t = ᾱ s² + 1 - ᾱ``."""
    ab = np.cumprod(1 - betas)
    v = ab * S**2 + 1 - ab
    w = np.sqrt(1 - ab) / v
    return w, -w * np.sqrt(ab) * MU


def _eps_fn(params, x, i):
    w, c = params
    return w[i][:, None] * x + c[i][:, None]


def _exact(betas):
    """float64: per-step linear reverse maps ``x_{t-1} = A x_t + B + σ z``, the expected
    bound terms ``[L_0, L_1, ..., L_{T-1}]`` and ``L_T``, the model marginal ``N(m, v)``."""
    T = len(betas)
    a, ab = 1 - betas, np.cumprod(1 - betas)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    c1, c2 = betas * np.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * np.sqrt(a) / (1 - ab)
    post = betas * (1 - ab_prev) / (1 - ab)
    sig2 = np.concatenate([[post[1]], betas[1:]])  # "large": β_t, β̃_2 at t = 1
    w, c = _linear_eps(betas)
    A = (1 - betas * w / np.sqrt(1 - ab)) / np.sqrt(a)
    B = -betas * c / (np.sqrt(1 - ab) * np.sqrt(a))
    terms = np.zeros(T)
    k0 = 1 - A[0] * np.sqrt(ab[0])  # x0 - A x1 - B = k0 x0 - B - A √(1-ᾱ) ε
    e2 = (k0 * MU - B[0]) ** 2 + k0**2 * S**2 + A[0] ** 2 * (1 - ab[0])
    terms[0] = 0.5 * math.log(2 * math.pi * sig2[0]) + e2 / (2 * sig2[0])
    for i in range(1, T):  # μ̃ - μθ = k x0 - B + (c2 - A) √(1-ᾱ) ε
        k = c1[i] + (c2[i] - A[i]) * np.sqrt(ab[i])
        e2 = (k * MU - B[i]) ** 2 + k**2 * S**2 + (c2[i] - A[i]) ** 2 * (1 - ab[i])
        terms[i] = 0.5 * (np.log(sig2[i] / post[i]) + post[i] / sig2[i] + e2 / sig2[i] - 1)
    prior = 0.5 * (-np.log(1 - ab[-1]) + (1 - ab[-1]) + ab[-1] * (MU**2 + S**2) - 1)
    m, v = 0.0, 1.0
    for i in range(T - 1, -1, -1):
        m, v = A[i] * m + B[i], A[i] ** 2 * v + sig2[i]
    return dict(A=A, B=B, sig2=sig2, terms=terms, prior=prior, m=m, v=v)


def test_forward_marginals_compose_to_the_closed_form():
    """Composing the one-step kernels ``q(x_t | x_{t-1}) = N(√α_t x, β_t)`` analytically gives
    mean ``∏√α_s x_0`` and variance ``v_t = α_t v_{t-1} + β_t`` (float64); the schedule's
    closed form ``√ᾱ_t``, ``1 - ᾱ_t`` is float32: relative error a few float32 ulps
    (≤ 2e-6 over 1000 products)."""
    for betas in (dm.linear_betas(1000), dm.cosine_betas(200), dm.sohl_dickstein_betas(50)):
        s = dm.make_schedule(betas)
        mean_coef = np.cumprod(np.sqrt(1 - betas))
        var, v = [], 0.0
        for b in betas:
            v = (1 - b) * v + b
            var.append(v)
        np.testing.assert_allclose(np.asarray(s.sqrt_alpha_bars), mean_coef, rtol=2e-6)
        np.testing.assert_allclose(np.asarray(1 - s.alpha_bars), var, rtol=2e-6, atol=1e-7)
        x0 = jnp.array([[0.3, -1.0]])
        m, vv = jax.jit(dm.q_mean_variance)(s, x0, jnp.array([len(betas) - 1]))
        np.testing.assert_allclose(np.asarray(m), mean_coef[-1] * np.array([[0.3, -1.0]]),
                                   rtol=2e-6, atol=1e-7)  # fmt: skip
        np.testing.assert_allclose(np.asarray(vv), var[-1], rtol=2e-6)


def test_forward_chain_samples_match_the_closed_form():
    """x_t drawn by chaining the one-step kernels (a ``lax.scan``) from fixed ``x_0`` has the
    closed-form mean and variance: N = 40000 chains, mean within 5 s.e. (``sqrt(v/N)``) and
    variance within 5 s.e. of a Gaussian sample variance (``v sqrt(2/(N-1))``); false alarm
    < 1e-5 over the 2 x 3 checks."""
    s = dm.make_schedule(BETAS)
    N, x0 = 40000, jnp.full((40000, 1), 1.5)

    def one(x, inp):
        k, b = inp
        x = jnp.sqrt(1 - b) * x + jnp.sqrt(b) * jax.random.normal(k, x.shape)
        return x, x

    keys = jax.random.split(jax.random.key(0), len(BETAS))
    _, xs = jax.lax.scan(one, x0, (keys, jnp.asarray(BETAS, jnp.float32)))
    for i in (0, 2, 3):
        m, v = 1.5 * float(s.sqrt_alpha_bars[i]), 1.0 - float(s.alpha_bars[i])
        x = np.asarray(xs[i, :, 0], np.float64)
        assert abs(x.mean() - m) < 5 * math.sqrt(v / N)
        assert abs(x.var(ddof=1) - v) < 5 * v * math.sqrt(2 / (N - 1))


def test_posterior_is_bayes_rule():
    """``q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0)``: precision ``α_t/β_t + 1/(1 -
    ᾱ_{t-1})`` and mean ``var (√α_t x_t/β_t + √ᾱ_{t-1} x_0/(1 - ᾱ_{t-1}))`` in float64, against
    the float32 coefficients (relative 1e-5: a few ulps of the float64-computed, float32-rounded
    coefficients, amplified by the cancellation-free formulas at most 10x); at t = 1 the
    posterior is the point x_0 (variance 0, coefficients 1 and 0)."""
    for betas in (dm.linear_betas(1000), dm.cosine_betas(100)):
        s = dm.make_schedule(betas)
        a, ab = 1 - betas, np.cumprod(1 - betas)
        ab_prev = np.concatenate([[1.0], ab[:-1]])
        var = 1 / (a[1:] / betas[1:] + 1 / (1 - ab_prev[1:]))
        np.testing.assert_allclose(np.asarray(s.posterior_variance)[1:], var, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(s.posterior_mean_coef2)[1:],
                                   var * np.sqrt(a[1:]) / betas[1:], rtol=1e-5)  # fmt: skip
        np.testing.assert_allclose(np.asarray(s.posterior_mean_coef1)[1:],
                                   var * np.sqrt(ab_prev[1:]) / (1 - ab_prev[1:]), rtol=1e-5)  # fmt: skip
        assert float(s.posterior_variance[0]) == 0.0
        assert float(s.posterior_mean_coef1[0]) == pytest.approx(1.0, abs=1e-6)
        assert float(s.posterior_mean_coef2[0]) == 0.0
        x0, xt, i = jnp.array([[0.2, -0.4]]), jnp.array([[1.0, 0.5]]), jnp.array([7])
        mean, v, _ = dm.q_posterior(s, x0, xt, i)
        want = var[6] * (np.sqrt(a[7]) * np.asarray(xt) / betas[7]
                         + np.sqrt(ab_prev[7]) * np.asarray(x0) / (1 - ab_prev[7]))  # fmt: skip
        np.testing.assert_allclose(np.asarray(mean), want, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(v), var[6], rtol=1e-5)


def test_eps_mean_is_ho_eq_11():
    """Without clipping, the mean through x̂_0 equals Ho et al.'s eq. 11 (float32, 1e-5)."""
    s = dm.make_schedule(dm.linear_betas(50, 1e-3, 0.2))
    k1, k2 = jax.random.split(jax.random.key(1))
    xt, eps = jax.random.normal(k1, (8, 3)), jax.random.normal(k2, (8, 3))
    i = jnp.arange(8) * 6
    mean, _, _ = jax.jit(dm.p_mean_variance)(s, eps, xt, i)
    b, a, ab = (np.asarray(x)[np.asarray(i)][:, None] for x in (s.betas, s.alphas, s.alpha_bars))
    want = (np.asarray(xt) - b / np.sqrt(1 - ab) * np.asarray(eps)) / np.sqrt(a)
    np.testing.assert_allclose(np.asarray(mean), want, rtol=1e-5, atol=1e-5)


def test_bound_terms_match_the_exact_gaussian_problem_and_bound_the_nll():
    """On the exact problem (module docstring):

    1. the exact expected bound ``Σ_t L_t`` exceeds the model's exact NLL ``E -log N(x_0; m, v)``
       (their difference is ``E KL(q(x_{1:T}|x_0) || p_θ(x_{1:T}|x_0)) > 0``), which exceeds the
       data entropy;
    2. :func:`bound_terms`' per-step Monte-Carlo terms (N = 20000 draws of x_0, one x_t each)
       match each exact expected term within 5 standard errors of their sample mean, and its
       exact prior term ``L_T`` matches to float32 (1e-4 relative);
    3. the bound computed the other way, the unmatched form ``E_q[-log p(x_T) - Σ log p_θ(x_{t-1}
       | x_t) / q(x_t | x_{t-1})]`` over N forward trajectories (float64), matches the sum of
       the exact per-step terms within 5 of its standard errors: the decomposition is right.
    """
    ex = _exact(BETAS)
    bound = ex["terms"].sum() + ex["prior"]
    nll = 0.5 * math.log(2 * math.pi * ex["v"]) + ((MU - ex["m"]) ** 2 + S**2) / (2 * ex["v"])
    entropy = 0.5 * math.log(2 * math.pi * math.e * S**2)
    assert bound > nll + 1e-3 and nll > entropy

    s = dm.make_schedule(BETAS)
    N = 20000
    k_x, k_b, k_traj = jax.random.split(jax.random.key(2), 3)
    x0 = MU + S * jax.random.normal(k_x, (N, 1))
    params = tuple(jnp.asarray(p, jnp.float32) for p in _linear_eps(BETAS))
    terms, prior = jax.jit(dm.bound_terms, static_argnums=1, static_argnames="decoder")(
        k_b, _eps_fn, params, s, x0, decoder="gaussian"
    )
    terms, prior = np.asarray(terms, np.float64), np.asarray(prior, np.float64)
    for i in range(len(BETAS)):
        se = terms[:, i].std(ddof=1) / math.sqrt(N)
        assert abs(terms[:, i].mean() - ex["terms"][i]) < 5 * se, (i, terms[:, i].mean())
    xx = np.asarray(x0[:, 0], np.float64)
    ab = np.cumprod(1 - BETAS)[-1]
    prior_exact = 0.5 * (-np.log(1 - ab) + (1 - ab) + ab * xx**2 - 1)
    np.testing.assert_allclose(prior, prior_exact, rtol=1e-4, atol=1e-6)

    rng = np.random.default_rng(int(jax.random.randint(k_traj, (), 0, 2**30)))
    logn = lambda x, m, v: -0.5 * (np.log(2 * np.pi * v) + (x - m) ** 2 / v)  # noqa: E731
    x = MU + S * rng.standard_normal(N)
    path = [x]
    for b in BETAS:
        x = np.sqrt(1 - b) * x + np.sqrt(b) * rng.standard_normal(N)
        path.append(x)
    L = -logn(path[-1], 0.0, 1.0)
    for i, b in enumerate(BETAS):  # step t = i + 1: x_{t-1} = path[i], x_t = path[i + 1]
        L -= logn(path[i], ex["A"][i] * path[i + 1] + ex["B"][i], ex["sig2"][i])
        L += logn(path[i + 1], np.sqrt(1 - b) * path[i], b)
    assert abs(L.mean() - bound) < 5 * L.std(ddof=1) / math.sqrt(N), (L.mean(), bound)


def test_ancestral_samples_have_the_model_marginal():
    """:func:`sample` with the linear ε: its output is ``μ_θ(x_1, 1)`` (no noise at the last
    step), so ``N(m, v - σ_1²)`` exactly; N = 20000 samples, mean and variance within 5 s.e."""
    ex = _exact(BETAS)
    s = dm.make_schedule(BETAS)
    params = tuple(jnp.asarray(p, jnp.float32) for p in _linear_eps(BETAS))
    N = 20000
    draw = jax.jit(dm.sample, static_argnums=(1, 4))
    x = np.asarray(draw(jax.random.key(3), _eps_fn, params, s, (N, 1))[:, 0], np.float64)
    v = ex["v"] - ex["sig2"][0]
    assert abs(x.mean() - ex["m"]) < 5 * math.sqrt(v / N)
    assert abs(x.var(ddof=1) - v) < 5 * v * math.sqrt(2 / (N - 1))


def test_discretized_decoder_is_a_distribution_over_256_levels():
    """The masses of the 256 bins sum to 1: the CDF differences telescope, so only float32
    rounding of 256 terms (≤ 256 x 6e-8 ≈ 1.5e-5, plus the 1e-12 floors) separates the sum
    from 1: tolerance 5e-5."""
    levels = jnp.asarray(2 * np.arange(256) / 255 - 1, jnp.float32)[:, None]
    mean, log_scale = jnp.array([0.0, 0.9, -1.2, 0.3]), jnp.array([-3.0, -1.0, -5.0, 0.5])
    lp = jax.jit(dm.discretized_gaussian_log_likelihood)(
        levels, jnp.broadcast_to(mean, (256, 4)), jnp.broadcast_to(log_scale, (256, 4))
    )
    np.testing.assert_allclose(np.asarray(jnp.exp(lp).sum(0)), 1.0, atol=5e-5)


def test_ema_follows_its_recursion():
    """``with_ema``: after each update ``ema = d_n ema + (1-d_n) params_new``, ``d_n = min(decay,
    (1+n)/(10+n))``, checked over 5 updates of a step that adds 1 to the params (float32)."""
    step = lambda st, b, k: (st._replace(params=st.params + 1.0, step=st.step + 1), {})  # noqa: E731
    st = dm.init_ema_state(jnp.zeros(3), __import__("optax").sgd(0.1))
    assert isinstance(st, TrainState)
    wrapped = jax.jit(dm.with_ema(step, 0.5))
    ema, p = 0.0, 0.0
    for n in range(5):
        st, _ = wrapped(st, None, jax.random.key(0))
        p += 1.0
        d = min(0.5, (1 + n) / (10 + n))
        ema = d * ema + (1 - d) * p
        np.testing.assert_allclose(np.asarray(st.aux["ema"]), ema, rtol=1e-6)


def test_simple_loss_is_zero_for_the_true_noise():
    """L_simple with an ε_θ that returns (x_t - √ᾱ x_0)/√(1-ᾱ) for the known x_0 is 0 up to
    float32 rounding of unit-variance noise (squares ~1e-13; bound 1e-8)."""
    s = dm.make_schedule(dm.linear_betas(10, 0.01, 0.2))
    x0 = jnp.ones((500, 2)) * 0.5

    def eps_fn(scale, xt, i):  # scale 1: the true noise of x_t given x_0 = 0.5; scale 0: zero
        c = lambda a: dm._at(a, i, xt)  # noqa: E731
        return scale * (xt - c(s.sqrt_alpha_bars) * 0.5) / c(s.sqrt_one_minus_alpha_bars)

    loss_fn = jax.jit(dm.make_loss(eps_fn, s))
    loss, m = loss_fn(1.0, x0, jax.random.key(4))
    assert float(loss) < 1e-8 and float(m["mse"]) == float(loss)
    # predicting no noise: the loss is a mean of 1000 squared N(0, 1), 1 ± 0.045 (sd √(2/1000))
    assert abs(float(loss_fn(0.0, x0, jax.random.key(4))[0]) - 1) < 0.2


@pytest.mark.parametrize(
    "betas, match",
    [
        ([0.0, 0.1], "in \\(0, 1\\)"),
        ([0.1, 1.0], "in \\(0, 1\\)"),
        ([0.1, float("nan")], "in \\(0, 1\\)"),
        ([0.2, 0.1], "non-decreasing"),
        ([], "T >= 1"),
    ],
)
def test_bad_schedules_are_config_errors(betas, match):
    with pytest.raises(ConfigError, match=match):
        dm.make_schedule(betas)


@pytest.mark.parametrize("fn", [dm.linear_betas, dm.cosine_betas, dm.sohl_dickstein_betas])
def test_steps_below_one_are_config_errors(fn):
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="integer >= 1"):
            fn(bad)
    dm.make_schedule(fn(1))  # one step is a valid schedule


def test_named_schedules():
    """``named_schedule``: Ho's linear schedule at T = 1000 is exactly 1e-4..0.02; an unknown
    name is a ConfigError that lists the known ones."""
    s = dm.named_schedule("linear", 1000)
    assert float(s.betas[0]) == pytest.approx(1e-4) and float(s.betas[-1]) == pytest.approx(0.02)
    assert dm.named_schedule("linear", 5).n_steps == 5  # β_T capped below 1
    with pytest.raises(ConfigError, match="linear"):
        dm.named_schedule("quadratic", 10)


def test_levels_round_trip_and_check():
    """to_levels puts grey k/255 exactly on the grid 2k/255 - 1 (float32 rounding: 1e-6),
    from_levels inverts it on the grid and clips and rounds off-grid values; check_levels
    accepts the grid and refuses grey values and values off the grid."""
    from egm.errors import DataError

    k = np.arange(256)
    x = dm.to_levels(k / 255)
    np.testing.assert_allclose(x, 2 * k / 255 - 1, atol=1e-6)
    np.testing.assert_allclose(dm.from_levels(x), k / 255, atol=1e-7)
    np.testing.assert_array_equal(dm.from_levels(np.array([-3.0, 3.0, 0.001])),
                                  np.array([0.0, 1.0, 128 / 255], np.float32))  # fmt: skip
    dm.check_levels(x)
    with pytest.raises(DataError, match="8-bit levels"):
        dm.check_levels(k / 255)
    with pytest.raises(DataError, match="8-bit levels"):
        dm.check_levels(x + 0.002)


def test_bound_terms_in_chunks_keys_and_padding():
    """A fake bound whose outputs are the example values plus a per-chunk key draw: chunks of
    4 over 10 examples give each example its own value, the key of its chunk (fold_in at
    the chunk's first index, the last chunk zero-padded to 4 and the padding dropped),
    exactly (float32 values, float64 copies)."""

    def bound(params, x, key):
        u = jax.random.uniform(key, ())
        return jnp.stack([x[:, 0], x[:, 0] + u], 1), params * x[:, 0]

    x0 = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    key = jax.random.key(0)
    terms, prior = dm.bound_terms_in_chunks(bound, 2.0, x0, key, chunk=4)
    assert terms.shape == (10, 2) and prior.shape == (10,) and terms.dtype == np.float64
    u = [
        float(jax.random.uniform(jax.random.fold_in(key, i), ()))
        for i in (0, 0, 0, 0, 4, 4, 4, 4, 8, 8)
    ]
    np.testing.assert_array_equal(terms[:, 0], np.arange(10))
    np.testing.assert_allclose(terms[:, 1], np.arange(10) + np.array(u, np.float32), rtol=1e-7)
    np.testing.assert_array_equal(prior, 2.0 * np.arange(10))
    with pytest.raises(ConfigError, match="chunk"):
        dm.bound_terms_in_chunks(bound, 2.0, x0, key, chunk=0)


@pytest.mark.slow  # 21 s cold (the U-Net's compile); test_bad_net_values_are_refused stays
def test_unet_is_zero_at_init_per_example_and_step_conditioned():
    """EpsUNet (8 x 8 images, channels 8, 3 levels: 8 → 4 → 2): ``ε_θ ≡ 0`` at
    initialisation (zero output conv, as EpsMLP), and with every kernel randomised: each
    example's output depends on that example alone (group norm and attention act within an
    example: changing example 0 leaves the others bit for bit) and on its step index."""
    net = dm.EpsUNet(image_shape=(8, 8, 1), channels=8)
    x = jax.random.normal(jax.random.key(0), (3, 64))
    i = jnp.array([0, 5, 9])
    params = jax.jit(net.init)(jax.random.key(1), x, i)["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    noisy = jax.tree.unflatten(tree, [a + 0.1 * jax.random.normal(k, a.shape)
                                      for a, k in zip(leaves, keys, strict=True)])  # fmt: skip
    f = jax.jit(lambda p, x, i: net.apply({"params": p}, x, i))
    assert float(jnp.abs(f(params, x, i)).max()) == 0.0
    out = np.asarray(f(noisy, x, i))
    assert out.shape == (3, 64) and np.abs(out).max() > 1e-3
    moved = np.asarray(f(noisy, x.at[0].add(1.0), i))
    np.testing.assert_array_equal(moved[1:], out[1:])
    assert np.abs(moved[0] - out[0]).max() > 1e-3
    other_step = np.asarray(f(noisy, x, i.at[1].set(100)))
    assert np.abs(other_step[1] - out[1]).max() > 1e-3
    np.testing.assert_array_equal(other_step[[0, 2]], out[[0, 2]])


def test_unet_refuses_bad_shapes_before_computing():
    from egm.errors import DataError

    net, i = dm.EpsUNet(image_shape=(8, 8, 1), channels=8), jnp.zeros(2, jnp.int32)
    with pytest.raises(DataError, match="flat data"):
        net.init(jax.random.key(0), jnp.zeros((2, 8, 8)), i)
    with pytest.raises(ConfigError, match="divisible"):
        dm.EpsUNet(image_shape=(6, 6, 1), mult=(1, 2, 2)).init(
            jax.random.key(0), jnp.zeros((2, 36)), i
        )
