r"""Contrastive divergence (CD-k) and persistent contrastive divergence (PCD / SML), §18.2.

For a model with free energy ``F``, the log-likelihood gradient is

.. math:: \nabla_\theta \log p(v) = -\nabla_\theta F(v) + \mathbb{E}_{p}[\nabla_\theta F(\tilde v)],

the positive (data) phase minus the negative (model) phase.  Both estimators
here return the gradient of the *loss* ``mean F(data) - mean F(negatives)``, i.e.
the Monte-Carlo estimate of ``-∇ log p``, shaped like ``params``, so it feeds any
optax optimiser directly.  Hidden units enter through the free energy, i.e. as
their conditional expectations (Rao–Blackwellised; Hinton 2010, §3.3).

- CD-k starts the negative chains at the data and runs ``k`` Gibbs sweeps.
- PCD-k (Tieleman 2008; SML, Younes 1998) keeps the chains between updates and
  advances them ``k`` sweeps under the current parameters.

:func:`centered_gradient` turns an RBM gradient into the centered gradient of
Montavon & Müller (2012) / Melchior et al. (2016).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import rbm
from egm.energies.dbm import DBMParams
from egm.energies.rbm import RBMParams, RBMState
from egm.estimators.dbm_pcd import centered_gradient as _layered_centered_gradient
from egm.samplers.gibbs import Kernel, block_gibbs, run

Params = Any


def free_energy_gap_grad(
    free_energy: Callable[[Params, Any], Float[Array, ""]],
    params: Params,
    positives: Any,
    negatives: Any,
) -> tuple[Float[Array, ""], Params]:
    """Value and gradient of ``mean F(positives) - mean F(negatives)`` w.r.t. ``params``.

    ``negatives`` are treated as constants (``stop_gradient``).  The batch mean sits
    inside the differentiated function, so for dense models XLA contracts the batch
    axis in one matrix product instead of forming per-example outer products.
    """
    negatives = jax.lax.stop_gradient(negatives)

    def gap(p):
        fp = jax.vmap(free_energy, in_axes=(None, 0))(p, positives)
        fn = jax.vmap(free_energy, in_axes=(None, 0))(p, negatives)
        return jnp.mean(fp) - jnp.mean(fn)

    return jax.value_and_grad(gap)(params)


class CDAux(NamedTuple):
    """Statistics a CD/PCD step returns next to the gradient."""

    free_energy_gap: Float[Array, ""]
    hidden_mean_data: Float[Array, " H"]
    negatives: Float[Array, "B V"]


#: Down-up sweeps (v | h, then h | v).  Ending a sweep with h | v means the hidden
#: pre-activation of the negatives, which the gradient needs anyway, also draws the
#: chain's next ``h``: XLA computes that product once (5 matrix products per CD-1/PCD-1
#: update instead of 6).
_RBM_DOWN_UP: Kernel = block_gibbs(rbm.BLOCKS[::-1])


def cd_gradient(
    key: PRNGKeyArray, params: RBMParams, v_data: Float[Array, "B V"], k: int = 1
) -> tuple[RBMParams, CDAux]:
    """CD-k estimate of ``-∇ log p`` for a binary RBM on a minibatch ``v_data``.

    ``h_0 ~ P(h | v_data)``, then ``k`` sweeps ``v ~ P(v|h), h ~ P(h|v)``; the negatives
    are the last visible states.
    """
    rbm.check_data_shape(params, v_data, "v_data")
    k0, k1 = jax.random.split(key)
    h0 = jax.vmap(rbm.sample_hidden, in_axes=(0, None, 0))(
        jax.random.split(k0, v_data.shape[0]), params, v_data
    )
    states, _ = run(_RBM_DOWN_UP, k1, RBMState(v=v_data, h=h0), params, k)
    return _rbm_gradient(params, v_data, states.v)


def pcd_gradient(
    key: PRNGKeyArray, params: RBMParams, v_data: Float[Array, "B V"], chains: RBMState, k: int = 1
) -> tuple[RBMParams, RBMState, CDAux]:
    """PCD-k / SML: advance the persistent ``chains`` k sweeps, use them as negatives.

    Each sweep is ``v ~ P(v|h)`` then ``h ~ P(h|v)`` under the current parameters, so a
    chain state must hold a sampled ``h`` (:func:`egm.energies.rbm.sample_state`).
    Returns ``(grads, new_chains, aux)``; store ``new_chains`` in the train state.  The
    number of chains need not equal the batch size.
    """
    rbm.check_data_shape(params, v_data, "v_data")
    rbm.check_data_shape(params, chains.v, "chains.v")
    chains, _ = run(_RBM_DOWN_UP, key, chains, params, k)
    grads, aux = _rbm_gradient(params, v_data, chains.v)
    return grads, chains, aux


def _rbm_gradient(
    params: RBMParams, v_data: Float[Array, "B V"], v_model: Float[Array, "M V"]
) -> tuple[RBMParams, CDAux]:
    """Closed form of ``free_energy_gap_grad(rbm.free_energy, ...)`` (tested equal to it).

    ``∂F/∂W = -v σ(x)ᵀ`` etc.; both phases' outer products are ONE matrix product of the
    stacked batches, which runs faster than two products with half the inner dimension.
    """
    v_model = jax.lax.stop_gradient(v_model)
    x_pos = jax.vmap(rbm.hidden_preactivation, in_axes=(None, 0))(params, v_data)
    x_neg = jax.vmap(rbm.hidden_preactivation, in_axes=(None, 0))(params, v_model)
    h_pos, h_neg = jax.nn.sigmoid(x_pos), jax.nn.sigmoid(x_neg)
    n_pos, n_neg = v_data.shape[0], v_model.shape[0]
    dW = jnp.concatenate([v_model, v_data]).T @ jnp.concatenate([h_neg / n_neg, -h_pos / n_pos])
    grads = RBMParams(
        W=dW,
        b=jnp.mean(v_model, axis=0) - jnp.mean(v_data, axis=0),
        c=jnp.mean(h_neg, axis=0) - jnp.mean(h_pos, axis=0),
    )

    def mean_fe(v, x):
        return jnp.mean(-(v @ params.b) - jnp.sum(jax.nn.softplus(x), axis=-1))

    gap = mean_fe(v_data, x_pos) - mean_fe(v_model, x_neg)
    h_data = jnp.mean(h_pos, axis=0)
    return grads, CDAux(free_energy_gap=gap, hidden_mean_data=h_data, negatives=v_model)


def centered_gradient(
    grads: RBMParams, mu: Float[Array, " V"], lam: Float[Array, " H"]
) -> RBMParams:
    r"""The centered gradient of Melchior, Fischer & Wiskott (2016, eq. 11–13).

    With the energy written around offsets ``μ`` (visible) and ``λ`` (hidden),
    ``E = -(v-μ)ᵀW(h-λ) - bᵀ(v-μ) - cᵀ(h-λ)``, the gradient step taken in the centered
    parameterisation and mapped back to ``(W, b, c)`` is

    ``ΔW = ∇W - μ∇cᵀ - ∇b λᵀ``,  ``Δb = ∇b - ΔW λ``,  ``Δc = ∇c - ΔWᵀ μ``,

    where ``∇·`` are the ordinary (uncentered) gradients given here.  With ``μ = λ = 0``
    it is the identity.  Works for the loss gradients this module returns (the map is
    linear, so the sign convention carries through).
    """
    g = _layered_centered_gradient(DBMParams((grads.W,), (grads.b, grads.c)), (mu, lam))
    return RBMParams(W=g.weights[0], b=g.biases[0], c=g.biases[1])
