"""Fixtures of the benchmark smoke tests: import a script of experiments/benchmarks and run
its ``main`` at ``--quick`` sizes, checking the JSON lines' protocol keys (DESIGN.md §4)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "experiments" / "benchmarks"
KEYS = {"bench", "egm", "peer", "peer_value", "ratio", "unit", "stat", "target", "target_met"}


def _load(name: str):
    """Import ``experiments/benchmarks/<name>.py`` once, under a private module name."""
    # the scripts import their _bench and _peers: experiments/benchmarks is on pytest's
    # pythonpath (pyproject.toml), as a script's own folder is when it runs
    mod_name = f"egm_bench_{name}"
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, BENCH_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    return sys.modules[mod_name]


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    return BENCH_DIR


@pytest.fixture(scope="session")
def load_bench():
    """``load_bench(name)``: the module of ``experiments/benchmarks/<name>.py``."""
    return _load


@pytest.fixture
def run_quick(capsys):
    """``run_quick(name, *args)``: ``main(["--quick", "--repeats", "1", *args])``; returns its
    JSON lines after checking that they are what it printed and carry the protocol's keys."""

    def run(name: str, *args: str) -> list[dict]:
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

    return run
