"""Pieces shared by the autoregressive nets of §20.10.7–20.10.10 (FVSBN, NADE, MADE).

An autoregressive net factorises ``p(x) = Π_d p(x_{o_d} | x_{o_<d})`` along an ordering
``o`` (a permutation of the ``D`` units).  For binary units each conditional is a
Bernoulli with a logit; all log-likelihoods here are computed in log space,
``log p(x_i | ·) = x_i log σ(l_i) + (1 - x_i) log σ(-l_i)`` with ``log σ = -softplus(-·)``,
never as ``log(sigmoid(l))`` (which underflows to ``-inf`` for ``l < -88`` in float32).

Logits are always returned in *pixel* order (entry ``i`` belongs to unit ``i``), whatever
the ordering, so a model's output lines up with its input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from egm.distributions import bernoulli_log_prob as bernoulli_log_prob  # re-exported
from egm.distributions import log_mean_exp
from egm.errors import ConfigError, DataError

__all__ = [
    "bernoulli_log_prob",
    "check_ordering",
    "ensemble_log_likelihood",
    "inverse_permutation",
    "observed_first_ordering",
    "sample_sequential",
    "set_output_bias",
]


def ensemble_log_likelihood(member_log_probs: Float[Array, "K ..."]) -> Float[Array, "..."]:
    """``log (1/K) Σ_k exp(member_log_probs[k])`` along the leading axis (log space)."""
    lp = jnp.asarray(member_log_probs)
    if lp.ndim < 1 or lp.shape[0] < 1:
        raise DataError(
            f"member_log_probs needs a leading ensemble axis of size >= 1, got shape {lp.shape}"
        )
    return log_mean_exp(lp, axis=0)


def check_ordering(ordering: Sequence[int] | ArrayLike | None, n_visible: int) -> tuple[int, ...]:
    """An ordering as a static tuple of ints (``None`` → the identity ``0..D-1``).

    Raises :class:`ConfigError` unless it is a permutation of ``range(n_visible)``.
    """
    if n_visible < 1:
        raise ConfigError(f"n_visible must be >= 1, got {n_visible}")
    if ordering is None:
        return tuple(range(n_visible))
    o = tuple(int(i) for i in np.asarray(ordering).reshape(-1))
    if sorted(o) != list(range(n_visible)):
        raise ConfigError(
            f"ordering must be a permutation of 0..{n_visible - 1} (each unit exactly once), "
            f"got {len(o)} entries {o[:10]}{'...' if len(o) > 10 else ''}; use "
            f"np.random.default_rng(seed).permutation({n_visible}) for a random one"
        )
    return o


def inverse_permutation(ordering: Int[ArrayLike, " D"]) -> Int[Array, " D"]:
    """``pos`` with ``pos[ordering[d]] = d``: the position of each unit in the ordering."""
    o = jnp.asarray(ordering)
    return jnp.zeros_like(o).at[o].set(jnp.arange(o.shape[0], dtype=o.dtype))


def observed_first_ordering(key: PRNGKeyArray, observed: Bool[ArrayLike, " D"]) -> Int[Array, " D"]:
    """A random ordering in which every observed unit comes before every unobserved one.

    Under such an ordering, clamping the observed units and sampling the others in order
    draws exactly from the model's conditional ``p(x_unobserved | x_observed)``.
    """
    observed = jnp.asarray(observed, bool)
    u = jax.random.uniform(key, observed.shape)
    return jnp.argsort(jnp.where(observed, u, 1.0 + u))


def sample_sequential(
    key: PRNGKeyArray,
    logits_fn: Callable[[Float[Array, " D"], Int[Array, ""]], Float[Array, " D"]],
    ordering: Int[ArrayLike, " D"],
    x_clamp: Float[ArrayLike, " D"] | None = None,
    clamp_mask: Bool[ArrayLike, " D"] | None = None,
) -> Float[Array, " D"]:
    """Ancestral sampling ``x_{o_d} ~ p(x_{o_d} | x_{o_<d})`` for ``d = 0 .. D-1``.

    ``logits_fn(x, d)`` returns pixel-order logits of which entry ``o_d`` must depend on
    ``x_{o_<d}`` only (later entries of ``x`` are still 0 when it is called).  Units with
    ``clamp_mask`` true keep their ``x_clamp`` value and are not drawn.  The result is an
    exact draw from ``p(x_free | x_clamped)`` when every clamped unit precedes every free
    one in the ordering (see :func:`observed_first_ordering`); otherwise it draws each free
    unit from its conditional given the units before it only.

    ``D`` evaluations of ``logits_fn`` in a ``lax.fori_loop``; vmap it over keys for many
    samples.  NADE has a faster O(DH) sampler of its own (:func:`egm.models.nade.sample`).
    """
    o = jnp.asarray(ordering)
    D = o.shape[0]
    if clamp_mask is None:
        clamp_mask = jnp.zeros((D,), bool)
        x_clamp = jnp.zeros((D,), jnp.float32)
    elif x_clamp is None:
        raise DataError("clamp_mask was given without x_clamp (the values to clamp to)")
    clamp_mask = jnp.asarray(clamp_mask, bool)
    x_clamp = jnp.asarray(x_clamp, jnp.float32)
    u = jax.random.uniform(key, (D,))
    x0 = jnp.where(clamp_mask, x_clamp, 0.0)

    def body(d, x):
        i = o[d]
        logit = logits_fn(x, d)[i]
        xi = (u[i] < jax.nn.sigmoid(logit)).astype(jnp.float32)
        return x.at[i].set(jnp.where(clamp_mask[i], x_clamp[i], xi))

    return jax.lax.fori_loop(0, D, body, x0)


def set_output_bias(params: dict, data_mean: Float[ArrayLike, " D"], eps: float = 1e-3) -> dict:
    """A copy of Flax ``params`` whose output bias ``params['params']['b']`` is the logit of
    the (clipped) data mean, so training starts from the independent-pixel model."""
    m = jnp.clip(jnp.asarray(data_mean, jnp.float32), eps, 1.0 - eps)
    inner = dict(params["params"])
    if "b" not in inner or inner["b"].shape != m.shape:
        raise ConfigError(
            f"set_output_bias needs an output bias 'b' of shape {m.shape}; the params have "
            f"{ {k: getattr(v, 'shape', None) for k, v in inner.items()} }"
        )
    inner["b"] = jnp.log(m) - jnp.log1p(-m)
    return {**params, "params": inner}
