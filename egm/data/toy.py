"""Toy datasets with known distributions, for exact tests and 2-D illustrations.

* :func:`bars_and_stripes`: every ``n x n`` bars-and-stripes image (MacKay 2003),
  the classic target of tiny Boltzmann machines small enough to enumerate
  (Deep Learning §20.1-20.2); the data distribution is uniform over the patterns.
* 2-D densities for directed models, GANs and samplers, as pure jax samplers
  (``sampler(key, n) -> (n, 2) float32``, jit-able with ``n`` static) with exact
  log densities where one has a closed form: a ring of Gaussians, concentric
  rings and a checkerboard.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.errors import ConfigError

__all__ = [
    "DENSITIES",
    "bars_and_stripes",
    "log_density_checkerboard",
    "log_density_gaussian_mixture",
    "log_density_rings",
    "ring_mode_coverage",
    "sample_checkerboard",
    "sample_gaussian_mixture",
    "sample_rings",
]

_LOG_2PI = math.log(2.0 * math.pi)


def bars_and_stripes(n: int) -> Float[np.ndarray, "m n2"]:
    """All distinct ``n x n`` bars-and-stripes patterns, flattened row-major to ``(M, n*n)``.

    A *stripe* pattern switches on any subset of the rows, a *bar* pattern any subset
    of the columns. Each family has ``2^n`` members and they share exactly two (all
    off, all on), so there are ``M = 2^(n+1) - 2`` distinct patterns; each appears
    once. Order: the ``2^n`` stripe patterns (rows on given by the bits of
    ``0 .. 2^n - 1``, first row = most significant bit), then the ``2^n - 2`` bar
    patterns that are not all off or all on.

    Returns:
      float32 0/1 array of shape ``(2^(n+1) - 2, n*n)``.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"bars_and_stripes needs an integer side n >= 1, got {n!r}")
    if n > 16:
        raise ConfigError(f"bars_and_stripes({n}) would hold 2^{n + 1} patterns; use n <= 16")
    bits = (np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)[None, :]) & 1  # (2^n, n)
    stripes = np.repeat(bits[:, :, None], n, axis=2)  # pattern[k, row, col] = bits[k, row]
    bars = stripes.transpose(0, 2, 1)  # pattern[k, row, col] = bits[k, col]
    patterns = np.concatenate([stripes, bars[1:-1]])  # bars[0] / bars[-1]: all off / all on
    return patterns.reshape(len(patterns), n * n).astype(np.float32)


def _ring_means(n_components: int, radius: float) -> Float[Array, "k 2"]:
    """Means ``radius * (cos 2 pi k / K, sin 2 pi k / K)``, k = 0..K-1."""
    angles = 2.0 * jnp.pi * jnp.arange(n_components, dtype=jnp.float32) / n_components
    return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def sample_gaussian_mixture(
    key: PRNGKeyArray,
    n: int,
    *,
    n_components: int = 8,
    radius: float = 2.0,
    std: float = 0.05,
) -> Float[Array, "n 2"]:
    """``n`` draws from an equal-weight mixture of ``n_components`` isotropic Gaussians
    with standard deviation ``std``, whose means lie evenly on a circle of ``radius``
    (the first at angle 0)."""
    key_component, key_noise = jax.random.split(key)
    component = jax.random.randint(key_component, (n,), 0, n_components)
    noise = jax.random.normal(key_noise, (n, 2), dtype=jnp.float32)
    return (_ring_means(n_components, radius)[component] + std * noise).astype(jnp.float32)


def log_density_gaussian_mixture(
    x: Float[ArrayLike, "*batch 2"],
    *,
    n_components: int = 8,
    radius: float = 2.0,
    std: float = 0.05,
) -> Float[Array, "*batch"]:
    """Exact log density of :func:`sample_gaussian_mixture` (same parameters):

    ``log p(x) = logsumexp_k [-|x - mu_k|^2 / (2 std^2)] - log(2 pi std^2) - log K``.
    """
    x = jnp.asarray(x, dtype=jnp.float32)
    sq = jnp.sum((x[..., None, :] - _ring_means(n_components, radius)) ** 2, axis=-1)
    log_norm = _LOG_2PI + 2.0 * jnp.log(std) + jnp.log(n_components)
    return jax.scipy.special.logsumexp(-sq / (2.0 * std**2), axis=-1) - log_norm


def ring_mode_coverage(
    x: Float[ArrayLike, "n 2"],
    *,
    n_components: int = 8,
    radius: float = 2.0,
    std: float = 0.05,
    n_std: float = 3.0,
    min_fraction: float = 0.008,
) -> dict[str, float]:
    """Mode collapse on the ring of Gaussians (:func:`sample_gaussian_mixture`): a sample is
    *high quality* if it lies within ``n_std`` standard deviations of its nearest mean, and a
    mode is *covered* if at least ``min_fraction`` of the samples are high-quality samples of
    it (0.008 = 20 of 2500, the convention of VEEGAN, Srivastava et al. 2017, and unrolled
    GANs, Metz et al. 2017; recalled).  Returns ``modes_covered`` (of ``n_components``),
    ``high_quality_fraction`` and ``mode_weight_tv``: the total-variation distance between the
    high-quality samples' share per mode and the uniform 1/K (0: even weights)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ConfigError(f"ring_mode_coverage takes (n, 2) points, got shape {x.shape}")
    means = np.asarray(_ring_means(n_components, radius), np.float64)
    d = np.linalg.norm(x[:, None, :] - means[None], axis=-1)
    near, dist = np.argmin(d, axis=1), np.min(d, axis=1)
    good = dist <= n_std * std
    counts = np.bincount(near[good], minlength=n_components)
    share = counts / max(int(good.sum()), 1)
    return {
        "modes_covered": float(np.sum(counts >= min_fraction * len(x))),
        "high_quality_fraction": float(good.mean()),
        "mode_weight_tv": float(0.5 * np.abs(share - 1.0 / n_components).sum()),
    }


def sample_rings(
    key: PRNGKeyArray,
    n: int,
    *,
    radii: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0),
    std: float = 0.05,
) -> Float[Array, "n 2"]:
    """``n`` draws from concentric rings: pick a ring of ``radii`` with equal
    probability and an angle uniformly, then add isotropic Gaussian noise ``std``:
    ``x = r (cos t, sin t) + std * eps``."""
    key_ring, key_angle, key_noise = jax.random.split(key, 3)
    r = jnp.asarray(radii, dtype=jnp.float32)[jax.random.randint(key_ring, (n,), 0, len(radii))]
    t = jax.random.uniform(key_angle, (n,), minval=0.0, maxval=2.0 * jnp.pi)
    noise = jax.random.normal(key_noise, (n, 2), dtype=jnp.float32)
    return (r[:, None] * jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1) + std * noise).astype(
        jnp.float32
    )


def log_density_rings(
    x: Float[ArrayLike, "*batch 2"],
    *,
    radii: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0),
    std: float = 0.05,
) -> Float[Array, "*batch"]:
    """Exact log density of :func:`sample_rings` (same parameters).

    Averaging the Gaussian ``N(x; r e_t, std^2 I)`` over the angle ``t`` gives, with
    ``rho = |x|``, ``p_r(x) = exp(-(rho^2 + r^2) / (2 std^2)) I0(rho r / std^2) /
    (2 pi std^2)``; ``I0`` is evaluated stably as ``log i0e(z) + z``. The density is
    the mean of ``p_r`` over the rings.
    """
    x = jnp.asarray(x, dtype=jnp.float32)
    rho = jnp.linalg.norm(x, axis=-1)[..., None]
    r = jnp.asarray(radii, dtype=jnp.float32)
    z = rho * r / std**2
    log_i0 = jnp.log(jax.scipy.special.i0e(z)) + z
    log_p_r = -(rho**2 + r**2) / (2.0 * std**2) + log_i0 - _LOG_2PI - 2.0 * jnp.log(std)
    return jax.scipy.special.logsumexp(log_p_r, axis=-1) - jnp.log(len(radii))


def sample_checkerboard(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws, uniform on the 8 dark cells of a 4 x 4 checkerboard on ``[-2, 2)^2``.

    A cell ``[i, i+1) x [j, j+1)`` (integers ``i, j`` in -2..1) is dark when ``i + j``
    is even; the density is 1/8 there and 0 elsewhere. Sampling: a column ``i``
    uniformly, one of its two dark cells with equal probability, then a uniform
    point in the cell (clipped below the cell's upper edge, which float rounding of
    ``j + u`` could otherwise reach).
    """
    key_column, key_cell, key_offset = jax.random.split(key, 3)
    column = jax.random.randint(key_column, (n,), -2, 2)
    row = -2 + jnp.mod(column, 2) + 2 * jax.random.randint(key_cell, (n,), 0, 2)
    corner = jnp.stack([column, row], axis=-1).astype(jnp.float32)
    x = corner + jax.random.uniform(key_offset, (n, 2), dtype=jnp.float32)
    return jnp.minimum(x, jnp.nextafter(corner + 1.0, corner))


def log_density_checkerboard(x: Float[ArrayLike, "*batch 2"]) -> Float[Array, "*batch"]:
    """Exact log density of :func:`sample_checkerboard`: ``-log 8`` on a dark cell,
    ``-inf`` elsewhere."""
    x = jnp.asarray(x, dtype=jnp.float32)
    cells = jnp.floor(x)
    inside = jnp.all((x >= -2.0) & (x < 2.0), axis=-1)
    dark = jnp.mod(cells[..., 0] + cells[..., 1], 2.0) == 0.0
    return jnp.where(inside & dark, -jnp.log(8.0), -jnp.inf)


#: The 2-D densities by name: ``(sampler(key, n), exact log density)``.
DENSITIES = {
    "gaussian_mixture": (sample_gaussian_mixture, log_density_gaussian_mixture),
    "rings": (sample_rings, log_density_rings),
    "checkerboard": (sample_checkerboard, log_density_checkerboard),
}
