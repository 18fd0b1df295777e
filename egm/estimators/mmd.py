r"""Maximum mean discrepancy with a mixture of Gaussian kernels (§20.10.5).

For distributions P, Q and a kernel k, the squared MMD (Gretton et al. 2012, eq. 3) is

.. math:: \mathrm{MMD}^2 = \mathbb{E}\,k(x, x') + \mathbb{E}\,k(y, y') - 2\,\mathbb{E}\,k(x, y),
          \quad x, x' \sim P,\ y, y' \sim Q \text{ independent};

it is 0 iff P = Q for a characteristic kernel such as the Gaussian.  Here
:math:`k(x, y) = \sum_s \exp(-\lVert x - y\rVert^2 / (2σ_s^2))`, a sum over the bandwidths
``σ_s`` (a mixture of scales, as generative moment matching networks use).  From samples
:math:`x_{1..n}`, :math:`y_{1..m}`:

- the **unbiased** U-statistic (Gretton et al. eq. 4) leaves the diagonal terms
  :math:`k(x_i, x_i)` out: :math:`\frac{1}{n(n-1)}\sum_{i≠j} k(x_i, x_j) + \frac{1}{m(m-1)}
  \sum_{i≠j} k(y_i, y_j) - \frac{2}{nm}\sum_{i,j} k(x_i, y_j)`; its expectation is MMD² exactly
  (it may be negative);
- the **biased** V-statistic (eq. 5) keeps them (all three means over full Gram matrices); it is
  ≥ 0, exactly 0 for identical sample sets, and overestimates MMD² by
  :math:`\frac{1}{n}(\mathbb{E}k(x,x) - \mathbb{E}k(x,x')) + \frac{1}{m}(\ldots)` on average.

Generative moment matching (Li et al. 2015) trains a generator by minimising
:math:`\sqrt{\mathrm{MMD}^2_b}` between a minibatch of its samples and a minibatch of data
(:func:`gmmn_loss`).  **Bandwidths, not variances:** Li et al.'s code writes the kernel as
``exp(-|x - y|^2 / (2 sigma))`` with ``sigma`` in {2, 5, 10, 20, 40, 80} on MNIST pixels, so
their ``sigma`` is σ²; :data:`LI2015_MNIST_BANDWIDTHS` holds the square roots.

The Gram matrices are computed whole (``n × m`` floats each; no chunking), from
:math:`\lVert x\rVert^2 + \lVert y\rVert^2 - 2 x·y` clipped at 0, under ``jax.jit``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from egm.errors import ConfigError, DataError

__all__ = [
    "LI2015_MNIST_BANDWIDTHS",
    "LI2015_MNIST_CODE_BANDWIDTHS",
    "check_bandwidths",
    "gaussian_kernel",
    "gmmn_loss",
    "mmd2",
]

#: Li et al. (2015)'s data-space kernels on MNIST, as bandwidths σ = sqrt({2, 5, 10, 20, 40, 80}).
LI2015_MNIST_BANDWIDTHS = tuple(math.sqrt(v) for v in (2.0, 5.0, 10.0, 20.0, 40.0, 80.0))
#: Li et al.'s code-space kernel (GMMN+AE on MNIST): one kernel, σ² = 1.
LI2015_MNIST_CODE_BANDWIDTHS = (1.0,)


def check_bandwidths(bandwidths: Sequence[float]) -> tuple[float, ...]:
    """The bandwidths as a tuple of floats; :class:`ConfigError` unless a non-empty sequence
    of finite numbers > 0."""
    try:
        bw = tuple(float(b) for b in bandwidths)
    except (TypeError, ValueError):
        raise ConfigError(
            f"bandwidths must be a sequence of numbers > 0 (e.g. (1.0, 2.0)), got {bandwidths!r}"
        ) from None
    if not bw or any(not (math.isfinite(b) and b > 0) for b in bw):
        raise ConfigError(f"every kernel bandwidth must be finite and > 0, got {bandwidths!r}")
    return bw


def _check_samples(x: Any, y: Any, unbiased: bool) -> None:
    sx, sy = jnp.shape(x), jnp.shape(y)
    if len(sx) != 2 or len(sy) != 2:
        raise DataError(f"MMD needs two (N, D) sample sets, got shapes {sx} and {sy}")
    if sx[1] != sy[1]:
        raise DataError(
            f"the sample sets have {sx[1]} and {sy[1]} features; MMD compares sets of the same "
            f"dimension (flatten images alike)"
        )
    least = 2 if unbiased else 1
    if min(sx[0], sy[0]) < least:
        raise DataError(
            f"the {'unbiased' if unbiased else 'biased'} MMD² needs at least {least} samples per "
            f"set, got {sx[0]} and {sy[0]}"
        )


def _gram(x: Array, y: Array, bandwidths: tuple[float, ...]) -> Array:
    sq = jnp.sum(x * x, 1)[:, None] + jnp.sum(y * y, 1)[None, :] - 2.0 * (x @ y.T)
    sq = jnp.maximum(sq, 0.0)
    return sum(jnp.exp(-sq / (2.0 * b * b)) for b in bandwidths)


def gaussian_kernel(
    x: Float[Array, "n d"], y: Float[Array, "m d"], bandwidths: Sequence[float]
) -> Float[Array, "n m"]:
    """The Gram matrix ``K[i, j] = Σ_s exp(-|x_i - y_j|² / (2 σ_s²))``."""
    bw = check_bandwidths(bandwidths)
    _check_samples(x, y, unbiased=False)
    return _gram(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), bw)


def _mean_offdiag(k: Array) -> Array:
    n = k.shape[0]
    return (jnp.sum(k) - jnp.sum(jnp.diag(k))) / (n * (n - 1))


@functools.partial(jax.jit, static_argnames=("bandwidths", "unbiased"))
def _mmd2(x: Array, y: Array, bandwidths: tuple[float, ...], unbiased: bool) -> Array:
    kxx, kyy, kxy = _gram(x, x, bandwidths), _gram(y, y, bandwidths), _gram(x, y, bandwidths)
    if unbiased:
        return _mean_offdiag(kxx) + _mean_offdiag(kyy) - 2.0 * jnp.mean(kxy)
    if x.shape[0] == y.shape[0]:
        # the same sum, elementwise: for identical sample sets the three Gram matrices are the
        # same numbers (one program on equal inputs), so every term is exactly 0
        return jnp.mean((kxx - kxy) + (kyy - kxy))
    return jnp.mean(kxx) + jnp.mean(kyy) - 2.0 * jnp.mean(kxy)


def mmd2(
    x: Float[Array, "n d"],
    y: Float[Array, "m d"],
    bandwidths: Sequence[float],
    *,
    unbiased: bool = True,
) -> Float[Array, ""]:
    """The squared MMD between the sample sets ``x`` and ``y`` with the kernel mixture of
    ``bandwidths`` (module docstring): the U-statistic (``unbiased=True``) or the V-statistic.
    Differentiable in ``x`` and ``y``; jitted (bandwidths are static).

    Raises:
      ConfigError: a bandwidth that is not finite and > 0, or none.
      DataError: not two 2-D arrays, different feature dimensions, or too few samples (2 per
        set for the U-statistic).
    """
    bw = check_bandwidths(bandwidths)
    _check_samples(x, y, unbiased)
    return _mmd2(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), bw, bool(unbiased))


def gmmn_loss(
    samples: Float[Array, "n d"],
    data: Float[Array, "m d"],
    bandwidths: Sequence[float],
    *,
    eps: float = 1e-10,
) -> Float[Array, ""]:
    """Li et al. (2015)'s training loss: ``sqrt(MMD²_b(samples, data) + eps)`` with the biased
    V-statistic (their ``SqrtGaussianKernelMmdLoss``; ``eps`` keeps the gradient finite when the
    sets coincide)."""
    return jnp.sqrt(mmd2(samples, data, bandwidths, unbiased=False) + eps)


def mmd2_with_floor(
    samples: Float[ArrayLike, "n d"],
    test: Float[ArrayLike, "m d"],
    reference: Float[ArrayLike, "r d"],
    bandwidths: Sequence[float] = LI2015_MNIST_BANDWIDTHS,
) -> dict[str, float]:
    """A generator's unbiased MMD² to held-out data beside its floor: ``test_mmd2`` of the
    first ``n`` samples against as many ``test`` examples, and ``test_mmd2_floor``, the same
    statistic for as many ``reference`` examples (training data: what a model that had
    learnt the data distribution would reach with this many examples)."""
    n = min(len(samples), len(test), len(reference))
    t = jnp.asarray(test[:n])
    return {
        "test_mmd2": float(mmd2(jnp.asarray(samples[:n]), t, bandwidths)),
        "test_mmd2_floor": float(mmd2(jnp.asarray(reference[:n]), t, bandwidths)),
    }
