"""Bias and variance of gradient estimators through discrete samples (§20.9), measured
against the exact gradient of a tiny model.

The problem (:func:`categorical_decoder_problem`): ``G`` categorical latents of ``K`` classes
(one-hot ``y``, ``K^G`` states), a fixed Bernoulli "decoder" of one binary ``x``,

    J(y) = log p(x | y) = Σ_d x_d log σ(a_d) + (1 - x_d) log σ(-a_d),   a = W vec(y) + c,

and ``y ~ q(y; φ) = Π_g Categorical(softmax(φ_g))``; the target ``∇_φ E_q[J(y)]`` is exact,
by enumerating all ``K^G`` states.  :func:`gradient_estimators` builds one estimator per
REINFORCE baseline of :func:`egm.estimators.gradients.reinforce` (the adaptive ones warmed
up at ``φ``), Gumbel-Softmax at each temperature and the two straight-through estimators;
:func:`bias_variance_rows` runs each ``repeats`` times and reports the squared bias
``‖mean - exact‖²`` (beside ``tr Var / repeats``, what noise alone gives an unbiased
estimator), the total variance ``tr Var`` of one estimate and the MSE.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.estimators import gradients as G

__all__ = [
    "CategoricalProblem",
    "bias_variance_rows",
    "categorical_decoder_problem",
    "gradient_estimators",
]


class CategoricalProblem(NamedTuple):
    """``J(y)``, ``log q(y; φ)`` as ``log_prob(φ, y)``, ``sample(key, φ) -> one-hot y``, the
    parameters ``φ`` ``(G, K)`` and ``expected_J(φ) = E_q[J]`` by enumeration."""

    J: Callable[[Array], Array]
    log_prob: Callable[[Array, Array], Array]
    sample: Callable[[PRNGKeyArray, Array], Array]
    phi: Float[Array, "G K"]
    expected_J: Callable[[Array], Array]


def categorical_decoder_problem(
    key: PRNGKeyArray,
    n_groups: int = 3,
    n_classes: int = 4,
    n_visible: int = 10,
    weight_scale: float = 2.0,
    logit_scale: float = 1.0,
) -> CategoricalProblem:
    """The problem of the module docstring: ``W = weight_scale · N(0, 1) / √G``, ``c`` and
    ``φ / logit_scale`` standard normal, ``x`` fair coin flips; at most ``2^16`` states."""
    if min(n_groups, n_classes, n_visible) < 1 or n_classes**n_groups > 2**16:
        raise ConfigError(
            f"need sizes >= 1 and n_classes^n_groups = {n_classes**n_groups} states <= 65536 "
            f"(too many to enumerate the exact gradient otherwise)"
        )
    kW, kc, kx, kphi = jax.random.split(key, 4)
    W = weight_scale * jax.random.normal(kW, (n_visible, n_groups * n_classes)) / np.sqrt(n_groups)
    c = jax.random.normal(kc, (n_visible,))
    x = jax.random.bernoulli(kx, 0.5, (n_visible,)).astype(jnp.float32)
    phi = logit_scale * jax.random.normal(kphi, (n_groups, n_classes))

    def J(y):  # y: (G, K) one-hot or relaxed
        a = W @ y.reshape(-1) + c
        return jnp.sum(x * jax.nn.log_sigmoid(a) + (1 - x) * jax.nn.log_sigmoid(-a))

    log_prob = lambda p, y: jnp.sum(y * jax.nn.log_softmax(p, -1))
    sample = lambda k, p: jax.nn.one_hot(jax.random.categorical(k, p, axis=-1), n_classes)
    states = jnp.asarray([np.eye(n_classes)[list(s)]
                          for s in itertools.product(range(n_classes), repeat=n_groups)],
                         jnp.float32)  # fmt: skip

    def expected_J(p):
        return jnp.sum(jnp.exp(jax.vmap(log_prob, (None, 0))(p, states)) * jax.vmap(J)(states))

    return CategoricalProblem(J, log_prob, sample, phi, expected_J)


def gradient_estimators(
    problem: CategoricalProblem,
    n_samples: int,
    taus: Sequence[float],
    warmup: int,
    warmup_keys: tuple[PRNGKeyArray, PRNGKeyArray],
) -> dict[str, Callable[[PRNGKeyArray], Array]]:
    """``name -> (key -> one gradient estimate (G, K))`` from ``n_samples`` draws each:
    ``reinforce/<baseline>`` for every baseline of :data:`egm.estimators.gradients.BASELINES`
    (``constant``: the oracle ``E_q[J]`` at ``φ``; ``moving_average`` and ``learned``: their
    states after ``warmup`` steps at ``φ``, with ``warmup_keys``), ``gumbel_softmax/tau=<τ>``,
    ``straight_through_gumbel/tau=1`` and ``straight_through`` (pathwise: the gradient of
    ``J`` at the relaxed samples)."""
    J, log_prob, sample, phi, expected_J = problem
    n, obj, out = n_samples, (lambda p, y: J(y)), {}
    for b in G.BASELINES:
        kw: dict = {}
        if b == "constant":
            kw["baseline_state"] = expected_J(phi)
        elif b in ("moving_average", "learned"):
            kw = {"baseline_fn": lambda w: w} if b == "learned" else {}

            def warm(s, k, b=b, kw=kw):
                r = G.reinforce(k, phi, sample, log_prob, obj, n, baseline=b, baseline_state=s,
                                **kw)  # fmt: skip
                return (
                    r.baseline_state if b == "moving_average" else s - 0.1 * r.baseline_grad
                ), None

            s0 = G.init_baseline_state(b, 0.0) if b == "moving_average" else jnp.zeros(())
            key = warmup_keys[0 if b == "moving_average" else 1]
            kw["baseline_state"], _ = jax.lax.scan(warm, s0, jax.random.split(key, warmup))
        out[f"reinforce/{b}"] = lambda k, b=b, kw=kw: (
            G.reinforce(k, phi, sample, log_prob, obj, n, baseline=b, **kw).grad
        )
    relax = {f"gumbel_softmax/tau={t:g}": (lambda k, p, t=t: G.gumbel_softmax(k, p, t))
             for t in taus}  # fmt: skip
    relax["straight_through_gumbel/tau=1"] = lambda k, p: G.gumbel_softmax(k, p, 1.0, hard=True)
    relax["straight_through"] = lambda k, p: G.straight_through(jax.nn.softmax(p, -1), sample(k, p))
    for name, r in relax.items():
        mean_J = lambda p, k, r=r: jnp.mean(
            jax.vmap(lambda kk: J(r(kk, p)))(jax.random.split(k, n))
        )
        out[name] = lambda k, f=mean_J: jax.grad(f)(phi, k)
    return out


def bias_variance_rows(
    estimators: dict[str, Callable[[PRNGKeyArray], Array]],
    exact: Float[Array, "G K"],
    keys: PRNGKeyArray,
) -> list[dict]:
    """One row per estimator from ``len(keys)`` independent estimates (a jitted vmap each):
    ``bias_sq = ‖mean - exact‖²``, ``bias_sq_expected_from_noise = tr Var / R`` (its
    expectation for an unbiased estimator), ``max_bias_z`` (largest ``|mean - exact| /
    (sd/√R)`` over coordinates) and ``unbiased_at_z5``, ``total_variance = tr Var``,
    ``mse = bias_sq - noise + tr Var`` (debiased), ``variance_reduction_vs_none`` (against
    ``reinforce/none`` when present) and ``seconds``."""
    exact = np.asarray(exact, np.float64).ravel()
    R, rows = keys.shape[0], []
    if R < 2:
        raise ConfigError(f"need at least 2 repeats to estimate a variance, got {R}")
    for name, fn in estimators.items():
        t = time.perf_counter()
        g = np.asarray(jax.jit(jax.vmap(fn))(keys), np.float64).reshape(R, -1)
        mean, var = g.mean(0), g.var(0, ddof=1)
        bias2, noise, tr_var = (
            float(np.sum((mean - exact) ** 2)),
            float(np.sum(var) / R),
            float(np.sum(var)),
        )
        z = np.abs(mean - exact) / np.sqrt(var / R + 1e-30)
        rows.append({"estimator": name, "bias_sq": bias2, "bias_sq_expected_from_noise": noise,
                     "max_bias_z": float(z.max()), "unbiased_at_z5": bool(z.max() < 5.0),
                     "total_variance": tr_var, "mse": bias2 - noise + tr_var,
                     "seconds": time.perf_counter() - t})  # fmt: skip
    none = next((r["total_variance"] for r in rows if r["estimator"] == "reinforce/none"), None)
    for r in rows:
        if none is not None:
            r["variance_reduction_vs_none"] = none / r["total_variance"]
    return rows
