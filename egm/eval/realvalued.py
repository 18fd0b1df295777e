"""Evaluation of the real-valued models (§20.5): pictures of whitened vectors in pixel
space (filters, and samples of long independent chains: :func:`sample_pictures`,
:func:`factored_pictures`), and the GRBM's AIS log-likelihoods next to the exact
full-covariance Gaussian.

Log-likelihoods of whitened data are nats per example of ``z``; ``*_pixel_nats`` adds
``log |det A|`` of the whitening for the density of the pixels (:func:`pixel_log_det`),
and for dequantised MNIST the records are also given in bits per dimension of the 8-bit
image (:meth:`LogLikelihood.in_bits_per_dim` with ``n_levels=256``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.data.whitening import Whitening, unwhiten
from egm.eval.baselines import gaussian_log_likelihood
from egm.eval.likelihood import ais_log_likelihood
from egm.eval.units import pixel_log_det
from egm.eval.visualize import tile_images
from egm.samplers.chains import ChainSpec
from egm.samplers.persistent import long_chains, median_step_size

__all__ = [
    "factored_filter_grids",
    "factored_pictures",
    "filter_grid",
    "grbm_log_likelihoods",
    "patch_grid",
    "sample_pictures",
]


def patch_grid(
    z: Float[ArrayLike, "N K"],
    whitening: Whitening,
    shape: tuple[int, int],
    *,
    directions: bool = False,
) -> np.ndarray:
    """A tiled image of whitened vectors as ``shape`` pixel images: samples are un-whitened
    (mean added) and clipped to [0, 1]; ``directions`` (filters) are mapped by the linear
    part only and each tile is scaled on its own."""
    z = np.asarray(z, np.float32)
    if directions:
        return tile_images(z @ np.asarray(whitening.inverse, np.float32), shape, normalize=True)
    return tile_images(np.clip(np.asarray(unwhiten(whitening, z)), 0.0, 1.0), shape)


def filter_grid(
    W: Float[ArrayLike, "K H"], whitening: Whitening, shape: tuple[int, int], n: int = 100
) -> tuple[np.ndarray, int]:
    """The ``n`` columns of ``W`` (filters in whitened space) with the largest norms, in
    pixel space (:func:`patch_grid` with ``directions``); returns the image and how many."""
    W = np.asarray(W)
    order = np.argsort(-np.linalg.norm(W, axis=0))[:n]
    return patch_grid(W[:, order].T, whitening, shape, directions=True), len(order)


def grbm_log_likelihoods(
    key: PRNGKeyArray,
    params: Any,
    z_train: Float[ArrayLike, "N D"],
    z_test: Float[ArrayLike, "M D"],
    whitening: Whitening,
    *,
    n_chains: int,
    n_temps: int,
    dataset: str = "unknown",
    protocol: str = "unknown",
    bits_per_dim: bool = False,
) -> dict[str, Any]:
    """Test and train log-likelihoods of a GRBM by forward AIS (:func:`egm.estimators.ais.
    grbm_ais` from the diagonal Gaussian fitted to ``z_train``, ``n_temps`` temperatures;
    the train figure on as many training rows as there are test rows) and the exact
    log-likelihoods of the full-covariance Gaussian on the same data (the baseline to beat).

    Returns records (``test_loglik``, ``train_loglik``, ``gaussian_test_loglik``,
    ``gaussian_train_loglik``; with ``bits_per_dim`` also ``test_bits_per_dim`` and
    ``gaussian_test_bits_per_dim``), the pixel-space figures, ``log_z``, ``ais_ess`` and
    ``ais_reliable`` (at least 10 % effective chains: below that log Z is an
    underestimate of unknown size and the log-likelihoods are optimistic)."""
    from egm.energies import grbm
    from egm.estimators import ais

    z_train, z_test = np.asarray(z_train, np.float32), np.asarray(z_test, np.float32)
    mean, std = z_train.mean(0), z_train.std(0)
    res = ais.grbm_ais(
        key, params, jnp.asarray(mean), -2.0 * jnp.log(jnp.asarray(std)),
        n_chains=n_chains, betas=ais.betas_salakhutdinov_murray(n_temps),
    )  # fmt: skip
    kw = dict(dataset=dataset, protocol=protocol)
    z_tr = z_train[: len(z_test)]
    out: dict[str, Any] = {
        "test_loglik": ais_log_likelihood(
            grbm.free_energy, params, z_test, res, temperatures=n_temps, split="test", **kw
        ),
        "train_loglik": ais_log_likelihood(
            grbm.free_energy, params, z_tr, res, temperatures=n_temps, split="train", **kw
        ),
        "gaussian_test_loglik": gaussian_log_likelihood(z_train, z_test, split="test", **kw),
        "gaussian_train_loglik": gaussian_log_likelihood(z_train, z_tr, split="train", **kw),
    }
    log_det, D = pixel_log_det(whitening), z_test.shape[1]
    out["test_loglik_pixel_nats"] = out["test_loglik"].value + log_det
    out["gaussian_test_loglik_pixel_nats"] = out["gaussian_test_loglik"].value + log_det
    if bits_per_dim:
        for k in ("test", "gaussian_test"):
            out[f"{k}_bits_per_dim"] = out[f"{k}_loglik"].in_bits_per_dim(D, log_det, n_levels=256)
    out["log_z"] = float(res.log_z)
    out["ais_ess"] = float(res.ess)
    out["ais_reliable"] = bool(float(res.ess) >= 0.1 * n_chains)
    return out


def factored_filter_grids(params: Any, whitening: Whitening, shape: tuple[int, int]) -> dict:
    """Pictures of a factored model (mcRBM, mPoT): ``cov_filters.png``, the first 100 factor
    filters ``C_f``, and ``mean_filters.png``, the 100 mean filters ``W_j`` of largest
    norm, both in pixel space; ``{name: (image, title)}`` for the run driver."""
    C = np.asarray(params.C).T
    mean, n_m = filter_grid(params.W, whitening, shape)
    return {
        "cov_filters.png": (
            patch_grid(C[:100], whitening, shape, directions=True),
            f"covariance filters C_f ({min(100, len(C))} of {len(C)})",
        ),
        "mean_filters.png": (mean, f"mean filters W_j (largest {n_m})"),
    }


def sample_pictures(
    key: PRNGKeyArray,
    chain: ChainSpec,
    params: Any,
    z_train: Float[ArrayLike, "N D"],
    whitening: Whitening,
    shape: tuple[int, int],
    *,
    n_samples: int,
    n_steps: int,
    shown: Callable[[Any], Float[Array, "n D"]],
    title: str,
) -> dict:
    """``samples.png``: ``shown(final states)`` (e.g. ``E[v | h]``) of ``n_samples`` independent
    chains after ``n_steps`` steps of ``chain`` from random rows of ``z_train``
    (:func:`egm.samplers.persistent.long_chains`), titled ``title``; ``filters.png``: the 100
    columns of ``params.W`` of largest norm; both in pixel space, ``{name: (image, title)}``."""
    _, final = long_chains(key, chain, params, z_train, n_samples, n_steps)
    filters, n_f = filter_grid(params.W, whitening, shape)
    return {
        "samples.png": (patch_grid(shown(final), whitening, shape), title),
        "filters.png": (filters, f"{n_f} largest filters W[:, j] (pixel space)"),
    }


def factored_pictures(
    key: PRNGKeyArray,
    chain_at: Callable[[float | None], ChainSpec],
    params: Any,
    chains: Any,
    z_train: Float[ArrayLike, "N D"],
    whitening: Whitening,
    shape: tuple[int, int],
    *,
    n_samples: int,
    n_steps: int,
) -> dict:
    """The pictures of a factored model (mcRBM, mPoT): ``samples.png``, the visibles of
    ``n_samples`` independent chains after ``n_steps`` steps of ``chain_at(step)``, where
    ``step`` is the median adapted HMC step size of the persistent ``chains`` (None for Gibbs
    chains, which have none), and the filters of :func:`factored_filter_grids`."""
    step = median_step_size(chains)
    samples, _ = long_chains(key, chain_at(step), params, z_train, n_samples, n_steps)
    what = f"HMC steps (step {step:.3g})" if step else "Gibbs sweeps"
    return {
        "samples.png": (patch_grid(samples, whitening, shape), f"v after {n_steps} {what}"),
        **factored_filter_grids(params, whitening, shape),
    }
