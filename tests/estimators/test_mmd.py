"""MMD² estimators (egm.estimators.mmd) against exact answers.

Tolerances: every reference is computed in float64 and the estimators in float32; the kernel
values are at most B (the number of bandwidths, ≤ 2 here), so each estimate is a sum of O(1)
terms with relative rounding ~1e-7 each.  After exponentials and a few hundred additions the
float32 error stays below ~1e-6 absolute; the tests allow 1e-5 (10x that), far below the size
of any mistake they guard against (a missing diagonal term moves the U-statistic by B/n ~ 0.1).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError, DataError
from egm.estimators import mmd

BW = (0.7, 2.0)


def _k(a, b, bw=BW) -> float:
    d2 = float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return sum(math.exp(-d2 / (2 * s * s)) for s in bw)


def _loops(x, y, unbiased, bw=BW) -> float:
    """The estimators written as the double sums of Gretton et al. (2012) eqs. 4-5."""
    n, m = len(x), len(y)
    if unbiased:
        kxx = sum(_k(x[i], x[j], bw) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        kyy = sum(_k(y[i], y[j], bw) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    else:
        kxx = sum(_k(a, b, bw) for a in x for b in x) / n**2
        kyy = sum(_k(a, b, bw) for a in y for b in y) / m**2
    kxy = sum(_k(a, b, bw) for a in x for b in y) / (n * m)
    return kxx + kyy - 2 * kxy


def test_equals_the_double_loop():
    kx, ky = jax.random.split(jax.random.key(0))
    x, y = jax.random.normal(kx, (5, 3)), 0.5 + jax.random.normal(ky, (4, 3))
    xs, ys = np.asarray(x), np.asarray(y)
    for unbiased in (True, False):
        got = float(mmd.mmd2(x, y, BW, unbiased=unbiased))
        assert got == pytest.approx(_loops(xs, ys, unbiased), abs=1e-5)
    gram = np.asarray(mmd.gaussian_kernel(x, y, BW))
    assert gram == pytest.approx(np.array([[_k(a, b) for b in ys] for a in xs]), abs=1e-6)
    # the equal-size path (elementwise form) against the loops too
    assert float(mmd.mmd2(x, y[:4].repeat(2, 0)[:5], BW, unbiased=False)) == pytest.approx(
        _loops(xs, np.asarray(y[:4].repeat(2, 0)[:5]), False), abs=1e-5
    )


def test_unbiased_expectation_is_exact_on_a_discrete_example():
    """P and Q on three points of R²; every sample set (x1, x2) ~ P², (y1, y2, y3) ~ Q³ is
    enumerated (3^5 = 243 cases) with its probability.  E[U] = MMD² exactly; E[V] exceeds it
    by the analytic bias (1/n)(E k(x,x) − E k(x,x')) + (1/m)(E k(y,y) − E k(y,y'))."""
    pts = np.array([[0.0, 0.0], [1.0, 0.5], [-0.5, 2.0]])
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.3, 0.6])
    K = np.array([[_k(a, b) for b in pts] for a in pts])
    exact = p @ K @ p + q @ K @ q - 2 * p @ K @ q
    n, m = 2, 3
    cases = list(itertools.product(range(3), repeat=n + m))
    idx = np.array(cases)
    w = np.prod(p[idx[:, :n]], 1) * np.prod(q[idx[:, n:]], 1)
    assert w.sum() == pytest.approx(1.0)
    xs, ys = jnp.asarray(pts[idx[:, :n]]), jnp.asarray(pts[idx[:, n:]])
    u = jax.vmap(lambda a, b: mmd.mmd2(a, b, BW))(xs, ys)
    v = jax.vmap(lambda a, b: mmd.mmd2(a, b, BW, unbiased=False))(xs, ys)
    assert float(np.sum(w * np.asarray(u, np.float64))) == pytest.approx(exact, abs=1e-5)
    diag = len(BW)  # k(x, x) = Σ_s exp(0)
    bias = (diag - p @ K @ p) / n + (diag - q @ K @ q) / m
    assert float(np.sum(w * np.asarray(v, np.float64))) == pytest.approx(exact + bias, abs=1e-5)
    assert exact > 0.05 and bias > 0.05  # both effects are far above the tolerance


def test_identical_sets():
    """V-statistic: exactly 0 (the three Gram matrices are the same numbers).  U-statistic of
    a set against itself: 2[(S − nB)/(n(n−1)) − S/n²] with S the Gram sum, B = k(x, x): O(1/n)."""
    x = jax.random.uniform(jax.random.key(1), (300, 784))
    bw = mmd.LI2015_MNIST_BANDWIDTHS
    assert float(mmd.mmd2(x, x, bw, unbiased=False)) == 0.0
    assert float(mmd.mmd2(x, jnp.array(np.asarray(x)), bw, unbiased=False)) == 0.0
    s = float(np.sum(np.asarray(mmd.gaussian_kernel(x, x, bw), np.float64)))
    n, b = 300, len(bw)
    want = 2 * ((s - n * b) / (n * (n - 1)) - s / n**2)
    assert float(mmd.mmd2(x, x, bw)) == pytest.approx(want, abs=1e-5)
    assert abs(want) < 2 * b / (n - 1)


def test_gmmn_loss_and_its_gradient():
    x = jax.random.uniform(jax.random.key(2), (6, 4))
    y = x + 0.3
    assert float(mmd.gmmn_loss(x, y, BW)) == pytest.approx(
        math.sqrt(_loops(np.asarray(x), np.asarray(y), False) + 1e-10), abs=1e-5
    )
    g = jax.grad(lambda a: mmd.gmmn_loss(a, x, BW))(x)  # at the minimum: finite (eps)
    assert np.all(np.isfinite(np.asarray(g)))
    g = jax.grad(lambda a: mmd.mmd2(a, y, BW, unbiased=False))(x)
    assert float(jnp.sum(g * (y - x))) < 0  # moving the samples towards the data lowers MMD²


@pytest.mark.parametrize("bw", [(0.0,), (-1.0, 2.0), (float("nan"),), (), ("a",), 3.0])
def test_bad_bandwidths(bw):
    x = jnp.zeros((3, 2))
    with pytest.raises(ConfigError, match="bandwidth"):
        mmd.mmd2(x, x, bw)


def test_bad_samples():
    with pytest.raises(DataError, match="features"):
        mmd.mmd2(jnp.zeros((3, 2)), jnp.zeros((3, 4)), BW)
    with pytest.raises(DataError, match=r"\(N, D\)"):
        mmd.mmd2(jnp.zeros(3), jnp.zeros((3, 1)), BW)
    with pytest.raises(DataError, match="at least 2"):
        mmd.mmd2(jnp.zeros((1, 2)), jnp.zeros((3, 2)), BW)
    assert float(mmd.mmd2(jnp.zeros((1, 2)), jnp.ones((1, 2)), (1.0,), unbiased=False)) > 0


# ----------------------------------------------------------------------------- GMMN+AE


def test_autoencoder_loss_is_the_cross_entropy_of_its_reconstruction():
    """A 6-4-2 autoencoder with random weights, written out in float64 numpy: codes
    σ(σ(x W0 + b0) W1 + b1), reconstruction σ(σ(h V0 + c0) V1 + c1), loss the mean over the
    batch of the summed pixel cross-entropy (tolerance: float32 rounding of O(10)-nat sums,
    ~1e-5 relative; 1e-4 allowed).  Dropout: inverted (each kept input scaled by 1/(1 - r)),
    so with r = 0.5 every input of the first layer is 0 or 2x exactly (the mask drawn from
    the first of the two keys split from the dropout key), and the same key gives the same
    codes.  (One jitted program: eager ops would compile one by one.)"""
    ae = mmd.Autoencoder(6, (4, 2), (0.5, 0.0))
    x = np.random.default_rng(0).uniform(size=(5, 6)).astype(np.float32)
    k = jax.random.key(3)

    @jax.jit
    def go(key, x):
        p = jax.tree_util.tree_map(lambda a: a + 0.3, mmd.init_autoencoder(key, ae))
        h = mmd.encode(ae, p, x)
        keep = jax.random.bernoulli(jax.random.split(k, 2)[0], 0.5, x.shape)
        drop = (mmd.encode(ae, p, x, k), mmd.encode(ae, p, x, k), keep)
        return p, h, mmd.decode(p, h), mmd.autoencoder_loss(ae)(p, x, None), drop

    p, h_got, r_got, loss, (a, b, keep) = go(jax.random.key(0), x)
    sig = lambda a: 1 / (1 + np.exp(-a))
    f64 = lambda layer: (np.asarray(layer["W"], np.float64), np.asarray(layer["b"], np.float64))

    def mlp(h, layers):
        for layer in layers:
            W, c = f64(layer)
            h = sig(h @ W + c)
        return h

    h = mlp(x.astype(np.float64), p["encoder"])
    r = mlp(h, p["decoder"])
    np.testing.assert_allclose(h_got, h, atol=1e-6)
    np.testing.assert_allclose(r_got, mlp(np.asarray(h_got, np.float64), p["decoder"]), atol=1e-6)
    want = -np.mean(np.sum(x * np.log(r) + (1 - x) * np.log(1 - r), -1))
    assert float(loss) == pytest.approx(want, rel=1e-4)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.allclose(a, h_got)
    dropped = np.where(np.asarray(keep), 2 * x.astype(np.float64), 0.0)
    np.testing.assert_allclose(a, mlp(dropped, p["encoder"]), atol=1e-6)


def test_li2015_sgd_drops_the_step_and_raises_the_momentum():
    """On f(w) = w²/2 (gradient w), the updates written out: v ← μ v + g, w ← w − η m v with
    (η m, μ) = (η, 0.9) for the first ``drop_after`` = 2 updates, then (η/10, 0.99).  Exact up
    to float32 rounding (1e-6).  The autoencoder's SGD scales a gradient of global norm 50
    to norm 10 (lr 0.1: the update is -0.1 · g · 10/50)."""
    opt = mmd.li2015_sgd(0.5, 0.9, drop_after=2)

    @jax.jit
    def four(w):
        def body(carry, _):
            w, state = carry
            upd, state = opt.update(w, state, w)
            return (w + upd, state), w + upd

        return jax.lax.scan(body, (w, opt.init(w)), None, length=4)[1][:, 0]

    got, want_w, v = np.asarray(four(jnp.array([1.0]))), 1.0, 0.0
    for t in range(4):
        lr, mu = (0.5, 0.9) if t < 2 else (0.05, 0.99)
        v = mu * v + want_w
        want_w = want_w - lr * v
        assert float(got[t]) == pytest.approx(want_w, abs=1e-6), t
    ae_opt = mmd.li2015_ae_sgd(0.1)
    g = {"a": jnp.array([30.0, 40.0])}
    upd = jax.jit(lambda g: ae_opt.update(g, ae_opt.init(g), g)[0])(g)
    np.testing.assert_allclose(upd["a"], [-0.6, -0.8], atol=1e-6)


def test_code_space_report_and_bad_autoencoders():
    """Codes of the test images themselves give code_test_mmd2 = the unbiased statistic of a
    set against itself (O(1/n), checked against mmd2 directly); bad sizes and rates are
    ConfigErrors that name the field."""
    ae = mmd.Autoencoder(6, (4, 2), (0.2, 0.5))
    p = mmd.init_autoencoder(jax.random.key(0), ae)
    rng = np.random.default_rng(1)
    test, train = (rng.uniform(size=(20, 6)).astype(np.float32) for _ in range(2))
    h = mmd.encode(ae, p, test)
    out = mmd.code_space_report(ae, p, h, test, train, (0.5,))
    assert out["code_test_mmd2"] == pytest.approx(float(mmd.mmd2(h, h, (0.5,))), abs=1e-6)
    want = float(mmd.mmd2(mmd.encode(ae, p, train), h, (0.5,)))
    assert out["code_test_mmd2_floor"] == pytest.approx(want, abs=1e-6)
    assert out["autoencoder_test_cross_entropy_nats"] > 0
    for bad, match in (
        (lambda: mmd.Autoencoder(6, (4, 2), (0.2,)).check(), "one dropout rate"),
        (lambda: mmd.Autoencoder(6, (4, 2), (0.2, 1.0)).check(), "one dropout rate"),
        (lambda: mmd.Autoencoder(6, (0,), (0.2,)).check(), "sizes"),
        (lambda: mmd.positive_numbers("2,x"), "comma-separated"),
        (lambda: mmd.positive_numbers("2,0"), "> 0"),
    ):
        with pytest.raises(ConfigError, match=match):
            bad()
