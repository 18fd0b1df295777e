"""Train-step factory for deep Boltzmann machines (§20.4.3–20.4.5).

Joint training by PCD/SML: a mean-field positive phase (:func:`egm.energies.dbm.mean_field_unrolled`),
persistent odd/even block-Gibbs chains in the train state, and optionally the centered
gradient of Montavon & Müller (2012), which lets a DBM train from random initialisation
without greedy pretraining.  Parameters stay in the ordinary ``(W, b)`` form, so every
sampler, AIS and checkpoint function applies unchanged; centering only changes the
direction of the step (:func:`egm.estimators.dbm_pcd.centered_gradient`).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import dbm
from egm.energies.dbm import DBMParams
from egm.errors import ConfigError
from egm.estimators.dbm_pcd import centered_gradient, pcd_gradient
from egm.train.state import ObjectiveOut, TrainState, init_state

STEP_BINARIZATIONS = ("none", "dynamic")


class DBMStepConfig(NamedTuple):
    """Static choices of a DBM train step.

    ``k``: block-Gibbs sweeps of the persistent chains per update; ``mean_field_iters``:
    mean-field sweeps of the positive phase, started from ``mean_field_init`` ("half" or
    "bottom_up", the doubled recognition pass for pretrained DBMs); ``centering``: use the
    centered gradient with offsets ``μ_0`` = data mean and ``μ_l`` (hidden) moving averages
    of the data's mean-field means with rate ``offset_rate``; ``binarization``: "none" or
    "dynamic" (re-draw ``Bernoulli(grey)`` each minibatch).

    Metrics per minibatch: ``mean_h{l}`` (mean of the positive-phase means of layer ``l``) and
    ``chain_h{l}`` (mean activity of the persistent chains), whose mismatch is a cheap
    diagnostic of how far the chains are from the data-driven statistics.
    """

    k: int = 1
    mean_field_iters: int = 10
    mean_field_init: str = "half"
    centering: bool = True
    offset_rate: float = 0.01
    binarization: str = "none"

    def validate(self) -> DBMStepConfig:
        for name in ("k", "mean_field_iters"):
            val = getattr(self, name)
            if not isinstance(val, numbers.Integral) or val < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {val!r}")
        if self.mean_field_init not in dbm.MF_INITS:
            raise ConfigError(
                f"mean_field_init must be one of {dbm.MF_INITS}, got {self.mean_field_init!r}"
            )
        if not 0.0 < self.offset_rate <= 1.0:
            raise ConfigError(f"offset_rate must be in (0, 1], got {self.offset_rate}")
        if self.binarization not in STEP_BINARIZATIONS:
            raise ConfigError(
                f"binarization inside the train step must be one of {STEP_BINARIZATIONS}, "
                f"got {self.binarization!r} (fixed/threshold binarization is done once on the data)"
            )
        return self


def check_params(params: DBMParams) -> None:
    """Raise :class:`ConfigError` unless the weights chain the layer sizes of the biases."""
    sizes = [b.shape for b in params.biases]
    if len(params.weights) != len(params.biases) - 1:
        raise ConfigError(
            f"a DBM with {len(params.biases)} layers needs {len(params.biases) - 1} weight "
            f"matrices, got {len(params.weights)}"
        )
    for l, w in enumerate(params.weights):
        want = (sizes[l][0], sizes[l + 1][0])
        if w.shape != want:
            raise ConfigError(f"weights[{l}] has shape {w.shape}; layer sizes need {want}")


def init_centered_params(
    key: PRNGKeyArray,
    sizes: tuple[int, ...],
    data_mean: Float[Array, " V"],
    *,
    scale: float = 0.01,
) -> tuple[DBMParams, tuple]:
    """Random-initialised DBM for centered training (Montavon & Müller 2012): centered
    weights ``N(0, scale²)``, centered visible bias ``logit(data mean)``, zero hidden ones,
    offsets ``(data mean, ½, ..., ½)``.  Returns the ordinary parameters and the offsets."""
    base = dbm.init(key, sizes, scale=scale)
    m = jnp.clip(jnp.asarray(data_mean, jnp.float32), 1e-3, 1 - 1e-3)
    if m.shape != (sizes[0],):
        raise ConfigError(f"data_mean has shape {m.shape}, expected ({sizes[0]},)")
    offsets = (m, *(jnp.full((n,), 0.5, jnp.float32) for n in sizes[1:]))
    biases = (jnp.log(m) - jnp.log1p(-m), *base.biases[1:])
    return dbm.from_centered(DBMParams(base.weights, biases), offsets), offsets


def init_dbm_state(
    key: PRNGKeyArray,
    params: DBMParams,
    optimizer: optax.GradientTransformation,
    data_mean: Float[Array, " V"],
    n_chains: int,
    offsets: tuple | None = None,
) -> TrainState:
    """Initial state: persistent chains with ``v ~ Bernoulli(data mean)`` and the hidden layers
    drawn by 10 odd/even sweeps from there; offsets as given, else ``(data mean, mean-field
    means of the data mean)``."""
    check_params(params)
    if n_chains < 1:
        raise ConfigError(f"n_chains must be >= 1, got {n_chains}")
    data_mean = jnp.array(data_mean, jnp.float32)  # a copy: the epoch donates the state
    if data_mean.shape != params.biases[0].shape:
        raise ConfigError(
            f"data_mean has shape {data_mean.shape} but the DBM has {params.biases[0].shape[0]} "
            f"visible units; pass the per-pixel mean of the training data, x.mean(0)"
        )
    from egm.samplers.gibbs import block_gibbs, run

    k_v, k_h, k_run = jax.random.split(key, 3)
    v0 = jax.random.bernoulli(k_v, data_mean, (n_chains, data_mean.shape[0])).astype(jnp.float32)
    hk = jax.random.split(k_h, len(params.biases) - 1)
    chains = (
        v0,
        *(
            jax.random.bernoulli(k, 0.5, (n_chains, b.shape[0])).astype(jnp.float32)
            for k, b in zip(hk, params.biases[1:], strict=True)
        ),
    )
    chains, _ = run(block_gibbs(dbm.BLOCKS), k_run, chains, params, 10)
    if offsets is None:
        offsets = (data_mean, *dbm.mean_field_unrolled(params, data_mean, 10))
    offsets = tuple(jnp.array(o, jnp.float32) for o in offsets)
    dbm.check_offsets(params, offsets)
    params = jax.tree_util.tree_map(jnp.array, params)
    return init_state(params, optimizer, chains, offsets)


def dbm_objective(config: DBMStepConfig | None = None):
    """The joint PCD objective of a binary DBM for :func:`egm.train.make_step` (``chains``:
    one persistent batch per layer; ``aux``: the centering offsets, one vector per layer)."""
    config = (config or DBMStepConfig()).validate()

    def objective(
        params: DBMParams, batch: Float[Array, "B V"], key: PRNGKeyArray, chains, offsets
    ):
        k_bin, k_est = jax.random.split(key)
        v = batch
        if config.binarization == "dynamic":
            v = jax.random.bernoulli(k_bin, batch).astype(jnp.float32)
        grads, chains, mu = pcd_gradient(
            k_est,
            params,
            v,
            chains,
            k=config.k,
            mean_field_iters=config.mean_field_iters,
            mean_field_init=config.mean_field_init,
        )
        if config.centering:
            r = config.offset_rate
            hidden = tuple(
                (1 - r) * o + r * jnp.mean(m, 0) for o, m in zip(offsets[1:], mu, strict=True)
            )
            offsets = (offsets[0], *hidden)
            grads = centered_gradient(grads, offsets)
        metrics = {}
        for l, m in enumerate(mu, start=1):
            metrics[f"mean_h{l}"] = jnp.mean(m)
            metrics[f"chain_h{l}"] = jnp.mean(chains[l])
        return ObjectiveOut(grads, chains, offsets, metrics)

    return objective


def dbm_data_check(n_visible: int, config: DBMStepConfig | None = None):
    """Host-side check of DBM training data for ``fit(data_check=...)``: ``(N, n_visible)``,
    finite, binary (or grey in [0, 1] when the step binarizes dynamically)."""
    from egm.data.validate import binary_data_check

    return binary_data_check(n_visible, config is not None and config.binarization == "dynamic")


# ------------------------------------------------------------------------------------------
# Discriminative fine-tuning of a DBM (Salakhutdinov & Hinton 2009, §20.4.5)
# ------------------------------------------------------------------------------------------


def augmented_input(
    params: DBMParams,
    v: Float[Array, "B V"],
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    init: str = "half",
) -> Float[Array, "B F"]:
    """The mean-field augmented input ``[v, q(h^L | v)]`` of Salakhutdinov & Hinton (2009):
    each row of ``v`` with the top layer's converged mean-field means
    (:func:`egm.energies.dbm.mean_field`)."""
    top = jax.vmap(lambda x: dbm.mean_field(params, x, tol=tol, max_iter=max_iter, init=init)[0])(v)
    return jnp.concatenate([v, top[-1]], axis=1)


def init_dbm_classifier(
    key: PRNGKeyArray, params: DBMParams, n_classes: int = 10
) -> tuple[Any, dict]:
    """``(module, mlp_params)``: an MLP on :func:`augmented_input` initialised from a
    2-hidden-layer DBM, first layer ``[W₁; W₂ᵀ]`` with bias ``b₁``, second ``(W₂, b₂)``,
    a random softmax layer on top (:func:`egm.models.mlp.mlp_params_from_rbms`)."""
    from egm.models.mlp import mlp_params_from_rbms

    check_params(params)
    if len(params.weights) != 2:
        raise ConfigError(f"the DBM classifier needs 2 hidden layers, got {len(params.weights)}")
    W1, W2 = params.weights
    first = (jnp.concatenate([W1, W2.T], axis=0), params.biases[1])
    return mlp_params_from_rbms([first, (W2, params.biases[2])], n_classes, key)


class DBMClassifier(NamedTuple):
    """The fine-tuned DBM classifier as pure functions: ``features(dbm_params, v)`` is
    :func:`augmented_input`, ``apply(mlp_params, features)`` the MLP's logits, and
    ``logits((mlp_params, dbm_params), v)`` the two composed."""

    features: Any
    apply: Any

    def logits(self, params: tuple[Any, DBMParams], v: Float[Array, "B V"]) -> Array:
        return self.apply(params[0], self.features(params[1], v))


def dbm_classifier(
    n_hidden: tuple[int, ...],
    n_classes: int = 10,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    init: str = "half",
) -> DBMClassifier:
    """The MLP ``[v, q(h^L|v)] -> n_hidden -> n_classes`` of :func:`init_dbm_classifier`
    (sigmoid hidden layers, :class:`egm.models.mlp.MLP`) on the converged mean-field features
    (``tol``, ``max_iter``, ``init`` of :func:`egm.energies.dbm.mean_field`)."""
    from egm.models.mlp import MLP

    module = MLP(tuple(n_hidden), n_classes)
    return DBMClassifier(
        lambda p, v: augmented_input(p, v, tol=tol, max_iter=max_iter, init=init),
        lambda p, x: module.apply({"params": p}, x),
    )


# ------------------------------------------------------------------------------------------
# Multi-prediction training (Goodfellow et al. 2013, egm.estimators.mpdbm)
# ------------------------------------------------------------------------------------------


def mp_objective(*, n_iter: int = 10, hide_prob: float = 0.5, label_weight: float = 1.0):
    """The multi-prediction objective of an MP-DBM (:func:`egm.estimators.mpdbm.mp_loss`)
    for :func:`egm.train.make_step`: batches ``(v, labels)``; ``aux`` = the centering
    offsets of :func:`egm.estimators.mpdbm.init_centered` (the params are then the centered
    ones, mapped by :func:`~egm.estimators.mpdbm.from_centered` inside the loss) or ``()``
    (ordinary params).  Metrics ``loss``, ``pixel_nll``, ``label_nll``."""
    from egm.estimators import mpdbm

    if not isinstance(n_iter, numbers.Integral) or n_iter < 1:
        raise ConfigError(f"n_iter must be an integer >= 1, got {n_iter!r}")
    if not 0.0 < hide_prob < 1.0:
        raise ConfigError(f"hide_prob must be in (0, 1), got {hide_prob}")

    def objective(params, batch, key, chains, offsets):
        x, y = batch

        def loss(p):
            return mpdbm.mp_loss(key, mpdbm.ordinary(p, offsets), x, y, n_iter=n_iter,
                                 hide_prob=hide_prob, label_weight=label_weight)  # fmt: skip

        (value, metrics), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return ObjectiveOut(grads, chains, offsets, {"loss": value, **metrics})

    return objective
