"""Smoke test of experiments/benchmarks/nade.py (--quick): JSON lines with the protocol's keys,
the torch peer's log-likelihoods equal to egm's on the same parameters."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"
KEYS = {"bench", "egm", "peer", "peer_value", "ratio", "unit", "stat", "target", "target_met"}


def test_nade_benchmark_quick(capsys):
    pytest.importorskip("torch")
    sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location("egm_bench_nade", BENCH_DIR / "nade.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    returned = module.main(["--quick", "--repeats", "1", "--forms", "loop"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert lines == returned and len(lines) == 2
    assert {r["bench"].split("_784")[0] for r in lines} == {"nade_test_loglik", "nade_train_epoch"}
    for rec in lines:
        assert KEYS <= rec.keys() and rec["quick"] is True
        assert math.isfinite(rec["egm"]) and rec["egm"] > 0 and rec["peer_value"] > 0
        assert rec["torch_loglik_max_abs_diff"]["loop"] < 1e-3  # same model, float32
