"""Normalising flows (§20.10.2): every layer and composed flow is invertible, its log-det is
log |det| of the autodiff Jacobian, densities integrate to 1 on 1-D and 2-D grids, the
logit/dequantisation protocol has the right Jacobian, and bad input gives clear errors.

Tolerances (float32 throughout): a round trip through L layers loses about L · κ · ε |x|
(ε = 1.2e-7, κ the layers' condition: their log-scales are O(1) here, κ < e^3), i.e. < 1e-5
for |x| ≲ 3 and L ≤ 13; the test allows 1e-4.  ``slogdet`` of a float32 Jacobian of size
≤ 16 is accurate to ~n κ ε ≈ 1e-4 absolute; the test allows 1e-3.  A wrong mask, sign or
missing term moves either figure by O(0.1-1).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from egm.errors import ConfigError, DataError
from egm.eval.units import bits_per_dim
from egm.models import flows as F


def perturb(params, seed=1, scale=0.3):
    """The parameters plus N(0, scale²) noise (numpy: no per-shape compilations): every layer
    away from its identity start."""
    rng = np.random.default_rng(seed)
    noisy = lambda x: jnp.asarray(x + scale * rng.normal(size=np.shape(x)), jnp.float32)
    return jax.tree_util.tree_map(noisy, params)


def init(flow, x, seed=0):
    """``flow.init`` as one jitted program (eager init compiles every random op's shape)."""
    return jax.jit(flow.init)(jax.random.key(seed), x)


def x_vec(n=3, d=4, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, d)), jnp.float32)


def x_img(n=3, shape=(4, 4, 2), seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, *shape)), jnp.float32)


CASES = {
    "coupling": (F.AffineCoupling(np.array([1, 0, 1, 0]), (8,)), x_vec()),
    "made_affine": (F.MADEAffine(4, (8, 8), mask_seed=3), x_vec()),
    "made_affine_exp": (F.MADEAffine(4, (8, 8), mask_seed=3, transformer="exp"), x_vec()),
    "permute": (F.Permute((2, 0, 3, 1)), x_vec()),
    "actnorm_vector": (F.ActNorm(event_ndims=1), x_vec()),
    "actnorm_image": (F.ActNorm(), x_img()),
    "invconv_lu": (F.InvConv1x1(2, lu=True, seed=1), x_img()),
    "invconv_plain": (F.InvConv1x1(2, lu=False, seed=1), x_img()),
    "conv_coupling": (F.ConvCoupling(2, hidden=4), x_img(shape=(2, 2, 2))),
    "squeeze": (F.Squeeze(), x_img(shape=(4, 2, 1))),
}
FLOWS = {
    "realnvp": (F.realnvp(4, 4, (8,)), x_vec()),
    "realnvp_checkerboard": (F.realnvp(4, 2, (8,), image_shape=(2, 2)), x_vec()),
    "maf": (F.maf(4, 2, (8,)), x_vec()),
    "maf_exp": (F.maf(4, 2, (8,), transformer="exp"), x_vec()),
    "glow": (F.glow((2, 2, 1), 1, 4), x_img(shape=(2, 2, 1))),
    "glow_plain": (F.glow((2, 2, 1), 2, 4, lu=False), x_img(shape=(2, 2, 1))),
    "glow_multiscale": (F.glow((4, 4, 1), 1, 4, n_levels=2), x_img(shape=(4, 4, 1))),
    "glow_multiscale_fixed_prior": (
        F.glow((4, 4, 1), 1, 4, n_levels=2, learned_prior=False),
        x_img(shape=(4, 4, 1)),
    ),
}


def _check(fn, p, x):
    """One jitted program: the round trip, the layer's log-det and log |det| of the
    autodiff Jacobian (``jax.jacfwd``, flattened) of every example; then the asserts."""

    @jax.jit
    def go(p, x):
        y, ld = fn.forward(p, x)
        jac = jax.vmap(lambda v: jax.jacfwd(lambda u: fn.forward(p, u[None])[0].reshape(-1))(v))(x)
        n = x[0].size
        lp = fn.log_prob(p, x) if isinstance(fn, F.Flow) else ld
        return y, fn.inverse(p, y), ld, jnp.linalg.slogdet(jac.reshape(-1, n, n))[1], lp

    y, back, ld, want, lp = go(p, x)
    assert ld.shape == (x.shape[0],)
    np.testing.assert_allclose(back, x, atol=1e-4)
    np.testing.assert_allclose(ld, want, atol=1e-3)
    return y, ld, lp


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_layer_inverts_and_log_det_is_the_jacobians(name):
    """Each layer alone (the composed flows of the default test contain every one of them
    except the plain 1x1 convolution and the vector actnorm)."""
    layer, x = CASES[name]
    _check(layer, perturb(init(layer, x)), x)


@pytest.mark.parametrize(
    "name",
    ["realnvp", "maf", *(pytest.param(n, marks=pytest.mark.slow) for n in ("maf_exp", "glow"))],
)
def test_flow_inverts_and_log_det_is_the_jacobians(name):
    """RealNVP (couplings), MAF (MADE layers with the default softplus scale, permutations),
    MAF with the paper's exp scale (slow: the default keeps its layer through
    ``test_maf_scales_are_the_formulas``), Glow (squeeze, actnorm, LU 1x1 convolution, conv
    coupling: slow, 6 s of compilation); log p = log N(z) + log |det| with the base by
    scipy."""
    flow, x = FLOWS[name]
    p = perturb(init(flow, x))
    z, ld, lp = _check(flow, p, x)
    base = stats.norm.logpdf(np.asarray(z[0], np.float64)).sum()
    assert float(lp[0]) == pytest.approx(base + float(ld[0]), abs=1e-4)


def test_split_inverts_and_log_det_is_the_jacobians():
    """The multi-scale split alone (default; the whole Glow builder is the slow test below):
    a 4x4 image squeezed to 2x2x4, 2 channels factored out with the learned conditional prior
    (perturbed away from its zero start), the kept 2x2x2 squeezed to 1x1x8 and actnormed.
    The round trip and the log-det (the prior's -Σ log σ(a) plus the inner scale's terms)
    against the autodiff Jacobian of the whole 16-value map (tolerances: module docstring),
    and log p against the base by scipy.  The prior's term left out or taken on the wrong
    half moves log |det| by Σ log σ = O(1) at these perturbations."""
    flow = F.Flow((F.Squeeze(), F.Split(4, (F.Squeeze(), F.ActNorm()))), (4, 4, 1))
    x = x_img(shape=(4, 4, 1))
    p = perturb(init(flow, x))
    z, ld, lp = _check(flow, p, x)
    assert z.shape == (3, 2, 2, 4)
    base = stats.norm.logpdf(np.asarray(z[0], np.float64)).sum()
    assert float(lp[0]) == pytest.approx(base + float(ld[0]), abs=1e-4)
    # the builder's structure (no compilation): squeeze, K steps, split into the next scale
    g = F.glow((28, 28, 1), 2, 8, n_levels=2)
    names = lambda layers: [type(layer).__name__ for layer in layers]
    assert names(g.layers) == ["Squeeze", *["ActNorm", "InvConv1x1", "ConvCoupling"] * 2, "Split"]
    assert g.layers[-1].channels == 4 and names(g.layers[-1].rest)[0] == "Squeeze"
    assert g.layers[-1].rest[2].channels == 8 and "Split" not in names(g.layers[-1].rest)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["glow_multiscale", "glow_multiscale_fixed_prior"])
def test_glow_multiscale_inverts_and_log_det_is_the_jacobians(name):
    """The Glow builder with two levels on a 4x4 image (a step per scale; 5 s of
    compilation): the checks of the default test above, with actnorm, 1x1 convolutions and
    couplings at both scales; and sampling."""
    flow, x = FLOWS[name]
    p = perturb(init(flow, x))
    z, ld, lp = _check(flow, p, x)
    assert z.shape == (3, 2, 2, 4)
    base = stats.norm.logpdf(np.asarray(z[0], np.float64)).sum()
    assert float(lp[0]) == pytest.approx(base + float(ld[0]), abs=1e-4)
    s = jax.jit(flow.sample, static_argnums=2)(jax.random.key(2), p, 2)
    assert s.shape == (2, 4, 4, 1) and bool(jnp.all(jnp.isfinite(s)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["realnvp_checkerboard", "glow_plain"])
def test_other_flows_invert(name):
    flow, x = FLOWS[name]
    _check(flow, perturb(init(flow, x)), x)
    s = flow.sample(jax.random.key(2), perturb(init(flow, x)), 2)
    assert s.shape == (2, *flow.event_shape) and bool(jnp.all(jnp.isfinite(s)))


def test_init_is_the_identity_with_random_hidden_biases():
    """At init every coupling / MAF layer is the identity (zero last layer), so RealNVP's
    and MAF's log p(x) is the standard normal's exactly (up to float32 rounding of the sum,
    < 1e-5 here), while the conditioners' hidden biases are drawn from U(±1/√fan_in) (the
    fix of the benchmark's likelihood gap: zero biases put every first-layer ReLU kink at the
    origin).  Checks: all |b| ≤ 1/√fan_in; 64 draws are not all zero and their sd is within
    35% of the uniform's 1/√(3 fan_in) (the sd of 64 uniform draws has a relative s.d. of
    ~6%, so 35% is > 5 s.d. yet catches a zero or a normal(0, 1) init).  The softplus MAF's
    hidden weights are U(±1/√fan_in) (flowjax's / equinox's init, part of the benchmark's fix):
    all inside the bound, which 64·64 N(0, 1/fan_in) draws would leave with probability
    1 - (1 - 2Φ(-1))^4096 ≈ 1."""
    x = x_vec(n=5, d=2)
    for flow in (F.realnvp(2, 2, (64, 64)), F.maf(2, 3, (64, 64))):
        params = init(flow, x)
        ref = stats.multivariate_normal(np.zeros(2)).logpdf(np.asarray(x, np.float64))
        np.testing.assert_allclose(flow.log_prob(params, x), ref, atol=1e-5)
        for p in (p for p in params if p):  # Permute layers have no parameters
            net = p.get("net", p)
            for l in range(len(net) // 2 - 1):
                b, fan_in = np.asarray(net[f"b{l}"]), net[f"W{l}"].shape[0]
                lim = 1 / math.sqrt(fan_in)
                assert np.all(np.abs(b) <= lim) and np.any(b != 0)
                assert abs(b.std() / (lim / math.sqrt(3)) - 1) < 0.35
                if "net" not in p:  # a MADE layer: uniform weights
                    w = np.asarray(net[f"W{l}"])
                    assert (
                        np.all(np.abs(w) <= lim) and abs(w.std() / (lim / math.sqrt(3)) - 1) < 0.1
                    )
            last = len(net) // 2 - 1
            assert not np.any(net[f"W{last}"]) and not np.any(net[f"b{last}"])


def test_actnorm_data_dependent_init():
    """ActNorm's init standardises its batch per channel (mean 0, sd 1 up to float32
    rounding of 128 values per channel)."""
    x = 3.0 + 2.0 * np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype(np.float32)
    a = F.ActNorm()
    y, ld = a.forward(a.init(jax.random.key(0), x), x)
    np.testing.assert_allclose(jnp.mean(y, (0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, (0, 1, 2)), 1.0, atol=1e-4)
    assert ld.shape == (8,)


@pytest.mark.slow
@pytest.mark.parametrize("transformer", ["softplus", "exp"])
def test_maf_layer_is_autoregressive(transformer):
    """A MAF layer's Jacobian ∂u/∂x is lower-triangular (exact zeros above the diagonal: u_i
    reads only x_{≤i}), which is why its log-det is Σ log σ (softplus) or -Σ α (exp)."""
    layer = F.MADEAffine(5, (12,), mask_seed=4, transformer=transformer)
    p = perturb(init(layer, x_vec(d=5)))
    J = np.asarray(jax.jit(jax.jacfwd(lambda u: layer.forward(p, u)[0]))(x_vec(1, 5)[0]))
    assert np.all(np.triu(J, 1) == 0) and np.all(np.diag(J) != 0)


def test_maf_scales_are_the_formulas():
    """Both MAF transformers against their formulas in float64 numpy, on a 2-D layer with
    hand-set parameters (one jitted program for both).  At D = 2 a MADE's hidden units see
    x₁ only and unit 1's (shift, raw scale) are output biases (its output sees no hidden
    unit); unit 2's are biases plus ``h · W`` -- the masks are taken as that, so a wrong
    connectivity fails too.  softplus: ``u = x σ + t``, ``σ = softplus(b + softplus⁻¹(0.99))
    + 0.01``, so a raw output of -60 gives σ = 0.01 (+ e^-60: the lower bound exactly) and
    log |det| = log σ₁ + log σ₂; exp: ``u = (x - μ) e^{-α}``, ``α = 10 tanh(α̃/10)``,
    log |det| = -α₁ - α₂.  float32 evaluation of O(1)-sized terms: 1e-5 relative.  Checked:
    the forward map, its log-det, and the inverse (two passes) back to x."""
    x = np.array([[0.7, -1.3], [-2.0, 0.4]], np.float32)
    rng = np.random.default_rng(0)
    W0, b0 = rng.normal(size=(2, 4)), rng.normal(size=4)
    W1 = np.zeros((4, 4))
    W1[:, 3] = 0.5  # unit 2's raw scale reads the hidden units
    b1 = np.array([0.3, -0.2, -60.0, 1.5])
    p = {k: jnp.asarray(v, jnp.float32) for k, v in dict(W0=W0, b0=b0, W1=W1, b1=b1).items()}
    layers = [F.MADEAffine(2, (4,), transformer=t) for t in ("softplus", "exp")]
    go = jax.jit(lambda p, x: [(f.forward(p, x), f.inverse(p, f.forward(p, x)[0])) for f in layers])
    h = np.maximum(x[:, :1] @ W0[:1] + b0, 0.0)  # the hidden units read x₁ alone
    shift = np.array([[0.3, -0.2]] * 2)
    raw = np.stack([np.full(2, -60.0), 1.5 + 0.5 * h.sum(1)], 1)
    sigma = np.logaddexp(0.0, raw + np.log(np.expm1(0.99))) + 0.01
    assert sigma[0, 0] == pytest.approx(0.01, rel=1e-12)
    alpha = 10 * np.tanh(raw / 10)
    want = [
        (x * sigma + shift, np.log(sigma).sum(1)),
        ((x - shift) * np.exp(-alpha), -alpha.sum(1)),
    ]
    for ((y, ld), back), (u, ld_want) in zip(go(p, x), want, strict=True):
        np.testing.assert_allclose(y, u, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ld, ld_want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-5)


def _midpoint_bound(f: np.ndarray, h: float) -> float:
    """The midpoint rule's error, cell by cell: a cell of side h errs by h^d · h² Σ_axes
    ∂²f / 24 + O(h⁴) (Taylor expansion about its centre).  Summing the absolute values over
    the cells, with the second derivatives from second differences on the grid and a factor
    2 for their own O(h²) error, bounds the total error to that order."""
    second = sum(
        np.abs(np.diff(f, 2, axis=a)).sum() / h**2 for a in range(f.ndim)
    )  # fmt: skip
    return 2.0 * h**f.ndim * h**2 * second / 24.0


def test_density_integrates_to_one_on_a_1d_grid():
    """A 1-D flow on (0, 1): the logit transform (λ = 1e-6) then an affine ActNorm with
    shift and log-scale away from 0.  Its density is the logit-normal, smooth and 0 at both
    ends; the midpoint rule on 20,000 cells errs by at most the bound of
    :func:`_midpoint_bound` (2e-8 here), the mass outside the logit's range
    [logit λ, logit(1-λ)] = ±13.8 is Φ(-13.8 · 0.8 + 0.2) < 1e-25, and float64 sums of the
    float32 densities (relative error 1e-7 each) add < 1e-6.  A missing or wrong Jacobian
    term (log(1-2λ), the sign of log p(1-p)) changes the integral by O(1).  Measured:
    |∫ - 1| = 4e-8."""
    flow = F.Flow((F.ActNorm(event_ndims=1),), (1,))
    p = ({"bias": jnp.array([0.25]), "log_scale": jnp.array([-0.2])},)
    n = 20_000
    h = 1.0 / n
    x = (np.arange(n) + 0.5) * h
    lp, _ = F.pixel_log_prob(flow, p, x[:, None].astype(np.float32), lam=1e-6)
    f = np.exp(np.asarray(lp, np.float64))
    integral = f.sum() * h
    assert abs(integral - 1.0) <= _midpoint_bound(f, h) + 2e-6, integral


@pytest.mark.parametrize(
    "make, scale",
    [
        (lambda: F.realnvp(2, 4, (16,)), 0.15),
        pytest.param(lambda: F.maf(2, 3, (16,)), 0.2, marks=pytest.mark.slow),
    ],
)
def test_density_integrates_to_one_on_a_2d_grid(make, scale):
    """A 2-D RealNVP and MAF with perturbed (non-identity) parameters on the box [-10, 10]²,
    midpoint rule with h = 20/700.  |∫_box q - P(box)| ≤ the midpoint bound
    (:func:`_midpoint_bound`); P(box) = 1 - P(outside), and P(outside) is estimated from
    20,000 exact samples of the flow (its s.e. sqrt(p(1-p)/n), 4 s.e. allowed).  Measured:
    RealNVP ∫ = 0.99854 against 1 - 0.0015 (tolerance 1.3e-3), MAF (softplus scale) 0.99053
    against 1 - 0.0105 (3.0e-3; with the exp scale 0.999995 against 1 - 0, 2.1e-3).
    (Perturbations of 0.15 / 0.2 keep ≥ 99 % of the mass inside the box; at 0.3 RealNVP's
    shifts put 30 % of it outside [-7, 7]².)"""
    flow = make()
    p = perturb(init(flow, x_vec(8, 2)), seed=5, scale=scale)
    L, n = 10.0, 700
    h = 2 * L / n
    g = -L + (np.arange(n) + 0.5) * h
    xy = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    f = np.exp(np.asarray(jax.jit(flow.log_prob)(p, xy), np.float64)).reshape(n, n)
    integral = f.sum() * h * h
    s = np.asarray(jax.jit(flow.sample, static_argnums=2)(jax.random.key(3), p, 20_000))
    out = float(np.mean(np.any(np.abs(s) > L, axis=1)))
    tol = _midpoint_bound(f, h) + 4 * math.sqrt(max(out, 1e-5) / 20_000)
    assert np.all(np.isfinite(f)) and abs(integral - (1.0 - out)) <= tol, (integral, out, tol)


def test_logit_transform_and_dequantisation():
    """The logit transform's log-det equals log |det| of its autodiff Jacobian (diagonal)
    and it inverts; dequantised levels stay in their cells, floor(256 x) = k; the pixel
    log-density of a flow with the standard-normal base in logit space equals the analytic
    Σ_d [log φ(z_d) + log(1 - 2λ) - log p_d (1 - p_d)] (float64 scipy), and bits/dim in the
    8-bit scale are -(log p_x - D log 256) / (D log 2)."""
    lam = 1e-6
    k = jnp.array([[0.0, 17.0, 128.0, 255.0, 3.0]])
    flow = F.Flow((F.Permute(tuple(range(5))),), (5,))  # log p_z = log N(z; 0, I)

    @jax.jit
    def go(k):
        x = F.dequantise(jax.random.key(0), k)
        z, ld = F.logit_transform(x, lam)
        J = jax.jacfwd(lambda v: F.logit_transform(v, lam)[0])(x[0])
        lp, lz = F.pixel_log_prob(flow, ({},), x, lam)
        return x, ld, jnp.linalg.slogdet(J)[1], F.logit_inverse(z, lam), lp, lz

    x, ld, want_ld, back, lp, lz = go(k)
    assert np.all(np.floor(np.asarray(x) * 256) == np.asarray(k)) and float(x.max()) < 1
    assert float(ld[0]) == pytest.approx(float(want_ld), abs=1e-3)
    np.testing.assert_allclose(back, x, atol=1e-6)
    pp = lam + (1 - 2 * lam) * np.asarray(x, np.float64)
    zz = np.log(pp / (1 - pp))
    want = (stats.norm.logpdf(zz) + np.log1p(-2 * lam) - np.log(pp * (1 - pp))).sum()
    assert float(lp[0]) == pytest.approx(want, rel=1e-5)
    assert float(lz[0]) == pytest.approx(stats.norm.logpdf(zz).sum(), rel=1e-5)
    bpd = bits_per_dim(float(lp[0]), 5, n_levels=256)
    assert bpd == pytest.approx(-(want - 5 * math.log(256)) / (5 * math.log(2)), rel=1e-5)


def test_bad_input_gives_clear_errors():
    flow = F.realnvp(4, 2, (8,))
    p = init(flow, x_vec())
    with pytest.raises(DataError, match="shape"):
        flow.log_prob(p, jnp.zeros((3, 5)))
    with pytest.raises(DataError, match="NaN or inf"):
        flow.log_prob(p, jnp.array([[0.0, jnp.nan, 0.0, 0.0]]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        F.logit_transform(jnp.array([[0.5, 1.5]]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        F.logit_transform(jnp.array([[0.5, -0.1]]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):  # every example checked, not the first
        F.pixel_log_prob_batched(flow, p, np.array([[0.5] * 4, [0.5, 0.5, 2.0, 0.5]]), chunk=1)
    with pytest.raises(DataError, match="integers in"):
        F.check_levels(np.array([0.0, 0.5, 255.0]))
    with pytest.raises(DataError, match="integers in"):
        F.check_levels(np.array([0.0, 256.0]))
    # levels outside the dequantisation's support: already-dequantised / grey data
    with pytest.raises(DataError, match="integers in"):
        F.dequantise(jax.random.key(0), np.array([[0.25, 255.5]]))
    with pytest.raises(DataError, match="integers in"):
        F.dequantise(jax.random.key(0), np.array([[-1.0, 3.0]]))
    for make, match in (
        (lambda: F.AffineCoupling(np.ones(4)), "both present"),
        (lambda: F.MADEAffine(1), "n_dims"),
        (lambda: F.MADEAffine(2, transformer="tanh"), "transformer"),
        (lambda: F.MADEAffine(2, min_scale=0.0), "min_scale"),
        (lambda: F.ConvCoupling(1), "squeeze first"),
        (lambda: F.glow((5, 4, 1)), "divisible by 2"),
        (lambda: F.glow((28, 28, 1), n_levels=3), "divisible by 8"),
        (lambda: F.glow((4, 4, 1), n_levels=0), "n_levels"),
        (lambda: F.Permute((0, 0)), "permutation"),
        (lambda: F.realnvp(4, 0), "n_layers"),
        (lambda: F.maf(4, 2, ()), "hidden"),
        (lambda: F.logit_transform(jnp.zeros((1, 2)), lam=0.5), "lam"),
        (lambda: flow.sample(jax.random.key(0), p, 0), "n must be"),
    ):
        with pytest.raises(ConfigError, match=match):
            make()


@pytest.mark.slow
def test_jit_equals_eager():
    """The jitted log-density equals the eager one (the same float32 program; 1e-5 covers
    XLA's fusion reordering)."""
    flow, x = FLOWS["maf"]
    p = perturb(init(flow, x))
    np.testing.assert_allclose(jax.jit(flow.log_prob)(p, x), flow.log_prob(p, x), atol=1e-5)
