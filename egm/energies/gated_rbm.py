r"""Factored third-order (gated) RBM of Memisevic & Hinton (2010) (§20.8, higher-order BMs).

A conditional model of an output image ``y ∈ {0,1}^J`` given an input image ``x ∈ ℝ^I``, with
binary mapping units ``h ∈ {0,1}^K`` that encode the *transformation* between the two.  The
three-way interactions ``W_ijk x_i y_j h_k`` are factored through ``F`` factors,
``W_ijk = Σ_f W^x_if W^y_jf W^h_kf``, so the energy is

.. math:: E(y, h; x) = -\sum_f (x^\top W^x_{:f})(y^\top W^y_{:f})(h^\top W^h_{:f})
          - b^\top y - c^\top h,

and ``p(y, h | x) ∝ e^{-E(y, h; x)}``.  Given the other two groups each group factorises
(the model is an RBM between ``y`` and ``h`` whose weights are gated by ``x``):

.. math:: P(h_k = 1 | x, y) = σ(c_k + \sum_f W^h_{kf} (x^\top W^x_{:f})(y^\top W^y_{:f})),
.. math:: P(y_j = 1 | x, h) = σ(b_j + \sum_f W^y_{jf} (x^\top W^x_{:f})(h^\top W^h_{:f})),

and the free energy ``F(y; x) = -bᵀy - Σ_k ζ(c_k + Σ_f W^h_kf (xᵀW^x_f)(yᵀW^y_f))`` gives the
gradient of ``-log p(y | x)``: ``∂F(y; x)/∂θ − E_{p(y'|x)}[∂F(y'; x)/∂θ]``, estimated by CD-k
with the chain over ``(y, h)`` clamped to ``x`` (:func:`cd_surrogate`).

Every function acts on ONE example; batches come from ``jax.vmap``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies.rbm import bernoulli_logits
from egm.errors import ConfigError

__all__ = [
    "GatedRBMParams",
    "cd_negatives",
    "cd_surrogate",
    "energy",
    "free_energy",
    "full_tensor",
    "hidden_logits",
    "hidden_probs",
    "init",
    "output_logits",
    "output_probs",
    "reconstruct",
]


class GatedRBMParams(NamedTuple):
    """Factor loadings ``Wx`` (I, F), ``Wy`` (J, F), ``Wh`` (K, F); output bias ``b`` (J,) and
    mapping-unit bias ``c`` (K,)."""

    Wx: Float[Array, "I F"]
    Wy: Float[Array, "J F"]
    Wh: Float[Array, "K F"]
    b: Float[Array, " J"]
    c: Float[Array, " K"]


def init(
    key: PRNGKeyArray, n_in: int, n_out: int, n_hidden: int, n_factors: int, *, scale: float = 0.1
) -> GatedRBMParams:
    """``W ~ N(0, scale²)`` for the three loadings, zero biases."""
    if min(n_in, n_out, n_hidden, n_factors) < 1:
        raise ConfigError(
            f"a gated RBM needs at least one unit of each kind, got n_in={n_in}, n_out={n_out}, "
            f"n_hidden={n_hidden}, n_factors={n_factors}"
        )
    kx, ky, kh = jax.random.split(key, 3)
    normal = lambda k, n: scale * jax.random.normal(k, (n, n_factors), jnp.float32)  # noqa: E731
    return GatedRBMParams(
        normal(kx, n_in), normal(ky, n_out), normal(kh, n_hidden),
        jnp.zeros((n_out,), jnp.float32), jnp.zeros((n_hidden,), jnp.float32),
    )  # fmt: skip


def energy(
    params: GatedRBMParams, x: Float[Array, " I"], y: Float[Array, " J"], h: Float[Array, " K"]
) -> Float[Array, ""]:
    """``E(y, h; x) = -Σ_f (xᵀW^x_f)(yᵀW^y_f)(hᵀW^h_f) - bᵀy - cᵀh`` (factored form)."""
    p = params
    return -jnp.sum((x @ p.Wx) * (y @ p.Wy) * (h @ p.Wh)) - p.b @ y - p.c @ h


def full_tensor(params: GatedRBMParams) -> Float[Array, "I J K"]:
    """The three-way weight tensor ``W_ijk = Σ_f W^x_if W^y_jf W^h_kf`` the factors encode."""
    return jnp.einsum("if,jf,kf->ijk", params.Wx, params.Wy, params.Wh)


def hidden_logits(
    params: GatedRBMParams, x: Float[Array, " I"], y: Float[Array, " J"]
) -> Float[Array, " K"]:
    """``c_k + Σ_f W^h_kf (xᵀW^x_f)(yᵀW^y_f)``: the input of every mapping unit."""
    return params.c + params.Wh @ ((x @ params.Wx) * (y @ params.Wy))


def hidden_probs(
    params: GatedRBMParams, x: Float[Array, " I"], y: Float[Array, " J"]
) -> Float[Array, " K"]:
    """``P(h_k = 1 | x, y)``: the mapping units' code of the transformation ``x → y``."""
    return jax.nn.sigmoid(hidden_logits(params, x, y))


def output_logits(
    params: GatedRBMParams, x: Float[Array, " I"], h: Float[Array, " K"]
) -> Float[Array, " J"]:
    """``b_j + Σ_f W^y_jf (xᵀW^x_f)(hᵀW^h_f)``: the input of every output unit."""
    return params.b + params.Wy @ ((x @ params.Wx) * (h @ params.Wh))


def output_probs(
    params: GatedRBMParams, x: Float[Array, " I"], h: Float[Array, " K"]
) -> Float[Array, " J"]:
    """``P(y_j = 1 | x, h)``: the output the transformation ``h`` makes of ``x``."""
    return jax.nn.sigmoid(output_logits(params, x, h))


def free_energy(
    params: GatedRBMParams, x: Float[Array, " I"], y: Float[Array, " J"]
) -> Float[Array, ""]:
    """``F(y; x) = -bᵀy - Σ_k softplus(hidden_logits(x, y)_k)`` (``h`` summed out)."""
    return -(params.b @ y) - jnp.sum(jax.nn.softplus(hidden_logits(params, x, y)))


def reconstruct(
    params: GatedRBMParams, x: Float[Array, " I"], y: Float[Array, " J"]
) -> Float[Array, " J"]:
    """Mean-field ``P(y | x, h = P(h | x, y))``: apply the inferred transformation to ``x``."""
    return output_probs(params, x, hidden_probs(params, x, y))


def cd_negatives(
    key: PRNGKeyArray,
    params: GatedRBMParams,
    x: Float[Array, "B I"],
    y: Float[Array, "B J"],
    k: int,
) -> Float[Array, "B J"]:
    """CD-k negatives: ``k`` sweeps ``h ~ P(h | x, y)``, ``y ~ P(y | x, h)`` with ``x`` clamped,
    started at the data ``y`` (the whole batch as matrix products, one draw per sweep and
    group)."""
    gx = x @ params.Wx  # (B, F), fixed along the chain

    def body(ys, key):
        k_h, k_y = jax.random.split(key)
        h = bernoulli_logits(k_h, params.c + (gx * (ys @ params.Wy)) @ params.Wh.T)
        return bernoulli_logits(k_y, params.b + (gx * (h @ params.Wh)) @ params.Wy.T), None

    return jax.lax.scan(body, y, jax.random.split(key, k))[0]


def cd_surrogate(
    key: PRNGKeyArray,
    params: GatedRBMParams,
    x: Float[Array, "B I"],
    y: Float[Array, "B J"],
    k: int = 1,
) -> tuple[Float[Array, ""], dict]:
    """``mean F(y; x) − mean F(y⁻; x)`` with CD-k negatives ``y⁻`` held constant: its gradient
    is the CD-k estimate of ``∇ mean(-log p(y | x))``.  The chains start at the data ``y``
    and alternate ``h ~ P(h | x, y)``, ``y ~ P(y | x, h)`` with ``x`` clamped.  Metrics:
    ``recon_error`` (mean squared error of :func:`reconstruct` against ``y``)."""
    sp = jax.lax.stop_gradient(params)
    y_neg = cd_negatives(key, sp, x, y, k)
    fe = jax.vmap(free_energy, (None, 0, 0))
    surrogate = jnp.mean(fe(params, x, y)) - jnp.mean(fe(params, x, jax.lax.stop_gradient(y_neg)))
    recon = jax.vmap(reconstruct, (None, 0, 0))(sp, x, y)
    return surrogate, {"recon_error": jnp.mean((recon - y) ** 2)}
