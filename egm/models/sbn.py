"""Sigmoid belief networks (§20.10.1) and their factorial inference networks, as Flax Linen
modules used as pure ``(apply_fn, params)`` pairs.

An SBN with layers ``x = h⁽⁰⁾, h⁽¹⁾, …, h⁽ᴸ⁾`` (all binary) is the directed model

    p(h⁽ᴸ⁾) = Π_j σ(b⁽ᴸ⁾_j)^{h_j} (1 - σ(b⁽ᴸ⁾_j))^{1-h_j},
    p(h⁽ˡ⁻¹⁾ | h⁽ˡ⁾) = Π_i Bernoulli(h⁽ˡ⁻¹⁾_i; σ(W⁽ˡ⁾ h⁽ˡ⁾ + b⁽ˡ⁻¹⁾)_i),

sampled ancestrally from the top; ``log p(x, h)`` is a sum of Bernoulli log-probabilities,
cheap to evaluate, but ``log p(x)`` sums over every ``h`` (exact only for tiny models:
:func:`exact_log_likelihood`).  Inference uses a *recognition* network
``q(h | x) = Π_l q(h⁽ˡ⁾ | h⁽ˡ⁻¹⁾)`` of factorial sigmoid layers running bottom-up, as in
the Helmholtz machine (Dayan et al. 1995), reweighted wake-sleep (Bornschein & Bengio
2015) and NVIL (Mnih & Gregor 2014); :func:`is_log_likelihood` uses it as the proposal
of the importance-sampling estimate of §20.10.3 (:mod:`egm.estimators.importance`).

Layer sizes are ``sizes = (D, H1, …, HL)``, visible first.  Hidden states are tuples
``hs = (h⁽¹⁾, …, h⁽ᴸ⁾)``.  All methods accept any leading batch axes (the Dense layers
broadcast); log-probabilities sum over the last axis only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.tree_util import Partial
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.distributions import bernoulli_log_prob
from egm.errors import ConfigError, DataError
from egm.estimators.exact import all_binary_states
from egm.estimators.importance import importance_log_likelihood

Hiddens = tuple[Array, ...]


def _check_sizes(sizes: Sequence[int]) -> None:
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ConfigError(
            f"sizes must be (n_visible, n_hidden_1, ..., n_hidden_L) with L >= 1 and every "
            f"size >= 1, got {tuple(sizes)}"
        )


class SigmoidBeliefNet(nn.Module):
    """Generative SBN ``p(x, h)`` (§20.10.1); ``sizes = (D, H1, …, HL)``.

    Parameters: ``top_bias`` (logits of ``p(h⁽ᴸ⁾)``) and ``layers_{l-1}`` = Dense
    ``h⁽ˡ⁾ → logits of h⁽ˡ⁻¹⁾`` for ``l = 1..L`` (``layers_0`` produces the visible logits).
    """

    sizes: Sequence[int]

    def setup(self):
        _check_sizes(self.sizes)
        self.top_bias = self.param("top_bias", nn.initializers.zeros, (self.sizes[-1],))
        self.layers = [nn.Dense(self.sizes[l]) for l in range(len(self.sizes) - 1)]

    def __call__(self, x: Array, hs: Hiddens) -> Array:
        return self.log_joint(x, hs)

    def layer_log_probs(self, x: Array, hs: Hiddens) -> tuple[Array, ...]:
        """``(log p(x | h⁽¹⁾), log p(h⁽¹⁾ | h⁽²⁾), …, log p(h⁽ᴸ⁾))``, each summed over units."""
        self._check_hs(hs)
        below = (x, *hs[:-1])
        terms = [bernoulli_log_prob(self.layers[l](hs[l]), below[l]) for l in range(len(hs))]
        top = jnp.broadcast_to(self.top_bias, hs[-1].shape)
        return (*terms, bernoulli_log_prob(top, hs[-1]))

    def log_joint(self, x: Array, hs: Hiddens) -> Array:
        """``log p(x, h) = log p(h⁽ᴸ⁾) + Σ_l log p(h⁽ˡ⁻¹⁾ | h⁽ˡ⁾)``."""
        return sum(self.layer_log_probs(x, hs))

    def visible_logits(self, h1: Array) -> Array:
        """Logits of ``p(x | h⁽¹⁾)``."""
        return self.layers[0](h1)

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...] = ()) -> tuple[Array, Hiddens]:
        """Ancestral sample ``(x, hs)`` with leading axes ``shape``, top layer first."""
        keys = jax.random.split(key, len(self.sizes))
        top = jnp.broadcast_to(self.top_bias, (*shape, self.sizes[-1]))
        h = jax.random.bernoulli(keys[-1], jax.nn.sigmoid(top)).astype(jnp.float32)
        hs = [h]
        for l in range(len(self.sizes) - 2, -1, -1):
            h = jax.random.bernoulli(keys[l], jax.nn.sigmoid(self.layers[l](h))).astype(h.dtype)
            hs.append(h)
        x = hs.pop()
        return x, tuple(reversed(hs))

    def _check_hs(self, hs: Hiddens) -> None:
        if len(hs) != len(self.sizes) - 1:
            raise ConfigError(
                f"this SBN has {len(self.sizes) - 1} hidden layers; got {len(hs)} hidden states"
            )


class SBNInferenceNet(nn.Module):
    """Recognition network ``q(h | x) = Π_l q(h⁽ˡ⁾ | h⁽ˡ⁻¹⁾)`` of factorial sigmoid layers,
    bottom-up (``h⁽⁰⁾ = x``); ``sizes`` as the generative net's.  ``layers_{l-1}`` is the
    Dense ``h⁽ˡ⁻¹⁾ → logits of h⁽ˡ⁾``."""

    sizes: Sequence[int]

    def setup(self):
        _check_sizes(self.sizes)
        self.layers = [nn.Dense(self.sizes[l + 1]) for l in range(len(self.sizes) - 1)]

    def __call__(self, x: Array, hs: Hiddens) -> Array:
        return self.log_prob(x, hs)

    def layer_log_probs(self, x: Array, hs: Hiddens) -> tuple[Array, ...]:
        """``(log q(h⁽¹⁾ | x), …, log q(h⁽ᴸ⁾ | h⁽ᴸ⁻¹⁾))``."""
        below = (x, *hs[:-1])
        return tuple(bernoulli_log_prob(self.layers[l](below[l]), hs[l]) for l in range(len(hs)))

    def log_prob(self, x: Array, hs: Hiddens) -> Array:
        return sum(self.layer_log_probs(x, hs))

    def sample(self, key: PRNGKeyArray, x: Array) -> tuple[Hiddens, Array]:
        """``(hs, log q(hs | x))`` with ``hs ~ q(· | x)`` (batch axes of ``x`` kept)."""
        keys = jax.random.split(key, len(self.sizes) - 1)
        h, hs, log_q = x, [], 0.0
        for l in range(len(self.sizes) - 1):
            logits = self.layers[l](h)
            h = jax.random.bernoulli(keys[l], jax.nn.sigmoid(logits)).astype(jnp.float32)
            log_q = log_q + bernoulli_log_prob(logits, h)
            hs.append(h)
        return tuple(hs), log_q


def init(
    key: PRNGKeyArray, sizes: Sequence[int], data_mean: Float[ArrayLike, " D"] | None = None
) -> tuple[SigmoidBeliefNet, SBNInferenceNet, dict, dict]:
    """``(model, inference_net, model_params, inference_params)``.  With ``data_mean`` the
    visible biases start at ``logit(mean)`` (clipped to [1e-3, 1 - 1e-3]), the usual
    initialisation that makes the first updates learn structure rather than pixel means."""
    sizes = tuple(int(s) for s in sizes)
    _check_sizes(sizes)
    model, q = SigmoidBeliefNet(sizes), SBNInferenceNet(sizes)
    k_p, k_q = jax.random.split(key)
    x0 = jnp.zeros((sizes[0],))
    hs0 = tuple(jnp.zeros((s,)) for s in sizes[1:])
    pp = model.init(k_p, x0, hs0)
    pq = q.init(k_q, x0, hs0)
    if data_mean is not None:
        m = jnp.clip(jnp.asarray(data_mean, jnp.float32), 1e-3, 1 - 1e-3)
        if m.shape != (sizes[0],):
            raise ConfigError(f"data_mean must have shape ({sizes[0]},), got {m.shape}")
        pp = jax.tree_util.tree_map(lambda a: a, pp)
        pp["params"]["layers_0"]["bias"] = jnp.log(m) - jnp.log1p(-m)
    return model, q, pp, pq


def sample_visible(
    key: PRNGKeyArray, model: SigmoidBeliefNet, params: dict, n: int
) -> Float[Array, "n D"]:
    """``n`` exact samples of ``p(x)`` by ancestral sampling (§20.10.1): ``h⁽ᴸ⁾`` from its
    factorial prior, then each layer below given the one above; the hidden states are
    dropped (:meth:`SigmoidBeliefNet.sample` keeps them)."""
    return model.apply(params, key, (int(n),), method=SigmoidBeliefNet.sample)[0]


def log_weights(
    params: tuple[SigmoidBeliefNet, SBNInferenceNet, dict, dict],
    key: PRNGKeyArray,
    x: Float[Array, " D"],
    n: int,
) -> Float[Array, " n"]:
    """``log p(x, h_i) - log q(h_i | x)`` for ``n`` proposals ``h_i ~ q(· | x)`` (one ``x``).
    ``params = (model, q, model_params, q_params)``; modules are static pytree-free objects
    so pass this through ``Partial(log_weights, params)``."""
    model, q, pp, pq = params
    xs = jnp.broadcast_to(x, (n, x.shape[-1]))
    hs, log_q = q.apply(pq, key, xs, method=SBNInferenceNet.sample)
    return model.apply(pp, xs, hs) - log_q


class _Nets(tuple):
    """``(model, q, pp, pq)`` as a pytree whose modules are static (auxiliary data)."""


jax.tree_util.register_pytree_node(
    _Nets,
    lambda t: ((t[2], t[3]), (t[0], t[1])),
    lambda aux, ch: _Nets((aux[0], aux[1], ch[0], ch[1])),
)


def is_log_likelihood(
    key: PRNGKeyArray,
    model: SigmoidBeliefNet,
    q: SBNInferenceNet,
    model_params: dict,
    q_params: dict,
    x: Float[ArrayLike, "N D"],
    n_samples: int,
    *,
    chunk_size: int = 500,
    batch_size: int = 100,
) -> Any:
    """Importance-sampled ``log p(x)`` with ``n_samples`` proposals from ``q`` per example
    (§20.10.3); see :func:`egm.estimators.importance.importance_log_likelihood`."""
    x = _check_x(x, model.sizes[0])
    fn = Partial(log_weights, _Nets((model, q, model_params, q_params)))
    return importance_log_likelihood(
        key, fn, x, n_samples, chunk_size=chunk_size, batch_size=batch_size
    )


def exact_log_likelihood(
    model: SigmoidBeliefNet, params: dict, x: Float[ArrayLike, "N D"], chunk: int = 4096
) -> Float[Array, " N"]:
    """Exact ``log p(x) = log Σ_h p(x, h)`` by enumerating every hidden configuration
    (at most 20 hidden units in all; differentiable)."""
    x = _check_x(x, model.sizes[0])
    sizes = tuple(model.sizes[1:])
    states = all_binary_states(sum(sizes))
    splits = [sum(sizes[:i]) for i in range(1, len(sizes))]

    def joint(s):  # log p(x_n, h) for all n, one h
        hs = tuple(jnp.broadcast_to(h, (x.shape[0], h.shape[0])) for h in jnp.split(s, splits))
        return model.apply(params, x, hs)

    S = states.shape[0]
    if S <= chunk:
        return jax.nn.logsumexp(jax.vmap(joint)(states), axis=0)
    per_chunk = jax.lax.map(
        lambda c: jax.nn.logsumexp(jax.vmap(joint)(c), axis=0),
        states.reshape(S // chunk, chunk, states.shape[1]),
    )
    return jax.nn.logsumexp(per_chunk, axis=0)


def _check_x(x: ArrayLike, n_visible: int) -> Array:
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 2 or x.shape[1] != n_visible:
        raise DataError(
            f"x must be (N, {n_visible}) binary data for this SBN, got shape {x.shape}; "
            f"flatten images to vectors and add a leading example axis"
        )
    if not bool(jnp.all((x == 0) | (x == 1))):
        raise DataError(
            "SBN data must be binary (0/1); binarize it first (egm.data.binarize_fixed or "
            "binarize_threshold)"
        )
    return x
