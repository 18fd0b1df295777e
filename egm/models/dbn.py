r"""Deep belief networks (§20.3, Hinton, Osindero & Teh 2006).

A DBN with hidden layers ``h¹ … h^L`` is a tuple of ``L`` :class:`RBMParams`: ``dbn[l]``
(``l < L-1``) couples ``h^l`` (``h⁰ = v``) and ``h^{l+1}``, and the top RBM ``dbn[-1]``
couples ``h^{L-1}`` and ``h^L``.  The top two layers form an undirected RBM; every lower
layer is a directed sigmoid belief layer (eq. 20.28–20.29 of the book)

.. math:: P(h^{l}_i = 1 \mid h^{l+1}) = σ(b^{(l)}_i + W^{(l)}_{i,:} h^{l+1}),

which uses the visible biases ``b`` of the RBM trained at that level by greedy stacking
(:func:`egm.train.greedy.pretrain_stack`).  The recognition (up-pass) distribution uses its
hidden biases: ``Q(h^{l+1}_j = 1 \mid h^l) = σ(c^{(l)}_j + h^{l\top} W^{(l)}_{:,j})``.

Variational lower bound (eq. 20.30 / Salakhutdinov & Murray 2008, §5): for a 2-hidden-layer
DBN with ``Q(h¹|v)`` the bottom RBM's posterior,

.. math:: \log p(v) \ge \mathbb{E}_{Q(h^1|v)}[\log P(v \mid h^1) + \log p_{top}(h^1)]
          + \mathcal{H}(Q(h^1 \mid v)),

``log p_top(h¹) = -F_top(h¹) - log Z_top``; deeper DBNs apply the same bound recursively
with ``log p_top`` replaced by the bound of the sub-DBN above.  The expectation is a
Monte-Carlo average over ``S`` up-pass samples ``h¹ ~ Q(·|v), h² ~ Q(·|h¹), …`` (the
entropies are exact per layer), and ``log Z_top`` comes from AIS
(:func:`egm.estimators.ais.rbm_ais`), so the reported bound is STOCHASTIC: its Monte-Carlo
standard error over the samples of Q is given, and forward AIS under-estimates ``log Z``
in expectation, which makes the reported number optimistic by the AIS error.

This module composes RBM energies with the RBM AIS estimator, so (unlike the Flax
modules beside it) it imports :mod:`egm.estimators`.  The ``*_exact`` functions enumerate
every layer and are the ground truth of the tests (tiny DBNs only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.distributions import bernoulli_log_prob
from egm.energies import rbm
from egm.energies.rbm import RBMParams
from egm.errors import ConfigError
from egm.estimators import ais, exact
from egm.samplers.gibbs import block_gibbs, run

DBN = tuple[RBMParams, ...]

_TOP_GIBBS = block_gibbs(rbm.BLOCKS)


def check(dbn: Sequence[RBMParams]) -> DBN:
    """Validate layer shapes (layer ``l``'s hidden size = layer ``l+1``'s visible size)."""
    dbn = tuple(dbn)
    if not dbn:
        raise ConfigError("a DBN needs at least one RBM (its top layer)")
    for i, p in enumerate(dbn):
        if not isinstance(p, RBMParams):
            raise ConfigError(f"DBN layer {i} must be RBMParams, got {type(p).__name__}")
        rbm.check_shapes(p)
    for i in range(len(dbn) - 1):
        if dbn[i].W.shape[1] != dbn[i + 1].W.shape[0]:
            raise ConfigError(
                f"DBN layer {i} has {dbn[i].W.shape[1]} hidden units but layer {i + 1} has "
                f"{dbn[i + 1].W.shape[0]} visible units; they must be the same layer"
            )
    return dbn


def _bernoulli_entropy(logits: Float[Array, " n"]) -> Float[Array, ""]:
    """Entropy of independent Bernoulli(σ(a)) units: ``Σ softplus(a) - σ(a)·a`` (nats)."""
    return jnp.sum(jax.nn.softplus(logits) - jax.nn.sigmoid(logits) * logits)


def recognition_logits(params: RBMParams, x: Float[Array, " V"]) -> Float[Array, " H"]:
    """Up-pass logits ``c + xᵀW`` of ``Q(h | x)`` for one directed layer."""
    return rbm.hidden_preactivation(params, x)


def generative_logits(params: RBMParams, h: Float[Array, " H"]) -> Float[Array, " V"]:
    """Down-pass logits ``b + W h`` of ``P(x | h)`` for one directed layer."""
    return rbm.visible_preactivation(params, h)


def up_pass(dbn: Sequence[RBMParams], v: Float[Array, " V"]) -> tuple[Float[Array, " H"], ...]:
    """Mean-field up-pass: ``μ¹ = σ(c¹ + vᵀW¹)``, ``μ^{l+1} = σ(c^{l+1} + μ^{lᵀ}W^{l+1})``
    for every hidden layer including the top RBM's (the features a fine-tuned MLP starts from)."""
    out, x = [], v
    for p in dbn:
        x = rbm.hidden_probs(p, x)
        out.append(x)
    return tuple(out)


class DBNSamples(NamedTuple):
    """Samples of a DBN: the visible draws ``v`` and their means ``P(v = 1 | h¹)`` (for images),
    plus the top RBM's visible layer ``h^{L-1}`` after the Gibbs chain."""

    v: Float[Array, "n V"]
    v_probs: Float[Array, "n V"]
    top_visible: Float[Array, "n T"]


def sample(key: PRNGKeyArray, dbn: Sequence[RBMParams], n: int, n_gibbs: int) -> DBNSamples:
    """Draw ``n`` samples: ``n_gibbs`` block Gibbs sweeps (``h^L|h^{L-1}``, ``h^{L-1}|h^L``)
    in the top RBM from ``h^{L-1} ~ Bernoulli(σ(b_top))``, then one ancestral pass down the
    directed layers, ``h^{l} ~ P(h^{l} | h^{l+1})``.

    The law of the result approaches ``p(v)`` as ``n_gibbs`` grows; since the down-pass is a
    Markov kernel, its TV distance to ``p(v)`` is at most that of the top chain to ``p_top``.
    """
    dbn = check(dbn)
    if n < 1 or n_gibbs < 0:
        raise ConfigError(f"sample needs n >= 1 and n_gibbs >= 0, got n={n}, n_gibbs={n_gibbs}")
    return _sample(key, dbn, n, n_gibbs)


@jax.jit(static_argnums=(2, 3))
def _sample(key, dbn, n, n_gibbs):
    top = dbn[-1]
    k0, k_run, k_down = jax.random.split(key, 3)
    x0 = rbm.bernoulli_logits(k0, jnp.broadcast_to(top.b, (n, top.b.shape[0])))
    states = jax.vmap(rbm.init_state, in_axes=(None, 0))(top, x0)
    if n_gibbs > 0:
        states, _ = run(_TOP_GIBBS, k_run, states, top, n_gibbs)
    x = states.v
    probs = rbm.visible_probs(top, states.h) if len(dbn) == 1 else None
    for i, p in enumerate(reversed(dbn[:-1])):
        logits = x @ p.W.T + p.b
        probs = jax.nn.sigmoid(logits)
        x = rbm.bernoulli_logits(jax.random.fold_in(k_down, i), logits)
    return DBNSamples(v=x, v_probs=probs, top_visible=states.v)


def _bound_sample(dbn: DBN, v: Float[Array, " V"], key: PRNGKeyArray) -> Float[Array, ""]:
    """One-sample estimate of the recursive bound without ``-log Z_top``:
    ``Σ_l [H(Q(h^{l+1}|h^l)) + log P(h^l | h^{l+1})] - F_top(h^{L-1})`` with ``h ~ Q``."""
    total, x = jnp.zeros(()), v
    for i, p in enumerate(dbn[:-1]):
        a = recognition_logits(p, x)
        h = rbm.bernoulli_logits(jax.random.fold_in(key, i), a)
        total = total + _bernoulli_entropy(a) + bernoulli_log_prob(generative_logits(p, h), x)
        x = h
    return total - rbm.free_energy(dbn[-1], x)


@jax.jit(static_argnums=3)
def _bound_samples(key, dbn, v, n_samples):
    n = v.shape[0]
    keys = jax.random.split(key, n * n_samples).reshape(n, n_samples)
    return jax.vmap(jax.vmap(_bound_sample, (None, None, 0)), (None, 0, 0))(dbn, v, keys)


class LowerBound(NamedTuple):
    """Mean variational lower bound on ``log p(v)`` over a dataset (nats).

    ``bound``: ``mean_n [mean_s (sample terms) - log Z_top]``; ``se_q``: Monte-Carlo standard
    error of that mean over the samples of Q, ``sqrt(Σ_n var_n / S) / N``; ``per_example``:
    the per-example estimates (N,); ``n_samples``: S.
    """

    bound: float
    se_q: float
    per_example: Float[Array, " N"]
    n_samples: int


def lower_bound(
    key: PRNGKeyArray,
    dbn: Sequence[RBMParams],
    v: Float[Array, "N V"],
    log_z_top: float | Float[Array, ""],
    *,
    n_samples: int = 10,
    chunk: int = 1000,
) -> LowerBound:
    """The variational lower bound on ``mean log p(v)`` with a given ``log Z_top``
    (exact, or from AIS: see :func:`ais_lower_bound`), from ``n_samples`` up-pass samples of
    Q per example.  For a one-layer "DBN" (an RBM) it is the exact ``-F(v) - log Z``."""
    dbn = check(dbn)
    v = jnp.asarray(v, jnp.float32)
    if v.ndim != 2 or v.shape[1] != dbn[0].W.shape[0]:
        raise ConfigError(f"v must be (N, {dbn[0].W.shape[0]}) for this DBN, got {tuple(v.shape)}")
    if n_samples < 2:
        raise ConfigError(f"n_samples must be >= 2 for a standard error, got {n_samples}")
    parts = []
    for i in range(0, v.shape[0], chunk):
        parts.append(_bound_samples(jax.random.fold_in(key, i), dbn, v[i : i + chunk], n_samples))
    s = np.asarray(jnp.concatenate(parts), np.float64)  # (N, S)
    per_example = s.mean(axis=1) - float(log_z_top)
    var = s.var(axis=1, ddof=1)
    se = float(np.sqrt(var.sum() / n_samples) / s.shape[0])
    return LowerBound(float(per_example.mean()), se, jnp.asarray(per_example), n_samples)


class DBNBound(NamedTuple):
    """:func:`ais_lower_bound`'s result: the bound, its standard errors and the AIS run.

    ``se`` combines the Q-sampling error and the AIS ``log Z_top`` error in quadrature;
    the AIS part is common to every example.  ``per_example``: the per-example bounds (N,).
    :func:`egm.eval.dbn_log_likelihood_bound` turns it into a
    :class:`egm.eval.LogLikelihood` record."""

    bound: float
    se: float
    se_q: float
    log_z_top: float
    log_z_top_se: float
    ais_ess: float
    n_samples: int
    n_chains: int
    n_temps: int
    per_example: Float[Array, " N"]


def ais_lower_bound(
    key: PRNGKeyArray,
    dbn: Sequence[RBMParams],
    v: Float[Array, "N V"],
    base_b: Float[Array, " T"],
    *,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    n_samples: int = 10,
) -> DBNBound:
    """Salakhutdinov & Murray's (2008) estimate of the DBN lower bound: forward AIS for the
    top RBM's ``log Z`` (base-rate model ``base_b`` over the top RBM's visible layer, e.g.
    :func:`egm.estimators.ais.base_rate_biases` of the propagated training data) and
    ``n_samples`` samples of Q per example.  Stochastic; see the module docstring."""
    dbn = check(dbn)
    betas = ais.betas_salakhutdinov_murray() if betas is None else np.asarray(betas)
    k_ais, k_q = jax.random.split(key)
    res = ais.rbm_ais(k_ais, dbn[-1], base_b, n_chains=n_chains, betas=betas)
    lb = lower_bound(k_q, dbn, v, res.log_z, n_samples=n_samples)
    se_z = float(res.log_z_se)
    return DBNBound(
        bound=lb.bound,
        se=float(np.hypot(lb.se_q, se_z)),
        se_q=lb.se_q,
        log_z_top=float(res.log_z),
        log_z_top_se=se_z,
        ais_ess=float(res.ess),
        n_samples=n_samples,
        n_chains=n_chains,
        n_temps=int(len(betas) - 1),
        per_example=lb.per_example,
    )


# --------------------------------------------------------------------------- exact (tiny DBNs)


def _layer_log_cond(logits: Float[Array, "S n"], states: Float[Array, "T n"]) -> Array:
    """``[s, t] -> log Π_i Bernoulli(states[t, i]; σ(logits[s, i]))``."""
    return jax.nn.log_sigmoid(logits) @ states.T + jax.nn.log_sigmoid(-logits) @ (1.0 - states).T


def _log_marginal_all(dbn: DBN) -> Float[Array, " 2**V"]:
    """``log p(x)`` for every state of the bottom layer, by enumeration of every layer."""
    top = dbn[-1]
    lp = -jax.vmap(rbm.free_energy, (None, 0))(top, exact.all_binary_states(top.W.shape[0]))
    lp = lp - exact.rbm_log_partition(top)
    for p in reversed(dbn[:-1]):
        hs = exact.all_binary_states(p.W.shape[1])  # the layer above (where lp lives)
        xs = exact.all_binary_states(p.W.shape[0])
        logits = jax.vmap(generative_logits, (None, 0))(p, hs)  # [h, i]
        lp = jax.nn.logsumexp(_layer_log_cond(logits, xs) + lp[:, None], axis=0)  # [x]
    return lp


def log_likelihood_exact(dbn: Sequence[RBMParams], v: Float[Array, "N V"]) -> Float[Array, " N"]:
    """Exact ``log p(v)`` of a tiny DBN (every layer enumerated)."""
    dbn = check(dbn)
    return _log_marginal_all(dbn)[exact.state_index(jnp.asarray(v))]


def visible_distribution_exact(dbn: Sequence[RBMParams]) -> Float[Array, " 2**V"]:
    """Exact ``p(v)`` over all visible states (index = bits, most significant first)."""
    return jnp.exp(_log_marginal_all(check(dbn)))


def lower_bound_exact(dbn: Sequence[RBMParams], v: Float[Array, "N V"]) -> Float[Array, " N"]:
    """The recursive variational bound of the module docstring with every expectation over
    Q computed by enumeration and the exact ``log Z_top``: what :func:`lower_bound` estimates."""
    dbn = check(dbn)
    v = jnp.asarray(v, jnp.float32)
    if len(dbn) == 1:
        return exact.rbm_log_likelihood(dbn[0], v)
    p = dbn[0]
    hs = exact.all_binary_states(p.W.shape[1])
    upper = lower_bound_exact(dbn[1:], hs)  # bound of the sub-DBN at every h¹
    a = jax.vmap(recognition_logits, (None, 0))(p, v)  # [n, j]
    log_q = _layer_log_cond(a, hs)  # [n, h]
    log_pv = _layer_log_cond(jax.vmap(generative_logits, (None, 0))(p, hs), v).T  # [n, h]
    q = jnp.exp(log_q)
    entropy = jax.vmap(_bernoulli_entropy)(a)
    return jnp.sum(q * (log_pv + upper[None, :]), axis=1) + entropy
