"""MADE: masked autoencoder for distribution estimation (Germain et al. 2015), §20.10.10.

An ordinary MLP ``x → h¹ → … → h^L → logits`` whose weight matrices are multiplied by
binary masks (:mod:`egm.models._masks`) so that logit ``d`` depends only on the inputs
before ``d`` in the mask set's ordering: all ``D`` conditionals, hence the exact
``log p(x)``, in ONE forward pass.

Connectivity-agnostic training draws one of ``n_masks`` mask sets per minibatch (and,
order-agnostic, its ordering); at test time the ensemble over mask sets is
``log (1/K) Σ_k p_k(x)`` (:func:`ensemble_log_prob`), a mixture, never an average of
logits.  (Germain et al.'s optional direct input→output connections are not included.)

Use::

    model = MADE(784, (500,))
    masks = made_masks(key, 784, (500,))
    params = model.init(key, x[:1], masks)
    ll = model.apply(params, x, masks, method=MADE.log_prob)
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from egm.errors import ConfigError
from egm.models._autoregressive import (
    bernoulli_log_prob,
    ensemble_log_likelihood,
    sample_sequential,
)
from egm.models._masks import MADEMasks, made_masks

__all__ = ["MADE", "MADEMasks", "ensemble_log_prob", "made_masks", "mask_set", "sample"]

ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


class MADE(nn.Module):
    """Masked MLP with hidden sizes ``hidden``; ``__call__(x, masks)`` → logits [..., D]
    in pixel order.  Params: ``W_l`` [in, out], ``c_l`` per hidden layer, ``V`` [H_L, D],
    ``b`` [D]."""

    n_visible: int
    hidden: Sequence[int] = (500,)
    activation: str = "relu"

    def setup(self):
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden must be a non-empty tuple of sizes >= 1, got {self.hidden}")
        init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
        sizes = (self.n_visible, *self.hidden)
        self.Ws = [
            self.param(f"W_{l}", init, (a, b))
            for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        ]
        self.cs = [
            self.param(f"c_{l}", nn.initializers.zeros, (h,)) for l, h in enumerate(self.hidden)
        ]
        self.V = self.param("V", init, (self.hidden[-1], self.n_visible))
        self.b = self.param("b", nn.initializers.zeros, (self.n_visible,))

    def __call__(self, x: Float[Array, "*batch D"], masks: MADEMasks) -> Float[Array, "*batch D"]:
        if len(masks.hidden) != len(self.hidden):
            raise ConfigError(
                f"masks have {len(masks.hidden)} hidden layers, the model {len(self.hidden)}; "
                f"draw them with made_masks(key, {self.n_visible}, {tuple(self.hidden)})"
            )
        g = ACTIVATIONS[self.activation]
        h = x
        for W, c, M in zip(self.Ws, self.cs, masks.hidden, strict=True):
            h = g(h @ (W * M) + c)
        return h @ (self.V * masks.output) + self.b

    def log_prob(self, x: Float[Array, "*batch D"], masks: MADEMasks) -> Float[Array, "*batch"]:
        """Exact ``log p(x)`` (nats) of the model with mask set ``masks``."""
        return bernoulli_log_prob(self(x, masks), x)


def mask_set(
    mask_key: PRNGKeyArray,
    k: Int[ArrayLike, ""],
    n_visible: int,
    hidden: Sequence[int],
    order_agnostic: bool = False,
) -> MADEMasks:
    """Mask set number ``k`` of the fixed family ``made_masks(fold_in(mask_key, k), ...)``
    (``k`` may be traced: a train step picks ``k ~ U{0..n_masks-1}`` per minibatch)."""
    return made_masks(jax.random.fold_in(mask_key, k), n_visible, hidden, order_agnostic)


def ensemble_log_prob(
    model: MADE,
    params: dict,
    x: Float[Array, "*batch D"],
    mask_key: PRNGKeyArray,
    n_masks: int,
    order_agnostic: bool = False,
) -> Float[Array, "*batch"]:
    """``log (1/K) Σ_{k<K} p(x | masks_k)`` over the first ``K = n_masks`` mask sets of the
    family (a ``lax.map`` over ``k``, so memory does not grow with ``K``)."""

    def one(k):
        m = mask_set(mask_key, k, model.n_visible, model.hidden, order_agnostic)
        return model.apply(params, x, m, method=MADE.log_prob)

    return ensemble_log_likelihood(jax.lax.map(one, jnp.arange(n_masks)))


def sample(
    key: PRNGKeyArray,
    model: MADE,
    params: dict,
    masks: MADEMasks,
    x_clamp: Float[ArrayLike, " D"] | None = None,
    clamp_mask: Bool[ArrayLike, " D"] | None = None,
) -> Float[Array, " D"]:
    """Ancestral sample under one mask set (``D`` forward passes, along its ordering);
    clamped units keep ``x_clamp`` (exact conditional when they precede the free ones)."""
    return sample_sequential(
        key,
        lambda x, d: model.apply(params, x, masks),
        masks.ordering,
        x_clamp=x_clamp,
        clamp_mask=clamp_mask,
    )
