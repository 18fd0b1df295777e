"""Smoke tests of the GRBM experiments (tiny configs): outputs, resume, figures' sanity, errors."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

# the patches come from scikit-image's photos: the `test` extra installs it (egm[patches])


def test_grbm_patches_tiny_writes_everything_and_resumes(tmp_path):
    import grbm_patches

    wd = tmp_path / "run"
    res = grbm_patches.main(["--config", "tiny", "--workdir", str(wd)])
    for name in (
        "config.json",
        "metrics.jsonl",
        "results.json",
        "samples.png",
        "filters.png",
        "whitening.npz",
    ):
        assert (wd / name).exists(), name
    assert np.isfinite(res["test_loglik_nats"]) and np.isfinite(res["gaussian_test_loglik_nats"])
    lo, hi = res["variance_range"]
    assert 0.01 * (1 - 1e-5) <= lo <= hi <= 10.0 * (1 + 1e-5)  # the clip of the tiny config
    den = res["denoising"]
    assert den["psnr_wiener_db"] > den["psnr_noisy_db"]
    assert np.isfinite(den["psnr_model_db"])
    lines = (wd / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 2]
    res2 = grbm_patches.main(["--config", "tiny", "--workdir", str(wd)])
    assert res2["log_z"] == pytest.approx(res["log_z"], abs=1e-4)  # same model, same AIS key
    assert len((wd / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("sampler", ["gibbs_langevin", "hmc"])
def test_grbm_patches_other_samplers(tmp_path, sampler):
    import grbm_patches

    res = grbm_patches.main(
        ["--config", "tiny", "--epochs", "1", "--sampler", sampler, "--workdir", str(tmp_path)]
    )
    assert np.isfinite(res["test_loglik_nats"])


def test_grbm_mnist_tiny_reports_bits_per_dim(tmp_path):
    import grbm_mnist

    res = grbm_mnist.main(["--config", "tiny", "--workdir", str(tmp_path)])
    assert "embedded" in res["data"] and "dequantised" in res["data"]
    # E_u log p(x + u) <= log P(x) <= 0 for a density of dequantised pixels (Jensen), so the
    # bits per pixel are positive; 200 test images x 784 pixels keep the u-noise far below
    assert res["gaussian_test_bits_per_dim"] > 0 and res["test_bits_per_dim"] > 0
    assert np.isfinite(res["test_bits_per_dim"])


def test_grbm_experiments_reject_bad_config(tmp_path):
    import grbm_mnist
    import grbm_patches

    from egm.errors import ConfigError

    with pytest.raises(ConfigError, match="sampler"):
        grbm_patches.main(["--config", "tiny", "--sampler", "gibs", "--workdir", str(tmp_path)])
    with pytest.raises(ConfigError, match="min_var"):
        grbm_patches.main(["--config", "tiny", "--min_var", "5", "--max_var", "1"])
    with pytest.raises(ConfigError, match="source"):
        grbm_mnist.main(["--config", "tiny", "--source", "skimage"])
    with pytest.raises(ConfigError, match="n_train"):
        grbm_mnist.main(["--config", "tiny", "--n_train", "100000", "--workdir", str(tmp_path)])
