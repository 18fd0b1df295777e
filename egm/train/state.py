"""One train state and one step factory for every model in egm (DESIGN.md §2).

A **train state** holds the parameters, the optimiser state, the sampler state (persistent
chains), an auxiliary state (centering offsets, NVIL's running statistics, EMA weights...)
and the number of updates done.  It is a pytree without PRNG keys, so it checkpoints,
vmaps over a sweep axis and shards over devices as it is.

An **objective** says what one update optimises::

    objective(params, batch, key, chains, aux) -> ObjectiveOut(grads, chains, aux, metrics)

``grads`` is shaped like ``params`` (the gradient of a loss to *minimise*); estimators such
as CD/PCD produce it directly, while :func:`loss_objective` turns any differentiable
``loss(params, batch, key)`` into an objective with ``jax.value_and_grad``.  The model
families live in their own modules as objective factories (``rbm_objective``,
``dbm_objective``, ``fe_objective``, ``loss_objective``, ``classifier_objective``,
``helmholtz_objective``); :func:`make_step` turns any of them plus an optax transformation
into ``step(state, batch, key) -> (state, metrics)`` for :func:`egm.train.make_epoch`.

A **multi-player step** (:func:`make_multi_step`) updates several parameter groups, each
with its own objective, optimiser and number of updates per step, in a fixed order, as one
jitted function: a GAN's ``k`` discriminator updates per generator update, or wake then
sleep.  Its ``params`` and ``opt_state`` are dicts keyed by group name.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PRNGKeyArray

from egm.errors import ConfigError

__all__ = [
    "ObjectiveOut",
    "Player",
    "TrainState",
    "init_multi_state",
    "init_state",
    "loss_objective",
    "make_multi_step",
    "make_step",
]


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree; no PRNG keys inside).

    ``chains``: the sampler state (persistent chains), ``()`` when the model has none;
    ``aux``: any other state the objective carries from step to step (centering offsets,
    running statistics), ``()`` when none; ``step``: updates done (int32 scalar).
    """

    params: Any
    opt_state: Any
    chains: Any = ()
    aux: Any = ()
    step: Array | int = 0


class ObjectiveOut(NamedTuple):
    """What an objective returns: a gradient pytree shaped like the params (of a loss to
    minimise), the new chain and auxiliary states, and a dict of scalar metrics."""

    grads: Any
    chains: Any
    aux: Any
    metrics: dict


Objective = Callable[[Any, Any, PRNGKeyArray, Any, Any], ObjectiveOut]


def init_state(
    params: Any, optimizer: optax.GradientTransformation, chains: Any = (), aux: Any = ()
) -> TrainState:
    """The initial train state.  Copies every array so that an epoch that donates its state
    never invalidates the caller's ``params``."""
    params, chains, aux = jax.tree_util.tree_map(jnp.array, (params, chains, aux))
    return TrainState(params, optimizer.init(params), chains, aux, jnp.zeros((), jnp.int32))


def make_step(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    *,
    project: Callable[[Any], Any] | None = None,
    track_grad_norm: bool = False,
) -> Callable[[TrainState, Any, PRNGKeyArray], tuple[TrainState, dict]]:
    """``step(state, batch, key) -> (state, metrics)``: one optax update along the
    objective's gradient.

    ``optimizer.update`` receives the params (weight-decay transforms work);
    ``project`` (e.g. a variance clip or a filter normalisation) maps the updated params
    back onto the model's feasible set; ``track_grad_norm`` adds ``grad_norm`` (global L2
    norm of the gradient) to the metrics.
    """
    if not callable(objective):
        raise ConfigError(f"objective must be callable, got {objective!r}")

    def step(state: TrainState, batch: Any, key: PRNGKeyArray):
        out = objective(state.params, batch, key, state.chains, state.aux)
        updates, opt_state = optimizer.update(out.grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if project is not None:
            params = project(params)
        metrics = dict(out.metrics)
        if track_grad_norm:
            metrics["grad_norm"] = optax.tree.norm(out.grads)
        return TrainState(params, opt_state, out.chains, out.aux, state.step + 1), metrics

    return step


def loss_objective(
    loss_fn: Callable[[Any, Any, PRNGKeyArray], Any], *, has_aux: bool = False
) -> Objective:
    """The objective of ``loss_fn(params, batch, key) -> scalar`` (or ``(scalar, metrics
    dict)`` with ``has_aux``): its gradient by autodiff, ``loss`` (the value before the
    update) and the aux metrics as metrics; chains and auxiliary state pass through."""
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

    def objective(params, batch, key, chains, aux):
        out, grads = grad_fn(params, batch, key)
        loss, extra = out if has_aux else (out, {})
        return ObjectiveOut(grads, chains, aux, {"loss": loss, **dict(extra)})

    return objective


class Player(NamedTuple):
    """One parameter group of a multi-player step.

    ``group``: its key in the params dict; ``objective``: an objective over the *whole*
    params dict (it may read the other groups) whose ``grads`` are for this group only;
    ``optimizer``: this group's optax transformation; ``n_updates``: updates per step;
    ``split_batch``: give each of the ``n_updates`` updates its own slice of the batch
    (the batch's leading axis must divide by ``n_updates``), as in Goodfellow et al.'s
    algorithm where every discriminator update draws a fresh minibatch.
    """

    group: str
    objective: Objective
    optimizer: optax.GradientTransformation
    n_updates: int = 1
    split_batch: bool = False


def _check_players(players: Sequence[Player]) -> None:
    if not players:
        raise ConfigError("a multi-player step needs at least one Player")
    names = [p.group for p in players]
    if len(set(names)) != len(names):
        raise ConfigError(f"each parameter group may have one Player; got groups {names}")
    for p in players:
        if not isinstance(p.n_updates, numbers.Integral) or p.n_updates < 1:
            raise ConfigError(
                f"Player {p.group!r}: n_updates must be an integer >= 1, got {p.n_updates!r}"
            )


def init_multi_state(
    params: dict, players: Sequence[Player], chains: Any = (), aux: Any = ()
) -> TrainState:
    """The initial state of a multi-player step: one optimiser state per group."""
    _check_players(players)
    missing = [p.group for p in players if p.group not in params]
    if missing:
        raise ConfigError(
            f"the params dict has groups {sorted(params)} but players name {missing}; "
            f"give every Player.group a key of params"
        )
    params, chains, aux = jax.tree_util.tree_map(jnp.array, (dict(params), chains, aux))
    opt_state = {p.group: p.optimizer.init(params[p.group]) for p in players}
    return TrainState(params, opt_state, chains, aux, jnp.zeros((), jnp.int32))


def make_multi_step(
    players: Sequence[Player], *, project: Callable[[dict], dict] | None = None
) -> Callable[[TrainState, Any, PRNGKeyArray], tuple[TrainState, dict]]:
    """``step(state, batch, key) -> (state, metrics)`` running the players in order, each
    for its ``n_updates`` updates (a ``lax.scan``), every update seeing the current values of
    all groups.  Metrics are prefixed by the group name (``"disc/loss"``) and averaged over
    that player's updates."""
    players = tuple(players)
    _check_players(players)

    def play(player: Player, state: TrainState, batch: Any, key: PRNGKeyArray):
        n = player.n_updates
        if player.split_batch:
            leading = {jnp.shape(x)[0] for x in jax.tree_util.tree_leaves(batch)}
            if any(b % n for b in leading):
                raise ConfigError(
                    f"Player {player.group!r} splits the batch into {n} updates but the batch "
                    f"has {sorted(leading)} examples; use a batch size divisible by {n}"
                )
            batches = jax.tree_util.tree_map(lambda x: x.reshape(n, -1, *x.shape[1:]), batch)
        else:
            batches = None

        def body(carry, inp):
            params, opt_state, chains, aux = carry
            k, i = inp
            b = batch if batches is None else jax.tree_util.tree_map(lambda x: x[i], batches)
            out = player.objective(params, b, k, chains, aux)
            g = player.group
            updates, new_opt = player.optimizer.update(out.grads, opt_state[g], params[g])
            params = {**params, g: optax.apply_updates(params[g], updates)}
            if project is not None:
                params = project(params)
            return (params, {**opt_state, g: new_opt}, out.chains, out.aux), out.metrics

        carry = (state.params, state.opt_state, state.chains, state.aux)
        carry, metrics = jax.lax.scan(body, carry, (jax.random.split(key, n), jnp.arange(n)))
        metrics = {f"{player.group}/{k}": jnp.mean(v, axis=0) for k, v in metrics.items()}
        return TrainState(*carry, state.step), metrics

    def step(state: TrainState, batch: Any, key: PRNGKeyArray):
        metrics: dict = {}
        for i, player in enumerate(players):
            state, m = play(player, state, batch, jax.random.fold_in(key, i))
            metrics.update(m)
        return state._replace(step=state.step + 1), metrics

    return step
