"""Smoke test of experiments/nade_mnist.py (tiny config, embedded subset): every output,
exact log-likelihoods that beat the independent-pixel model, resume, and config errors."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))


def test_nade_mnist_tiny_writes_everything_and_resumes(tmp_path):
    import nade_mnist

    wd = tmp_path / "run"
    res = nade_mnist.main(["--config", "tiny", "--workdir", str(wd)])
    names = ["config.json", "metrics.jsonl", "results.json", "inpainting.png"]
    names += [f"samples_{m}.png" for m in nade_mnist.MODELS]
    for name in names:
        assert (wd / name).exists(), name
    assert "fixed binarization" in res["protocol"] and "embedded" in res["data"]
    assert set(res["models"]) == set(nade_mnist.MODELS)
    # independent-pixel (base-rate) model on the same test digits: a floor every model must beat
    import egm.data as data

    x = data.binarize_fixed(data.load_mnist("train", source="embedded").x, 0)[:500]
    xt = data.binarize_fixed(data.load_mnist("test", source="embedded").x, 2)[:100]
    q = np.clip(x.mean(0), 1e-3, 1 - 1e-3)
    base = float(np.mean(xt @ np.log(q) + (1 - xt) @ np.log(1 - q)))
    for name, r in res["models"].items():
        assert base - 5 < r["test_loglik_nats"] < 0, (name, r["test_loglik_nats"], base)
        assert r["paper"] < 0 and r["seconds_per_epoch"] > 0
    assert res["models"]["eonade"]["ensemble_curve"].keys() == {"1", "2"}
    assert res["models"]["made"]["test_loglik_nats"] >= min(
        res["models"]["made"]["test_loglik_1mask_nats"],
        res["models"]["made"]["test_loglik_mean_single_mask_nats"],
    )
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["model"], r["epoch"]) for r in lines) == sorted(
        (m, e) for m in nade_mnist.MODELS for e in range(2)
    )
    # the same command again (one model) resumes from its checkpoint: no training, same model
    res2 = nade_mnist.main(["--config", "tiny", "--workdir", str(wd), "--models", "made"])
    assert res2["models"]["made"]["epochs_this_run"] == 0
    assert res2["models"]["made"]["test_loglik_nats"] == pytest.approx(
        res["models"]["made"]["test_loglik_nats"], abs=1e-4
    )


def test_nade_mnist_rejects_bad_config(tmp_path):
    import nade_mnist

    from egm.errors import ConfigError

    with pytest.raises(ConfigError, match="models"):
        nade_mnist.main(["--config", "tiny", "--models", "nade,pixelcnn"])
    with pytest.raises(ConfigError, match="eonade_hidden"):
        nade_mnist.main(["--config", "tiny", "--eonade_hidden", "500,x"])
    with pytest.raises(ConfigError, match="different config"):
        wd = str(tmp_path / "r")
        nade_mnist.main(
            ["--config", "tiny", "--workdir", wd, "--models", "made", "--made_epochs", "1"]
        )
        nade_mnist.main(
            ["--config", "tiny", "--workdir", wd, "--models", "made", "--made_hidden", "8"]
        )
