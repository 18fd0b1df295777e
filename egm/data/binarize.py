"""Binarization protocols for grey images (Deep Learning §20.2 needs binary visibles).

Published binarized-MNIST likelihoods use one of two stochastic protocols, and
results are only comparable within a protocol:

* **fixed**: one Bernoulli(p = grey value) draw per pixel, made once with a fixed
  seed; every epoch sees the same binary images (:func:`binarize_fixed`).
* **dynamic**: a fresh Bernoulli draw for every minibatch / epoch, inside the
  jitted training step (:func:`binarize_dynamic`).

A third, deterministic one, **threshold** (pixel on iff grey > 0.5), is handy for
debugging (:func:`binarize_threshold`). :func:`describe_protocol` writes the one-line
description that results files quote.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.data.validate import check_unit_interval
from egm.errors import ConfigError

__all__ = [
    "BINARIZATIONS",
    "binarize_dynamic",
    "binarize_fixed",
    "binarize_threshold",
    "describe_protocol",
]

BINARIZATIONS: tuple[str, ...] = ("fixed", "dynamic", "threshold")
"""Names of the binarization protocols, as :func:`describe_protocol` accepts them."""


def binarize_fixed(x: Float[ArrayLike, "*shape"], seed: int) -> Float[np.ndarray, "*shape"]:
    """One seeded Bernoulli draw per entry: ``b = 1[u < x]`` with ``u ~ U[0, 1)``.

    ``P(b = 1) = x``. The uniforms come from numpy's ``Generator(PCG64(seed))``
    (float32 stream), which is specified bit for bit, so the same ``seed`` gives the
    same binary data on every machine and every numpy version that keeps PCG64.
    Grey values 0 and 1 map to 0 and 1 exactly. Use a different seed per split
    (e.g. seed, seed + 1, seed + 2 for train / valid / test) when you binarize
    several arrays, so they are independent draws.

    Args:
      x: grey values in ``[0, 1]``, any shape (numpy or jax array; read on the host).
      seed: non-negative integer seed.

    Returns:
      float32 numpy array of 0s and 1s, same shape as ``x``.

    Raises:
      DataError: if ``x`` has values outside ``[0, 1]`` or NaN/inf.
      ConfigError: if ``seed`` is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
    arr = np.asarray(x, dtype=np.float32)
    check_unit_interval(arr, "x")
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    u = rng.random(arr.shape, dtype=np.float32)
    return (u < arr).astype(np.float32)


def binarize_dynamic(key: PRNGKeyArray, x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    """A fresh Bernoulli(p = x) draw per entry, as float32 0/1; jit-able.

    Call it with a new key every minibatch (e.g. ``jax.random.fold_in(key, step)``)
    for dynamic binarization. ``x`` is not range-checked here (it may be traced);
    check it once on the host with :func:`egm.data.check_unit_interval`.
    """
    return jax.random.bernoulli(key, jnp.asarray(x)).astype(jnp.float32)


def binarize_threshold(
    x: Float[ArrayLike, "*shape"], threshold: float = 0.5
) -> Float[np.ndarray, "*shape"] | Float[Array, "*shape"]:
    """Deterministic binarization ``b = 1[x > threshold]`` as float32.

    Returns a numpy array for numpy input and a jax array for jax input (so it
    also works inside ``jit``).
    """
    if isinstance(x, jax.Array):
        return (x > threshold).astype(jnp.float32)
    return (np.asarray(x) > threshold).astype(np.float32)


def describe_protocol(name: str, seed: int | None = None, *, threshold: float = 0.5) -> str:
    """One-line description of a binarization protocol, for results files.

    >>> describe_protocol("fixed", seed=0)
    'fixed binarization: one Bernoulli(p=grey) draw per pixel, numpy PCG64 seed 0'

    Args:
      name: one of :data:`BINARIZATIONS`.
      seed: the seed of the draw; required for ``"fixed"``, optional for ``"dynamic"``
        (the experiment's root seed), ignored for ``"threshold"``.
      threshold: the threshold of ``"threshold"``.

    Raises:
      ConfigError: unknown name, or ``"fixed"`` without a seed.
    """
    if name == "fixed":
        if seed is None:
            raise ConfigError("describe_protocol('fixed') needs the seed of the draw")
        return f"fixed binarization: one Bernoulli(p=grey) draw per pixel, numpy PCG64 seed {seed}"
    if name == "dynamic":
        text = "dynamic binarization: a fresh Bernoulli(p=grey) draw per pixel for every minibatch"
        return text if seed is None else f"{text}, jax root seed {seed}"
    if name == "threshold":
        return f"threshold binarization: pixel = 1 if grey > {threshold:g} else 0"
    raise ConfigError(f"unknown binarization {name!r}; expected one of {BINARIZATIONS}")
