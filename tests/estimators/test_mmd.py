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
