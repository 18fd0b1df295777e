"""Neural autoregressive network (§20.10.9; Bengio & Bengio 2000).

Each conditional gets its own group of hidden units, and the groups are shared left to
right (the reuse principle, Fig. 20.9): group ``k`` (``k = 1 … D-1``, ``group_size`` units)
sees the first ``k`` units of the ordering,

    h_k = g(c_k + W_k x_{o_≤k}),
    p(x_{o_d} = 1 | x_{o_<d}) = σ(b_{o_d} + Σ_{k<d} V_{k, o_d} h_k),

so the features computed from ``x_{o_≤k}`` are reused by every later conditional instead of
each conditional having a network of its own (which would cost O(D²) groups).  Unlike NADE
(§20.10.10) the groups do NOT share weights: ``W_k`` is its own matrix for every ``k``.
It is a masked MLP with DETERMINISTIC degrees (group ``k`` has degree ``k``), so all ``D``
conditionals come out of one forward pass of two masked matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.models._autoregressive import bernoulli_log_prob, check_ordering, sample_sequential

__all__ = ["NeuralAutoregressive", "group_masks", "sample"]

ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


def group_masks(
    ordering: tuple[int, ...], group_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(M_in [D, (D-1)G], M_out [(D-1)G, D], degrees [(D-1)G])``: hidden unit of group
    ``k`` (degree ``k``) sees input ``i`` iff ``pos(i) + 1 ≤ k`` and feeds output ``d`` iff
    ``k < pos(d) + 1``."""
    D = len(ordering)
    pos = np.empty(D, np.int64)
    pos[list(ordering)] = np.arange(D)
    deg_in = pos + 1
    degrees = np.repeat(np.arange(1, D), group_size)
    m_in = (deg_in[:, None] <= degrees[None, :]).astype(np.float32)
    m_out = (degrees[:, None] < deg_in[None, :]).astype(np.float32)
    return m_in, m_out, degrees


class NeuralAutoregressive(nn.Module):
    """``__call__(x)`` → pixel-order logits of all conditionals.  Params: ``W`` [D, (D-1)G],
    ``c`` [(D-1)G], ``V`` [(D-1)G, D], ``b`` [D] (entries outside the masks unused)."""

    n_visible: int
    group_size: int = 1
    ordering: Sequence[int] | None = None
    activation: str = "sigmoid"

    def setup(self):
        if self.n_visible < 2:
            raise ConfigError(f"n_visible must be >= 2, got {self.n_visible}")
        if self.group_size < 1:
            raise ConfigError(f"group_size must be >= 1, got {self.group_size}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}")
        order = check_ordering(self.ordering, self.n_visible)
        m_in, m_out, _ = group_masks(order, self.group_size)
        self._m_in, self._m_out = jnp.asarray(m_in), jnp.asarray(m_out)
        D, Hn = self.n_visible, m_in.shape[1]
        # fan-in of group k is k inputs; a common scale keeps it simple
        init = nn.initializers.normal(1.0 / np.sqrt(D))
        self.W = self.param("W", init, (D, Hn))
        self.c = self.param("c", nn.initializers.zeros, (Hn,))
        self.V = self.param("V", init, (Hn, D))
        self.b = self.param("b", nn.initializers.zeros, (D,))

    def __call__(self, x: Float[Array, "*batch D"]) -> Float[Array, "*batch D"]:
        h = ACTIVATIONS[self.activation](x @ (self.W * self._m_in) + self.c)
        return h @ (self.V * self._m_out) + self.b

    def log_prob(self, x: Float[Array, "*batch D"]) -> Float[Array, "*batch"]:
        """Exact ``log p(x)`` (nats)."""
        return bernoulli_log_prob(self(x), x)


def sample(
    key: PRNGKeyArray,
    model: NeuralAutoregressive,
    params: dict,
    x_clamp: Float[ArrayLike, " D"] | None = None,
    clamp_mask: Bool[ArrayLike, " D"] | None = None,
) -> Float[Array, " D"]:
    """Ancestral sample along the model's ordering (clamped units keep ``x_clamp``)."""
    order = jnp.asarray(check_ordering(model.ordering, model.n_visible))
    return sample_sequential(
        key, lambda x, d: model.apply(params, x), order, x_clamp=x_clamp, clamp_mask=clamp_mask
    )
