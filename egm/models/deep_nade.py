"""Order-agnostic deep NADE (Uria, Murray & Larochelle 2014), §20.10.10.

One network gives EVERY conditional ``p(x_i | x_S)`` for any set ``S`` of observed units:
the input is the masked vector together with the mask, ``[x ⊙ m, m]`` (the mask tells the
hidden units which zeros are observed and which are missing), followed by ``L`` hidden
layers and ``D`` output logits,

    a¹ = W_x (x ⊙ m) + W_m m + c¹,   h^l = g(a^l),   a^{l+1} = U^l h^l + c^{l+1},
    p(x_i = 1 | x_S) = σ(V_i · h^L + b_i)      for i ∉ S,  m = 1_S.

Training over random orderings: for a random ordering ``o`` and a random split point
``d ~ U{0, …, D-1}``, ``S = {o_1..o_d}`` (a uniformly random subset of size ``d``), the
loss ``-D/(D-d) Σ_{i∉S} log p(x_i | x_S)`` is an unbiased estimate of the
ordering-averaged negative log-likelihood ``E_o[-log p(x | o)]``
(:func:`order_agnostic_loss`; tested exactly by enumerating subsets).

The exact ``log p(x | o)`` for an ordering needs the ``D`` conditionals with
``S = o_<d``.  The first layer is linear in the input, so its pre-activations follow the
NADE running sum ``a¹_{d+1} = a¹_d + W_x[o_d] x_{o_d} + W_m[o_d]``; deeper layers cost
one ``H x H`` product per position: O(D H²) per example instead of D full passes
(:func:`ordered_logits`, tested equal to the D masked passes).  Ensembles over orderings
are :func:`egm.eval.autoregressive.ensemble_log_likelihood` of the per-ordering values:
``log (1/K) Σ_k p(x | o_k)``, never an average of logits.
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
    inverse_permutation,
    sample_sequential,
)

__all__ = ["DeepNADE", "order_agnostic_loss", "ordered_log_prob", "ordered_logits", "sample"]

ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


class DeepNADE(nn.Module):
    """Order-agnostic NADE with hidden layers ``hidden`` (e.g. ``(500, 500)``).

    ``__call__(x, mask)`` returns the logits of ``p(x_i = 1 | x_S)`` for all ``i`` (pixel
    order), ``S`` the units with ``mask`` 1; entries ``i ∈ S`` are returned too but are
    not conditionals of anything.  Params: ``W_x, W_m`` [D, H₁], ``c1`` [H₁], ``Dense_l``
    for the deeper layers, ``V`` [H_L, D], ``b`` [D].
    """

    n_visible: int
    hidden: Sequence[int] = (500,)
    activation: str = "relu"

    def setup(self):
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden must be a non-empty tuple of sizes >= 1, got {self.hidden}")
        D, H1 = self.n_visible, self.hidden[0]
        init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
        # fan-in of the first layer is 2D (values and mask)
        init1 = nn.initializers.variance_scaling(0.5, "fan_in", "truncated_normal")
        self.W_x = self.param("W_x", init1, (D, H1))
        self.W_m = self.param("W_m", init1, (D, H1))
        self.c1 = self.param("c1", nn.initializers.zeros, (H1,))
        self.layers = [nn.Dense(h, kernel_init=init) for h in self.hidden[1:]]
        self.V = self.param("V", init, (self.hidden[-1], D))
        self.b = self.param("b", nn.initializers.zeros, (D,))

    def _top(self, a1: Array) -> Array:
        g = ACTIVATIONS[self.activation]
        h = g(a1)
        for layer in self.layers:
            h = g(layer(h))
        return h

    def __call__(
        self, x: Float[Array, "*batch D"], mask: Float[Array, "*batch D"]
    ) -> Float[Array, "*batch D"]:
        m = jnp.asarray(mask, x.dtype)
        a1 = (x * m) @ self.W_x + m @ self.W_m + self.c1
        return self._top(a1) @ self.V + self.b


def ordered_logits(
    model: DeepNADE, params: dict, x: Float[Array, "*batch D"], ordering: Int[ArrayLike, " D"]
) -> Float[Array, "*batch D"]:
    """Pixel-order logits of ``p(x_{o_d} | x_{o_<d})`` for every ``d``: the D conditionals
    of ordering ``o``, by the running sum in the first layer (O(D H₁ + D Σ H_l H_{l+1}))."""
    o = jnp.asarray(ordering)
    single = x.ndim == 1
    xb = x[None] if single else x
    P = params["params"]
    B = xb.shape[0]

    def body(a, inp):
        wx, wm, v, b_d, x_d = inp
        h = model.apply(params, a, method=DeepNADE._top)
        return a + x_d[:, None] * wx + wm, h @ v + b_d

    a0 = jnp.broadcast_to(P["c1"], (B, P["c1"].shape[0]))
    xs = (P["W_x"][o], P["W_m"][o], P["V"][:, o].T, P["b"][o], xb[:, o].T)
    _, logits_o = jax.lax.scan(body, a0, xs)
    out = jnp.zeros_like(xb).at[:, o].set(logits_o.T)
    return out[0] if single else out


def ordered_log_prob(
    model: DeepNADE, params: dict, x: Float[Array, "*batch D"], ordering: Int[ArrayLike, " D"]
) -> Float[Array, "*batch"]:
    """Exact ``log p(x | o)`` (nats) under ordering ``o``."""
    return bernoulli_log_prob(ordered_logits(model, params, x, ordering), x)


def order_agnostic_loss(
    model: DeepNADE, params: dict, x: Float[Array, "B D"], key: PRNGKeyArray
) -> Float[Array, ""]:
    """Mean over the batch of ``-D/(D-d) Σ_{i∉S} log p(x_i | x_S)`` with, per example, a
    fresh ``d ~ U{0..D-1}`` and ``S`` the first ``d`` units of a random ordering: an
    unbiased estimate of ``E_o[-log p(x | o)]`` (Uria et al. 2014, eq. 9)."""
    B, D = x.shape
    k_d, k_o = jax.random.split(key)
    d = jax.random.randint(k_d, (B, 1), 0, D)
    rank = jnp.argsort(jax.random.uniform(k_o, (B, D)), axis=1)  # position of each unit
    mask = (rank < d).astype(x.dtype)
    logits = model.apply(params, x, mask)
    ll = x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)
    ll_missing = jnp.sum(ll * (1.0 - mask), axis=1)
    return -jnp.mean(D / (D - d[:, 0]) * ll_missing)


def sample(
    key: PRNGKeyArray,
    model: DeepNADE,
    params: dict,
    ordering: Int[ArrayLike, " D"],
    x_clamp: Float[ArrayLike, " D"] | None = None,
    clamp_mask: Bool[ArrayLike, " D"] | None = None,
) -> Float[Array, " D"]:
    """Ancestral sample along ``ordering`` (D masked passes).  With clamped units and an
    ordering that puts them first (:func:`egm.models._autoregressive.observed_first_ordering`)
    this is an exact draw from ``p(x_free | x_clamped)`` under that ordering."""
    o = jnp.asarray(ordering)
    pos = inverse_permutation(o)

    def logits_fn(x, d):
        return model.apply(params, x, (pos < d).astype(x.dtype))

    return sample_sequential(key, logits_fn, o, x_clamp=x_clamp, clamp_mask=clamp_mask)
