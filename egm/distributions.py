"""Log densities and log-space reductions shared by every model (one definition each).

The bottom layer of egm, next to :mod:`egm.errors`: energies, estimators and the Flax
models all use these, so a directed net, a DBN and an importance sampler compute a
Bernoulli log-likelihood and a log-mean-exp the same way.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def bernoulli_log_prob(logits: Float[Array, "*b D"], x: Float[Array, "*b D"]) -> Float[Array, "*b"]:
    """``Σ_i log Bernoulli(x_i; σ(a_i)) = Σ_i x_i a_i - softplus(a_i)`` over the last axis,
    in log space (never ``log σ``), for ``x`` in {0, 1} (or [0, 1]: the cross-entropy)."""
    return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)


def log_mean_exp(log_w: Float[ArrayLike, "..."], axis: int = -1) -> Float[Array, "..."]:
    """``log (1/n) Σ_i exp(log_w_i)`` along ``axis``, computed stably (log-sum-exp)."""
    log_w = jnp.asarray(log_w)
    return jax.nn.logsumexp(log_w, axis=axis) - math.log(log_w.shape[axis])
