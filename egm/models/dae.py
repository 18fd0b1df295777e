r"""Denoising autoencoders as generative models (§20.11; Bengio et al. 2013).

A (generalised) denoising autoencoder is a corruption process ``C(x̃ | x)`` and a learned
reconstruction distribution ``P_θ(x | x̃)``.  Alternating the two is a Markov chain

.. math:: x_t \to \tilde x_t \sim C(\tilde x \mid x_t) \to x_{t+1} \sim P_θ(x \mid \tilde x_t),

whose transition is ``T(x' | x) = Σ_x̃ P_θ(x' | x̃) C(x̃ | x)`` (§20.11.1).  When ``P_θ`` is
the true posterior ``P(x | x̃) ∝ C(x̃ | x) p(x)`` the chain is Gibbs sampling on the joint
``p(x) C(x̃ | x)`` and its stationary distribution is the data distribution ``p``; a
consistent estimator of that posterior (minimising ``-log P_θ(x | x̃)`` on pairs
``x ~ data``, ``x̃ ~ C(·|x)``) gives a consistent estimator of ``p``.

* Corruption processes (:data:`CORRUPTIONS`): ``"flip"`` (each bit flipped with probability
  ``level``), ``"salt_pepper"`` (each unit replaced, with probability ``level``, by a fair
  coin: a flip with probability ``level / 2``; the MNIST noise of Bengio et al. 2013) and
  ``"gaussian"`` (``x̃ = x + level · ε``, for real-valued data).  ``level`` outside
  ``[0, 1]`` (binary noise) or negative (Gaussian) is refused.
* Reconstruction distributions (:data:`OUTPUTS`): a factorial ``"bernoulli"``, a
  ``"bernoulli_mixture"`` of ``K`` factorial Bernoullis (the richer output that can put
  several modes in ``P(x | x̃)``, which a factorial one cannot), a ``"nade"``: a NADE
  (:mod:`egm.models.nade`, ``nade_hidden`` units, its own weights) whose biases ``b, c`` the
  MLP computes from ``x̃`` -- an autoregressive ``P(x | x̃)`` that can model any dependence
  between the reconstructed units -- and, for real-valued data, a ``"gaussian_mixture"`` of
  ``K`` diagonal Gaussians centred at ``x̃`` plus a learned offset.  All are computed by an MLP
  of ``x̃`` (plain JAX, parameters a dict pytree).  The NADE's ordering is the *reverse* unit
  order (the last unit first), so that the marginal of a final block of units (an image's
  bottom rows: inpainting) is exact: the product of its own conditionals.
* :func:`markov_chain` / :func:`sample_chain`: the chain as a ``lax.scan``, with clamped units
  (§20.11.2: conditional sampling / inpainting: every step corrupts and resamples all units,
  then the clamped ones are set back to their observed values, so they never change).
* :func:`walkback_loss` (§20.11.3): the walk-back training criterion, ``k`` stochastic
  reconstruction steps from each training example, each penalised by
  ``-log P_θ(x_data | x̃_j)``; ``k = 1`` is the ordinary DAE loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.models import nade

__all__ = [
    "CORRUPTIONS",
    "OUTPUTS",
    "DAE",
    "ChainOut",
    "check_corruption_level",
    "corrupt",
    "corruption_log_prob",
    "init_params",
    "markov_chain",
    "recon_log_prob",
    "recon_mean",
    "sample_chain",
    "sample_recon",
    "walkback_loss",
    "walkback_terms",
]

CORRUPTIONS = ("salt_pepper", "flip", "gaussian")
OUTPUTS = ("bernoulli", "bernoulli_mixture", "nade", "gaussian_mixture")
_ACTIVATIONS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu}
_LOG_SD = (-7.0, 2.0)  # clip of the Gaussian output's log standard deviations


def check_corruption_level(level: float, corruption: str = "salt_pepper") -> float:
    """``level`` as a float, or a :class:`ConfigError`: a probability in ``[0, 1]`` for the
    binary corruptions, a standard deviation ``>= 0`` for ``"gaussian"``."""
    if corruption not in CORRUPTIONS:
        raise ConfigError(f"corruption must be one of {CORRUPTIONS}, got {corruption!r}")
    try:
        v = float(level)
    except (TypeError, ValueError):
        raise ConfigError(f"corruption level must be a number, got {level!r}") from None
    if corruption == "gaussian":
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(
                f"the Gaussian corruption level is a standard deviation: it must be finite "
                f"and >= 0, got {level!r}"
            )
    elif not (0.0 <= v <= 1.0):
        raise ConfigError(
            f"the {corruption} corruption level is a probability per unit: it must be in "
            f"[0, 1], got {level!r} (e.g. 0.5 for the salt-and-pepper noise of Bengio et al.)"
        )
    return v


class DAE(NamedTuple):
    """A generalised DAE (static description; parameters come from :func:`init_params`).

    ``x_dim``: units; ``hidden``: MLP widths of ``x̃ → P(x | x̃)``; ``output``: one of
    :data:`OUTPUTS`; ``n_components``: ``K`` of a mixture output; ``corruption`` and
    ``level``: ``C(x̃ | x)``; ``nade_hidden``: the NADE output's hidden units."""

    x_dim: int
    hidden: tuple[int, ...] = (500,)
    output: str = "bernoulli"
    n_components: int = 1
    corruption: str = "salt_pepper"
    level: float = 0.5
    activation: str = "tanh"
    nade_hidden: int = 100

    def check(self) -> DAE:
        """Itself, or a :class:`ConfigError` naming the bad field."""
        if int(self.x_dim) < 1 or any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"x_dim and hidden widths must be >= 1, got {self.x_dim}, "
                              f"{tuple(self.hidden)}")  # fmt: skip
        if self.output not in OUTPUTS:
            raise ConfigError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"activation must be one of {tuple(_ACTIVATIONS)}, got "
                              f"{self.activation!r}")  # fmt: skip
        if int(self.n_components) < 1:
            raise ConfigError(f"n_components must be >= 1, got {self.n_components}")
        if int(self.nade_hidden) < 1:
            raise ConfigError(f"nade_hidden must be >= 1, got {self.nade_hidden}")
        binary_out, binary_noise = self.output != "gaussian_mixture", self.corruption != "gaussian"
        check_corruption_level(self.level, self.corruption)
        if binary_out != binary_noise:
            raise ConfigError(
                f"output {self.output!r} and corruption {self.corruption!r} do not fit: binary "
                f"outputs take flip/salt_pepper noise, the Gaussian mixture Gaussian noise"
            )
        return self


# --------------------------------------------------------------------------- corruption
def _flip_prob(model: DAE) -> float:
    return model.level / 2 if model.corruption == "salt_pepper" else model.level


def corrupt(key: PRNGKeyArray, model: DAE, x: Float[ArrayLike, "*b D"]) -> Float[Array, "*b D"]:
    """One draw ``x̃ ~ C(x̃ | x)`` (module docstring)."""
    x = jnp.asarray(x, jnp.float32)
    if model.corruption == "gaussian":
        return x + model.level * jax.random.normal(key, x.shape, jnp.float32)
    if model.corruption == "flip":
        return jnp.abs(x - jax.random.bernoulli(key, model.level, x.shape))
    k_mask, k_coin = jax.random.split(key)
    coin = jax.random.bernoulli(k_coin, 0.5, x.shape).astype(jnp.float32)
    return jnp.where(jax.random.bernoulli(k_mask, model.level, x.shape), coin, x)


def corruption_log_prob(
    model: DAE, x_tilde: Float[ArrayLike, "*b D"], x: Float[ArrayLike, "*b D"]
) -> Float[Array, "*b"]:
    """``log C(x̃ | x)``, summed over units: for binary noise a flip with probability ``q``
    (``level``, or ``level / 2`` for salt-and-pepper) per unit; for Gaussian noise the
    ``N(x, level²)`` density."""
    x_tilde, x = jnp.asarray(x_tilde, jnp.float32), jnp.asarray(x, jnp.float32)
    if model.corruption == "gaussian":
        z = (x_tilde - x) / model.level
        return jnp.sum(-0.5 * z**2 - math.log(model.level) - 0.5 * math.log(2 * math.pi), -1)
    q = _flip_prob(model)
    differ = jnp.abs(x_tilde - x)
    log_q = jnp.where(differ > 0, jnp.log(q) if q > 0 else -jnp.inf, 0.0)
    log_keep = jnp.where(differ > 0, 0.0, jnp.log1p(-q) if q < 1 else -jnp.inf)
    return jnp.sum(log_q + log_keep, -1)


# --------------------------------------------------------------------------- the network
def _head_size(model: DAE) -> int:
    K, D = model.n_components, model.x_dim
    return {"bernoulli": D, "bernoulli_mixture": K + K * D, "nade": D + model.nade_hidden,
            "gaussian_mixture": K + 2 * K * D}[model.output]  # fmt: skip


def init_params(
    key: PRNGKeyArray, model: DAE, x_mean: Float[ArrayLike, " D"] | None = None
) -> dict[str, Any]:
    """Parameters ``{"layers": [{"W", "b"}, ...], "head": {"W", "b"}}`` (and ``"nade": {"W",
    "V"}`` ``[D, nade_hidden]``, rows in the NADE's ordering, ``N(0, 0.01²)``, for the NADE
    output): weights ``N(0, 1/fan_in)`` (the head's times 0.1), zero biases; binary outputs
    start at the logit of ``x_mean`` (the mean training example) when given, mixture
    components apart by the head's random weights."""
    model.check()
    sizes = (model.x_dim, *model.hidden)
    keys = jax.random.split(key, len(sizes))
    layers = [
        {"W": jax.random.normal(k, (a, b), jnp.float32) / math.sqrt(a),
         "b": jnp.zeros((b,), jnp.float32)}
        for k, a, b in zip(keys[:-1], sizes[:-1], sizes[1:], strict=True)
    ]  # fmt: skip
    n_out = _head_size(model)
    W = 0.1 * jax.random.normal(keys[-1], (sizes[-1], n_out), jnp.float32) / math.sqrt(sizes[-1])
    b = jnp.zeros((n_out,), jnp.float32)
    if x_mean is not None and model.output != "gaussian_mixture":
        m = jnp.clip(jnp.asarray(x_mean, jnp.float32), 1e-3, 1 - 1e-3)
        logit = jnp.log(m) - jnp.log1p(-m)
        if model.output == "bernoulli":
            b = logit
        elif model.output == "nade":
            b = b.at[: model.x_dim].set(logit)
        else:
            b = b.at[model.n_components :].set(jnp.tile(logit, model.n_components))
    params = {"layers": layers, "head": {"W": W, "b": b}}
    if model.output == "nade":
        k_w, k_v = jax.random.split(jax.random.fold_in(key, 1))
        shape = (model.x_dim, model.nade_hidden)
        params["nade"] = {"W": 0.01 * jax.random.normal(k_w, shape, jnp.float32),
                          "V": 0.01 * jax.random.normal(k_v, shape, jnp.float32)}  # fmt: skip
    return params


def _forward(model: DAE, params: dict, x_tilde: Float[Array, "*b D"]):
    """The reconstruction distribution's parameters: logits ``(*b, D)`` (Bernoulli), or
    ``(log π (*b, K), logits (*b, K, D))``, or the NADE's biases ``(b (*b, D), c (*b, H))`` in
    pixel order, or ``(log π, means, log sds)``."""
    act = _ACTIVATIONS[model.activation]
    h = jnp.asarray(x_tilde, jnp.float32)
    for layer in params["layers"]:
        h = act(h @ layer["W"] + layer["b"])
    out = h @ params["head"]["W"] + params["head"]["b"]
    K, D, lead = model.n_components, model.x_dim, out.shape[:-1]
    if model.output == "bernoulli":
        return out
    if model.output == "nade":
        return out[..., :D], out[..., D:]
    log_pi = jax.nn.log_softmax(out[..., :K], -1)
    if model.output == "bernoulli_mixture":
        return log_pi, out[..., K:].reshape(*lead, K, D)
    mean = x_tilde[..., None, :] + out[..., K : K + K * D].reshape(*lead, K, D)
    log_sd = jnp.clip(out[..., K + K * D :].reshape(*lead, K, D), *_LOG_SD)
    return log_pi, mean, log_sd


def _bern(x, logits):
    return x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits)


def _nade_terms(params, b, c, x):
    """``log P(x_d | x_{later units}, x̃)`` per unit ``(*b, D)``, pixel order (the NADE runs in
    reverse unit order)."""
    lead, D = x.shape[:-1], x.shape[-1]
    rev = lambda t: t[..., ::-1].reshape(-1, D)  # pixel order -> the NADE's ordering
    c = c.reshape(-1, c.shape[-1])
    logits = nade.nade_logits(params["nade"]["W"], c, params["nade"]["V"], rev(b), rev(x))
    return _bern(rev(x), logits)[:, ::-1].reshape(*lead, D)


def _check_nade_mask(mask) -> None:
    """The NADE output's masked marginal is exact only for a final block of units."""
    try:
        m = np.asarray(mask, bool)
    except jax.errors.TracerArrayConversionError:
        raise ConfigError("the NADE output's masked log-likelihood needs a concrete mask "
                          "(close over it; do not pass it as a traced argument)") from None  # fmt: skip
    if np.any(m[..., :-1] & ~m[..., 1:]):
        raise ConfigError(
            "the NADE output gives an exact marginal only for a final block of units (e.g. "
            "an image's bottom rows): its ordering runs from the last unit to the first, so "
            "every masked unit must come after every unmasked one"
        )


def recon_log_prob(
    model: DAE,
    params: dict,
    x: Float[ArrayLike, "*b D"],
    x_tilde: Float[ArrayLike, "*b D"],
    mask: Bool[ArrayLike, "*b D"] | None = None,
) -> Float[Array, "*b"]:
    """``log P_θ(x | x̃)`` (the DAE's training criterion is its negative mean); with ``mask``
    the log-marginal of the masked units only (every factorial output is factorial given its
    mixture component, so the marginal drops the other units' factors; the NADE output's
    marginal of a final block of units is the product of that block's conditionals, and any
    other mask is refused)."""
    x = jnp.asarray(x, jnp.float32)
    w = 1.0 if mask is None else jnp.asarray(mask, jnp.float32)
    p = _forward(model, params, jnp.asarray(x_tilde, jnp.float32))
    if model.output == "bernoulli":
        return jnp.sum(w * _bern(x, p), -1)
    if model.output == "nade":
        if mask is not None:
            _check_nade_mask(mask)
        return jnp.sum(w * _nade_terms(params, *p, x), -1)
    wk = w if mask is None else w[..., None, :]
    if model.output == "bernoulli_mixture":
        log_pi, logits = p
        return jax.nn.logsumexp(log_pi + jnp.sum(wk * _bern(x[..., None, :], logits), -1), -1)
    log_pi, mean, log_sd = p
    z = (x[..., None, :] - mean) * jnp.exp(-log_sd)
    comp = jnp.sum(wk * (-0.5 * z**2 - log_sd - 0.5 * math.log(2 * math.pi)), -1)
    return jax.nn.logsumexp(log_pi + comp, -1)


def recon_mean(model: DAE, params: dict, x_tilde: Float[ArrayLike, "*b D"]) -> Float[Array, "*b D"]:
    """``E_θ[x | x̃]`` (pixel probabilities for binary outputs; shown in pictures).  The NADE
    output's has no closed form: :func:`sample_recon` gives an unbiased one-draw estimate."""
    if model.output == "nade":
        raise ConfigError("E[x | x̃] of the NADE output has no closed form: use sample_recon, "
                          "whose second output is an unbiased one-draw estimate of it")  # fmt: skip
    p = _forward(model, params, jnp.asarray(x_tilde, jnp.float32))
    if model.output == "bernoulli":
        return jax.nn.sigmoid(p)
    comp = jax.nn.sigmoid(p[1]) if model.output == "bernoulli_mixture" else p[1]
    return jnp.sum(jnp.exp(p[0])[..., None] * comp, -2)


def sample_recon(
    key: PRNGKeyArray, model: DAE, params: dict, x_tilde: Float[ArrayLike, "*b D"]
) -> tuple[Float[Array, "*b D"], Float[Array, "*b D"]]:
    """``(x, E[x | x̃])`` with ``x ~ P_θ(x | x̃)`` (for a mixture: a component ``k ~ π``,
    then ``x`` from component ``k``; for the NADE: ancestrally, and in place of ``E[x | x̃]``
    the conditionals ``P(x_d = 1 | x_{later}, x̃)`` met along the draw, an unbiased estimate
    of it)."""
    x_tilde = jnp.asarray(x_tilde, jnp.float32)
    p = _forward(model, params, x_tilde)
    k_comp, k_x = jax.random.split(key)
    if model.output == "bernoulli":
        mean = jax.nn.sigmoid(p)
        return jax.random.bernoulli(k_x, mean).astype(jnp.float32), mean
    if model.output == "nade":
        b, c = (t.reshape(-1, t.shape[-1]) for t in p)
        draw = lambda k, bb, cc: nade.conditional_sample(
            k, params["nade"]["W"], cc, params["nade"]["V"], bb[::-1], return_probs=True
        )
        keys = jax.random.split(k_x, b.shape[0])
        x, probs = jax.vmap(draw)(keys, b, c)
        return tuple(t[:, ::-1].reshape(x_tilde.shape) for t in (x, probs))
    log_pi = p[0]
    k = jax.random.categorical(k_comp, log_pi, -1)
    pick = lambda a: jnp.take_along_axis(a, k[..., None, None], -2)[..., 0, :]
    if model.output == "bernoulli_mixture":
        x = jax.random.bernoulli(k_x, jax.nn.sigmoid(pick(p[1]))).astype(jnp.float32)
        return x, jnp.sum(jnp.exp(log_pi)[..., None] * jax.nn.sigmoid(p[1]), -2)
    mean, sd = pick(p[1]), jnp.exp(pick(p[2]))
    x = mean + sd * jax.random.normal(k_x, mean.shape, jnp.float32)
    return x, jnp.sum(jnp.exp(log_pi)[..., None] * p[1], -2)


# --------------------------------------------------------------------------- the chain
class ChainOut(NamedTuple):
    """States kept by a chain: ``x`` the samples, ``mean`` the reconstruction means
    ``E[x | x̃]`` they were drawn from, each ``(n_kept, *batch, D)``."""

    x: Float[Array, "T *b D"]
    mean: Float[Array, "T *b D"]


def markov_chain(
    key: PRNGKeyArray,
    step: Callable[[PRNGKeyArray, Array], tuple[Array, Array]],
    x0: Float[ArrayLike, "*b D"],
    n_steps: int,
    *,
    clamp: Bool[ArrayLike, "*b D"] | None = None,
    keep_every: int = 1,
) -> ChainOut:
    """``n_steps`` steps of ``x ← step(key_t, x)`` (``step`` returns ``(x_new, mean)``) as a
    ``lax.scan``, keeping every ``keep_every``-th state.  Units where ``clamp`` is true are
    set back to their value in ``x0`` after every step (``jnp.where``: bit-exact)."""
    n_steps, keep_every = int(n_steps), int(keep_every)
    if n_steps < 1 or keep_every < 1 or n_steps % keep_every:
        raise ConfigError(
            f"n_steps ({n_steps}) must be >= 1 and a multiple of keep_every ({keep_every} >= 1)"
        )
    x0 = jnp.asarray(x0, jnp.float32)
    fix = (lambda x: x) if clamp is None else (lambda x: jnp.where(jnp.asarray(clamp), x0, x))

    def one(x, k):
        x_new, mean = step(k, x)
        return fix(x_new), fix(mean)

    def block(x, keys):
        x, mean = jax.lax.scan(lambda c, k: one(c, k), x, keys)
        return x, (x, mean[-1])

    keys = jax.random.split(key, n_steps).reshape(n_steps // keep_every, keep_every)
    _, (xs, means) = jax.lax.scan(block, fix(x0), keys)
    return ChainOut(xs, means)


def sample_chain(
    key: PRNGKeyArray,
    model: DAE,
    params: dict,
    x0: Float[ArrayLike, "*b D"],
    n_steps: int,
    *,
    clamp: Bool[ArrayLike, "*b D"] | None = None,
    keep_every: int = 1,
) -> ChainOut:
    """The DAE's Markov chain from ``x0`` (§20.11.1): corrupt ``x̃ ~ C(x̃ | x)``, then
    ``x ~ P_θ(x | x̃)``, ``n_steps`` times (:func:`markov_chain`; ``clamp``: units kept at
    their value in ``x0``, §20.11.2)."""

    def step(k, x):
        k_c, k_s = jax.random.split(k)
        return sample_recon(k_s, model, params, corrupt(k_c, model, x))

    return markov_chain(key, step, x0, n_steps, clamp=clamp, keep_every=keep_every)


# --------------------------------------------------------------------------- walk-back
def walkback_terms(
    key: PRNGKeyArray, model: DAE, params: dict, x: Float[ArrayLike, "*b D"], n_steps: int
) -> Float[Array, " K *b"]:
    r"""The ``K = n_steps`` walk-back reconstruction costs (§20.11.3, Bengio et al. 2013): from
    ``x*_0 = x``, for ``j = 0..n_steps-1``: ``x̃_j ~ C(x̃ | x*_j)``, cost
    ``-log P_θ(x | x̃_j)`` (always the *data* ``x``), then ``x*_{j+1} ~ P_θ(x | x̃_j)`` (a
    sample of the current model, no gradient through it).  Term ``j`` has the expectation
    ``Σ_x̃ [C (P C)^j](x, x̃) · (-log P_θ(x | x̃))``: the chain's own excursions, where spurious
    modes live, are pulled back to the data."""
    n_steps = int(n_steps)
    if n_steps < 1:
        raise ConfigError(f"walk-back needs n_steps >= 1 reconstruction steps, got {n_steps}")
    x = jnp.asarray(x, jnp.float32)

    def body(x_star, k):
        k_c, k_s = jax.random.split(k)
        xt = corrupt(k_c, model, x_star)
        cost = -recon_log_prob(model, params, x, xt)
        return jax.lax.stop_gradient(sample_recon(k_s, model, params, xt)[0]), cost

    return jax.lax.scan(body, x, jax.random.split(key, n_steps))[1]


def walkback_loss(
    key: PRNGKeyArray, model: DAE, params: dict, x: Float[ArrayLike, "B D"], n_walkback: int = 0
) -> tuple[Float[Array, ""], dict]:
    """The mean over the batch and over ``1 + n_walkback`` steps of :func:`walkback_terms`
    (``n_walkback = 0``: the ordinary DAE criterion ``-log P_θ(x | x̃)``), with metrics
    ``recon_nll`` (the first step's cost) and ``walkback_nll`` (the later steps')."""
    terms = walkback_terms(key, model, params, x, 1 + int(n_walkback))
    first = jnp.mean(terms[0])
    later = jnp.mean(terms[1:]) if terms.shape[0] > 1 else first
    return jnp.mean(terms), {"recon_nll": first, "walkback_nll": later}
