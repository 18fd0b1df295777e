"""Supervised step (cross-entropy, optax), batched evaluation, and the epoch loop over the
pytree ``(x, y)``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from egm import train
from egm.errors import DataError
from egm.models.mlp import MLP
from egm.train import init_state, make_step
from egm.train.classifier import (
    classification_error,
    classifier_data_check,
    classifier_objective,
    cross_entropy,
)

D, K, N = 5, 3, 240


def _problem():
    """Linearly separable labels: y = argmax(x A) for a fixed A."""
    x = jax.random.normal(jax.random.key(0), (N, D))
    A = jax.random.normal(jax.random.key(1), (D, K))
    return x, jnp.argmax(x @ A, axis=1).astype(jnp.int32)


def _model():
    module = MLP(hidden=(16,), n_classes=K)
    params = module.init(jax.random.key(2), jnp.zeros((1, D)))["params"]
    return (lambda p, x: module.apply({"params": p}, x)), params


def test_step_applies_the_exact_cross_entropy_gradient():
    """With plain SGD(lr=1) the update is exactly -∇ mean cross-entropy (jax.grad of
    -mean log softmax(logits)[y] written out by hand)."""
    apply_fn, params = _model()
    x, y = _problem()
    state = init_state(params, optax.sgd(1.0))
    new, m = jax.jit(make_step(classifier_objective(apply_fn), optax.sgd(1.0)))(
        state, (x[:32], y[:32]), jax.random.key(0)
    )

    def loss(p):
        logits = apply_fn(p, x[:32])
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(32), y[:32]])

    g = jax.grad(loss)(params)
    for a, b, c in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(new.params),
                       jax.tree_util.tree_leaves(g), strict=True):  # fmt: skip
        np.testing.assert_allclose(np.asarray(a - b), np.asarray(c), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(m["loss"]), float(loss(params)), rtol=1e-6)
    assert int(new.step) == 1


def test_fit_over_pytree_data_learns_a_separable_problem():
    """make_epoch/fit over (x, y): training error falls below 5% on a linearly separable set
    (start: ~2/3 error), and classification_error agrees with the epoch's own metric path."""
    apply_fn, params = _model()
    x, y = _problem()
    opt = train.sgd(0.5, 0.9)
    state = init_state(params, opt)
    epoch = jax.jit(
        train.make_epoch(make_step(classifier_objective(apply_fn), opt), 20), donate_argnums=0
    )
    before = classification_error(apply_fn, params, x, y)
    state = train.fit(
        state, (x, y), epoch_fn=epoch, key=jax.random.key(3), n_epochs=60, progress=False,
        data_check=classifier_data_check(D, K),
    )  # fmt: skip
    after = classification_error(apply_fn, state.params, x, y, batch_size=7)
    assert before > 0.3 and after < 0.05, (before, after)


def test_batched_error_equals_full_error():
    """Batches of 7 over 240 examples (a 2-example remainder) give the full-batch error."""
    apply_fn, params = _model()
    x, y = _problem()
    full = float(jnp.mean(cross_entropy(apply_fn, params, x, y)[1]))
    assert classification_error(apply_fn, params, x, y, batch_size=7) == pytest.approx(full)
    assert classification_error(apply_fn, params, x, y, batch_size=1000) == pytest.approx(full)


def test_bad_supervised_data_is_rejected():
    apply_fn, params = _model()
    x, y = _problem()
    opt = optax.sgd(0.1)
    state = init_state(params, opt)
    epoch = jax.jit(train.make_epoch(make_step(classifier_objective(apply_fn), opt), 20))
    kw = dict(epoch_fn=epoch, key=jax.random.key(0), n_epochs=1, progress=False,
              data_check=classifier_data_check(D, K))  # fmt: skip
    with pytest.raises(DataError, match="same leading"):
        train.fit(state, (x, y[:10]), **kw)
    with pytest.raises(DataError, match="NaN"):
        train.fit(state, (x.at[0, 0].set(jnp.nan), y), **kw)
    with pytest.raises(DataError, match="labels must lie"):
        train.fit(state, (x, y + K), **kw)
    with pytest.raises(DataError, match="one-hot"):
        train.fit(state, (x, jax.nn.one_hot(y, K)), **kw)
    with pytest.raises(DataError, match="examples"):
        classification_error(apply_fn, params, x, y[:5])


def test_a_grid_of_candidates_trains_each_as_it_would_alone():
    """``grid_states`` + ``grid_step``: three weight decays side by side.  Each candidate
    must end where a run of the plain step alone with that decay and key ``split(key, 3)[i]``
    ends (the loss draws noise from the key, so a shared or wrong key is caught); the
    tolerance is float32 rounding of the same ops vmapped or not (rel 1e-5).  Metrics are the
    grid's mean and lowest loss."""
    from egm.errors import ConfigError
    from egm.train.sweep import grid_states, grid_step, unstack

    def loss_fn(params, batch, key):
        noise = jax.random.normal(key, params["w"].shape)
        return jnp.sum((params["w"] - batch.mean(0) - noise) ** 2)

    opt = train.adam(0.1, weight_decay=0.0)
    state = init_state({"w": jnp.ones(4)}, opt)
    grid = (0.0, 0.5, 5.0)
    step = make_step(train.loss_objective(loss_fn), opt)
    batch = jnp.arange(8.0).reshape(2, 4)
    states, stepped = grid_states(state, weight_decay=grid), jax.jit(grid_step(step))
    for t in range(4):
        states, metrics = stepped(states, batch, jax.random.key(t))
    finals = []
    for i, decay in enumerate(grid):
        s = state._replace(opt_state=train.set_hyperparams(state.opt_state, weight_decay=decay))
        for t in range(4):
            s, m = jax.jit(step)(s, batch, jax.random.split(jax.random.key(t), 3)[i])
        finals.append((s, float(m["loss"])))
    for got, (want, _) in zip(unstack(states), finals, strict=True):
        np.testing.assert_allclose(got.params["w"], want.params["w"], rtol=1e-5)
    losses = [loss for _, loss in finals]
    assert float(metrics["loss"]) == pytest.approx(np.mean(losses), rel=1e-5)
    assert float(metrics["loss_min"]) == pytest.approx(min(losses), rel=1e-5)
    assert len({float(s.params["w"][0]) for s, _ in finals}) == 3  # the decays matter
    with pytest.raises(ConfigError, match="common length"):
        grid_states(state, weight_decay=grid, learning_rate=(0.1,))
