"""Smoke tests of the benchmark scripts (experiments/benchmarks): tiny sizes, JSON lines.

They check that each script's ``main`` runs end to end with ``--quick`` and prints
parseable JSON lines with the protocol's keys (DESIGN.md §4, the ``run_quick`` fixture of
conftest.py) and the GEMM bound of the products egm's program contains, not any timing.  The
peers thrml and scikit-learn are an optional extra (``.[bench]``): their tests skip
when the package is missing; the egm-only paths run everywhere.
"""

from __future__ import annotations

import pytest


def _check_gemm_bound(rec: dict, n_products: int) -> None:
    """The GEMM bound timed the egm program's products (all of them, nothing hoisted out)."""
    assert rec["gemm_bound_products_in_hlo"] == n_products
    assert rec["gemm_bound"].startswith(f"{n_products} products per iteration")
    assert 0 < rec["gemm_bound_fraction"] and rec["gemm_bound_s"] > 0


@pytest.mark.slow  # the benchmark scripts' quick runs: one per family stays in the default suite
def test_gibbs_dense_peer(run_quick):
    (rec,) = run_quick("gibbs_rbm", "--peers", "dense")
    assert rec["peer"] == "dense" and rec["unit"] == "chain-sweeps/s"
    assert rec["bench"].startswith("gibbs_rbm_")
    assert rec["egm_matmuls_in_hlo"] == 2  # one sweep: v·W and h·Wᵀ
    _check_gemm_bound(rec, 2)


def test_gibbs_thrml_peer(run_quick):
    pytest.importorskip("thrml")
    (rec,) = run_quick("gibbs_rbm", "--peers", "thrml", "--n_chains", "8")
    assert rec["peer"] == "thrml" and rec["peer_value"] > 0


@pytest.mark.slow  # as above
def test_pcd_epoch_egm_only(run_quick):
    (rec,) = run_quick("pcd_epoch", "--no_peer", "--n_examples", "100", "--variants", "centered")
    assert rec["bench"].endswith("_centered")
    assert rec["peer_value"] is None and rec["unit"] == "s" and rec["skipped"] == "--no_peer"
    _check_gemm_bound(rec, rec["egm_matmuls_in_hlo"])


def test_pcd_epoch_sklearn_peer(run_quick):
    pytest.importorskip("sklearn")
    (rec,) = run_quick("pcd_epoch", "--n_examples", "100", "--variants", "uncentered")
    assert not rec["bench"].endswith("_centered")
    assert rec["peer"] == "sklearn.BernoulliRBM" and rec["peer_value"] > 0
    assert rec["sklearn_dtype"] == "float32" and rec["egm_matmuls_in_hlo"] >= 4
    _check_gemm_bound(rec, rec["egm_matmuls_in_hlo"])


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
def test_ais(run_quick):
    (rec,) = run_quick("ais_rbm", "--n_temps", "20")
    assert rec["unit"] == "s" and rec["peer_value"] > 0
    assert rec["egm_matmuls_in_hlo"] < rec["peer_matmuls_in_hlo"]
    _check_gemm_bound(rec, 2)
    # the same estimator on the same RBM: the two log Z estimates agree
    tol = 6 * (rec["egm_log_z_se"] + rec["peer_log_z_se"]) + 0.05
    assert abs(rec["egm_log_z"] - rec["peer_log_z"]) < tol


def test_rng_cpu(run_quick):
    (rec,) = run_quick("rng_cpu")
    assert rec["unit"] == "uniforms/s" and rec["egm"] > 0 and rec["peer_value"] > 0


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
def test_gibbs_dbm(run_quick):
    gibbs, mf = run_quick("gibbs_dbm")
    assert gibbs["unit"] == "chain-sweeps/s" and gibbs["peer"] == "dense"
    assert mf["unit"].startswith("mean-field iterations/s")


def test_dbm_dense_references_compute_the_same_thing(load_bench):
    """The hand-written reference sweeps are what egm computes: same mean-field fixed-length
    iteration (to float32 round-off)."""
    import jax
    import numpy as np

    from egm.energies import dbm

    b = load_bench("gibbs_dbm")
    p = b.synthetic_dbm((12, 8, 6), 0.3, 0)
    v = jax.random.bernoulli(jax.random.key(0), 0.4, (5, 12)).astype("float32")
    ref = b.dense_mean_field(p, v, 4)
    got = jax.vmap(lambda x: dbm.mean_field_unrolled(p, x, 4))(v)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(r, g, rtol=1e-5, atol=1e-6)


def test_run_all_lists_every_script(load_bench, bench_dir):
    run_all = load_bench("run_all")
    scripts = {p.stem for p in bench_dir.glob("*.py") if not p.stem.startswith("_")}
    assert set(run_all.SCRIPTS) == scripts - {"run_all"}
