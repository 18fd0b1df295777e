r"""Diffusion models: diffusion inversion (Sohl-Dickstein et al. 2015) and DDPM (Ho et al. 2020).

§20.13 of the book: a fixed forward Markov chain adds Gaussian noise,
:math:`q(x_t \mid x_{t-1}) = N(\sqrt{α_t}\, x_{t-1}, β_t I)`, :math:`α_t = 1 - β_t`, for
``t = 1..T``; a learned reverse chain :math:`p_θ(x_{t-1} \mid x_t) = N(μ_θ(x_t, t), σ_t^2 I)`
from :math:`p(x_T) = N(0, I)` generates.  With :math:`\bar α_t = \prod_{s \le t} α_s`:

- forward marginals in closed form: :math:`q(x_t \mid x_0) = N(\sqrt{\bar α_t}\, x_0,
  (1 - \bar α_t) I)` (:func:`q_mean_variance`, :func:`q_sample`);
- the forward posterior :math:`q(x_{t-1} \mid x_t, x_0) = N(\tilde μ_t, \tilde β_t I)`,
  :math:`\tilde μ_t = \frac{β_t \sqrt{\bar α_{t-1}}}{1 - \bar α_t} x_0 + \frac{(1 - \bar
  α_{t-1}) \sqrt{α_t}}{1 - \bar α_t} x_t`, :math:`\tilde β_t = \frac{1 - \bar α_{t-1}}{1 -
  \bar α_t} β_t` (:func:`q_posterior`);
- ε-parameterisation (Ho et al. eq. 11): :math:`μ_θ = \frac{1}{\sqrt{α_t}}(x_t -
  \frac{β_t}{\sqrt{1 - \bar α_t}} ε_θ(x_t, t))` (:func:`p_mean_variance`);
- the variational bound on :math:`-\log p_θ(x_0)` (Ho et al. eq. 5), per step
  (:func:`bound_terms`): :math:`L = L_T + \sum_{t=2}^T L_{t-1} + L_0`, :math:`L_T =
  KL(q(x_T \mid x_0) \| p(x_T))`, :math:`L_{t-1} = E_q KL(q(x_{t-1} \mid x_t, x_0) \|
  p_θ(x_{t-1} \mid x_t))`, :math:`L_0 = -E_q \log p_θ(x_0 \mid x_1)`; for 8-bit images
  :math:`p_θ(x_0 \mid x_1)` is Ho et al.'s discretised Gaussian (:func:`discretized_gaussian_
  log_likelihood`: data scaled to [-1, 1], 256 bins of width 2/255, the outer bins open), so
  ``L`` bounds the *discrete* negative log-likelihood and needs no dequantisation; for
  continuous data it is a Gaussian density;
- :math:`L_{simple} = E_{t, x_0, ε} \lVert ε - ε_θ(\sqrt{\bar α_t} x_0 + \sqrt{1 - \bar α_t}
  ε, t) \rVert^2` (Ho et al. eq. 14; :func:`make_loss`);
- ancestral sampling as one ``lax.scan`` from ``t = T`` to 1 (:func:`sample`);
- EMA of the weights for sampling and evaluation, carried in the train state's ``aux``
  (:func:`init_ema_state`, :func:`with_ema`).

**Indexing.**  Every per-step array has length ``T`` and index ``i = t - 1`` (step ``t =
i + 1``), as in Ho et al.'s code and diffusers; ``ε_θ`` receives that index ``i``.

Schedules (:func:`linear_betas` of Ho et al., :func:`cosine_betas` of Nichol & Dhariwal 2021,
:func:`sohl_dickstein_betas`) are computed in float64 with numpy, then validated and turned
into a :class:`Schedule` of float32 coefficients by :func:`make_schedule`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from egm.errors import ConfigError, DataError

__all__ = [
    "SCHEDULES",
    "EpsMLP",
    "EpsUNet",
    "Schedule",
    "bound_terms",
    "bound_terms_in_chunks",
    "check_levels",
    "cosine_betas",
    "discretized_gaussian_log_likelihood",
    "ema_update",
    "eps_fn_of",
    "from_levels",
    "init_ema_state",
    "linear_betas",
    "make_loss",
    "make_schedule",
    "named_schedule",
    "normal_kl",
    "p_mean_variance",
    "q_mean_variance",
    "q_posterior",
    "q_sample",
    "sample",
    "sohl_dickstein_betas",
    "timestep_embedding",
    "to_levels",
    "with_ema",
]

EpsFn = Callable[[Any, Array, Array], Array]  # eps_fn(params, x_t (B, ...), i (B,)) -> (B, ...)
_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- schedules


def _check_steps(n_steps: Any) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int | np.integer) or n_steps < 1:
        raise ConfigError(f"the number of diffusion steps must be an integer >= 1, got {n_steps!r}")
    return int(n_steps)


def linear_betas(
    n_steps: int, beta_1: float = 1e-4, beta_T: float = 0.02
) -> Float[np.ndarray, " T"]:
    """Ho et al.'s linear schedule ``β_t`` from ``beta_1`` to ``beta_T`` (their T = 1000 uses
    1e-4 to 0.02; with fewer steps scale both by 1000/T to keep ``\\bar α_T`` near 0)."""
    n = _check_steps(n_steps)
    return np.linspace(beta_1, beta_T, n, dtype=np.float64)


def cosine_betas(
    n_steps: int, s: float = 0.008, max_beta: float = 0.999
) -> Float[np.ndarray, " T"]:
    """Nichol & Dhariwal's cosine schedule: ``\\bar α_t = f(t)/f(0)``, ``f(t) = cos²((t/T + s)
    / (1 + s) · π/2)``, ``β_t = min(1 - \\bar α_t / \\bar α_{t-1}, max_beta)``."""
    n = _check_steps(n_steps)
    f = np.cos((np.arange(n + 1, dtype=np.float64) / n + s) / (1 + s) * np.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def sohl_dickstein_betas(n_steps: int, max_beta: float = 0.999) -> Float[np.ndarray, " T"]:
    """Sohl-Dickstein et al.'s (2015) fixed schedule ``β_t = 1 / (T - t + 1)`` (their binomial
    diffusion; the "jsd" schedule of Nichol & Dhariwal's code), capped at ``max_beta`` so that
    the last step is not a deterministic erasure (``β_T = 1``)."""
    n = _check_steps(n_steps)
    return np.minimum(1.0 / np.linspace(n, 1, n, dtype=np.float64), max_beta)


SCHEDULES = ("linear", "cosine", "sohl")


def named_schedule(name: str, n_steps: int) -> Schedule:
    """The :class:`Schedule` of ``name``: ``"linear"`` is Ho et al.'s 1e-4..0.02 at T = 1000
    scaled by 1000/T for other T (β_T capped at 0.999), ``"cosine"`` :func:`cosine_betas`,
    ``"sohl"`` :func:`sohl_dickstein_betas`."""
    n = _check_steps(n_steps)
    if name == "linear":
        return make_schedule(linear_betas(n, 0.1 / n, min(20.0 / n, 0.999)))
    if name in ("cosine", "sohl"):
        return make_schedule((cosine_betas if name == "cosine" else sohl_dickstein_betas)(n))
    raise ConfigError(f"unknown noise schedule {name!r}; choose one of {SCHEDULES}")


class Schedule(NamedTuple):
    """The per-step coefficients of a noise schedule (float32 arrays of length ``T``; index
    ``i`` is step ``t = i + 1``; ``\\bar α_0 = 1``)."""

    betas: Float[Array, " T"]
    alphas: Float[Array, " T"]
    alpha_bars: Float[Array, " T"]
    alpha_bars_prev: Float[Array, " T"]
    sqrt_alpha_bars: Float[Array, " T"]
    sqrt_one_minus_alpha_bars: Float[Array, " T"]
    posterior_variance: Float[Array, " T"]  # \tilde β_t (0 at t = 1)
    posterior_log_variance_clipped: Float[Array, " T"]  # log \tilde β_t, t = 1 uses \tilde β_2
    posterior_mean_coef1: Float[Array, " T"]  # of x_0
    posterior_mean_coef2: Float[Array, " T"]  # of x_t

    @property
    def n_steps(self) -> int:
        return int(self.betas.shape[0])


def make_schedule(betas: Float[ArrayLike, " T"]) -> Schedule:
    """Validate ``betas`` (every ``β_t`` in (0, 1), non-decreasing, at least one step) and
    compute the :class:`Schedule` coefficients in float64 (then float32).

    Raises:
      ConfigError: no step, a ``β_t`` outside (0, 1) or not finite, or a decreasing schedule.
    """
    b = np.asarray(betas, np.float64)
    if b.ndim != 1 or b.size < 1:
        raise ConfigError(
            f"a noise schedule is a 1-D array of T >= 1 betas, got shape {b.shape}; "
            f"build one with linear_betas / cosine_betas / sohl_dickstein_betas"
        )
    bad = ~(np.isfinite(b) & (b > 0) & (b < 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(
            f"every beta_t of a noise schedule must lie in (0, 1); beta_{i + 1} = {float(b[i])!r} "
            f"(choose beta_1 > 0 and beta_T < 1)"
        )
    if np.any(np.diff(b) < 0):
        i = int(np.argmax(np.diff(b) < 0))
        raise ConfigError(
            f"a noise schedule must be non-decreasing (more noise at later steps); beta_{i + 2} "
            f"= {b[i + 1]:g} < beta_{i + 1} = {b[i]:g}"
        )
    a = 1.0 - b
    ab = np.cumprod(a)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    post_var = b * (1.0 - ab_prev) / (1.0 - ab)
    clipped = np.concatenate([post_var[1:2] if b.size > 1 else b[:1], post_var[1:]])
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return Schedule(
        betas=f(b), alphas=f(a), alpha_bars=f(ab), alpha_bars_prev=f(ab_prev),
        sqrt_alpha_bars=f(np.sqrt(ab)), sqrt_one_minus_alpha_bars=f(np.sqrt(1.0 - ab)),
        posterior_variance=f(post_var), posterior_log_variance_clipped=f(np.log(clipped)),
        posterior_mean_coef1=f(b * np.sqrt(ab_prev) / (1.0 - ab)),
        posterior_mean_coef2=f((1.0 - ab_prev) * np.sqrt(a) / (1.0 - ab)),
    )  # fmt: skip


def _at(coef: Array, i: Array, x: Array) -> Array:
    """``coef[i]`` broadcast against ``x`` (``i``: (B,) step indices, ``x``: (B, ...))."""
    return coef[i].reshape(i.shape + (1,) * (x.ndim - i.ndim))


# --------------------------------------------------------------------------- forward process


def q_mean_variance(
    sched: Schedule, x0: Float[Array, " B *d"], i: Int[Array, " B"]
) -> tuple[Float[Array, " B *d"], Float[Array, " B *d"]]:
    """Mean and variance of ``q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I)``, ``t = i + 1``."""
    return _at(sched.sqrt_alpha_bars, i, x0) * x0, jnp.broadcast_to(
        _at(1.0 - sched.alpha_bars, i, x0), x0.shape
    )


def q_sample(
    sched: Schedule, x0: Float[Array, " B *d"], i: Int[Array, " B"], eps: Float[Array, " B *d"]
) -> Float[Array, " B *d"]:
    """``x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε``: a draw of ``q(x_t | x_0)`` from the noise ``ε``."""
    return (
        _at(sched.sqrt_alpha_bars, i, x0) * x0 + _at(sched.sqrt_one_minus_alpha_bars, i, x0) * eps
    )


def q_posterior(
    sched: Schedule, x0: Float[Array, " B *d"], xt: Float[Array, " B *d"], i: Int[Array, " B"]
) -> tuple[Float[Array, " B *d"], Float[Array, " B *d"], Float[Array, " B *d"]]:
    """Mean ``μ̃_t(x_t, x_0)``, variance ``β̃_t`` and clipped log-variance of the forward
    posterior ``q(x_{t-1} | x_t, x_0)`` (module docstring), ``t = i + 1``."""
    mean = _at(sched.posterior_mean_coef1, i, x0) * x0 + _at(sched.posterior_mean_coef2, i, xt) * xt
    var = jnp.broadcast_to(_at(sched.posterior_variance, i, xt), xt.shape)
    logvar = jnp.broadcast_to(_at(sched.posterior_log_variance_clipped, i, xt), xt.shape)
    return mean, var, logvar


# --------------------------------------------------------------------------- reverse process


def _model_log_variance(sched: Schedule, variance: str) -> Array:
    """log σ_t² per step: ``"large"``: β_t (β̃_2 at t = 1, as Ho et al.'s code, so that the
    decoder's variance is not β_1); ``"small"``: β̃_t (β̃_2 at t = 1)."""
    if variance == "large":
        return jnp.concatenate([sched.posterior_log_variance_clipped[:1], jnp.log(sched.betas[1:])])
    if variance == "small":
        return sched.posterior_log_variance_clipped
    raise ConfigError(f"variance must be 'large' (β_t) or 'small' (β̃_t), got {variance!r}")


def p_mean_variance(
    sched: Schedule,
    eps: Float[Array, " B *d"],
    xt: Float[Array, " B *d"],
    i: Int[Array, " B"],
    *,
    variance: str = "large",
    clip: float | None = None,
) -> tuple[Float[Array, " B *d"], Float[Array, " B *d"], Float[Array, " B *d"]]:
    """Mean, log-variance and predicted ``x̂_0`` of ``p_θ(x_{t-1} | x_t)`` from the predicted
    noise ``eps``: ``x̂_0 = (x_t - √(1-ᾱ_t) ε)/√ᾱ_t`` (clipped to ``[-clip, clip]`` if given)
    and ``μ_θ = μ̃_t(x_t, x̂_0)``, which without clipping is Ho et al.'s eq. 11."""
    x0 = (xt - _at(sched.sqrt_one_minus_alpha_bars, i, xt) * eps) / _at(
        sched.sqrt_alpha_bars, i, xt
    )
    if clip is not None:
        x0 = jnp.clip(x0, -clip, clip)
    mean = _at(sched.posterior_mean_coef1, i, xt) * x0 + _at(sched.posterior_mean_coef2, i, xt) * xt
    logvar = jnp.broadcast_to(_at(_model_log_variance(sched, variance), i, xt), xt.shape)
    return mean, logvar, x0


def normal_kl(
    mean1: Float[Array, "*s"], logvar1: Float[Array, "*s"], mean2: Float[Array, "*s"],
    logvar2: Float[Array, "*s"],
) -> Float[Array, "*s"]:  # fmt: skip
    """``KL(N(mean1, e^logvar1) || N(mean2, e^logvar2))`` per coordinate, nats."""
    return 0.5 * (
        logvar2 - logvar1 + jnp.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * jnp.exp(-logvar2)
        - 1.0
    )  # fmt: skip


def _std_normal_cdf(x: Array) -> Array:
    return 0.5 * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x: Float[Array, "*s"], mean: Float[Array, "*s"], log_scale: Float[Array, "*s"],
    n_levels: int = 256,
) -> Float[Array, "*s"]:  # fmt: skip
    """Ho et al.'s decoder ``log p(x_0 | x_1)`` per coordinate for data on the grid
    ``x = 2k/(n_levels - 1) - 1``: the mass of ``N(mean, e^{2 log_scale})`` on the bin
    ``[x - δ, x + δ]``, ``δ = 1/(n_levels - 1)``, with the first bin open to -∞ and the last
    to +∞ (the masses of all bins sum to 1).  Log-space, with the tails of the outer bins and
    a floor of 1e-12 as in their code."""
    inv = jnp.exp(-log_scale)
    d = 1.0 / (n_levels - 1)
    upper, lower = inv * (x - mean + d), inv * (x - mean - d)
    log_cdf_up = jnp.log(jnp.maximum(_std_normal_cdf(upper), 1e-12))
    log_sf_low = jnp.log(jnp.maximum(1.0 - _std_normal_cdf(lower), 1e-12))
    mid = jnp.log(jnp.maximum(_std_normal_cdf(upper) - _std_normal_cdf(lower), 1e-12))
    return jnp.where(x < -1.0 + 1e-3, log_cdf_up, jnp.where(x > 1.0 - 1e-3, log_sf_low, mid))


def _gaussian_log_density(x, mean, logvar):
    return -0.5 * (_LOG_2PI + logvar + (x - mean) ** 2 * jnp.exp(-logvar))


def _sum_event(a: Array) -> Array:
    return a.reshape(a.shape[0], -1).sum(-1)


def bound_terms(
    key: PRNGKeyArray,
    eps_fn: EpsFn,
    params: Any,
    sched: Schedule,
    x0: Float[Array, " B *d"],
    *,
    decoder: str = "discrete",
    variance: str = "large",
    clip: float | None = None,
) -> tuple[Float[Array, " B T"], Float[Array, " B"]]:
    """The per-step terms of the variational bound on ``-log p_θ(x_0)`` (nats per example):
    ``(terms, prior)`` with ``terms[:, 0] = L_0`` (decoder), ``terms[:, t-1] = L_{t-1}`` for
    ``t = 2..T`` (each a single draw ``x_t ~ q(x_t | x_0)``, independent across steps) and
    ``prior = L_T = KL(q(x_T | x_0) || N(0, I))`` (exact).  ``L = terms.sum(1) + prior`` is
    an unbiased estimate of the bound (Ho et al. eq. 5).  ``decoder``: ``"discrete"``
    (:func:`discretized_gaussian_log_likelihood`, 8-bit data scaled to [-1, 1]) or
    ``"gaussian"`` (a density, for continuous data).  The steps run as a ``lax.scan``."""
    if decoder not in ("discrete", "gaussian"):
        raise ConfigError(f"decoder must be 'discrete' or 'gaussian', got {decoder!r}")
    B, T = x0.shape[0], sched.n_steps
    keys = jax.random.split(key, T)

    def one(_, inp):
        k, i = inp
        ii = jnp.full((B,), i, jnp.int32)
        xt = q_sample(sched, x0, ii, jax.random.normal(k, x0.shape, x0.dtype))
        mean, logvar, _ = p_mean_variance(
            sched, eps_fn(params, xt, ii), xt, ii, variance=variance, clip=clip
        )
        true_mean, _, true_logvar = q_posterior(sched, x0, xt, ii)
        kl = _sum_event(normal_kl(true_mean, true_logvar, mean, logvar))
        if decoder == "discrete":
            nll = -_sum_event(discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar))
        else:
            nll = -_sum_event(_gaussian_log_density(x0, mean, logvar))
        return None, jnp.where(i == 0, nll, kl)

    _, terms = jax.lax.scan(one, None, (keys, jnp.arange(T)))
    m, v = q_mean_variance(sched, x0, jnp.full((B,), T - 1, jnp.int32))
    prior = _sum_event(normal_kl(m, jnp.log(v), jnp.zeros_like(m), jnp.zeros_like(m)))
    return terms.T, prior


def bound_terms_in_chunks(
    bound: Callable[[Any, Array, PRNGKeyArray], tuple[Array, Array]],
    params: Any,
    x0: Float[ArrayLike, " N *d"],
    key: PRNGKeyArray,
    chunk: int = 250,
) -> tuple[Float[np.ndarray, " N T"], Float[np.ndarray, " N"]]:
    """``bound(params, x, key) -> (terms, prior)`` (e.g. a jitted :func:`bound_terms`) over
    all of ``x0`` in chunks of ``min(chunk, N)`` examples, chunk ``j`` (starting at example
    ``i``) with the key ``fold_in(key, i)``; the last chunk is zero-padded so that one shape is
    compiled, and the padding dropped.  Returned as float64 numpy arrays."""
    x0 = np.asarray(x0)
    if chunk < 1 or not len(x0):
        raise ConfigError(f"need chunk >= 1 and at least one example, got {chunk}, {len(x0)}")
    n, c = len(x0), min(chunk, len(x0))
    x = np.concatenate([x0, np.zeros((-n % c, *x0.shape[1:]), x0.dtype)])
    parts = [bound(params, jnp.asarray(x[i : i + c]), jax.random.fold_in(key, i))
             for i in range(0, len(x), c)]  # fmt: skip
    terms = np.concatenate([np.asarray(t, np.float64) for t, _ in parts])[:n]
    return terms, np.concatenate([np.asarray(p, np.float64) for _, p in parts])[:n]


def sample(
    key: PRNGKeyArray,
    eps_fn: EpsFn,
    params: Any,
    sched: Schedule,
    shape: Sequence[int],
    *,
    variance: str = "large",
    clip: float | None = None,
) -> Float[Array, " B *d"]:
    """Ancestral sampling: ``x_T ~ N(0, I)``, then ``x_{t-1} ~ p_θ(x_{t-1} | x_t)`` for
    ``t = T..1`` as one ``lax.scan`` (Ho et al. Algorithm 2); the last step returns the mean
    ``μ_θ(x_1, 1)`` without noise (their code's convention).  ``shape``: ``(B, ...)``."""
    shape = tuple(int(s) for s in shape)
    k0, k_steps = jax.random.split(key)
    T = sched.n_steps

    def one(x, inp):
        k, i = inp
        ii = jnp.full((shape[0],), i, jnp.int32)
        mean, logvar, _ = p_mean_variance(
            sched, eps_fn(params, x, ii), x, ii, variance=variance, clip=clip
        )
        z = jax.random.normal(k, shape, jnp.float32)
        return jnp.where(i > 0, mean + jnp.exp(0.5 * logvar) * z, mean), None

    x, _ = jax.lax.scan(
        one, jax.random.normal(k0, shape, jnp.float32),
        (jax.random.split(k_steps, T), jnp.arange(T - 1, -1, -1)),
    )  # fmt: skip
    return x


# --------------------------------------------------------------------------- training


def make_loss(
    eps_fn: EpsFn, sched: Schedule
) -> Callable[[Any, Float[Array, " B *d"], PRNGKeyArray], tuple[Array, dict]]:
    """``loss(params, x0, key) -> (L_simple, {"mse": ...})``: Ho et al.'s eq. 14, the squared
    error of the predicted noise, averaged over coordinates and the minibatch, with
    ``t ~ U{1..T}`` and ``ε ~ N(0, I)`` drawn per example (use with
    :func:`egm.train.loss_objective` ``(..., has_aux=True)``)."""

    def loss(params, x0, key):
        k_t, k_eps = jax.random.split(key)
        i = jax.random.randint(k_t, (x0.shape[0],), 0, sched.n_steps)
        eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
        mse = jnp.mean((eps_fn(params, q_sample(sched, x0, i, eps), i) - eps) ** 2)
        return mse, {"mse": mse}

    return loss


def ema_update(ema: Any, params: Any, decay: float, step: Array | int) -> Any:
    """``ema ← d ema + (1 - d) params`` with ``d = min(decay, (1 + n)/(10 + n))`` after ``n``
    updates (the warm-up of TensorFlow's ExponentialMovingAverage, so that a short run's
    average is not dominated by the initial weights)."""
    n = jnp.asarray(step, jnp.float32)
    d = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
    return jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


def init_ema_state(params: Any, optimizer: Any) -> Any:
    """A :class:`egm.train.TrainState` whose ``aux`` is ``{"ema": params}`` (the EMA weights,
    checkpointed and vmapped with the state)."""
    from egm.train.state import init_state

    return init_state(params, optimizer, aux={"ema": params})


def with_ema(step: Callable, decay: float) -> Callable:
    """Wrap a train step (:func:`egm.train.make_step`) so that after each update the EMA of
    the new weights (:func:`ema_update`, with ``n`` = updates done before this one) is
    stored in ``state.aux["ema"]``; the state must come from :func:`init_ema_state`."""
    if not (0.0 <= float(decay) < 1.0):
        raise ConfigError(f"the EMA decay must lie in [0, 1), got {decay!r}")

    def wrapped(state, batch, key):
        new, metrics = step(state, batch, key)
        ema = ema_update(state.aux["ema"], new.params, decay, state.step)
        return new._replace(aux={**new.aux, "ema": ema}), metrics

    return wrapped


# --------------------------------------------------------------------------- networks


def timestep_embedding(i: Int[Array, " B"], dim: int, max_period: float = 10000.0) -> Array:
    """The transformer's sinusoidal embedding of the step index (Ho et al. §B): ``(B, dim)``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    a = i.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(a), jnp.cos(a)], -1)


class EpsMLP(nn.Module):
    """``ε_θ(x_t, t)`` as an MLP on flat data: each hidden layer ``h ← SiLU(W h + U e(t) + b)``
    with ``e(t)`` an MLP of the sinusoidal step embedding; a zero-initialised output layer."""

    hidden: Sequence[int]
    time_dim: int = 64

    @nn.compact
    def __call__(self, x: Float[Array, " B D"], i: Int[Array, " B"]) -> Float[Array, " B D"]:
        if x.ndim != 2:
            raise DataError(f"EpsMLP takes flat data (B, D), got shape {x.shape}")
        e = nn.Dense(self.time_dim)(timestep_embedding(i, self.time_dim))
        e = nn.Dense(self.time_dim)(nn.silu(e))
        h = x
        for n in self.hidden:
            h = nn.silu(nn.Dense(n)(h) + nn.Dense(n, use_bias=False)(e))
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(h)


def _groups(channels: int) -> int:
    """Group-norm groups: 32 as in Ho et al., fewer for narrow layers (a divisor of
    ``channels`` with at least 4 channels per group where possible)."""
    g = min(32, max(1, channels // 4))
    while channels % g:
        g -= 1
    return g


class _ResBlock(nn.Module):
    """Ho et al.'s residual block: GN, SiLU, 3x3 conv, + a projection of the step embedding,
    GN, SiLU, 3x3 conv (zero-initialised, so the block starts as the identity), and a 1x1
    projection of the input where the width changes."""

    channels: int

    @nn.compact
    def __call__(self, x: Array, emb: Array) -> Array:
        h = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(_groups(x.shape[-1]))(x)))
        h = h + nn.Dense(self.channels)(nn.silu(emb))[:, None, None, :]
        h = nn.silu(nn.GroupNorm(_groups(self.channels))(h))
        h = nn.Conv(self.channels, (3, 3), kernel_init=nn.initializers.zeros)(h)
        skip = x if x.shape[-1] == self.channels else nn.Conv(self.channels, (1, 1))(x)
        return skip + h


class _Attention(nn.Module):
    """Single-head self-attention over the positions of a feature map (Ho et al.'s
    attention block: GN, q/k/v 1x1 projections, a zero-initialised output projection)."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        B, H, W, C = x.shape
        h = nn.GroupNorm(_groups(C))(x).reshape(B, H * W, C)
        q, k, v = (nn.Dense(C)(h) for _ in range(3))
        w = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / math.sqrt(C), -1)
        out = nn.Dense(C, kernel_init=nn.initializers.zeros)(jnp.einsum("bqk,bkc->bqc", w, v))
        return x + out.reshape(B, H, W, C)


class EpsUNet(nn.Module):
    """``ε_θ(x_t, t)`` as Ho et al.'s U-Net, scaled down: flat data ``(B, H·W·C)`` viewed as
    ``image_shape`` images; a 3x3 input conv; per resolution level ``num_res_blocks``
    residual blocks of ``channels · mult`` channels (each given the step embedding: the
    sinusoidal embedding through Dense(4c), SiLU, Dense(4c)), then a stride-2 3x3 conv
    down; a middle of residual, attention, residual blocks at the coarsest level; the way
    up mirrors it with ``num_res_blocks + 1`` blocks per level on the concatenated skip
    features and nearest-neighbour 2x up-sampling followed by a 3x3 conv; GN, SiLU and a
    zero-initialised 3x3 output conv (so ``ε_θ ≡ 0`` at initialisation, as for
    :class:`EpsMLP`).  Ho et al.'s CIFAR-10 net is ``channels=128, mult=(1, 2, 2, 2),
    num_res_blocks=2`` with attention also at 16x16 and dropout 0.1 (neither here).  Each
    level but the last halves the image: ``H`` and ``W`` must be divisible by
    ``2^(len(mult) - 1)`` (28 x 28 MNIST: up to 3 levels)."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    channels: int = 32
    mult: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 1

    @nn.compact
    def __call__(self, x: Float[Array, " B D"], i: Int[Array, " B"]) -> Float[Array, " B D"]:
        H, W, C = self.image_shape
        if x.ndim != 2 or x.shape[-1] != H * W * C:
            raise DataError(f"EpsUNet takes flat data (B, {H * W * C}) of {self.image_shape} "
                            f"images, got shape {x.shape}")  # fmt: skip
        f = 2 ** (len(self.mult) - 1)
        if H % f or W % f:
            raise ConfigError(f"EpsUNet: {len(self.mult)} levels halve the image "
                              f"{len(self.mult) - 1} times, so H and W must be divisible by "
                              f"{f}; got {H} x {W} (use fewer levels in mult)")  # fmt: skip
        c0 = self.channels
        emb = nn.Dense(4 * c0)(timestep_embedding(i, c0))
        emb = nn.Dense(4 * c0)(nn.silu(emb))
        h = nn.Conv(c0, (3, 3))(x.reshape(-1, H, W, C))
        skips = [h]
        for level, m in enumerate(self.mult):
            for _ in range(self.num_res_blocks):
                h = _ResBlock(c0 * m)(h, emb)
                skips.append(h)
            if level < len(self.mult) - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2))(h)
                skips.append(h)
        h = _ResBlock(h.shape[-1])(h, emb)
        h = _Attention()(h)
        h = _ResBlock(h.shape[-1])(h, emb)
        for level, m in reversed(list(enumerate(self.mult))):
            for _ in range(self.num_res_blocks + 1):
                h = _ResBlock(c0 * m)(jnp.concatenate([h, skips.pop()], -1), emb)
            if level:
                B, h_, w_, c_ = h.shape
                h = jax.image.resize(h, (B, 2 * h_, 2 * w_, c_), "nearest")
                h = nn.Conv(c_, (3, 3))(h)
        h = nn.silu(nn.GroupNorm(_groups(h.shape[-1]))(h))
        out = nn.Conv(C, (3, 3), kernel_init=nn.initializers.zeros)(h)
        return out.reshape(x.shape)


def eps_fn_of(module: nn.Module) -> EpsFn:
    """``eps_fn(params, x_t, i)`` of a Flax module called as ``module.apply({"params": p},
    x_t, i)``."""
    return lambda params, x, i: module.apply({"params": params}, x, i)


# --------------------------------------------------------------------------- 8-bit data


def to_levels(grey: Float[ArrayLike, "*s"]) -> Float[np.ndarray, "*s"]:
    """Grey values in [0, 1] -> Ho et al.'s 8-bit data ``2k/255 - 1`` in [-1, 1], ``k =
    round(255 grey)`` (float32, host-side)."""
    return (2.0 * np.round(255 * np.asarray(grey)) / 255 - 1).astype(np.float32)


def from_levels(x: Float[ArrayLike, "*s"]) -> Float[np.ndarray, "*s"]:
    """Model output in [-1, 1] (clipped) -> grey values ``k/255`` in [0, 1] on the 256 levels
    (the inverse of :func:`to_levels` on the grid; float32, host-side)."""
    return (np.round((np.clip(np.asarray(x), -1, 1) + 1) * 127.5) / 255).astype(np.float32)


def check_levels(x: Float[ArrayLike, "*s"], name: str = "training data") -> None:
    """:class:`DataError` unless every value of ``x`` is an 8-bit level ``2k/255 - 1``, ``k``
    in 0..255 (within 1e-3 of a level; :func:`to_levels`)."""
    k = (np.asarray(x, np.float64) + 1) * 127.5
    if (
        not k.size
        or np.abs(k - np.round(k)).max() > 1e-3
        or k.min() < -1e-3
        or k.max() > 255 + 1e-3
    ):
        raise DataError(
            f"{name} must be 8-bit levels scaled to 2k/255 - 1 in [-1, 1] (k in 0..255); "
            f"convert grey values in [0, 1] with egm.models.diffusion.to_levels"
        )
