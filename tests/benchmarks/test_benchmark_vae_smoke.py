"""Smoke test of experiments/benchmarks/vae_train.py (tiny sizes): JSON line with the protocol's
keys; the pythae peer (optional ``bench`` extra) is skipped when missing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("peer", ["pythae", pytest.param("torch", marks=pytest.mark.slow)])
def test_vae_train_benchmark_quick(run_quick, peer):
    pytest.importorskip("torch")
    if peer == "pythae":
        pytest.importorskip("pythae")
    (rec,) = run_quick("vae_train", "--peer", peer)
    assert rec["unit"] == "examples/s"
    assert rec["peer_value"] > 0 and rec["ratio"] == pytest.approx(
        rec["egm"] / rec["peer_value"], rel=2e-2
    )
    assert ("pythae" in rec["peer"]) == (peer == "pythae")
