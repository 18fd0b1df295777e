r"""Maximum mean discrepancy with a mixture of Gaussian kernels (§20.10.5).

For distributions P, Q and a kernel k, the squared MMD (Gretton et al. 2012, eq. 3) is

.. math:: \mathrm{MMD}^2 = \mathbb{E}\,k(x, x') + \mathbb{E}\,k(y, y') - 2\,\mathbb{E}\,k(x, y),
          \quad x, x' \sim P,\ y, y' \sim Q \text{ independent};

it is 0 iff P = Q for a characteristic kernel such as the Gaussian.  Here
:math:`k(x, y) = \sum_s \exp(-\lVert x - y\rVert^2 / (2σ_s^2))`, a sum over the bandwidths
``σ_s`` (a mixture of scales, as generative moment matching networks use).  From samples
:math:`x_{1..n}`, :math:`y_{1..m}`:

- the **unbiased** U-statistic (Gretton et al. eq. 4) leaves the diagonal terms
  :math:`k(x_i, x_i)` out: :math:`\frac{1}{n(n-1)}\sum_{i≠j} k(x_i, x_j) + \frac{1}{m(m-1)}
  \sum_{i≠j} k(y_i, y_j) - \frac{2}{nm}\sum_{i,j} k(x_i, y_j)`; its expectation is MMD² exactly
  (it may be negative);
- the **biased** V-statistic (eq. 5) keeps them (all three means over full Gram matrices); it is
  ≥ 0, exactly 0 for identical sample sets, and overestimates MMD² by
  :math:`\frac{1}{n}(\mathbb{E}k(x,x) - \mathbb{E}k(x,x')) + \frac{1}{m}(\ldots)` on average.

Generative moment matching (Li et al. 2015) trains a generator by minimising
:math:`\sqrt{\mathrm{MMD}^2_b}` between a minibatch of its samples and a minibatch of data
(:func:`gmmn_loss`).  **Bandwidths, not variances:** Li et al.'s code writes the kernel as
``exp(-|x - y|^2 / (2 sigma))`` with ``sigma`` in {2, 5, 10, 20, 40, 80} on MNIST pixels, so
their ``sigma`` is σ²; :data:`LI2015_MNIST_BANDWIDTHS` holds the square roots.

GMMN+AE (Li et al. 2015, §3.3): an autoencoder (:class:`Autoencoder`; MNIST: 784-1024-32
sigmoid encoder with dropout, mirrored sigmoid decoder, cross-entropy loss) is trained first;
the generator then matches the *codes* of the training data (one kernel, σ² = 1,
:data:`LI2015_MNIST_CODE_BANDWIDTHS`), and its samples are decoded.  :func:`li2015_sgd` is
their optimiser (SGD with momentum and the step drop), :func:`positive_numbers` the parser of
their comma-separated sizes and variances.

The Gram matrices are computed whole (``n × m`` floats each; no chunking), from
:math:`\lVert x\rVert^2 + \lVert y\rVert^2 - 2 x·y` clipped at 0, under ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.errors import ConfigError, DataError

__all__ = [
    "LI2015_MNIST_BANDWIDTHS",
    "LI2015_MNIST_CODE_BANDWIDTHS",
    "Autoencoder",
    "autoencoder_loss",
    "check_bandwidths",
    "decode",
    "encode",
    "gaussian_kernel",
    "gmmn_loss",
    "init_autoencoder",
    "code_space_report",
    "li2015_ae_sgd",
    "li2015_sgd",
    "mmd2",
    "mmd2_with_floor",
    "positive_numbers",
]

#: Li et al. (2015)'s data-space kernels on MNIST, as bandwidths σ = sqrt({2, 5, 10, 20, 40, 80}).
LI2015_MNIST_BANDWIDTHS = tuple(math.sqrt(v) for v in (2.0, 5.0, 10.0, 20.0, 40.0, 80.0))
#: Li et al.'s code-space kernel (GMMN+AE on MNIST): one kernel, σ² = 1.
LI2015_MNIST_CODE_BANDWIDTHS = (1.0,)


def check_bandwidths(bandwidths: Sequence[float]) -> tuple[float, ...]:
    """The bandwidths as a tuple of floats; :class:`ConfigError` unless a non-empty sequence
    of finite numbers > 0."""
    try:
        bw = tuple(float(b) for b in bandwidths)
    except (TypeError, ValueError):
        raise ConfigError(
            f"bandwidths must be a sequence of numbers > 0 (e.g. (1.0, 2.0)), got {bandwidths!r}"
        ) from None
    if not bw or any(not (math.isfinite(b) and b > 0) for b in bw):
        raise ConfigError(f"every kernel bandwidth must be finite and > 0, got {bandwidths!r}")
    return bw


def _check_samples(x: Any, y: Any, unbiased: bool) -> None:
    sx, sy = jnp.shape(x), jnp.shape(y)
    if len(sx) != 2 or len(sy) != 2:
        raise DataError(f"MMD needs two (N, D) sample sets, got shapes {sx} and {sy}")
    if sx[1] != sy[1]:
        raise DataError(
            f"the sample sets have {sx[1]} and {sy[1]} features; MMD compares sets of the same "
            f"dimension (flatten images alike)"
        )
    least = 2 if unbiased else 1
    if min(sx[0], sy[0]) < least:
        raise DataError(
            f"the {'unbiased' if unbiased else 'biased'} MMD² needs at least {least} samples per "
            f"set, got {sx[0]} and {sy[0]}"
        )


def _gram(x: Array, y: Array, bandwidths: tuple[float, ...]) -> Array:
    sq = jnp.sum(x * x, 1)[:, None] + jnp.sum(y * y, 1)[None, :] - 2.0 * (x @ y.T)
    sq = jnp.maximum(sq, 0.0)
    return sum(jnp.exp(-sq / (2.0 * b * b)) for b in bandwidths)


def gaussian_kernel(
    x: Float[Array, "n d"], y: Float[Array, "m d"], bandwidths: Sequence[float]
) -> Float[Array, "n m"]:
    """The Gram matrix ``K[i, j] = Σ_s exp(-|x_i - y_j|² / (2 σ_s²))``."""
    bw = check_bandwidths(bandwidths)
    _check_samples(x, y, unbiased=False)
    return _gram(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), bw)


def _mean_offdiag(k: Array) -> Array:
    n = k.shape[0]
    return (jnp.sum(k) - jnp.sum(jnp.diag(k))) / (n * (n - 1))


@functools.partial(jax.jit, static_argnames=("bandwidths", "unbiased"))
def _mmd2(x: Array, y: Array, bandwidths: tuple[float, ...], unbiased: bool) -> Array:
    kxx, kyy, kxy = _gram(x, x, bandwidths), _gram(y, y, bandwidths), _gram(x, y, bandwidths)
    if unbiased:
        return _mean_offdiag(kxx) + _mean_offdiag(kyy) - 2.0 * jnp.mean(kxy)
    if x.shape[0] == y.shape[0]:
        # the same sum, elementwise: for identical sample sets the three Gram matrices are the
        # same numbers (one program on equal inputs), so every term is exactly 0
        return jnp.mean((kxx - kxy) + (kyy - kxy))
    return jnp.mean(kxx) + jnp.mean(kyy) - 2.0 * jnp.mean(kxy)


def mmd2(
    x: Float[Array, "n d"],
    y: Float[Array, "m d"],
    bandwidths: Sequence[float],
    *,
    unbiased: bool = True,
) -> Float[Array, ""]:
    """The squared MMD between the sample sets ``x`` and ``y`` with the kernel mixture of
    ``bandwidths`` (module docstring): the U-statistic (``unbiased=True``) or the V-statistic.
    Differentiable in ``x`` and ``y``; jitted (bandwidths are static).

    Raises:
      ConfigError: a bandwidth that is not finite and > 0, or none.
      DataError: not two 2-D arrays, different feature dimensions, or too few samples (2 per
        set for the U-statistic).
    """
    bw = check_bandwidths(bandwidths)
    _check_samples(x, y, unbiased)
    return _mmd2(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), bw, bool(unbiased))


def gmmn_loss(
    samples: Float[Array, "n d"],
    data: Float[Array, "m d"],
    bandwidths: Sequence[float],
    *,
    eps: float = 1e-10,
) -> Float[Array, ""]:
    """Li et al. (2015)'s training loss: ``sqrt(MMD²_b(samples, data) + eps)`` with the biased
    V-statistic (their ``SqrtGaussianKernelMmdLoss``; ``eps`` keeps the gradient finite when the
    sets coincide)."""
    return jnp.sqrt(mmd2(samples, data, bandwidths, unbiased=False) + eps)


def mmd2_with_floor(
    samples: Float[ArrayLike, "n d"],
    test: Float[ArrayLike, "m d"],
    reference: Float[ArrayLike, "r d"],
    bandwidths: Sequence[float] = LI2015_MNIST_BANDWIDTHS,
) -> dict[str, float]:
    """A generator's unbiased MMD² to held-out data beside its floor: ``test_mmd2`` of the
    first ``n`` samples against as many ``test`` examples, and ``test_mmd2_floor``, the same
    statistic for as many ``reference`` examples (training data: what a model that had
    learnt the data distribution would reach with this many examples)."""
    n = min(len(samples), len(test), len(reference))
    t = jnp.asarray(test[:n])
    return {
        "test_mmd2": float(mmd2(jnp.asarray(samples[:n]), t, bandwidths)),
        "test_mmd2_floor": float(mmd2(jnp.asarray(reference[:n]), t, bandwidths)),
    }


# ----------------------------------------------------------------------------- GMMN+AE


def positive_numbers(s: str, kind: type = float) -> tuple:
    """``"2,5,10"`` → ``(2.0, 5.0, 10.0)`` (``kind`` int for layer sizes); :class:`ConfigError`
    unless every comma-separated value parses and is > 0."""
    try:
        out = tuple(kind(w) for w in str(s).split(","))
    except ValueError:
        raise ConfigError(f"expected comma-separated numbers, got {s!r}") from None
    if not all(v > 0 for v in out):
        raise ConfigError(f"every value must be > 0, got {s!r}")
    return out


def li2015_sgd(
    learning_rate: float, momentum: float = 0.9, drop_after: int = 10_000
) -> optax.GradientTransformation:
    """Li et al.'s SGD: momentum ``μ`` and ``learning_rate`` for ``drop_after`` updates, then
    ``learning_rate / 10`` and momentum ``1 - (1 - μ) / 10`` (``learning_rate`` and
    ``momentum`` injected: sweepable)."""

    def factory(learning_rate, momentum):
        mult = lambda t: jnp.where(t < drop_after, 1.0, 0.1)
        return optax.chain(optax.trace(decay=momentum), optax.scale_by_schedule(mult),
                           optax.scale_by_learning_rate(learning_rate))  # fmt: skip

    mu = lambda t: jnp.where(t < drop_after, momentum, 1 - (1 - momentum) / 10)
    return optax.inject_hyperparams(factory)(learning_rate=learning_rate, momentum=mu)


@dataclasses.dataclass(frozen=True)
class Autoencoder:
    """The autoencoder of GMMN+AE (Li et al. 2015, MNIST: ``hidden=(1024, 32)``, ``dropout=
    (0.2, 0.5)``): encoder ``n_in → hidden[0] → … → hidden[-1]`` with sigmoid units, inverted
    dropout of rate ``dropout[l]`` on the input of encoder layer ``l`` while training (their
    code gives a rate per encoder layer; we read it as input dropout), decoder mirrored with
    sigmoid units and a sigmoid output (grey levels), loss the pixels' cross-entropy."""

    n_in: int = 784
    hidden: tuple[int, ...] = (1024, 32)
    dropout: tuple[float, ...] = (0.2, 0.5)

    def check(self) -> Autoencoder:
        """Raise :class:`ConfigError` for sizes or rates it cannot take."""
        if self.n_in < 1 or not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"autoencoder sizes must be >= 1, got {self.n_in}, {self.hidden}")
        if len(self.dropout) != len(self.hidden) or not all(0 <= r < 1 for r in self.dropout):
            raise ConfigError(
                f"give one dropout rate in [0, 1) per encoder layer ({len(self.hidden)}), got "
                f"{self.dropout}"
            )
        return self

    @property
    def code_dim(self) -> int:
        return self.hidden[-1]


def _dense(key: PRNGKeyArray, sizes: Sequence[int]) -> list[dict]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"W": jax.random.normal(k, (a, b)) * math.sqrt(1.0 / a), "b": jnp.zeros((b,))}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]  # fmt: skip


def init_autoencoder(key: PRNGKeyArray, ae: Autoencoder) -> dict:
    """``{"encoder": [...], "decoder": [...]}``: dense layers ``{"W", "b"}`` (normal weights
    of variance 1 / fan-in, zero biases)."""
    ae.check()
    k_enc, k_dec = jax.random.split(key)
    sizes = (ae.n_in, *ae.hidden)
    return {"encoder": _dense(k_enc, sizes), "decoder": _dense(k_dec, sizes[::-1])}


@functools.partial(jax.jit, static_argnums=0)
def encode(
    ae: Autoencoder,
    params: dict,
    x: Float[ArrayLike, "n d"],
    dropout_key: PRNGKeyArray | None = None,
) -> Float[Array, "n code"]:
    """The codes ``h ∈ (0, 1)^code_dim`` of ``x``; with ``dropout_key``, the training pass
    (inverted dropout, so the pass without it is the test-time average).  Jitted."""
    h = jnp.asarray(x, jnp.float32)
    n = len(ae.hidden)
    keys = [None] * n if dropout_key is None else list(jax.random.split(dropout_key, n))
    for layer, rate, k in zip(params["encoder"], ae.dropout, keys, strict=True):
        if k is not None and rate > 0:
            h = jnp.where(jax.random.bernoulli(k, 1 - rate, h.shape), h / (1 - rate), 0.0)
        h = jax.nn.sigmoid(h @ layer["W"] + layer["b"])
    return h


def _decode_logits(params: dict, h: Array) -> Array:
    layers = params["decoder"]
    for layer in layers[:-1]:
        h = jax.nn.sigmoid(h @ layer["W"] + layer["b"])
    return h @ layers[-1]["W"] + layers[-1]["b"]


def decode(params: dict, h: Float[ArrayLike, "n code"]) -> Float[Array, "n d"]:
    """Grey images in (0, 1) from codes."""
    return jax.nn.sigmoid(_decode_logits(params, jnp.asarray(h, jnp.float32)))


def autoencoder_loss(ae: Autoencoder):
    """``loss(params, x, key)``: the mean over the batch of the pixels' summed cross-entropy
    ``-Σ_d [x_d log r_d + (1 - x_d) log(1 - r_d)]`` (nats per image) of the reconstruction
    ``r`` of ``x`` through the encoder with dropout (``key``) and the decoder (log-space:
    computed from the logits)."""

    def loss(params, x, key):
        logits = _decode_logits(params, encode(ae, params, x, key))
        ll = x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits)
        return -jnp.mean(jnp.sum(ll, -1))

    return loss


def li2015_ae_sgd(learning_rate: float, momentum: float = 0.9, max_norm: float = 10.0):
    """The autoencoder's optimiser of Li et al.'s code: SGD with momentum, the gradient's
    global norm clipped at ``max_norm`` (``learning_rate`` injected)."""
    sgd = lambda learning_rate: optax.sgd(learning_rate, momentum)
    clip = optax.clip_by_global_norm(max_norm)
    return optax.chain(clip, optax.inject_hyperparams(sgd)(learning_rate=learning_rate))


def code_space_report(
    ae: Autoencoder,
    params: dict,
    codes: Float[ArrayLike, "n code"],
    test: Float[ArrayLike, "m d"],
    train: Float[ArrayLike, "r d"],
    bandwidths: Sequence[float] = LI2015_MNIST_CODE_BANDWIDTHS,
) -> dict[str, float]:
    """GMMN+AE's code-space figures: ``code_test_mmd2`` (generated ``codes`` against the codes
    of ``test``) beside ``code_test_mmd2_floor`` (codes of ``train`` against them, as
    :func:`mmd2_with_floor`), and ``autoencoder_test_cross_entropy_nats``, the test images'
    reconstruction loss without dropout (:func:`autoencoder_loss`)."""
    n = len(codes)
    f = mmd2_with_floor(
        codes, encode(ae, params, test[:n]), encode(ae, params, train[:n]), bandwidths
    )
    rec = jax.jit(autoencoder_loss(ae))(params, jnp.asarray(test, jnp.float32), None)
    return {
        "code_test_mmd2": f["test_mmd2"],
        "code_test_mmd2_floor": f["test_mmd2_floor"],
        "autoencoder_test_cross_entropy_nats": float(rec),
    }
