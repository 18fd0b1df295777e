"""Sample-quality scores (egm.eval.sample_quality, §20.14) against exact or analytic answers.

* Fréchet distance: closed forms (1-D, commuting and non-commuting covariances against
  scipy.linalg.sqrtm, singular covariances against a rank-1 hand formula); the finite-sample
  bias of two sets from one Gaussian against the exact 1-D expectation and the second-order
  formula of :func:`frechet_bias` (CLT over replicate pairs); convergence of the sample
  version to the closed form through the triangle inequality of the 2-Wasserstein metric.
* Classifier score: exactly K for confident predictions spread evenly, exactly 1 for constant
  ones, and the direct KL formula split by split.
* Nearest neighbours against a brute-force scipy cdist; the copy check finds planted copies
  (exact, and with tiny noise) with their indices, does not flag noise images, and flags
  about half of held-out digits exchangeable with the training rows (the median rule).
* Parzen: against the Gaussian mixture it is, written out with scipy; with sigma chosen on
  validation data, against the true density of the Gaussian the samples came from.

Float32 round-off.  The jitted kernels compute squared distances as |x|² + |s|² - 2 x·s in
float32 (unit round-off u = 2^-24 ≈ 6e-8).  A D-term dot product has error ≤ D u |x||s|
(Higham's γ_D bound), the norms likewise, so |δ(d²)| ≤ (D + 3) u (|x| + |s|)²; dividing by
2σ² gives the error of each Parzen exponent, and logsumexp adds a relative error of a few u.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
import scipy.linalg
from scipy import stats
from scipy.integrate import quad
from scipy.spatial.distance import cdist
from scipy.special import gammaln, logsumexp, rel_entr

from egm.data import load_mnist
from egm.errors import ConfigError, DataError
from egm.eval.sample_quality import (
    DEFAULT_PARZEN_SIGMAS,
    THEIS_WARNING,
    classifier_score,
    copy_check,
    frechet_bias,
    frechet_distance,
    frechet_floor,
    frechet_gaussian,
    nearest_neighbours,
    parzen_log_density,
    parzen_log_likelihood,
    parzen_select_sigma,
)
from egm.eval.visualize import tile_images

U32 = 2.0**-24
Z = 5.0  # two-sided normal tail 5.7e-7 per check


def _spd(rng: np.random.Generator, d: int, lo: float = 0.2, hi: float = 2.0) -> np.ndarray:
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    return (q * np.linspace(lo, hi, d)) @ q.T


def _c4(n: int) -> float:
    """E[s] / σ for the ddof=1 sample standard deviation of n normal draws."""
    return math.sqrt(2.0 / (n - 1)) * math.exp(gammaln(n / 2) - gammaln((n - 1) / 2))


# ---------------------------------------------------------------------------- Fréchet


def test_frechet_gaussian_commuting_and_1d() -> None:
    """Diagonal (commuting) covariances: the square root is elementwise, so
    FD = ‖Δμ‖² + Σ_i (√a_i - √b_i)²; in 1-D, (m_a - m_b)² + (s_a - s_b)².  Float64
    eigendecompositions of 4×4 O(1) matrices: error ~1e-15, 1e-12 leaves a wide margin."""
    a, b = np.array([0.5, 1.0, 2.0, 4.0]), np.array([1.0, 1.0, 0.25, 9.0])
    mu_a, mu_b = np.array([0.0, 1.0, -1.0, 2.0]), np.array([1.0, 1.0, 0.0, 0.0])
    want = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_gaussian(mu_a, np.diag(a), mu_b, np.diag(b))
    assert isinstance(got, float)
    assert got == pytest.approx(want, abs=1e-12)
    assert frechet_gaussian([0.3], [[4.0]], [-0.2], [[0.25]]) == pytest.approx(
        0.5**2 + (2.0 - 0.5) ** 2, abs=1e-12
    )


def test_frechet_gaussian_non_commuting_against_sqrtm() -> None:
    """Random SPD covariances that do not commute: against the formula written with
    scipy.linalg.sqrtm (an independent Schur-based square root), and the equivalent form
    tr(A + B - 2 sqrtm(A B)) of the FID reference code; symmetric in its arguments, 0 for
    identical Gaussians.  Condition numbers ≤ 10 in float64: 1e-9 covers sqrtm's error."""
    rng = np.random.default_rng(1)
    A, B = _spd(rng, 6), _spd(rng, 6, 0.1, 3.0)
    assert np.abs(A @ B - B @ A).max() > 0.1  # really non-commuting
    ma, mb = rng.normal(size=6), rng.normal(size=6)
    ra = scipy.linalg.sqrtm(A).real
    want = np.sum((ma - mb) ** 2) + np.trace(A + B - 2 * scipy.linalg.sqrtm(ra @ B @ ra).real)
    want2 = np.sum((ma - mb) ** 2) + np.trace(A + B - 2 * scipy.linalg.sqrtm(A @ B).real)
    got = frechet_gaussian(ma, A, mb, B)
    assert got == pytest.approx(want, abs=1e-9) and got == pytest.approx(want2, abs=1e-9)
    assert frechet_gaussian(mb, B, ma, A) == pytest.approx(got, abs=1e-9)
    assert frechet_gaussian(ma, A, ma, A) == pytest.approx(0.0, abs=1e-9)


def test_frechet_gaussian_singular_covariances() -> None:
    """Rank-1 A = u uᵀ: A^{1/2} = u uᵀ / ‖u‖, A^{1/2} B A^{1/2} = (uᵀBu / ‖u‖²) u uᵀ, whose
    square root has trace √(uᵀ B u); so FD = ‖u‖² + tr B - 2 √(uᵀ B u) for equal means.
    Both singular: diag(1, 0) vs diag(4, 0) gives (1 - 2)² = 1.  sqrtm's Schur method is
    ill-posed here; the eigen route is exact up to √(round-off) ~ 1e-8 in the trace."""
    rng = np.random.default_rng(2)
    u = rng.normal(size=5)
    B = _spd(rng, 5)
    want = u @ u + np.trace(B) - 2 * math.sqrt(u @ B @ u)
    zero = np.zeros(5)
    assert frechet_gaussian(zero, np.outer(u, u), zero, B) == pytest.approx(want, abs=1e-7)
    assert frechet_gaussian(zero, B, zero, np.outer(u, u)) == pytest.approx(want, abs=1e-7)
    two = np.zeros(2)
    assert frechet_gaussian(two, np.diag([1.0, 0]), two, np.diag([4.0, 0])) == pytest.approx(1.0)
    uu = np.outer(u, u)
    assert frechet_gaussian(zero, uu, zero, uu) == pytest.approx(0.0, abs=1e-7)


def test_frechet_bias_formula_against_exact_1d() -> None:
    """In 1-D, FD = (m̂_a - m̂_b)² + (s_a - s_b)², so exactly
    E[FD] = 2σ²/n + 2σ²(1 - c4(n)²) with c4 = E[s]/σ.  With c4 = 1 - 1/(4n) - 7/(32n²) + ...,
    2(1 - c4²) = 1/n + 3/(4n²) + ...; frechet_bias uses 1/(n-1) = 1/n + 1/n² + ..., a
    relative difference ≈ 1/(12 n) of the total 3/n: 1/n is a bound with a 12x margin."""
    for n in (10, 20, 200, 5000):
        exact = 2.0 / n + 2.0 * (1.0 - _c4(n) ** 2)
        got = frechet_bias(np.array([[2.5]]), n) / 2.5
        assert abs(got / exact - 1.0) < 1.0 / n
    # unequal sizes: the mean term is exact, the covariance term uses the average of 1/(n-1)
    assert frechet_bias(np.eye(1), 11, 21) == pytest.approx(1 / 11 + 1 / 21 + 0.5 * (0.1 + 0.05))


def test_frechet_distance_bias_for_identical_gaussians() -> None:
    """Two independent sets from one Gaussian.  1-D, n = 20, R = 400 replicate pairs: the
    mean FD against the exact expectation above, |mean - E| < Z sd/√R (CLT).  5-D with a
    non-isotropic covariance, n = 200, R = 300: against frechet_bias, with Z sd/√R plus the
    neglected higher-order terms, bounded by (D + 1)/n of the bias (frechet_bias's O(D/n);
    measured with R = 4000 in the slow test: relative deviation < 1 % at n = 100)."""
    rng = np.random.default_rng(3)
    n, R = 20, 400
    v = np.array(
        [frechet_distance(rng.normal(size=(n, 1)), rng.normal(size=(n, 1))) for _ in range(R)]
    )
    exact = 2.0 / n + 2.0 * (1.0 - _c4(n) ** 2)
    assert abs(v.mean() - exact) < Z * v.std(ddof=1) / math.sqrt(R)
    d, n, R = 5, 200, 300
    S = _spd(rng, d)
    L = np.linalg.cholesky(S)
    draw = lambda: rng.normal(size=(n, d)) @ L.T + 3.0
    v = np.array([frechet_distance(draw(), draw()) for _ in range(R)])
    bias = frechet_bias(S, n)
    assert abs(v.mean() - bias) < Z * v.std(ddof=1) / math.sqrt(R) + (d + 1) / n * bias
    assert v.mean() > 0.5 * bias  # the bias is real: FD of identical distributions is not 0


@pytest.mark.slow
def test_frechet_bias_formula_many_replicates() -> None:
    """R = 4000 replicate pairs at D = 5, n = 100 and D = 10, n = 400: the second-order
    formula within Z sd/√R + 2 % (higher-order terms; their size is what this test measures,
    ~0.5 % observed)."""
    rng = np.random.default_rng(4)
    for d, n in ((5, 100), (10, 400)):
        S = _spd(rng, d)
        L = np.linalg.cholesky(S)
        draw = lambda: rng.normal(size=(n, d)) @ L.T
        v = np.array([frechet_distance(draw(), draw()) for _ in range(4000)])
        bias = frechet_bias(S, n)
        assert abs(v.mean() - bias) < Z * v.std(ddof=1) / math.sqrt(4000) + 0.02 * bias


def test_frechet_distance_converges_to_closed_form() -> None:
    """FD is the squared 2-Wasserstein distance between Gaussians, a metric, so for the fitted
    Gaussians N̂_a, N̂_b: |√FD(N̂_a, N̂_b) - √FD(N_a, N_b)| ≤ √FD(N̂_a, N_a) + √FD(N̂_b, N_b)
    exactly (triangle inequality; the right side uses the true parameters).  Its right side
    shrinks like √(D²/n): one set against its truth has E[FD(N̂, N)] ≈ tr Σ/n +
    [Σ_ij λ_iλ_j/(λ_i+λ_j) + ½ Σ λ_i] / (2(n-1)) ≤ tr Σ/n + D(D+1) λ_max / (4(n-1)) (the
    one-sample version of frechet_bias), λ_max ≤ 3 here, and (e_a + e_b)² ≤ 2(e_a² + e_b²);
    so E[(e_a + e_b)²] ≤ 2(tr A + tr B)/n + 3 D(D+1)/(n-1).  Each e² is a sum of
    D(D+3)/2 = 14 squared, nearly Gaussian terms (chi-square-like, relative sd ≈ 0.4), so
    25 times that mean (5x on e) is never reached by chance: at n = 20 000, e_a + e_b is
    below 5 √(...), which is itself below a fifth of √FD: the sample FD has converged."""
    rng = np.random.default_rng(5)
    d = 4
    A, B = _spd(rng, d), _spd(rng, d, 0.5, 3.0)
    ma, mb = np.zeros(d), rng.normal(size=d)
    truth = frechet_gaussian(ma, A, mb, B)
    gaps = []
    for n in (100, 1000, 20_000):
        xa = rng.multivariate_normal(ma, A, size=n)
        xb = rng.multivariate_normal(mb, B, size=n)
        fit = lambda x: (x.mean(0), np.cov(x, rowvar=False))
        ea = math.sqrt(frechet_gaussian(*fit(xa), ma, A))
        eb = math.sqrt(frechet_gaussian(*fit(xb), mb, B))
        gap = abs(math.sqrt(frechet_distance(xa, xb)) - math.sqrt(truth))
        assert gap <= ea + eb + 1e-9
        gaps.append(ea + eb)
    bound = 5 * math.sqrt(2 * (np.trace(A) + np.trace(B)) / 20_000 + 3 * d * (d + 1) / 19_999)
    assert gaps[-1] < bound < 0.2 * math.sqrt(truth)


def test_frechet_floor() -> None:
    """Held-out features from N(0, Σ), D = 2, a pool of 10 000 rows, n = 50, 20 repeats:
    each floor is the FD of two disjoint sets of one Gaussian, so their mean estimates
    frechet_bias(Σ, 50).  Two repeats share a fraction ~2n/N = 1 % of their rows, which
    correlates their FDs by at most that much (by ~its square for a quadratic statistic):
    variance of the mean inflated by ≤ 1 + 19·0.01, sd by ≤ 1.1, so the CLT bound is
    1.1 Z sd/√20 (Z = 5 also covers the t(19) tail of the estimated sd: 7e-5); plus the
    higher-order terms (D+1)/n of the bias as above.  Same key, same figure; one repeat has
    no sd; too small a pool and a bad key are refused."""
    rng = np.random.default_rng(6)
    S = _spd(rng, 2)
    pool = rng.multivariate_normal(np.zeros(2), S, size=10_000)
    fl = frechet_floor(pool, 50, jax.random.key(0), n_repeats=20)
    assert len(fl.values) == 20 and fl.mean == pytest.approx(np.mean(fl.values))
    bias = frechet_bias(S, 50)
    assert abs(fl.mean - bias) < 1.1 * Z * fl.sd / math.sqrt(20) + 3 / 50 * bias
    one = frechet_floor(pool, 50, 7)
    assert one.sd is None and one == frechet_floor(pool, 50, jax.random.key(7))
    with pytest.raises(DataError, match="two disjoint sets of n=30 need 60"):
        frechet_floor(pool[:59], 30)
    with pytest.raises(ConfigError, match="typed key"):
        frechet_floor(pool, 50, "seed")


def test_frechet_errors() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(DataError, match="3 features per row but feats_b has 4"):
        frechet_distance(x, np.zeros((10, 4)))
    with pytest.raises(DataError, match="at least 2"):
        frechet_distance(x, np.zeros((1, 3)))
    bad = np.ones((10, 3))
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="1 NaN"):
        frechet_distance(x, bad)
    with pytest.raises(DataError, match="expected shape"):
        frechet_distance(np.zeros(10), x)
    with pytest.raises(DataError, match="not positive semi-definite"):
        frechet_gaussian(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(DataError, match=r"\(2, 2\) to match"):
        frechet_gaussian(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


# ---------------------------------------------------------------------------- classifier score


def test_classifier_score_extremes_and_direct_formula() -> None:
    """Confident predictions spread evenly: p(y) uniform, KL = log K for every row, score K
    exactly on every split (each split of 1000/10 rows holds each class 10 times), sd 0.
    Constant predictions: p(y|x) = p(y), KL = 0, score 1.  Random Dirichlet rows: split by
    split against exp(mean_x Σ_y p log(p / p_y)) via scipy's rel_entr, and
    exp(H(p_y) - mean H(p(y|x))) (the mutual-information form)."""
    K = 10
    onehot = np.eye(K)[np.arange(1000) % K]
    m, sd = classifier_score(onehot, 10)
    assert m == pytest.approx(K, abs=1e-12) and sd == pytest.approx(0.0, abs=1e-12)
    assert classifier_score(np.tile([0.7, 0.2, 0.1], (50, 1)), 5) == pytest.approx((1.0, 0.0))
    half = np.eye(K)[np.arange(100) % 2]  # two classes used: exp(log 2)
    assert classifier_score(half, 1)[0] == pytest.approx(2.0)
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.full(K, 0.3), size=503).astype(np.float32)
    p64 = p.astype(np.float64) / p.sum(1, keepdims=True, dtype=np.float64)
    scores, scores2 = [], []
    for i in range(4):
        part = p64[i * 503 // 4 : (i + 1) * 503 // 4]
        py = part.mean(0)
        scores.append(math.exp(np.mean(np.sum(rel_entr(part, py), 1))))
        scores2.append(math.exp(stats.entropy(py) - np.mean(stats.entropy(part, axis=1))))
    m, sd = classifier_score(p, 4)
    assert m == pytest.approx(np.mean(scores), rel=1e-10)
    assert sd == pytest.approx(np.std(scores), rel=1e-8)
    assert np.allclose(scores, scores2, rtol=1e-10)


def test_classifier_score_errors() -> None:
    with pytest.raises(DataError, match="not logits"):
        classifier_score(np.full((10, 3), 2.0))
    rows = np.full((10, 3), 0.3)
    with pytest.raises(DataError, match="10 of 10 rows of probs do not sum to 1"):
        classifier_score(rows)
    with pytest.raises(ConfigError, match=r"n_splits must be in \[1, 10\]"):
        classifier_score(np.full((10, 2), 0.5), n_splits=11)
    with pytest.raises(ConfigError, match="n_splits"):
        classifier_score(np.full((10, 2), 0.5), n_splits=0)


# ---------------------------------------------------------------------------- nearest neighbours


def test_nearest_neighbours_against_brute_force() -> None:
    """Gaussian rows (no ties): indices equal scipy's argsort of cdist, distances equal to
    float32 round-off of a direct ‖s - t‖ (√D u relative plus the cast: 1e-5 relative);
    odd sizes and small chunks exercise the padding of both axes; the chunk size changes
    nothing; an exact copy is at distance 0 exactly."""
    rng = np.random.default_rng(8)
    q, r = rng.normal(size=(37, 6)), rng.normal(size=(101, 6))
    want = np.argsort(cdist(q, r), 1)[:, :3]
    for chunk in (7, 16, 4096):
        idx, dist = nearest_neighbours(q, r, 3, chunk=chunk)
        assert idx.shape == dist.shape == (37, 3) and idx.dtype == np.int32
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_allclose(dist, np.take_along_axis(cdist(q, r), want, 1), rtol=1e-5)
    idx, dist = nearest_neighbours(r[[5, 99]], r, 1, chunk=16)
    assert idx[:, 0].tolist() == [5, 99] and dist.max() == 0.0
    with pytest.raises(ConfigError, match="k=200 neighbours"):
        nearest_neighbours(q, r, 200)
    with pytest.raises(DataError, match="samples has 6 features per row but train has 5"):
        nearest_neighbours(q, r[:, :5])


@pytest.fixture(scope="module")
def digits():
    """3000 'training' digits and 200 held-out ones, a random split of the embedded subset's
    training digits (so held-out and training rows are exchangeable)."""
    x = load_mnist("train", source="embedded").x
    perm = np.random.default_rng(9).permutation(len(x))
    return x[perm[:3000]], x[perm[3000:3200]]


def test_copy_check_finds_planted_copies(digits) -> None:
    """Samples: 200 held-out digits, 10 exact training images, 10 training images plus
    N(0, 0.01²) noise (distance ≈ 0.01 √784 = 0.28, below every train-to-train
    nearest-neighbour distance of the reference rows: their minimum is ~1.2 (ones), their
    median ~5; asserted), 10 uniform-noise images (distance > 10).
    Every copy is flagged with its index (exact ones at distance 0); noise images are not.
    Held-out digits are exchangeable with training rows, so each lies below the median
    train-to-train distance with probability ½: the fraction is ½ ± binomial sd
    √(¼/200) = 0.035, plus the error of the median estimated on 1000 rows (it moves the
    population fraction by ½/√1000 = 0.016; the 2999 vs 3000 reference rows is negligible):
    |fraction - ½| < 4 · 0.039 = 0.155."""
    train, held = digits
    rng = np.random.default_rng(10)
    exact_i, noisy_i = rng.choice(3000, 10, replace=False), rng.choice(3000, 10, replace=False)
    noisy = train[noisy_i] + 0.01 * rng.normal(size=(10, 784)).astype(np.float32)
    noise = rng.uniform(size=(10, 784)).astype(np.float32)
    samples = np.concatenate([held, train[exact_i], noisy, noise])
    out = copy_check(samples, train, k=2, n_show=10, key=jax.random.key(1))
    px = out["pixels"]
    assert px["nn_index"].shape == (230, 2) and px["n_reference"] == 1000
    assert px["train_nn_distance_min"] > 0.4 and px["threshold"] > 10 * 0.28
    nn = px["nn_distance"][:, 0]
    assert np.all(nn[200:210] == 0.0)
    assert np.array_equal(train[px["nn_index"][200:210, 0]], train[exact_i])
    np.testing.assert_array_equal(px["nn_index"][210:220, 0], noisy_i)
    assert np.all(nn[210:220] < 0.4)
    flagged = set(px["flagged"].tolist())
    assert set(range(200, 220)) <= flagged and not flagged & set(range(220, 230))
    frac_held = len(flagged & set(range(200))) / 200
    assert abs(frac_held - 0.5) < 0.155
    assert px["fraction_below_threshold"] == pytest.approx(len(flagged) / 230)
    assert px["distance_min"] == 0.0 and px["distance_median"] == pytest.approx(np.median(nn))
    assert "quantile 0.5" in px["threshold_rule"] and "1000 random training" in px["threshold_rule"]
    # the grid: the 10 closest samples (the exact copies), each followed by its 2 neighbours
    assert set(px["grid_samples"].tolist()) == set(range(200, 210))
    rows = px["grid_rows"]
    assert rows.shape == (30, 784) and rows.min() >= 0.0 and rows.max() <= 1.0
    np.testing.assert_array_equal(rows[0::3], samples[px["grid_samples"]])
    np.testing.assert_array_equal(rows[1::3], train[px["nn_index"][px["grid_samples"], 0]])
    np.testing.assert_array_equal(px["grid"], tile_images(rows, (28, 28), n_cols=3))


def test_copy_check_in_feature_space(digits) -> None:
    """A random linear feature map (784 -> 16, tanh): exact copies have the same features (up
    to float32 round-off of the products, which depends on the batch: < 1e-5) and are found
    with their indices; the feature summary is separate from the
    pixel one; images of the grid stay in pixels.  Non-[0, 1] pixels are min-max scaled."""
    train, held = digits
    train, held = train[:500], held[:20]
    w = np.random.default_rng(11).normal(size=(784, 16)).astype(np.float32) / 28
    feats = lambda x: np.tanh(x @ w)
    samples = np.concatenate([held, train[[3, 77]]])
    out = copy_check(
        2 * samples - 1, 2 * train - 1, feats(train), feats(samples), k=1, n_show=2, order="first"
    )
    f = out["features"]
    assert f["space"] == "features" and out["pixels"]["space"] == "pixels"
    assert f["nn_index"][20:, 0].tolist() == [3, 77] and np.all(f["nn_distance"][20:, 0] < 1e-5)
    assert set(f["flagged"].tolist()) >= {20, 21}
    assert f["grid_samples"].tolist() == [0, 1]
    assert f["grid_rows"].min() >= 0.0 and f["grid_rows"].max() <= 1.0
    with pytest.raises(ConfigError, match="pass both train_feats and sample_feats"):
        copy_check(samples, train, feats(train))
    with pytest.raises(ConfigError, match="image_shape"):
        copy_check(samples, train, image_shape=(27, 28))


# ---------------------------------------------------------------------------- Parzen window


def _parzen_direct(s: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    """The Parzen window is the equal-weight Gaussian mixture Σ_s N(x; x_s, σ²I) / S."""
    logpdf = np.stack([stats.multivariate_normal(mean=m, cov=sigma**2).logpdf(x) for m in s])
    return logsumexp(logpdf.reshape(len(s), len(x)), axis=0) - math.log(len(s))


@pytest.mark.parametrize("dim", [1, 2])
def test_parzen_density_is_the_gaussian_mixture(dim) -> None:
    """Samples from a two-component mixture, 53 of them, at 29 points, three bandwidths,
    chunks of 8 (padding on both axes) and 4096 (one tile): against scipy's mixture density.
    Tolerance: (D + 3) u (|x| + |s|)² / (2σ²) for the distance expansion (module docstring;
    data centred on the samples' mean, as the kernel does) plus 1e-5 (1 + |log p|)
    for logsumexp and the float32 output of the exponents."""
    rng = np.random.default_rng(12 + dim)
    s = np.where(rng.uniform(size=(53, 1)) < 0.3, -2.0, 1.5) + 0.5 * rng.normal(size=(53, dim))
    x = rng.normal(size=(29, dim)) * 2
    c = s.mean(0)
    rad = np.linalg.norm(s - c, axis=1).max() + np.linalg.norm(x - c, axis=1).max()
    for sigma in (0.05, 0.3, 2.0):
        want = _parzen_direct(s, x, sigma)
        tol = (dim + 3) * U32 * rad**2 / (2 * sigma**2) + 1e-5 * (1 + np.abs(want))
        for chunk in (8, 4096):
            got = parzen_log_density(s, x, sigma, chunk=chunk)
            assert got.shape == (29,) and got.dtype == np.float64
            assert np.all(np.abs(got - want) <= tol)


def test_parzen_select_sigma_is_the_argmax_of_the_validation_curve() -> None:
    """The curve is the mean of parzen_log_density per bandwidth (one shared pass must equal
    separate passes, to float32 round-off 1e-4 here) and the chosen sigma is its argmax."""
    rng = np.random.default_rng(14)
    s, v = rng.normal(size=(300, 3)), rng.normal(size=(120, 3))
    grid = [0.05, 0.2, 0.5, 1.0, 3.0]
    sel = parzen_select_sigma(s, v, grid, chunk=64)
    each = [parzen_log_density(s, v, g, chunk=100).mean() for g in grid]
    np.testing.assert_allclose(sel.valid_log_density, each, atol=1e-4)
    assert sel.sigma == grid[int(np.argmax(each))] and sel.sigma in (0.2, 0.5)


def test_parzen_log_likelihood_against_the_true_gaussian() -> None:
    """4000 samples from p = N(0, 1), sigma chosen on 1000 validation points over a grid,
    scored on 2000 test points x_i.  The paired difference Δ_i = log p̂(x_i) - log p(x_i) has
    E[Δ] = -KL(p ‖ p̄) - G exactly, with p̄ = E p̂ = N(0, 1 + σ²), so
    KL = ½(1/(1+σ²) - 1 + log(1+σ²)), and G = E_x[log p̄(x) - E log p̂(x)] ≥ 0 (Jensen), to
    leading order E_x[Var p̂(x) / (2 p̄(x)²)] with S·Var p̂(x) = N(x; 0, 1+σ²/2)/(2σ√π) - p̄²,
    integrated numerically (~1e-3).  Noise: the sd of Δ_i over √2000 (the samples' own noise
    cancels to first order: ∫ p K_σ(x - X)/p̄ dx ≈ 1 for every sample X).  Tolerance:
    |mean Δ + KL + G| < Z · SE + G (G's neglected tail and higher-order terms, where
    S σ p(x) ≲ 1, at most as large again).  Measured over 6 seeds: within 2 SE."""
    rng = np.random.default_rng(15)
    s, v, x = rng.normal(size=(4000, 1)), rng.normal(size=(1000, 1)), rng.normal(size=(2000, 1))
    grid = np.logspace(-1.5, 0, 8)
    rec = parzen_log_likelihood(s, v, x, grid, dataset="toy:gaussian", protocol="N(0,1)")
    sigma = rec.extras["sigma"]
    assert grid[0] < sigma < grid[-1]
    delta = parzen_log_density(s, x, sigma) - stats.norm.logpdf(x[:, 0])
    kl = 0.5 * (1 / (1 + sigma**2) - 1 + math.log1p(sigma**2))
    p_bar = lambda t: stats.norm.pdf(t, scale=math.sqrt(1 + sigma**2))
    second = lambda t: (
        stats.norm.pdf(t, scale=math.sqrt(1 + sigma**2 / 2)) / (2 * sigma * math.sqrt(math.pi))
    )
    g = quad(
        lambda t: stats.norm.pdf(t) * (second(t) / p_bar(t) ** 2 - 1) / 8000, -8, 8, limit=200
    )[0]
    assert 0 < g < 0.01
    assert abs(delta.mean() + kl + g) < Z * delta.std(ddof=1) / math.sqrt(2000) + g
    # the record: the test mean of the same per-example figures, and what it was made of
    assert rec.value == pytest.approx(np.mean(parzen_log_density(s, x, sigma)), abs=1e-9)
    assert rec.method == "parzen" and rec.split == "test" and rec.dataset == "toy:gaussian"
    assert rec.counts == {
        "examples": 2000,
        "samples": 4000,
        "valid_examples": 1000,
        "sigmas": 8,
        "dims": 1,
    }
    assert rec.stderr_examples == pytest.approx(
        np.std(parzen_log_density(s, x, sigma), ddof=1) / math.sqrt(2000), rel=1e-6
    )
    assert rec.extras[f"valid_log_density[sigma={sigma:.4g}]"] == max(
        v for k, v in rec.extras.items() if k.startswith("valid_log_density")
    )
    assert THEIS_WARNING in rec.notes and "Theis" in rec.describe()
    assert "end of the grid" not in rec.notes
    edge = parzen_log_likelihood(s[:200], v[:100], x[:100], [5.0, 10.0])
    assert THEIS_WARNING in edge.notes and "at an end of the grid" in edge.notes


def test_parzen_errors() -> None:
    s, x = np.zeros((10, 3)), np.zeros((5, 3))
    with pytest.raises(ConfigError, match="finite and > 0"):
        parzen_log_density(s, x, 0.0)
    with pytest.raises(ConfigError, match="finite and > 0"):
        parzen_log_likelihood(s, x, x, [0.1, -1.0])
    with pytest.raises(ConfigError, match="grid is empty"):
        parzen_select_sigma(s, x, [])
    with pytest.raises(DataError, match="empty"):
        parzen_log_density(np.zeros((0, 3)), x, 0.1)
    with pytest.raises(DataError, match="samples has 3 features per row but test has 4"):
        parzen_log_likelihood(s, x, np.zeros((5, 4)))
    assert len(DEFAULT_PARZEN_SIGMAS) == 10 and DEFAULT_PARZEN_SIGMAS[0] == pytest.approx(0.1)
