r"""Train-step factory for binary RBMs: CD-k or PCD-k, optional centering, any optax optimiser.

Tied copies (DBM pretraining, Salakhutdinov & Hinton 2009; §20.4.4).  An RBM whose visible
layer is duplicated ``m_v`` times and hidden layer ``m_h`` times, all copies sharing
``(W, b, c)``, is an ordinary RBM with ``m_v V`` visibles and ``m_h H`` hiddens and

.. math:: W_{big} = \mathrm{tile}(W, (m_v, m_h)),\quad b_{big} = \mathrm{tile}(b, m_v),\quad
          c_{big} = \mathrm{tile}(c, m_h)

(:func:`expand_copies`).  The data are ``v`` tiled ``m_v`` times (every visible copy clamped
to the same example), so a hidden unit sees ``c_j + m_v vᵀW_{:,j}``; the persistent chains
live in the big space, where the copies are sampled independently; by the chain rule the
gradient w.r.t. the tied parameters is the sum over copy blocks of the big gradient
(:func:`tie_gradient`).  With centering the offsets live in the big space too.  With
``visible_copies = hidden_copies = 1`` the step is exactly the plain RBM step.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import rbm
from egm.energies.rbm import RBMParams, RBMState
from egm.errors import ConfigError
from egm.estimators.contrastive import cd_gradient, centered_gradient, pcd_gradient
from egm.train.state import ObjectiveOut, TrainState, init_state

ESTIMATORS = ("cd", "pcd")
STEP_BINARIZATIONS = ("none", "dynamic")


class Offsets(NamedTuple):
    """Centering offsets: ``mu`` for the visible layer, ``lam`` for the hidden layer."""

    mu: Float[Array, " V"]
    lam: Float[Array, " H"]


class RBMStepConfig(NamedTuple):
    """Static (shape- or control-flow-changing) choices of an RBM train step.

    ``estimator``: "cd" or "pcd"; ``k``: Gibbs sweeps per update; ``centering``: use
    the centered gradient with offsets ``mu`` = data mean and ``lam`` a moving average
    of the data-driven hidden means with rate ``offset_rate`` (Melchior et al. 2016);
    ``binarization``: "none" (data already binary) or "dynamic" (re-draw
    ``Bernoulli(grey)`` each minibatch); ``track_free_energy_gap``: also report the
    contrastive objective ``mean F(data) - mean F(negatives)`` per minibatch (costs a
    softplus over both batches' hidden pre-activations, ~7% of a PCD-1 epoch on CPU).

    Per-minibatch metrics (averaged over the epoch) are a dict: ``hidden_mean`` (mean
    data-driven hidden activation) and, if tracked, ``free_energy_gap``.  Reconstruction
    error and the other evaluations run once per epoch on a fixed subset
    (:mod:`egm.eval`), not per step, since they cost extra matrix products.
    """

    estimator: str = "pcd"
    k: int = 1
    centering: bool = True
    offset_rate: float = 0.01
    binarization: str = "none"
    track_free_energy_gap: bool = False
    visible_copies: int = 1
    hidden_copies: int = 1

    @property
    def copies(self) -> tuple[int, int]:
        """``(visible_copies, hidden_copies)``."""
        return (self.visible_copies, self.hidden_copies)

    def validate(self) -> RBMStepConfig:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if not isinstance(self.k, numbers.Integral) or self.k < 1:
            raise ConfigError(
                f"k (Gibbs sweeps per update) must be an integer >= 1, got {self.k!r}"
            )
        if not 0.0 < self.offset_rate <= 1.0:
            raise ConfigError(f"offset_rate must be in (0, 1], got {self.offset_rate}")
        for name in ("visible_copies", "hidden_copies"):
            val = getattr(self, name)
            if not isinstance(val, numbers.Integral) or val < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {val!r}")
        if self.binarization not in STEP_BINARIZATIONS:
            raise ConfigError(
                f"binarization inside the train step must be one of {STEP_BINARIZATIONS}, "
                f"got {self.binarization!r} (fixed/threshold binarization is done once on the data)"
            )
        return self


def expand_copies(params: RBMParams, visible_copies: int, hidden_copies: int) -> RBMParams:
    """The big RBM of ``visible_copies`` tied copies of the visible layer and
    ``hidden_copies`` of the hidden layer: ``(tile(W, (m_v, m_h)), tile(b, m_v), tile(c, m_h))``."""
    m_v, m_h = visible_copies, hidden_copies
    return RBMParams(
        W=jnp.tile(params.W, (m_v, m_h)), b=jnp.tile(params.b, m_v), c=jnp.tile(params.c, m_h)
    )


def tie_gradient(grads_big: RBMParams, visible_copies: int, hidden_copies: int) -> RBMParams:
    """Gradient w.r.t. the tied ``(W, b, c)`` from a gradient w.r.t. the big RBM's parameters
    (chain rule through :func:`expand_copies`): the sum over copy blocks."""
    m_v, m_h = visible_copies, hidden_copies
    Vb, Hb = grads_big.W.shape
    V, H = Vb // m_v, Hb // m_h
    return RBMParams(
        W=grads_big.W.reshape(m_v, V, m_h, H).sum(axis=(0, 2)),
        b=grads_big.b.reshape(m_v, V).sum(axis=0),
        c=grads_big.c.reshape(m_h, H).sum(axis=0),
    )


def tile_data(v: Float[Array, "B V"], visible_copies: int) -> Float[Array, "B mV"]:
    """Each example repeated ``visible_copies`` times along the feature axis (all visible
    copies clamped to the same data)."""
    return jnp.tile(v, (1, visible_copies)) if visible_copies > 1 else v


def init_rbm_state(
    key: PRNGKeyArray,
    params: RBMParams,
    optimizer: optax.GradientTransformation,
    data_mean: Float[Array, " V"],
    n_chains: int,
    *,
    visible_copies: int = 1,
    hidden_copies: int = 1,
) -> TrainState:
    """Initial train state (:class:`egm.train.TrainState`, ``aux`` = the offsets): optimiser state, persistent chains drawn from the base-rate
    model ``Bernoulli(data_mean)``, offsets ``mu = data_mean`` and ``lam = P(h=1|mu)``.

    With tied copies (see the module docstring) ``params`` are the small tied parameters
    and the chains and offsets live in the big space: ``mu = tile(data_mean, m_v)``,
    ``lam = P_big(h = 1 | mu)``, chains ``(n_chains, m_v V)`` and ``(n_chains, m_h H)``.
    """
    if n_chains < 1:
        raise ConfigError(f"n_chains must be >= 1, got {n_chains}")
    rbm.check_shapes(params)
    data_mean = jnp.array(data_mean, jnp.float32)  # a copy: the epoch donates the state
    if data_mean.shape != params.b.shape:
        raise ConfigError(
            f"data_mean has shape {data_mean.shape} but the RBM has {params.b.shape[0]} visible "
            f"units; pass the per-pixel mean of the training data, x.mean(0)"
        )
    for name, val in (("visible_copies", visible_copies), ("hidden_copies", hidden_copies)):
        if not isinstance(val, numbers.Integral) or val < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {val!r}")
    big = params
    if (visible_copies, hidden_copies) != (1, 1):
        big = expand_copies(params, visible_copies, hidden_copies)
        data_mean = jnp.tile(data_mean, visible_copies)
    k_v, k_h = jax.random.split(key)
    v0 = jax.random.bernoulli(k_v, data_mean, (n_chains, data_mean.shape[0])).astype(jnp.float32)
    chains = jax.vmap(rbm.sample_state, in_axes=(0, None, 0))(
        jax.random.split(k_h, n_chains), big, v0
    )
    offsets = Offsets(mu=data_mean, lam=rbm.hidden_probs(big, data_mean))
    return init_state(params, optimizer, chains, offsets)


def rbm_objective(config: RBMStepConfig | None = None):
    """The CD-k / PCD-k objective of a binary RBM for :func:`egm.train.make_step`
    (``chains``: the persistent chains; ``aux``: the centering :class:`Offsets`)."""
    config = (config or RBMStepConfig()).validate()
    m_v, m_h = config.copies
    tied = (m_v, m_h) != (1, 1)

    def objective(
        params: RBMParams, batch: Float[Array, "B V"], key: PRNGKeyArray, chains, offsets
    ):
        k_bin, k_est = jax.random.split(key)
        v = batch
        if config.binarization == "dynamic":
            v = jax.random.bernoulli(k_bin, batch).astype(jnp.float32)
        _check_chain_space(params, chains, m_v, m_h)
        if tied:  # the big RBM of tied copies (module docstring)
            params_big, v = expand_copies(params, m_v, m_h), tile_data(v, m_v)
        else:
            params_big = params
        if config.estimator == "pcd":
            grads, chains, aux = pcd_gradient(k_est, params_big, v, chains, config.k)
        else:
            grads, aux = cd_gradient(k_est, params_big, v, config.k)
        if config.centering:
            r = config.offset_rate
            offsets = offsets._replace(lam=(1.0 - r) * offsets.lam + r * aux.hidden_mean_data)
            grads = centered_gradient(grads, offsets.mu, offsets.lam)
        if tied:
            grads = tie_gradient(grads, m_v, m_h)
        metrics = {"hidden_mean": jnp.mean(aux.hidden_mean_data)}
        if config.track_free_energy_gap:
            metrics["free_energy_gap"] = aux.free_energy_gap
        return ObjectiveOut(grads, chains, offsets, metrics)

    return objective


def _check_chain_space(params: RBMParams, chains: RBMState, m_v: int, m_h: int) -> None:
    """Static shape check: the chains must live in the (big) space of the step's copies."""
    V, H = params.W.shape
    if chains.v.shape[-1] != m_v * V or chains.h.shape[-1] != m_h * H:
        raise ConfigError(
            f"the persistent chains have {chains.v.shape[-1]} visible / {chains.h.shape[-1]} "
            f"hidden units but a step with visible_copies={m_v}, hidden_copies={m_h} on a "
            f"{V}x{H} RBM needs {m_v * V} / {m_h * H}; build the state with "
            f"init_rbm_state(..., visible_copies={m_v}, hidden_copies={m_h})"
        )


def rbm_data_check(n_visible: int, config: RBMStepConfig | None = None):
    """The host-side check of training data for a binary RBM, to pass to ``fit(data_check=...)``.

    Data must be ``(N, n_visible)``, finite, and binary — or grey values in [0, 1] when the
    step re-binarizes dynamically.
    """
    from egm.data.validate import check_binary, check_shape, check_unit_interval

    dynamic = config is not None and config.binarization == "dynamic"

    def check(x) -> None:
        check_shape(x, n_visible, "training data")
        (check_unit_interval if dynamic else check_binary)(x, "training data")

    return check
