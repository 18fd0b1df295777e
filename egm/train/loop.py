"""Epoch functions and the host-side training loop.

An epoch is ONE jitted ``lax.scan`` over shuffled minibatches of device-resident data
(DESIGN.md §4); the Python loop runs per epoch.  Epoch ``e`` uses the key
``fold_in(root_key, e)``, so a run resumed from a checkpoint after epoch ``e`` draws
exactly the numbers an uninterrupted run would (same seed → same parameters).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.data.batching import minibatch_indices
from egm.errors import ConfigError, DataError, DivergenceError

Step = Callable[[Any, Array, PRNGKeyArray], tuple[Any, Any]]


def make_epoch(
    step: Step, batch_size: int
) -> Callable[[Any, Float[Array, "N D"], PRNGKeyArray], Any]:
    """``epoch(state, data, key) -> (state, mean metrics)``: a scan of ``step`` over one
    shuffled pass of ``data`` (remainder smaller than a batch dropped).  Not jitted here,
    so it can be vmapped (:mod:`egm.train.sweep`) before ``jax.jit``.

    ``data`` is an array or a pytree of arrays sharing the leading (example) axis, e.g.
    ``(x, y)`` for supervised training; each step then gets the same pytree of minibatches.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")

    def epoch(state, data, key):
        n = _n_examples(data)
        k_perm, k_steps = jax.random.split(key)
        idx = minibatch_indices(k_perm, n, batch_size)
        keys = jax.random.split(k_steps, idx.shape[0])

        def body(state, inp):
            i, k = inp
            return step(state, jax.tree_util.tree_map(lambda x: x[i], data), k)

        state, metrics = jax.lax.scan(body, state, (idx, keys))
        return state, jax.tree_util.tree_map(lambda m: jnp.mean(m, axis=0), metrics)

    return epoch


def _n_examples(data: Any) -> int:
    """The shared leading-axis length of the leaves of ``data`` (an array or a pytree)."""
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree_util.tree_leaves(data)}
    if len(sizes) != 1 or None in sizes:
        shapes = [jnp.shape(x) for x in jax.tree_util.tree_leaves(data)]
        raise DataError(
            f"training data must be an array or a pytree of arrays with the same leading "
            f"(example) axis; got leaves of shapes {shapes}"
        )
    return sizes.pop()


def epoch_key(root: PRNGKeyArray, epoch: int) -> PRNGKeyArray:
    """The key of epoch ``epoch`` (0-based) of a run with root key ``root``."""
    return jax.random.fold_in(root, epoch)


def _nonfinite_leaves(tree: Any) -> list[str]:
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            bad.append(jax.tree_util.keystr(path))
    return bad


def check_divergence(epoch: int, params: Any, metrics: dict[str, float], hint: str = "") -> None:
    """Raise :class:`DivergenceError` naming the epoch if params or metrics hold NaN/inf."""
    bad = _nonfinite_leaves(params)
    bad_metrics = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad or bad_metrics:
        where = ", ".join(bad + [f"metric {m}" for m in bad_metrics])
        raise DivergenceError(
            f"training diverged at epoch {epoch}: non-finite values in {where}. Likely cause: the "
            f"learning rate is too high for this model (weights grew until the sigmoid/softplus "
            f"overflowed) or the input contains NaN/inf. Lower the learning rate, add weight decay "
            f"or momentum < 0.9, and check the data. {hint}".rstrip()
        )


def metrics_to_floats(metrics: Any) -> dict[str, Any]:
    """A NamedTuple/dict of scalar (or sweep-vector) arrays → plain Python floats/lists."""
    items = metrics._asdict().items() if hasattr(metrics, "_asdict") else dict(metrics).items()
    out = {}
    for k, v in items:
        arr = np.asarray(v)
        out[k] = float(arr) if arr.ndim == 0 else arr.tolist()
    return out


def fit(
    state: Any,
    data: Float[Array, "N D"],
    *,
    epoch_fn: Callable,
    key: PRNGKeyArray,
    n_epochs: int,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int, Any, dict[str, Any]], dict[str, Any] | None] | None = None,
    checkpointer: Any | None = None,
    params_of: Callable[[Any], Any] = lambda s: s.params,
    progress: bool = True,
    divergence_hint: str = "",
    data_check: Callable[[Any], None] | None = None,
) -> Any:
    """Run epochs ``start_epoch .. n_epochs - 1`` of a jitted ``epoch_fn``.

    After each epoch: metrics become floats, ``on_epoch_end(epoch, state, metrics)`` may
    add more (evaluation, logging), NaN/inf anywhere raises :class:`DivergenceError`,
    and ``checkpointer.save(epoch, state)`` is called if given.  Returns the final state.

    ``data_check`` (e.g. :func:`egm.data.check_binary` for a binary RBM) runs once on the
    host before training; the data is always checked for NaN/inf and for being 2-D.
    ``data`` may also be a tuple/dict pytree of arrays with a shared leading axis (``(x, y)``):
    then every leaf is checked for NaN/inf, the leading axes must agree, and
    ``data_check`` receives the pytree of host arrays.
    """
    from tqdm.auto import tqdm

    from egm.data.validate import check_finite as check_finite_data
    from egm.data.validate import check_shape

    if not isinstance(data, tuple | dict):  # one array (or array-like), as before
        check_shape(np.asarray(data), None, "training data")
        check_finite_data(np.asarray(data), "training data")
        if data_check is not None:
            data_check(np.asarray(data))
        data = jnp.asarray(data)
    else:
        _n_examples(data)
        host = jax.tree_util.tree_map(np.asarray, data)
        for path, leaf in jax.tree_util.tree_leaves_with_path(host):
            check_finite_data(leaf, f"training data{jax.tree_util.keystr(path)}")
        if data_check is not None:
            data_check(host)
        data = jax.tree_util.tree_map(jnp.asarray, data)
    bar = tqdm(range(start_epoch, n_epochs), disable=not progress, desc="epoch", unit="epoch")
    for epoch in bar:
        state, metrics = epoch_fn(state, data, epoch_key(key, epoch))
        m = metrics_to_floats(metrics)
        if on_epoch_end is not None:
            m.update(on_epoch_end(epoch, state, m) or {})
        scalar = {k: v for k, v in m.items() if isinstance(v, float)}
        flat = {k: float(np.max(np.abs(v))) for k, v in m.items() if isinstance(v, list)}
        check_divergence(epoch, params_of(state), {**scalar, **flat}, divergence_hint)
        if checkpointer is not None:
            checkpointer.save(epoch, state, force=epoch == n_epochs - 1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in list(scalar.items())[:3]})
    if checkpointer is not None:
        checkpointer.wait()
    return state
