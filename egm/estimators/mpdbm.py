r"""Multi-prediction deep Boltzmann machine (Goodfellow, Mirza, Courville & Bengio 2013; §20.4.5).

A DBM ``v - h¹ - ... - h^L`` with a softmax label layer ``y`` (one-hot, ``K`` classes)
attached to the top hidden layer:

.. math:: E(v, h, y) = E_{DBM}(v, h) - y^\top U^\top h^L - c^\top y .

Instead of maximum likelihood, the MP-DBM is trained by back-propagation through
mean-field inference.  For each example a random subset ``S`` of the inputs and the label
is hidden; the other variables are clamped; ``n_iter`` odd/even mean-field sweeps are
unrolled as a recurrent net; the loss is the cross-entropy of the hidden variables under
their mean-field marginals.  Because inference with any subset observed is trained, the
same network classifies (label hidden, all pixels observed) and fills in missing pixels.
No greedy pretraining and no sampling are needed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from egm.energies import dbm
from egm.energies.dbm import DBMParams
from egm.errors import ConfigError


class MPDBMParams(NamedTuple):
    """A DBM and its label layer: ``label_W`` (n_L, K) couples ``h^L`` and ``y``; ``label_b`` (K,)."""

    dbm: DBMParams
    label_W: Float[Array, "H K"]
    label_b: Float[Array, " K"]


def init(
    key: PRNGKeyArray, sizes: tuple[int, ...], n_classes: int, *, scale: float = 0.01
) -> MPDBMParams:
    """Random ``N(0, scale²)`` weights, zero biases; ``sizes = (V, H1, ..., HL)``."""
    if n_classes < 2:
        raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
    k1, k2 = jax.random.split(key)
    p = dbm.init(k1, sizes, scale=scale)
    U = scale * jax.random.normal(k2, (sizes[-1], n_classes), jnp.float32)
    return MPDBMParams(p, U, jnp.zeros((n_classes,), jnp.float32))


def energy(
    params: MPDBMParams, state: tuple[Float[Array, " n"], ...], y: Float[Array, " K"]
) -> Float[Array, ""]:
    """``E(v, h, y)`` for one state (tuple of layers) and a one-hot label ``y``."""
    return dbm.energy(params.dbm, state) - state[-1] @ params.label_W @ y - params.label_b @ y


class MeanFieldState(NamedTuple):
    """Mean-field marginals: ``layers = (v̂, μ¹, ..., μ^L)`` and the label distribution ``ŷ``."""

    layers: tuple
    y: Float[Array, " K"]


def _logits(params: MPDBMParams, layers: tuple, y: Array, l: int) -> Array:
    z = dbm.layer_logits(params.dbm, layers, l)
    if l == len(layers) - 1:
        z = z + params.label_W @ y
    return z


def _sweep(params, mf: MeanFieldState, v, v_obs, y_obs_value, y_obs):
    """One odd/even sweep: odd layers given even ones, then even ones; ``y`` counts as layer
    ``L+1``.  Observed variables stay clamped to their values."""
    layers, y = list(mf.layers), mf.y
    L = len(layers) - 1
    for parity in (1, 0):
        for l in range(parity, L + 1, 2):
            new = jax.nn.sigmoid(_logits(params, tuple(layers), y, l))
            layers[l] = jnp.where(v_obs, v, new) if l == 0 else new
        if (L + 1) % 2 == parity:
            y_new = jax.nn.softmax(params.label_b + layers[L] @ params.label_W)
            y = jnp.where(y_obs, y_obs_value, y_new)
    return MeanFieldState(tuple(layers), y)


def from_centered(params_c: MPDBMParams, offsets: tuple) -> MPDBMParams:
    """Ordinary parameters of a centered MP-DBM (Montavon & Müller 2012, §20.4.5).

    ``offsets = (μ_0, ..., μ_L, μ_y)``: one vector per layer and one for the label.  The
    centered energy replaces every unit ``x`` by ``x - μ`` in the couplings and biases; with
    the label coupling ``-(h^L - μ_L)ᵀU(y - μ_y) - cᵀ(y - μ_y)`` the ordinary label bias is
    ``c - Uᵀμ_L`` and the top layer's bias gains ``-U μ_y``.  Training the centered
    parameters (this map is linear and differentiable) keeps hidden units from collapsing
    into constant "bias units", the failure of uncentered MP training from random init
    measured in BUILD_NOTES.md.
    """
    *layer_offsets, mu_y = offsets
    base = dbm.from_centered(params_c.dbm, tuple(layer_offsets))
    biases = list(base.biases)
    biases[-1] = biases[-1] - params_c.label_W @ mu_y
    label_b = params_c.label_b - layer_offsets[-1] @ params_c.label_W
    return MPDBMParams(DBMParams(base.weights, tuple(biases)), params_c.label_W, label_b)


def init_centered(
    key: PRNGKeyArray,
    sizes: tuple[int, ...],
    n_classes: int,
    data_mean: Float[Array, " V"],
    *,
    scale: float = 0.01,
) -> tuple[MPDBMParams, tuple]:
    """Centered parameters and offsets for MP training from random initialisation.

    Offsets ``(data mean, ½, ..., ½, 1/K)``; centered weights ``N(0, scale²)``, visible bias
    ``logit(data mean)`` (so the untrained model already predicts every pixel's marginal),
    other biases zero.  Map to ordinary parameters with :func:`from_centered`.
    """
    params = init(key, sizes, n_classes, scale=scale)
    m = jnp.clip(jnp.asarray(data_mean, jnp.float32), 1e-3, 1 - 1e-3)
    if m.shape != (sizes[0],):
        raise ConfigError(f"data_mean has shape {m.shape}, expected ({sizes[0]},)")
    biases = (jnp.log(m) - jnp.log1p(-m), *params.dbm.biases[1:])
    params = params._replace(dbm=params.dbm._replace(biases=biases))
    offsets = (
        m,
        *(jnp.full_like(b, 0.5) for b in params.dbm.biases[1:]),
        jnp.full((n_classes,), 1.0 / n_classes, jnp.float32),
    )
    return params, offsets


def mean_field(
    params: MPDBMParams,
    v: Float[Array, " V"],
    v_observed: Float[Array, " V"],
    y: Float[Array, " K"],
    y_observed: Array,
    n_iter: int,
) -> MeanFieldState:
    """``n_iter`` unrolled mean-field sweeps with ``v_i`` clamped where ``v_observed`` and ``y``
    clamped if ``y_observed``; hidden inputs start at ½, the label at uniform, hidden layers
    at ½.  Differentiable end to end (a ``scan``)."""
    v_obs = v_observed.astype(bool)
    y_obs = jnp.asarray(y_observed, bool)
    K = params.label_b.shape[0]
    layers0 = (
        jnp.where(v_obs, v, 0.5),
        *(jnp.full_like(b, 0.5) for b in params.dbm.biases[1:]),
    )
    y0 = jnp.where(y_obs, y, jnp.full((K,), 1.0 / K))

    def body(mf, _):
        return _sweep(params, mf, v, v_obs, y, y_obs), None

    mf, _ = jax.lax.scan(body, MeanFieldState(layers0, y0), None, length=n_iter)
    return mf


def mp_loss(
    key: PRNGKeyArray,
    params: MPDBMParams,
    v: Float[Array, "B V"],
    labels: Int[Array, " B"],
    *,
    n_iter: int = 10,
    hide_prob: float = 0.5,
    label_weight: float = 1.0,
) -> tuple[Float[Array, ""], dict]:
    """The multi-prediction loss for a batch.

    Each pixel and each label is hidden independently with probability ``hide_prob`` (the
    random subsets ``S`` of the paper); after ``n_iter`` mean-field sweeps the loss is
    ``Σ_{i∈S} BCE(v_i, v̂_i) + label_weight · [y ∈ S] CE(y, ŷ)``, averaged over the batch.
    Returns the loss and diagnostics (pixel and label parts).
    """
    K = params.label_b.shape[0]
    y1h = jax.nn.one_hot(labels, K)
    kv, ky = jax.random.split(key)
    hide_v = jax.random.bernoulli(kv, hide_prob, v.shape)
    hide_y = jax.random.bernoulli(ky, hide_prob, labels.shape)

    def one(v_i, y_i, hv, hy):
        mf = mean_field(params, v_i, ~hv, y_i, ~hy, n_iter)
        vhat = jnp.clip(mf.layers[0], 1e-6, 1 - 1e-6)
        bce = -(v_i * jnp.log(vhat) + (1 - v_i) * jnp.log1p(-vhat))
        pix = jnp.sum(jnp.where(hv, bce, 0.0))
        lab = jnp.where(hy, -jnp.sum(y_i * jnp.log(jnp.clip(mf.y, 1e-12, 1.0))), 0.0)
        return pix, lab

    pix, lab = jax.vmap(one)(v, y1h, hide_v, hide_y)
    loss = jnp.mean(pix) + label_weight * jnp.mean(lab)
    return loss, {"pixel_nll": jnp.mean(pix), "label_nll": jnp.mean(lab)}


def predict_proba(
    params: MPDBMParams, v: Float[Array, "B V"], n_iter: int = 10
) -> Float[Array, "B K"]:
    """``Q(y | v)``: mean field with every pixel clamped and the label free."""
    K = params.label_b.shape[0]

    def one(v_i):
        ones = jnp.ones_like(v_i)
        return mean_field(params, v_i, ones, jnp.zeros((K,)), False, n_iter).y

    return jax.vmap(one)(v)


def check_params(params: MPDBMParams) -> None:
    """Raise :class:`ConfigError` if the label layer does not fit the DBM's top layer."""
    H = params.dbm.biases[-1].shape[0]
    if params.label_W.shape != (H, params.label_b.shape[0]):
        raise ConfigError(
            f"label_W has shape {params.label_W.shape}; with {H} top hidden units and "
            f"{params.label_b.shape[0]} classes it must be ({H}, {params.label_b.shape[0]})"
        )


def ordinary(params: MPDBMParams, offsets: tuple) -> MPDBMParams:
    """The ordinary parameters: :func:`from_centered` with ``offsets``, or ``params`` as they
    are when ``offsets`` is empty (uncentered training)."""
    return from_centered(params, offsets) if len(offsets) else params


_predict = jax.jit(lambda p, v, n: predict_proba(p, v, n), static_argnums=2)


def classification_error(
    params: MPDBMParams, v, labels, *, n_iter: int = 10, batch_size: int = 1000
) -> float:
    """Fraction of examples whose arg-max ``Q(y | v)`` (:func:`predict_proba`) is wrong."""
    import numpy as np

    v, labels = np.asarray(v), np.asarray(labels)
    wrong = 0
    for i in range(0, v.shape[0], batch_size):
        q = _predict(params, jnp.asarray(v[i : i + batch_size], jnp.float32), n_iter)
        wrong += int(np.sum(np.argmax(np.asarray(q), axis=1) != labels[i : i + batch_size]))
    return wrong / max(v.shape[0], 1)
