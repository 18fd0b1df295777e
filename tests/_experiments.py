"""Experiments are scripts, not a package: load one by file name (no sys.path changes)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment(name: str):
    """The module ``experiments/<name>.py`` (cached, so its jitted functions are shared)."""
    key = f"egm_experiment_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def tiny(name: str, workdir, *, preset: str = "tiny", **overrides):
    """The experiment's ``tiny`` preset (or ``preset``) in ``workdir`` with ``overrides``;
    ``name`` may be ``"file:preset"``."""
    name, _, named = name.partition(":")
    mod = load_experiment(name)
    base = mod.PRESETS[named or preset]
    return dataclasses.replace(base, workdir=str(workdir), progress=False, **overrides)


@pytest.fixture
def experiment():
    return load_experiment
