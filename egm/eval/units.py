r"""Units of a log-likelihood: nats per example to bits per dimension (change of variables).

A density model of transformed data ``z = g(y)`` (whitened, rescaled, dequantised pixels)
gives ``log p_z(z)``; the density of the data ``y`` a figure is quoted in follows from the
change of variables

.. math:: \log p_y(y) = \log p_z(g(y)) + \log \lvert \det \partial g / \partial y \rvert,

and bits per dimension is ``-log p_y(y) / (D log 2)``.  For the real-valued MNIST protocol
(8-bit pixels ``k``, dequantised ``x = (k + u) / 256`` with ``u ~ U[0, 1)``, whitened
``z = (x - m) A``): ``y = 256 x`` is the dequantised 8-bit image, ``g(y) = (y / 256 - m) A``,
so ``log |det ∂g/∂y| = log |det A| - D log 256`` (:func:`pixel_log_det` gives the first
term, ``n_levels=256`` the second).  Because the density of ``y`` integrates to at most
the probability of each unit cube, ``-log p_y(y) / (D log 2)`` bounds the discrete model's
bits per dimension from above (Theis et al. 2016), which is what makes it comparable with
other models' figures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from egm.errors import ConfigError, DataError


def bits_per_dim(
    loglik_nats_per_example: float,
    n_dims: int,
    log_det_jacobian: float = 0.0,
    *,
    n_levels: int | None = None,
) -> float:
    r"""Bits per dimension ``-(log p_z + log|det ∂z/∂y| - [D log n_levels]) / (D log 2)``.

    ``loglik_nats_per_example``: mean ``log p_z(z)`` over examples (nats) of the data the
    model saw; ``n_dims``: ``D``; ``log_det_jacobian``: ``log |det ∂z/∂x|`` of the map from
    the data ``x`` the figure is quoted for to the model's ``z`` (0 when the model saw the
    data itself; ``pixel_log_det(whitening)`` for whitened data, see the module docstring).
    ``n_levels``: when ``x`` are grey levels in ``[0, 1)`` dequantised from an image with
    ``n_levels`` levels (``(k + u) / n_levels``), report per dimension of that image
    (``y = n_levels · x``: subtract ``D log n_levels``); None leaves ``x`` as it is.
    """
    if not isinstance(n_dims, int | np.integer) or n_dims < 1:
        raise ConfigError(f"n_dims must be an integer >= 1, got {n_dims!r}")
    ll, ld = float(loglik_nats_per_example), float(log_det_jacobian)
    if not (math.isfinite(ll) and math.isfinite(ld)):
        raise DataError(
            f"bits_per_dim needs a finite log-likelihood and log-determinant, got {ll} and {ld}"
            " (a non-square whitening has no log-determinant: quote nats of the whitened data)"
        )
    shift = 0.0
    if n_levels is not None:
        if not isinstance(n_levels, int | np.integer) or n_levels < 2:
            raise ConfigError(f"n_levels must be an integer >= 2 or None, got {n_levels!r}")
        shift = int(n_dims) * math.log(int(n_levels))
    return -(ll + ld - shift) / (int(n_dims) * math.log(2.0))


def pixel_log_det(whitening: Any) -> float:
    """``log |det A|`` of a square linear whitening ``z = (x - m) A`` (``whitening.forward``,
    e.g. :class:`egm.data.Whitening`): add it to a log-density of ``z`` for the density of
    ``x`` (the Jacobian term of :func:`bits_per_dim`).  NaN when ``A`` is not square (PCA with
    fewer components than dimensions maps onto a subspace: ``x`` has no density then)."""
    A = np.asarray(whitening.forward, np.float64)
    if A.ndim != 2:
        raise DataError(f"the whitening matrix must be 2-D, got shape {A.shape}")
    if A.shape[0] != A.shape[1]:
        return float("nan")
    return float(np.linalg.slogdet(A)[1])
