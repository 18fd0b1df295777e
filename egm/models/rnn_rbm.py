r"""RBMs for sequences (§20.7): the conditional RBM and the RNN-RBM.

Both models are, at each time step ``t``, a binary RBM over the frame ``v_t`` (visible, ``V``
units) with hidden units ``h_t`` (``H``), shared couplings ``W`` and *dynamic* biases that
depend on the past only:

.. math:: p(v_t \mid v_{<t}) = \frac{1}{Z_t} \sum_{h} \exp\big(b_v^{t\top} v_t + b_h^{t\top} h
          + v_t^\top W h\big) = \frac{\exp(-F_t(v_t))}{Z_t},

so ``log p(v_1..v_T) = Σ_t [-F_t(v_t) - log Z_t]``.

- **Conditional RBM** (Taylor, Hinton & Roweis 2007): the biases are linear in the previous
  ``n`` frames, ``b_v^t = b_v + Aᵀ past_t`` and ``b_h^t = b_h + Bᵀ past_t`` with
  ``past_t = [v_{t-1}, ..., v_{t-n}]`` (zeros before the first frame).
- **RNN-RBM** (Boulanger-Lewandowski, Bengio & Vincent 2012, eqs. 9–11): an RNN state
  ``u_t = tanh(b_u + W_uu u_{t-1} + W_vu v_t)`` (``u_0`` a parameter) gives
  ``b_v^t = b_v + W_uv u_{t-1}`` and ``b_h^t = b_h + W_uh u_{t-1}``.

Training (the paper's §3, CD through time): at each ``t`` draw ``v_t^*`` by ``k`` block Gibbs
sweeps of the frame's RBM started at ``v_t``, and follow the gradient of

.. math:: C = \frac{1}{N} \sum_t \big[F_t(v_t) - F_t(\mathrm{sg}(v_t^*))\big]

with ``sg`` a stop-gradient.  Since ``∂ log Z_t / ∂θ = -E_{p_t}[∂F_t(v)/∂θ]`` for every
parameter ``θ`` (also those that reach ``F_t`` only through the biases), ``E[∇C]`` with exact
negatives is the exact gradient of the negative log-likelihood; autodiff of ``C`` gives the
CD estimate of ``∂/∂W`` and back-propagates the bias gradients ``v_t^* - v_t`` (and the hidden
ones) through the RNN in time.  The RNN is one ``lax.scan`` over time; the data frames fix
every bias, so all frames' Gibbs chains then run in parallel.  Sequences are padded and
masked (:mod:`egm.data.polyphonic`).

Evaluation: ``log Z_t`` per frame exactly by enumerating the hidden layer (``H`` ≤ 20) or by
AIS from the frame's own visible biases (:func:`egm.estimators.ais.rbm_ais_unchecked`
vmapped over frames), and the frame-level accuracy of Bay et al. (2009).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import rbm
from egm.energies.rbm import RBMParams
from egm.errors import ConfigError, DataError
from egm.estimators import ais, exact
from egm.train.state import ObjectiveOut


class RNNRBMParams(NamedTuple):
    """RNN-RBM: RBM couplings ``W (V, H)`` and static biases ``b_v, b_h``; the RNN's
    ``W_uv (U, V)``, ``W_uh (U, H)`` (state to biases), ``W_vu (V, U)``, ``W_uu (U, U)``,
    ``b_u (U,)`` and initial state ``u0 (U,)``."""

    W: Float[Array, "V H"]
    b_v: Float[Array, " V"]
    b_h: Float[Array, " H"]
    W_uv: Float[Array, "U V"]
    W_uh: Float[Array, "U H"]
    W_vu: Float[Array, "V U"]
    W_uu: Float[Array, "U U"]
    b_u: Float[Array, " U"]
    u0: Float[Array, " U"]


class CRBMParams(NamedTuple):
    """Conditional RBM of order ``n``: ``W (V, H)``, ``b_v``, ``b_h`` and the autoregressive
    maps ``A (nV, V)`` (past to visible biases) and ``B (nV, H)`` (past to hidden biases)."""

    W: Float[Array, "V H"]
    b_v: Float[Array, " V"]
    b_h: Float[Array, " H"]
    A: Float[Array, "nV V"]
    B: Float[Array, "nV H"]


SeqParams = RNNRBMParams | CRBMParams


def _sizes(n_visible: int, n_hidden: int, other: int, what: str) -> None:
    for name, val in (("n_visible", n_visible), ("n_hidden", n_hidden), (what, other)):
        if not isinstance(val, int | np.integer) or val < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {val!r}")


def base_visible_bias(n_visible: int, data_mean: Float[Array, " V"] | None) -> Float[Array, " V"]:
    """The initial visible biases: the base-rate logits of ``data_mean``, or zeros."""
    if data_mean is None:
        return jnp.zeros((n_visible,), jnp.float32)
    return rbm.base_rate_logits(jnp.asarray(data_mean, jnp.float32))


def check_init(n_visible, n_hidden, n_recurrent, data_mean, pretrained, frame: str):
    """The sizes' and a pretrained frame model's checks of an RNN-driven model's init (the
    RNN-RBM's, the RNN-NADE's); ``data_mean`` as float32 (or None)."""
    _sizes(n_visible, n_hidden, n_recurrent, "n_recurrent")
    if pretrained is not None and pretrained.W.shape != (n_visible, n_hidden):
        raise ConfigError(
            f"the pretrained {frame} is {pretrained.W.shape[0]}x{pretrained.W.shape[1]}, the "
            f"RNN-{frame} needs {n_visible}x{n_hidden}"
        )
    return None if data_mean is None else jnp.asarray(data_mean, jnp.float32)


def _static(key, n_visible, n_hidden, scale, data_mean):
    W = scale * jax.random.normal(key, (n_visible, n_hidden), jnp.float32)
    return W, base_visible_bias(n_visible, data_mean), jnp.zeros((n_hidden,), jnp.float32)


def rnn_rbm_init(
    key: PRNGKeyArray,
    n_visible: int,
    n_hidden: int,
    n_recurrent: int,
    *,
    scale: float = 0.01,
    data_mean: Float[Array, " V"] | None = None,
    rbm_params: RBMParams | None = None,
) -> RNNRBMParams:
    """Initial RNN-RBM: every matrix ``N(0, scale²)``, ``b_u = u0 = 0``; ``b_v`` the base-rate
    logits of ``data_mean`` (or 0); ``rbm_params`` (a pretrained RBM, the paper's
    initialisation) replaces ``W, b_v, b_h``."""
    mean = check_init(n_visible, n_hidden, n_recurrent, data_mean, rbm_params, "RBM")
    p = _rnn_rbm_init(key, int(n_visible), int(n_hidden), int(n_recurrent), scale, mean)
    if rbm_params is not None:
        W, b_v, b_h = (jnp.asarray(x, jnp.float32) for x in rbm_params)
        p = p._replace(W=W, b_v=b_v, b_h=b_h)
    return p


@jax.jit(static_argnums=(1, 2, 3))  # one compiled program, not one per random draw
def _rnn_rbm_init(key, n_visible, n_hidden, U, scale, data_mean):
    k = jax.random.split(key, 5)
    W, b_v, b_h = _static(k[0], n_visible, n_hidden, scale, data_mean)
    g = lambda kk, shape: scale * jax.random.normal(kk, shape, jnp.float32)
    z = jnp.zeros((U,), jnp.float32)
    return RNNRBMParams(W, b_v, b_h, g(k[1], (U, n_visible)), g(k[2], (U, n_hidden)),
                        g(k[3], (n_visible, U)), g(k[4], (U, U)), z, z)  # fmt: skip


def crbm_init(
    key: PRNGKeyArray,
    n_visible: int,
    n_hidden: int,
    order: int,
    *,
    scale: float = 0.01,
    data_mean: Float[Array, " V"] | None = None,
) -> CRBMParams:
    """Initial conditional RBM of ``order`` past frames: matrices ``N(0, scale²)``, ``b_h = 0``,
    ``b_v`` the base-rate logits of ``data_mean`` (or 0)."""
    _sizes(n_visible, n_hidden, order, "order")
    mean = None if data_mean is None else jnp.asarray(data_mean, jnp.float32)
    return _crbm_init(key, int(n_visible), int(n_hidden), int(order), scale, mean)


@jax.jit(static_argnums=(1, 2, 3))
def _crbm_init(key, n_visible, n_hidden, order, scale, data_mean):
    k = jax.random.split(key, 3)
    W, b_v, b_h = _static(k[0], n_visible, n_hidden, scale, data_mean)
    nV = order * n_visible
    A = scale * jax.random.normal(k[1], (nV, n_visible), jnp.float32)
    return CRBMParams(W, b_v, b_h, A, scale * jax.random.normal(k[2], (nV, n_hidden)))


# --------------------------------------------------------------------------- dynamic biases


def rnn_states(params: RNNRBMParams, roll: Float[Array, "T V"]) -> Float[Array, "T U"]:
    """The RNN states ``u_0 .. u_{T-1}`` that condition frames ``1 .. T`` (a ``lax.scan``):
    row ``t`` is the state *before* frame ``t`` (``u0`` for the first)."""

    def body(u, v):
        return jnp.tanh(params.b_u + u @ params.W_uu + v @ params.W_vu), u

    _, before = jax.lax.scan(body, params.u0, roll)
    return before


def past_window(roll: Float[Array, "T V"], order: int) -> Float[Array, "T nV"]:
    """``[v_{t-1}, ..., v_{t-order}]`` for every ``t`` (zeros before the first frame)."""
    T, V = roll.shape
    padded = jnp.concatenate([jnp.zeros((order, V), roll.dtype), roll])
    return jnp.concatenate([padded[order - k : order - k + T] for k in range(1, order + 1)], 1)


def frame_biases(
    params: SeqParams, roll: Float[Array, "T V"]
) -> tuple[Float[Array, "T V"], Float[Array, "T H"]]:
    """The biases ``(b_v^t, b_h^t)`` of every frame's RBM given the frames before it."""
    if isinstance(params, RNNRBMParams):
        u = rnn_states(params, roll)
        return params.b_v + u @ params.W_uv, params.b_h + u @ params.W_uh
    if isinstance(params, CRBMParams):
        past = past_window(roll, params.A.shape[0] // params.W.shape[0])
        return params.b_v + past @ params.A, params.b_h + past @ params.B
    raise ConfigError(f"expected RNNRBMParams or CRBMParams, got {type(params).__name__}")


def frame_rbm(
    W: Float[Array, "V H"], b_v: Float[Array, " V"], b_h: Float[Array, " H"]
) -> RBMParams:
    """The RBM of one frame (vmap over ``b_v, b_h`` for many)."""
    return RBMParams(W=W, b=b_v, c=b_h)


def _gibbs(key, W, b_v, b_h, v0, k: int):
    """``k`` block Gibbs sweeps (h | v then v | h) of many frames' RBMs at once, one chain per
    row of ``v0 (..., V)`` with biases ``b_v (..., V)``, ``b_h (..., H)`` (shared ``W``);
    returns the last ``v`` and ``P(v = 1 | h)`` of the last sweep.  One ``lax.scan`` over
    sweeps with one key per sweep for the whole array: a small compiled program."""

    shape = jnp.broadcast_shapes(v0.shape, b_v.shape)
    H = W.shape[1]

    def body(carry, kk):
        u = jax.random.uniform(kk, (*shape[:-1], H + shape[-1]), v0.dtype)  # one draw a sweep
        h = (u[..., :H] < jax.nn.sigmoid(b_h + carry[0] @ W)).astype(v0.dtype)
        p = jax.nn.sigmoid(b_v + h @ W.T)
        return ((u[..., H:] < p).astype(v0.dtype), p), None

    init = (jnp.broadcast_to(v0, shape), jnp.zeros(shape, v0.dtype))
    return jax.lax.scan(body, init, jax.random.split(key, k))[0]


def _surrogate(key, params, rolls, mask, k):
    """``Σ mask [F_t(v_t) - F_t(sg(v_t^*))]`` over the frames of ``rolls (..., T, V)``."""
    flat = rolls.reshape(-1, *rolls.shape[-2:])  # (N, T, V): one sequence per row
    b_v, b_h = jax.vmap(frame_biases, in_axes=(None, 0))(params, flat)
    rolls, mask = flat, mask.reshape(-1, mask.shape[-1])
    neg, _ = _gibbs(key, params.W, b_v, b_h, rolls, k)
    neg = jax.lax.stop_gradient(neg)

    def fe(v):
        return -jnp.sum(b_v * v, -1) - jnp.sum(jax.nn.softplus(b_h + v @ params.W), -1)

    return jnp.sum(mask * (fe(rolls) - fe(neg)))


# --------------------------------------------------------------------------- training


def cd_surrogate(
    key: PRNGKeyArray,
    params: SeqParams,
    roll: Float[Array, "T V"],
    mask: Float[Array, " T"],
    k: int,
) -> Float[Array, ""]:
    """``Σ_t mask_t [F_t(v_t) - F_t(sg(v_t^*))]`` for ONE (padded) sequence, ``v_t^*`` after ``k``
    Gibbs sweeps from ``v_t`` (module docstring); its gradient is the CD-k estimate of
    ``-∇ log p(v_1..v_T)``, back-propagated through time."""
    if k < 1:
        raise ConfigError(f"k (Gibbs sweeps per frame) must be >= 1, got {k}")
    return _surrogate(key, params, roll, mask, k)


def sequence_objective(k: int = 15):
    """The CD-k-through-time objective for :func:`egm.train.make_step` on a batch
    ``{"rolls": (B, T, V), "mask": (B, T)}``: the gradient of the masked mean over frames of
    :func:`cd_surrogate`; metric ``free_energy_gap`` (its value)."""
    if not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k (Gibbs sweeps per frame) must be an integer >= 1, got {k!r}")

    def loss(params, batch, key):
        rolls, mask = batch["rolls"], batch["mask"]
        return _surrogate(key, params, rolls, mask, k) / jnp.maximum(jnp.sum(mask), 1.0)

    grad = jax.value_and_grad(loss)

    def objective(params, batch, key, chains, aux):
        value, grads = grad(params, batch, key)
        return ObjectiveOut(grads, chains, aux, {"free_energy_gap": value})

    return objective


def frame_cd_objective(k: int = 15):
    """CD-k on single frames for :func:`egm.train.make_step` (the paper's RBM pretraining of
    ``W, b_v, b_h`` on every training frame, §18.2): params :class:`RBMParams`, batch ``(B, V)``
    frames; the gradient of the mean of ``F(v) - F(sg(v^*))`` with ``v^*`` after ``k`` Gibbs
    sweeps from ``v`` is the CD-k estimate of ``-∇ log p(v)``; metric ``free_energy_gap``."""
    if not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k (Gibbs sweeps per frame) must be an integer >= 1, got {k!r}")

    def loss(params, v, key):
        neg = jax.lax.stop_gradient(_gibbs(key, params.W, params.b, params.c, v, k)[0])
        fe = lambda x: -(x @ params.b) - jnp.sum(jax.nn.softplus(params.c + x @ params.W), -1)
        return jnp.mean(fe(v) - fe(neg))

    grad = jax.value_and_grad(loss)

    def objective(params, batch, key, chains, aux):
        value, grads = grad(params, batch, key)
        return ObjectiveOut(grads, chains, aux, {"free_energy_gap": value})

    return objective


# --------------------------------------------------------------------------- evaluation


def split_frames(
    params: SeqParams, rolls: Float[Array, "N T V"], mask: Float[Array, "N T"]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The real frames of a padded split with their RBMs' biases: ``(v (F, V), b_v (F, V),
    b_h (F, H))`` (host arrays; padding frames dropped)."""
    b_v, b_h = _split_biases(params, jnp.asarray(rolls))
    keep = np.asarray(mask) > 0
    return np.asarray(rolls)[keep], np.asarray(b_v)[keep], np.asarray(b_h)[keep]


_split_biases = jax.jit(jax.vmap(frame_biases, in_axes=(None, 0)))


def _map_frames(fn, arrays: tuple, batch: int):
    """``fn`` over frame chunks of ``batch`` (a ``lax.map``: memory bounded by one chunk); the
    frames are padded to a multiple of ``batch`` (by repeating the first) and trimmed after."""
    n = arrays[0].shape[0]
    batch = max(1, min(batch, n))
    pad = -n % batch
    padded = [jnp.concatenate([a, jnp.repeat(a[:1], pad, 0)]) if pad else a for a in arrays]
    chunks = [a.reshape(-1, batch, *a.shape[1:]) for a in padded]
    out = jax.lax.map(lambda xs: fn(*xs), tuple(chunks))
    return jax.tree_util.tree_map(lambda o: o.reshape(-1, *o.shape[2:])[:n], out)


def log_partition_exact(
    W: Float[Array, "V H"], b_v: Float[Array, "F V"], b_h: Float[Array, "F H"]
) -> Float[Array, " F"]:
    """Exact ``log Z_t`` of every frame's RBM, enumerating its smaller layer
    (:func:`egm.estimators.exact.rbm_log_partition`; at most 20 units)."""
    n = min(W.shape)
    if n > exact.MAX_ENUMERATION_UNITS:
        raise ConfigError(
            f"exact log Z enumerates 2^{n} states per frame; the limit is "
            f"{exact.MAX_ENUMERATION_UNITS} units: use log_partition_ais (method='ais')"
        )
    return _log_partition_exact(jnp.asarray(W), jnp.asarray(b_v), jnp.asarray(b_h))


@jax.jit
def _log_partition_exact(W, b_v, b_h):
    one = jax.vmap(lambda bv, bh: exact.rbm_log_partition(frame_rbm(W, bv, bh)))
    return _map_frames(one, (b_v, b_h), max(1, 2**16 // 2 ** min(W.shape)))


def split_log_likelihood_exact(
    params: SeqParams, rolls: Float[Array, "N T V"], mask: Float[Array, "N T"]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``log p(v_t | v_{<t}) = -F_t(v_t) - log Z_t`` of every real frame of a padded
    split, with the frames and their RBMs' biases: ``(ll (F,), v (F, V), b_v (F, V),
    b_h (F, H))`` (host arrays, padding dropped).  One compiled program for the whole split
    (biases, enumerated ``log Z_t`` of :func:`log_partition_exact`, free energies): the
    padding frames are scored too and dropped, so every split length shares one shape."""
    n = min(params.W.shape)
    if n > exact.MAX_ENUMERATION_UNITS:
        raise ConfigError(
            f"exact log Z enumerates 2^{n} states per frame; the limit is "
            f"{exact.MAX_ENUMERATION_UNITS} units: use log_partition_ais (method='ais')"
        )
    ll, b_v, b_h = _padded_exact(params, jnp.asarray(rolls))
    keep = np.asarray(mask) > 0
    return tuple(np.asarray(x)[keep] for x in (ll, rolls, b_v, b_h))  # type: ignore[return-value]


@jax.jit
def _padded_exact(params, rolls):
    b_v, b_h = jax.vmap(frame_biases, in_axes=(None, 0))(params, rolls)
    N, T, V = rolls.shape
    flat = (rolls.reshape(N * T, V), b_v.reshape(N * T, V), b_h.reshape(N * T, -1))
    W = params.W

    def one(v, bv, bh):
        p = frame_rbm(W, bv, bh)
        return -rbm.free_energy(p, v) - exact.rbm_log_partition(p)

    ll = _map_frames(jax.vmap(one), flat, max(1, 2**16 // 2 ** min(W.shape)))
    return ll.reshape(N, T), b_v, b_h


def log_partition_ais(
    key: PRNGKeyArray,
    W: Float[Array, "V H"],
    b_v: Float[Array, "F V"],
    b_h: Float[Array, "F H"],
    *,
    n_chains: int = 100,
    n_temps: int = 1000,
    batch: int = 256,
) -> tuple[Float[Array, " F"], Float[Array, " F"]]:
    """Forward AIS ``log Ẑ_t`` and its standard error for every frame's RBM (§18.7).

    Path: the couplings annealed from the frame's base model ``(0, b_v^t, 0)`` (independent
    visibles with the frame's own biases, free hidden units: ``log Z_A = Σ_i ζ(b_v,i^t) +
    H log 2``), intermediate RBMs ``(βW, b_v^t, β b_h^t)`` as in
    :func:`egm.estimators.ais.rbm_ais` with ``base_b = b_v^t``, schedule
    :func:`egm.estimators.ais.betas_salakhutdinov_murray` with ``n_temps`` temperatures, the
    generic loop :func:`egm.estimators.ais.anneal` over (frame, chain) pairs, ``batch`` frames
    at a time.  ``log Ẑ_t`` is a stochastic lower bound on ``log Z_t``; the standard error
    is the delta-method ``sd(w) / (√n mean(w))``."""
    if n_chains < 2:
        raise ConfigError(f"AIS needs at least 2 chains per frame, got {n_chains}")
    betas = jnp.asarray(ais.betas_salakhutdinov_murray(n_temps))
    keys = jax.random.split(key, b_v.shape[0])
    return _ais_frames(keys, jnp.asarray(W), jnp.asarray(b_v), jnp.asarray(b_h), betas,
                       n_chains, batch)  # fmt: skip


@jax.jit(static_argnums=(5, 6))
def _ais_frames(keys, W, b_v, b_h, betas, n_chains, batch):
    C, H = n_chains, W.shape[1]

    def chain_step(state, key, beta_from, beta_to):
        v, bv, bh = state
        k_h, k_v = jax.random.split(key)
        x = bh + v @ W
        dw = jnp.sum(jax.nn.softplus(beta_to * x)) - jnp.sum(jax.nn.softplus(beta_from * x))
        h = rbm.bernoulli_logits(k_h, beta_to * x)
        return (rbm.bernoulli_logits(k_v, bv + beta_to * (W @ h)), bv, bh), dw

    def chunk(kk, bv, bh):
        n = bv.shape[0]
        k0, k1 = jax.random.split(kk[0])
        bvc, bhc = jnp.repeat(bv, C, 0), jnp.repeat(bh, C, 0)
        v0 = rbm.bernoulli_logits(k0, bvc)
        _, log_w = ais.anneal(k1, chain_step, (v0, bvc, bhc), betas[:-1], betas[1:])
        log_w = log_w.reshape(n, C)
        log_mean = jax.nn.logsumexp(log_w, axis=1) - jnp.log(C)
        r = jnp.exp(log_w - log_mean[:, None])
        se = jnp.std(r, axis=1, ddof=1) / jnp.sqrt(C)
        log_za = jnp.sum(jax.nn.softplus(bv), axis=1) + H * jnp.log(2.0)
        return log_za + log_mean, se

    return _map_frames(chunk, (keys, b_v, b_h), batch)


@jax.jit
def frame_log_unnormalised(
    W: Float[Array, "V H"],
    v: Float[Array, "F V"],
    b_v: Float[Array, "F V"],
    b_h: Float[Array, "F H"],
) -> Float[Array, " F"]:
    """``-F_t(v_t)`` of every frame (add ``-log Z_t`` for ``log p(v_t | v_{<t})``)."""
    fe = jax.vmap(rbm.free_energy, in_axes=(RBMParams(None, 0, 0), 0))
    return -fe(frame_rbm(W, b_v, b_h), v)


def sequence_log_likelihood_exact(params: SeqParams, roll: Float[Array, "T V"]) -> Float[Array, ""]:
    """Exact ``log p(v_1..v_T) = Σ_t [-F_t(v_t) - log Z_t]`` of one unpadded sequence, ``log Z_t``
    by enumeration (differentiable: the ground truth of the tests)."""
    b_v, b_h = frame_biases(params, roll)
    log_z = jax.vmap(lambda bv, bh: exact.rbm_log_partition(frame_rbm(params.W, bv, bh)))(b_v, b_h)
    return jnp.sum(frame_log_unnormalised(params.W, roll, b_v, b_h) - log_z)


def marginals_gibbs(
    key: PRNGKeyArray,
    W: Float[Array, "V H"],
    b_v: Float[Array, "F V"],
    b_h: Float[Array, "F H"],
    *,
    n_chains: int = 10,
    sweeps: int = 100,
) -> Float[Array, "F V"]:
    """Monte-Carlo ``P(v_ti = 1 | v_{<t})`` per frame: ``P(v | h)`` of the last of ``sweeps``
    Gibbs sweeps, averaged over ``n_chains`` chains started from ``Bernoulli(σ(b_v^t))``."""
    if n_chains < 1 or sweeps < 1:
        raise ConfigError(f"n_chains and sweeps must be >= 1, got {n_chains}, {sweeps}")
    keys = jax.random.split(key, b_v.shape[0])
    return _marginals_gibbs(keys, jnp.asarray(W), jnp.asarray(b_v), jnp.asarray(b_h),
                            n_chains, sweeps)  # fmt: skip


@jax.jit(static_argnums=(4, 5))
def _marginals_gibbs(keys, W, b_v, b_h, n_chains, sweeps):
    def chunk(kk, bv, bh):  # every (chain, frame) pair of the chunk in one batched chain
        k0, k1 = jax.random.split(kk[0])
        v0 = rbm.bernoulli_logits(k0, jnp.broadcast_to(bv, (n_chains, *bv.shape)))
        _, probs = _gibbs(k1, W, bv, bh, v0, sweeps)
        return probs.mean(0)

    return _map_frames(chunk, (keys, b_v, b_h), 256)


def marginals_exact(
    W: Float[Array, "V H"], b_v: Float[Array, "F V"], b_h: Float[Array, "F H"]
) -> Float[Array, "F V"]:
    """Exact ``P(v_ti = 1 | v_{<t}) = Σ_h p_t(h) σ(b_v^t + W h)`` by enumerating ``h``."""
    if W.shape[1] > 16:
        raise ConfigError(f"exact marginals enumerate 2^H hidden states; H={W.shape[1]} > 16")
    return _marginals_exact(jnp.asarray(W), jnp.asarray(b_v), jnp.asarray(b_h))


@jax.jit
def _marginals_exact(W, b_v, b_h):
    hs = exact.all_binary_states(W.shape[1])

    def one(bv, bh):
        p = frame_rbm(W, bv, bh)
        w = jax.nn.softmax(-jax.vmap(rbm.free_energy_hidden, in_axes=(None, 0))(p, hs))
        return w @ jax.nn.sigmoid(bv + hs @ W.T)

    return _map_frames(jax.vmap(one), (b_v, b_h), max(1, 2**14 // 2 ** W.shape[1]))


def frame_accuracy(
    predicted: Float[Array, "F V"], v: Float[Array, "F V"]
) -> tuple[float, dict[str, int]]:
    """Frame-level accuracy of Bay, Ehmann & Downie (2009), ``ACC = TP / (TP + FP + FN)`` summed
    over all frames and keys, of binary predictions; returns ``(ACC, counts)``."""
    p, v = np.asarray(predicted) > 0.5, np.asarray(v) > 0.5
    tp, fp, fn = int(np.sum(p & v)), int(np.sum(p & ~v)), int(np.sum(~p & v))
    if tp + fp + fn == 0:
        raise DataError("frame accuracy needs at least one sounding or predicted note")
    return tp / (tp + fp + fn), {"tp": tp, "fp": fp, "fn": fn}


def generate(
    key: PRNGKeyArray, params: SeqParams, n_steps: int, *, sweeps: int = 25
) -> Float[Array, "T V"]:
    """Sample a sequence of ``n_steps`` frames: at each step ``sweeps`` Gibbs sweeps of the
    frame's RBM (from ``Bernoulli(σ(b_v^t))``), then the RNN state or the past window moves
    on with the sampled frame (a ``lax.scan``)."""
    if n_steps < 1 or sweeps < 1:
        raise ConfigError(f"n_steps and sweeps must be >= 1, got {n_steps}, {sweeps}")
    return _generate(key, params, n_steps, sweeps)


@jax.jit(static_argnums=(2, 3))
def _generate(key, params, n_steps, sweeps):
    V = params.W.shape[0]
    rnn = isinstance(params, RNNRBMParams)

    def body(carry, kk):
        k0, k1 = kk[0], kk[1]
        if rnn:
            b_v, b_h = params.b_v + carry @ params.W_uv, params.b_h + carry @ params.W_uh
        else:
            b_v, b_h = params.b_v + carry @ params.A, params.b_h + carry @ params.B
        v, _ = _gibbs(k1, params.W, b_v, b_h, rbm.bernoulli_logits(k0, b_v), sweeps)
        if rnn:
            nxt = jnp.tanh(params.b_u + carry @ params.W_uu + v @ params.W_vu)
        else:
            nxt = jnp.concatenate([v, carry[:-V]])
        return nxt, v

    init = params.u0 if rnn else jnp.zeros((params.A.shape[0],), jnp.float32)
    return jax.lax.scan(body, init, jax.random.split(key, (n_steps, 2)))[1]
