r"""Deep Boltzmann machine with any number of layers (§20.4).

Layers ``x_0 = v, x_1 = h^{(1)}, ..., x_L`` (all binary), weights ``W_l`` between layers
``l-1`` and ``l``, biases ``b_l`` per layer:

.. math:: E(x) = -\sum_l b_l^\top x_l - \sum_{l \ge 1} x_{l-1}^\top W_l x_l.

Each layer's conditional given its neighbours factorises:
``P(x_l = 1 | x_{l-1}, x_{l+1}) = σ(b_l + W_lᵀ x_{l-1} + W_{l+1} x_{l+1})``, so the even
layers and the odd layers are the two blocks of block Gibbs (:data:`BLOCKS`).  The state is
a tuple of layer vectors.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies.rbm import bernoulli_logits
from egm.errors import ConfigError


class DBMParams(NamedTuple):
    """``weights[l-1]`` couples layers ``l-1`` and ``l`` (shape (n_{l-1}, n_l)); ``biases[l]``."""

    weights: tuple[Float[Array, "a b"], ...]
    biases: tuple[Float[Array, " n"], ...]


def init(key: PRNGKeyArray, sizes: tuple[int, ...], *, scale: float = 0.01) -> DBMParams:
    """Random ``N(0, scale²)`` weights and zero biases for layer sizes ``(V, H1, H2, ...)``."""
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise ConfigError(f"a DBM needs at least two layers of positive size, got {sizes}")
    keys = jax.random.split(key, len(sizes) - 1)
    weights = tuple(
        scale * jax.random.normal(k, (a, b), jnp.float32)
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    )
    return DBMParams(weights, tuple(jnp.zeros((n,), jnp.float32) for n in sizes))


def energy(params: DBMParams, state: tuple[Float[Array, " n"], ...]) -> Float[Array, ""]:
    """``E(x) = -Σ_l b_lᵀx_l - Σ_l x_{l-1}ᵀ W_l x_l``."""
    e = -sum(b @ x for b, x in zip(params.biases, state, strict=True))
    return e - sum(state[i] @ w @ state[i + 1] for i, w in enumerate(params.weights))


def layer_logits(params: DBMParams, state: tuple, l: int) -> Float[Array, " n"]:
    """``b_l + W_lᵀ x_{l-1} + W_{l+1} x_{l+1}`` (missing neighbours contribute nothing)."""
    z = params.biases[l]
    if l > 0:
        z = z + state[l - 1] @ params.weights[l - 1]
    if l < len(params.biases) - 1:
        z = z + params.weights[l] @ state[l + 1]
    return z


def _update_layers(parity: int):
    def update(key: PRNGKeyArray, params: DBMParams, state: tuple) -> tuple:
        layers = range(parity, len(state), 2)
        keys = jax.random.split(key, len(state))
        new = list(state)
        for l in layers:  # layers of one parity are conditionally independent
            new[l] = bernoulli_logits(keys[l], layer_logits(params, state, l))
        return tuple(new)

    return update


#: Block Gibbs: odd layers given even ones, then even layers (including v) given odd ones.
BLOCKS = (_update_layers(1), _update_layers(0))


def to_boltzmann(params: DBMParams):
    """The same distribution as a general BM over all units (layers concatenated in order):
    ``U`` holds ``W_l`` and ``W_lᵀ`` in the off-diagonal blocks of adjacent layers."""
    from egm.energies.boltzmann import BMParams

    sizes = [b.shape[0] for b in params.biases]
    offs = [0]
    for n in sizes:
        offs.append(offs[-1] + n)
    U = jnp.zeros((offs[-1], offs[-1]), jnp.float32)
    for l, w in enumerate(params.weights):
        U = U.at[offs[l] : offs[l + 1], offs[l + 1] : offs[l + 2]].set(w)
        U = U.at[offs[l + 1] : offs[l + 2], offs[l] : offs[l + 1]].set(w.T)
    return BMParams(U=U, a=jnp.concatenate(params.biases))


class MeanFieldInfo(NamedTuple):
    """Iterations used and the final max-abs residual of the fixed-point equations."""

    n_iter: Array
    residual: Float[Array, ""]


def _mf_update(params: DBMParams, v, mu: tuple, damping: float) -> tuple:
    """One sweep of the mean-field equations μ_l = σ(b_l + W_lᵀμ_{l-1} + W_{l+1}μ_{l+1})
    (§20.4.2, eq. 20.35–20.36), layers in order, with damping toward the old value."""
    state = [v, *mu]
    for l in range(1, len(state)):
        new = jax.nn.sigmoid(layer_logits(params, tuple(state), l))
        state[l] = damping * state[l] + (1.0 - damping) * new
    return tuple(state[1:])


def mean_field(
    params: DBMParams,
    v: Float[Array, " V"],
    *,
    tol: float = 1e-5,
    max_iter: int = 200,
    damping: float = 0.0,
) -> tuple[tuple, MeanFieldInfo]:
    """Fixed-point iteration for ``Q(h | v) = Π σ(...)`` as a ``while_loop`` with tolerance.

    Starts from ``μ_l = 0.5``.  Returns the hidden means and the iterations used with the final residual.  For
    gradients through inference use :func:`mean_field_unrolled`.
    """
    if not 0.0 <= damping < 1.0:
        raise ConfigError(f"damping must be in [0, 1), got {damping}")
    mu0 = tuple(jnp.full_like(b, 0.5) for b in params.biases[1:])

    def residual(mu):
        nxt = _mf_update(params, v, mu, 0.0)
        return jnp.max(jnp.stack([jnp.max(jnp.abs(a - b)) for a, b in zip(nxt, mu, strict=True)]))

    def cond(carry):
        _, it, res = carry
        return (it < max_iter) & (res > tol)

    def body(carry):
        mu, it, _ = carry
        mu = _mf_update(params, v, mu, damping)
        return mu, it + 1, residual(mu)

    mu, it, res = jax.lax.while_loop(cond, body, (mu0, jnp.zeros((), jnp.int32), jnp.inf))
    return mu, MeanFieldInfo(it, res)


def mean_field_unrolled(
    params: DBMParams, v: Float[Array, " V"], n_iter: int, damping: float = 0.0
) -> tuple:
    """``n_iter`` mean-field sweeps as a fixed-length ``scan``: differentiable end to end."""
    mu0 = tuple(jnp.full_like(b, 0.5) for b in params.biases[1:])
    mu, _ = jax.lax.scan(
        lambda mu, _: (_mf_update(params, v, mu, damping), None), mu0, None, length=n_iter
    )
    return mu


def variational_bound(params: DBMParams, v: Float[Array, " V"], mu: tuple) -> Float[Array, ""]:
    r"""``-E_Q[E(v, h)] + H(Q) ≤ log Σ_h exp(-E(v, h))`` for a factorial ``Q`` with means ``mu``
    (§20.4.2, eq. 20.31); subtract ``log Z`` for the bound on ``log p(v)``.

    Exact when ``Q`` is the true posterior (e.g. when that posterior factorises).  Under a
    factorial ``Q`` the energy is multilinear across layers, so ``E_Q`` replaces every
    hidden layer by its means.
    """
    state = (v, *mu)
    e = energy(params, state)
    eps = 1e-7
    ent = sum(-jnp.sum(m * jnp.log(m + eps) + (1 - m) * jnp.log(1 - m + eps)) for m in mu)
    return -e + ent
