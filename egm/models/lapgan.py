r"""The Laplacian pyramid of LAPGAN (Denton et al. 2015; §20.10.4).

LAPGAN generates an image coarse to fine: a GAN draws the coarsest level
:math:`\tilde I_K`, and at each finer level k a conditional GAN draws the residual
:math:`\tilde h_k = G_k(z_k, u(\tilde I_{k+1}))` given the up-sampled coarser image, so
:math:`\tilde I_k = u(\tilde I_{k+1}) + \tilde h_k`.  Its training data are the levels of the
Laplacian pyramid of each image: :math:`I_0 = I`, :math:`I_{k+1} = d(I_k)` and residuals
:math:`h_k = I_k - u(d(I_k))`, from which :math:`I` is rebuilt exactly by the same
recurrence (:func:`reconstruct`).  Here ``d`` is 2 × 2 mean pooling and ``u`` nearest-
neighbour ×2 up-sampling (Denton et al. blur with a Gaussian before sub-sampling; any pair
(d, u) gives an exact pyramid, because each residual is defined as what ``u(d(·))`` misses).
On MNIST, 28 → 14 → 7.

Only the pyramid is implemented so far: the conditional GANs of each level and their
experiment are not (BUILD_NOTES.md, issue 14).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from egm.errors import ConfigError, DataError

__all__ = ["downsample", "laplacian_pyramid", "reconstruct", "upsample"]


def downsample(x: Float[Array, "n h w"]) -> Float[Array, "n h/2 w/2"]:
    """``d``: the mean of each 2 × 2 block (``h`` and ``w`` even)."""
    n, h, w = x.shape
    if h % 2 or w % 2:
        raise DataError(f"downsample needs even image sides, got {h}x{w}")
    return x.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def upsample(x: Float[Array, "n h w"]) -> Float[Array, "n 2h 2w"]:
    """``u``: each pixel repeated into a 2 × 2 block (nearest neighbour)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def laplacian_pyramid(
    x: Float[Array, "n h w"], levels: int
) -> tuple[Float[Array, "n hK wK"], list[Float[Array, "n hk wk"]]]:
    """``(I_K, [h_0, ..., h_{K-1}])`` for ``K = levels`` down-samplings: the coarsest image
    and the residuals ``h_k = I_k - u(d(I_k))``, finest first."""
    if not (isinstance(levels, int) and levels >= 0):
        raise ConfigError(f"levels must be an integer >= 0, got {levels!r}")
    h, w = x.shape[1:]
    if h % 2**levels or w % 2**levels:
        raise ConfigError(
            f"{levels} halvings need image sides divisible by {2**levels}, got {h}x{w} "
            f"(28x28 MNIST takes levels <= 2: 28 -> 14 -> 7)"
        )
    residuals, level = [], jnp.asarray(x)
    for _ in range(levels):
        coarse = downsample(level)
        residuals.append(level - upsample(coarse))
        level = coarse
    return level, residuals


def reconstruct(
    coarsest: Float[Array, "n hK wK"], residuals: list[Float[Array, "n hk wk"]]
) -> Float[Array, "n h w"]:
    """``I_0`` from the pyramid: ``I_k = u(I_{k+1}) + h_k``, coarse to fine (the sampling
    recurrence of LAPGAN with the true residuals)."""
    level = coarsest
    for h in reversed(residuals):
        level = upsample(level) + h
    return level
