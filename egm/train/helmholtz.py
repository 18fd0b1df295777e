"""Training objectives for sigmoid belief nets with an inference network (§20.10.1, §19.5).

Each estimator is a pure function of ``(key, nets, params, x)`` returning *loss-sign*
gradient pytrees (estimates of ``-∇`` of the quantity each net ascends), so any optax
optimiser applies directly, as everywhere in egm.  ``nets = (model, q)`` are the
:class:`~egm.models.sbn.SigmoidBeliefNet` and :class:`~egm.models.sbn.SBNInferenceNet`.

* :func:`wake_sleep` (Dayan et al. 1995; Hinton et al. 1995).  Wake: ``h ~ q(h|x)``, the
  model ascends ``log p(x, h)``.  Sleep: ``(x̃, h̃) ~ p``, the recogniser ascends
  ``log q(h̃ | x̃)``.  The sleep phase fits ``q`` to the *model's* posterior in the
  wrong KL direction, and no single objective is optimised.
* :func:`reweighted_wake_sleep` (Bornschein & Bengio 2015).  ``K`` proposals
  ``h_k ~ q(h|x)`` with normalised importance weights ``w̃_k ∝ p(x, h_k)/q(h_k|x)``;
  the model ascends ``Σ_k w̃_k log p(x, h_k)`` — an estimate of ``∇ log p(x)``, biased
  O(1/K) — and ``q`` ascends ``Σ_k w̃_k log q(h_k|x)`` (wake update: an estimate of
  ``-∇ KL(p(h|x) ‖ q)``), optionally plus the sleep update.
* :func:`nvil` (Mnih & Gregor 2014).  One ``h ~ q(h|x)``; learning signal
  ``l = log p(x, h) - log q(h|x)``; the model ascends ``log p(x, h)`` (exact gradient of
  the ELBO w.r.t. θ for this sample); ``q`` follows the REINFORCE estimate
  ``(l - C_ψ(x) - c) / max(1, σ) ∇ log q(h|x)`` with an input-dependent baseline
  ``C_ψ`` (an MLP trained to regress ``l``), a running mean ``c`` of ``l - C_ψ(x)`` and
  variance normalisation by its running standard deviation ``σ`` (both exponential
  averages, α = 0.8 as in the paper).  Not implemented: the paper's per-layer *local*
  learning signals (it reports them as a further small gain for deep nets).

:func:`helmholtz_objective` makes any of them an objective of :func:`egm.train.make_step`
(``aux`` = NVIL's running statistics).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.models.sbn import SBNInferenceNet, SigmoidBeliefNet
from egm.train.state import ObjectiveOut, TrainState, init_state

Nets = tuple[SigmoidBeliefNet, SBNInferenceNet]
ESTIMATORS = ("wake_sleep", "rws", "nvil")
Q_UPDATES = ("wake", "sleep", "both")


class HelmholtzGrads(NamedTuple):
    """Loss-sign gradients for the generative model and the inference net, the NVIL
    baseline net (zeros/None otherwise), the updated NVIL statistics, and metrics."""

    model: Any
    inference: Any
    baseline: Any
    stats: Any
    metrics: dict


def _sample_q(q, pq, key, x):
    hs, log_q = q.apply(pq, key, x, method=SBNInferenceNet.sample)
    return jax.lax.stop_gradient(hs), log_q


def _sleep_grad(key, nets: Nets, pp, pq, n: int):
    """``-∇_φ mean log q(h̃ | x̃)`` over ``n`` ancestral samples ``(x̃, h̃) ~ p``."""
    model, q = nets
    x_s, h_s = model.apply(pp, key, (n,), method=SigmoidBeliefNet.sample)
    x_s, h_s = jax.lax.stop_gradient((x_s, h_s))
    return jax.grad(lambda p: -jnp.mean(q.apply(p, x_s, h_s)))(pq)


def wake_sleep(
    key: PRNGKeyArray, nets: Nets, pp: Any, pq: Any, x: Float[Array, "B D"]
) -> HelmholtzGrads:
    """Wake-sleep gradients (module docstring); ``metrics['elbo']`` is the mean one-sample
    ``log p(x,h) - log q(h|x)`` of the wake samples (an ELBO estimate)."""
    model, q = nets
    k_wake, k_sleep = jax.random.split(key)
    hs, log_q = _sample_q(q, pq, k_wake, x)
    log_p, gp = jax.value_and_grad(lambda p: jnp.mean(model.apply(p, x, hs)))(pp)
    gp = jax.tree_util.tree_map(jnp.negative, gp)
    gq = _sleep_grad(k_sleep, nets, pp, pq, x.shape[0])
    elbo = log_p - jnp.mean(jax.lax.stop_gradient(log_q))
    return HelmholtzGrads(gp, gq, None, None, {"elbo": elbo})


def reweighted_wake_sleep(
    key: PRNGKeyArray,
    nets: Nets,
    pp: Any,
    pq: Any,
    x: Float[Array, "B D"],
    n_samples: int = 5,
    q_update: str = "wake",
) -> HelmholtzGrads:
    """RWS gradients with ``K = n_samples`` proposals per example (module docstring).
    ``q_update``: ``"wake"`` (the paper's best single choice), ``"sleep"`` or ``"both"``
    (sum of the two updates).  Metrics: ``bound`` = mean ``log (1/K) Σ_k w_k`` (the
    K-sample importance bound on log p(x)), ``elbo``, ``ess`` = mean ``1/Σ w̃²``."""
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ConfigError(f"n_samples (K) must be an integer >= 1, got {n_samples!r}")
    if q_update not in Q_UPDATES:
        raise ConfigError(f"q_update must be one of {Q_UPDATES}, got {q_update!r}")
    model, q = nets
    k_wake, k_sleep = jax.random.split(key)
    B = x.shape[0]
    xs = jnp.broadcast_to(x, (n_samples, *x.shape))
    hs, log_q = _sample_q(q, pq, k_wake, xs)  # each (K, B, ·)
    log_p = model.apply(pp, xs, hs)
    log_w = jax.lax.stop_gradient(log_p - log_q)
    w = jax.nn.softmax(log_w, axis=0)  # normalised over the K proposals of each example
    gp = jax.grad(lambda p: -jnp.sum(w * model.apply(p, xs, hs)) / B)(pp)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, pq)
    gq_wake = (
        jax.grad(lambda p: -jnp.sum(w * q.apply(p, xs, hs)) / B)(pq)
        if q_update != "sleep"
        else zeros
    )
    gq_sleep = _sleep_grad(k_sleep, nets, pp, pq, B) if q_update != "wake" else zeros
    gq = jax.tree_util.tree_map(jnp.add, gq_wake, gq_sleep)
    lme = jax.nn.logsumexp(log_w, axis=0) - jnp.log(n_samples)
    metrics = {
        "bound": jnp.mean(lme),
        "elbo": jnp.mean(log_w),
        "ess": jnp.mean(1.0 / jnp.sum(w**2, axis=0)),
    }
    return HelmholtzGrads(gp, gq, None, None, metrics)


class NVILBaseline(nn.Module):
    """Input-dependent baseline ``C_ψ(x)``: an MLP with tanh hidden layers (the paper uses
    one layer of 100 units), scalar output per example."""

    hidden: Sequence[int] = (100,)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = x
        for n in self.hidden:
            h = jnp.tanh(nn.Dense(n)(h))
        return nn.Dense(1)(h)[..., 0]


class NVILStats(NamedTuple):
    """Running mean ``c`` and variance ``v`` of ``l - C_ψ(x)`` (exponential averages)."""

    mean: Float[Array, ""]
    var: Float[Array, ""]


def init_nvil_stats() -> NVILStats:
    return NVILStats(jnp.zeros(()), jnp.ones(()))


def nvil(
    key: PRNGKeyArray,
    nets: Nets,
    pp: Any,
    pq: Any,
    x: Float[Array, "B D"],
    baseline_net: NVILBaseline,
    pb: Any,
    stats: NVILStats,
    alpha: float = 0.8,
    normalize_variance: bool = True,
    input_dependent: bool = True,
) -> HelmholtzGrads:
    """NVIL gradients (module docstring).  The statistics are updated *before* centring the
    current batch, as in the paper: ``c ← α c + (1-α) mean(l - C)``,
    ``v ← α v + (1-α) var(l - C)``; the signal is ``(l - C(x) - c) / max(1, sqrt(v))``.
    ``input_dependent=False`` drops ``C_ψ`` (constant baseline + normalisation only).
    Returns the regression-loss gradient for ``ψ`` (``mean (l - c - C_ψ(x))²``) in
    ``.baseline``."""
    if not 0.0 <= alpha < 1.0:
        raise ConfigError(f"alpha must be in [0, 1), got {alpha}")
    model, q = nets
    hs, log_q_const = _sample_q(q, pq, key, x)
    log_p, gp = jax.value_and_grad(lambda p: jnp.mean(model.apply(p, x, hs)))(pp)
    gp = jax.tree_util.tree_map(jnp.negative, gp)
    log_p_ex = jax.lax.stop_gradient(model.apply(pp, x, hs))
    l = log_p_ex - jax.lax.stop_gradient(log_q_const)
    C = baseline_net.apply(pb, x) if input_dependent else jnp.zeros_like(l)
    resid = l - jax.lax.stop_gradient(C)
    new_mean = alpha * stats.mean + (1 - alpha) * jnp.mean(resid)
    new_var = alpha * stats.var + (1 - alpha) * jnp.var(resid)
    centred = resid - new_mean
    signal = centred / jnp.maximum(1.0, jnp.sqrt(new_var)) if normalize_variance else centred
    gq = jax.grad(lambda p: -jnp.mean(signal * q.apply(p, x, hs)))(pq)
    if input_dependent:
        gb = jax.grad(lambda p: jnp.mean((l - new_mean - baseline_net.apply(p, x)) ** 2))(pb)
    else:
        gb = jax.tree_util.tree_map(jnp.zeros_like, pb)
    metrics = {
        "elbo": jnp.mean(l),
        "signal_sd": jnp.std(centred),
        "baseline_mse": jnp.mean(centred**2),
    }
    return HelmholtzGrads(gp, gq, gb, NVILStats(new_mean, new_var), metrics)


# ----------------------------------------------------------------------------------------
# Train step
# ----------------------------------------------------------------------------------------


class HelmholtzConfig(NamedTuple):
    """Static choices of :func:`helmholtz_objective`.  ``estimator``: ``wake_sleep``, ``rws``
    or ``nvil``; ``n_samples``: K for RWS; ``q_update``: RWS's ``q`` update;
    ``baseline_hidden``: NVIL's ``C_ψ`` hidden sizes (``()`` = no input-dependent
    baseline); ``alpha``: NVIL's averaging; ``normalize_variance``: NVIL's variance
    normalisation; ``binarization``: ``"none"`` or ``"dynamic"`` (re-draw each batch)."""

    estimator: str = "nvil"
    n_samples: int = 5
    q_update: str = "wake"
    baseline_hidden: tuple[int, ...] = (100,)
    alpha: float = 0.8
    normalize_variance: bool = True
    binarization: str = "none"

    def validate(self) -> HelmholtzConfig:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.q_update not in Q_UPDATES:
            raise ConfigError(f"q_update must be one of {Q_UPDATES}, got {self.q_update!r}")
        if self.n_samples < 1:
            raise ConfigError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.binarization not in ("none", "dynamic"):
            raise ConfigError(
                f"binarization inside the step must be 'none' or 'dynamic', got {self.binarization!r}"
            )
        return self


def init_helmholtz_state(
    key: PRNGKeyArray,
    pp: Any,
    pq: Any,
    optimizer: optax.GradientTransformation,
    config: HelmholtzConfig,
    n_visible: int,
) -> TrainState:
    """Initial state; for NVIL with an input-dependent baseline, ``C_ψ`` is initialised here."""
    config = config.validate()
    pb: Any = {}
    if config.estimator == "nvil" and config.baseline_hidden:
        pb = NVILBaseline(tuple(config.baseline_hidden)).init(key, jnp.zeros((n_visible,)))
    params = jax.tree_util.tree_map(jnp.array, {"model": pp, "inference": pq, "baseline": pb})
    return init_state(params, optimizer, (), init_nvil_stats())


def helmholtz_objective(nets: Nets, config: HelmholtzConfig | None = None):
    """The objective of one estimator (wake-sleep, RWS or NVIL) for :func:`egm.train.make_step`:
    gradients for both nets (and NVIL's baseline) in the params dict ``{"model", "inference",
    "baseline"}``; ``aux`` carries NVIL's running statistics."""
    config = (config or HelmholtzConfig()).validate()
    baseline_net = NVILBaseline(tuple(config.baseline_hidden))
    input_dependent = bool(config.baseline_hidden)

    def objective(p: dict, batch: Array, key: PRNGKeyArray, chains, stats: NVILStats):
        k_bin, k_est = jax.random.split(key)
        x = batch
        if config.binarization == "dynamic":
            x = jax.random.bernoulli(k_bin, batch).astype(jnp.float32)
        if config.estimator == "wake_sleep":
            g = wake_sleep(k_est, nets, p["model"], p["inference"], x)
        elif config.estimator == "rws":
            g = reweighted_wake_sleep(
                k_est, nets, p["model"], p["inference"], x, config.n_samples, config.q_update
            )
        else:
            g = nvil(
                k_est, nets, p["model"], p["inference"], x, baseline_net, p["baseline"],
                stats, config.alpha, config.normalize_variance, input_dependent,
            )  # fmt: skip
        gb = (
            g.baseline
            if g.baseline is not None
            else jax.tree_util.tree_map(jnp.zeros_like, p["baseline"])
        )
        grads = {"model": g.model, "inference": g.inference, "baseline": gb}
        stats = g.stats if g.stats is not None else stats
        return ObjectiveOut(grads, chains, stats, g.metrics)

    return objective
