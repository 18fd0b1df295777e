r"""Convolutional RBM with probabilistic max pooling (§20.6; Lee, Grosse, Ranganath & Ng 2009).

An image ``v`` of ``Nv × Nv`` pixels with ``C`` channels (binary, or real with unit
variance), ``K`` filters ``W^k`` of ``Nw × Nw × C`` shared over all positions, a detection
layer ``h`` of ``K`` maps of ``Nh × Nh`` units (``Nh = Nv - Nw + 1``, "valid" positions), a
bias ``b_k`` per filter and one visible bias ``a_c`` per input channel.  With the
cross-correlation ``(W^k ⋆ v)_{ij} = Σ_{r,s,c} v_{i+r, j+s, c} W_{r,s,c,k}`` (what
``lax.conv_general_dilated`` computes) the energy is (Lee et al. 2009, eq. 1 and 2)

.. math:: E(v, h) = -\sum_{k,i,j} h^k_{ij} \big((W^k ⋆ v)_{ij} + b_k\big) - \sum_{c} a_c
          \sum_{ij} v_{ijc} \;\big[ + \tfrac12 \sum v^2 \text{ for real } v \big].

**Probabilistic max pooling** (eq. 3–4).  The detection maps are cut into ``C_p × C_p``
blocks ``B_α`` (``pool``); within a block of one filter at most one detection unit is on,
and the pooling unit ``p^k_α`` is on iff one is.  A block therefore has ``C_p² + 1`` states
(all off, or exactly one unit on) and, given ``v``, the blocks are independent softmaxes
with an "off" state of logit 0: with ``I^k_{ij} = b_k + (W^k ⋆ v)_{ij}``

.. math:: P(h^k_{ij} = 1 \mid v) = \frac{e^{I^k_{ij}}}{1 + \sum_{(i',j') ∈ B_α} e^{I^k_{i'j'}}},
          \qquad P(p^k_α = 0 \mid v) = \frac{1}{1 + \sum_{(i',j') ∈ B_α} e^{I^k_{i'j'}}},

computed in log space (:func:`block_log_probs`).  A top-down input ``T^k_α`` to a pooling
unit (from a layer above, in a convolutional DBN) adds ``T^k_α`` to the logit of every
"on" state of its block.  Summing each block out analytically gives the free energy

.. math:: F(v) = -\sum_c a_c \sum_{ij} v_{ijc} \;[+ \tfrac12 \sum v^2]
          - \sum_{k, α} \log\big(1 + \sum_{(i,j) ∈ B_α} e^{I^k_{ij}}\big),

and ``pool = 1`` is an ordinary RBM whose weight matrix is the tied (Toeplitz) matrix of the
filters (:func:`dense_equivalent`; then ``log(1 + e^I)`` is the softplus of eq. 20.10).
Given ``h`` the visibles are independent: ``P(v_{ijc} = 1 | h) = σ(a_c + Σ_k (W^k ∗ h^k)_{ijc})``
with the "full" convolution ``∗`` (the transpose of ``⋆``), or ``N(a_c + Σ_k (W^k ∗ h^k), 1)``.

Every function acts on ONE example (``v``: ``(Nv, Nv, C)``, ``h``: ``(Nh, Nh, K)``, ``p``:
``(Nh/C_p, Nh/C_p, K)``); batches and chains come from ``jax.vmap``.  The static choices
(pooling size, binary or Gaussian visibles) are a :class:`ConvRBM` spec, passed first.
Training: :func:`cd_gradient` (CD-k / PCD-k with the sparsity regulariser of Lee et al. 2008)
(its objective for :func:`egm.train.make_step`: :func:`egm.run.conv.conv_rbm_objective`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.energies.rbm import RBMParams, bernoulli_logits
from egm.errors import ConfigError, DataError
from egm.random_bits import fast_uniform, uniform24

VISIBLES = ("binary", "gaussian")
_DIMS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class ConvRBM:
    """Static choices of a convolutional RBM: ``pool`` (the side ``C_p`` of a pooling block;
    1 = no pooling constraint) and ``visible`` ("binary" or "gaussian", unit variance)."""

    pool: int = 2
    visible: str = "binary"

    def __post_init__(self) -> None:
        if not isinstance(self.pool, numbers.Integral) or self.pool < 1:
            raise ConfigError(f"pool (the side of a pooling block) must be an integer >= 1, "
                              f"got {self.pool!r}")  # fmt: skip
        if self.visible not in VISIBLES:
            raise ConfigError(f"visible must be one of {VISIBLES}, got {self.visible!r}")

    @property
    def gaussian(self) -> bool:
        return self.visible == "gaussian"


class ConvRBMParams(NamedTuple):
    """Filters ``W`` (Nw, Nw, C, K), hidden bias per filter ``b`` (K,), visible bias per
    channel ``a`` (C,)."""

    W: Float[Array, "Nw Nw C K"]
    b: Float[Array, " K"]
    a: Float[Array, " C"]


class ConvRBMState(NamedTuple):
    """One configuration: visibles ``v``, detection units ``h`` and pooling units ``p``."""

    v: Float[Array, "Nv Nv C"]
    h: Float[Array, "Nh Nh K"]
    p: Float[Array, "Np Np K"]


# --------------------------------------------------------------------------- shapes, errors


def hidden_size(spec: ConvRBM, image_size: int, filter_size: int) -> int:
    """``Nh = Nv - Nw + 1``; raises :class:`ConfigError` unless the pooling divides it."""
    nh = image_size - filter_size + 1
    if filter_size < 1 or nh < 1:
        raise ConfigError(f"filters of size {filter_size} do not fit images of size "
                          f"{image_size}; need 1 <= filter_size <= image_size")  # fmt: skip
    if nh % spec.pool:
        fits = [w for w in range(1, image_size + 1) if (image_size - w + 1) % spec.pool == 0]
        raise ConfigError(
            f"the detection maps of {image_size}x{image_size} images under {filter_size}x"
            f"{filter_size} filters are {nh}x{nh}, which pooling blocks of {spec.pool}x"
            f"{spec.pool} do not divide; use a filter size in {fits[:6]} or another pool size"
        )
    return nh


def init(
    key: PRNGKeyArray,
    spec: ConvRBM,
    image_size: int,
    n_channels: int,
    n_filters: int,
    filter_size: int,
    *,
    scale: float = 0.01,
    hidden_bias: float = 0.0,
    data_mean: Float[ArrayLike, " C"] | None = None,
) -> ConvRBMParams:
    """``W ~ N(0, scale²)``, ``b = hidden_bias`` and ``a`` = the base-rate logit of each
    channel's mean (binary) or the mean itself (Gaussian), else 0."""
    hidden_size(spec, image_size, filter_size)
    if n_channels < 1 or n_filters < 1:
        raise ConfigError(f"need n_channels, n_filters >= 1, got {n_channels}, {n_filters}")
    W = scale * jax.random.normal(key, (filter_size, filter_size, n_channels, n_filters))
    a = jnp.zeros((n_channels,), jnp.float32)
    if data_mean is not None:
        m = jnp.broadcast_to(jnp.asarray(data_mean, jnp.float32), (n_channels,))
        if spec.gaussian:
            a = m
        else:
            m = jnp.clip(m, 1e-3, 1 - 1e-3)
            a = jnp.log(m) - jnp.log1p(-m)
    return ConvRBMParams(W=W.astype(jnp.float32), a=a,
                         b=jnp.full((n_filters,), hidden_bias, jnp.float32))  # fmt: skip


def check_data(spec: ConvRBM, params: ConvRBMParams, x: ArrayLike, name: str = "data") -> None:
    """Host-side check of a batch of images ``(N, Nv, Nv, C)``: the shape fits the filters and
    the pooling, the values are finite and, for binary visibles, all 0 or 1
    (:class:`DataError` otherwise)."""
    from egm.data.validate import check_binary, check_finite

    x = np.asarray(x)
    Nw, _, C, _ = params.W.shape
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[3] != C:
        raise DataError(f"{name} has shape {x.shape} but this conv RBM needs square images "
                        f"(batch, Nv, Nv, {C}); reshape MNIST with x.reshape(-1, 28, 28, 1)")  # fmt: skip
    nh = x.shape[1] - Nw + 1
    if nh < 1 or nh % spec.pool:
        raise DataError(
            f"{name}: images of {x.shape[1]}x{x.shape[2]} give {nh}x{nh} detection maps under "
            f"{Nw}x{Nw} filters, which {spec.pool}x{spec.pool} pooling blocks do not divide; "
            f"crop or pad the images (or choose filter_size / pool so that (Nv - Nw + 1) is a "
            f"multiple of pool)"
        )
    flat = x.reshape(len(x), -1)
    check_finite(flat, name)
    if not spec.gaussian:
        check_binary(flat, name)


# --------------------------------------------------------------------------- convolutions


def _correlate(v: Float[Array, "Nv Nv C"], W: Float[Array, "Nw Nw C K"]) -> Float[Array, "Nh Nh K"]:
    """``(W^k ⋆ v)_{ij}``: valid cross-correlation."""
    return jax.lax.conv_general_dilated(v[None], W, (1, 1), "VALID", dimension_numbers=_DIMS)[0]


def _full_conv(h: Float[Array, "Nh Nh K"], W: Float[Array, "Nw Nw C K"]) -> Float[Array, "Nv Nv C"]:  # fmt: skip
    """``Σ_k (W^k ∗ h^k)``: the transpose of :func:`_correlate` (the full convolution), the
    forward convolution of ``h`` zero-padded by ``Nw - 1`` with the flipped filters, in NCHW
    layout: on XLA:CPU with one visible channel about 3-10x faster than the NHWC forms
    (``linear_transpose`` of :func:`_correlate` or the padded NHWC convolution; measured, 100
    chains of 28x28 images, 16 7x7 filters; NHWC computes one output channel poorly)."""
    nw = W.shape[0]
    kernel = W[::-1, ::-1].transpose(2, 3, 0, 1)  # OIHW, O = C, I = K
    pad = ((nw - 1, nw - 1), (nw - 1, nw - 1))
    x = h.transpose(2, 0, 1)[None]
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), pad, dimension_numbers=("NCHW", "OIHW", "NCHW"))  # fmt: skip
    return y[0].transpose(1, 2, 0)


def detection_logits(spec: ConvRBM, params: ConvRBMParams, v: Float[Array, "Nv Nv C"]) -> Float[Array, "Nh Nh K"]:  # fmt: skip
    """``I^k_{ij} = b_k + (W^k ⋆ v)_{ij}``: the bottom-up input of every detection unit."""
    del spec
    return params.b + _correlate(v, params.W)


def visible_preactivation(spec: ConvRBM, params: ConvRBMParams, h: Float[Array, "Nh Nh K"]) -> Float[Array, "Nv Nv C"]:  # fmt: skip
    """``a_c + Σ_k (W^k ∗ h^k)``: the input of every visible unit (its mean if Gaussian)."""
    del spec
    return params.a + _full_conv(h, params.W)


# --------------------------------------------------------------------------- pooling blocks


def to_blocks(x: Float[Array, "Nh Nh K"], pool: int) -> Float[Array, "Np Np K n"]:
    """Detection maps as pooling blocks: ``(Nh, Nh, K) -> (Nh/C_p, Nh/C_p, K, C_p²)``."""
    nh, _, k = x.shape
    npool = nh // pool
    x = x.reshape(npool, pool, npool, pool, k).transpose(0, 2, 4, 1, 3)
    return x.reshape(npool, npool, k, pool * pool)


def from_blocks(x: Float[Array, "Np Np K n"], pool: int) -> Float[Array, "Nh Nh K"]:
    """The inverse of :func:`to_blocks`."""
    npool, _, k, _ = x.shape
    x = x.reshape(npool, npool, k, pool, pool).transpose(0, 3, 1, 4, 2)
    return x.reshape(npool * pool, npool * pool, k)


def block_log_probs(logits: Float[Array, "*B n"]) -> Float[Array, "*B n1"]:
    """Log-probabilities of the ``n + 1`` states of each block (unit ``j`` on, ..., then "all
    off" last) for on-logits ``logits``: ``log softmax([logits, 0])`` (eq. 3–4)."""
    full = jnp.concatenate([logits, jnp.zeros((*logits.shape[:-1], 1), logits.dtype)], -1)
    return full - jax.nn.logsumexp(full, axis=-1, keepdims=True)


def _pooled_logits(spec, params, v, top_down):
    logits = to_blocks(detection_logits(spec, params, v), spec.pool)
    return logits if top_down is None else logits + top_down[..., None]


def hidden_probs(
    spec: ConvRBM,
    params: ConvRBMParams,
    v: Float[Array, "Nv Nv C"],
    top_down: Float[Array, "Np Np K"] | None = None,
) -> tuple[Float[Array, "Nh Nh K"], Float[Array, "Np Np K"]]:
    """``(P(h = 1 | v), P(p = 1 | v))`` under probabilistic max pooling; ``top_down``: an
    input to each pooling unit from a layer above (added to its block's "on" logits)."""
    lp = block_log_probs(_pooled_logits(spec, params, v, top_down))
    h = from_blocks(jnp.exp(lp[..., :-1]), spec.pool)
    return h, -jnp.expm1(lp[..., -1])


def blocks_from_uniform(u: Float[Array, " *B"], logits: Float[Array, "*B n"]) -> tuple[Float[Array, "*B n"], Float[Array, " *B"]]:  # fmt: skip
    """Each block's state (``n`` on-logits, "off" at logit 0) from one uniform ``u`` in
    ``[0, 1)`` per block, inverted through the unnormalised cumulative weights: with
    ``m = max(0, max logits)``, ``e_j = e^{l_j - m}`` and ``Z = e^{-m} + Σ_j e_j``, the state
    is the number of ``c_j = Σ_{i≤j} e_i`` at most ``u·Z`` ("all off" when ``u·Z`` exceeds
    them all; no logarithm or division).  ``n = 1`` (no pooling) is Bernoulli(σ(l)):
    ``u · e^{-l} < 1 - u``, i.e. ``u < σ(l)``.  Returns the one-hot detection units and the
    pooling unit."""
    n = logits.shape[-1]
    if n == 1:
        on = (u * jnp.exp(-logits[..., 0]) < 1.0 - u).astype(logits.dtype)
        return on[..., None], on
    m = jnp.maximum(jnp.max(logits, axis=-1, keepdims=True), 0.0)
    cdf = jnp.cumsum(jnp.exp(logits - m), axis=-1)
    z = cdf[..., -1:] + jnp.exp(-m)
    idx = jnp.sum((u[..., None] * z) >= cdf, axis=-1)  # in 0..n; n = "all off"
    one_hot = (idx[..., None] == jnp.arange(n)).astype(logits.dtype)
    return one_hot, (idx < n).astype(logits.dtype)


def sample_blocks(key: PRNGKeyArray, logits: Float[Array, "*B n"]) -> tuple[Float[Array, "*B n"], Float[Array, " *B"]]:  # fmt: skip
    """One draw of each block's state (``n`` on-logits, "off" at logit 0): the one-hot
    detection units and the pooling unit (:func:`blocks_from_uniform`; one uniform per block,
    cheaper than ``n + 1`` Gumbel draws).  Per-example functions like this one draw with
    ``jax.random`` (vectorised under ``vmap`` over keys); the batched :func:`gibbs` and
    :func:`cd_gradient` draw all of a sweep's uniforms with one
    :func:`egm.random_bits.uniform24` call."""
    return blocks_from_uniform(jax.random.uniform(key, logits.shape[:-1], logits.dtype), logits)


def sample_hidden(
    key: PRNGKeyArray,
    spec: ConvRBM,
    params: ConvRBMParams,
    v: Float[Array, "Nv Nv C"],
    top_down: Float[Array, "Np Np K"] | None = None,
) -> tuple[Float[Array, "Nh Nh K"], Float[Array, "Np Np K"]]:
    """Draw ``(h, p) ~ P(h, p | v)`` (block by block, :func:`sample_blocks`)."""
    h, p = sample_blocks(key, _pooled_logits(spec, params, v, top_down))
    return from_blocks(h, spec.pool), p


def visible_mean(spec: ConvRBM, params: ConvRBMParams, h: Float[Array, "Nh Nh K"]) -> Float[Array, "Nv Nv C"]:  # fmt: skip
    """``E[v | h]``: ``σ(a + Σ_k W^k ∗ h^k)`` (binary) or ``a + Σ_k W^k ∗ h^k`` (Gaussian)."""
    x = visible_preactivation(spec, params, h)
    return x if spec.gaussian else jax.nn.sigmoid(x)


def visible_from_uniform(spec: ConvRBM, x: Float[Array, "Nv Nv C"], u: Float[Array, "Nv Nv C"]) -> Float[Array, "Nv Nv C"]:  # fmt: skip
    """``v ~ P(v | h)`` from its pre-activation ``x`` and one uniform ``u`` in ``[0, 1)`` per
    unit: ``u < σ(x)`` (binary), or ``x + Φ^{-1}(u)`` (Gaussian, unit variance, through
    ``√2 erf^{-1}(2u - 1)`` as ``jax.random.normal`` does)."""
    if spec.gaussian:
        lo = jnp.nextafter(jnp.float32(-1.0), jnp.float32(0.0))
        return x + jnp.sqrt(2.0).astype(x.dtype) * jax.lax.erf_inv(jnp.maximum(2.0 * u - 1.0, lo))
    return (u < jax.nn.sigmoid(x)).astype(x.dtype)


def sample_visible(
    key: PRNGKeyArray, spec: ConvRBM, params: ConvRBMParams, h: Float[Array, "Nh Nh K"]
) -> Float[Array, "Nv Nv C"]:
    """Draw ``v ~ P(v | h)``: Bernoulli, or Gaussian with unit variance."""
    x = visible_preactivation(spec, params, h)
    if spec.gaussian:
        return x + jax.random.normal(key, x.shape, x.dtype)
    return bernoulli_logits(key, x)


# --------------------------------------------------------------------------- energies


def _visible_term(spec: ConvRBM, params: ConvRBMParams, v) -> Float[Array, ""]:
    lin = -jnp.sum(v * params.a)
    return lin + 0.5 * jnp.sum(v * v) if spec.gaussian else lin


def energy(
    spec: ConvRBM, params: ConvRBMParams, v: Float[Array, "Nv Nv C"], h: Float[Array, "Nh Nh K"]
) -> Float[Array, ""]:
    """``E(v, h)`` of the module docstring, for a detection configuration ``h`` that obeys
    the pooling constraint (:func:`feasible`; the pooling units are ``p = OR`` of each
    block, and carry no energy of their own)."""
    return _visible_term(spec, params, v) - jnp.sum(h * detection_logits(spec, params, v))


def feasible(spec: ConvRBM, h: Float[Array, "Nh Nh K"]) -> Array:
    """Whether ``h`` has at most one unit on in every pooling block."""
    return jnp.all(jnp.sum(to_blocks(h, spec.pool), axis=-1) <= 1)


def free_energy(spec: ConvRBM, params: ConvRBMParams, v: Float[Array, "Nv Nv C"]) -> Float[Array, ""]:  # fmt: skip
    """``F(v) = -log Σ_{h feasible} exp(-E(v, h))``: every block summed out,
    ``-Σ_{k,α} log(1 + Σ_{B_α} e^{I})`` (the softplus for ``pool = 1``)."""
    logits = to_blocks(detection_logits(spec, params, v), spec.pool)
    full = jnp.concatenate([logits, jnp.zeros((*logits.shape[:-1], 1), logits.dtype)], -1)
    return _visible_term(spec, params, v) - jnp.sum(jax.nn.logsumexp(full, axis=-1))


def log_density(spec: ConvRBM, params: ConvRBMParams, v: Float[Array, "Nv Nv C"]) -> Float[Array, ""]:  # fmt: skip
    """Unnormalised ``log p(v) = -F(v)``."""
    return -free_energy(spec, params, v)


# --------------------------------------------------------------------------- Gibbs


def init_state(
    key: PRNGKeyArray, spec: ConvRBM, params: ConvRBMParams, v: Float[Array, "Nv Nv C"]
) -> ConvRBMState:
    """A chain state at ``v`` with ``(h, p) ~ P(h, p | v)``."""
    v = jnp.asarray(v, jnp.float32)
    h, p = sample_hidden(key, spec, params, v)
    return ConvRBMState(v, h, p)


def sweep(
    key: PRNGKeyArray, spec: ConvRBM, params: ConvRBMParams, state: ConvRBMState
) -> ConvRBMState:
    """One block Gibbs sweep down then up: ``v ~ P(v | h)``, then ``(h, p) ~ P(h, p | v)``."""
    return _sweep_u(spec, params, state, _uniforms(key, spec, state.v.shape, state.p.shape))


def _uniforms(key, spec, v_shape, p_shape):
    """The uniforms of one sweep (or of a batch of sweeps: leading axes of ``v_shape``
    beyond the image's 3), one ``jax.random.uniform`` call: one per visible, one per block."""
    lead = v_shape[:-3]
    nv, nb = int(np.prod(v_shape[-3:])), int(np.prod(p_shape[-3:]))
    u = jax.random.uniform(key, (*lead, nv + nb), jnp.float32)
    return u[..., :nv].reshape(v_shape), u[..., nv:].reshape(p_shape)


def _sweep_u(spec, params, state, uniforms):
    u_v, u_h = uniforms
    v = visible_from_uniform(spec, visible_preactivation(spec, params, state.h), u_v)
    h, p = blocks_from_uniform(u_h, _pooled_logits(spec, params, v, None))
    return ConvRBMState(v, from_blocks(h, spec.pool), p)


def gibbs(
    key: PRNGKeyArray,
    spec: ConvRBM,
    params: ConvRBMParams,
    state: ConvRBMState,
    n_sweeps: int,
) -> ConvRBMState:
    """``n_sweeps`` sweeps (:func:`sweep`) of a batch of chains (leading axis), one
    ``lax.scan`` over pre-split keys; ``n_sweeps = 0`` returns ``state``.

    Same law as ``n_sweeps`` vmapped :func:`sweep` calls, computed in a chains-minor layout
    (visibles ``(C, Nv, Nv, n)``, detection units ``(K, Nh, Nh, n)``: chains as the last,
    contiguous axis, transposed once on entry and once on exit) where both convolutions are
    one GEMM each over every chain and position (:func:`_correlate_m`, :func:`_full_conv_m`),
    and each sweep's uniforms for all chains come from one :func:`egm.random_bits.uniform24`
    call.  On XLA:CPU (100 chains of 28x28 images, 16 7x7 filters, CPU time of one thread)
    this took the correlation from 84 to 44 µs per chain and the full convolution from 154 to
    49 µs, against the per-example ``lax.conv_general_dilated`` forms (measured).

    Without pooling on single-channel images (``fused``) the correlation has no channel sum
    for a GEMM to exploit: each detection unit's ``Nw²`` taps are summed in one elementwise
    kernel with its uniform and its Bernoulli draw (:func:`_correlate_taps`), so neither the
    windows nor the detection inputs are written to memory, and the uniforms are two
    :func:`egm.random_bits.fast_uniform` draws per sweep (``jax.random.uniform``'s numbers)
    with the counter layout fixed to the non-partitionable one whatever
    ``jax_threefry_partitionable`` says: with the partitionable layout XLA:CPU fused the hash
    into the taps kernel, which ran slower than hashing into a buffer first (1.1x instead of
    1.6x the GEMM path, measured).  With pooling each block's units would recompute the taps,
    so pooling keeps the GEMM path.  100 chains of 28x28 digits, 16 7x7 filters: 1.5-1.6x the
    chain-sweeps/s of the GEMM path with ``uniform24`` block draws, in both threefry
    settings (measured, BUILD_NOTES.md)."""
    if n_sweeps == 0:
        return state
    W, b, a = params
    carry = (_minor(state.v), _minor(state.h), _minor(state.p))
    fused = spec.pool == 1 and W.shape[2] == 1
    correlate = _correlate_taps if fused else _correlate_m

    def uniforms(k, v_m, p_m):
        if fused:
            return (fast_uniform(k[0], v_m.shape, partitionable=False),
                    fast_uniform(k[1], p_m.shape, partitionable=False))  # fmt: skip
        nv = v_m.size
        u = uniform24(k, (nv + p_m.size,))
        return u[:nv].reshape(v_m.shape), u[nv:].reshape(p_m.shape)

    def body(c, k):
        v_m, h_m, p_m = c
        u_v, u_h = uniforms(k, v_m, p_m)
        pre = a[:, None, None, None] + _full_conv_m(h_m, W)
        v_m = visible_from_uniform(spec, pre, u_v)
        logits = b[:, None, None, None] + correlate(v_m, W)
        h_m, p_m = _blocks_m(spec.pool, logits, u_h)
        return (v_m, h_m, p_m), None

    keys = jax.random.split(key, (n_sweeps, 2) if fused else n_sweeps)
    (v_m, h_m, p_m), _ = jax.lax.scan(body, carry, keys)
    return ConvRBMState(_minor(v_m), _minor(h_m), _minor(p_m))


def _correlate_taps(v: Float[Array, "C Nv Nv n"], W: Float[Array, "Nw Nw C K"]) -> Float[Array, "K Nh Nh n"]:  # fmt: skip
    """:func:`_correlate_m` as a sum of ``Nw² C`` shifted images scaled by each tap's filter
    weights: one elementwise expression that XLA fuses into its consumer (:func:`gibbs` uses
    it for one channel; the GEMM of :func:`_correlate_m` wins when there is a channel sum)."""
    nw, _, c, _ = W.shape
    nh = v.shape[1] - nw + 1
    taps = itertools.product(range(nw), range(nw), range(c))
    return sum(W[r, s, ch][:, None, None, None] * v[ch : ch + 1, r : r + nh, s : s + nh]
               for r, s, ch in taps)  # fmt: skip


def _minor(x):
    """``(n, H, W, C) <-> (C, H, W, n)``: batch-major to chains-minor and back (an involution)."""
    return x.transpose(3, 1, 2, 0)


def _correlate_m(v: Float[Array, "C Nv Nv n"], W: Float[Array, "Nw Nw C K"]) -> Float[Array, "K Nh Nh n"]:  # fmt: skip
    """:func:`_correlate` of every chain at once in the chains-minor layout: the ``Nw² C``
    shifted windows stacked (contiguous runs of ``n``), then one ``(K, Nw²C) @ (Nw²C, ·)``
    GEMM."""
    nw, _, c, k = W.shape
    nh = v.shape[1] - nw + 1
    cols = jnp.stack([v[:, r : r + nh, s : s + nh] for r in range(nw) for s in range(nw)])
    out = W.reshape(nw * nw * c, k).T @ cols.reshape(nw * nw * c, -1)
    return out.reshape(k, nh, nh, v.shape[-1])


def _full_conv_m(h: Float[Array, "K Nh Nh n"], W: Float[Array, "Nw Nw C K"]) -> Float[Array, "C Nv Nv n"]:  # fmt: skip
    """:func:`_full_conv` of every chain at once in the chains-minor layout: one
    ``(Nw²C, K) @ (K, ·)`` GEMM gives each filter tap's contribution ``Σ_k W_{rsck} h^k``,
    then each tap is added at its offset ``(r, s)`` (col2im; rows of taps summed first)."""
    nw, _, c, k = W.shape
    nh, n = h.shape[1], h.shape[-1]
    cols = (W.reshape(nw * nw * c, k) @ h.reshape(k, -1)).reshape(nw, nw, c, nh, nh, n)
    out = 0.0
    for r in range(nw):
        row = sum(jnp.pad(cols[r, s], ((0, 0), (0, 0), (s, nw - 1 - s), (0, 0))) for s in range(nw))
        out = out + jnp.pad(row, ((0, 0), (r, nw - 1 - r), (0, 0), (0, 0)))
    return out


def _blocks_m(pool: int, logits: Float[Array, "K Nh Nh n"], u: Float[Array, "K Np Np n"]):
    """:func:`blocks_from_uniform` on chains-minor detection inputs: ``(h, p)`` in the same
    layout, each block's ``pool²`` units in the order of :func:`to_blocks` (row-major within
    the block).  The units of a block are the ``pool²`` strided slices of the maps (no
    transpose); the same inverse CDF, written out over those slices."""
    if pool == 1:
        h, p = blocks_from_uniform(u, logits[..., None])
        return h[..., 0], p
    k, nh, _, n = logits.shape
    units = [logits[:, r::pool, s::pool] for r in range(pool) for s in range(pool)]
    m = jnp.maximum(functools.reduce(jnp.maximum, units), 0.0)
    cdf = list(itertools.accumulate(jnp.exp(x - m) for x in units))
    t = u * (cdf[-1] + jnp.exp(-m))
    idx = sum((t >= c).astype(jnp.int32) for c in cdf)  # 0..n; n = "all off"
    on = [(idx == j).astype(logits.dtype) for j in range(pool * pool)]
    npl = nh // pool
    h = jnp.stack(on).reshape(pool, pool, k, npl, npl, n).transpose(2, 3, 0, 4, 1, 5)
    return h.reshape(k, nh, nh, n), (idx < pool * pool).astype(logits.dtype)


# --------------------------------------------------------------------------- dense equivalent


def dense_equivalent(spec: ConvRBM, params: ConvRBMParams, image_size: int) -> RBMParams:
    """The ordinary RBM with the tied (Toeplitz) weight matrix of the filters: visibles and
    detection units flattened in ``(row, column, channel)`` order, ``W_dense[i, j]`` the
    coefficient of ``v_i`` in ``(W ⋆ v)_j``.  Equal to the conv RBM when ``pool = 1``
    (binary visibles)."""
    Nw, _, C, K = params.W.shape
    nh = hidden_size(ConvRBM(1, spec.visible), image_size, Nw)
    V = image_size * image_size * C
    eye = jnp.eye(V, dtype=jnp.float32).reshape(V, image_size, image_size, C)
    Wd = jax.vmap(lambda e: _correlate(e, params.W).reshape(-1))(eye)
    return RBMParams(W=Wd, b=jnp.tile(params.a, image_size * image_size),
                     c=jnp.tile(params.b, nh * nh))  # fmt: skip


# --------------------------------------------------------------------------- training


class ConvRBMAux(NamedTuple):
    """What :func:`cd_gradient` reports: mean ``P(h = 1 | v)`` per filter on the data, the
    mean ``P(p = 1 | v)``, and the mean squared distance per image between the data and the
    negatives (for CD-k: the k-step sampled reconstruction error)."""

    hidden_mean: Float[Array, " K"]
    pool_mean: Float[Array, ""]
    recon_error: Float[Array, ""]


def sparsity_gradient(
    hidden_mean: Float[Array, " K"], target: float, cost: float
) -> Float[Array, " K"]:
    """Gradient (to descend) of the sparsity regulariser on the hidden biases:
    ``cost · (q_k - target)`` where ``q_k`` is the mean ``P(h^k = 1 | v)`` over the minibatch
    and the positions — the bias-only update of Lee, Ekanadham & Ng (2008), used by Lee et
    al. (2009) to keep the detection units sparse."""
    return cost * (hidden_mean - target)


def _probs_m(pool: int, logits: Float[Array, "K Nh Nh n"]):
    """``(P(h = 1 | v), P(p = 1 | v))`` of chains-minor detection inputs, same layout."""
    if pool == 1:
        q = jax.nn.sigmoid(logits)
        return q, q
    k, nh, _, n = logits.shape
    npl = nh // pool
    x = logits.reshape(k, npl, pool, npl, pool, n).transpose(0, 1, 3, 5, 2, 4)
    lp = block_log_probs(x.reshape(k, npl, npl, n, pool * pool))
    q = jnp.exp(lp[..., :-1]).reshape(k, npl, npl, n, pool, pool).transpose(0, 1, 4, 2, 5, 3)
    return q.reshape(k, nh, nh, n), -jnp.expm1(lp[..., -1])


def _windows(v: Float[Array, "C Nv Nv n"], nw: int) -> Float[Array, "Q P"]:
    """The ``Nw² C`` shifted windows of chains-minor images as a ``(Nw²C, Nh² n)`` matrix
    (rows in ``(r, s, c)`` order, columns in ``(i, j, n)`` order): ``(W ⋆ v)`` is
    ``W.reshape(-1, K).T @`` it, and ``∂/∂W Σ h (W ⋆ v)`` is it ``@ h.T``.  Extracted by one
    ``lax.conv_general_dilated_patches`` (compiles in about half the time of the stacked
    slices of :func:`_correlate_m` on XLA:CPU: 25 windows; measured, BUILD_NOTES.md)."""
    c, nv, _, n = v.shape
    nh = nv - nw + 1
    x = jax.lax.conv_general_dilated_patches(v.transpose(3, 0, 1, 2), (nw, nw), (1, 1), "VALID")
    x = x.reshape(n, c, nw, nw, nh, nh).transpose(2, 3, 1, 4, 5, 0)  # (r, s, c, i, j, n)
    return x.reshape(nw * nw * c, -1)


def cd_gradient(
    key: PRNGKeyArray,
    spec: ConvRBM,
    params: ConvRBMParams,
    v: Float[Array, "B Nv Nv C"],
    k: int = 1,
    chains: ConvRBMState | None = None,
    *,
    sparsity_target: float | None = None,
    sparsity_cost: float = 0.0,
) -> tuple[ConvRBMParams, ConvRBMState | None, ConvRBMAux]:
    r"""CD-k (``chains=None``: negatives from ``k`` sweeps started at ``h ~ P(h | v_data)``)
    or PCD-k (``k`` sweeps of the persistent ``chains``) gradient of the negative
    log-likelihood (§18.2), Rao-Blackwellised (the hidden units of both phases summed out
    exactly through the pooling softmax):

    .. math:: \overline{∇_θ E(v_{data}, q_{data})} - \overline{∇_θ E(v_{neg}, q_{neg})}
              = ∇_θ \big[\overline{F(v_{data})} - \overline{F(v_{neg})}\big],
              \quad q = P(h = 1 \mid v),

    (``E`` is linear in ``h``), plus :func:`sparsity_gradient` on ``b`` when
    ``sparsity_target`` is given.  Computed in the chains-minor layout of :func:`gibbs`
    (examples as the last axis): each phase's detection inputs are one GEMM of the filters
    with the images' windows (:func:`_windows`), its filter statistic
    ``Σ_{n,i,j} v_{n,i+r,j+s,c} q^k_{n,ij}`` one GEMM of the same windows with ``q``, the
    negatives' visibles one GEMM plus col2im (:func:`_full_conv_m`); the data's inputs serve
    ``q`` and the CD start, the negatives' ``q_neg`` and the chains' new ``h``.  Returns
    ``(grads, new chains or None, aux)``."""
    k_u, k_run = jax.random.split(key)
    W, b, a = params
    nw, _, c, kf = W.shape
    B, nv = v.shape[0], v.shape[1]
    nh = nv - nw + 1
    npl = nh // spec.pool
    Wm = W.reshape(nw * nw * c, kf)

    def detection(vm):
        cols = _windows(vm, nw)
        return cols, b[:, None, None, None] + (Wm.T @ cols).reshape(kf, nh, nh, B)

    v_m = _minor(v)
    cols, logits = detection(v_m)
    q, p_data = _probs_m(spec.pool, logits)
    # one uniform call: [the CD start's blocks], the negatives' visibles, [the PCD blocks]
    nb, nvis = kf * npl * npl * B, c * nv * nv * B
    sizes = [nb if chains is None else 0, nvis, 0 if chains is None else nb]
    u = uniform24(k_u, (sum(sizes),))
    u_start, u_v, u_h = jnp.split(u, np.cumsum(sizes[:2]))
    p_shape = (kf, npl, npl, B)
    if chains is None:
        h_m, _ = _blocks_m(spec.pool, logits, u_start.reshape(p_shape))
    else:
        h_m = _minor(chains.h)
    if k > 1:
        start = ConvRBMState(v, _minor(h_m), _minor(jnp.zeros(p_shape, v.dtype)))
        if chains is not None:
            start = chains
        h_m = _minor(gibbs(k_run, spec, params, start, k - 1).h)
    pre = a[:, None, None, None] + _full_conv_m(h_m, W)
    vn_m = visible_from_uniform(spec, pre, u_v.reshape(v_m.shape))
    cols_neg, logits_neg = detection(vn_m)
    q_neg, _ = _probs_m(spec.pool, logits_neg)
    gW = -(cols @ q.reshape(kf, -1).T - cols_neg @ q_neg.reshape(kf, -1).T) / B
    gb = -(jnp.sum(q, axis=(1, 2, 3)) - jnp.sum(q_neg, axis=(1, 2, 3))) / B
    ga = -(jnp.sum(v_m, axis=(1, 2, 3)) - jnp.sum(vn_m, axis=(1, 2, 3))) / B
    hidden_mean = jnp.mean(q, axis=(1, 2, 3))
    if sparsity_target is not None:
        gb = gb + sparsity_gradient(hidden_mean, sparsity_target, sparsity_cost)
    grads = ConvRBMParams(W=gW.reshape(W.shape), b=gb, a=ga)
    v_neg = _minor(vn_m)
    new = None
    if chains is not None:
        h_new, p_new = _blocks_m(spec.pool, logits_neg, u_h.reshape(p_shape))
        new = ConvRBMState(v_neg, _minor(h_new), _minor(p_new))
    recon = jnp.mean(jnp.sum((v_neg - v) ** 2, axis=(1, 2, 3)))
    return grads, new, ConvRBMAux(hidden_mean, jnp.mean(p_data), recon)


# --------------------------------------------------------------------------- two layers


def cdbn_sweep(
    key: PRNGKeyArray,
    specs: tuple[ConvRBM, ConvRBM],
    params: tuple[ConvRBMParams, ConvRBMParams],
    state: tuple[ConvRBMState, ConvRBMState],
) -> tuple[ConvRBMState, ConvRBMState]:
    """One Gibbs sweep of two stacked layers (the pooling units ``p¹`` of layer 1 are the
    visibles of layer 2; joint energy ``E₁(v, h¹) + E₂(p¹, h²)``) with bottom-up and
    top-down inference (Lee et al. 2009, §3.6): ``(h¹, p¹) ~ P(· | v, h²)`` — layer 2's
    input ``a₂ + Σ W²∗h²`` is the top-down term of each pooling block — then ``v ~ P(v | h¹)``
    and ``(h², p²) ~ P(· | p¹)`` (independent given ``h¹``).  ``state = (layer 1, layer 2)``
    with layer 2's ``v`` equal to layer 1's ``p``."""
    (s1, s2), (p1, p2), (st1, st2) = specs, params, state
    k1, k2, k3 = jax.random.split(key, 3)
    top = visible_preactivation(s2, p2, st2.h)
    h1, pool1 = sample_hidden(k1, s1, p1, st1.v, top)
    v = sample_visible(k2, s1, p1, h1)
    h2, pool2 = sample_hidden(k3, s2, p2, pool1)
    return ConvRBMState(v, h1, pool1), ConvRBMState(pool1, h2, pool2)
