"""Baseline log-likelihoods every model of the same data should beat.

:func:`gaussian_log_likelihood`: the full-covariance Gaussian fitted to the training data by
maximum likelihood, scored exactly on held-out data (the baseline of every real-valued model
of whitened patches or dequantised MNIST, §20.5).
"""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import ArrayLike, Float

from egm.errors import ConfigError, DataError
from egm.eval.record import LogLikelihood


def gaussian_log_likelihood(
    z_train: Float[ArrayLike, "N D"],
    z_test: Float[ArrayLike, "M D"],
    ridge: float = 1e-3,
    *,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """Mean log-density ``mean_m log N(z_m; μ, Σ + λ)`` of ``z_test`` under the Gaussian fitted
    to ``z_train`` (``μ`` the mean, ``Σ`` the maximum-likelihood covariance), in float64.

    ``Σ`` gets ``ridge`` times its mean variance on the diagonal (``λ = ridge · tr Σ / D``)
    so that it stays invertible with fewer examples than dimensions (a tiny MNIST subset);
    ``ridge = 0`` is the plain ML fit.  The figure is the exact log-likelihood of that
    fitted model (method ``"exact"``); ``stderr_examples`` is the spread over test examples.
    Nats of the data as given: use :meth:`LogLikelihood.in_bits_per_dim` with the
    whitening's Jacobian for the pixels.
    """
    z_train = np.asarray(z_train, np.float64)
    z_test = np.asarray(z_test, np.float64)
    if z_train.ndim != 2 or z_test.ndim != 2 or z_train.shape[1] != z_test.shape[1]:
        raise DataError(
            f"z_train and z_test must be (N, D) and (M, D) with the same D, got "
            f"{z_train.shape} and {z_test.shape}"
        )
    if z_train.shape[0] < 2 or z_test.shape[0] < 1:
        raise DataError(
            f"need at least 2 training and 1 test example, got {z_train.shape[0]} and "
            f"{z_test.shape[0]}"
        )
    if not (np.all(np.isfinite(z_train)) and np.all(np.isfinite(z_test))):
        raise DataError("z_train / z_test contain NaN or inf; clean the data first")
    if not ridge >= 0:
        raise ConfigError(f"ridge must be >= 0, got {ridge}")
    D = z_train.shape[1]
    m = z_train.mean(0)
    S = np.atleast_2d(np.cov(z_train, rowvar=False, bias=True))
    S = S + ridge * np.trace(S) / D * np.eye(D)
    try:
        L = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        raise DataError(
            "the training covariance is singular (fewer examples than dimensions, or a "
            "constant feature); use ridge > 0"
        ) from None
    r = np.linalg.solve(L, (z_test - m).T)  # (D, M): L⁻¹(z - μ)
    per_example = (
        -0.5 * np.sum(r**2, 0) - np.sum(np.log(np.diag(L))) - 0.5 * D * math.log(2 * math.pi)
    )
    n = per_example.shape[0]
    return LogLikelihood(
        value=float(per_example.mean()),
        method="exact",
        stderr=None,
        stderr_examples=float(per_example.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
        counts={"examples": n, "train_examples": int(z_train.shape[0]), "dims": D},
        dataset=dataset,
        split=split,
        protocol=protocol,
        notes=f"full-covariance Gaussian fitted to the training data (ridge {ridge:g})",
        extras={"ridge": float(ridge)},
    )
