"""Smoke tests of experiments/vae_mnist.py, draw_mnist.py and gumbel_vae_mnist.py (tiny configs),
including resume from checkpoints and config errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from egm.errors import ConfigError  # noqa: E402


def test_vae_mnist_tiny_writes_everything_and_resumes(tmp_path):
    import vae_mnist

    wd = tmp_path / "run"
    args = ["--config", "tiny", "--workdir", str(wd), "--models", "vae1", "--max_epochs", "1"]
    res = vae_mnist.main(args)
    assert (wd / "results.json").exists() and (wd / "config.json").exists()
    for name in ("vae1",):
        for f in ("metrics.jsonl", "results.json", "samples.png", "reconstructions.png"):
            assert (wd / name / f).exists(), (name, f)
        assert any((wd / name / "checkpoints").iterdir())
    rows = {r["model"]: r for r in res["models"]}
    for r in rows.values():
        # IS estimate is a (stochastic) lower bound that should beat the one-draw ELBO on average
        assert r["test_loglik_is"] < 0 and np.isfinite(r["test_loglik_is_stderr"])
        assert r["test_elbo"] < r["test_L50"] + 1.0
        assert r["epochs_trained"] == 1
    assert "dynamic binarization" in res["protocol"] and "IS" in res["evaluation"]
    assert json.loads((wd / "results.json").read_text())["models"][0]["model"] == "vae1"
    # extending the truncated run resumes after epoch 0 instead of starting afresh
    res2 = vae_mnist.main([*args[:-2], "--max_epochs", "2"])
    r2 = {r["model"]: r for r in res2["models"]}
    assert r2["vae1"]["epochs_trained"] == 2 and r2["vae1"]["epochs_this_invocation"] == 1
    epochs = [
        json.loads(x)["epoch"] for x in (wd / "vae1" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [0, 1]


def test_vae_mnist_config_errors(tmp_path):
    import vae_mnist

    with pytest.raises(ConfigError, match="vae<k> or iwae<k>"):
        vae_mnist.main(["--config", "tiny", "--models", "vae", "--workdir", str(tmp_path)])
    with pytest.raises(ConfigError, match="hidden"):
        vae_mnist.main(["--config", "tiny", "--hidden", "a,b", "--workdir", str(tmp_path)])
    with pytest.raises(ConfigError, match="source idx"):
        vae_mnist.main(["--config", "tiny", "--data_dir", str(tmp_path)])


def test_burda_schedule():
    import vae_mnist

    sched, total = vae_mnist.burda_schedule(3, steps_per_epoch=10, lr=1e-3)
    assert total == 1 + 3 + 9
    lrs = [float(sched(s)) for s in (0, 9, 10, 39, 40, 129)]
    r1, r2 = 1e-3 * 10 ** (-1 / 7), 1e-3 * 10 ** (-2 / 7)
    np.testing.assert_allclose(lrs, [1e-3, 1e-3, r1, r1, r2, r2], rtol=1e-6)


def test_draw_mnist_tiny_attention(tmp_path):
    import draw_mnist

    wd = tmp_path / "draw"
    res = draw_mnist.main(["--config", "tiny", "--workdir", str(wd), "--variants", "attention"])
    (r,) = res["models"]
    assert r["variant"] == "attention" and r["test_nll_bound"] > 0 and r["test_digits"] == 100
    for f in ("canvas.png", "samples.png", "metrics.jsonl", "results.json"):
        assert (wd / "attention" / f).exists()
    with pytest.raises(ConfigError, match="variants"):
        draw_mnist.main(["--config", "tiny", "--variants", "glimpse"])


@pytest.mark.slow
def test_draw_mnist_tiny_both_variants_and_resume(tmp_path):
    import draw_mnist

    wd = tmp_path / "draw"
    args = ["--config", "tiny", "--workdir", str(wd), "--epochs", "1"]
    res = draw_mnist.main(args)
    assert [r["variant"] for r in res["models"]] == ["attention", "no_attention"]
    for r in res["models"]:
        assert r["test_nll_bound"] > 0 and r["test_digits"] == 100
        for f in ("canvas.png", "samples.png", "metrics.jsonl", "results.json"):
            assert (wd / r["variant"] / f).exists()
    res2 = draw_mnist.main(args)  # finished run: resumes, trains nothing, same model
    for a, b in zip(res["models"], res2["models"], strict=True):
        assert b["epochs_this_invocation"] == 0
        assert b["test_nll_bound"] == pytest.approx(a["test_nll_bound"], rel=1e-5)


def test_gumbel_vae_mnist_tiny_straight_through(tmp_path):
    import gumbel_vae_mnist

    wd = tmp_path / "gumbel"
    res = gumbel_vae_mnist.main(
        ["--config", "tiny", "--workdir", str(wd), "--epochs", "1", "--estimators", "st_gumbel"]
    )
    (r,) = res["models"]
    assert r["test_discrete_elbo"] < 0 and r["test_loglik_is"] < 0 and r["final_tau"] == 1.0
    with pytest.raises(ConfigError, match="estimators"):
        gumbel_vae_mnist.main(["--config", "tiny", "--estimators", "vimco"])


@pytest.mark.slow
def test_gumbel_vae_mnist_tiny_all_estimators(tmp_path):
    import gumbel_vae_mnist

    wd = tmp_path / "gumbel"
    res = gumbel_vae_mnist.main(["--config", "tiny", "--workdir", str(wd), "--epochs", "1"])
    assert [r["estimator"] for r in res["models"]] == ["gumbel", "st_gumbel", "reinforce"]
    for r in res["models"]:
        assert r["test_discrete_elbo"] < 0 and r["test_loglik_is"] < 0
        assert 0.5 <= r["final_tau"] <= 1.0
        assert (wd / r["estimator"] / "samples.png").exists()
