"""egm.train.shard: sweeps and data parallelism on 8 fake CPU devices (DESIGN.md §2, Devices).

The fake devices need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX is
imported, so ``test_eight_fake_devices`` runs ``_sharding_worker.py all`` in one fresh process and
asserts on the JSON it prints, case by case.  The last test runs the same module functions in this
process, on the one ordinary CPU device (the data-parallel epoch compared with the plain
one; the sweep's equality is the first test's).

Tolerances.  A sweep has no cross-device reduction (members are independent; the compiled
program has no collective), so sharded == vmapped is expected bit for bit, and is asserted
with the same bound as data parallelism for robustness against XLA choosing other kernels
for the smaller per-device shapes.  Data parallelism sums the float32 gradient of a
16-example minibatch as 8 per-device partial sums of 2 plus an all-reduce, instead of one
sum of 16: the rounding differs by a few ulp per step.  Over the 8 SGD steps (lr <= 0.5,
parameters of order 0.1-1) that stays below ~1e-7 (measured 1.5e-8); the bound asserted is
``atol=1e-6`` (with ``rtol=1e-5`` in the in-process comparison), one to two orders of
magnitude above the measured error and far below any real difference (a wrong minibatch or
a dropped gradient shard changes the parameters by > 1e-3).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from egm.train import shard

WORKER = Path(__file__).with_name("_sharding_worker.py")
REPO = Path(__file__).resolve().parents[2]
TOL = 1e-6


def _run(case: str, *args: str) -> dict:
    # fake devices; and LLVM's cheapest optimisation level, which cuts the compile time (most
    # of these tests' time) by ~40 % and leaves the HLO, hence the partitioning, unchanged
    flag = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(WORKER), case, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"worker {case} failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _all_split_8(infos: list[dict]) -> None:
    for info in infos:
        assert info["n_devices"] == 8, info
        assert info["spec"] == "P('sweep',)", info
        assert info["shard_rows"] == [2], info  # 16 members / 8 devices, each shard its own


def _sharded_sweep_equals_vmapped_sweep_on_8_devices(out: dict) -> None:
    for setting in ("True", "False"):  # jax_threefry_partitionable on and off
        r = out[setting]
        assert r["mesh_size"] == 8
        assert r["max_diff_state"] <= TOL, r["max_diff_state"]
        assert r["max_diff_metrics"] <= TOL, r["max_diff_metrics"]
        _all_split_8(r["shardings"])  # every leaf of the state, typed key stream included
        assert any(i["is_key"] for i in r["shardings"])
        _all_split_8(r["metric_shardings"])
        assert sum(r["collectives"].values()) == 0, r["collectives"]  # members independent
        assert r["lr_distinct"] == 16
    # the two settings are two different random streams (each sharded == unsharded)
    assert out["max_diff_between_settings"] > 1e-4


def _data_parallel_epoch_equals_single_device_epoch(out: dict) -> None:
    for setting in ("True", "False"):
        r = out[setting]
        assert r["steps"] == 8  # 2 epochs of 64 // 16 steps
        assert r["max_diff_state"] <= TOL, r["max_diff_state"]
        assert r["max_diff_metrics"] <= TOL, r["max_diff_metrics"]
        assert all(i["spec"] == "P()" and i["n_devices"] == 8 for i in r["shardings"])
        # the partitioner split the per-step compute: the forward matmul sees 16 / 8 = 2
        # examples per device, and an all-reduce sums the gradient
        assert "f32[2,1]" in r["dots"], r["dots"]
        assert r["collectives"]["all-reduce"] >= 1, r["collectives"]
    t = out["True"]
    # partitionable threefry draws the batch noise where it is used: no other collective
    assert t["collectives"]["all-gather"] == 0 and t["collectives"]["collective-permute"] == 0
    # data split over the devices instead of replicated: same numbers
    assert t["max_diff_split_data"] <= TOL
    # without the constraint on the minibatch every device computes the whole batch
    assert "f32[16,1]" in t["dots_unconstrained"], t["dots_unconstrained"]
    assert t["collectives_unconstrained"]["all-reduce"] == 0


def _checkpoint_round_trip_keeps_sharding(out: dict) -> None:
    assert out["epoch"] == 0
    assert out["max_diff"] == 0.0
    assert all(out["same_shardings"]) and all(out["key_dtypes_kept"])
    _all_split_8(out["shardings"])
    # restoring into a `like` on a 4-device mesh lays the same values out over 4 devices
    assert out["max_diff_4"] == 0.0
    for info in out["shardings_4"]:
        assert info["n_devices"] == 4 and info["shard_rows"] == [4], info


def _mesh_helpers_and_errors(out: dict) -> None:
    assert out["n_devices"] == 8
    # the largest divisor of the member count that is <= 8
    assert out["sizes"] == {"1": 1, "3": 3, "7": 7, "8": 8, "12": 6, "13": 1, "16": 8, "24": 8}
    assert out["sweep_axis"] == ["sweep"] and out["batch_axis"] == ["batch"]
    err = out["errors"]
    assert all(err.values()), err  # every bad input raised ConfigError
    assert "60 examples" in err["shard_batch_60"] and "drop 4 examples" in err["shard_batch_60"]
    assert "multiple of 8" in err["dp_batch_12"]
    assert "sweep_mesh(12)" in err["shard_sweep_12_on_8"]
    assert "data_mesh" in err["wrong_axis"]


def test_eight_fake_devices(tmp_path):
    """One worker process runs every multi-device case (one start-up and one JAX import
    instead of four): sharded sweep == vmapped sweep, data-parallel epoch == single-device
    epoch, orbax round trip of sharded state, mesh helpers and their errors."""
    out = _run("all", str(tmp_path / "ck"))
    _sharded_sweep_equals_vmapped_sweep_on_8_devices(out["sweep"])
    _data_parallel_epoch_equals_single_device_epoch(out["data_parallel"])
    _checkpoint_round_trip_keeps_sharding(out["checkpoint"])
    _mesh_helpers_and_errors(out["mesh"])


def _worker_module():
    spec = importlib.util.spec_from_file_location("_sharding_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_code_runs_on_one_device():
    w = _worker_module()
    assert jax.device_count() == 1
    data = w.make_data()
    epoch = w.make_epoch(w.step, w.BATCH)

    mesh = shard.sweep_mesh(w.N_MEMBERS)
    assert mesh.size == 1
    fn = shard.sharded_sweep_epoch(epoch, mesh)
    states = shard.shard_sweep(w.sweep_states(), mesh)
    got, metrics = w.run_sweep(fn, states, shard.replicate(data, mesh), w.sweep_roots(), 1)
    assert got.params["w"].shape == (w.N_MEMBERS, w.DIM) and metrics["loss"].shape == (16,)
    assert got.params["w"].sharding.device_set == {jax.devices()[0]}
    assert np.all(np.isfinite(np.asarray(got.params["w"])))
    assert len(np.unique(np.asarray(got.params["w"]), axis=0)) == w.N_MEMBERS

    dmesh = shard.data_mesh()
    root = jax.random.key(11)
    ref, _ = w.run_single(jax.jit(epoch), w.init_state(3), data, root, 1)
    fn = shard.data_parallel_epoch(w.step, w.BATCH, dmesh)
    got, _ = w.run_single(fn, w.init_state(3), shard.shard_batch(data, dmesh), root, 1)
    for a, b in zip(w.to_host(ref), w.to_host(got), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=TOL)
