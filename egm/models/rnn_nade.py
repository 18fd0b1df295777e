r"""The RNN-NADE (§20.7; Boulanger-Lewandowski, Bengio & Vincent 2012, §4).

The RNN-RBM of :mod:`egm.models.rnn_rbm` with each frame's RBM replaced by a NADE
(:mod:`egm.models.nade`, identity ordering: the 88 keys low to high): the same RNN,
``u_t = tanh(b_u + W_uu u_{t-1} + W_vu v_t)``, gives the NADE's biases

.. math:: b_v^t = b_v + W_{uv} u_{t-1}, \qquad b_h^t = b_h + W_{uh} u_{t-1},

and ``p(v_t | v_{<t}) = Π_i σ(±(b_{v,i}^t + V_i · σ(b_h^t + Σ_{j<i} W_j v_{t,j})))`` is exact,
so the log-likelihood per time step needs no ``log Z`` estimate and the gradient is the
exact gradient of ``-log p(v_1..v_T)``, back-propagated through time by autodiff (through
:func:`egm.models.nade.nade_logits` with one bias row per frame: its O(DH) custom VJP) --
where the RNN-RBM follows a CD-k estimate.  Optional pretraining fits the NADE's ``W, V,
b_v, b_h`` to all training frames (the analogue of the RNN-RBM's RBM pretraining).

Evaluation: the exact ``log p(v_t | v_{<t})`` of every frame; the frame accuracy of Bay et
al. (2009) from Monte-Carlo marginals ``P(v_ti = 1 | v_{<t})`` over exact ancestral samples
(a NADE's marginals have no closed form).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.models import nade
from egm.models._autoregressive import bernoulli_log_prob
from egm.models.rnn_rbm import _map_frames, base_visible_bias, check_init, rnn_states
from egm.train.state import loss_objective

__all__ = [
    "NADEFrameParams",
    "RNNNADEParams",
    "frame_biases",
    "frame_log_probs",
    "frame_nade_init",
    "frame_nade_objective",
    "generate",
    "marginals_sampled",
    "rnn_nade_init",
    "sequence_objective",
    "split_log_likelihood",
]


class NADEFrameParams(NamedTuple):
    """A NADE over single frames (the pretraining model): input weights ``W (V, H)``,
    output weights ``V (V, H)``, visible biases ``b_v (V,)``, hidden biases ``b_h (H,)``."""

    W: Float[Array, "V H"]
    V: Float[Array, "V H"]
    b_v: Float[Array, " V"]
    b_h: Float[Array, " H"]


class RNNNADEParams(NamedTuple):
    """RNN-NADE: the NADE's ``W, V (V, H)`` and static biases ``b_v, b_h``; the RNN's
    ``W_uv (U, V)``, ``W_uh (U, H)``, ``W_vu (V, U)``, ``W_uu (U, U)``, ``b_u (U,)``, ``u0 (U,)``
    (the names and roles of :class:`egm.models.rnn_rbm.RNNRBMParams`)."""

    W: Float[Array, "V H"]
    V: Float[Array, "V H"]
    b_v: Float[Array, " V"]
    b_h: Float[Array, " H"]
    W_uv: Float[Array, "U V"]
    W_uh: Float[Array, "U H"]
    W_vu: Float[Array, "V U"]
    W_uu: Float[Array, "U U"]
    b_u: Float[Array, " U"]
    u0: Float[Array, " U"]


def rnn_nade_init(
    key: PRNGKeyArray,
    n_visible: int,
    n_hidden: int,
    n_recurrent: int,
    *,
    scale: float = 0.01,
    data_mean: Float[Array, " V"] | None = None,
    nade_params: NADEFrameParams | None = None,
) -> RNNNADEParams:
    """Initial RNN-NADE: every matrix ``N(0, scale²)``, ``b_h = b_u = u0 = 0``, ``b_v`` the
    base-rate logits of ``data_mean`` (or 0); ``nade_params`` (a pretrained frame NADE)
    replaces ``W, V, b_v, b_h``."""
    mean = check_init(n_visible, n_hidden, n_recurrent, data_mean, nade_params, "NADE")
    p = _init(key, int(n_visible), int(n_hidden), int(n_recurrent), scale, mean)
    if nade_params is not None:
        p = p._replace(**{k: jnp.asarray(v, jnp.float32) for k, v in nade_params._asdict().items()})
    return p


@jax.jit(static_argnums=(1, 2, 3))  # one compiled program, not one per random draw
def _init(key, n_visible, n_hidden, U, scale, data_mean):
    k = jax.random.split(key, 6)
    g = lambda kk, shape: scale * jax.random.normal(kk, shape, jnp.float32)
    z = jnp.zeros((U,), jnp.float32)
    return RNNNADEParams(
        g(k[0], (n_visible, n_hidden)), g(k[1], (n_visible, n_hidden)),
        base_visible_bias(n_visible, data_mean), jnp.zeros((n_hidden,), jnp.float32),
        g(k[2], (U, n_visible)), g(k[3], (U, n_hidden)), g(k[4], (n_visible, U)),
        g(k[5], (U, U)), z, z,
    )  # fmt: skip


def frame_nade_init(
    key: PRNGKeyArray,
    n_visible: int,
    n_hidden: int,
    *,
    scale: float = 0.01,
    data_mean: Float[Array, " V"] | None = None,
) -> NADEFrameParams:
    """A frame NADE for pretraining, initialised as :func:`rnn_nade_init` initialises its
    NADE part."""
    p = rnn_nade_init(key, n_visible, n_hidden, 1, scale=scale, data_mean=data_mean)
    return NADEFrameParams(p.W, p.V, p.b_v, p.b_h)


# --------------------------------------------------------------------------- likelihood


def frame_biases(
    params: RNNNADEParams, roll: Float[Array, "T V"]
) -> tuple[Float[Array, "T V"], Float[Array, "T H"]]:
    """The NADE biases ``(b_v^t, b_h^t)`` of every frame given the frames before it."""
    u = rnn_states(params, roll)
    return params.b_v + u @ params.W_uv, params.b_h + u @ params.W_uh


def _log_probs_and_biases(params, rolls):
    """``(log p(v_t | v_{<t}), b_v^t, b_h^t)`` of every frame of ``rolls (*N, T, V)``: the RNN
    once, then every frame's NADE conditionals in one batched :func:`nade_logits` call."""
    flat = rolls.reshape(-1, *rolls.shape[-2:])
    b_v, b_h = jax.vmap(frame_biases, in_axes=(None, 0))(params, flat)
    V, H = flat.shape[-1], params.W.shape[1]
    v = flat.reshape(-1, V)
    logits = nade.nade_logits(params.W, b_h.reshape(-1, H), params.V, b_v.reshape(-1, V), v)
    lead = rolls.shape[:-1]
    return (bernoulli_log_prob(logits, v).reshape(lead), b_v.reshape(*lead, V),
            b_h.reshape(*lead, H))  # fmt: skip


@jax.jit
def frame_log_probs(params: RNNNADEParams, rolls: Float[Array, "*N T V"]) -> Float[Array, "*N T"]:
    """Exact ``log p(v_t | v_{<t})`` (nats) of every frame of one or more (padded) sequences;
    padding frames get a value too (mask it)."""
    return _log_probs_and_biases(params, rolls)[0]


def sequence_objective():
    """The exact maximum-likelihood objective for :func:`egm.train.make_step` on a batch
    ``{"rolls": (B, T, V), "mask": (B, T)}``: the gradient of ``-Σ mask log p(v_t | v_{<t}) /
    Σ mask`` (back-propagation through time); metric ``loss`` (its value, nats per step)."""

    def loss(params, batch, key):
        ll = _log_probs_and_biases(params, batch["rolls"])[0]
        return -jnp.sum(batch["mask"] * ll) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)

    return loss_objective(loss)


def frame_nade_objective():
    """Maximum likelihood on single frames for :func:`egm.train.make_step` (the pretraining of
    the NADE part): params :class:`NADEFrameParams`, batch ``(B, V)`` frames; metric ``loss``
    (mean ``-log p(v)``, nats)."""

    def loss(p, v, key):
        logits = nade.nade_logits(p.W, p.b_h, p.V, p.b_v, v)
        return -jnp.mean(bernoulli_log_prob(logits, v))

    return loss_objective(loss)


_split_ll = jax.jit(_log_probs_and_biases)


def split_log_likelihood(
    params: RNNNADEParams, rolls: Float[Array, "N T V"], mask: Float[Array, "N T"]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``log p(v_t | v_{<t})`` of every real frame of a padded split, with the frames
    and their NADEs' biases: ``(ll (F,), v (F, V), b_v (F, V), b_h (F, H))`` (host arrays,
    padding dropped; the same contract as
    :func:`egm.models.rnn_rbm.split_log_likelihood_exact`)."""
    ll, b_v, b_h = _split_ll(params, jnp.asarray(rolls))
    keep = np.asarray(mask) > 0
    return tuple(np.asarray(x)[keep] for x in (ll, rolls, b_v, b_h))  # type: ignore[return-value]


# --------------------------------------------------------------------------- sampling


def marginals_sampled(
    key: PRNGKeyArray,
    params: RNNNADEParams,
    b_v: Float[Array, "F V"],
    b_h: Float[Array, "F H"],
    *,
    n_samples: int = 10,
) -> Float[Array, "F V"]:
    """Monte-Carlo ``P(v_ti = 1 | v_{<t})`` per frame: the mean of ``n_samples`` exact
    ancestral samples of each frame's NADE (unbiased; standard error ≤ ``0.5 / √n``)."""
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
    keys = jax.random.split(key, b_v.shape[0])
    return _marginals(keys, params.W, params.V, jnp.asarray(b_v), jnp.asarray(b_h), n_samples)


@jax.jit(static_argnums=(5,))
def _marginals(keys, W, V, b_v, b_h, n):
    def one(k, bv, bh):
        ks = jax.random.split(k, n)
        draws = jax.vmap(nade.conditional_sample, in_axes=(0, None, None, None, None))(
            ks, W, bh, V, bv
        )
        return draws.mean(0)

    return _map_frames(jax.vmap(one), (keys, b_v, b_h), 256)


def generate(key: PRNGKeyArray, params: RNNNADEParams, n_steps: int) -> Float[Array, "T V"]:
    """Sample a sequence of ``n_steps`` frames exactly: each frame ancestrally from its NADE,
    then the RNN state moves on with it (a ``lax.scan``)."""
    if n_steps < 1:
        raise ConfigError(f"n_steps must be >= 1, got {n_steps}")
    return _generate(key, params, n_steps)


@jax.jit(static_argnums=(2,))
def _generate(key, params, n_steps):
    def body(u, k):
        b_v, b_h = params.b_v + u @ params.W_uv, params.b_h + u @ params.W_uh
        v = nade.conditional_sample(k, params.W, b_h, params.V, b_v)
        return jnp.tanh(params.b_u + u @ params.W_uu + v @ params.W_vu), v

    return jax.lax.scan(body, params.u0, jax.random.split(key, n_steps))[1]
