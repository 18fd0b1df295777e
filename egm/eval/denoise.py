r"""Denoising as a downstream measure of a real-valued energy model, with a Wiener baseline.

Observation model: ``y = x + σ ε``, ``ε ~ N(0, I)``, in pixel units.  A model trained on
whitened data ``z = whiten(x)`` defines the prior ``p(x) ∝ exp(-F(whiten(x)))``
(hiddens summed or integrated out, so ``F`` is the free energy, §20.5), and the MAP
estimate is

.. math:: \hat x = \arg\min_x \; F(\mathrm{whiten}(x)) + \frac{\lVert x - y\rVert^2}{2σ^2}.

The Jacobian of the affine whitening, ``log |det forward|``, is a constant in ``x``:
it changes the normaliser of ``p(x)``, not the minimiser, so it is left out.

:func:`wiener_denoise` is the best linear (and, for Gaussian data, the exact posterior
mean = MAP) estimator ``x̂ = m + Σ (Σ + σ² I)^{-1} (y - m)`` with the training mean
``m`` and covariance ``Σ``; a model prior is worth something when it beats it.
:func:`psnr` scores both; :func:`denoising_report` runs the whole comparison on held-out
data.  :func:`ssrbm_posterior_mean` is the posterior-mean (MMSE) estimate under an ssRBM
prior by block Gibbs, which does not collapse onto the sharpest mode of a peaked prior.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from egm.data.validate import check_finite, check_shape
from egm.data.whitening import Whitening
from egm.errors import ConfigError, DataError, DivergenceError

__all__ = ["denoising_report", "map_denoise", "psnr", "ssrbm_posterior_mean", "wiener_denoise"]


def map_denoise(
    free_energy: Callable[[Any, Float[Array, " K"]], Float[Array, ""]],
    params: Any,
    y: Float[ArrayLike, "N D"],
    noise_std: float,
    whitening: Whitening | None,
    *,
    n_steps: int = 300,
    step_size: float | None = None,
) -> Float[np.ndarray, "N D"]:
    r"""MAP denoising under the prior ``p(x) ∝ exp(-F(params, whiten(x)))``, in pixel space.

    Minimises ``E(x) = F(params, (x - mean) @ forward) + ||x - y||² / (2 σ²)`` for each row
    of ``y`` (``F`` is vmapped over rows), starting at ``x = y``, by ``n_steps`` of
    preconditioned gradient descent in one jitted ``fori_loop``:

    .. math:: x \leftarrow x - η\, P\, ∇E(x), \qquad P = (A A^\top + I/σ^2)^{-1},

    with ``A = forward``.  ``P^{-1}`` is the Hessian of ``E`` when ``F(z) = ½||z||²`` (the
    Gaussian the whitening maps the data to), so with ``η = 1``:

    * for that Gaussian ``F`` one step lands on the exact MAP estimate, which is then the
      Wiener estimate of the training covariance (tested);
    * whenever ``∇²_z F ⪯ I`` — the unit-variance GRBM's free energy, ``log cosh`` and other
      sparse priors — ``P^{-1}`` bounds the Hessian of ``E``, each step minimises a
      quadratic upper bound of ``E`` (majorise–minimise), and ``E`` never increases.

    Models that curve more (a GRBM with learned precisions β > 1, an mcRBM) would overshoot
    with ``η = 1``, so every row keeps its own step: a step that does not lower ``E`` (or
    gives NaN) is rejected and that row's step halved; an accepted one doubles it, up to
    ``η``.  ``E`` therefore never increases for any model, and in the cases above every
    step is accepted and the iteration is exactly the one described.

    Args:
      free_energy: ``F(params, z) -> scalar`` on ONE whitened example.
      params: the model's parameter pytree.
      y: noisy pixels ``(N, D)``.
      noise_std: ``σ > 0``, the noise standard deviation in pixel units.
      whitening: the transform the model was trained behind, or ``None`` when it was
        trained on pixels.
      n_steps: number of descent steps, ``>= 1``.
      step_size: ``η > 0``; default 1.

    Returns:
      ``x̂`` as a float32 numpy array ``(N, D)`` (not clipped to the pixel range).

    Raises:
      ConfigError: ``noise_std``, ``n_steps`` or ``step_size`` out of range.
      DataError: ``y`` not a finite ``(N, D)`` array matching the whitening.
      DivergenceError: the result is NaN or inf (only possible if ``F`` is at ``y`` itself).
    """
    noise_std = _check_noise_std(noise_std)
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ConfigError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    eta = 1.0 if step_size is None else step_size
    if not (np.isfinite(eta) and eta > 0):
        raise ConfigError(f"step_size must be a finite number > 0, got {step_size!r}")
    check_shape(y, None if whitening is None else whitening.forward.shape[0], "noisy data y")
    check_finite(y, "noisy data y")
    d = np.shape(y)[1]
    if whitening is None:
        mean, forward = np.zeros(d), np.eye(d)
    else:
        mean, forward = np.asarray(whitening.mean), np.asarray(whitening.forward)
    inv_var = 1.0 / noise_std**2
    precond = np.linalg.inv(forward @ forward.T + inv_var * np.eye(d))
    precond = 0.5 * (precond + precond.T)
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    x_hat = _descend(
        free_energy,
        params,
        f32(np.asarray(y)),
        f32(mean),
        f32(forward),
        f32(precond),
        f32(inv_var),
        f32(eta),
        int(n_steps),
    )
    out = np.asarray(x_hat, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DivergenceError(
            f"MAP denoising diverged (NaN/inf after {n_steps} steps of size {eta}); the free "
            "energy curves more than the preconditioner assumes: pass a smaller step_size"
        )
    return out


@functools.partial(jax.jit, static_argnames=("free_energy", "n_steps"))
def _descend(free_energy, params, y, mean, forward, precond, inv_var, eta, n_steps):
    def energy(x, y_row):
        return free_energy(params, (x - mean) @ forward) + 0.5 * inv_var * jnp.sum((x - y_row) ** 2)

    value_and_grad = jax.vmap(jax.value_and_grad(energy))

    def body(_, carry):
        x, e, g, step = carry
        x_new = x - step[:, None] * (g @ precond)  # P symmetric: (P ∇E)ᵀ = ∇Eᵀ P row-wise
        e_new, g_new = value_and_grad(x_new, y)
        # accept unless E rises by more than float32 rounding of its value
        ok = jnp.isfinite(e_new) & (e_new <= e + 1e-6 * (jnp.abs(e) + 1.0))
        x = jnp.where(ok[:, None], x_new, x)
        g = jnp.where(ok[:, None], g_new, g)
        e = jnp.where(ok, e_new, e)
        step = jnp.where(ok, jnp.minimum(2.0 * step, eta), 0.5 * step)
        return x, e, g, step

    e0, g0 = value_and_grad(y, y)
    step0 = jnp.full(y.shape[:1], eta)
    x, *_ = jax.lax.fori_loop(0, n_steps, body, (y, e0, g0, step0))
    return x


def wiener_denoise(
    x_train: Float[ArrayLike, "N D"], y: Float[ArrayLike, "M D"], noise_std: float
) -> Float[np.ndarray, "M D"]:
    r"""Wiener (linear MMSE) denoising ``x̂ = m + Σ (Σ + σ² I)^{-1} (y - m)``.

    ``m`` and ``Σ`` are the mean and covariance (``1/N``) of ``x_train``, the Gaussian
    prior fitted to the training data; for Gaussian data this is the exact posterior
    mean and MAP estimate.  Computed in float64 through ``Σ = U diag(λ) Uᵀ``:
    ``Σ (Σ + σ² I)^{-1} = U diag(λ / (λ + σ²)) Uᵀ``.  Returns float32 ``(M, D)``.

    Raises:
      ConfigError: ``noise_std`` not finite and ``> 0``.
      DataError: non-finite data, fewer than 2 training rows, or mismatched widths.
    """
    noise_std = _check_noise_std(noise_std)
    check_shape(x_train, None, "training data x_train")
    check_finite(x_train, "training data x_train")
    xt = np.asarray(x_train, dtype=np.float64)
    if len(xt) < 2:
        raise DataError("training data x_train needs at least 2 rows for a covariance")
    check_shape(y, xt.shape[1], "noisy data y")
    check_finite(y, "noisy data y")
    m = xt.mean(axis=0)
    c = xt - m
    lam, u = np.linalg.eigh(c.T @ c / len(xt))
    lam = np.clip(lam, 0.0, None)
    gain = (u * (lam / (lam + noise_std**2))) @ u.T
    return (m + (np.asarray(y, dtype=np.float64) - m) @ gain).astype(np.float32)


def psnr(
    x: Float[ArrayLike, "..."], x_hat: Float[ArrayLike, "..."], data_range: float = 1.0
) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range² / MSE)`` in dB, the MSE over all
    entries; ``inf`` when ``x_hat == x``.

    Raises:
      ConfigError: ``data_range`` not finite and ``> 0``.
      DataError: different shapes, empty or non-finite inputs.
    """
    if not (np.isfinite(data_range) and data_range > 0):
        raise ConfigError(f"data_range must be a finite number > 0, got {data_range!r}")
    a, b = np.asarray(x, dtype=np.float64), np.asarray(x_hat, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise DataError(
            f"psnr: x {a.shape} and x_hat {b.shape} must have the same, non-empty shape"
        )
    check_finite(a, "psnr x")
    check_finite(b, "psnr x_hat")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def _check_noise_std(noise_std: float) -> float:
    if isinstance(noise_std, bool) or not np.isscalar(noise_std):
        raise ConfigError(f"noise_std must be a number > 0, got {noise_std!r}")
    if not (np.isfinite(noise_std) and noise_std > 0):
        raise ConfigError(f"noise_std must be a finite number > 0, got {noise_std!r}")
    return float(noise_std)


def denoising_report(
    key: Any,
    free_energy: Callable[[Any, Float[Array, " K"]], Float[Array, ""]],
    params: Any,
    x_train: Float[ArrayLike, "N D"],
    x_test: Float[ArrayLike, "M D"],
    whitening: Whitening | None,
    *,
    noise_std: float,
    n: int,
    n_steps: int = 300,
    extra: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> dict[str, float]:
    """PSNR of the first ``n`` rows of ``x_test`` corrupted by N(0, noise_std²) pixel noise
    (drawn with ``key``): ``psnr_noisy_db`` (the noisy input), ``psnr_wiener_db`` (the Wiener
    filter of ``x_train``'s covariance), ``psnr_model_db`` (:func:`map_denoise` under the
    model, ``n_steps`` steps) and, for every ``name: f`` in ``extra``, ``psnr_{name}_db`` of
    the estimate ``f(y)`` of the same noisy rows.  Higher is better."""
    x = np.asarray(x_test, np.float32)[:n]
    y = x + _check_noise_std(noise_std) * np.asarray(jax.random.normal(key, x.shape), np.float32)
    wiener = wiener_denoise(x_train, y, noise_std)
    model = map_denoise(free_energy, params, y, noise_std, whitening, n_steps=n_steps)
    out = {
        "noise_std": float(noise_std),
        "psnr_noisy_db": psnr(x, y),
        "psnr_wiener_db": psnr(x, wiener),
        "psnr_model_db": psnr(x, model),
        "n_patches": int(len(x)),
    }
    for name, estimate in (extra or {}).items():
        out[f"psnr_{name}_db"] = psnr(x, estimate(y))
    return out


def ssrbm_posterior_mean(
    key: Any,
    params: Any,
    y: Float[ArrayLike, "N D"],
    noise_std: float,
    whitening: Whitening,
    *,
    n_sweeps: int,
    burn_in: int,
) -> Float[np.ndarray, "N D"]:
    r"""Posterior-mean (MMSE) denoising under the ssRBM prior by block Gibbs on
    ``p(z, s, h | y)``, ``z`` the whitened patch, ``y = m + z B + σ ε`` (``B`` =
    ``whitening.inverse``; exact for a square whitening, ZCA by default).

    ``y`` only touches ``z``: ``(h, s) | z`` are the model's conditionals, and ``z | s, h, y``
    is Gaussian with precision ``P = diag(Λ + Σ_i Φ_i h_i) + B Bᵀ/σ²`` and mean
    ``P⁻¹ (W (s ⊙ h) + B (y - m)/σ²)`` (one Cholesky of a D × D matrix per sweep).  Chains
    start at ``whiten(y)``; the estimate averages ``m + z B`` over the sweeps after
    ``burn_in``."""
    from egm.energies import ssrbm

    noise_std = _check_noise_std(noise_std)
    if not 0 <= burn_in < n_sweeps:
        raise ConfigError(f"need 0 <= burn_in < n_sweeps, got {burn_in}, {n_sweeps}")
    mean = jnp.asarray(whitening.mean, jnp.float32)
    B = jnp.asarray(whitening.inverse, jnp.float32)
    fwd = jnp.asarray(whitening.forward, jnp.float32)
    G = B @ B.T / noise_std**2
    y = jnp.asarray(y, jnp.float32)

    def one(key, y_row):
        lin = B @ (y_row - mean) / noise_std**2

        def sweep(z, k):
            k_h, k_s, k_z = jax.random.split(k, 3)
            h = ssrbm.sample_hidden(k_h, params, z)
            s = ssrbm.sample_slab(k_s, params, z, h)
            L = jnp.linalg.cholesky(G + jnp.diag(ssrbm.visible_precision(params, h)))
            m = jax.scipy.linalg.cho_solve((L, True), params.W @ (s * h) + lin)
            eps = jax.random.normal(k_z, m.shape)
            z = m + jax.scipy.linalg.solve_triangular(L.T, eps, lower=False)
            return z, z

        _, zs = jax.lax.scan(sweep, (y_row - mean) @ fwd, jax.random.split(key, n_sweeps))
        return mean + jnp.mean(zs[burn_in:], axis=0) @ B

    # lax.map, one patch at a time: a vmapped version (batched Cholesky) wedged XLA CPU's
    # thread pool now and then on the 2-core machine (the process sleeps forever)
    keys = jax.random.split(key, y.shape[0])
    return np.asarray(jax.jit(lambda k, y: jax.lax.map(lambda a: one(*a), (k, y)))(keys, y))
