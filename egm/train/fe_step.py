r"""CD-k / PCD-k train step for ANY energy model with a tractable free energy (§18.2, §20.5).

For a model with hiddens summed or integrated out, ``p(v) = exp(-F(v)) / Z`` and

.. math:: -\nabla_\theta \log p(v) = \nabla_\theta F(v) - \mathbb{E}_{p}[\nabla_\theta F(\tilde v)],

so one step differentiates ``mean F(data) - mean F(negatives)``
(:func:`egm.estimators.contrastive.free_energy_gap_grad`) with the negatives drawn by any
sampler described by a :class:`egm.samplers.chains.ChainSpec`: block Gibbs for the
Gaussian–Bernoulli RBM, mPoT and ssRBM, HMC on the free energy for the mcRBM, Gibbs–Langevin...
The binary RBM keeps its own step (:mod:`egm.train.rbm_step`: centering, tied copies, a
fused sweep); everything real-valued trains here.

``project(params) -> params`` runs after every optimiser update.  It is where a model keeps
its parameters in the valid set: filter normalisation and ``P ≥ 0`` for the mcRBM, a
proper spike-and-slab model, or the GRBM's variance clipping
(:func:`egm.energies.grbm.clip_precision`) that stops a bad learning rate from driving a
learned variance to 0 or infinity.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError, DivergenceError
from egm.estimators.contrastive import free_energy_gap_grad
from egm.samplers.chains import ChainSpec
from egm.samplers.gibbs import step_chains
from egm.train.state import ObjectiveOut, TrainState, init_state, make_step

ESTIMATORS = ("cd", "pcd")
Params = Any


class FEStepConfig(NamedTuple):
    """``estimator``: "pcd" (persistent chains) or "cd" (chains restarted at the batch);
    ``k``: kernel steps (Gibbs sweeps, HMC trajectories...) per update."""

    estimator: str = "pcd"
    k: int = 1

    def validate(self) -> FEStepConfig:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if not isinstance(self.k, numbers.Integral) or self.k < 1:
            raise ConfigError(
                f"k (sampler steps per update) must be an integer >= 1, got {self.k!r}"
            )
        return self


def init_fe_state(
    key: PRNGKeyArray,
    params: Params,
    optimizer: optax.GradientTransformation,
    chain: ChainSpec,
    v_init: Float[Array, "C D"],
) -> TrainState:
    """The train state (:class:`egm.train.TrainState`): start one persistent chain at each row of ``v_init`` (e.g. a random batch of data, or
    draws from a Gaussian fitted to the data)."""
    v_init = jnp.asarray(v_init, jnp.float32)
    if v_init.ndim != 2 or v_init.shape[0] < 1:
        raise ConfigError(
            f"v_init must be (n_chains, n_visible) with n_chains >= 1, got shape {v_init.shape}"
        )
    params = jax.tree_util.tree_map(jnp.array, params)  # a copy: the epoch donates the state
    keys = jax.random.split(key, v_init.shape[0])
    chains = jax.vmap(chain.from_visible, in_axes=(0, None, 0))(keys, params, v_init)
    return init_state(params, optimizer, chains)


def fe_objective(
    free_energy: Callable[[Params, Float[Array, " D"]], Float[Array, ""]],
    chain: ChainSpec,
    config: FEStepConfig | None = None,
):
    """The CD-k / PCD-k objective of any free energy for :func:`egm.train.make_step`
    (pass the model's ``project`` and ``track_grad_norm=True`` there).

    Metrics (per update, averaged over the epoch): ``free_energy_gap`` (mean F(data) − mean
    F(negatives), the contrastive objective before the update) and, for kernels that report
    one, ``acceptance_rate``.
    """
    config = (config or FEStepConfig()).validate()
    if not callable(free_energy):
        raise ConfigError(
            f"free_energy must be callable (params, v) -> scalar, got {free_energy!r}"
        )

    def objective(params, batch: Float[Array, "B D"], key: PRNGKeyArray, chains, aux):
        k_start, k_run = jax.random.split(key)
        persistent = chains
        if config.estimator == "pcd":
            chains = jax.vmap(chain.refresh, in_axes=(0, None))(chains, params)
        else:
            keys = jax.random.split(k_start, batch.shape[0])
            chains = jax.vmap(chain.from_visible, in_axes=(0, None, 0))(keys, params, batch)

        reports = []  # whether the kernel's info has an acceptance rate (known at trace time)

        def body(chains, k):
            chains, info = step_chains(chain.kernel, k, chains, params)
            acc = getattr(info, "acceptance_rate", None)
            reports.append(acc is not None)
            return chains, (jnp.mean(acc) if acc is not None else jnp.ones(()))

        chains, acc = jax.lax.scan(body, chains, jax.random.split(k_run, config.k))
        negatives = jax.vmap(chain.visible)(chains)
        gap, grads = free_energy_gap_grad(free_energy, params, batch, negatives)
        metrics = {"free_energy_gap": gap}
        if reports[-1]:
            metrics["acceptance_rate"] = jnp.mean(acc)
        if config.estimator == "cd":
            chains = persistent  # CD keeps no chains; the state's shape stays fixed
        return ObjectiveOut(grads, chains, aux, metrics)

    return objective


def make_fe_step(
    free_energy: Callable[[Params, Float[Array, " D"]], Float[Array, ""]],
    chain: ChainSpec,
    optimizer: optax.GradientTransformation,
    config: FEStepConfig | None = None,
    *,
    project: Callable[[Params], Params] | None = None,
):
    """``make_step(fe_objective(free_energy, chain, config), optimizer, project=project,
    track_grad_norm=True)``: the free-energy models' step with ``grad_norm`` in its metrics."""
    return make_step(
        fe_objective(free_energy, chain, config), optimizer, project=project, track_grad_norm=True
    )


def fe_data_check(n_visible: int):
    """Host-side check of real-valued training data for :func:`egm.train.fit` (``data_check``):
    shape ``(N, n_visible)`` (NaN/inf are always checked by ``fit``)."""
    from egm.data.validate import check_shape

    def check(x) -> None:
        check_shape(x, n_visible, "training data")

    return check


def check_acceptance(
    epoch: int, metrics: dict[str, Any], min_acceptance: float = 0.01, hint: str = ""
) -> None:
    """Raise :class:`egm.errors.DivergenceError` if an epoch's mean ``acceptance_rate`` fell
    below ``min_acceptance``.  A Metropolis-adjusted sampler (HMC, MALA, adjusted
    Gibbs–Langevin) whose moves are all rejected leaves the persistent chains frozen; PCD
    then keeps pushing the free energy down at the data and up at stale negatives, and the
    model runs away while every number stays finite (measured: a GRBM whose acceptance fell
    to 0 reached a test log-likelihood of -6.7e8 nats).  Call it from ``on_epoch_end``."""
    acc = metrics.get("acceptance_rate")
    if acc is not None and acc < min_acceptance:
        raise DivergenceError(
            f"epoch {epoch}: the sampler's acceptance rate fell to {acc:.3g} (< {min_acceptance}): "
            f"the chains have stopped moving, so the negative phase is stale and training would "
            f"run away; lower the sampler's step size or the learning rate {hint}".rstrip()
        )
