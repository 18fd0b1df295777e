r"""Normalising flows: invertible generators with an exact log-likelihood (§20.10.2).

A flow maps data ``x`` to a base variable ``z = f(x)`` through invertible layers; with a
standard-normal base the change of variables (Deep Learning §20.10.2) gives

.. math:: \log p_x(x) = \log \mathcal N(f(x); 0, I) + \sum_l \log \lvert \det \partial
          f_l / \partial h_{l-1} \rvert ,

and a sample is ``x = f^{-1}(z)``, ``z ~ N(0, I)``.  Every layer is a frozen dataclass of
static settings with three pure functions of a parameter pytree::

    params = layer.init(key, x)              # x: a batch (actnorm initialises from it)
    y, log_det = layer.forward(params, x)    # log_det: [*batch], log |det ∂y/∂x|
    x = layer.inverse(params, y)

Layers: :class:`AffineCoupling` (RealNVP, Dinh et al. 2017: ``y_b = x_b ⊙ exp(s(x_a)) +
t(x_a)`` with ``s = scale · tanh(·)`` bounded), :class:`MADEAffine` (one MAF layer,
Papamakarios et al. 2017, on egm's MADE masks: density in one pass, inversion in ``D``
passes of a ``fori_loop``; a softplus scale bounded below, or the paper's exp scale), :class:`Permute` (orders between autoregressive layers),
:class:`Reshape`, and the
Glow step for image tensors ``[*batch, H, W, C]`` (Kingma & Dhariwal 2018):
:class:`ActNorm` (data-dependent init), :class:`InvConv1x1` (LU-parametrised or a plain
matrix with ``slogdet``), :class:`ConvCoupling`, with :class:`Squeeze` and the multi-scale
:class:`Split` (half the channels factored out with a learned Gaussian prior).  :class:`Flow`
composes layers with the standard-normal base (``log_prob``, ``sample``); :func:`realnvp`,
:func:`maf` and :func:`glow` build the usual stacks.

Images: :func:`dequantise` (uniform dequantisation ``x = (k + u) / 256`` of 8-bit levels
``k``), :func:`logit_transform` (``z = logit(λ + (1 - 2λ) x)``, MAF's λ = 1e-6, with its
log-determinant) and :func:`pixel_log_prob`, the log density of ``x`` in ``[0, 1)^D``; the
density of the 8-bit-scale ``y = 256 x`` subtracts ``D log 256``
(:func:`egm.eval.units.bits_per_dim` with ``n_levels=256``); :func:`make_loss` is the
training loss on 8-bit levels (fresh dequantisation per call), :func:`check_levels` the
check of such data.

Conditioners are small pure MLPs / convolutions on parameter dicts, not Flax modules: the
masks and couplings are elementwise products on the weights, the last layer starts at zero
so that every layer starts as the identity (the hidden biases are random, see
``_dense_init``), and no module state is needed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.errors import ConfigError, DataError
from egm.models._masks import made_masks

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "ConvCoupling",
    "Flow",
    "InvConv1x1",
    "MADEAffine",
    "Permute",
    "Reshape",
    "Split",
    "Squeeze",
    "check_levels",
    "checkerboard_mask",
    "dequantise",
    "glow",
    "logit_inverse",
    "logit_transform",
    "maf",
    "make_loss",
    "pixel_log_prob",
    "pixel_log_prob_batched",
    "pixel_log_prob_program",
    "realnvp",
    "sample_pixels",
]

Params = dict[str, Any]
_LOG_2PI = math.log(2.0 * math.pi)
_ACT = {"relu": jax.nn.relu, "tanh": jnp.tanh, "elu": jax.nn.elu}


def _act(name: str):
    if name not in _ACT:
        raise ConfigError(f"activation must be one of {sorted(_ACT)}, got {name!r}")
    return _ACT[name]


def _hidden(hidden: Sequence[int], what: str) -> tuple[int, ...]:
    h = tuple(int(x) for x in hidden)
    if not h or min(h) < 1:
        raise ConfigError(f"{what}: hidden must be a non-empty tuple of sizes >= 1, got {hidden}")
    return h


def _dense_init(key: PRNGKeyArray, sizes: Sequence[int], weights: str = "normal") -> Params:
    """Weights ``W_l`` (fan-in scaled: ``N(0, 1/fan_in)`` for ``weights="normal"``,
    ``U(±1/√fan_in)`` -- a third of that variance, equinox's and PyTorch's ``Linear`` -- for
    ``"uniform"``) and hidden biases ``b_l ~ U(±1/√fan_in)``; the last layer is zero, so the
    conditioner outputs 0 and its flow layer starts as the identity.

    The random hidden biases matter: with zero biases every first-layer ReLU kink lies on
    a hyperplane through the origin (for a 1-D coupling input, at ``x = 0`` itself), so the
    initial conditioner is piecewise linear with a single kink and must first learn its
    biases.  On the benchmark's ring of 8 Gaussians (experiments/benchmarks/flow_train.py)
    zero biases cost MAF(8) ~0.3-2.9 nats of test log-likelihood after 20 epochs."""
    if weights not in ("normal", "uniform"):
        raise ConfigError(f"weights must be 'normal' or 'uniform', got {weights!r}")
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    p = {}
    for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = l == len(sizes) - 2
        lim = 1.0 / math.sqrt(a)
        if weights == "normal":
            w = jax.random.normal(keys[2 * l], (a, b), jnp.float32) / math.sqrt(a)
        else:
            w = jax.random.uniform(keys[2 * l], (a, b), jnp.float32, -lim, lim)
        bias = jax.random.uniform(keys[2 * l + 1], (b,), jnp.float32, -lim, lim)
        p[f"W{l}"] = jnp.zeros((a, b), jnp.float32) if last else w
        p[f"b{l}"] = jnp.zeros((b,), jnp.float32) if last else bias
    return p


def _dense_apply(p: Params, x: Array, act, masks: Sequence[Array] | None = None) -> Array:
    n = len(p) // 2
    for l in range(n):
        W = p[f"W{l}"] if masks is None else p[f"W{l}"] * masks[l]
        x = x @ W + p[f"b{l}"]
        if l < n - 1:
            x = act(x)
    return x


def _sum_event(a: Array, event_ndims: int) -> Array:
    return jnp.sum(a, axis=tuple(range(-event_ndims, 0))) if event_ndims else a


# ----------------------------------------------------------------------------- vector layers


@dataclasses.dataclass(frozen=True, eq=False)
class AffineCoupling:
    """RealNVP affine coupling on vectors ``[*batch, D]`` (Dinh et al. 2017, eq. 4-6).

    ``mask`` (``D`` zeros/ones): the units ``x_a`` (mask 1) pass unchanged and condition
    the others: ``y = m ⊙ x + (1 - m) ⊙ (x ⊙ exp(s) + t)``, ``(s̃, t) = NN(m ⊙ x)``,
    ``s = scale ⊙ tanh(s̃)`` (a learned per-unit ``scale``, initially 1: the log-scale is
    bounded by ``|scale|``, Dinh et al.'s stabilisation).  ``log |det| = Σ (1 - m) ⊙ s``;
    the inverse is ``x_b = (y_b - t) ⊙ exp(-s)`` with the same ``s, t`` (they read ``x_a =
    y_a``).
    """

    mask: np.ndarray
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"

    def __post_init__(self):
        m = np.asarray(self.mask, np.float32)
        if m.ndim != 1 or not np.all((m == 0) | (m == 1)) or m.min() == m.max():
            raise ConfigError(
                f"a coupling mask must be a vector of zeros and ones with both present, got {m}"
            )
        object.__setattr__(self, "mask", m)
        object.__setattr__(self, "hidden", _hidden(self.hidden, "AffineCoupling"))
        _act(self.activation)

    def init(self, key: PRNGKeyArray, x: Float[ArrayLike, "*b D"]) -> Params:
        D = self.mask.shape[0]
        return {"net": _dense_init(key, (D, *self.hidden, 2 * D)), "scale": jnp.ones((D,))}

    def _st(self, p: Params, x: Array) -> tuple[Array, Array]:
        m = jnp.asarray(self.mask)
        raw_s, t = jnp.split(_dense_apply(p["net"], x * m, _act(self.activation)), 2, axis=-1)
        return (1 - m) * p["scale"] * jnp.tanh(raw_s), (1 - m) * t

    def forward(self, p: Params, x: Float[Array, "*b D"]) -> tuple[Array, Float[Array, "*b"]]:
        s, t = self._st(p, x)
        return x * jnp.exp(s) + t, jnp.sum(s, axis=-1)

    def inverse(self, p: Params, y: Float[Array, "*b D"]) -> Float[Array, "*b D"]:
        s, t = self._st(p, y)
        return (y - t) * jnp.exp(-s)


@dataclasses.dataclass(frozen=True, eq=False)
class MADEAffine:
    """One MAF layer (Papamakarios et al. 2017, §3.1) on vectors ``[*batch, D]``.

    An affine map of each unit whose two numbers ``(a_i, b_i)`` are functions of ``x_{<i}``
    computed by a MADE (masks :func:`egm.models._masks.made_masks` drawn from ``mask_seed``,
    identity ordering; the two outputs share the MADE's output mask).  ``forward`` is the
    density direction ``x → u`` in ONE pass; ``inverse`` (sampling) runs ``D`` passes, pass
    ``d`` fixing unit ``d`` (a ``fori_loop``).  Put a :class:`Permute` between layers (MAF
    reverses the order).  ``transformer`` chooses the affine map:

    * ``"softplus"`` (the default): ``u_i = x_i σ_i + t_i``, ``σ_i = softplus(b_i +
      softplus⁻¹(1 - σ_min)) + σ_min`` (``σ_min = min_scale``; σ = 1 at the start),
      ``log |det ∂u/∂x| = Σ log σ_i``.  Weights start ``U(±1/√fan_in)`` (see
      :func:`_dense_init`).  This is flowjax's transformer (``masked_autoregressive_flow``);
      the scale grows linearly, not exponentially, in the network's output and the shift
      ``t`` does not move with it.  On the benchmark's ring of 8 Gaussians
      (experiments/benchmarks/flow_train.py; controlled runs, 8 training seeds each) it lifts
      MAF(8)'s mean test log-likelihood from -0.64 to +0.17 nats; each half alone (the
      softplus with normal weights, uniform weights with the exp map) and ``u = (x - t) σ``
      did not (-0.7 to -0.9).
    * ``"exp"``: the paper's ``x_i = u_i exp(α_i) + μ_i``, i.e. ``u_i = (x_i - μ_i)
      exp(-α_i)``, ``log |det| = -Σ α_i``, with ``α = c tanh(α̃ / c)`` for ``c =
      max_log_scale`` (identical to α̃ for |α̃| ≪ c; None: unbounded, which can overflow far
      from the data and let a step on a peaked density explode); weights ``N(0,
      1/fan_in)``.
    """

    n_dims: int
    hidden: tuple[int, ...] = (64,)
    mask_seed: int = 0
    activation: str = "relu"
    max_log_scale: float | None = 10.0
    transformer: str = "softplus"
    min_scale: float = 0.01

    def __post_init__(self):
        if self.max_log_scale is not None and not self.max_log_scale > 0:
            raise ConfigError(f"max_log_scale must be > 0 or None, got {self.max_log_scale}")
        if self.n_dims < 2:
            raise ConfigError(f"MADEAffine needs n_dims >= 2, got {self.n_dims}")
        if self.transformer not in ("softplus", "exp"):
            raise ConfigError(f"transformer must be 'softplus' or 'exp', got {self.transformer!r}")
        if not 0.0 < self.min_scale < 1.0:
            raise ConfigError(
                f"min_scale must be in (0, 1) (the scale starts at 1), got {self.min_scale}"
            )
        object.__setattr__(self, "hidden", _hidden(self.hidden, "MADEAffine"))
        _act(self.activation)

    def _masks(self) -> list[Array]:
        m = made_masks(jax.random.key(self.mask_seed), self.n_dims, self.hidden)
        return [*m.hidden, jnp.concatenate([m.output, m.output], axis=1)]

    def init(self, key: PRNGKeyArray, x: Float[ArrayLike, "*b D"]) -> Params:
        w = "uniform" if self.transformer == "softplus" else "normal"
        return _dense_init(key, (self.n_dims, *self.hidden, 2 * self.n_dims), w)

    def _conditioner(self, p: Params, x: Array) -> tuple[Array, Array, Array]:
        """``(shift, scale, log scale)`` given ``x_{<i}``: ``(t, σ, log σ)`` (softplus) or
        ``(μ, e^α, α)`` (exp)."""
        out = _dense_apply(p, x, _act(self.activation), self._masks())
        a, b = jnp.split(out, 2, axis=-1)
        if self.transformer == "softplus":
            m = self.min_scale
            sigma = jax.nn.softplus(b + math.log(math.expm1(1.0 - m))) + m
            return a, sigma, jnp.log(sigma)
        c = self.max_log_scale
        alpha = b if c is None else c * jnp.tanh(b / c)
        return a, jnp.exp(alpha), alpha

    def forward(self, p: Params, x: Float[Array, "*b D"]) -> tuple[Array, Float[Array, "*b"]]:
        shift, scale, log_scale = self._conditioner(p, x)
        if self.transformer == "softplus":  # u = x σ + t
            return x * scale + shift, jnp.sum(log_scale, axis=-1)
        return (x - shift) * jnp.exp(-log_scale), -jnp.sum(log_scale, axis=-1)  # (x - μ) e^-α

    def inverse(self, p: Params, u: Float[Array, "*b D"]) -> Float[Array, "*b D"]:
        def one_pass(_, x):
            shift, scale, _ = self._conditioner(p, x)
            return (u - shift) / scale if self.transformer == "softplus" else u * scale + shift

        return jax.lax.fori_loop(0, self.n_dims, one_pass, jnp.zeros_like(u))


@dataclasses.dataclass(frozen=True, eq=False)
class Permute:
    """``y = x[..., perm]`` on the last axis (``log |det| = 0``)."""

    perm: tuple[int, ...]

    def __post_init__(self):
        p = tuple(int(i) for i in self.perm)
        if sorted(p) != list(range(len(p))):
            raise ConfigError(f"perm must be a permutation of 0..{len(p) - 1}, got {p}")
        object.__setattr__(self, "perm", p)

    def init(self, key: PRNGKeyArray, x: ArrayLike) -> Params:
        return {}

    def forward(self, p: Params, x: Array) -> tuple[Array, Array]:
        return x[..., np.asarray(self.perm)], jnp.zeros(x.shape[:-1])

    def inverse(self, p: Params, y: Array) -> Array:
        return y[..., np.argsort(self.perm)]


@dataclasses.dataclass(frozen=True, eq=False)
class Reshape:
    """``[*b, *in_shape] → [*b, *out_shape]`` (same size; log |det| = 0), e.g. flattened
    images into ``[H, W, C]`` for the Glow layers."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def __post_init__(self):
        if math.prod(self.in_shape) != math.prod(self.out_shape):
            raise ConfigError(f"cannot reshape {self.in_shape} into {self.out_shape}")

    def init(self, key: PRNGKeyArray, x: ArrayLike) -> Params:
        return {}

    def forward(self, p: Params, x: Array) -> tuple[Array, Array]:
        b = x.shape[: x.ndim - len(self.in_shape)]
        return x.reshape(*b, *self.out_shape), jnp.zeros(b)

    def inverse(self, p: Params, y: Array) -> Array:
        return y.reshape(*y.shape[: y.ndim - len(self.out_shape)], *self.in_shape)


# ----------------------------------------------------------------------------- Glow layers


@dataclasses.dataclass(frozen=True, eq=False)
class ActNorm:
    """Glow's activation normalisation on the last (channel) axis: ``y = (x + b) ⊙ exp(s)``
    per channel; ``init`` sets ``b, s`` so that the initial batch has zero mean and unit
    variance per channel (data-dependent init).  ``event_ndims``: 3 for ``[H, W, C]``
    images, 1 for vectors; ``log |det| = (H W) Σ_c s_c``."""

    event_ndims: int = 3

    def init(self, key: PRNGKeyArray, x: ArrayLike) -> Params:
        x = jnp.asarray(x, jnp.float32)
        axes = tuple(range(x.ndim - 1))
        mean, std = jnp.mean(x, axis=axes), jnp.std(x, axis=axes)
        return {"bias": -mean, "log_scale": -jnp.log(std + 1e-6)}

    def forward(self, p: Params, x: Array) -> tuple[Array, Array]:
        n_sites = math.prod(x.shape[x.ndim - self.event_ndims : -1])
        y = (x + p["bias"]) * jnp.exp(p["log_scale"])
        return y, jnp.full(x.shape[: x.ndim - self.event_ndims], n_sites * jnp.sum(p["log_scale"]))

    def inverse(self, p: Params, y: Array) -> Array:
        return y * jnp.exp(-p["log_scale"]) - p["bias"]


@dataclasses.dataclass(frozen=True, eq=False)
class InvConv1x1:
    """Glow's invertible 1×1 convolution ``y = x W`` on the channels of ``[*b, H, W, C]``.

    ``lu=True``: ``W = P L (U + diag(sign · exp(log_s)))`` with ``P`` and ``sign`` fixed
    from the LU decomposition of a random rotation (drawn from ``seed``), so ``log |det| =
    H W Σ log_s`` costs O(C); ``lu=False``: a plain matrix and ``H W log |det W|`` by
    ``slogdet`` (O(C³)).  Starts as a random rotation (``log |det| = 0``)."""

    channels: int
    lu: bool = True
    seed: int = 0

    def _w0(self) -> np.ndarray:
        a = np.random.default_rng(self.seed).normal(size=(self.channels, self.channels))
        q, r = np.linalg.qr(a)
        return q * np.sign(np.diag(r))

    def _plu(self):
        import scipy.linalg

        P, L, U = scipy.linalg.lu(self._w0())
        return P.astype(np.float32), L, U

    def init(self, key: PRNGKeyArray, x: ArrayLike) -> Params:
        if not self.lu:
            return {"W": jnp.asarray(self._w0(), jnp.float32)}
        _, L, U = self._plu()
        d = np.diag(U)
        return {
            "L": jnp.asarray(np.tril(L, -1), jnp.float32),
            "U": jnp.asarray(np.triu(U, 1), jnp.float32),
            "log_s": jnp.asarray(np.log(np.abs(d)), jnp.float32),
        }

    def _w_logdet(self, p: Params) -> tuple[Array, Array]:
        if not self.lu:
            return p["W"], jnp.linalg.slogdet(p["W"])[1]
        P, _, U0 = self._plu()
        sign = jnp.asarray(np.sign(np.diag(U0)), jnp.float32)
        eye = jnp.eye(self.channels)
        L = jnp.tril(p["L"], -1) + eye
        U = jnp.triu(p["U"], 1) + jnp.diag(sign * jnp.exp(p["log_s"]))
        return jnp.asarray(P) @ L @ U, jnp.sum(p["log_s"])

    def forward(self, p: Params, x: Array) -> tuple[Array, Array]:
        W, ld = self._w_logdet(p)
        return x @ W, jnp.full(x.shape[:-3], math.prod(x.shape[-3:-1]) * ld)

    def inverse(self, p: Params, y: Array) -> Array:
        W, _ = self._w_logdet(p)
        return y @ jnp.linalg.inv(W)


def _conv(x: Array, w: Array, b: Array) -> Array:
    out = jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return out + b


@dataclasses.dataclass(frozen=True, eq=False)
class ConvCoupling:
    """Glow's affine coupling on ``[*b, H, W, C]`` (C ≥ 2): the first ``C // 2`` channels
    ``x_a`` pass and condition ``y_b = (x_b + t) ⊙ σ(s̃ + 2)``, ``(t, s̃) = NN(x_a)`` (conv
    3×3 → ReLU → conv 1×1 → ReLU → conv 3×3, the last zero-initialised); the sigmoid bounds
    the scale in (0, 1).  ``log |det| = Σ log σ(s̃ + 2)``."""

    channels: int
    hidden: int = 64

    def __post_init__(self):
        if self.channels < 2:
            raise ConfigError(
                f"ConvCoupling needs >= 2 channels (got {self.channels}); squeeze first"
            )

    def init(self, key: PRNGKeyArray, x: ArrayLike) -> Params:
        ca, cb, h = self.channels // 2, self.channels - self.channels // 2, self.hidden
        k1, k2 = jax.random.split(key)
        return {
            "w1": jax.random.normal(k1, (3, 3, ca, h)) / math.sqrt(9 * ca),
            "b1": jnp.zeros((h,)),
            "w2": jax.random.normal(k2, (1, 1, h, h)) / math.sqrt(h),
            "b2": jnp.zeros((h,)),
            "w3": jnp.zeros((3, 3, h, 2 * cb)),
            "b3": jnp.zeros((2 * cb,)),
        }

    def _ts(self, p: Params, xa: Array) -> tuple[Array, Array]:
        lead = xa.shape[:-3]
        h = xa.reshape(-1, *xa.shape[-3:])
        h = jax.nn.relu(_conv(h, p["w1"], p["b1"]))
        h = jax.nn.relu(_conv(h, p["w2"], p["b2"]))
        t, raw = jnp.split(_conv(h, p["w3"], p["b3"]), 2, axis=-1)
        t, raw = t.reshape(*lead, *t.shape[1:]), raw.reshape(*lead, *raw.shape[1:])
        return t, jax.nn.log_sigmoid(raw + 2.0)

    def forward(self, p: Params, x: Array) -> tuple[Array, Array]:
        xa, xb = x[..., : self.channels // 2], x[..., self.channels // 2 :]
        t, log_s = self._ts(p, xa)
        return jnp.concatenate([xa, (xb + t) * jnp.exp(log_s)], -1), _sum_event(log_s, 3)

    def inverse(self, p: Params, y: Array) -> Array:
        ya, yb = y[..., : self.channels // 2], y[..., self.channels // 2 :]
        t, log_s = self._ts(p, ya)
        return jnp.concatenate([ya, yb * jnp.exp(-log_s) - t], -1)


@dataclasses.dataclass(frozen=True, eq=False)
class Squeeze:
    """Space to depth: ``[*b, H, W, C] → [*b, H/2, W/2, 4C]`` (a permutation, log |det| 0)."""

    def init(self, key: PRNGKeyArray, x: ArrayLike) -> Params:
        H, W = np.shape(x)[-3:-1]
        if H % 2 or W % 2:
            raise DataError(f"Squeeze needs an even height and width, got {H}x{W}")
        return {}

    def forward(self, p: Params, x: Array) -> tuple[Array, Array]:
        *b, H, W, C = x.shape
        y = x.reshape(*b, H // 2, 2, W // 2, 2, C)
        y = jnp.moveaxis(y, (-4, -2), (-3, -2)).reshape(*b, H // 2, W // 2, 4 * C)
        return y, jnp.zeros(tuple(b))

    def inverse(self, p: Params, y: Array) -> Array:
        *b, h, w, c4 = y.shape
        x = y.reshape(*b, h, w, 2, 2, c4 // 4)
        return jnp.moveaxis(x, (-3, -2), (-4, -2)).reshape(*b, 2 * h, 2 * w, c4 // 4)


def _seq_init(key: PRNGKeyArray, layers: Sequence[Any], h: Array) -> tuple[list[Params], Array]:
    params = []
    for k, layer in zip(jax.random.split(key, len(layers)), layers, strict=True):
        p = layer.init(k, h)
        h, _ = layer.forward(p, h)
        params.append(p)
    return params, h


def _seq_forward(layers: Sequence[Any], params: Sequence[Params], h: Array, batch) -> tuple:
    total = jnp.zeros(batch)
    for layer, p in zip(layers, params, strict=True):
        h, ld = layer.forward(p, h)
        total = total + ld
    return h, total


def _seq_inverse(layers: Sequence[Any], params: Sequence[Params], h: Array) -> Array:
    for layer, p in zip(reversed(tuple(layers)), reversed(tuple(params)), strict=True):
        h = layer.inverse(p, h)
    return h


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    r"""Glow's multi-scale split (Dinh et al. 2017 §3.6; Kingma & Dhariwal 2018) on
    ``[*b, H, W, C]``: the first ``C // 2`` channels ``a`` go on through the layers ``rest``
    (the next scale: squeeze, steps, maybe another split), the other half ``b`` is factored
    out with the prior ``N(μ(a), exp(2 log σ(a)))`` (``learned_prior``: a zero-initialised
    3×3 convolution of ``a``; otherwise ``N(0, I)``).  As a bijection onto the standard-normal
    base: ``z = [f_rest(a) reshaped to a's shape, (b - μ(a)) ⊙ exp(-log σ(a))]``, so

    .. math:: \log|\det| = \log|\det ∂f_\text{rest}/∂a| - \textstyle\sum \log σ(a),

    and ``log N(z; 0, I)`` plus it is Glow's ``log p(a) + log p(b | a)``.  The reshape of
    ``f_rest(a)`` (a fixed permutation of the same number of values) keeps ``z`` one
    tensor of the input's shape."""

    channels: int
    rest: tuple[Any, ...]
    learned_prior: bool = True

    def __post_init__(self):
        if self.channels < 2:
            raise ConfigError(f"Split needs >= 2 channels, got {self.channels}; squeeze first")
        object.__setattr__(self, "rest", tuple(self.rest))

    def _halves(self, x: Array) -> tuple[Array, Array]:
        return x[..., : self.channels // 2], x[..., self.channels // 2 :]

    def init(self, key: PRNGKeyArray, x: ArrayLike) -> Params:
        k_rest, _ = jax.random.split(key)
        a, _ = self._halves(jnp.asarray(x, jnp.float32))
        ca, cb = self.channels // 2, self.channels - self.channels // 2
        rest, _ = _seq_init(k_rest, self.rest, a)
        prior = {"w": jnp.zeros((3, 3, ca, 2 * cb)), "b": jnp.zeros((2 * cb,))}
        return {"rest": tuple(rest), "prior": prior if self.learned_prior else {}}

    def _mu_log_sigma(self, p: Params, a: Array) -> tuple[Array, Array]:
        if not self.learned_prior:
            return jnp.zeros(()), jnp.zeros(())
        lead = a.shape[:-3]
        out = _conv(a.reshape(-1, *a.shape[-3:]), p["prior"]["w"], p["prior"]["b"])
        mu, log_sigma = jnp.split(out.reshape(*lead, *out.shape[1:]), 2, axis=-1)
        return mu, log_sigma

    def forward(self, p: Params, x: Array) -> tuple[Array, Array]:
        a, b = self._halves(x)
        batch = x.shape[:-3]
        za, ld = _seq_forward(self.rest, p["rest"], a, batch)
        mu, log_sigma = self._mu_log_sigma(p, a)
        zb = (b - mu) * jnp.exp(-log_sigma)
        ld = ld - _sum_event(jnp.broadcast_to(log_sigma, b.shape), 3)
        return jnp.concatenate([za.reshape(a.shape), zb], -1), ld

    def inverse(self, p: Params, y: Array) -> Array:
        za, zb = self._halves(y)
        out = jax.eval_shape(lambda a: _seq_forward(self.rest, p["rest"], a, a.shape[:-3])[0], za)
        a = _seq_inverse(self.rest, p["rest"], za.reshape(out.shape))
        mu, log_sigma = self._mu_log_sigma(p, a)
        return jnp.concatenate([a, zb * jnp.exp(log_sigma) + mu], -1)


# ----------------------------------------------------------------------------- the flow


def _check_input(x: Any, event_shape: tuple[int, ...], what: str) -> Array:
    shape = tuple(np.shape(x))
    if shape[len(shape) - len(event_shape) :] != event_shape or len(shape) < len(event_shape):
        raise DataError(
            f"{what}: expected an array of shape [*batch, {', '.join(map(str, event_shape))}], "
            f"got {shape}; reshape the data to the flow's event shape"
        )
    if not isinstance(x, jax.core.Tracer):
        arr = np.asarray(x)
        if not np.all(np.isfinite(arr)):
            raise DataError(
                f"{what}: {int(np.sum(~np.isfinite(arr)))} values are NaN or inf; a flow's "
                f"density is defined on finite points only (check the data / preprocessing)"
            )
    return jnp.asarray(x, jnp.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Flow:
    """Layers ``f_1 … f_L`` from data (``event_shape``) to a standard-normal base.

    ``params`` is the tuple of the layers' parameter pytrees (``init``).  ``forward``
    returns ``z = f(x)`` and ``Σ_l log |det ∂f_l|`` per example; ``log_prob`` is the change
    of variables (module docstring); ``sample`` pushes ``z ~ N(0, I)`` through ``f^{-1}``.
    """

    layers: tuple[Any, ...]
    event_shape: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "event_shape", tuple(int(d) for d in self.event_shape))
        if not self.layers:
            raise ConfigError("a Flow needs at least one layer")
        if not self.event_shape or min(self.event_shape) < 1:
            raise ConfigError(f"event_shape must be sizes >= 1, got {self.event_shape}")

    @property
    def n_dims(self) -> int:
        return math.prod(self.event_shape)

    def init(self, key: PRNGKeyArray, x: Float[ArrayLike, "n ..."]) -> tuple[Params, ...]:
        """Each layer's parameters, initialised in order on the batch ``x`` pushed through
        the layers before it (actnorm's data-dependent init)."""
        h = _check_input(x, self.event_shape, "Flow.init")
        return tuple(_seq_init(key, self.layers, h)[0])

    def forward(
        self, params: Sequence[Params], x: Float[Array, "*batch *event"]
    ) -> tuple[Array, Float[Array, "*batch"]]:
        """``(z, log |det ∂z/∂x|)``."""
        h = _check_input(x, self.event_shape, "Flow.forward")
        return _seq_forward(self.layers, params, h, h.shape[: h.ndim - len(self.event_shape)])

    def inverse(self, params: Sequence[Params], z: Array) -> Float[Array, "*batch *event"]:
        """``x = f^{-1}(z)``."""
        return _seq_inverse(self.layers, params, jnp.asarray(z, jnp.float32))

    def log_prob(
        self, params: Sequence[Params], x: Float[ArrayLike, "*batch *event"]
    ) -> Float[Array, "*batch"]:
        """Exact ``log p(x)`` (nats) by the change of variables."""
        z, ld = self.forward(params, x)
        n_batch = jnp.ndim(x) - len(self.event_shape)
        axes = tuple(range(n_batch, jnp.ndim(z)))
        return -0.5 * jnp.sum(z**2, axis=axes) - 0.5 * _LOG_2PI * self.n_dims + ld

    def base_shape(self, params: Sequence[Params]) -> tuple[int, ...]:
        """The event shape of ``z`` (Squeeze layers change it)."""
        out = jax.eval_shape(lambda p: self.forward(p, jnp.zeros((1, *self.event_shape))), params)
        return tuple(out[0].shape[1:])

    def sample(self, key: PRNGKeyArray, params: Sequence[Params], n: int) -> Float[Array, "n ..."]:
        """``n`` draws ``x = f^{-1}(z)``, ``z ~ N(0, I)``."""
        if not isinstance(n, int | np.integer) or n < 1:
            raise ConfigError(f"n must be an integer >= 1, got {n!r}")
        z = jax.random.normal(key, (int(n), *self.base_shape(params)), jnp.float32)
        return self.inverse(params, z)


# ----------------------------------------------------------------------------- constructors


def checkerboard_mask(height: int, width: int, parity: int = 0) -> np.ndarray:
    """RealNVP's checkerboard mask of an ``height × width`` image, flattened row-major:
    1 where ``(row + col + parity)`` is even."""
    r, c = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return ((r + c + parity) % 2 == 0).astype(np.float32).reshape(-1)


def realnvp(
    n_dims: int,
    n_layers: int = 8,
    hidden: Sequence[int] = (64, 64),
    *,
    image_shape: tuple[int, int] | None = None,
    activation: str = "relu",
) -> Flow:
    """``n_layers`` affine couplings with alternating masks on vectors of ``n_dims``: the
    two halves (first / second half of the units) or, with ``image_shape``, a checkerboard
    and its complement (Dinh et al.'s spatial masks on a flattened image)."""
    if n_layers < 1:
        raise ConfigError(f"n_layers must be >= 1, got {n_layers}")
    if image_shape is not None:
        if math.prod(image_shape) != n_dims:
            raise ConfigError(f"image_shape {image_shape} does not hold {n_dims} values")
        masks = [checkerboard_mask(*image_shape, parity=i % 2) for i in range(n_layers)]
    else:
        half = (np.arange(n_dims) < n_dims // 2).astype(np.float32)
        masks = [half if i % 2 == 0 else 1 - half for i in range(n_layers)]
    layers = [AffineCoupling(m, tuple(hidden), activation) for m in masks]
    return Flow(tuple(layers), (n_dims,))


def maf(
    n_dims: int,
    n_layers: int = 5,
    hidden: Sequence[int] = (64,),
    *,
    activation: str = "relu",
    mask_seed: int = 0,
    max_log_scale: float | None = 10.0,
    transformer: str = "softplus",
) -> Flow:
    """MAF(``n_layers``): MADE affine layers with the order reversed between layers
    (Papamakarios et al. 2017; their batch normalisation between layers is left out;
    ``transformer``, ``max_log_scale``: see :class:`MADEAffine`)."""
    if n_layers < 1:
        raise ConfigError(f"n_layers must be >= 1, got {n_layers}")
    rev = Permute(tuple(range(n_dims - 1, -1, -1)))
    layers: list[Any] = []
    for i in range(n_layers):
        if i:
            layers.append(rev)
        layers.append(
            MADEAffine(n_dims, tuple(hidden), mask_seed + i, activation, max_log_scale, transformer)
        )
    return Flow(tuple(layers), (n_dims,))


def glow(
    image_shape: tuple[int, int, int],
    n_steps: int = 4,
    hidden: int = 64,
    *,
    lu: bool = True,
    n_levels: int = 1,
    learned_prior: bool = True,
) -> Flow:
    """Glow's multi-scale architecture (Kingma & Dhariwal 2018, fig. 2b) on images
    ``[H, W, C]``: ``n_levels`` scales, each a :class:`Squeeze` and ``n_steps`` Glow steps
    (:class:`ActNorm`, :class:`InvConv1x1`, :class:`ConvCoupling`); between scales a
    :class:`Split` factors half of the channels out (``learned_prior``: a conditional
    Gaussian from a zero-initialised convolution; else standard normal) and the other half
    goes on to the next scale; the last scale's output has the standard-normal prior.
    ``H`` and ``W`` must be divisible by ``2^n_levels``; ``n_levels=1`` is one scale."""
    H, W, C = image_shape
    if n_steps < 1 or n_levels < 1:
        raise ConfigError(f"n_steps and n_levels must be >= 1, got {n_steps}, {n_levels}")
    f = 2**n_levels
    if H % f or W % f:
        raise ConfigError(
            f"glow with {n_levels} level(s) needs a height and width divisible by {f} (an even "
            f"size at every squeeze), got {image_shape}; use fewer levels or pad the images"
        )
    seed = iter(range(n_levels * n_steps))

    def level(c: int, left: int) -> list[Any]:
        out: list[Any] = [Squeeze()]
        for _ in range(n_steps):
            out += [ActNorm(3), InvConv1x1(4 * c, lu, seed=next(seed)), ConvCoupling(4 * c, hidden)]
        if left > 1:
            out.append(Split(4 * c, tuple(level(2 * c, left - 1)), learned_prior))
        return out

    return Flow(tuple(level(C, n_levels)), (H, W, C))


# ----------------------------------------------------------------------------- image data


def dequantise(
    key: PRNGKeyArray, levels: Float[ArrayLike, "*shape"], n_levels: int = 256
) -> Float[Array, "*shape"]:
    """Uniform dequantisation ``x = (k + u) / n_levels``, ``u ~ U[0, 1)``, of integer levels
    ``k ∈ {0, …, n_levels - 1}``: ``x ∈ [0, 1)``.  A density on ``x`` then bounds the
    probability of the discrete image: ``log P(k) ≥ E_u log p_y(k + u)`` with ``y = n_levels
    x`` (Theis et al. 2016), whose density is ``p_x / n_levels^D``.  Levels outside that
    support (grey values in [0, 1], already dequantised data) give a :class:`DataError`
    when concrete."""
    if not isinstance(levels, jax.core.Tracer):
        check_levels(levels, n_levels, "dequantise: the levels")
    k = jnp.asarray(levels, jnp.float32)
    return (k + jax.random.uniform(key, k.shape)) / n_levels


def check_levels(levels: ArrayLike, n_levels: int = 256, name: str = "pixel levels") -> None:
    """Raise :class:`DataError` unless ``levels`` are finite integers in ``[0, n_levels)``."""
    a = np.asarray(levels)
    if a.size and not np.all(np.isfinite(a)):
        raise DataError(f"{name} contain NaN or inf")
    if a.size and (a.min() < 0 or a.max() > n_levels - 1 or np.any(a != np.round(a))):
        raise DataError(
            f"{name} must be integers in [0, {n_levels - 1}] (8-bit grey levels), got values in "
            f"[{a.min():g}, {a.max():g}]; pass round(255 * grey) for grey values in [0, 1]"
        )


def _check_unit_support(x: ArrayLike) -> None:
    a = np.asarray(x)
    if a.size and not (np.all(np.isfinite(a)) and a.min() >= 0.0 and a.max() <= 1.0):
        raise DataError(
            f"logit_transform needs values in [0, 1] (its support), got values in "
            f"[{np.nanmin(a):g}, {np.nanmax(a):g}]"
            f"{' and NaN/inf' if not np.all(np.isfinite(a)) else ''}; dequantise 8-bit "
            f"levels first: (k + u) / 256"
        )


def logit_transform(
    x: Float[ArrayLike, "*batch D"], lam: float = 1e-6
) -> tuple[Float[Array, "*batch D"], Float[Array, "*batch"]]:
    """``z = logit(λ + (1 - 2λ) x)`` and ``log |det ∂z/∂x| = Σ_d [log(1 - 2λ) - log p_d -
    log(1 - p_d)]``, ``p = λ + (1 - 2λ) x`` (the last axis is the event).  MAF's protocol
    (Papamakarios et al. 2017) for images: λ = 1e-6 for MNIST.  ``x`` must lie in [0, 1]
    (the transform's support; checked when ``x`` is concrete)."""
    if not 0.0 < lam < 0.5:
        raise ConfigError(f"lam must be in (0, 0.5), got {lam}")
    if not isinstance(x, jax.core.Tracer):
        _check_unit_support(x)
    x = jnp.asarray(x, jnp.float32)
    p = lam + (1.0 - 2.0 * lam) * x
    z = jnp.log(p) - jnp.log1p(-p)
    ld = jnp.sum(math.log1p(-2.0 * lam) - jnp.log(p) - jnp.log1p(-p), axis=-1)
    return z, ld


def logit_inverse(z: Float[ArrayLike, "*batch D"], lam: float = 1e-6) -> Float[Array, "*batch D"]:
    """``x = (σ(z) - λ) / (1 - 2λ)``, the inverse of :func:`logit_transform`."""
    return (jax.nn.sigmoid(jnp.asarray(z, jnp.float32)) - lam) / (1.0 - 2.0 * lam)


def pixel_log_prob(
    flow: Flow, params: Sequence[Params], x: Float[ArrayLike, "*batch D"], lam: float = 1e-6
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    """``(log p_x(x), log p_z(z))`` for a flow on the logit space ``z`` of
    :func:`logit_transform`: ``log p_x = log p_z + log |det ∂z/∂x|`` is the density of the
    grey levels ``x ∈ [0, 1)^D`` (nats; subtract ``D log 256`` for the 8-bit scale)."""
    z, ld = logit_transform(x, lam)
    lz = flow.log_prob(params, z)
    return lz + ld, lz


def pixel_log_prob_batched(
    flow: Flow,
    params: Sequence[Params],
    x: Float[ArrayLike, "n D"],
    lam: float = 1e-6,
    chunk: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pixel_log_prob` of many examples in jitted chunks of ``chunk`` (one program;
    the last, shorter chunk compiles once more): float32 numpy ``(log p_x, log p_z)``."""
    return pixel_log_prob_program(flow, lam, chunk)(params, x)


def pixel_log_prob_program(
    flow: Flow, lam: float = 1e-6, chunk: int = 500
) -> Callable[[Sequence[Params], Float[ArrayLike, "n D"]], tuple[np.ndarray, np.ndarray]]:
    """:func:`pixel_log_prob_batched` as a function of ``(params, x)`` whose jitted program
    is built once: keep it to evaluate the same flow again (a validation score after every
    epoch) without recompiling."""
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    fn = jax.jit(lambda p, v: pixel_log_prob(flow, p, v, lam))

    def run(params, x):
        _check_unit_support(x)  # on the concrete values, once (the chunks are traced)
        parts = [fn(params, x[i : i + chunk]) for i in range(0, len(x), chunk)]
        return tuple(np.concatenate([np.asarray(q[j]) for q in parts]) for j in (0, 1))

    return run


def sample_pixels(
    key: PRNGKeyArray, flow: Flow, params: Sequence[Params], n: int, lam: float = 1e-6
) -> Float[np.ndarray, "n D"]:
    """``n`` grey images of a flow on the logit space: ``x = logit⁻¹(f⁻¹(z))``, ``z ~ N(0,
    I)``, clipped to [0, 1] (jitted)."""
    z = jax.jit(flow.sample, static_argnums=2)(key, params, n)
    return np.clip(np.asarray(logit_inverse(z, lam)), 0.0, 1.0)


def make_loss(flow: Flow, lam: float = 1e-6, n_levels: int = 256):
    """``loss(params, levels, key) -> (nll, {"bits_per_dim": ...})`` for training on 8-bit
    levels ``[B, D]``: a fresh uniform dequantisation per call (:func:`dequantise`), the
    logit transform, ``nll = -mean log p_x(x)`` (nats of ``x ∈ [0, 1)^D``) and the bits/dim
    of ``y = n_levels · x``, ``(nll + D log n_levels) / (D log 2)``."""
    D = flow.n_dims

    def loss(params, levels, key):
        lp, _ = pixel_log_prob(flow, params, dequantise(key, levels, n_levels), lam)
        nll = -jnp.mean(lp)
        return nll, {"bits_per_dim": (nll + D * math.log(n_levels)) / (D * math.log(2.0))}

    return loss
