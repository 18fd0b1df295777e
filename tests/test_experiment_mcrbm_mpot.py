"""Smoke tests of the mcRBM and mPoT patch experiments (tiny configs): every output written,
a finished run resumes from its checkpoint to the same model, bad configs are rejected."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

OUTPUTS = (
    "config.json",
    "metrics.jsonl",
    "results.json",
    "samples.png",
    "cov_filters.png",
    "mean_filters.png",
    "whitening.npz",
    "params.npz",
)


def _check_run(module, wd, *, resume):
    res = module.main(["--config", "tiny", "--workdir", str(wd)])
    for name in OUTPUTS:
        assert (wd / name).exists(), name
    assert any((wd / "checkpoints").iterdir())
    den = res["denoising"]
    assert den["psnr_wiener_db"] > den["psnr_noisy_db"]
    # MAP descent starts at y and never raises its objective, so it cannot end far below y
    assert np.isfinite(den["psnr_model_db"]) and den["psnr_model_db"] > den["psnr_noisy_db"]
    lines = (wd / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 2]
    if not resume:
        return res
    # started again: restores the last checkpoint, trains nothing, same model and figures
    res2 = module.main(["--config", "tiny", "--workdir", str(wd)])
    assert len((wd / "metrics.jsonl").read_text().splitlines()) == 3
    assert res2["denoising"] == den
    assert res2["c_norm_final"] == res["c_norm_final"]
    return res


def test_mcrbm_patches_tiny_writes_everything_and_resumes(tmp_path):
    import mcrbm_patches

    wd = tmp_path / "run"
    res = _check_run(mcrbm_patches, wd, resume=True)
    assert res["hmc_step_size_median"] > 0
    assert 0.0 <= res["mean_cov_hidden_on_test"] <= 1.0
    from egm.errors import ConfigError

    with pytest.raises(ConfigError, match="different config"):  # no mixing of two runs
        mcrbm_patches.main(["--config", "tiny", "--workdir", str(wd), "--n_mean", "4"])


def test_mpot_patches_tiny_writes_everything(tmp_path):
    import mpot_patches

    # (resume is the shared machinery of experiments/_realvalued.fit, tested with the mcRBM)
    res = _check_run(mpot_patches, tmp_path / "run", resume=False)
    lo, hi = res["gamma_range"]
    assert 0.5 <= lo <= hi  # the tiny config's gamma_min


def test_experiments_reject_bad_config(tmp_path):
    import mcrbm_patches
    import mpot_patches

    from egm.errors import ConfigError

    with pytest.raises(ConfigError, match="normalize_input false"):
        mcrbm_patches.main(["--config", "tiny", "--sampler", "gibbs", "--workdir", str(tmp_path)])
    with pytest.raises(ConfigError, match="pooling"):
        mcrbm_patches.main(["--config", "tiny", "--pooling", "random", "--workdir", str(tmp_path)])
    with pytest.raises(ConfigError, match="gamma_init"):
        mpot_patches.main(["--config", "tiny", "--gamma_init", "0.1", "--workdir", str(tmp_path)])
    with pytest.raises(ConfigError, match="sampler"):
        mpot_patches.main(["--config", "tiny", "--sampler", "gibs", "--workdir", str(tmp_path)])
    with pytest.raises(ConfigError, match="c_norm"):
        mpot_patches.main(["--config", "tiny", "--c_norm", "-1", "--workdir", str(tmp_path)])
