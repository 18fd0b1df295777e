"""Back-propagation through random operations (§20.9): model-agnostic gradient estimators.

We want ``∇_ω E_{y ~ p(y; ω)}[J(y, ω)]``.

* **Reparameterisation** (§20.9): write ``y = f(ε; ω)`` with ``ε`` from a fixed
  distribution, so ``∇_ω E[J] = E_ε[∇_ω J(f(ε; ω))]`` — back-propagation straight through
  the sample.  :func:`reparam_gaussian` is the location-scale case
  ``y = μ + σ ⊙ ε``, ``ε ~ N(0, I)``; :func:`reparam_gradient` takes any user
  ``f(ε, ω)``.
* **REINFORCE / score function** (§20.9.1) for discrete ``y``, where no such ``f`` is
  differentiable:  ``∇_ω E[J] = E[(J(y) - b) ∇_ω log p(y; ω) + ∇_ω J(y, ω)]`` for any
  baseline ``b`` that does not depend on ``y``.  :func:`reinforce` implements the
  baselines of §20.9.1 and the papers it cites: none, a constant, a moving average of
  ``J``, a learned input-dependent ``b(x)`` (NVIL, Mnih & Gregor 2014) trained by
  regressing ``J``, the book's optimal per-coordinate baseline
  ``b*_i = E[J (∂log p/∂ω_i)²] / E[(∂log p/∂ω_i)²]`` (estimated leave-one-out from the
  other samples, so the estimator stays exactly unbiased), and the leave-one-out mean of
  the other samples' ``J`` (the multi-sample baseline of VIMCO, Mnih & Rezende 2016,
  for a plain expectation).  :func:`vimco_surrogate` is VIMCO proper, for the
  multi-sample bound ``log (1/K) Σ_k w_k``.
* **Relaxations**: Gumbel-Softmax / Concrete (Jang et al. 2017; Maddison et al. 2017)
  with its straight-through "hard" variant and temperature schedule, the relaxed
  Bernoulli, and the straight-through Bernoulli estimator (Bengio et al. 2013).  These
  are biased but low-variance.

Gradients here are of the *objective* ``E[J]`` as written (ascent direction when ``J``
is a reward or a log-likelihood bound); negate them for an optax loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.distributions import log_mean_exp
from egm.errors import ConfigError

BASELINES = ("none", "constant", "moving_average", "learned", "optimal", "leave_one_out")

_tmap = jax.tree_util.tree_map


# ----------------------------------------------------------------------------------------
# Reparameterisation (§20.9)
# ----------------------------------------------------------------------------------------


def reparam_gaussian(
    key: PRNGKeyArray,
    mean: Float[Array, "*shape"],
    log_std: Float[Array, "*shape"],
    n_samples: int | None = None,
    *,
    normal: Callable[..., Array] = jax.random.normal,
) -> Float[Array, "*n *shape"]:
    """``y = μ + exp(log σ) ⊙ ε``, ``ε ~ N(0, I)``: a draw of ``N(μ, diag σ²)`` that is a
    differentiable function of ``(μ, log σ)`` (§20.9).  With ``n_samples`` a leading axis
    of that many independent draws is added.  ``normal(key, shape, dtype)`` draws ``ε``
    (e.g. :func:`egm.random_bits.fast_normal`: the same numbers, faster on CPU)."""
    mean, log_std = jnp.broadcast_arrays(jnp.asarray(mean), jnp.asarray(log_std))
    shape = mean.shape if n_samples is None else (n_samples, *mean.shape)
    eps = normal(key, shape, mean.dtype)
    return mean + jnp.exp(log_std) * eps


def reparam_gradient(
    key: PRNGKeyArray,
    objective_fn: Callable[[Any, Array], Float[Array, ""]],
    transform_fn: Callable[[Array, Any], Array],
    params: Any,
    noise_fn: Callable[[PRNGKeyArray], Array],
    n_samples: int,
    *,
    return_per_sample: bool = False,
) -> tuple[Any, Float[Array, ""], Any | None]:
    """Reparameterised (pathwise) gradient of ``E_ε[J(f(ε; ω), ω)]`` (§20.9).

    ``noise_fn(key) -> ε`` draws one ``ε`` from the fixed distribution,
    ``transform_fn(ε, ω) -> y`` is the user's ``f``, ``objective_fn(ω, y) -> J``.
    Returns ``(grad, mean J, per-sample grads or None)``; ``grad`` is the average over
    ``n_samples`` draws of ``∇_ω J(f(ε_s; ω), ω)``, a pytree shaped like ``params``.
    """
    _check_n(n_samples, 1)
    eps = jax.vmap(noise_fn)(jax.random.split(key, n_samples))

    def j_one(p, e):
        return objective_fn(p, transform_fn(e, p))

    if return_per_sample:
        vals, per = jax.vmap(jax.value_and_grad(j_one), in_axes=(None, 0))(params, eps)
        return _tmap(lambda g: jnp.mean(g, 0), per), jnp.mean(vals), per
    val, grad = jax.value_and_grad(lambda p: jnp.mean(jax.vmap(j_one, (None, 0))(p, eps)))(params)
    return grad, val, None


# ----------------------------------------------------------------------------------------
# REINFORCE / score function (§20.9.1)
# ----------------------------------------------------------------------------------------


class ReinforceResult(NamedTuple):
    """Output of :func:`reinforce`.

    ``grad``: estimate of ``∇_ω E[J]``, shaped like ``params``;
    ``objective``: mean of ``J`` over the samples;
    ``learning_signal``: ``(n,)`` the centred signals ``J_s - b_s`` multiplying the score
    (for the per-coordinate "optimal" baseline, whose ``b`` differs per coordinate,
    ``J_s - mean_t J_t``, for monitoring only);
    ``per_sample``: if requested, a pytree with a leading ``(n,)`` axis whose mean over
    that axis is ``grad`` (for the leave-one-out baselines the terms are not independent;
    measure variance over repeated calls instead);
    ``baseline_state``: the updated state (moving average: the new average;
    learned: unchanged parameters; others: passed through);
    ``baseline_grad``: for "learned", ``∇_φ mean_s ½(J_s - b_φ)²`` (a loss gradient for
    the baseline's own optimiser); otherwise ``None``.
    """

    grad: Any
    objective: Float[Array, ""]
    learning_signal: Float[Array, " n"]
    per_sample: Any | None
    baseline_state: Any
    baseline_grad: Any | None


def init_baseline_state(baseline: str, value: float = 0.0, baseline_params: Any = None) -> Any:
    """Initial state for :func:`reinforce`: the constant (``"constant"``), the starting
    average (``"moving_average"``), the baseline parameters (``"learned"``), else ``None``."""
    _check_baseline(baseline)
    if baseline in ("constant", "moving_average"):
        return jnp.asarray(value, jnp.float32)
    if baseline == "learned":
        if baseline_params is None:
            raise ConfigError("baseline='learned' needs baseline_params (the baseline's pytree)")
        return baseline_params
    return None


def reinforce(
    key: PRNGKeyArray,
    params: Any,
    sample_fn: Callable[[PRNGKeyArray, Any], Any],
    log_prob_fn: Callable[[Any, Any], Float[Array, ""]],
    objective_fn: Callable[[Any, Any], Float[Array, ""]],
    n_samples: int,
    *,
    baseline: str = "none",
    baseline_state: Any = None,
    baseline_fn: Callable[[Any], Float[Array, ""]] | None = None,
    decay: float = 0.9,
    return_per_sample: bool = False,
) -> ReinforceResult:
    """Score-function (REINFORCE) estimate of ``∇_ω E_{y~p(y;ω)}[J(y, ω)]`` (§20.9.1).

    ``sample_fn(key, ω) -> y`` draws one (discrete) sample, treated as a constant;
    ``log_prob_fn(ω, y) -> log p(y; ω)``; ``objective_fn(ω, y) -> J`` (its direct
    dependence on ``ω``, if any, is differentiated pathwise).  With ``n`` samples,

        ĝ = (1/n) Σ_s [(J_s - b_s) ∇_ω log p(y_s; ω) + ∇_ω J(y_s, ω)].

    Baselines ``b_s`` (none of them depends on ``y_s``, so ``ĝ`` is unbiased):

    * ``"none"``: ``b = 0``;
    * ``"constant"``: ``b = baseline_state``;
    * ``"moving_average"``: ``b = baseline_state``, then the state becomes
      ``decay · state + (1 - decay) · mean_s J_s``;
    * ``"learned"``: ``b = baseline_fn(baseline_state)`` — an input-dependent ``b(x)``
      when ``baseline_fn`` closes over the input (NVIL); ``baseline_grad`` is the gradient
      of the regression loss ``mean ½(J - b)²`` for training it;
    * ``"optimal"``: per coordinate ``b*_i = Σ_{t≠s} J_t g_{t,i}² / Σ_{t≠s} g_{t,i}²`` with
      ``g = ∇_ω log p`` — the book's variance-minimising baseline estimated from the other
      samples (needs ``n ≥ 2``; per-sample scores are materialised, ``n × |ω|`` memory);
    * ``"leave_one_out"``: ``b_s = mean_{t≠s} J_t`` (needs ``n ≥ 2``).
    """
    _check_baseline(baseline)
    _check_n(n_samples, 2 if baseline in ("optimal", "leave_one_out") else 1)
    if baseline in ("constant", "moving_average") and baseline_state is None:
        raise ConfigError(
            f"baseline={baseline!r} needs baseline_state (init_baseline_state({baseline!r}, value))"
        )
    if baseline == "learned" and (baseline_fn is None or baseline_state is None):
        raise ConfigError(
            "baseline='learned' needs baseline_fn(baseline_params) -> b and baseline_state = "
            "the baseline parameters"
        )
    if not 0.0 <= decay < 1.0:
        raise ConfigError(f"decay must be in [0, 1), got {decay}")

    ys = jax.vmap(lambda k: sample_fn(k, params))(jax.random.split(key, n_samples))
    return reinforce_from_samples(
        params,
        ys,
        log_prob_fn,
        objective_fn,
        baseline=baseline,
        baseline_state=baseline_state,
        baseline_fn=baseline_fn,
        decay=decay,
        return_per_sample=return_per_sample,
    )


def reinforce_from_samples(
    params: Any,
    ys: Any,
    log_prob_fn: Callable[[Any, Any], Float[Array, ""]],
    objective_fn: Callable[[Any, Any], Float[Array, ""]],
    *,
    baseline: str = "none",
    baseline_state: Any = None,
    baseline_fn: Callable[[Any], Float[Array, ""]] | None = None,
    decay: float = 0.9,
    return_per_sample: bool = False,
) -> ReinforceResult:
    """:func:`reinforce` on given samples ``ys`` (a pytree with a leading ``(n,)`` axis,
    drawn from ``p(y; ω)``): the estimator as a deterministic function of its samples,
    e.g. to enumerate all sample tuples of a tiny model and get its exact variance."""
    n_samples = jax.tree_util.tree_leaves(ys)[0].shape[0]
    _check_baseline(baseline)
    _check_n(n_samples, 2 if baseline in ("optimal", "leave_one_out") else 1)
    if baseline in ("constant", "moving_average") and baseline_state is None:
        raise ConfigError(
            f"baseline={baseline!r} needs baseline_state (init_baseline_state({baseline!r}, value))"
        )
    if baseline == "learned" and (baseline_fn is None or baseline_state is None):
        raise ConfigError(
            "baseline='learned' needs baseline_fn(baseline_params) -> b and baseline_state = "
            "the baseline parameters"
        )
    ys = jax.lax.stop_gradient(ys)
    J = jax.vmap(lambda y: objective_fn(params, y))(ys)
    J_const = jax.lax.stop_gradient(J)
    new_state, baseline_grad = baseline_state, None

    if baseline == "optimal":
        scores = jax.vmap(jax.grad(log_prob_fn), in_axes=(None, 0))(params, ys)
        path = jax.vmap(jax.grad(objective_fn), in_axes=(None, 0))(params, ys)

        def per_leaf(g, pg):
            jg = J_const.reshape((-1,) + (1,) * (g.ndim - 1))
            g2 = g * g
            num = jnp.sum(jg * g2, 0) - jg * g2
            den = jnp.sum(g2, 0) - g2
            b = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)
            return (jg - b) * g + pg

        per = _tmap(per_leaf, scores, path)
        grad = _tmap(lambda t: jnp.mean(t, 0), per)
        return ReinforceResult(
            grad, jnp.mean(J_const), J_const - jnp.mean(J_const), per if return_per_sample else None,
            new_state, None,
        )  # fmt: skip

    if baseline == "none":
        b = jnp.zeros_like(J_const)
    elif baseline == "constant":
        b = jnp.broadcast_to(baseline_state, J_const.shape)
    elif baseline == "moving_average":
        b = jnp.broadcast_to(baseline_state, J_const.shape)
        new_state = decay * baseline_state + (1.0 - decay) * jnp.mean(J_const)
    elif baseline == "learned":

        def reg_loss(phi):
            return 0.5 * jnp.mean((J_const - baseline_fn(phi)) ** 2)

        baseline_grad = jax.grad(reg_loss)(baseline_state)
        b = jnp.broadcast_to(jax.lax.stop_gradient(baseline_fn(baseline_state)), J_const.shape)
    else:  # leave_one_out
        b = (jnp.sum(J_const) - J_const) / (n_samples - 1)
    signal = J_const - b

    def surrogate_one(p, y, c):
        return c * log_prob_fn(p, y) + objective_fn(p, y)

    if return_per_sample:
        per = jax.vmap(jax.grad(surrogate_one), in_axes=(None, 0, 0))(params, ys, signal)
        grad = _tmap(lambda t: jnp.mean(t, 0), per)
    else:
        per = None
        grad = jax.grad(lambda p: jnp.mean(jax.vmap(surrogate_one, (None, 0, 0))(p, ys, signal)))(
            params
        )
    return ReinforceResult(grad, jnp.mean(J_const), signal, per, new_state, baseline_grad)


def score_function_surrogate(
    log_prob: Float[Array, "*n"], learning_signal: Float[Array, "*n"]
) -> Float[Array, ""]:
    """``mean(stop_gradient(signal) · log p)``: a scalar whose gradient is the REINFORCE term
    ``mean (J - b) ∇ log p`` (its *value* is meaningless).  For estimators inside a larger
    loss (NVIL, :mod:`egm.train.helmholtz`)."""
    return jnp.mean(jax.lax.stop_gradient(learning_signal) * log_prob)


def vimco_learning_signals(log_w: Float[Array, "*batch K"]) -> Float[Array, "*batch K"]:
    """VIMCO's per-sample learning signals (Mnih & Rezende 2016, eq. 9):

        L̂ = log (1/K) Σ_j w_j,   L̂_{-k} = log (1/K) (Σ_{j≠k} w_j + ŵ_{-k}),
        signal_k = L̂ - L̂_{-k},   log ŵ_{-k} = mean_{j≠k} log w_j,

    i.e. sample ``k`` is replaced by the geometric mean of the others.  ``K ≥ 2``."""
    log_w = jax.lax.stop_gradient(jnp.asarray(log_w))
    K = log_w.shape[-1]
    if K < 2:
        raise ConfigError(f"VIMCO needs K >= 2 samples per example, got {K}")
    L = log_mean_exp(log_w)
    mean_others = (jnp.sum(log_w, -1, keepdims=True) - log_w) / (K - 1)
    # log Σ_{j≠k} w_j + w_{-k}: replace entry k by mean_others[k] in row k
    eye = jnp.eye(K, dtype=bool)
    replaced = jnp.where(eye, mean_others[..., :, None], log_w[..., None, :])  # [..., k, j]
    L_minus = jax.nn.logsumexp(replaced, axis=-1) - math.log(K)
    return L[..., None] - L_minus


def vimco_surrogate(
    log_w: Float[Array, "*batch K"], log_q: Float[Array, "*batch K"]
) -> Float[Array, "*batch"]:
    """A surrogate whose value is the multi-sample bound ``L̂ = log (1/K) Σ_k w_k`` and whose
    gradient is the VIMCO estimator (Mnih & Rezende 2016, eq. 10):
    ``Σ_k signal_k ∇ log q(h_k|x) + Σ_k w̃_k ∇ log w_k`` with ``w̃`` the normalised weights.
    ``log_w = log p(x, h_k) - log q(h_k | x)`` must be differentiable in both nets' params,
    with the discrete ``h_k`` drawn outside the gradient."""
    signals = vimco_learning_signals(log_w)
    score = jnp.sum(signals * (log_q - jax.lax.stop_gradient(log_q)), -1)
    return log_mean_exp(log_w) + score


# ----------------------------------------------------------------------------------------
# Relaxations and straight-through estimators
# ----------------------------------------------------------------------------------------


@jax.custom_jvp
def straight_through(soft: Array, hard: Array) -> Array:
    """Value ``hard`` exactly, derivative that of ``soft`` (``hard`` gets none): the
    straight-through trick.  The usual ``hard + soft - stop_gradient(soft)`` is off by a
    rounding error in the forward pass (1 + 0.3 - 0.3 ≠ 1 in float32)."""
    return hard


@straight_through.defjvp
def _straight_through_jvp(primals, tangents):
    soft, hard = primals
    return hard, tangents[0]


def gumbel_softmax(
    key: PRNGKeyArray,
    logits: Float[Array, "*batch K"],
    tau: float | Float[Array, ""],
    hard: bool = False,
    axis: int = -1,
) -> Float[Array, "*batch K"]:
    """Gumbel-Softmax / Concrete sample ``softmax((logits + g) / τ)``, ``g_i ~ Gumbel(0, 1)``
    (Jang et al. 2017; Maddison et al. 2017).  As ``τ → 0`` it becomes the one-hot
    ``argmax(logits + g)`` (an exact draw of ``Categorical(softmax(logits))``); as
    ``τ → ∞`` it tends to the uniform vector ``1/K``.  ``hard=True`` is the
    straight-through variant: the forward value is exactly that one-hot vector, the
    gradient is the soft sample's."""
    _check_tau(tau)
    logits = jnp.asarray(logits)
    g = jax.random.gumbel(key, logits.shape, logits.dtype)
    y = jax.nn.softmax((logits + g) / tau, axis=axis)
    if not hard:
        return y
    idx = jnp.argmax(logits + g, axis=axis)  # = argmax y, without rounding ties at small tau
    one_hot = jax.nn.one_hot(idx, logits.shape[axis], axis=axis, dtype=y.dtype)
    return straight_through(y, one_hot)


def concrete_log_density(
    y: Float[Array, "*batch K"], logits: Float[Array, "*batch K"], tau: float | Array
) -> Float[Array, "*batch"]:
    """Log density of the Concrete distribution on the simplex (Maddison et al. 2017, eq. 1)
    w.r.t. Lebesgue measure on the first ``K - 1`` coordinates:
    ``(K-1)! τ^{K-1} Π_k [π_k y_k^{-τ-1} / Σ_i π_i y_i^{-τ}]``."""
    K = y.shape[-1]
    log_pi = jax.nn.log_softmax(logits, -1)
    log_y = jnp.log(y)
    return (
        math.lgamma(K)
        + (K - 1) * jnp.log(tau)
        + jnp.sum(log_pi - (tau + 1) * log_y, -1)
        - K * jax.nn.logsumexp(log_pi - tau * log_y, -1)
    )


def temperature_schedule(
    step: int | Array,
    tau0: float = 1.0,
    rate: float = 1e-4,
    tau_min: float = 0.5,
    every: int = 1,
) -> Float[Array, ""]:
    """Annealing of Jang et al. (2017): ``τ = max(τ_min, τ0 exp(-r t))`` with ``t`` the step
    rounded down to a multiple of ``every`` (they update every 500 steps, r ∈ {1e-5, 1e-4})."""
    if tau_min <= 0 or tau0 <= 0 or rate < 0 or every < 1:
        raise ConfigError(
            f"need tau0 > 0, tau_min > 0, rate >= 0, every >= 1; got tau0={tau0}, "
            f"tau_min={tau_min}, rate={rate}, every={every}"
        )
    t = (jnp.asarray(step) // every) * every
    return jnp.maximum(tau_min, tau0 * jnp.exp(-rate * t))


def relaxed_bernoulli(
    key: PRNGKeyArray, logits: Float[Array, "*shape"], tau: float | Array, hard: bool = False
) -> Float[Array, "*shape"]:
    """Binary Concrete sample ``σ((logits + L) / τ)``, ``L ~ Logistic(0, 1)`` (the two-class
    Gumbel-Softmax); ``hard=True`` gives the straight-through ``1[logits + L > 0]`` forward."""
    _check_tau(tau)
    logits = jnp.asarray(logits)
    noise = jax.random.logistic(key, logits.shape, logits.dtype)
    y = jax.nn.sigmoid((logits + noise) / tau)
    if not hard:
        return y
    z = (logits + noise > 0).astype(y.dtype)
    return straight_through(y, z)


def straight_through_bernoulli(
    key: PRNGKeyArray, logits: Float[Array, "*shape"]
) -> Float[Array, "*shape"]:
    """``z ~ Bernoulli(σ(logits))`` in the forward pass, gradient of ``σ(logits)`` in the
    backward pass (the straight-through estimator, Bengio et al. 2013)."""
    p = jax.nn.sigmoid(jnp.asarray(logits))
    z = jax.random.bernoulli(key, p).astype(p.dtype)
    return straight_through(p, z)


# ----------------------------------------------------------------------------------------


def _check_tau(tau) -> None:
    """Reject a non-positive temperature when it is a concrete value (traced ones pass)."""
    if isinstance(tau, jax.core.Tracer):
        return
    if not np.all(np.asarray(tau) > 0):
        raise ConfigError(f"temperature tau must be > 0, got {tau}")


def _check_baseline(baseline: str) -> None:
    if baseline not in BASELINES:
        raise ConfigError(f"baseline must be one of {BASELINES}, got {baseline!r}")


def _check_n(n: int, low: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < low:
        raise ConfigError(f"n_samples must be an integer >= {low} here, got {n!r}")
