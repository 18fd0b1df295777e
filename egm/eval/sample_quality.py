r"""Sample-quality scores for generative models (§20.14): Fréchet distance, classifier score,
a nearest-neighbour copy check and the Parzen-window log-density.

Every function works on arrays of samples or of features computed from them (an RBM's Gibbs
samples, a VAE's decoder means, a GAN's outputs; features and class probabilities from a
classifier such as :mod:`egm.eval.features`); none of them loads a network.

* :func:`frechet_distance` (Heusel et al. 2017) between two feature sets, with its closed
  form :func:`frechet_gaussian`, the leading-order finite-sample bias :func:`frechet_bias`
  of two sets drawn from one Gaussian, and the held-out floor :func:`frechet_floor` to
  report beside a model's figure.
* :func:`classifier_score`, the Inception-score analogue (Salimans et al. 2016).
* :func:`nearest_neighbours` (chunked, jitted, matmul-based) and :func:`copy_check`: does the
  model just reproduce training examples?  (§20.14.)
* :func:`parzen_log_density`, :func:`parzen_select_sigma` and :func:`parzen_log_likelihood`:
  the Gaussian Parzen-window protocol of Breuleux et al. (2011) and Goodfellow et al. (2014).
  It is *not* the model's likelihood (Theis et al. 2016; the record says so in its notes).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from egm.data.validate import check_finite, check_shape
from egm.errors import ConfigError, DataError
from egm.eval.record import LogLikelihood
from egm.eval.visualize import tile_images

__all__ = [
    "DEFAULT_PARZEN_SIGMAS",
    "THEIS_WARNING",
    "FrechetFloor",
    "ParzenSigma",
    "classifier_score",
    "copy_check",
    "frechet_bias",
    "frechet_distance",
    "frechet_floor",
    "frechet_gaussian",
    "nearest_neighbours",
    "parzen_log_density",
    "parzen_log_likelihood",
    "parzen_select_sigma",
]

#: The bandwidth grid of Goodfellow et al. (2014)'s ``parzen_ll.py``: 10 values from 0.1 to 1
#: (for data in [0, 1]).
DEFAULT_PARZEN_SIGMAS = tuple(float(s) for s in np.logspace(-1.0, 0.0, 10))

#: The caveat every Parzen record carries in its notes.
THEIS_WARNING = (
    "a Parzen-window estimate is not the model's log-likelihood (Theis, van den Oord & Bethge "
    "2016): it is the log-density of a Gaussian kernel density fitted to the model's samples, "
    "it can rank models in the opposite order of their true likelihoods, and in high "
    "dimension it needs far more samples than the ~10^4 used here to approach even the "
    "density of those samples' distribution"
)

# A covariance eigenvalue below -_PSD_RTOL * (largest |eigenvalue|) is not round-off: the
# matrix is not positive semi-definite.  1e-5 covers matrices accumulated in float32
# (relative round-off ~1e-7 per operation, times up to ~100 for long sums).
_PSD_RTOL = 1e-5


# ---------------------------------------------------------------------------- validation


def _features(x: ArrayLike, name: str, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite float64 (N, D) array with N >= ``min_rows``."""
    check_shape(x, name=name)
    check_finite(x, name=name)
    arr = np.asarray(x, np.float64)
    if arr.shape[0] < min_rows:
        raise DataError(
            f"{name} has {arr.shape[0]} rows; at least {min_rows} are needed (a covariance "
            f"needs 2 examples)"
        )
    return arr


def _same_dims(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise DataError(
            f"{name_a} has {a.shape[1]} features per row but {name_b} has {b.shape[1]}; "
            f"both must come from the same feature map (or the same pixel space)"
        )


def _positive_int(x: Any, name: str, minimum: int = 1) -> int:
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or int(x) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {x!r}")
    return int(x)


def _as_key(key: PRNGKeyArray | int, name: str = "key") -> PRNGKeyArray:
    """A typed key from a typed key or an integer seed."""
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ConfigError(f"{name} must be a single key, got a key array of shape {key.shape}")
        return key
    raise ConfigError(
        f"{name} must be a typed key (jax.random.key(seed)) or an integer seed, got {key!r}"
    )


def _sigmas(sigmas: Any) -> np.ndarray:
    s = np.asarray(sigmas, np.float64).reshape(-1)
    if s.size == 0:
        raise ConfigError("the sigma grid is empty; pass at least one bandwidth > 0")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ConfigError(
            f"every Parzen bandwidth sigma must be finite and > 0, got {s.tolist()}; use e.g. "
            f"np.logspace(-1, 0, 10) for data in [0, 1]"
        )
    return s


# ---------------------------------------------------------------------------- Fréchet


def _psd_eigh(c: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a symmetric PSD matrix, eigenvalues clipped at 0."""
    scale = max(float(np.abs(c).max()), np.finfo(np.float64).tiny)
    if np.abs(c - c.T).max() > 1e-6 * scale:
        raise DataError(f"{name} is not symmetric (max |C - Cᵀ| {np.abs(c - c.T).max():.3g})")
    w, v = np.linalg.eigh(0.5 * (c + c.T))
    if w.min() < -_PSD_RTOL * max(float(np.abs(w).max()), np.finfo(np.float64).tiny):
        raise DataError(
            f"{name} is not positive semi-definite (smallest eigenvalue {w.min():.3g}, largest "
            f"{w.max():.3g}); pass a covariance matrix"
        )
    return _clip_roundoff(w), v


def _clip_roundoff(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix below its round-off level ``D·eps·max|w|`` set to 0: they
    are indistinguishable from 0, and their square roots (``√eps`` in size) would otherwise
    bias traces of square roots."""
    floor = len(w) * np.finfo(np.float64).eps * float(np.abs(w).max(initial=0.0))
    return np.where(w > floor, w, 0.0)


def frechet_gaussian(
    mu_a: Float[ArrayLike, " D"],
    cov_a: Float[ArrayLike, "D D"],
    mu_b: Float[ArrayLike, " D"],
    cov_b: Float[ArrayLike, "D D"],
) -> float:
    r"""Fréchet (2-Wasserstein²) distance between ``N(μ_a, Σ_a)`` and ``N(μ_b, Σ_b)``:

    .. math:: \lVert μ_a - μ_b\rVert^2 + \operatorname{tr}\big(Σ_a + Σ_b
              - 2 (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}\big),

    in float64 NumPy.  Both square roots come from symmetric eigendecompositions
    (``Σ_a^{1/2} = V \sqrt{Λ} Vᵀ``, then the eigenvalues of the PSD matrix
    ``Σ_a^{1/2} Σ_b Σ_a^{1/2}``), so singular covariances (fewer examples than features, a
    constant feature) are handled exactly: eigenvalues below the round-off level
    ``D·eps·λ_max`` (including those round-off makes slightly negative) are set to 0, and the
    result, ≥ 0 in exact arithmetic, is clipped at 0 too.  A
    covariance with an eigenvalue below ``-1e-5`` times its largest is rejected as not PSD.
    """
    mu_a, mu_b = (np.asarray(m, np.float64) for m in (mu_a, mu_b))
    cov_a, cov_b = (np.asarray(c, np.float64) for c in (cov_a, cov_b))
    if mu_a.ndim != 1 or mu_b.shape != mu_a.shape:
        raise DataError(
            f"mu_a and mu_b must be vectors (D,) of the same length, got {mu_a.shape} and "
            f"{mu_b.shape}"
        )
    d = mu_a.shape[0]
    for name, c in (("cov_a", cov_a), ("cov_b", cov_b)):
        if c.shape != (d, d):
            raise DataError(f"{name} must be ({d}, {d}) to match the means, got {c.shape}")
    for name, x in (("mu_a", mu_a), ("cov_a", cov_a), ("mu_b", mu_b), ("cov_b", cov_b)):
        check_finite(x, name=name)
    wa, va = _psd_eigh(cov_a, "cov_a")
    _psd_eigh(cov_b, "cov_b")  # validation only
    sqrt_a = (va * np.sqrt(wa)) @ va.T
    m = sqrt_a @ cov_b @ sqrt_a
    wm = np.linalg.eigvalsh(0.5 * (m + m.T))
    tr_sqrt = float(np.sum(np.sqrt(_clip_roundoff(wm))))
    diff = mu_a - mu_b
    fd = float(diff @ diff) + float(np.trace(cov_a) + np.trace(cov_b)) - 2.0 * tr_sqrt
    return max(fd, 0.0)


def frechet_distance(feats_a: Float[ArrayLike, "N D"], feats_b: Float[ArrayLike, "M D"]) -> float:
    """Fréchet distance (FID's formula, Heusel et al. 2017) between two sets of features: the
    :func:`frechet_gaussian` of their sample means and unbiased (``ddof=1``) covariances, in
    float64.

    The figure is biased upwards by a finite sample: two independent sets of ``n`` examples
    from one Gaussian are at distance ≈ :func:`frechet_bias` (``O(D²/n)``), not 0, so compare
    models at the same ``n`` and report :func:`frechet_floor` beside them.

    Raises:
      DataError: not 2-D, fewer than 2 rows, different numbers of features, NaN or inf.
    """
    a = _features(feats_a, "feats_a", min_rows=2)
    b = _features(feats_b, "feats_b", min_rows=2)
    _same_dims(a, b, "feats_a", "feats_b")
    cov = lambda x: np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
    return frechet_gaussian(a.mean(0), cov(a), b.mean(0), cov(b))


def frechet_bias(cov: Float[ArrayLike, "D D"], n_a: int, n_b: int | None = None) -> float:
    r"""Leading-order expected :func:`frechet_distance` between two independent sample sets of
    sizes ``n_a`` and ``n_b`` (default ``n_a``) drawn from one Gaussian ``N(μ, Σ)``.

    The mean term is exact: ``E‖μ̂_a - μ̂_b‖² = tr Σ (1/n_a + 1/n_b)``.  The trace term is
    the squared Bures–Wasserstein distance between the two sample covariances; its gradient
    vanishes at ``Σ̂_a = Σ̂_b``, and its second-order term in ``H = Σ̂_a - Σ̂_b`` is, in the
    eigenbasis ``Σ = diag(λ)``, ``Σ_ij H_ij² / (2(λ_i + λ_j))``.  With Wishart moments
    ``E H_ij² = (λ_iλ_j + δ_ij λ_i²)(1/(n_a-1) + 1/(n_b-1))`` this gives

    .. math:: E[FD] ≈ \operatorname{tr}Σ\,(\tfrac1{n_a} + \tfrac1{n_b})
              + \tfrac12(\tfrac1{n_a-1} + \tfrac1{n_b-1})
                \Big[\sum_{ij} \frac{λ_iλ_j}{λ_i+λ_j} + \tfrac12 \sum_i λ_i\Big],

    which is ``2D/n + D(D+1)/(2(n-1))`` for ``Σ = I``; the neglected terms are smaller by a
    factor ``O(D/n)``.  It is for Gaussian features only (other fourth moments change the
    second term): for real features measure :func:`frechet_floor`.
    """
    c = np.asarray(cov, np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise DataError(f"cov must be a square matrix (D, D), got shape {c.shape}")
    check_finite(c, name="cov")
    n_a = _positive_int(n_a, "n_a", 2)
    n_b = n_a if n_b is None else _positive_int(n_b, "n_b", 2)
    lam, _ = _psd_eigh(c, "cov")
    s = lam[:, None] + lam[None, :]
    pair = np.divide(np.outer(lam, lam), s, out=np.zeros_like(s), where=s > 0)
    mean_term = lam.sum() * (1.0 / n_a + 1.0 / n_b)
    cov_term = 0.5 * (1.0 / (n_a - 1) + 1.0 / (n_b - 1)) * (pair.sum() + 0.5 * lam.sum())
    return float(mean_term + cov_term)


class FrechetFloor(NamedTuple):
    """Fréchet distances between disjoint pairs of held-out sets (see :func:`frechet_floor`)."""

    mean: float
    sd: float | None  # over repeats (ddof=1); None for one repeat
    values: tuple[float, ...]


def frechet_floor(
    feats_ref: Float[ArrayLike, "N D"],
    n: int,
    key: PRNGKeyArray | int = 0,
    *,
    n_repeats: int = 1,
) -> FrechetFloor:
    """The held-out floor of the Fréchet distance: the :func:`frechet_distance` between two
    disjoint random subsets of ``n`` rows of ``feats_ref`` (held-out data, e.g. the test
    digits' features), with ``n`` the number of model samples the model's figure used.

    A model whose samples were drawn from the data distribution would score about this (FD's
    finite-sample bias, :func:`frechet_bias`), so it is reported beside the model's FD.
    ``n_repeats`` independent pairs (each pair disjoint; pairs re-drawn) give a mean and sd.
    ``key`` is a typed key or an integer seed.

    Raises:
      DataError: ``feats_ref`` has fewer than ``2 n`` rows (or bad content).
      ConfigError: ``n < 2``, ``n_repeats < 1``, a key that is not a typed key or seed.
    """
    ref = _features(feats_ref, "feats_ref", min_rows=2)
    n = _positive_int(n, "n", 2)
    n_repeats = _positive_int(n_repeats, "n_repeats", 1)
    if 2 * n > ref.shape[0]:
        raise DataError(
            f"feats_ref has {ref.shape[0]} rows but two disjoint sets of n={n} need {2 * n}; "
            f"use more held-out examples or a smaller n (the floor must use the model's n)"
        )
    keys = jax.random.split(_as_key(key), n_repeats)
    values = []
    for k in keys:
        perm = np.asarray(jax.random.permutation(k, ref.shape[0]))
        values.append(frechet_distance(ref[perm[:n]], ref[perm[n : 2 * n]]))
    sd = float(np.std(values, ddof=1)) if n_repeats > 1 else None
    return FrechetFloor(mean=float(np.mean(values)), sd=sd, values=tuple(values))


# ---------------------------------------------------------------------------- classifier score


def classifier_score(
    probs: Float[ArrayLike, "N K"], n_splits: int = 10, *, atol: float = 1e-3
) -> tuple[float, float]:
    r"""Classifier score (the Inception score of Salimans et al. 2016 with any classifier):

    .. math:: \exp\big(E_x\, KL(p(y|x) \,\|\, p(y))\big), \qquad p(y) = E_x\, p(y|x),

    computed on each of ``n_splits`` contiguous splits of the rows (rows
    ``[i N // s, (i+1) N // s)``, as in the reference implementation) and returned as the mean
    and standard deviation (``ddof=0``, as there) over splits.  It equals
    ``exp(I(x; y))``: between 1 (every sample gets the same prediction) and ``K`` (confident
    predictions spread evenly over the ``K`` classes).  Float64, ``0 log 0 = 0``; rows are
    renormalised after validation.

    Raises:
      DataError: ``probs`` not (N, K), NaN, entries outside ``[0, 1]`` or rows whose sum is
        more than ``atol`` away from 1 (pass softmax probabilities, not logits).
      ConfigError: ``n_splits`` not in ``[1, N]``.
    """
    p = _features(probs, "probs")
    n = p.shape[0]
    if not 1.0 > atol >= 0:
        raise ConfigError(f"atol must be in [0, 1), got {atol}")
    if p.min() < -atol or p.max() > 1 + atol:
        raise DataError(
            f"probs has entries outside [0, 1] (min {p.min():.4g}, max {p.max():.4g}); pass "
            f"class probabilities (a softmax), not logits"
        )
    sums = p.sum(1)
    bad = np.abs(sums - 1.0) > atol
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} of {n} rows of probs do not sum to 1 (e.g. row "
            f"{int(np.argmax(bad))} sums to {sums[np.argmax(bad)]:.6g}); pass class "
            f"probabilities (a softmax over the last axis)"
        )
    if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer):
        raise ConfigError(f"n_splits must be an integer, got {n_splits!r}")
    if not 1 <= n_splits <= n:
        raise ConfigError(f"n_splits must be in [1, {n}] (the number of rows), got {n_splits}")
    p = np.clip(p, 0.0, None)
    p = p / p.sum(1, keepdims=True)
    scores = []
    for i in range(int(n_splits)):
        part = p[i * n // n_splits : (i + 1) * n // n_splits]
        py = part.mean(0, keepdims=True)
        safe = lambda q: np.log(np.where(q > 0, q, 1.0))
        kl = np.sum(part * (safe(part) - safe(py)), axis=1)  # 0 log 0 = 0; py > 0 where part > 0
        scores.append(math.exp(float(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


# ---------------------------------------------------------------------------- nearest neighbours


def _pad_rows(x: np.ndarray, block: int) -> np.ndarray:
    pad = (-x.shape[0]) % block
    return np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)]) if pad else x


@functools.partial(jax.jit, static_argnames=("k", "q_block", "r_block"))
def _nn_kernel(
    q: Float[Array, "Nq D"], r: Float[Array, "Nr D"], n_ref: int, k: int, q_block: int, r_block: int
) -> tuple[Int[Array, "Nq k"], Float[Array, "Nq k"]]:
    """k nearest rows of ``r[:n_ref]`` for each row of ``q`` (both padded to their blocks).

    Ranking by ``|q|² + |r|² - 2 q·r`` one (q_block, r_block) tile at a time, merging a running
    top-k in a ``lax.scan`` over reference tiles (inside a ``lax.map`` over query tiles); the
    distances returned are recomputed exactly as ``‖q - r‖`` for the selected rows."""
    d = q.shape[1]
    rb = r.reshape(-1, r_block, d)
    r_sq = jnp.sum(rb**2, -1)
    offsets = jnp.arange(rb.shape[0], dtype=jnp.int32) * r_block
    cols = jnp.arange(r_block, dtype=jnp.int32)

    def per_query_tile(qc):
        q_sq = jnp.sum(qc**2, -1)

        def body(carry, tile):
            best_d, best_i = carry
            rc, rsq, off = tile
            dots = jnp.dot(qc, rc.T, precision=jax.lax.Precision.HIGHEST)
            d2 = q_sq[:, None] + rsq[None, :] - 2.0 * dots
            idx = off + cols
            d2 = jnp.where((idx < n_ref)[None, :], d2, jnp.inf)
            neg, pos = jax.lax.top_k(-d2, k)  # the tile's own top k, then a 2k merge
            cand_d = jnp.concatenate([best_d, -neg], 1)
            cand_i = jnp.concatenate([best_i, off + pos.astype(jnp.int32)], 1)
            neg, pos = jax.lax.top_k(-cand_d, k)
            return (-neg, jnp.take_along_axis(cand_i, pos, 1)), None

        init = (jnp.full((q_block, k), jnp.inf), jnp.zeros((q_block, k), jnp.int32))
        (_, best_i), _ = jax.lax.scan(body, init, (rb, r_sq, offsets))
        exact = jnp.sqrt(jnp.sum((qc[:, None, :] - r[best_i]) ** 2, -1))
        order = jnp.argsort(exact, axis=1, stable=True)
        return jnp.take_along_axis(best_i, order, 1), jnp.take_along_axis(exact, order, 1)

    idx, dist = jax.lax.map(per_query_tile, q.reshape(-1, q_block, d))
    return idx.reshape(-1, k), dist.reshape(-1, k)


def nearest_neighbours(
    samples: Float[ArrayLike, "N D"],
    train: Float[ArrayLike, "M D"],
    k: int = 1,
    *,
    chunk: int = 2048,
) -> tuple[Int[np.ndarray, "N k"], Float[np.ndarray, "N k"]]:
    """The ``k`` nearest rows of ``train`` to each row of ``samples`` in Euclidean distance:
    ``(indices, distances)``, both (N, k), nearest first.

    Works in any space: pixels, or classifier features (pass feature arrays).  One jitted
    program: squared distances ``|s|² + |t|² - 2 s·t`` by matrix products at full float32
    precision, one (≤ chunk) × (≤ chunk) tile at a time with a running top-k, so memory is
    ``O(chunk²)`` whatever N and M (60 000 × 10 000 never exists at once).  The ranking carries
    float32 round-off of the expansion (~1e-7 relative to ``|s|²``, which only matters for
    near-ties); the distances returned are recomputed directly as ``‖s - t‖`` for the chosen
    rows, so an exact copy has distance 0.

    Raises:
      DataError: not 2-D, empty, NaN / inf, different numbers of columns.
      ConfigError: ``k`` not in ``[1, M]``, ``chunk < 1``.
    """
    s = _features(samples, "samples").astype(np.float32)
    t = _features(train, "train").astype(np.float32)
    _same_dims(s, t, "samples", "train")
    k = _positive_int(k, "k", 1)
    chunk = _positive_int(chunk, "chunk", 1)
    if k > t.shape[0]:
        raise ConfigError(f"k={k} neighbours asked for but train has only {t.shape[0]} rows")
    qb, rb = min(chunk, s.shape[0]), min(chunk, t.shape[0])
    idx, dist = _nn_kernel(_pad_rows(s, qb), _pad_rows(t, rb), t.shape[0], k, qb, rb)
    n = s.shape[0]
    return np.asarray(idx)[:n], np.asarray(dist)[:n]


# ---------------------------------------------------------------------------- copy check


def _to_unit(rows: np.ndarray) -> np.ndarray:
    """Rows unchanged if they lie in [0, 1], else min-max scaled together to [0, 1]."""
    lo, hi = float(rows.min()), float(rows.max())
    if lo >= 0.0 and hi <= 1.0:
        return rows.astype(np.float32)
    return ((rows - lo) / max(hi - lo, 1e-12)).astype(np.float32)


def _space_summary(
    queries: np.ndarray,
    refs: np.ndarray,
    images_q: np.ndarray,
    images_r: np.ndarray,
    *,
    space: str,
    k: int,
    n_show: int,
    order: str,
    ref_rows: np.ndarray,
    threshold_quantile: float,
    image_shape: tuple[int, int] | None,
    chunk: int,
) -> dict[str, Any]:
    idx, dist = nearest_neighbours(queries, refs, k, chunk=chunk)
    # train-to-train nearest neighbours of a subset, excluding each row itself
    ridx, rdist = nearest_neighbours(refs[ref_rows], refs, 2, chunk=chunk)
    self_first = ridx[:, 0] == ref_rows
    train_nn = np.where(self_first, rdist[:, 1], rdist[:, 0])
    threshold = float(np.quantile(train_nn, threshold_quantile))
    nn = dist[:, 0]
    flagged = np.flatnonzero(nn < threshold)
    shown = np.argsort(nn, kind="stable")[:n_show] if order == "closest" else np.arange(n_show)
    rows = np.concatenate([images_q[shown][:, None, :], images_r[idx[shown]]], 1)
    rows = _to_unit(rows.reshape(-1, images_q.shape[1]))
    grid = None if image_shape is None else tile_images(rows, image_shape, n_cols=k + 1)
    return {
        "space": space,
        "nn_index": idx,
        "nn_distance": dist,
        "distance_min": float(nn.min()),
        "distance_median": float(np.median(nn)),
        "distance_mean": float(nn.mean()),
        "threshold": threshold,
        "threshold_rule": (
            f"quantile {threshold_quantile:g} of the nearest-neighbour distances from "
            f"{len(ref_rows)} random training examples to the rest of the training set "
            f"({space})"
        ),
        "fraction_below_threshold": float(len(flagged) / len(nn)),
        "flagged": flagged,
        "train_nn_distance_min": float(train_nn.min()),
        "train_nn_distance_median": float(np.median(train_nn)),
        "train_nn_distance_mean": float(train_nn.mean()),
        "n_reference": len(ref_rows),
        "grid_samples": shown,
        "grid_rows": rows,
        "grid_n_cols": k + 1,
        "grid": grid,
    }


def copy_check(
    samples: Float[ArrayLike, "N D"],
    train: Float[ArrayLike, "M D"],
    train_feats: Float[ArrayLike, "M F"] | None = None,
    sample_feats: Float[ArrayLike, "N F"] | None = None,
    *,
    k: int = 3,
    n_show: int = 8,
    order: str = "closest",
    n_reference: int = 1000,
    threshold_quantile: float = 0.5,
    image_shape: tuple[int, int] | None = None,
    key: PRNGKeyArray | int = 0,
    chunk: int = 2048,
) -> dict[str, Any]:
    """Does the model just copy training examples?  (§20.14.)  Nearest training neighbours
    of every sample, a distance summary, and an image grid to look at.

    Returns ``{"pixels": summary}`` plus ``"features": summary`` when ``train_feats`` and
    ``sample_feats`` are given (neighbours searched in feature space, images still shown in
    pixels).  Each summary holds

    * ``nn_index``, ``nn_distance``: (N, k) from :func:`nearest_neighbours`;
    * ``distance_min`` / ``_median`` / ``_mean`` of each sample's nearest distance;
    * ``threshold``: the ``threshold_quantile`` (default: median) of the train-to-train
      nearest-neighbour distances of ``n_reference`` random training rows (``key``) to the
      other training rows, with ``threshold_rule`` saying so and ``train_nn_distance_*``
      summarising them; ``fraction_below_threshold`` and ``flagged`` (sample indices): the
      samples closer to the training set than that.  Samples from the data distribution
      itself (exchangeable with the training rows) give a fraction near
      ``threshold_quantile``; a copying model gives one near 1, with its copies at distance
      ~0 (compare ``distance_min`` with ``train_nn_distance_min``);
    * ``grid_rows`` ((n_show (k+1), D) in [0, 1]; each group of k+1 rows is a sample then its
      k nearest training images; rows already in [0, 1] are kept, others min-max scaled
      together), ``grid_n_cols = k + 1``, ``grid_samples`` (which samples: the ``n_show``
      with the closest neighbour for ``order="closest"``, the first ones for ``"first"``),
      and ``grid`` = ``tile_images(grid_rows, image_shape, n_cols=k + 1)``, the 2-D image to
      save as a PNG (None when ``image_shape`` is not given and D is not a square).

    Raises:
      DataError: bad arrays (shape, NaN), fewer than 2 training rows, features whose rows do
        not match the images'.
      ConfigError: bad ``k``, ``n_show``, ``order``, ``n_reference``, ``threshold_quantile``,
        ``image_shape``, ``key``; only one of the two feature arrays.
    """
    s = _features(samples, "samples").astype(np.float32)
    t = _features(train, "train", min_rows=2).astype(np.float32)
    _same_dims(s, t, "samples", "train")
    k = _positive_int(k, "k", 1)
    if k > t.shape[0]:
        raise ConfigError(f"k={k} neighbours asked for but train has only {t.shape[0]} rows")
    n_show = min(_positive_int(n_show, "n_show", 1), s.shape[0])
    n_reference = min(_positive_int(n_reference, "n_reference", 1), t.shape[0])
    if order not in ("closest", "first"):
        raise ConfigError(f'order must be "closest" or "first", got {order!r}')
    if not 0.0 <= threshold_quantile <= 1.0:
        raise ConfigError(f"threshold_quantile must be in [0, 1], got {threshold_quantile}")
    d = s.shape[1]
    if image_shape is None:
        side = math.isqrt(d)
        image_shape = (side, side) if side * side == d else None
    else:
        image_shape = tuple(int(v) for v in image_shape)
        if len(image_shape) != 2 or image_shape[0] * image_shape[1] != d:
            raise ConfigError(f"image_shape {image_shape} does not hold the {d} pixels per row")
    if (train_feats is None) != (sample_feats is None):
        raise ConfigError(
            "pass both train_feats and sample_feats (features of the same network) or neither"
        )
    ref_rows = np.sort(np.asarray(jax.random.permutation(_as_key(key), t.shape[0]))[:n_reference])
    common = dict(
        k=k,
        n_show=n_show,
        order=order,
        ref_rows=ref_rows,
        threshold_quantile=float(threshold_quantile),
        image_shape=image_shape,
        chunk=chunk,
    )
    out = {"pixels": _space_summary(s, t, s, t, space="pixels", **common)}
    if train_feats is not None:
        tf = _features(train_feats, "train_feats").astype(np.float32)
        sf = _features(sample_feats, "sample_feats").astype(np.float32)
        _same_dims(sf, tf, "sample_feats", "train_feats")
        if tf.shape[0] != t.shape[0] or sf.shape[0] != s.shape[0]:
            raise DataError(
                f"features must have one row per image: train_feats {tf.shape[0]} vs train "
                f"{t.shape[0]}, sample_feats {sf.shape[0]} vs samples {s.shape[0]}"
            )
        out["features"] = _space_summary(sf, tf, s, t, space="features", **common)
    return out


# ---------------------------------------------------------------------------- Parzen window


@functools.partial(jax.jit, static_argnames=("x_block", "s_block"))
def _parzen_kernel(
    samples: Float[Array, "S D"],
    n_samples: int,
    x: Float[Array, "M D"],
    sigmas: Float[Array, " G"],
    x_block: int,
    s_block: int,
) -> Float[Array, "G M"]:
    """``log Σ_s exp(-‖x - s‖² / (2σ²))`` for every sigma and row of ``x`` (padded inputs):
    a running ``logaddexp`` over sample tiles in a ``lax.scan``, inside a ``lax.map`` over
    tiles of ``x``; squared distances by matrix products at full float32 precision."""
    d = samples.shape[1]
    sb = samples.reshape(-1, s_block, d)
    s_sq = jnp.sum(sb**2, -1)
    offsets = jnp.arange(sb.shape[0], dtype=jnp.int32) * s_block
    cols = jnp.arange(s_block, dtype=jnp.int32)
    neg_inv = -0.5 / sigmas**2

    def per_x_tile(xc):
        x_sq = jnp.sum(xc**2, -1)

        def body(acc, tile):
            sc, ssq, off = tile
            dots = jnp.dot(xc, sc.T, precision=jax.lax.Precision.HIGHEST)
            d2 = jnp.maximum(x_sq[:, None] + ssq[None, :] - 2.0 * dots, 0.0)
            a = neg_inv[:, None, None] * d2[None]
            a = jnp.where((off + cols < n_samples)[None, None, :], a, -jnp.inf)
            return jnp.logaddexp(acc, jax.nn.logsumexp(a, axis=-1)), None

        acc0 = jnp.full((sigmas.shape[0], x_block), -jnp.inf)
        acc, _ = jax.lax.scan(body, acc0, (sb, s_sq, offsets))
        return acc

    out = jax.lax.map(per_x_tile, x.reshape(-1, x_block, d))  # (tiles, G, x_block)
    return jnp.moveaxis(out, 1, 0).reshape(sigmas.shape[0], -1)


def _parzen(samples: Any, x: Any, sigmas: np.ndarray, chunk: int, x_name: str) -> np.ndarray:
    """(G, M) per-example Parzen log-densities, float64 on the host."""
    s = _features(samples, "samples")
    xx = _features(x, x_name)
    _same_dims(s, xx, "samples", x_name)
    chunk = _positive_int(chunk, "chunk", 1)
    center = s.mean(0)  # distances are shift-invariant; centring shrinks float32 round-off
    s = (s - center).astype(np.float32)
    xx = (xx - center).astype(np.float32)
    sb, xb = min(chunk, s.shape[0]), min(chunk, xx.shape[0])
    lse = _parzen_kernel(
        _pad_rows(s, sb), s.shape[0], _pad_rows(xx, xb), jnp.asarray(sigmas, jnp.float32), xb, sb
    )
    lse = np.asarray(lse, np.float64)[:, : xx.shape[0]]
    d = s.shape[1]
    log_norm = math.log(s.shape[0]) + 0.5 * d * np.log(2.0 * math.pi * sigmas**2)
    return lse - log_norm[:, None]


def parzen_log_density(
    samples: Float[ArrayLike, "S D"],
    x: Float[ArrayLike, "M D"],
    sigma: float,
    *,
    chunk: int = 1024,
) -> Float[np.ndarray, " M"]:
    r"""Log-density of each row of ``x`` under the Gaussian Parzen window (kernel density) of
    ``samples`` with bandwidth ``σ`` (Breuleux et al. 2011):

    .. math:: \log \hat p(x) = \operatorname{logsumexp}_s \Big(-\frac{\lVert x - x_s
              \rVert^2}{2σ^2}\Big) - \log S - \frac D2 \log(2πσ^2).

    One jitted program, tiles of (≤ chunk) × (≤ chunk) (memory ``O(chunk²)``), log-space
    throughout, so tiny densities in high dimension do not underflow; float32 inside (data
    centred on the samples' mean first), float64 out.

    Raises:
      DataError: bad arrays (shape, empty, NaN) or different numbers of columns.
      ConfigError: ``sigma`` not finite and > 0, ``chunk < 1``.
    """
    if np.ndim(sigma) != 0:
        raise ConfigError(
            f"sigma must be one number, got shape {np.shape(sigma)}; use parzen_select_sigma "
            f"for a grid"
        )
    return _parzen(samples, x, _sigmas(sigma), chunk, "x")[0]


class ParzenSigma(NamedTuple):
    """A bandwidth chosen on validation data (see :func:`parzen_select_sigma`)."""

    sigma: float
    sigmas: Float[np.ndarray, " G"]
    valid_log_density: Float[np.ndarray, " G"]  # mean log p̂ of the validation set per sigma


def parzen_select_sigma(
    samples: Float[ArrayLike, "S D"],
    valid: Float[ArrayLike, "V D"],
    sigmas: Float[ArrayLike, " G"] = DEFAULT_PARZEN_SIGMAS,
    *,
    chunk: int = 1024,
) -> ParzenSigma:
    """The bandwidth of the grid ``sigmas`` that maximises the mean Parzen log-density
    (:func:`parzen_log_density`) of the validation rows, with the whole validation curve.
    All bandwidths share each tile's distances (one pass over the data).  Ties go to the
    first."""
    grid = _sigmas(sigmas)
    curve = _parzen(samples, valid, grid, chunk, "valid").mean(1)
    return ParzenSigma(
        sigma=float(grid[int(np.argmax(curve))]), sigmas=grid, valid_log_density=curve
    )


def parzen_log_likelihood(
    samples: Float[ArrayLike, "S D"],
    valid: Float[ArrayLike, "V D"],
    test: Float[ArrayLike, "M D"],
    sigmas: Float[ArrayLike, " G"] = DEFAULT_PARZEN_SIGMAS,
    *,
    chunk: int = 1024,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """The Parzen-window protocol of Goodfellow et al. (2014): a Gaussian Parzen window on the
    model's samples (they used 10 000), its bandwidth chosen on ``valid`` over ``sigmas``
    (:func:`parzen_select_sigma`), and the mean log-density of ``test`` under it with its
    standard error over test examples.

    Returns a :class:`~egm.eval.record.LogLikelihood` with ``method="parzen"``, ``counts``
    (``examples``, ``samples``, ``valid_examples``, ``sigmas``: the grid size, ``dims``),
    ``extras`` (``sigma`` chosen, ``sigma_min`` / ``sigma_max`` of the grid, and the
    validation curve as ``valid_log_density[sigma=...]``), and ``notes`` that always carry
    :data:`THEIS_WARNING` (plus a warning when the chosen sigma is at an end of the grid).

    Raises:
      DataError: bad arrays (shape, empty, NaN) or different numbers of columns.
      ConfigError: an empty grid or a bandwidth that is not finite and > 0; bad record fields.
    """
    sel = parzen_select_sigma(samples, valid, sigmas, chunk=chunk)
    per_example = _parzen(samples, test, np.array([sel.sigma]), chunk, "test")[0]
    notes = [THEIS_WARNING]
    if len(sel.sigmas) > 1 and sel.sigma in (sel.sigmas.min(), sel.sigmas.max()):
        notes.append(
            f"the chosen sigma {sel.sigma:.4g} is at an end of the grid [{sel.sigmas.min():.4g}, "
            f"{sel.sigmas.max():.4g}]: widen the grid"
        )
    extras: dict[str, float] = {
        "sigma": sel.sigma,
        "sigma_min": float(sel.sigmas.min()),
        "sigma_max": float(sel.sigmas.max()),
    }
    for s, v in zip(sel.sigmas, sel.valid_log_density, strict=True):
        extras[f"valid_log_density[sigma={s:.4g}]"] = float(v)
    s_shape, v_shape = np.shape(samples), np.shape(valid)
    return LogLikelihood.from_per_example(
        per_example,
        "parzen",
        counts={
            "samples": int(s_shape[0]),
            "valid_examples": int(v_shape[0]),
            "sigmas": len(sel.sigmas),
            "dims": int(s_shape[1]),
        },
        dataset=dataset,
        split=split,
        protocol=protocol,
        notes="; ".join(notes),
        extras=extras,
    )
