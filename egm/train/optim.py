"""Optimisers whose numeric hyper-parameters live in the optimiser state.

:func:`sgd` wraps ``optax.inject_hyperparams`` so learning rate, momentum and weight
decay are arrays in ``opt_state.hyperparams``: a vmapped sweep gives every member
its own values by initialising the state with different numbers, and one jitted
call trains them all (DESIGN.md §2, "Sweeps").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from egm.errors import ConfigError


def matrices_only(params: Any) -> Any:
    """Weight-decay mask: decay leaves with ``ndim >= 2`` (weights), not biases."""
    return jax.tree_util.tree_map(lambda x: jnp.ndim(x) >= 2, params)


def linear_decay(n_steps: int, final_fraction: float = 0.0) -> Callable[[Any], Any]:
    """Multiplier going linearly from 1 to ``final_fraction`` over ``n_steps``, then flat."""
    if n_steps <= 0:
        raise ConfigError(f"linear_decay needs n_steps > 0, got {n_steps}")

    def schedule(count):
        frac = jnp.minimum(count / n_steps, 1.0)
        return 1.0 - (1.0 - final_fraction) * frac

    return schedule


def sgd(
    learning_rate: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    *,
    lr_multiplier: Callable[[Any], Any] | None = None,
    decay_mask: Callable[[Any], Any] = matrices_only,
) -> optax.GradientTransformation:
    """SGD with momentum and L2 weight decay (added to the gradient, Hinton 2010 §9).

    ``updates = -lr · m(t) · trace_momentum(g + weight_decay · W)``, where ``m`` is the
    optional static ``lr_multiplier`` schedule of the step count.  The three numbers
    are injected hyper-parameters (see module docstring).
    """
    for name, val in (("learning_rate", learning_rate), ("momentum", momentum)):
        if not jnp.all(jnp.asarray(val) >= 0):
            raise ConfigError(f"{name} must be >= 0, got {val}")
    if not jnp.all(jnp.asarray(momentum) < 1):
        raise ConfigError(f"momentum must be < 1 (it is a decay factor), got {momentum}")
    if not jnp.all(jnp.asarray(weight_decay) >= 0):
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")

    def factory(learning_rate, momentum, weight_decay):
        return optax.chain(
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            optax.trace(decay=momentum),
            optax.identity() if lr_multiplier is None else optax.scale_by_schedule(lr_multiplier),
            optax.scale_by_learning_rate(learning_rate),
        )

    return optax.inject_hyperparams(factory)(
        learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay
    )


def adam(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    grad_clip: float | None = None,
    lr_multiplier: Callable[[Any], Any] | None = None,
    decay_mask: Callable[[Any], Any] = matrices_only,
) -> optax.GradientTransformation:
    """Adam (decoupled weight decay as in AdamW when ``weight_decay > 0``) whose numbers are
    injected hyper-parameters, so a vmapped sweep can give each member its own.

    ``updates = -lr · m(t) · (adam(clip(g)) + weight_decay · W)`` with the optional static
    global-norm clip ``grad_clip`` and learning-rate multiplier schedule ``m`` of the step
    count.  ``learning_rate``, ``b1``, ``b2``, ``eps`` and ``weight_decay`` live in
    ``opt_state.hyperparams`` (:func:`egm.train.set_hyperparams`).
    """
    if not jnp.all(jnp.asarray(learning_rate) > 0):
        raise ConfigError(f"learning_rate must be > 0, got {learning_rate}")
    for name, val in (("b1", b1), ("b2", b2)):
        if not jnp.all((jnp.asarray(val) >= 0) & (jnp.asarray(val) < 1)):
            raise ConfigError(f"{name} must be in [0, 1) (a decay factor), got {val}")
    if not jnp.all(jnp.asarray(eps) > 0):
        raise ConfigError(f"eps must be > 0, got {eps}")
    if not jnp.all(jnp.asarray(weight_decay) >= 0):
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
    if grad_clip is not None and not grad_clip > 0:
        raise ConfigError(f"grad_clip must be > 0 (or None for no clipping), got {grad_clip}")

    def factory(learning_rate, b1, b2, eps, weight_decay):
        return optax.chain(
            optax.identity() if grad_clip is None else optax.clip_by_global_norm(grad_clip),
            optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            optax.identity() if lr_multiplier is None else optax.scale_by_schedule(lr_multiplier),
            optax.scale_by_learning_rate(learning_rate),
        )

    return optax.inject_hyperparams(factory)(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay
    )
