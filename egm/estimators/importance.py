"""Importance-sampled log-likelihood of directed latent-variable models (§20.10.3, §18.7).

For a model ``p(x, z)`` and a proposal ``q(z | x)`` (an inference network),

    log p(x) = log E_{z~q}[p(x, z) / q(z | x)]  ≈  log (1/k) Σ_i w_i,   w_i = p(x, z_i) / q(z_i | x),

with ``z_1..z_k ~ q`` independent.  The estimate is a stochastic *lower* bound in
expectation (Jensen), tight as ``k → ∞`` (Burda et al. 2016) and exact for every ``k``
when ``q`` is the true posterior (then every ``w_i = p(x)``).  Everything here works on
``log w``: the weights of a 784-pixel model overflow float32 by hundreds of nats.

:func:`importance_log_likelihood` draws the ``k`` proposals in chunks (so ``k = 5000``
fits in memory for a batch of MNIST digits) and merges the chunks with a *streaming*
log-sum-exp that also carries ``Σ w²``, giving the delta-method Monte-Carlo standard
error of each example's estimate without storing the weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.distributions import log_mean_exp as log_mean_exp  # re-exported: part of this API
from egm.errors import ConfigError, DataError

LogWeightsFn = Callable[[PRNGKeyArray, Array, int], Float[Array, " n"]]


class ISEstimate(NamedTuple):
    """Result of :func:`importance_log_likelihood`.

    ``log_likelihood``: mean over examples of the per-example estimates (nats);
    ``stderr``: standard error of that mean over examples (sample sd / sqrt(N); NaN for
    N = 1) — the spread of the data, not the Monte-Carlo noise;
    ``per_example``: ``(N,)`` estimates ``log (1/k) Σ_i w_i``;
    ``n_samples``: ``k``;
    ``mc_stderr``: ``(N,)`` delta-method Monte-Carlo standard error of each estimate,
    ``sd(w) / (sqrt(k) · mean(w))`` (sd with ``k - 1`` in the denominator), from the
    streamed ``Σ w`` and ``Σ w²`` in log space;
    ``mc_stderr_mean``: the Monte-Carlo standard error of ``log_likelihood`` for this
    fixed data set, ``sqrt(Σ_n mc_stderr_n²) / N``.
    """

    log_likelihood: Float[Array, ""]
    stderr: Float[Array, ""]
    per_example: Float[Array, " N"]
    n_samples: int
    mc_stderr: Float[Array, " N"]
    mc_stderr_mean: Float[Array, ""]


class _Stream(NamedTuple):
    """Streaming state: running max ``m``, ``s1 = Σ exp(lw - m)``, ``s2 = Σ exp(2(lw - m))``."""

    m: Array
    s1: Array
    s2: Array


def _merge(state: _Stream, lw: Float[Array, " c"]) -> _Stream:
    """Fold one chunk of log weights (``-inf`` = masked out) into the stream."""
    m_new = jnp.maximum(state.m, jnp.max(lw))
    m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
    scale = jnp.exp(state.m - m_safe)  # exp(-inf) = 0 on the first chunk
    e = jnp.exp(lw - m_safe)
    return _Stream(m_new, state.s1 * scale + jnp.sum(e), state.s2 * scale**2 + jnp.sum(e * e))


def _finish(state: _Stream, k: int) -> tuple[Array, Array]:
    """``(log mean w, delta-method se of it)`` from the stream of ``k`` weights."""
    m_safe = jnp.where(jnp.isfinite(state.m), state.m, 0.0)
    est = m_safe + jnp.log(state.s1) - math.log(k)
    if k < 2:
        return est, jnp.full_like(est, jnp.nan)
    # sd(w)² / mean(w)² = (k/(k-1)) (k Σw² / (Σw)² - 1); scale-free, so m cancels.
    rel_var = (k / (k - 1)) * jnp.maximum(k * state.s2 / state.s1**2 - 1.0, 0.0)
    return est, jnp.sqrt(rel_var / k)


def _one_example(
    log_weights_fn: LogWeightsFn, key: PRNGKeyArray, x: Array, k: int, chunk: int
) -> tuple[Array, Array]:
    n_chunks = -(-k // chunk)
    init = _Stream(jnp.array(-jnp.inf, jnp.float32), jnp.zeros((), jnp.float32), jnp.zeros(()))

    def body(state, i):
        lw = jnp.asarray(log_weights_fn(jax.random.fold_in(key, i), x, chunk), jnp.float32)
        valid = i * chunk + jnp.arange(chunk) < k
        return _merge(state, jnp.where(valid, lw, -jnp.inf)), None

    state, _ = jax.lax.scan(body, init, jnp.arange(n_chunks))
    return _finish(state, k)


def importance_log_likelihood(
    key: PRNGKeyArray,
    log_weights_fn: LogWeightsFn,
    x: Float[ArrayLike, "N ..."],
    n_samples: int,
    *,
    chunk_size: int = 500,
    batch_size: int = 100,
) -> ISEstimate:
    """Importance-sampling estimate of ``log p(x_n)`` for every example (§20.10.3).

    ``log_weights_fn(key, x_single, n) -> (n,)`` returns ``log p(x, z_i) - log q(z_i | x)``
    for ``n`` independent proposals ``z_i ~ q(· | x)`` drawn with ``key``; ``n`` is
    always ``chunk_size`` (a static int), and entries past ``n_samples`` in the last
    chunk are discarded.  Chunk ``c`` of example ``n`` uses ``fold_in(fold_in(key, n), c)``,
    so the result does not depend on ``batch_size`` (examples per jitted call, the last
    batch padded).  Memory is about ``batch_size · chunk_size`` proposals at a time.

    The batch function is jitted once per ``(log_weights_fn, n_samples, chunk_size)``.
    Pass ``jax.tree_util.Partial(fn, params)`` (with ``fn(params, key, x, n)``) rather
    than a closure over parameters: a Partial's arguments are traced, so new parameters
    (every epoch of training) reuse the compiled program instead of recompiling.
    """
    if not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ConfigError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    for name, v in (("chunk_size", chunk_size), ("batch_size", batch_size)):
        if not isinstance(v, int | np.integer) or v < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise DataError(
            f"x must have a leading example axis with at least one example, got shape {x.shape}; "
            f"for a single example pass x[None]"
        )
    if jnp.issubdtype(x.dtype, jnp.floating) and not bool(jnp.all(jnp.isfinite(x))):
        raise DataError("x contains NaN or inf; clean the data before estimating log p(x)")
    n_samples, chunk = int(n_samples), int(min(chunk_size, n_samples))
    n = x.shape[0]
    bs = int(min(batch_size, n))
    lw_fn = log_weights_fn if isinstance(log_weights_fn, Partial) else Partial(log_weights_fn)
    ests, ses = [], []
    for start in range(0, n, bs):
        idx = np.arange(start, start + bs)
        xb = x[np.minimum(idx, n - 1)]  # pad the last batch by repeating its last row
        e, s = _batch(lw_fn, key, jnp.asarray(idx), xb, n_samples, chunk)
        keep = int(min(bs, n - start))
        ests.append(e[:keep])
        ses.append(s[:keep])
    per_ex = jnp.concatenate(ests)
    mc = jnp.concatenate(ses)
    ll = jnp.mean(per_ex)
    stderr = jnp.std(per_ex, ddof=1) / math.sqrt(n) if n > 1 else jnp.array(jnp.nan)
    return ISEstimate(
        log_likelihood=ll,
        stderr=stderr,
        per_example=per_ex,
        n_samples=n_samples,
        mc_stderr=mc,
        mc_stderr_mean=jnp.sqrt(jnp.sum(mc**2)) / n,
    )


@functools.partial(jax.jit, static_argnums=(4, 5))
def _batch(lw_fn: Partial, key: PRNGKeyArray, idx: Array, xb: Array, k: int, chunk: int):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
    return jax.vmap(lambda kk, xx: _one_example(lw_fn, kk, xx, k, chunk))(keys, xb)
