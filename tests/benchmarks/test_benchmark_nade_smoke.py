"""Smoke test of experiments/benchmarks/nade.py (--quick): JSON lines with the protocol's keys,
the torch peer's log-likelihoods equal to egm's on the same parameters."""

import pytest


def test_nade_benchmark_quick(run_quick):
    pytest.importorskip("torch")
    lines = run_quick("nade", "--forms", "loop")
    assert len(lines) == 2
    assert {r["bench"].split("_784")[0] for r in lines} == {"nade_test_loglik", "nade_train_epoch"}
    for rec in lines:
        assert rec["peer_value"] > 0
        assert rec["torch_loglik_max_abs_diff"]["loop"] < 1e-3  # same model, float32
