r"""Joint training of a deep Boltzmann machine by PCD/SML with a mean-field positive phase
(§20.4.3; Salakhutdinov & Hinton 2009).

The objective is the variational lower bound ``L(v) = -E_Q[E(v,h)] + H(Q) - log Z``.  At
the mean-field fixed point ``μ`` its gradient with ``μ`` held fixed is exact (the bound is
stationary in ``μ``), so

.. math:: -\nabla_θ L = \nabla_θ E(v, μ) - \mathbb{E}_{p}[\nabla_θ E(x)],

the positive phase evaluating the (multilinear) energy at the means, the negative phase
at persistent block-Gibbs chains.  The estimate is returned as a loss gradient shaped like
:class:`~egm.energies.dbm.DBMParams`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import dbm
from egm.energies.dbm import DBMParams
from egm.samplers.gibbs import block_gibbs, run

_DBM_GIBBS = block_gibbs(dbm.BLOCKS)


def energy_gap_grad(params: DBMParams, positives: tuple, negatives: tuple) -> DBMParams:
    """Gradient of ``mean E(positives) - mean E(negatives)`` with both held fixed."""
    positives = jax.lax.stop_gradient(positives)
    negatives = jax.lax.stop_gradient(negatives)

    def gap(p):
        return jnp.mean(jax.vmap(dbm.energy, in_axes=(None, 0))(p, positives)) - jnp.mean(
            jax.vmap(dbm.energy, in_axes=(None, 0))(p, negatives)
        )

    return jax.grad(gap)(params)


def pcd_gradient(
    key: PRNGKeyArray,
    params: DBMParams,
    v_data: Float[Array, "B V"],
    chains: tuple,
    *,
    k: int = 1,
    mean_field_iters: int = 10,
    mean_field_init: str = "half",
) -> tuple[DBMParams, tuple, tuple]:
    """PCD estimate of ``-∇ mean L(v_data)``; returns ``(grads, new_chains, mean-field means)``.

    ``chains`` is a tuple of layer batches ``(M, n_l)``; they advance ``k`` odd/even sweeps
    under the current parameters.  The positive phase is ``mean_field_iters`` sweeps from
    :func:`egm.energies.dbm.mean_field_init` (``mean_field_init``).
    """
    mu = jax.vmap(
        lambda v: dbm.mean_field_unrolled(params, v, mean_field_iters, init=mean_field_init)
    )(v_data)
    chains, _ = run(_DBM_GIBBS, key, chains, params, k)
    grads = energy_gap_grad(params, (v_data, *mu), chains)
    return grads, chains, mu


def centered_gradient(grads: DBMParams, offsets: tuple) -> DBMParams:
    r"""The centered gradient of a layered BM (Montavon & Müller 2012; Melchior et al. 2016).

    A gradient step taken in the centered parameterisation (:func:`egm.energies.dbm.from_centered`
    with offsets ``μ_l``) and mapped back to the ordinary ``(W, b)``:

    ``ΔW_l = ∇W_l - μ_{l-1} ∇b_lᵀ - ∇b_{l-1} μ_lᵀ``,
    ``Δb_l = ∇b_l - ΔW_lᵀ μ_{l-1} - ΔW_{l+1} μ_{l+1}``

    (``W_l`` couples layers ``l-1`` and ``l``).  This is ``J Jᵀ ∇`` with ``J`` the Jacobian of
    ``from_centered`` (linear for fixed offsets), so it is exact for any loss gradient; with
    zero offsets it is the identity, and for one hidden layer it is the RBM's
    :func:`egm.estimators.contrastive.centered_gradient`.
    """
    gW, gb = grads.weights, grads.biases
    dW = tuple(
        g - jnp.outer(offsets[l], gb[l + 1]) - jnp.outer(gb[l], offsets[l + 1])
        for l, g in enumerate(gW)
    )
    L = len(gb)
    db = []
    for l in range(L):
        d = gb[l]
        if l > 0:
            d = d - offsets[l - 1] @ dW[l - 1]
        if l < L - 1:
            d = d - dW[l] @ offsets[l + 1]
        db.append(d)
    return DBMParams(dW, tuple(db))
