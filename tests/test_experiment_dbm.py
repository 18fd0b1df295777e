"""Smoke tests of the DBM experiments (tiny configs, seconds): outputs, resume, bad config."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from egm.errors import ConfigError  # noqa: E402


def test_dbm_mnist_pretrained_tiny_writes_everything_and_resumes(tmp_path):
    import dbm_mnist

    wd = tmp_path / "run"
    res = dbm_mnist.main(["--config", "tiny", "--workdir", str(wd)])
    for name in ("config.json", "metrics.jsonl", "results.json", "samples.png", "filters.png"):
        assert (wd / name).exists(), name
    assert any((wd / "checkpoints").iterdir()) and any((wd / "pretrain").iterdir())
    assert res["test_loglik_bound_nats"] < 0 and np.isfinite(res["log_z"])
    assert 0.0 <= res["test_error"] <= 1.0 and res["mean_field_residual_max"] <= 1e-5
    phases = [json.loads(x)["phase"] for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert phases.count("joint") == 2 and "pretrain_layer1" in phases
    # the same command again restores the pretrained layers and the joint checkpoints
    res2 = dbm_mnist.main(["--config", "tiny", "--workdir", str(wd)])
    assert res2["log_z"] == pytest.approx(res["log_z"], abs=1e-4)
    assert res2["pretrain_seconds"] < res["pretrain_seconds"]


def test_dbm_mnist_centered_tiny(tmp_path):
    import dbm_mnist

    res = dbm_mnist.main(
        ["--config", "tiny", "--variant", "centered", "--epochs", "1", "--workdir", str(tmp_path)]
    )
    assert "centered" in res["model"] and res["pretrain_seconds"] == 0.0
    assert res["test_loglik_bound_nats"] < 0


def test_dbm_mnist_rejects_bad_config(tmp_path):
    import dbm_mnist

    with pytest.raises(ConfigError, match="variant"):
        dbm_mnist.main(["--config", "tiny", "--variant", "deep", "--workdir", str(tmp_path)])
    with pytest.raises(ConfigError, match="mean_field_iters"):
        dbm_mnist.main(["--config", "tiny", "--mean_field_iters", "0", "--workdir", str(tmp_path)])


def test_mpdbm_mnist_tiny(tmp_path):
    import mpdbm_mnist

    res = mpdbm_mnist.main(["--config", "tiny", "--workdir", str(tmp_path)])
    assert (tmp_path / "fill_in.png").exists() and (tmp_path / "results.json").exists()
    assert 0.0 <= res["test_error"] <= 1.0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]
    assert all(np.isfinite(json.loads(x)["loss"]) for x in lines)
    with pytest.raises(ConfigError, match="hide_prob"):
        mpdbm_mnist.main(["--config", "tiny", "--hide_prob", "1.5", "--workdir", str(tmp_path)])
