"""Generator networks and variational autoencoders (Deep Learning §20.10.2-§20.10.3).

A *generator network* (§20.10.2) maps a latent code ``z ~ p(z)`` to the parameters of an
output distribution ``p(x | z)``: Bernoulli logits for binary images, a Gaussian or a
discretized logistic (Kingma et al. 2016) for grey levels.  A *variational autoencoder*
(§20.10.3) pairs it with an inference network ``q(z | x)`` and maximises the evidence
lower bound (book eq. 20.76)

    L(q) = E_{z~q(z|x)} log p(z, x) + H(q(z|x)) = E_q log p(x|z) - KL(q(z|x) || p(z))
         <= log p(x),

with the reparameterisation ``z = mu(x) + sigma(x) * eps`` (§20.9) so that Monte-Carlo
gradients pass through the sample.  The importance-weighted bound of Burda et al. (2016),

    L_k = E_{z_1..k ~ q} log (1/k) sum_i p(x, z_i) / q(z_i | x),

satisfies ``L = L_1 <= L_k <= L_{k+1} <= log p(x)`` and tends to ``log p(x)`` as ``k``
grows; with many samples it is the importance-sampling estimate of the log-likelihood
(:func:`egm.estimators.importance.importance_log_likelihood`, fed by :func:`log_weights_fn`).

Discrete latents: ``latent="categorical"`` gives ``latent_dim`` categorical variables of
``n_classes`` classes each (uniform prior), trained with the Gumbel-Softmax relaxation
(Jang et al. 2017; Maddison et al. 2017), its straight-through variant, or REINFORCE
(:func:`discrete_elbo_surrogate`).

Models are Flax Linen modules used as pure ``(apply_fn, params)`` pairs: every function
here takes ``(model, params, ...)``, works on ONE example (``x`` of shape ``(D,)``) and is
vmapped over a batch by :func:`batch_loss`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.distributions import bernoulli_log_prob
from egm.errors import ConfigError
from egm.estimators.gradients import gumbel_softmax, reparam_gaussian, score_function_surrogate
from egm.random_bits import fast_bernoulli, fast_normal, fast_split

LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian", "logistic")
ARCHITECTURES: tuple[str, ...] = ("mlp", "conv")
LATENTS: tuple[str, ...] = ("gaussian", "categorical")
GAUSSIAN_SCALES: tuple[str, ...] = ("network", "learned")
OBJECTIVES: tuple[str, ...] = ("elbo", "iwae")
DISCRETE_ESTIMATORS: tuple[str, ...] = ("gumbel", "st_gumbel", "reinforce")

_LOG_2PI = math.log(2.0 * math.pi)
_ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
}


# ----------------------------------------------------------------------------------------
# Output distributions of the generator network (§20.10.2)
# ----------------------------------------------------------------------------------------


def gaussian_log_prob(
    mean: Float[Array, "*b D"], log_scale: Float[Array, "*b D"], x: Float[Array, "*b D"]
) -> Float[Array, "*b"]:
    """``log N(x; mean, diag(exp(2 log_scale)))`` summed over the last axis."""
    z = (x - mean) * jnp.exp(-log_scale)
    return jnp.sum(-0.5 * z**2 - log_scale - 0.5 * _LOG_2PI, axis=-1)


def discretized_logistic_log_prob(
    mean: Float[Array, "*b D"],
    log_scale: Float[Array, "*b D"],
    x: Float[Array, "*b D"],
    n_bins: int = 256,
) -> Float[Array, "*b"]:
    """Log-probability of grey levels ``x in {0, 1/(n_bins-1), ..., 1}`` under a logistic
    density integrated over each bin (Kingma et al. 2016; Salimans et al. 2017): the edge
    bins take the tails, so the ``n_bins`` probabilities sum to one exactly.  Where a bin's
    mass underflows (< 1e-5) the density at its centre times the bin width is used."""
    half = 0.5 / (n_bins - 1)
    centered = x - mean
    inv_s = jnp.exp(-log_scale)
    plus_in = inv_s * (centered + half)
    min_in = inv_s * (centered - half)
    log_cdf_plus = jax.nn.log_sigmoid(plus_in)  # x = 0: P = sigmoid(plus_in)
    log_sf_min = -jax.nn.softplus(min_in)  # x = 1: P = 1 - sigmoid(min_in)
    delta = jax.nn.sigmoid(plus_in) - jax.nn.sigmoid(min_in)
    mid_in = inv_s * centered
    log_pdf_mid = mid_in - log_scale - 2.0 * jax.nn.softplus(mid_in)
    middle = jnp.where(
        delta > 1e-5, jnp.log(jnp.maximum(delta, 1e-12)), log_pdf_mid + math.log(2 * half)
    )
    lp = jnp.where(x < half, log_cdf_plus, jnp.where(x > 1.0 - half, log_sf_min, middle))
    return jnp.sum(lp, axis=-1)


def output_log_prob(likelihood: str, out: Any, x: Float[Array, "*b D"]) -> Float[Array, "*b"]:
    """``log p(x | z)`` from the decoder output ``out`` (logits, or ``(mean, log_scale)``)."""
    if likelihood == "bernoulli":
        return bernoulli_log_prob(out, x)
    mean, log_scale = out
    if likelihood == "gaussian":
        return gaussian_log_prob(mean, log_scale, x)
    return discretized_logistic_log_prob(mean, log_scale, x)


def output_mean(likelihood: str, out: Any) -> Float[Array, "*b D"]:
    """The mean image ``E[x | z]`` (Bernoulli: sigmoid of the logits; others: the location)."""
    return jax.nn.sigmoid(out) if likelihood == "bernoulli" else out[0]


def sample_output(key: PRNGKeyArray, likelihood: str, out: Any) -> Float[Array, "*b D"]:
    """One draw ``x ~ p(x | z)``; logistic draws are rounded to the bins and clipped to [0, 1]."""
    if likelihood == "bernoulli":
        return jax.random.bernoulli(key, jax.nn.sigmoid(out)).astype(jnp.float32)
    mean, log_scale = out
    if likelihood == "gaussian":
        return mean + jnp.exp(log_scale) * jax.random.normal(key, mean.shape)
    u = jax.random.uniform(key, mean.shape, minval=1e-6, maxval=1.0 - 1e-6)
    x = mean + jnp.exp(log_scale) * (jnp.log(u) - jnp.log1p(-u))
    return jnp.clip(jnp.round(x * 255.0) / 255.0, 0.0, 1.0)


# ----------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------


class _Fields(nn.Module):
    """Configuration shared by :class:`Encoder`, :class:`Decoder` and :class:`VAE`."""

    x_dim: int = 784
    latent_dim: int = 50
    hidden: Sequence[int] = (200, 200)
    activation: str = "tanh"
    likelihood: str = "bernoulli"
    gaussian_scale: str = "network"
    architecture: str = "mlp"
    image_shape: tuple[int, int, int] = (28, 28, 1)
    conv_channels: Sequence[int] = (32, 64)
    latent: str = "gaussian"
    n_classes: int = 10

    def fields(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _FIELD_NAMES}

    def check(self) -> _Fields:
        """Raise :class:`ConfigError` for an inconsistent configuration; return ``self``."""
        for name, val, allowed in (
            ("likelihood", self.likelihood, LIKELIHOODS),
            ("architecture", self.architecture, ARCHITECTURES),
            ("latent", self.latent, LATENTS),
            ("gaussian_scale", self.gaussian_scale, GAUSSIAN_SCALES),
            ("activation", self.activation, tuple(_ACTIVATIONS)),
        ):
            if val not in allowed:
                raise ConfigError(f"VAE {name} must be one of {allowed}, got {val!r}")
        if self.x_dim < 1 or self.latent_dim < 1 or any(h < 1 for h in self.hidden):
            raise ConfigError(
                f"VAE sizes must be >= 1: x_dim={self.x_dim}, latent_dim={self.latent_dim}, "
                f"hidden={tuple(self.hidden)}"
            )
        if self.latent == "categorical" and self.n_classes < 2:
            raise ConfigError(f"categorical latents need n_classes >= 2, got {self.n_classes}")
        if self.architecture == "conv":
            h, w, c = self.image_shape
            f = 2 ** len(self.conv_channels)
            if h * w * c != self.x_dim or h % f or w % f or not self.hidden:
                raise ConfigError(
                    f"conv VAE needs image_shape (H, W, C) with H*W*C = x_dim ({self.x_dim}), H "
                    f"and W divisible by 2**len(conv_channels) = {f}, and a non-empty hidden "
                    f"(the dense layer next to the convolutions); got image_shape="
                    f"{self.image_shape}, hidden={tuple(self.hidden)}"
                )
        return self

    @property
    def _act(self) -> Callable:
        return _ACTIVATIONS[self.activation]

    @property
    def _n_out(self) -> int:
        """Decoder outputs per pixel."""
        two = self.likelihood != "bernoulli" and self.gaussian_scale == "network"
        return 2 if two else 1


_FIELD_NAMES = (
    "x_dim",
    "latent_dim",
    "hidden",
    "activation",
    "likelihood",
    "gaussian_scale",
    "architecture",
    "image_shape",
    "conv_channels",
    "latent",
    "n_classes",
)


class Encoder(_Fields):
    """Inference network ``q(z | x)``: ``(mu, log_sigma)`` each ``(*b, L)``, or categorical
    logits ``(*b, L, K)``."""

    @nn.compact
    def __call__(self, x: Float[Array, "*b D"]) -> Any:
        lead = x.shape[:-1]
        h = x
        if self.architecture == "conv":
            h = x.reshape(-1, *self.image_shape)
            for ch in self.conv_channels:
                h = self._act(nn.Conv(ch, (4, 4), strides=(2, 2), padding="SAME")(h))
            h = h.reshape(*lead, -1)
            h = self._act(nn.Dense(self.hidden[-1])(h))
        else:
            for width in self.hidden:
                h = self._act(nn.Dense(width)(h))
        if self.latent == "categorical":
            logits = nn.Dense(self.latent_dim * self.n_classes, name="q_logits")(h)
            return logits.reshape(*lead, self.latent_dim, self.n_classes)
        mu = nn.Dense(self.latent_dim, name="q_mu")(h)
        log_sigma = nn.Dense(self.latent_dim, name="q_log_sigma")(h)
        return mu, log_sigma


class Decoder(_Fields):
    """Generator network ``p(x | z)`` (§20.10.2): Bernoulli logits ``(*b, D)`` or
    ``(mean, log_scale)`` each ``(*b, D)``; ``z`` is ``(*b, L)`` (Gaussian) or
    ``(*b, L, K)`` one-hot / relaxed (categorical)."""

    @nn.compact
    def __call__(self, z: Any) -> Any:
        if self.latent == "categorical":
            z = z.reshape(*z.shape[:-2], self.latent_dim * self.n_classes)
        lead = z.shape[:-1]
        h = z
        if self.architecture == "conv":
            H, W, C = self.image_shape
            f = 2 ** len(self.conv_channels)
            chans = tuple(self.conv_channels)
            h = self._act(nn.Dense(self.hidden[-1])(h))
            h = self._act(nn.Dense((H // f) * (W // f) * chans[-1])(h))
            h = h.reshape(-1, H // f, W // f, chans[-1])
            for ch in chans[-2::-1]:
                h = self._act(nn.ConvTranspose(ch, (4, 4), strides=(2, 2), padding="SAME")(h))
            h = nn.ConvTranspose(
                C * self._n_out, (4, 4), strides=(2, 2), padding="SAME", name="p_out"
            )(h)
            h = h.reshape(*lead, H, W, C, self._n_out)
            out = jnp.moveaxis(h, -1, 0).reshape(self._n_out, *lead, self.x_dim)
        else:
            for width in tuple(self.hidden)[::-1]:
                h = self._act(nn.Dense(width)(h))
            out = nn.Dense(self.x_dim * self._n_out, name="p_out")(h)
            out = jnp.moveaxis(out.reshape(*lead, self._n_out, self.x_dim), -2, 0)
        if self.likelihood == "bernoulli":
            return out[0]
        if self.gaussian_scale == "network":
            return out[0], out[1]
        log_scale = self.param("p_log_scale", nn.initializers.zeros, (self.x_dim,))
        return out[0], jnp.broadcast_to(log_scale, out[0].shape)


class VAE(_Fields):
    """Inference network ``q(z|x)`` and generator network ``p(x|z)`` of a VAE (§20.10.3).

    Fields:
      x_dim: pixels per example ``D`` (data are flat vectors ``(D,)``).
      latent_dim: Gaussian latents, or number of categorical variables.
      hidden: widths of the deterministic layers of the MLP encoder; the decoder mirrors
        them (Burda et al. 2016: ``(200, 200)``, tanh, 50 latents).
      activation: one of tanh | relu | softplus | elu.
      likelihood: bernoulli | gaussian | logistic (discretized, 256 grey levels).
      gaussian_scale: for gaussian/logistic outputs, "network" (the decoder outputs a
        per-pixel log-scale) or "learned" (one free log-scale per pixel, not a function
        of ``z``: with ``hidden=()`` this is the linear-Gaussian model of the tests).
      architecture: "mlp" or "conv" (stride-2 4x4 convolutions with ``conv_channels``
        filters, then a dense layer of ``hidden[-1]`` units; the decoder mirrors it with
        transposed convolutions).  Images are ``image_shape = (H, W, C)``.
      latent: "gaussian" (``q = N(mu, diag sigma^2)``, prior ``N(0, I)``) or "categorical"
        (``latent_dim`` one-hot variables of ``n_classes`` classes, uniform prior).

    Methods ``encode`` and ``decode`` are called with ``model.apply(params, x,
    method=VAE.encode)``; :func:`init_params` creates the parameters.
    """

    def setup(self):
        self.encoder = Encoder(**self.fields())
        self.decoder = Decoder(**self.fields())

    def __call__(self, x: Float[Array, "*b D"], z: Any) -> tuple[Any, Any]:
        """Both networks (used by ``init``): ``(encode(x), decode(z))``."""
        return self.encode(x), self.decode(z)

    def encode(self, x: Float[Array, "*b D"]) -> Any:
        """``q(z | x)`` parameters (see :class:`Encoder`)."""
        return self.encoder(x)

    def decode(self, z: Any) -> Any:
        """``p(x | z)`` parameters (see :class:`Decoder`)."""
        return self.decoder(z)


def init_params(key: PRNGKeyArray, model: VAE) -> Any:
    """Parameters of ``model`` (checked first) for flat inputs of ``model.x_dim`` pixels."""
    model.check()
    x = jnp.zeros((1, model.x_dim))
    z = (
        jnp.zeros((1, model.latent_dim, model.n_classes))
        if model.latent == "categorical"
        else jnp.zeros((1, model.latent_dim))
    )
    return model.init(key, x, z)


# ----------------------------------------------------------------------------------------
# Latent distributions
# ----------------------------------------------------------------------------------------


def gaussian_kl(mu: Float[Array, "*b L"], log_sigma: Float[Array, "*b L"]) -> Float[Array, "*b"]:
    """``KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum (mu^2 + sigma^2 - 1 - 2 log sigma)``."""
    return 0.5 * jnp.sum(mu**2 + jnp.exp(2.0 * log_sigma) - 1.0 - 2.0 * log_sigma, axis=-1)


def categorical_kl_uniform(logits: Float[Array, "*b L K"]) -> Float[Array, "*b"]:
    """``KL(q || Uniform(K)^L) = sum_l sum_k q_lk log q_lk + L log K``."""
    logq = jax.nn.log_softmax(logits, axis=-1)
    k = logits.shape[-1]
    return jnp.sum(jnp.exp(logq) * logq, axis=(-2, -1)) + logits.shape[-2] * math.log(k)


def sample_latents(
    key: PRNGKeyArray, model: VAE, q: Any, k: int
) -> tuple[Float[Array, "k ..."], Float[Array, " k"]]:
    """``k`` draws ``z_i ~ q(z | x)`` and their ``log q(z_i | x)``.

    Gaussian draws are reparameterised (``z = mu + sigma * eps``, §20.9), so gradients
    pass through them; categorical draws are one-hot and carry no gradient."""
    if model.latent == "categorical":
        logq = jax.nn.log_softmax(q, axis=-1)  # (L, K)
        idx = jax.random.categorical(key, q, axis=-1, shape=(k, *q.shape[:-1]))  # (k, L)
        z = jax.nn.one_hot(idx, q.shape[-1])
        return z, jnp.sum(z * logq, axis=(-2, -1))
    mu, log_sigma = q
    z = reparam_gaussian(key, mu, log_sigma, k, normal=fast_normal)  # same draws, no hash loop
    return z, gaussian_log_prob(mu, log_sigma, z)


def log_prior(model: VAE, z: Any) -> Float[Array, "*b"]:
    """``log p(z)``: standard normal, or uniform over the ``K^L`` one-hot codes."""
    if model.latent == "categorical":
        return jnp.full(z.shape[:-2], -model.latent_dim * math.log(model.n_classes))
    return jnp.sum(-0.5 * z**2 - 0.5 * _LOG_2PI, axis=-1)


# ----------------------------------------------------------------------------------------
# Bounds (one example)
# ----------------------------------------------------------------------------------------


def log_weights(
    key: PRNGKeyArray, model: VAE, params: Any, x: Float[Array, " D"], k: int
) -> Float[Array, " k"]:
    """``log w_i = log p(x, z_i) - log q(z_i | x)`` for ``k`` draws ``z_i ~ q(z | x)``."""
    q = model.apply(params, x, method=VAE.encode)
    z, logq = sample_latents(key, model, q, k)
    out = model.apply(params, z, method=VAE.decode)
    return output_log_prob(model.likelihood, out, x) + log_prior(model, z) - logq


def log_weights_fn(model: VAE) -> Callable:
    """``fn(params, key, x, n) -> (n,)`` log importance weights with ``q(z|x)`` as proposal.

    Use it as ``jax.tree_util.Partial(log_weights_fn(model), params)``, the ``log_weights_fn``
    of :func:`egm.estimators.importance.importance_log_likelihood`: the function is cached per
    model (Linen modules hash by their fields), so evaluating new parameters reuses the
    compiled program."""
    return _cached_log_weights_fn(model.check())


@functools.lru_cache(maxsize=64)
def _cached_log_weights_fn(model: VAE) -> Callable:
    def fn(params, key, x, n):
        return log_weights(key, model, params, x, n)

    return fn


def iwae_bound(
    key: PRNGKeyArray, model: VAE, params: Any, x: Float[Array, " D"], k: int
) -> Float[Array, ""]:
    """One-sample estimate of ``L_k = E log (1/k) sum_i w_i`` (Burda et al. 2016).

    ``k = 1`` is the ELBO with a Monte-Carlo KL.  Differentiable (reparameterised draws)."""
    lw = log_weights(key, model, params, x, k)
    return jax.nn.logsumexp(lw) - math.log(k)


def elbo(
    key: PRNGKeyArray,
    model: VAE,
    params: Any,
    x: Float[Array, " D"],
    k: int = 1,
    *,
    analytic_kl: bool = True,
) -> Float[Array, ""]:
    """Estimate of the ELBO (eq. 20.76) from ``k`` draws of ``q(z|x)``.

    With ``analytic_kl`` (Kingma & Welling 2014's lower-variance estimator), it is
    ``mean_i log p(x | z_i) - KL(q(z|x) || p(z))`` with the KL in closed form; otherwise
    ``mean_i log w_i``.  Both are unbiased for the same ``L(q)``."""
    if not analytic_kl:
        return jnp.mean(log_weights(key, model, params, x, k))
    q = model.apply(params, x, method=VAE.encode)
    z, _ = sample_latents(key, model, q, k)
    if k == 1:  # decode one code, not a stack of one: vmapped, the networks see (B, L) -> (B, D)
        z = z[0]
    out = model.apply(params, z, method=VAE.decode)
    kl = categorical_kl_uniform(q) if model.latent == "categorical" else gaussian_kl(*q)
    return jnp.mean(output_log_prob(model.likelihood, out, x)) - kl


def discrete_elbo_surrogate(
    key: PRNGKeyArray,
    model: VAE,
    params: Any,
    x: Float[Array, " D"],
    estimator: str,
    tau: Float[Array, ""] | float = 1.0,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """``(surrogate, elbo_value)`` for a categorical-latent VAE: the gradient of
    ``surrogate`` is the chosen estimator of ``grad ELBO``; ``elbo_value`` is the value of
    the objective it optimises.

    * ``"gumbel"``: the relaxed objective of Jang et al. (2017),
      ``log p(x | y) - KL(q || uniform)`` with ``y = softmax((log q + g) / tau)``
      (biased for ``tau > 0``; its value is reported).
    * ``"st_gumbel"``: straight-through Gumbel-Softmax: the decoder sees the one-hot
      ``argmax``, gradients flow through the relaxed ``y``.
    * ``"reinforce"``: the decoder sees a discrete draw; the encoder gradient is the
      score function ``(log p(x|z) - b) grad log q(z|x)`` averaged over two draws, each
      with the other draw's ``log p(x|z')`` as baseline (the leave-one-out baseline of
      :mod:`egm.estimators.gradients`; unbiased since it is independent of ``z``), plus the
      closed-form KL gradient.
    """
    if model.latent != "categorical":
        raise ConfigError("discrete_elbo_surrogate needs a VAE with latent='categorical'")
    logits = model.apply(params, x, method=VAE.encode)
    kl = categorical_kl_uniform(logits)
    if estimator in ("gumbel", "st_gumbel"):
        y = gumbel_softmax(key, logits, tau, hard=estimator == "st_gumbel")
        out = model.apply(params, y, method=VAE.decode)
        value = output_log_prob(model.likelihood, out, x) - kl
        return value, value
    if estimator != "reinforce":
        raise ConfigError(f"estimator must be one of {DISCRETE_ESTIMATORS}, got {estimator!r}")
    z, _ = sample_latents(key, model, jax.lax.stop_gradient(logits), 2)
    logq = jnp.sum(z * jax.nn.log_softmax(logits, axis=-1), axis=(-2, -1))  # differentiable
    out = model.apply(params, z, method=VAE.decode)
    f = output_log_prob(model.likelihood, out, x)  # (2,): pathwise in the decoder
    signal = f - f[::-1]  # leave-one-out baseline: the other draw's log p(x|z')
    surrogate = jnp.mean(f) + score_function_surrogate(logq, signal) - kl
    return surrogate, jnp.mean(f) - kl


# ----------------------------------------------------------------------------------------
# Losses and generation
# ----------------------------------------------------------------------------------------


def make_loss(
    model: VAE,
    objective: str = "elbo",
    k: int = 1,
    *,
    analytic_kl: bool = True,
    dynamic_binarization: bool = False,
) -> Callable[[Any, Float[Array, "B D"], PRNGKeyArray], tuple[Float[Array, ""], dict]]:
    """``loss(params, batch, key) -> (-mean bound, metrics)`` for a Gaussian-latent VAE.

    ``objective``: "elbo" (``k`` draws averaged) or "iwae" (``L_k``).  With
    ``dynamic_binarization`` each call draws ``x ~ Bernoulli(grey)`` first (Burda et al.)."""
    model.check()
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if k < 1:
        raise ConfigError(f"number of importance samples k must be >= 1, got {k}")

    def per_example(params, key, x):
        if objective == "iwae":
            return iwae_bound(key, model, params, x, k)
        return elbo(key, model, params, x, k, analytic_kl=analytic_kl)

    def loss(params, batch, key):
        k_bin, k_z = fast_split(key, 2)
        if dynamic_binarization:
            batch = fast_bernoulli(k_bin, batch)
        keys = fast_split(k_z, batch.shape[0])
        bounds = jax.vmap(per_example, in_axes=(None, 0, 0))(params, keys, batch)
        value = jnp.mean(bounds)
        return -value, {"bound": value}

    return loss


def make_discrete_loss(
    model: VAE,
    estimator: str,
    tau: float | Callable[[Array], Array] = 1.0,
    *,
    dynamic_binarization: bool = False,
) -> Callable:
    """``loss(params, batch, key, step=0) -> (-mean surrogate, metrics)`` for a categorical
    VAE; ``tau`` is a constant or a schedule of the step count (:func:`discrete_elbo_surrogate`)."""
    model.check()
    if estimator not in DISCRETE_ESTIMATORS:
        raise ConfigError(f"estimator must be one of {DISCRETE_ESTIMATORS}, got {estimator!r}")

    def loss(params, batch, key, step=0):
        k_bin, k_z = fast_split(key, 2)
        if dynamic_binarization:
            batch = fast_bernoulli(k_bin, batch)
        t = tau(step) if callable(tau) else jnp.asarray(tau, jnp.float32)
        keys = fast_split(k_z, batch.shape[0])
        sur, val = jax.vmap(
            lambda kk, x: discrete_elbo_surrogate(kk, model, params, x, estimator, t)
        )(keys, batch)
        return -jnp.mean(sur), {"bound": jnp.mean(val), "tau": t}

    return loss


def bound_on_data(
    key: PRNGKeyArray,
    model: VAE,
    params: Any,
    x: Float[Array, "N D"],
    k: int = 1,
    *,
    batch_size: int = 500,
) -> Float[Array, " N"]:
    """Per-example ``L_k`` estimates over a dataset, in batches (``k = 1``: the ELBO with a
    Monte-Carlo KL; for the analytic-KL ELBO use :func:`elbo_on_data`).  Remainder handled;
    compiled once per ``(model, k)`` (new parameters reuse the program)."""
    return _on_data(_cached_batch_fn(model.check(), "iwae", k), key, params, x, batch_size)


def elbo_on_data(
    key: PRNGKeyArray,
    model: VAE,
    params: Any,
    x: Float[Array, "N D"],
    k: int = 1,
    *,
    batch_size: int = 500,
) -> Float[Array, " N"]:
    """Per-example analytic-KL ELBO (:func:`elbo` with ``k`` draws; Gaussian or categorical
    latents) over a dataset, in batches, compiled once per ``(model, k)``."""
    return _on_data(_cached_batch_fn(model.check(), "elbo", k), key, params, x, batch_size)


@functools.lru_cache(maxsize=64)
def _cached_batch_fn(model: VAE, which: str, k: int) -> Callable:
    def one(params, key, x):
        if which == "iwae":
            return iwae_bound(key, model, params, x, k)
        return elbo(key, model, params, x, k, analytic_kl=True)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


def _on_data(fn: Callable, key: PRNGKeyArray, params: Any, x: Any, batch_size: int) -> Array:
    x = jnp.asarray(x)
    keys = jax.random.split(key, x.shape[0])
    parts = [
        fn(params, keys[i : i + batch_size], x[i : i + batch_size])
        for i in range(0, x.shape[0], batch_size)
    ]
    return jnp.concatenate(parts)


def active_units(model: VAE, params: Any, x: Float[Array, "N D"], threshold: float = 1e-2) -> int:
    """Burda et al.'s (2016) count of active latent units: those whose posterior mean
    ``E_q[z_j | x]`` varies over the data by more than ``threshold`` (Gaussian latents)."""
    if model.latent != "gaussian":
        raise ConfigError("active_units needs a VAE with Gaussian latents")
    mu = model.apply(params, jnp.asarray(x), method=VAE.encode)[0]
    return int(jnp.sum(jnp.var(mu, axis=0) > threshold))


def burda_lr_multiplier(stages: int, steps_per_epoch: int) -> tuple[Callable[[Any], Any], int]:
    """The learning-rate schedule of Burda et al. (2016) as a multiplier of the step count
    (for ``egm.train.adam(lr, lr_multiplier=...)``): stage ``i = 0..stages-1`` lasts ``3^i``
    epochs at ``10^(-i/7)``; returns the multiplier and the schedule's length in epochs."""
    if stages < 1 or steps_per_epoch < 1:
        raise ConfigError(
            f"need stages >= 1 and steps_per_epoch >= 1, got {stages} and {steps_per_epoch} "
            f"(is the batch larger than the training set?)"
        )
    lengths = [3**i for i in range(stages)]
    bounds = jnp.asarray([sum(lengths[: i + 1]) * steps_per_epoch for i in range(stages - 1)])

    def multiplier(count):
        stage = jnp.searchsorted(bounds.astype(jnp.int32), count, side="right")
        return 10.0 ** (-stage / 7.0)

    return multiplier, sum(lengths)


def generate(
    key: PRNGKeyArray, model: VAE, params: Any, n: int, *, mean: bool = True
) -> Float[Array, "n D"]:
    """``n`` images from the generator network: ``z ~ p(z)``, then ``E[x|z]`` (or a draw)."""
    k_z, k_x = jax.random.split(key)
    if model.latent == "categorical":
        idx = jax.random.randint(k_z, (n, model.latent_dim), 0, model.n_classes)
        z = jax.nn.one_hot(idx, model.n_classes)
    else:
        z = jax.random.normal(k_z, (n, model.latent_dim))
    out = model.apply(params, z, method=VAE.decode)
    return output_mean(model.likelihood, out) if mean else sample_output(k_x, model.likelihood, out)


def reconstruct(model: VAE, params: Any, x: Float[Array, "N D"]) -> Float[Array, "N D"]:
    """``E[x | z = mode of q(z|x)]`` (posterior mean for Gaussian latents, argmax codes)."""
    q = model.apply(params, x, method=VAE.encode)
    if model.latent == "categorical":
        z = jax.nn.one_hot(jnp.argmax(q, -1), model.n_classes)
    else:
        z = q[0]
    return output_mean(model.likelihood, model.apply(params, z, method=VAE.decode))


# ----------------------------------------------------------------------------------------
# Command-line specs shared by the experiments
# ----------------------------------------------------------------------------------------


def parse_hidden(spec: str) -> tuple[int, ...]:
    """``"200,200"`` -> ``(200, 200)`` (widths of the deterministic layers; ``""`` is none)."""
    try:
        h = tuple(int(s) for s in spec.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--hidden must be comma-separated ints, got {spec!r}") from None
    if any(v < 1 for v in h):
        raise ConfigError(f"--hidden widths must be >= 1, got {spec!r}")
    return h


def parse_models(spec: str) -> list[tuple[str, str, int]]:
    """``"vae1,iwae50"`` -> ``[("vae1", "elbo", 1), ("iwae50", "iwae", 50)]``: ``vae<k>``
    maximises the ELBO from ``k`` draws (analytic KL), ``iwae<k>`` the bound ``L_k``."""
    out = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        m = re.fullmatch(r"(vae|iwae)(\d+)", name)
        if m is None or int(m.group(2)) < 1:
            raise ConfigError(
                f"bad model {name!r} in --models; use vae<k> or iwae<k> with k >= 1, "
                f"e.g. vae1,iwae5,iwae50"
            )
        out.append((name, "elbo" if m.group(1) == "vae" else "iwae", int(m.group(2))))
    if not out or len({n for n, _, _ in out}) < len(out):
        raise ConfigError(f"--models must name distinct models, e.g. vae1,iwae50; got {spec!r}")
    return out
