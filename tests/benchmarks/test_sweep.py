"""Smoke test of experiments/benchmarks/sweep.py (--quick): the JSON lines of the vmapped
RBM and VAE sweeps vs the same members trained one after another, and the check that
member i of the vmapped sweep is the i-th sequential run."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest


@pytest.mark.parametrize(
    ("model", "bench", "n"),
    [
        pytest.param("rbm", "sweep_rbm_3x784x8", 3, marks=pytest.mark.slow),  # 7 s cold
        pytest.param("vae", "sweep_vae_2x784-8-2", 2, marks=pytest.mark.slow),
    ],
)
def test_sweep_quick(run_quick, model, bench, n):
    (rec,) = run_quick("sweep", "--models", model)
    assert rec["bench"] == bench and rec["unit"] == "model-epochs/s"
    assert rec["peer"] == "sequential" and rec["peer_value"] > 0
    assert abs(rec["ratio"] - rec["egm"] / rec["peer_value"]) < 1e-2 * rec["ratio"]
    assert rec["members"] == n and len(rec["seeds"]) == n == len(set(rec["learning_rates"]))
    # compared after the untimed warm-up call: 1 epoch of every member (--quick)
    assert rec["members_epochs_compared"] == 1
    assert rec["members_match"] is True and rec["members_allclose"] is True
    assert rec["members_max_rel_diff"] < 1e-3 and rec["members_max_abs_diff"] < 1e-4
    assert rec["gemm_bound_products_in_hlo"] == rec["egm_products_in_hlo"] > 0
    assert rec["gemm_bound_fraction"] > 0
    if model == "rbm":  # the epoch's products, batched over 3 members: v·W twice, h·Wᵀ, gradient
        assert rec["gemm_bound"].startswith("4 products per iteration [2 x (3x50x784x8)")


def test_compare_members_sees_a_different_member(load_bench):
    b = load_bench("sweep")
    initial = [{"W": jnp.zeros((3, 2)), "b": jnp.zeros(3)} for _ in range(3)]
    members = [{"W": jnp.full((3, 2), 1.0 + i), "b": jnp.zeros(3)} for i in range(3)]
    same = b.compare_members(members, [dict(m) for m in members], initial)
    assert same["members_match"] and same["members_allclose"]
    assert same["members_max_abs_diff"] == 0.0 == same["members_max_rel_diff"]
    swapped = b.compare_members(members, members[::-1], initial)
    assert not swapped["members_match"] and not swapped["members_allclose"]
    assert swapped["members_max_abs_diff"] == 2.0
    # one weight off by 1e-2 (beyond atol + rtol |w| = 2.1e-3, as after a flipped chain
    # unit), 1e-2 / (2 sqrt(6)) = 2e-3 of the distance trained: still the same computation
    nudged = [dict(m) for m in members]
    nudged[1]["W"] = nudged[1]["W"].at[0, 0].add(1e-2)
    rec = b.compare_members(members, nudged, initial)
    assert rec["members_match"] and not rec["members_allclose"]


def test_each_member_carries_its_own_learning_rate(load_bench):
    b = load_bench("sweep")
    X = jnp.asarray(np.random.default_rng(0).random((20, 6)) < 0.5, jnp.float32)
    _, states, roots, lrs = b.rbm_members(X, 3, 4, 10, seed=5)
    got = [float(s.opt_state.hyperparams["learning_rate"]) for s in states]
    np.testing.assert_allclose(got, lrs, rtol=1e-6)
    assert len({tuple(np.asarray(s.params.W).ravel()) for s in states}) == 3  # own seeds
    assert roots.shape[0] == 3


@pytest.mark.slow
def test_sharded_sweep_quick_on_two_host_devices(bench_dir):
    """``--sharded`` with 2 XLA host devices (a subprocess: the flag must precede jax's
    start): 4 members split 2 per device, and member i still equals the i-th sequential
    run (the benchmark's own check, exit status 0)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run(
        [sys.executable, "sweep.py", "--quick", "--repeats", "1", "--models", "rbm",
         "--rbm_members", "4", "--sharded"],
        cwd=bench_dir, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    (rec,) = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert rec["sweep_devices"] == 2 and rec["members"] == 4 and rec["members_match"] is True
