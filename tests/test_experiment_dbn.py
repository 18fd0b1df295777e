"""Smoke test of experiments/dbn_mnist.py (tiny config): outputs, results, and resume."""

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))


def test_dbn_mnist_tiny_writes_everything_and_resumes(tmp_path):
    """Run the tiny config; then simulate a run killed during layer 1's second epoch and
    before fine-tuning (delete those checkpoints) and start it again: it restores layer 0,
    resumes layer 1 from its epoch-0 checkpoint, fine-tunes again, and reproduces the same
    bound and test error (fold_in keys per layer and epoch)."""
    import dbn_mnist

    wd = tmp_path / "run"
    args = ["--config", "tiny", "--workdir", str(wd)]
    res = dbn_mnist.main(args)
    for name in ("config.json", "metrics.jsonl", "results.json", "samples.png", "filters.png"):
        assert (wd / name).exists(), name
    on_disk = json.loads((wd / "results.json").read_text())
    assert on_disk["test_loglik_lower_bound_nats"] == pytest.approx(
        res["test_loglik_lower_bound_nats"]
    )
    assert res["test_loglik_lower_bound_nats"] < 0 and res["test_loglik_lower_bound_se"] > 0
    assert 0.0 <= res["test_error"] <= 1.0 and res["model"] == "DBN 784-16-32"
    assert "binarization" in res["protocol"] and "AIS" in res["lower_bound"]
    recs = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r.get("layer"), r["epoch"]) for r in recs] == [
        ("pretrain", 0, 0), ("pretrain", 0, 1), ("pretrain", 1, 0), ("pretrain", 1, 1),
        ("finetune", None, 0), ("finetune", None, 1),
    ]  # fmt: skip

    layer1 = wd / "checkpoints" / "pretrain" / "layer_1" / "checkpoints"
    shutil.rmtree(layer1 / "1")
    shutil.rmtree(wd / "checkpoints" / "finetune")
    res2 = dbn_mnist.main(args)
    for key in ("test_loglik_lower_bound_nats", "log_z_top", "test_error", "valid_error"):
        assert res2[key] == pytest.approx(res[key], abs=1e-6), key


def test_dbn_mnist_rejects_bad_config(tmp_path):
    import dbn_mnist

    from egm.errors import ConfigError

    with pytest.raises(ConfigError, match="one entry per layer"):
        dbn_mnist.main(["--config", "tiny", "--hidden", "8,8", "--layer_epochs", "1"])
    with pytest.raises(ConfigError, match="binarization"):
        dbn_mnist.main(["--config", "tiny", "--binarization", "dynamic"])
    with pytest.raises(ConfigError, match="comma-separated"):
        dbn_mnist.main(["--config", "tiny", "--hidden", "8,x", "--layer_epochs", "1,1"])
    # a work dir holding checkpoints of another config is refused before any training
    wd = tmp_path / "w"
    (wd / "checkpoints").mkdir(parents=True)
    other = dbn_mnist.PRESETS["tiny"].__class__(**{**vars(dbn_mnist.PRESETS["tiny"]),
                                                   "ft_epochs": 7})  # fmt: skip
    (wd / "config.json").write_text(json.dumps(vars(other)))
    with pytest.raises(ConfigError, match="different config"):
        dbn_mnist.main(["--config", "tiny", "--workdir", str(wd)])
