"""Smoke test of experiments/benchmarks/vae_train.py (tiny sizes): JSON line with the protocol's
keys; the pythae peer (optional ``bench`` extra) is skipped when missing."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"
KEYS = {"bench", "egm", "peer", "peer_value", "ratio", "unit", "stat", "target", "target_met"}


def _module():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("egm_bench_vae_train", BENCH / "vae_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("peer", ["pythae", pytest.param("torch", marks=pytest.mark.slow)])
def test_vae_train_benchmark_quick(capsys, peer):
    pytest.importorskip("torch")
    if peer == "pythae":
        pytest.importorskip("pythae")
    lines = _module().main(["--quick", "--repeats", "1", "--peer", peer])
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert printed == lines and len(lines) == 1
    rec = lines[0]
    assert KEYS <= rec.keys() and rec["quick"] is True and rec["target_met"] is None
    assert rec["unit"] == "examples/s" and math.isfinite(rec["egm"]) and rec["egm"] > 0
    assert rec["peer_value"] > 0 and rec["ratio"] == pytest.approx(
        rec["egm"] / rec["peer_value"], rel=2e-2
    )
    assert ("pythae" in rec["peer"]) == (peer == "pythae")
