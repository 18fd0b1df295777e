"""Training invariants: sweep == separate runs, resume == uninterrupted, jit == no-jit,
no retracing, divergence detected."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import random_rbm

from egm import train
from egm.errors import ConfigError, DivergenceError

V, H, N, B = 12, 6, 64, 16


def _data():
    return jax.random.bernoulli(jax.random.key(42), 0.3, (N, V)).astype(jnp.float32)


def _setup(seed=0, lr=0.05, momentum=0.5, weight_decay=1e-3, estimator="pcd", centering=True):
    opt = train.sgd(lr, momentum, weight_decay)
    params = random_rbm(seed, V, H, 0.1)
    state = train.init_rbm_state(jax.random.key(seed + 100), params, opt, _data().mean(0), 8)
    cfg = train.RBMStepConfig(estimator=estimator, k=2, centering=centering)
    return opt, state, train.make_epoch(train.make_step(train.rbm_objective(cfg), opt), B)


def _assert_trees_close(a, b, **kw):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
@pytest.mark.parametrize("sweeper", ["vmap", "map"])
def test_sweep_of_n_equals_n_separate_runs(sweeper):
    """Members differ in seed (init, chains, epoch keys), learning rate, momentum, weight decay;
    batched (``sweep_epoch``, vmap) or one after another (``map_epoch``, lax.map)."""
    hps = [(0.05, 0.0, 0.0), (0.02, 0.5, 1e-3), (0.1, 0.9, 1e-2)]
    _, _, epoch = _setup()
    states, roots = [], []
    for i, (lr, mom, wd) in enumerate(hps):
        _, s, _ = _setup(seed=i)
        s = s._replace(
            opt_state=train.set_hyperparams(
                s.opt_state, learning_rate=lr, momentum=mom, weight_decay=wd
            )
        )
        states.append(s)
        roots.append(jax.random.key(10 + i))
    data = _data()
    swept = train.stack(states)
    sweep_fn = jax.jit((train.sweep_epoch if sweeper == "vmap" else train.map_epoch)(epoch))
    roots_arr = jnp.stack(roots)
    for e in range(3):
        swept, _ = sweep_fn(swept, data, train.sweep_keys(roots_arr, e))
    one = jax.jit(epoch)
    for i, s in enumerate(states):
        for e in range(3):
            s, _ = one(s, data, train.epoch_key(roots[i], e))
        _assert_trees_close(train.unstack(swept)[i].params, s.params, rtol=2e-5, atol=2e-6)
    # the members really differ
    p = train.unstack(swept)
    assert not np.allclose(p[0].params.W, p[2].params.W)


@pytest.mark.parametrize(
    "estimator",
    [pytest.param("cd", marks=pytest.mark.slow), "pcd"],  # cd: 7 s cold (eager)
)
def test_jit_equals_nojit_and_same_seed_same_numbers(estimator):
    _, state, epoch = _setup(estimator=estimator)
    a, ma = jax.jit(epoch)(state, _data(), jax.random.key(1))
    b, mb = epoch(state, _data(), jax.random.key(1))
    _assert_trees_close(a, b, rtol=1e-5, atol=1e-6)
    c, _ = jax.jit(epoch)(state, _data(), jax.random.key(1))
    _assert_trees_close(a, c, rtol=0, atol=0)
    d, _ = jax.jit(epoch)(state, _data(), jax.random.key(2))
    assert not np.array_equal(a.params.W, d.params.W)


def test_epoch_compiles_once():
    _, state, epoch = _setup()
    traced = chex.assert_max_traces(epoch, n=1)
    f = jax.jit(traced)
    for e in range(3):
        state, _ = f(state, _data(), jax.random.key(e))


def test_resume_equals_uninterrupted(tmp_path):
    _, state0, epoch = _setup()
    f = jax.jit(epoch)
    root = jax.random.key(7)
    full = train.fit(state0, _data(), epoch_fn=f, key=root, n_epochs=4, progress=False)

    ck = train.Checkpointer(tmp_path / "ck", every=1)
    train.fit(state0, _data(), epoch_fn=f, key=root, n_epochs=2, progress=False, checkpointer=ck)
    ck.close()  # the process "dies" after epoch 1
    ck2 = train.Checkpointer(tmp_path / "ck", every=1)
    last, restored = ck2.restore(state0)
    assert last == 1
    resumed = train.fit(
        restored,
        _data(),
        epoch_fn=f,
        key=root,
        n_epochs=4,
        start_epoch=last + 1,
        progress=False,
        checkpointer=ck2,
    )
    ck2.close()
    _assert_trees_close(resumed, full, rtol=0, atol=0)


def test_corrupt_checkpoint_is_reported(tmp_path):
    from egm.errors import CorruptFileError

    _, state0, epoch = _setup()
    ck = train.Checkpointer(tmp_path / "ck")
    ck.save(0, state0, force=True)
    ck.close()
    for f in (tmp_path / "ck").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "manifest" not in f.name:
            f.write_bytes(b"garbage")
    with pytest.raises(CorruptFileError, match="delete"):
        train.Checkpointer(tmp_path / "ck").restore(state0)


def test_divergence_is_detected_with_epoch_and_cause():
    """lr · weight_decay = 1000 > 2: W is multiplied by (1 - 1000) each step and overflows
    to inf within ~13 steps (4 steps per epoch), then NaN; the run stops at that epoch."""
    _, state, epoch = _setup(lr=1000.0, momentum=0.0, weight_decay=1.0, centering=False)
    f = jax.jit(epoch)
    with pytest.raises(DivergenceError, match=r"diverged at epoch [1-9]\b.*W.*learning rate"):
        train.fit(state, _data(), epoch_fn=f, key=jax.random.key(0), n_epochs=20, progress=False)


def test_nonfinite_metric_is_detected():
    _, state, epoch = _setup()
    with pytest.raises(DivergenceError, match=r"epoch 1.*metric bad"):
        train.fit(
            state,
            _data(),
            epoch_fn=jax.jit(epoch),
            key=jax.random.key(0),
            n_epochs=3,
            progress=False,
            on_epoch_end=lambda e, s, m: {"bad": float("nan") if e == 1 else 0.0},
        )


def test_bad_config_values_are_rejected():
    with pytest.raises(ConfigError, match="estimator"):
        train.make_step(train.rbm_objective(train.RBMStepConfig(estimator="cd2")), train.sgd(0.1))
    with pytest.raises(ConfigError, match="k"):
        train.make_step(train.rbm_objective(train.RBMStepConfig(k=0)), train.sgd(0.1))
    with pytest.raises(ConfigError, match="momentum"):
        train.sgd(0.1, momentum=1.5)
    with pytest.raises(ConfigError, match="learning_rate"):
        train.sgd(-0.1)
    with pytest.raises(ConfigError, match="batch"):
        train.make_epoch(lambda s, b, k: (s, None), 0)


def test_training_increases_exact_likelihood():
    """On a tiny model the exact log-likelihood of the training data goes up (sanity of sign)."""
    from egm.estimators import exact

    _, state, epoch = _setup(lr=0.1, momentum=0.5, weight_decay=0.0)
    before = float(jnp.mean(exact.rbm_log_likelihood(state.params, _data())))
    state = train.fit(
        state, _data(), epoch_fn=jax.jit(epoch), key=jax.random.key(3), n_epochs=30, progress=False
    )
    after = float(jnp.mean(exact.rbm_log_likelihood(state.params, _data())))
    assert after > before + 0.5, (
        before,
        after,
    )  # deterministic given the keys; a fraction of the gain


def test_bad_training_data_is_rejected_before_training():
    from egm.errors import DataError

    _, state, epoch = _setup()
    f = jax.jit(epoch)
    check = train.rbm_data_check(V)
    grey = jax.random.uniform(jax.random.key(0), (N, V))
    with pytest.raises(DataError, match="binar"):
        train.fit(
            state,
            grey,
            epoch_fn=f,
            key=jax.random.key(0),
            n_epochs=1,
            progress=False,
            data_check=check,
        )
    with pytest.raises(DataError, match=r"\(N, 12\)"):
        train.fit(
            state,
            _data()[:, :5],
            epoch_fn=f,
            key=jax.random.key(0),
            n_epochs=1,
            progress=False,
            data_check=check,
        )
    with pytest.raises(DataError, match="NaN"):
        train.fit(
            state,
            _data().at[0, 0].set(jnp.nan),
            epoch_fn=f,
            key=jax.random.key(0),
            n_epochs=1,
            progress=False,
        )
    # grey data is fine when the step re-binarizes dynamically
    dyn = train.rbm_data_check(V, train.RBMStepConfig(binarization="dynamic"))
    dyn(np.asarray(grey))
