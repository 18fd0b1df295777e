"""Smoke tests of the benchmark scripts (experiments/benchmarks): tiny sizes, JSON lines.

They check that each script's ``main`` runs end to end with ``--quick`` and prints
parseable JSON lines with the protocol's keys (DESIGN.md §4), not any timing.  The
peers thrml and scikit-learn are an optional extra (``.[bench]``): their tests skip
when the package is missing; the egm-only paths run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"
KEYS = {"bench", "egm", "peer", "peer_value", "ratio", "unit", "stat", "target", "target_met"}


def _load(name: str):
    """Import ``experiments/benchmarks/<name>.py`` under a private module name."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    mod_name = f"egm_bench_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


def _run(name: str, capsys, *args: str) -> list[dict]:
    returned = _load(name).main(["--quick", "--repeats", "1", *args])
    out = capsys.readouterr().out
    lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    assert lines, f"{name} printed no JSON lines"
    assert lines == returned
    for rec in lines:
        assert KEYS <= rec.keys(), f"missing keys {KEYS - rec.keys()} in {rec}"
        assert rec["quick"] is True and rec["target_met"] is None
        assert math.isfinite(rec["egm"]) and rec["egm"] > 0
        if rec["peer_value"] is not None:
            assert rec["peer_value"] > 0 and rec["ratio"] > 0
    return lines


def test_gibbs_dense_peer(capsys):
    (rec,) = _run("gibbs_rbm", capsys, "--peers", "dense")
    assert rec["peer"] == "dense" and rec["unit"] == "chain-sweeps/s"
    assert rec["bench"].startswith("gibbs_rbm_")
    assert rec["egm_matmuls_in_hlo"] == 2  # one sweep: v·W and h·Wᵀ


def test_gibbs_thrml_peer(capsys):
    pytest.importorskip("thrml")
    (rec,) = _run("gibbs_rbm", capsys, "--peers", "thrml", "--n_chains", "8")
    assert rec["peer"] == "thrml" and rec["peer_value"] > 0


def test_pcd_epoch_egm_only(capsys):
    (rec,) = _run("pcd_epoch", capsys, "--no_peer", "--n_examples", "100", "--variants", "centered")
    assert rec["bench"].endswith("_centered")
    assert rec["peer_value"] is None and rec["unit"] == "s" and rec["skipped"] == "--no_peer"


def test_pcd_epoch_sklearn_peer(capsys):
    pytest.importorskip("sklearn")
    (rec,) = _run("pcd_epoch", capsys, "--n_examples", "100", "--variants", "uncentered")
    assert not rec["bench"].endswith("_centered")
    assert rec["peer"] == "sklearn.BernoulliRBM" and rec["peer_value"] > 0
    assert rec["sklearn_dtype"] == "float32" and rec["egm_matmuls_in_hlo"] >= 4


def test_ais(capsys):
    (rec,) = _run("ais_rbm", capsys, "--n_temps", "20")
    assert rec["unit"] == "s" and rec["peer_value"] > 0
    assert rec["egm_matmuls_in_hlo"] < rec["peer_matmuls_in_hlo"]
    # the same estimator on the same RBM: the two log Z estimates agree
    tol = 6 * (rec["egm_log_z_se"] + rec["peer_log_z_se"]) + 0.05
    assert abs(rec["egm_log_z"] - rec["peer_log_z"]) < tol


def test_rng_cpu(capsys):
    (rec,) = _run("rng_cpu", capsys)
    assert rec["unit"] == "uniforms/s" and rec["egm"] > 0 and rec["peer_value"] > 0


def test_gibbs_dbm(capsys):
    gibbs, mf = _run("gibbs_dbm", capsys)
    assert gibbs["unit"] == "chain-sweeps/s" and gibbs["peer"] == "dense"
    assert mf["unit"].startswith("mean-field iterations/s")


def test_dbm_dense_references_compute_the_same_thing():
    """The hand-written reference sweeps are what egm computes: same mean-field fixed-length
    iteration (to float32 round-off)."""
    import jax
    import numpy as np

    from egm.energies import dbm

    b = _load("gibbs_dbm")
    p = b.synthetic_dbm((12, 8, 6), 0.3, 0)
    v = jax.random.bernoulli(jax.random.key(0), 0.4, (5, 12)).astype("float32")
    ref = b.dense_mean_field(p, v, 4)
    got = jax.vmap(lambda x: dbm.mean_field_unrolled(p, x, 4))(v)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(r, g, rtol=1e-5, atol=1e-6)


def test_run_all_lists_every_script():
    run_all = _load("run_all")
    scripts = {p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_")}
    assert set(run_all.SCRIPTS) == scripts - {"run_all"}
