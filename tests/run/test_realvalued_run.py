"""The real-valued experiments' shared plumbing (egm.run.realvalued): the factored models'
projection with held fields, the HMC negative phase (adapted for training, fixed for final
samples), and the train phase of fe_experiment (chains at training rows, the frozen-sampler
stop).  The experiments themselves run in tests/experiments/test_smoke.py."""

from __future__ import annotations

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.energies import _factored, grbm, mpot
from egm.errors import DivergenceError
from egm.run import realvalued as rv
from egm.samplers.persistent import grbm_chain


def test_factored_projection_holds_the_fixed_fields():
    """Without learn_pooling, P goes back to its initial pooling after the model's own
    projection, and every field passed as fixed keeps its value; the rest is exactly the
    model's projection.  With nothing held the projection IS the model's."""
    cfg = rv.FactoredFields(n_factors=16, n_cov=4, n_mean=3, learn_pooling=False)
    p = mpot.init(jax.random.key(0), 9, 16, 4, 3, gamma=2.0, **cfg.init_kw)
    p = p._replace(P=p.P * 3.0 + 0.1, gamma=jnp.linspace(0.1, 3.0, 4))  # as after an update
    model_project = functools.partial(mpot.project, c_norm=1.5, gamma_min=0.5)
    gamma0 = jnp.full(4, 2.0)
    out = cfg.projection(model_project, gamma=gamma0)(p)
    want = model_project(p)
    assert np.array_equal(out.P, _factored.init_pooling(16, 4, "topographic"))
    assert np.array_equal(out.gamma, gamma0)
    for f in ("C", "W", "b_m", "b_v"):
        assert np.array_equal(getattr(out, f), getattr(want, f)), f
    learned = rv.FactoredFields(n_factors=16, n_cov=4, n_mean=3)
    assert learned.projection(model_project) is model_project


def _std_normal(params, v):
    return -0.5 * jnp.sum(v**2)


def test_hmc_adapts_during_training_and_not_for_final_samples():
    """cfg.hmc(log p) starts at hmc_step_size and multiplies each chain's step size by 1.02
    or 0.98 per step (egm.samplers.persistent.adaptive_step_size; float32 products: 1e-6
    relative); cfg.hmc(log p, step) keeps ``step`` exactly."""
    cfg = rv.HMCFields(hmc_leapfrog=3, hmc_step_size=0.1, hmc_target_accept=0.9)
    v = jnp.ones(4)
    for chain, start, factors in ((cfg.hmc(_std_normal), 0.1, (1.02, 0.98)),
                                  (cfg.hmc(_std_normal, 0.05), 0.05, (1.0,))):  # fmt: skip
        state = chain.from_visible(jax.random.key(0), None, v)
        assert float(state.step_size) == pytest.approx(start, rel=1e-7)
        for i in range(4):
            before = float(state.step_size)
            state, _ = chain.kernel.step(jax.random.key(i), state, None)
            ratio = float(state.step_size) / before
            assert min(abs(ratio - f) for f in factors) < 1e-6, ratio
        assert np.isfinite(np.asarray(state.position)).all()


def test_fe_phase_starts_the_chains_at_training_rows_and_stops_frozen_samplers():
    """The train phase's state: n_chains persistent chains, each at a row of z_train (the
    GRBM's Gibbs state keeps v and draws h | v); an epoch with acceptance rate 0 stops the
    run, an epoch of a sampler without one does not."""
    z = np.asarray(jax.random.normal(jax.random.key(1), (30, 5)), np.float32)
    model = rv.FEModel(
        init_params=lambda c, d, key: grbm.init(key, 5, 3),
        free_energy=lambda c: grbm.free_energy,
        chain=lambda c: grbm_chain("gibbs"),
    )
    cfg = rv.FETrainingFields(n_chains=7, batch_size=10, n_train=30)
    (phase,) = rv.fe_phases(model)(cfg)
    state = phase.init(cfg, types.SimpleNamespace(z_train=z), jax.random.key(2), {})
    v = np.asarray(state.chains.v)
    assert v.shape == (7, 5)
    assert all(np.any(np.all(row == z, axis=1)) for row in v)
    phase.check_epoch(0, {"free_energy_gap": 1.0})
    with pytest.raises(DivergenceError, match="acceptance rate"):
        phase.check_epoch(3, {"acceptance_rate": 0.0})
