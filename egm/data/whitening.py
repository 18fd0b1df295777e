r"""Whitening transforms of real-valued data (ZCA, PCA, per-feature standardisation).

A :class:`Whitening` is an affine map ``z = (x - mean) @ forward`` with its way back
``x ≈ z @ inverse + mean``, fitted on training data and kept so that filters and
samples learned in the whitened space can be shown as images again.  With the training
covariance ``C = U diag(λ) Uᵀ`` (``1/N`` normalisation, eigenvalues descending):

* ``"zca"``: ``forward = U diag((λ + eps)^{-1/2}) Uᵀ`` (symmetric, D x D),
  ``inverse = U diag((λ + eps)^{1/2}) Uᵀ``.  The whitened training data has covariance
  ``U diag(λ / (λ + eps)) Uᵀ`` exactly — the identity when ``eps = 0`` — and ZCA is the
  whitening that stays closest to the pixels (Bell & Sejnowski 1997), so whitened
  patches still look like patches (with edges enhanced).
* ``"pca"``: the first ``K = n_components`` eigenvectors:
  ``forward = U_K diag((λ_K + eps)^{-1/2})`` (D x K), ``inverse = diag((λ_K + eps)^{1/2}) U_Kᵀ``
  (K x D), the Moore–Penrose pseudo-inverse of ``forward``; ``unwhiten(whiten(x))`` is
  the projection of ``x - mean`` on the top-K principal subspace, plus ``mean``.
  Whitened covariance ``diag(λ_K / (λ_K + eps))``.
* ``"standardize"``: per feature, ``z_i = (x_i - mean_i) / s_i`` with
  ``s_i = sqrt(max(var_i, eps))``: every feature whose variance is at least ``eps`` gets
  unit variance exactly, and ``eps`` is a *floor* for the (nearly) constant ones (MNIST's
  border pixels), which are centred and not blown up.  ``eigvals`` holds the variances.

``eps`` (default ``None``): ``0.01 * mean(λ)``, where ``mean(λ) = trace(C) / D`` is also
the mean per-feature variance.  A default relative to the data's own scale makes the
transform scale-free (``x`` and ``c x`` whiten to the same ``z``), which no absolute
constant does; 1 % of the average variance leaves the leading components of natural
image patches essentially whitened (their eigenvalues are many times the mean) and
damps the high-frequency directions whose eigenvalues fall below it — those carry
mostly quantisation noise, which exact whitening would amplify the most.  Pass a float
for an absolute value; ``eps = 0`` whitens exactly and needs a full-rank covariance.
"""

from __future__ import annotations

import os
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from egm.data.validate import check_finite, check_shape
from egm.errors import ConfigError, CorruptFileError, DataError

__all__ = [
    "WHITENING_KINDS",
    "Whitening",
    "fit_whitening",
    "load_whitening",
    "save_whitening",
    "unwhiten",
    "whiten",
]

WHITENING_KINDS: tuple[str, ...] = ("zca", "pca", "standardize")
_FORMAT = "egm.whitening/1"
_EPS_RELATIVE = 0.01


class Whitening(NamedTuple):
    """A fitted whitening ``z = (x - mean) @ forward``, ``x ≈ z @ inverse + mean``.

    Attributes:
      kind: ``"zca"``, ``"pca"`` or ``"standardize"``.
      mean: feature means of the training data ``(D,)``.
      forward: ``(D, K)``; ``K = D`` except for PCA with fewer components.
      inverse: ``(K, D)``; the inverse of ``forward`` (its pseudo-inverse when ``K < D``).
      eigvals: covariance eigenvalues ``(D,)``, descending (zca/pca), or the per-feature
        variances (standardize), before ``eps``.
      eps: the absolute regulariser that was used.
    """

    kind: str
    mean: Float[np.ndarray, " D"]
    forward: Float[np.ndarray, "D K"]
    inverse: Float[np.ndarray, "K D"]
    eigvals: Float[np.ndarray, " D"]
    eps: float


def fit_whitening(
    x: Float[ArrayLike, "N D"],
    kind: str = "zca",
    *,
    eps: float | None = None,
    n_components: int | None = None,
) -> Whitening:
    """Fit a whitening to training data ``x`` (one example per row); see the module doc.

    Args:
      x: training data ``(N, D)``, finite, ``N >= 2``.
      kind: ``"zca"``, ``"pca"`` or ``"standardize"``.
      eps: regulariser of the eigenvalues (zca, pca: ``λ + eps``) or floor of the
        variances (standardize: ``max(var, eps)``); ``None``: ``0.01 * trace(C) / D``.
      n_components: number of principal components kept, only for ``"pca"``
        (default: all ``D``).

    Raises:
      ConfigError: unknown kind, ``n_components`` out of ``1..D`` or given for another
        kind, negative or non-finite ``eps``.
      DataError: ``x`` not a finite ``(N, D)`` array with ``N >= 2``, or an exact
        (``eps = 0``) whitening of a rank-deficient covariance.
    """
    if kind not in WHITENING_KINDS:
        raise ConfigError(f"unknown whitening kind {kind!r}; expected one of {WHITENING_KINDS}")
    check_shape(x, None, "whitening data")
    check_finite(x, "whitening data")
    xs = np.asarray(x, dtype=np.float64)
    n, d = xs.shape
    if n < 2:
        raise DataError(f"whitening data has {n} example; a covariance needs at least 2 rows")
    if n_components is not None:
        if kind != "pca":
            raise ConfigError(f'n_components only applies to kind="pca", not {kind!r}')
        if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
            raise ConfigError(f"n_components must be an integer, got {n_components!r}")
        if not 1 <= n_components <= d:
            raise ConfigError(
                f"n_components must be in 1..{d} (the data dimension), got {n_components}"
            )
    if eps is not None and not (np.isfinite(eps) and eps >= 0):
        raise ConfigError(f"eps must be a finite number >= 0, got {eps!r}")

    mean = xs.mean(axis=0)
    centred = xs - mean
    if not np.any(centred):
        raise DataError("whitening data is constant (every row is the same); nothing to whiten")
    if kind == "standardize":
        var = np.mean(centred**2, axis=0)
        eps_abs = _EPS_RELATIVE * float(var.mean()) if eps is None else float(eps)
        scale = np.sqrt(np.maximum(var, eps_abs))
        if not np.all(scale > 0):
            raise DataError(
                f"{int(np.sum(scale == 0))} features are constant and eps=0 gives them no "
                "floor; pass eps > 0 (e.g. the default eps=None)"
            )
        return Whitening(kind, mean, np.diag(1.0 / scale), np.diag(scale), var, eps_abs)

    cov = centred.T @ centred / n
    lam, u = np.linalg.eigh(cov)
    lam, u = np.clip(lam[::-1], 0.0, None), u[:, ::-1]  # descending; round-off can go < 0
    eps_abs = _EPS_RELATIVE * float(lam.mean()) if eps is None else float(eps)
    k = d if n_components is None else int(n_components)
    reg = lam[:k] + eps_abs
    tiny = reg <= np.finfo(np.float64).eps * max(float(lam[0]), np.finfo(np.float64).tiny) * d
    if np.any(tiny):
        raise DataError(
            f"{int(tiny.sum())} of the {k} kept covariance eigenvalues are 0 (the data has rank "
            f"< {k}: N={n} examples or linearly dependent features) and eps={eps_abs} does not "
            "regularise them; pass eps > 0 (e.g. the default eps=None) or, for PCA, fewer "
            "n_components"
        )
    uk = u[:, :k]
    forward = uk / np.sqrt(reg)
    inverse = np.sqrt(reg)[:, None] * uk.T
    if kind == "zca":
        forward, inverse = forward @ uk.T, uk @ inverse
        forward = 0.5 * (forward + forward.T)  # symmetric to the last bit
        inverse = 0.5 * (inverse + inverse.T)
    return Whitening(kind, mean, forward, inverse, lam, eps_abs)


def whiten(w: Whitening, x: Float[ArrayLike, "... D"]) -> Float[ArrayLike, "... K"]:
    """``z = (x - mean) @ forward``.

    numpy in, numpy out (in ``x``'s float dtype, float32 for integer input); a jax array
    (or a traced value inside ``jit``) in, a jax array out.
    """
    _check_last_axis(x, w.forward.shape[0], "whiten", "features D")
    if isinstance(x, jax.Array):
        return (x - jnp.asarray(w.mean, x.dtype)) @ jnp.asarray(w.forward, x.dtype)
    xs = np.asarray(x)
    return ((xs - w.mean) @ w.forward).astype(_out_dtype(xs))


def unwhiten(w: Whitening, z: Float[ArrayLike, "... K"]) -> Float[ArrayLike, "... D"]:
    """``x = z @ inverse + mean``: the exact inverse of :func:`whiten` for zca and
    standardize; for PCA with ``K < D`` the reconstruction from the kept components."""
    _check_last_axis(z, w.inverse.shape[0], "unwhiten", "components K")
    if isinstance(z, jax.Array):
        return z @ jnp.asarray(w.inverse, z.dtype) + jnp.asarray(w.mean, z.dtype)
    zs = np.asarray(z)
    return (zs @ w.inverse + w.mean).astype(_out_dtype(zs))


def save_whitening(path: str | os.PathLike[str], w: Whitening) -> None:
    """Write ``w`` to ``path`` as an ``.npz`` file (exactly that path; no suffix added)."""
    arrays = {
        "format": np.array(_FORMAT),
        "kind": np.array(w.kind),
        "mean": np.asarray(w.mean),
        "forward": np.asarray(w.forward),
        "inverse": np.asarray(w.inverse),
        "eigvals": np.asarray(w.eigvals),
        "eps": np.array(float(w.eps)),
    }
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_whitening(path: str | os.PathLike[str]) -> Whitening:
    """Read a whitening written by :func:`save_whitening`.

    Raises:
      FileNotFoundError: no file at ``path``.
      CorruptFileError: the file is not an ``.npz`` written by :func:`save_whitening`
        (truncated, another kind of file, missing arrays or inconsistent shapes).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CorruptFileError(
            f"{path}: not a whitening file written by egm.data.save_whitening ({e})"
        ) from e
    if not isinstance(arrays, dict) or str(arrays.get("format", "")) != _FORMAT:
        raise CorruptFileError(
            f"{path}: not a whitening file written by egm.data.save_whitening "
            f"(format marker {_FORMAT!r} missing)"
        )
    missing = [
        k for k in ("kind", "mean", "forward", "inverse", "eigvals", "eps") if k not in arrays
    ]
    if missing:
        raise CorruptFileError(f"{path}: whitening file lacks the arrays {missing}")
    kind = str(arrays["kind"])
    mean, forward, inverse = arrays["mean"], arrays["forward"], arrays["inverse"]
    eigvals, eps = arrays["eigvals"], arrays["eps"]
    d = mean.shape[0] if mean.ndim == 1 else -1
    k = forward.shape[1] if forward.ndim == 2 else -1
    if (
        kind not in WHITENING_KINDS
        or d < 1
        or forward.shape != (d, k)
        or inverse.shape != (k, d)
        or eigvals.shape != (d,)
        or eps.shape != ()
        or not all(np.issubdtype(a.dtype, np.floating) for a in (mean, forward, inverse, eigvals))
    ):
        raise CorruptFileError(
            f"{path}: inconsistent whitening file (kind {kind!r}, mean {mean.shape}, forward "
            f"{forward.shape}, inverse {inverse.shape}, eigvals {eigvals.shape}, eps {eps.shape})"
        )
    return Whitening(kind, mean, forward, inverse, eigvals, float(eps))


def _out_dtype(a: np.ndarray) -> np.dtype:
    return a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float32)


def _check_last_axis(x: object, size: int, fn: str, what: str) -> None:
    shape = tuple(np.shape(x))
    if not shape or shape[-1] != size:
        raise DataError(
            f"{fn}: expected the last axis to hold the {size} {what} of this whitening, "
            f"got shape {shape}"
        )
    if not isinstance(x, jax.Array):  # a numpy input; jax arrays are not pulled to the host
        check_finite(x, f"{fn} input")
