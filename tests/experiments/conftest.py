"""Fixtures for the experiment tests; the loaders live in tests/_experiments.py (tests/ is on
sys.path through tests/conftest.py), so test files import them as ``from _experiments import
load_experiment, tiny``."""

from _experiments import experiment, load_experiment, tiny  # noqa: F401
