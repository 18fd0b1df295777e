"""Supervised training of classifiers (fine-tuning pretrained DBNs/DBMs as MLPs, §20.3-20.4).

A step is ``step(state, (x, y), key) -> (state, metrics)`` with the mean softmax
cross-entropy ``-mean log p(y | x)`` as the loss and any optax optimiser, so it runs in
:func:`egm.train.make_epoch` (one jitted scan per epoch over the pytree ``(x, y)``) and
:func:`egm.train.fit` like every other step in egm.  ``apply_fn(params, x) -> logits`` is
the pure half of a Flax module, e.g. ``lambda p, x: MLP(...).apply({"params": p}, x)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from egm.errors import ConfigError, DataError
from egm.train.state import loss_objective

ApplyFn = Callable[[Any, Float[Array, "B D"]], Float[Array, "B K"]]


def cross_entropy(
    apply_fn: ApplyFn, params: Any, x: Float[Array, "B D"], y: Int[Array, " B"]
) -> tuple[Float[Array, ""], Float[Array, " B"]]:
    """Mean ``-log softmax(logits)[y]`` and the logits' per-example arg-max errors (0/1)."""
    logits = apply_fn(params, x)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    return loss, (jnp.argmax(logits, axis=-1) != y).astype(jnp.float32)


def classifier_objective(apply_fn: ApplyFn, features: Callable[[Any, Array], Array] | None = None):
    """The objective of :func:`egm.train.make_step` for a classifier: batches ``(x, y)``,
    metrics ``{"loss", "train_error"}``.

    ``features(aux, x)``: the network's input computed from ``x`` and the train state's
    ``aux`` in every step (e.g. a DBM's mean-field features, with the frozen DBM in ``aux``,
    so each member of a sweep sees its own); ``aux`` passes through unchanged.  ``key`` is
    unused by a deterministic network but kept so the step has egm's step shape (dropout
    or input noise would draw from it)."""

    def loss_fn(params: Any, batch: tuple[Array, Array], key: PRNGKeyArray):
        del key
        x, y = batch
        loss, errors = cross_entropy(apply_fn, params, x, y)
        return loss, {"train_error": jnp.mean(errors)}

    inner = loss_objective(loss_fn, has_aux=True)
    if features is None:
        return inner

    def objective(params, batch, key, chains, aux):
        x, y = batch
        return inner(params, (features(jax.lax.stop_gradient(aux), x), y), key, chains, aux)

    return objective


def classification_error(
    apply_fn: ApplyFn,
    params: Any,
    x: Float[Array, "N D"],
    y: Int[Array, " N"],
    *,
    batch_size: int = 1000,
) -> float:
    """Fraction of misclassified examples (arg-max of the logits), computed in batches of
    ``batch_size`` (the last one may be smaller)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    wrong = 0.0
    count = _count_errors(apply_fn)
    for i in range(0, x.shape[0], batch_size):
        wrong += float(count(params, jnp.asarray(x[i : i + batch_size]), y[i : i + batch_size]))
    return wrong / x.shape[0]


def _count_errors(apply_fn: ApplyFn):
    @jax.jit
    def count(params, x, y):
        return jnp.sum(jnp.argmax(apply_fn(params, x), axis=-1) != y)

    return count


def classifier_data_check(n_features: int, n_classes: int):
    """Host-side check of ``(x, y)`` for :func:`egm.train.fit`: x is (N, n_features), y holds
    integer labels in ``0 .. n_classes-1``."""
    from egm.data.validate import check_shape

    def check(data) -> None:
        x, y = data
        check_shape(x, n_features, "training inputs x")
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(
                f"labels y must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}; "
                f"pass class indices, not one-hot vectors"
            )
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise DataError(
                f"labels must lie in 0..{n_classes - 1}, got range [{y.min()}, {y.max()}]"
            )

    return check
