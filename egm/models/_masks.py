"""MADE connectivity masks from unit degrees (Germain, Gregor, Murray & Larochelle 2015).

Every unit gets a degree: input unit ``i`` the position ``m⁰(i) ∈ {1..D}`` of ``i`` in the
ordering, hidden unit ``k`` of layer ``l`` a degree ``m^l(k)`` drawn uniformly from
``{min_k' m^{l-1}(k'), …, D-1}``.  A hidden weight is kept iff ``m^l(k) ≥ m^{l-1}(k')`` and
an output weight iff ``m⁰(d) > m^L(k)``, so output ``d`` sees only inputs of smaller
degree: the autoregressive property for ANY draw.  Masks are a pure function of a key
(jit-able), so a training step can pick mask ``k`` of a fixed set as
``made_masks(fold_in(mask_key, k), ...)`` with a traced ``k`` (connectivity-agnostic
training, Germain et al. §4) without storing the set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from egm.errors import ConfigError
from egm.models._autoregressive import inverse_permutation

__all__ = ["MADEMasks", "made_masks"]


class MADEMasks(NamedTuple):
    """``hidden[l]`` masks the weights into hidden layer ``l`` ([in, out]); ``output`` the
    weights from the last hidden layer to the logits ([H_L, D]); ``ordering`` [D]."""

    hidden: tuple[Float[Array, "i o"], ...]
    output: Float[Array, "H D"]
    ordering: Int[Array, " D"]


def made_masks(
    key: PRNGKeyArray,
    n_visible: int,
    hidden: Sequence[int],
    order_agnostic: bool = False,
) -> MADEMasks:
    """Draw one MADE mask set: a random ordering if ``order_agnostic`` (else the identity)
    and random hidden degrees (see module docstring).  Pure and jit-able in ``key``."""
    D = n_visible
    if D < 2:
        raise ConfigError(f"MADE needs n_visible >= 2, got {D}")
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"hidden must be a non-empty tuple of sizes >= 1, got {tuple(hidden)}")
    keys = jax.random.split(key, len(hidden) + 1)
    if order_agnostic:
        ordering = jax.random.permutation(keys[0], D)
    else:
        ordering = jnp.arange(D)
    m_prev = inverse_permutation(ordering) + 1  # input degrees 1..D
    masks = []
    for l, h in enumerate(hidden):
        low = jnp.min(m_prev)
        m = jax.random.randint(keys[l + 1], (h,), low, D)  # {low, ..., D-1}
        masks.append((m[None, :] >= m_prev[:, None]).astype(jnp.float32))
        m_prev = m
    out = (inverse_permutation(ordering)[None, :] + 1 > m_prev[:, None]).astype(jnp.float32)
    return MADEMasks(tuple(masks), out, ordering)
