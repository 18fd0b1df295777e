"""Evaluation helpers for autoregressive nets (§20.10.7–20.10.10): ensembles, enumeration,
inpainting masks.

An ensemble of autoregressive models (orderings of an order-agnostic NADE, mask sets of a
MADE) is the MIXTURE ``p(x) = (1/K) Σ_k p_k(x)``; its log-likelihood is
``logsumexp_k log p_k(x) - log K``.  Averaging the members' logits instead gives a
different, unnormalised model (tested in ``tests/models/test_nade.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from jaxtyping import Array, Float

from egm.errors import ConfigError
from egm.models._autoregressive import ensemble_log_likelihood

__all__ = ["enumerate_log_probs", "ensemble_log_likelihood", "top_half_mask"]


def enumerate_log_probs(
    log_prob_fn: Callable[[Float[Array, "S D"]], Float[Array, " S"]], n_visible: int
) -> Float[Array, " S"]:
    """``log p(x)`` for all ``2^D`` binary vectors (rows of
    :func:`egm.estimators.exact.all_binary_states`); ``log_prob_fn`` takes a batch."""
    from egm.estimators.exact import all_binary_states

    return log_prob_fn(all_binary_states(n_visible))


def top_half_mask(height: int, width: int, rows: int | None = None) -> np.ndarray:
    """Boolean [height * width] mask of the first ``rows`` image rows (default: the top
    half), raster order: the observed pixels of an inpainting task."""
    rows = height // 2 if rows is None else rows
    if not 0 <= rows <= height:
        raise ConfigError(f"rows must be in [0, {height}], got {rows}")
    m = np.zeros((height, width), bool)
    m[:rows] = True
    return m.reshape(-1)
