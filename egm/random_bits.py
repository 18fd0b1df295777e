"""Fast random bits and 24-bit uniforms for samplers whose cost is their random draws.

The bottom layer of egm, next to :mod:`egm.distributions`.  On XLA:CPU a block Gibbs sweep of
a convolutional RBM spends about half its time generating uniforms; XLA's own Threefry-2x32
bit generator (``lax.rng_bit_generator`` with ``RNG_THREE_FRY``) produces the same kind of
counter-based bits about 1.9x faster than ``jax.random.uniform``'s lowering (measured: 802,816
draws, 3.4 ms vs 6.3 ms, non-partitionable threefry; ``RNG_PHILOX`` 12.6 ms and ``"rbg"``
keys 12 ms were slower on CPU).  The bits are a deterministic function of the typed key, so
same key, same draws; but they are a *different stream* from ``jax.random.uniform(key)``.

* :func:`bits` -- ``uint32`` bits from a typed key (vmap-safe: a batch of keys gives each key
  its own bits, as ``jax.random`` does; the primitive's own batching rule would draw every
  member's bits from the first key);
* :func:`uniform24` -- uniforms on the grid ``{0, 2^-24, ..., 1 - 2^-24}`` (24-bit numbers, four
  from every three words: the resolution of a float32 mantissa, finer than
  ``jax.random.uniform``'s 2^-23);
* :func:`bernoulli24` -- ``u < p`` as an integer comparison of the same 24 bits against
  ``floor(p · 2^24)`` (``p = 1`` always fires, ``p = 0`` never).

And ``jax.random``'s *own* stream, faster: on CPU, JAX lowers the Threefry-2x32 hash as a
rolled 5-iteration while loop; :func:`fast_split`, :func:`fast_uniform`,
:func:`fast_bernoulli` and :func:`fast_normal` compute the same bits (both
``jax_threefry_partitionable`` settings; checked bit for bit in tests/models/test_vae.py)
with the 20 rounds written out, which XLA fuses into the consumer (a 100 x 784 Bernoulli
draw 198 µs vs 359 µs for ``jax.random.bernoulli``, measured at load 7.4, BUILD_NOTES.md).
Other key types and dtypes fall back to ``jax.random``.  They pay when fused into elementwise
work (the VAE's binarization and reparameterised normals); a large block drawn once and then
sliced (the conv RBM's GEMM sweep) is faster from :func:`bits` (measured 7801 vs 6037
chain-sweeps/s).  ``fast_uniform(..., partitionable=False)`` fixes the counter layout
whatever the setting: the conv RBM's one-channel sweep without pooling draws so (with the
partitionable layout XLA:CPU fused the hash into the taps kernel, slower; BUILD_NOTES.md).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, PRNGKeyArray, UInt32

__all__ = [
    "bernoulli24",
    "bits",
    "fast_bernoulli",
    "fast_normal",
    "fast_split",
    "fast_uniform",
    "uniform24",
    "unpack24",
]

_SCALE = 2.0**-24


def _key4(key: PRNGKeyArray) -> UInt32[Array, " 4"]:
    """The 4-word uint32 state ``lax.rng_bit_generator`` takes: a threefry key's two words
    then two zeros (an ``rbg`` key's data is already 4 words)."""
    data = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    if data.shape[0] >= 4:
        return data[:4]
    return jnp.concatenate([data, jnp.zeros((4 - data.shape[0],), jnp.uint32)])


def _bits_one(key, shape):
    return lax.rng_bit_generator(_key4(key), shape, jnp.uint32,
                                 algorithm=lax.RandomAlgorithm.RNG_THREE_FRY)[1]  # fmt: skip


def bits(key: PRNGKeyArray, shape: tuple[int, ...]) -> UInt32[Array, "..."]:
    """``shape`` uniformly random ``uint32`` words from XLA's Threefry-2x32 bit generator
    keyed by the typed ``key``.  Under ``jax.vmap`` over keys each key draws its own words
    (a ``lax.map`` over the batch): vmap equals the loop, but runs the keys one after the
    other, so draw one large block per key (a whole sweep of all chains), not one small
    block per example under ``vmap`` (``jax.random`` vectorises that case)."""
    shape = tuple(int(s) for s in shape)

    @jax.custom_batching.custom_vmap
    def draw(k):
        return _bits_one(k, shape)

    @draw.def_vmap
    def _rule(axis_size, in_batched, k):
        del axis_size
        if not in_batched[0]:
            return _bits_one(k, shape), False
        return lax.map(draw, k), True

    return draw(key)


def _top24(b: UInt32[Array, "..."]) -> Array:
    return (b >> 8).astype(jnp.int32)


def unpack24(words: UInt32[Array, "3 M"]) -> Array:
    """The ``4M`` disjoint 24-bit fields of ``3M`` words, as int32: row ``j`` of ``words``
    holds bits ``32j..32j+31`` of each column's 96 bits, cut into four 24-bit numbers
    ``(w0 >> 8, (w0 & 0xff) << 16 | w1 >> 16, (w1 & 0xffff) << 8 | w2 >> 24, w2 & 0xffffff)``,
    returned as ``[all first numbers, all second, all third, all fourth]``.  Independent
    uniform words give independent uniform 24-bit numbers (each a fixed set of 24 of the
    bits), with a quarter fewer words than one per number."""
    w0, w1, w2 = words[0], words[1], words[2]
    parts = (w0 >> 8, ((w0 & 0xFF) << 16) | (w1 >> 16), ((w1 & 0xFFFF) << 8) | (w2 >> 24),
             w2 & 0xFFFFFF)  # fmt: skip
    return jnp.concatenate(parts).astype(jnp.int32)


def uniform24(key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """Float32 uniforms ``u = m · 2^-24`` with ``m`` a 24-bit number of :func:`bits`, four
    from every three words (:func:`unpack24`): every point of the grid ``{0, 2^-24, ..., 1 -
    2^-24}`` with probability 2^-24 (exact in float32), so ``P(u < p) = ⌈p · 2^24⌉ / 2^24``
    for any ``p`` in [0, 1].  Packing the draws is 21 % faster in the conv RBM's sweep than
    one word per draw (14,950 vs 12,350 chain-sweeps/s, measured; BUILD_NOTES.md)."""
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    m = unpack24(bits(key, (3, -(-n // 4))))[:n]
    return (m.astype(jnp.float32) * jnp.float32(_SCALE)).reshape(shape)


def bernoulli24(key: PRNGKeyArray, p: Float[Array, "..."]) -> Bool[Array, "..."]:
    """``Bernoulli(p)`` draws, one per entry of ``p``: ``m < floor(p · 2^24)`` with ``m`` the
    top 24 bits of :func:`bits` (``P(on) = floor(p · 2^24) / 2^24``, within 2^-24 of ``p``;
    ``p = 1`` always on, ``p = 0`` never)."""
    return _top24(bits(key, p.shape)) < (p * jnp.float32(2.0**24)).astype(jnp.int32)


# ----------------------------------------------------------------------------------------
# Random draws: jax.random's own Threefry-2x32 stream, hashed without XLA:CPU's loop
# ----------------------------------------------------------------------------------------
# On CPU, JAX lowers the Threefry-2x32 hash as a rolled 5-iteration while loop (short compile):
# in the MNIST VAE step (benchmarks/vae_train.py) the binarization's and the reparameterised
# draws' loops took ~13% of the thunk time.  The functions below compute the SAME bits as
# ``jax.random`` (both ``jax_threefry_partitionable`` settings; checked bit for bit in
# tests/models/test_vae.py) with the 20 rounds unrolled into one fused elementwise kernel;
# other key types and dtypes fall back to ``jax.random``.

_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1: Array, k2: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """The Threefry-2x32 hash (20 rounds) of the counter pair ``(x0, x1)`` under key
    ``(k1, k2)``, as ``jax.random``'s ``threefry2x32`` primitive computes it."""
    ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r)))
        x0, x1 = x0 + ks[(i + 1) % 3], x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _is_threefry(key: PRNGKeyArray) -> bool:
    return str(jax.random.key_impl(key)) == "threefry2x32"


def _key_words(key: PRNGKeyArray) -> tuple[Array, Array]:
    data = jax.random.key_data(key)
    return data[..., 0], data[..., 1]


def _hash_counts(key: PRNGKeyArray, n: int) -> Array:
    """``jax.random``'s non-partitionable layout: the counters ``0 .. n-1`` (zero-padded to
    an even count ``2h``) cut into halves, pair ``j = (j, j + h)`` hashed, and the output
    words concatenated, so word ``i`` is word ``i // h`` of the hash of pair ``i mod h``.
    Computed per word with a select, not a concatenation: fused into a consumer, a
    concatenation compiled to a scalar loop on XLA:CPU (measured 6-10x slower)."""
    h = (n + 1) // 2
    i = jnp.arange(n, dtype=jnp.uint32)
    first = i < h
    j = jnp.where(first, i, i - jnp.uint32(h))
    partner = j + jnp.uint32(h)
    if n % 2:
        partner = jnp.where(partner == n, jnp.uint32(0), partner)
    h0, h1 = _threefry2x32(*_key_words(key), j, partner)
    return jnp.where(first, h0, h1)


def _hash_pairs(key: PRNGKeyArray, n: int) -> tuple[Array, Array]:
    """``jax.random``'s partitionable layout: counter ``i`` is the pair ``(0, i)``."""
    zeros, counts = jnp.zeros((n,), jnp.uint32), jnp.arange(n, dtype=jnp.uint32)
    return _threefry2x32(*_key_words(key), zeros, counts)


def _random_bits(
    key: PRNGKeyArray, shape: tuple[int, ...], partitionable: bool | None = None
) -> Array:
    """``jax.random.bits(key, shape)`` (uint32) for a threefry key, under the
    ``jax_threefry_partitionable`` setting ``partitionable`` (``None``: the current one)."""
    n = math.prod(shape)
    if jax.config.jax_threefry_partitionable if partitionable is None else partitionable:
        h0, h1 = _hash_pairs(key, n)
        return (h0 ^ h1).reshape(shape)
    return _hash_counts(key, n).reshape(shape)


def fast_split(key: PRNGKeyArray, num: int) -> PRNGKeyArray:
    """``jax.random.split(key, num)``, the same keys, without the CPU hash loop."""
    if not _is_threefry(key) or num >= 2**30:
        return jax.random.split(key, num)
    if jax.config.jax_threefry_partitionable:
        data = jnp.stack(_hash_pairs(key, num), axis=-1)
    else:
        data = _hash_counts(key, 2 * num).reshape(num, 2)
    return jax.random.wrap_key_data(data, impl="threefry2x32")


def fast_uniform(
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    minval: float = 0.0,
    maxval: float = 1.0,
    *,
    partitionable: bool | None = None,
) -> Float[Array, "..."]:
    """``jax.random.uniform(key, shape, jnp.float32, minval, maxval)``, the same numbers.

    ``partitionable`` fixes the counter layout: ``False`` gives the numbers
    ``jax.random.uniform`` draws under ``jax_threefry_partitionable=False`` whatever the
    current setting (each number is still a function of its own index only, so the draw
    shards like any elementwise op); ``None`` follows the setting."""
    shape = tuple(int(d) for d in shape)
    if not _is_threefry(key) or math.prod(shape) >= 2**31 - 1:
        if partitionable is not None:
            with jax.threefry_partitionable(partitionable):
                return jax.random.uniform(key, shape, jnp.float32, minval, maxval)
        return jax.random.uniform(key, shape, jnp.float32, minval, maxval)
    bits = _random_bits(key, shape, partitionable)
    mantissa = (bits >> jnp.uint32(9)) | jnp.uint32(0x3F800000)
    floats = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - jnp.float32(1.0)
    lo, hi = jnp.float32(minval), jnp.float32(maxval)
    return jnp.maximum(lo, floats * (hi - lo) + lo)


def fast_bernoulli(key: PRNGKeyArray, p: Float[Array, "..."]) -> Float[Array, "..."]:
    """``jax.random.bernoulli(key, p).astype(float32)``: the same draws, as 0./1. floats."""
    if p.dtype != jnp.float32:
        return jax.random.bernoulli(key, p).astype(jnp.float32)
    return (fast_uniform(key, p.shape) < p).astype(jnp.float32)


def fast_normal(
    key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32
) -> Float[Array, "..."]:
    """``jax.random.normal(key, shape, dtype)``: for float32, ``sqrt 2 * erfinv(u)``, ``u``
    uniform on ``(-1, 1)``, the same numbers; other dtypes fall back to ``jax.random``."""
    if jnp.dtype(dtype) != jnp.float32:
        return jax.random.normal(key, shape, dtype)
    lo = float(np.nextafter(np.float32(-1.0), np.float32(0.0)))
    u = fast_uniform(key, shape, lo, 1.0)
    return jnp.float32(math.sqrt(2.0)) * jax.lax.erf_inv(u)
