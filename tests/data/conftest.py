"""Fixtures of the data-layer tests: the shared MNIST folder and a clean environment."""

from __future__ import annotations

from pathlib import Path

import pytest

# The repository sits beside shared/ (here /work/main and /work/shared; CI clones the
# repository elsewhere with a copy of shared/ beside it).
MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


@pytest.fixture
def mnist_dir() -> Path:
    """The folder of the four standard MNIST IDX files; skips the test if it is absent."""
    if not MNIST_DIR.is_dir():
        pytest.skip(f"shared MNIST data not found at {MNIST_DIR} (expected beside the repository)")
    return MNIST_DIR


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see no EGM_DATA_DIR from the caller's shell, and an empty tfds data folder,
    so "auto" never finds data by accident."""
    monkeypatch.delenv("EGM_DATA_DIR", raising=False)
    empty = tmp_path / "tfds_empty"
    empty.mkdir()
    monkeypatch.setenv("TFDS_DATA_DIR", str(empty))
