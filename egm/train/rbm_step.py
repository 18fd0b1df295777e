"""Train-step factory for binary RBMs: CD-k or PCD-k, optional centering, any optax optimiser."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import rbm
from egm.energies.rbm import RBMParams, RBMState
from egm.errors import ConfigError
from egm.estimators.contrastive import cd_gradient, centered_gradient, pcd_gradient

ESTIMATORS = ("cd", "pcd")
STEP_BINARIZATIONS = ("none", "dynamic")


class Offsets(NamedTuple):
    """Centering offsets: ``mu`` for the visible layer, ``lam`` for the hidden layer."""

    mu: Float[Array, " V"]
    lam: Float[Array, " H"]


class RBMTrainState(NamedTuple):
    """Everything that changes during training (a pytree; no PRNG keys inside, see ``fit``)."""

    params: RBMParams
    opt_state: Any
    chains: RBMState
    offsets: Offsets
    step: Array


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

    def validate(self) -> RBMStepConfig:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if not isinstance(self.k, numbers.Integral) or self.k < 1:
            raise ConfigError(
                f"k (Gibbs sweeps per update) must be an integer >= 1, got {self.k!r}"
            )
        if not 0.0 < self.offset_rate <= 1.0:
            raise ConfigError(f"offset_rate must be in (0, 1], got {self.offset_rate}")
        if self.binarization not in STEP_BINARIZATIONS:
            raise ConfigError(
                f"binarization inside the train step must be one of {STEP_BINARIZATIONS}, "
                f"got {self.binarization!r} (fixed/threshold binarization is done once on the data)"
            )
        return self


def init_train_state(
    key: PRNGKeyArray,
    params: RBMParams,
    optimizer: optax.GradientTransformation,
    data_mean: Float[Array, " V"],
    n_chains: int,
) -> RBMTrainState:
    """Initial train state: optimiser state, persistent chains drawn from the base-rate
    model ``Bernoulli(data_mean)``, offsets ``mu = data_mean`` and ``lam = P(h=1|mu)``."""
    if n_chains < 1:
        raise ConfigError(f"n_chains must be >= 1, got {n_chains}")
    rbm.check_shapes(params)
    data_mean = jnp.array(data_mean, jnp.float32)  # a copy: the epoch donates the state
    if data_mean.shape != params.b.shape:
        raise ConfigError(
            f"data_mean has shape {data_mean.shape} but the RBM has {params.b.shape[0]} visible "
            f"units; pass the per-pixel mean of the training data, x.mean(0)"
        )
    k_v, k_h = jax.random.split(key)
    v0 = jax.random.bernoulli(k_v, data_mean, (n_chains, data_mean.shape[0])).astype(jnp.float32)
    chains = jax.vmap(rbm.sample_state, in_axes=(0, None, 0))(
        jax.random.split(k_h, n_chains), params, v0
    )
    offsets = Offsets(mu=data_mean, lam=rbm.hidden_probs(params, data_mean))
    params = jax.tree_util.tree_map(jnp.array, params)  # a copy: the epoch donates the state
    return RBMTrainState(
        params=params,
        opt_state=optimizer.init(params),
        chains=chains,
        offsets=offsets,
        step=jnp.zeros((), jnp.int32),
    )


def make_train_step(optimizer: optax.GradientTransformation, config: RBMStepConfig | None = None):
    """Build ``step(state, batch, key) -> (state, metrics dict)`` for a binary RBM."""
    config = (config or RBMStepConfig()).validate()

    def step(state: RBMTrainState, batch: Float[Array, "B V"], key: PRNGKeyArray):
        k_bin, k_est = jax.random.split(key)
        v = batch
        if config.binarization == "dynamic":
            v = jax.random.bernoulli(k_bin, batch).astype(jnp.float32)
        params, chains = state.params, state.chains
        if config.estimator == "pcd":
            grads, chains, aux = pcd_gradient(k_est, params, v, chains, config.k)
        else:
            grads, aux = cd_gradient(k_est, params, v, config.k)
        offsets = state.offsets
        if config.centering:
            r = config.offset_rate
            offsets = offsets._replace(lam=(1.0 - r) * offsets.lam + r * aux.hidden_mean_data)
            grads = centered_gradient(grads, offsets.mu, offsets.lam)
        updates, opt_state = optimizer.update(grads, state.opt_state, params)
        new_params = optax.apply_updates(params, updates)
        metrics = {"hidden_mean": jnp.mean(aux.hidden_mean_data)}
        if config.track_free_energy_gap:
            metrics["free_energy_gap"] = aux.free_energy_gap
        new_state = RBMTrainState(new_params, opt_state, chains, offsets, state.step + 1)
        return new_state, metrics

    return step


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
