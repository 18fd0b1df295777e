"""Greedy layer-wise stacking of RBMs (§20.3): propagation with tied copies, resume, errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError, DataError
from egm.estimators import exact
from egm.train.greedy import LayerSpec, pretrain_stack
from egm.train.rbm_step import expand_copies, tile_data

V, N = 8, 128


def _data():
    p = jnp.linspace(0.1, 0.9, V)
    return jax.random.bernoulli(jax.random.key(0), p, (N, V)).astype(jnp.float32)


def _dbm_specs(epochs=(2, 2)):
    """The DBM-pretraining path the DBM experiment uses: bottom RBM with two visible copies,
    top RBM with two hidden copies."""
    return [
        LayerSpec(6, epochs=epochs[0], batch_size=16, learning_rate=0.05, n_chains=16,
                  visible_copies=2),
        LayerSpec(4, epochs=epochs[1], batch_size=16, learning_rate=0.05, n_chains=16,
                  hidden_copies=2, propagate="sample"),
    ]  # fmt: skip


@pytest.mark.slow  # 8 s cold; the copies factor's exact gradient is in tests/train/test_rbm_step_copies.py
def test_dbm_pretraining_stack_propagates_with_the_copies_factor():
    """Layer 1 trains on σ(c + 2·xW) of layer 0 (two visible copies); the stack's shapes are
    the small (tied) ones; a "sample" layer hands on a binary draw of its own means."""
    x = _data()
    seen = {}
    stack = pretrain_stack(
        jax.random.key(1),
        x,
        _dbm_specs(),
        on_layer_end=lambda layer, p, nxt: seen.__setitem__(layer, (p, nxt)),
    )
    assert [p.W.shape for p in stack] == [(V, 6), (6, 4)]
    p0, x1 = seen[0]
    np.testing.assert_allclose(
        np.asarray(x1), np.asarray(jax.nn.sigmoid(p0.c + 2.0 * x @ p0.W)), rtol=1e-5, atol=1e-6
    )
    # not the single-copy inference: the factor matters for these weights
    assert float(jnp.max(jnp.abs(x1 - jax.nn.sigmoid(p0.c + x @ p0.W)))) > 1e-3
    _, x2 = seen[1]
    assert set(np.unique(np.asarray(x2))) <= {0.0, 1.0} and x2.shape == (N, 4)


@pytest.mark.slow
def test_dynamic_binarization_trains_on_fresh_samples_of_the_input():
    """binarization="dynamic" accepts grey inputs (e.g. the means handed up by a lower layer)
    and trains on Bernoulli draws of them: same key, same parameters; the result differs from
    training on the grey values themselves."""
    x = 0.25 + 0.5 * _data()  # grey values in [0.25, 0.75]
    dyn = LayerSpec(4, epochs=1, batch_size=16, n_chains=16, binarization="dynamic")
    (a,) = pretrain_stack(jax.random.key(5), x, [dyn])
    (b,) = pretrain_stack(jax.random.key(5), x, [dyn])
    np.testing.assert_array_equal(np.asarray(a.W), np.asarray(b.W))
    (plain,) = pretrain_stack(jax.random.key(5), x, [LayerSpec(4, epochs=1, batch_size=16,
                                                               n_chains=16)])  # fmt: skip
    assert float(jnp.max(jnp.abs(a.W - plain.W))) > 1e-4


@pytest.mark.slow
def test_each_layer_raises_exact_likelihood_of_its_input():
    """Layer 0 trained by the stack (two visible copies) has a higher exact big-RBM
    log-likelihood on the tiled data than its initialisation (weights N(0, 0.01²), base-rate
    visible biases): a check that the stack really trains through the copies path."""
    from egm.energies import rbm

    x = _data()
    spec = LayerSpec(6, epochs=30, batch_size=16, learning_rate=0.05, n_chains=16,
                     visible_copies=2)  # fmt: skip
    (p,) = pretrain_stack(jax.random.key(2), x, [spec])
    init = rbm.init(jax.random.key(0), V, 6, data_mean=x.mean(0))

    def ll(q):
        return float(jnp.mean(exact.rbm_log_likelihood(expand_copies(q, 2, 1), tile_data(x, 2))))

    assert ll(p) > ll(init) + 0.1


class _Killed(Exception):
    pass


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
def test_killed_stack_resumes_to_the_same_parameters(tmp_path):
    """Kill during layer 1 (in its epoch 1, after epoch 0's checkpoint), restart with the same arguments: the finished
    layer 0 is restored, layer 1 resumes from its checkpoint, and the final parameters equal an
    uninterrupted run's bit for bit (fold_in keys per layer and epoch)."""
    x, key = _data(), jax.random.key(3)
    ref = pretrain_stack(key, x, _dbm_specs(), checkpoint_dir=tmp_path / "ref")

    def killer(layer, epoch, state, m):
        if layer == 1 and epoch == 1:  # before epoch 1's checkpoint is written
            raise _Killed

    with pytest.raises(_Killed):
        pretrain_stack(key, x, _dbm_specs(), checkpoint_dir=tmp_path / "run", on_epoch_end=killer)
    epochs_run = []
    got = pretrain_stack(
        key,
        x,
        _dbm_specs(),
        checkpoint_dir=tmp_path / "run",
        on_epoch_end=lambda layer, e, s, m: epochs_run.append((layer, e)),
    )
    assert epochs_run == [(1, 1)]  # layer 0 restored; layer 1 resumed after epoch 0
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(got), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_changed_spec_in_a_checkpoint_dir_is_rejected(tmp_path):
    x, key = _data(), jax.random.key(4)
    pretrain_stack(key, x, _dbm_specs((1, 1))[:1], checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="different spec"):
        pretrain_stack(key, x, _dbm_specs((2, 1))[:1], checkpoint_dir=tmp_path)


def test_bad_arguments_are_rejected():
    x = _data()
    with pytest.raises(ConfigError, match="at least one"):
        pretrain_stack(jax.random.key(0), x, [])
    with pytest.raises(ConfigError, match="propagate"):
        pretrain_stack(jax.random.key(0), x, [LayerSpec(4, propagate="up")])
    with pytest.raises(ConfigError, match="visible_copies"):
        pretrain_stack(jax.random.key(0), x, [LayerSpec(4, visible_copies=0)])
    with pytest.raises(ConfigError, match="binarization"):
        pretrain_stack(jax.random.key(0), x, [LayerSpec(4, binarization="fixed")])
    with pytest.raises(DataError):
        pretrain_stack(jax.random.key(0), x * 2.0, [LayerSpec(4, batch_size=16)])


def test_layer_phase_step_equals_training_on_the_propagated_data():
    """Layer 1's phase step (raw batch pushed up through the frozen layer 0 in its aux) is
    the RBM step on the precomputed σ(c + 2·xW) of layer 0, and a "sample" layer hands on
    one fixed draw per example index."""
    from egm.train import greedy
    from egm.train.rbm_step import rbm_objective
    from egm.train.state import make_step

    x = _data()
    specs = _dbm_specs((1, 1))
    s0 = greedy.init_layer_state(jax.random.key(3), specs, 0, x, [])
    assert s0.aux.keys.shape[0] == 1 and s0.aux.below == ()
    s1 = greedy.init_layer_state(jax.random.key(4), specs, 1, x, [s0])
    assert s1.aux.keys.shape[0] == 2 and s1.params.W.shape == (6, 4)
    idx = jnp.arange(16)
    opt = greedy.layer_optimizer(specs[1], N)
    got, m_got = make_step(greedy.layer_objective(specs, 1), opt)(
        s1, (x[:16], idx), jax.random.key(9)
    )
    h = greedy.infer_up(s0.params, x[:16], 2)
    ref_state = s1._replace(aux=s1.aux.offsets)
    want, m_want = make_step(rbm_objective(specs[1].step_config()), opt)(
        ref_state, h, jax.random.key(9)
    )
    np.testing.assert_allclose(got.params.W, want.params.W, atol=1e-6)
    np.testing.assert_allclose(got.aux.offsets.lam, want.aux.lam, atol=1e-6)
    # "sample" propagation: binary, the same draw for the same index in any batch
    sample_specs = [dataclasses.replace(specs[0], propagate="sample"), specs[1]]
    a = greedy.layer_inputs(s1.aux.below, sample_specs, s1.aux.keys, x[:16], idx)
    b = greedy.layer_inputs(s1.aux.below, sample_specs, s1.aux.keys, x[8:16], idx[8:])
    assert set(np.unique(np.asarray(a))) <= {0.0, 1.0}
    np.testing.assert_array_equal(a[8:], b)


def test_greedy_phases_declare_one_phase_per_layer():
    from egm.train import greedy

    phases = greedy.greedy_phases(None, lambda c: _dbm_specs((2, 3)), prefix="pre")
    assert [p.name for p in phases] == ["pre0", "pre1"]
    assert [p.epochs(None) for p in phases] == [2, 3]
    with pytest.raises(ConfigError, match="needs the 1 layers below"):
        greedy.init_layer_state(jax.random.key(0), _dbm_specs(), 1, _data(), [])
