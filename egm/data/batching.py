"""Shuffled minibatches as index arrays, for a whole epoch inside one ``lax.scan``.

Keep the dataset resident on the device and scan over the rows of
``minibatch_indices(key, n, batch_size)``, gathering ``data[idx]`` per step; the
shapes are static, so an epoch compiles once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int, PRNGKeyArray

from egm.errors import ConfigError

__all__ = ["check_batch_size", "minibatch_indices"]


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def check_batch_size(n: int, batch_size: int) -> None:
    """Check on the host that ``1 <= batch_size <= n`` (both Python/numpy integers).

    Raises:
      ConfigError: naming the values, e.g. a batch larger than the dataset, which
        would give zero minibatches per epoch.
    """
    if not _is_int(n) or n < 1:
        raise ConfigError(f"the number of examples n must be a positive int, got {n!r}")
    if not _is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size > n:
        raise ConfigError(
            f"batch_size {batch_size} is larger than the {n} examples: an epoch would have "
            "no full minibatch; use batch_size <= n"
        )


def minibatch_indices(key: PRNGKeyArray, n: int, batch_size: int) -> Int[Array, "b batch"]:
    """A random permutation of ``0 .. n-1`` cut into ``n // batch_size`` full minibatches.

    The last ``n % batch_size`` indices of the permutation are dropped, so which
    examples are left out changes from epoch to epoch. ``n`` and ``batch_size`` are
    static Python ints (they fix the output shape); ``key`` may be traced, so the
    function works inside ``jit`` / ``scan``. Same key, same batches.

    Returns:
      int32 array of shape ``(n // batch_size, batch_size)`` with distinct entries.

    Raises:
      ConfigError: (at trace time) if ``batch_size`` is not in ``1..n``.
    """
    check_batch_size(n, batch_size)
    n_batches = n // batch_size
    perm = jax.random.permutation(key, n).astype(jnp.int32)
    return perm[: n_batches * batch_size].reshape(n_batches, batch_size)
