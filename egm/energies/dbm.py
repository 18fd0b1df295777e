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


def sample(
    key: PRNGKeyArray,
    params: DBMParams,
    n: int,
    sweeps: int,
    v_mean: Float[Array, " V"] | None = None,
) -> tuple[Float[Array, "n _"], ...]:
    """``n`` independent block-Gibbs chains of the DBM after ``sweeps`` sweeps (§20.4.1).

    Start: ``v ~ Bernoulli(v_mean)`` (e.g. the training digits' mean; ``0.5`` if None), every
    hidden layer ``~ Bernoulli(0.5)``; each sweep draws the odd layers given the even ones,
    then the even layers (``v`` last among them) given the odd ones (:data:`BLOCKS`).  Returns
    the final states, one ``(n, n_l)`` binary array per layer: ``states[0]`` is a draw of
    ``P(v | h¹)`` whose law approaches the model's ``p(v)`` as ``sweeps`` grows.  Jitted;
    the sweeps are one ``lax.scan``.
    """
    if n < 1 or sweeps < 0:
        raise ConfigError(f"sample needs n >= 1 and sweeps >= 0, got n={n}, sweeps={sweeps}")
    n_v = params.biases[0].shape[0]
    mean = jnp.full((n_v,), 0.5) if v_mean is None else jnp.asarray(v_mean, jnp.float32)
    if mean.shape != (n_v,):
        raise ConfigError(f"v_mean must have shape ({n_v},), got {tuple(mean.shape)}")
    return _sample(key, params, n, sweeps, mean)


@jax.jit(static_argnums=(2, 3))
def _sample(key, params: DBMParams, n: int, sweeps: int, v_mean) -> tuple:
    k_start, k_run = jax.random.split(key)
    means = (v_mean, *(jnp.full_like(b, 0.5) for b in params.biases[1:]))
    ks = jax.random.split(k_start, len(means))
    start = tuple(
        jax.random.bernoulli(k, m, (n, m.shape[0])).astype(jnp.float32)
        for k, m in zip(ks, means, strict=True)
    )

    def one_sweep(state, k):  # both blocks of every chain, a key per chain and block
        def chain(kc, s):
            k_odd, k_even = jax.random.split(kc)
            return BLOCKS[1](k_even, params, BLOCKS[0](k_odd, params, s))

        return jax.vmap(chain)(jax.random.split(k, n), state), None

    final, _ = jax.lax.scan(one_sweep, start, jax.random.split(k_run, sweeps))
    return final


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


MF_INITS = ("half", "bottom_up")


def mean_field_init(params: DBMParams, v: Float[Array, " V"], init: str = "half") -> tuple:
    """Starting point of the mean-field iteration.

    ``"half"``: every ``μ_l = 0.5``.  ``"bottom_up"``: the recognition pass of Salakhutdinov &
    Hinton (2009) for pretrained DBMs, ``μ_l = σ(b_l + 2 W_lᵀ μ_{l-1})`` with the input from
    below doubled to stand in for the missing top-down input, and ``μ_L = σ(b_L + W_Lᵀ
    μ_{L-1})`` for the top layer (which has no layer above).
    """
    if init == "half":
        return tuple(jnp.full_like(b, 0.5) for b in params.biases[1:])
    if init != "bottom_up":
        raise ConfigError(f"mean-field init must be one of {MF_INITS}, got {init!r}")
    mu, below = [], v
    L = len(params.biases) - 1
    for l in range(1, L + 1):
        factor = 1.0 if l == L else 2.0
        below = jax.nn.sigmoid(params.biases[l] + factor * (below @ params.weights[l - 1]))
        mu.append(below)
    return tuple(mu)


def mean_field(
    params: DBMParams,
    v: Float[Array, " V"],
    *,
    tol: float = 1e-5,
    max_iter: int = 200,
    damping: float = 0.0,
    init: str = "half",
) -> tuple[tuple, MeanFieldInfo]:
    """Fixed-point iteration for ``Q(h | v) = Π σ(...)`` as a ``while_loop`` with tolerance.

    Starts from :func:`mean_field_init` (``init``).  Returns the hidden means and the
    iterations used with the final residual (max-abs change of one undamped sweep).  For
    gradients through inference use :func:`mean_field_unrolled`.
    """
    if not 0.0 <= damping < 1.0:
        raise ConfigError(f"damping must be in [0, 1), got {damping}")
    mu0 = mean_field_init(params, v, init)

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
    params: DBMParams,
    v: Float[Array, " V"],
    n_iter: int,
    damping: float = 0.0,
    init: str = "half",
) -> tuple:
    """``n_iter`` mean-field sweeps as a fixed-length ``scan``: differentiable end to end."""
    mu0 = mean_field_init(params, v, init)
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


# ---------------------------------------------------------------------------------------------
# Centering (Montavon & Müller 2012, §20.4.5)


def from_centered(params_c: DBMParams, offsets: tuple) -> DBMParams:
    r"""The ordinary parameters of a centered DBM.

    The centered energy with offsets ``μ_l`` (one per layer) is

    .. math:: E_c(x) = -\sum_l \tilde b_l^\top (x_l - μ_l)
              - \sum_{l} (x_{l-1} - μ_{l-1})^\top W_l (x_l - μ_l),

    which expands to the ordinary energy with the same ``W`` and
    ``b_l = \tilde b_l - W_lᵀ μ_{l-1} - W_{l+1} μ_{l+1}`` plus a constant: the two
    parameterisations define the same distribution (:func:`centered_energy`).
    """
    check_offsets(params_c, offsets)
    L = len(params_c.biases)
    biases = []
    for l in range(L):
        b = params_c.biases[l]
        if l > 0:
            b = b - offsets[l - 1] @ params_c.weights[l - 1]
        if l < L - 1:
            b = b - params_c.weights[l] @ offsets[l + 1]
        biases.append(b)
    return DBMParams(params_c.weights, tuple(biases))


def to_centered(params: DBMParams, offsets: tuple) -> DBMParams:
    """Inverse of :func:`from_centered`: ``b̃_l = b_l + W_lᵀ μ_{l-1} + W_{l+1} μ_{l+1}``."""
    return from_centered(params, tuple(-m for m in offsets))


def centered_energy(params_c: DBMParams, offsets: tuple, state: tuple) -> Float[Array, ""]:
    """``E_c(x)`` of :func:`from_centered` for a single state (tuple of layer vectors)."""
    e = -sum(b @ (x - m) for b, x, m in zip(params_c.biases, state, offsets, strict=True))
    return e - sum(
        (state[i] - offsets[i]) @ w @ (state[i + 1] - offsets[i + 1])
        for i, w in enumerate(params_c.weights)
    )


def check_offsets(params: DBMParams, offsets: tuple) -> None:
    """Raise :class:`ConfigError` unless ``offsets`` holds one vector per layer, shaped like
    that layer's bias."""
    shapes = [b.shape for b in params.biases]
    got = [jnp.shape(m) for m in offsets]
    if got != shapes:
        raise ConfigError(f"offsets must have one vector per layer with shapes {shapes}, got {got}")


# ---------------------------------------------------------------------------------------------
# Layer-wise pretraining (Salakhutdinov & Hinton 2009, §20.4.4)


def from_pretrained_rbms(rbms) -> DBMParams:
    r"""Compose a stack of RBMs, pretrained for a DBM, into DBM parameters.

    The stack (``rbms[0]`` at the bottom, each an :class:`~egm.energies.rbm.RBMParams` whose
    hidden layer is the next one's visible layer) must have been trained as in
    Salakhutdinov & Hinton (2009): the bottom RBM with two tied copies of its visible layer
    (so it infers ``h¹`` from ``2 W₁ᵀ v``), the top one with two tied copies of its hidden
    layer, any middle ones as ordinary RBMs.  In the DBM every hidden layer receives input
    from both neighbours, so

    - bottom and top weights are kept (each already carries the doubled input the DBM
      receives from two sides), middle weights are halved;
    - the visible bias is the bottom RBM's, the top bias the top RBM's hidden bias, and each
      middle layer's bias is the mean of the two RBMs' biases for that layer, so that its
      DBM conditional is the average of the two RBMs' logits:
      ``σ(½[(c₁ + 2W₁ᵀv) + (b₂ + 2W₂h²)]) = σ(½(c₁+b₂) + W₁ᵀv + W₂h²)``.

    A single RBM gives a one-hidden-layer DBM with its own parameters.
    """
    rbms = list(rbms)
    if not rbms:
        raise ConfigError("from_pretrained_rbms needs at least one RBM")
    for i, (a, b) in enumerate(zip(rbms[:-1], rbms[1:], strict=False)):
        if a.W.shape[1] != b.W.shape[0]:
            raise ConfigError(
                f"RBM {i} has {a.W.shape[1]} hidden units but RBM {i + 1} has {b.W.shape[0]} "
                f"visible units; a stack must chain hidden layer to visible layer"
            )
    n = len(rbms)
    weights = tuple(r.W if (i == 0 or i == n - 1) else 0.5 * r.W for i, r in enumerate(rbms))
    biases = [rbms[0].b]
    for i in range(n - 1):
        biases.append(0.5 * (rbms[i].c + rbms[i + 1].b))
    biases.append(rbms[-1].c)
    return DBMParams(weights, tuple(biases))
