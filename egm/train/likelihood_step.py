"""A generic train step for any model trained by minimising a per-batch loss with optax.

``loss_fn(params, batch, key) -> scalar`` (or ``(scalar, aux dict)`` with ``has_aux``):
the negative log-likelihood of an autoregressive net, a negative ELBO, an
order-agnostic NADE loss, ...  :func:`make_loss_step` turns it into the
``step(state, batch, key) -> (state, metrics)`` that :func:`egm.train.make_epoch` scans
and :func:`egm.train.fit` drives, so every such model shares one epoch loop,
checkpointing, divergence check and sweep machinery with the RBMs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PRNGKeyArray

from egm.errors import ConfigError

__all__ = ["LossTrainState", "init_loss_state", "make_loss_step"]

LossFn = Callable[[Any, Array, PRNGKeyArray], Any]


class LossTrainState(NamedTuple):
    """Parameters, optimiser state and the number of updates done (a pytree; no keys)."""

    params: Any
    opt_state: Any
    step: Array


def init_loss_state(params: Any, optimizer: optax.GradientTransformation) -> LossTrainState:
    """Initial state; copies ``params`` so the donated epoch never invalidates the caller's."""
    params = jax.tree_util.tree_map(jnp.array, params)
    return LossTrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def make_loss_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    has_aux: bool = False,
    track_grad_norm: bool = False,
) -> Callable[[LossTrainState, Array, PRNGKeyArray], tuple[LossTrainState, dict]]:
    """``step(state, batch, key) -> (state, metrics)``: one optax update on ``∇ loss_fn``.

    Metrics: ``loss`` (the value BEFORE the update), the entries of ``aux`` when
    ``has_aux`` (scalars, averaged over the epoch by ``make_epoch``) and, with
    ``track_grad_norm``, ``grad_norm`` (global L2 norm).  ``optimizer.update`` receives
    the params, so weight-decay transforms work.
    """
    if not callable(loss_fn):
        raise ConfigError(f"loss_fn must be callable (params, batch, key) -> loss, got {loss_fn!r}")

    def checked(params, batch, key):
        out = loss_fn(params, batch, key)
        loss = out[0] if has_aux else out
        if jnp.ndim(loss) != 0:  # static at trace time
            raise ConfigError(
                f"loss_fn must return a scalar (mean over the batch)"
                f"{' as the first element of (loss, aux)' if has_aux else ''}, got shape "
                f"{jnp.shape(loss)}"
            )
        return out

    grad_fn = jax.value_and_grad(checked, has_aux=has_aux)

    def step(state: LossTrainState, batch: Array, key: PRNGKeyArray):
        out, grads = grad_fn(state.params, batch, key)
        loss, aux = out if has_aux else (out, {})
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, **dict(aux)}
        if track_grad_norm:
            metrics["grad_norm"] = optax.tree.norm(grads)
        return LossTrainState(params, opt_state, state.step + 1), metrics

    return step
