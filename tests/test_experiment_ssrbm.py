"""Smoke tests of experiments/ssrbm_patches.py (tiny config): outputs, resume after a kill,
config errors."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

# the patches come from scikit-image's photos: the `test` extra installs it (egm[patches])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import ssrbm_patches

    wd = tmp_path_factory.mktemp("ssrbm") / "run"
    return wd, ssrbm_patches.main(["--config", "tiny", "--workdir", str(wd)])


def test_ssrbm_patches_tiny_writes_everything(tiny_run):
    from egm import data

    wd, res = tiny_run
    for name in ("config.json", "metrics.jsonl", "results.json", "samples.png", "filters.png"):
        assert (wd / name).exists(), name
    w = data.load_whitening(wd / "whitening.npz")
    assert np.asarray(w.forward).shape == (64, 64)
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2]
    assert all(np.isfinite(r["free_energy_gap"]) and r["properness_bound"] < 1 for r in lines)
    saved = json.loads((wd / "results.json").read_text())
    for name in ("psnr_model_db", "psnr_model_mmse_db", "psnr_wiener_db"):
        assert saved["denoising"][name] == pytest.approx(res["denoising"][name])
    assert saved["alpha_range"] == pytest.approx(res["alpha_range"])
    den = res["denoising"]
    assert den["n_patches"] == 50
    # every denoiser must beat the noisy input (by 4-5 dB here: measured in the tiny run)
    for name in ("psnr_wiener_db", "psnr_model_db", "psnr_model_mmse_db"):
        assert den[name] > den["psnr_noisy_db"] + 2, name
    assert res["properness_bound"] < 1 and 0 < res["spike_rate_test"] < 1


def test_ssrbm_patches_resumes_after_a_kill(tiny_run, tmp_path):
    """Drop the last checkpoint of a finished run (as if killed during epoch 2): the same
    command resumes after epoch 1, trains epoch 2 again and ends with the same model."""
    import ssrbm_patches

    wd0, res0 = tiny_run
    wd = tmp_path / "run"
    shutil.copytree(wd0, wd)
    shutil.rmtree(wd / "checkpoints" / "2")
    res = ssrbm_patches.main(["--config", "tiny", "--workdir", str(wd)])
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    lines0 = [json.loads(x) for x in (wd0 / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2]
    for key in ("free_energy_gap", "properness_bound", "spike_rate_test"):
        assert lines[2][key] == pytest.approx(lines0[2][key], rel=1e-5)
    assert res["alpha_range"] == pytest.approx(res0["alpha_range"], rel=1e-6)
    for name in ("psnr_model_db", "psnr_model_mmse_db"):
        assert res["denoising"][name] == pytest.approx(res0["denoising"][name], abs=1e-4)


def test_ssrbm_patches_rejects_bad_config(tmp_path):
    import ssrbm_patches

    from egm.errors import ConfigError

    for args, match in (
        (["--proper_margin", "0"], "proper_margin"),
        (["--n_hidden", "0"], "n_hidden"),
        (["--whitening", "none"], "whitening"),
        (["--alpha_init", "-1"], "alpha_init"),
        (["--n_hiden", "5"], "unknown config field"),
    ):
        with pytest.raises(ConfigError, match=match):
            ssrbm_patches.main(["--config", "tiny", *args, "--workdir", str(tmp_path)])
    assert not any(tmp_path.iterdir())  # rejected before anything was written


def test_gibbs_denoise_is_the_exact_posterior_mean_of_a_gaussian_prior():
    """With every spike off (b = -40) the ssRBM prior on the whitened patch is N(0, Λ⁻¹), so
    the posterior given y = m + zB + σε is Gaussian with precision P = Λ + BBᵀ/σ² and mean
    P⁻¹B(y - m)/σ²; the sampler's z-draws are then exact and independent, and the
    average of T draws is within 5 CLT standard errors (posterior sd of x / sqrt(T)) of the
    exact posterior mean in pixel space."""
    import jax
    import jax.numpy as jnp
    import ssrbm_patches
    from _stats import Z

    from egm import data
    from egm.energies import ssrbm

    rng = np.random.default_rng(0)
    x = rng.random((300, 9)).astype(np.float32)
    w = data.fit_whitening(x)
    p = ssrbm.init(jax.random.key(0), 9, 5, w_scale=0.5)
    p = p._replace(b=jnp.full(5, -40.0), log_lambda=jnp.linspace(-0.5, 0.5, 9))
    y = x[:4] + 0.1 * rng.standard_normal((4, 9)).astype(np.float32)
    T, burn = 3000, 10
    got = ssrbm_patches.gibbs_denoise(jax.random.key(1), p, y, 0.1, w, n_sweeps=T, burn_in=burn)
    B = np.asarray(w.inverse, np.float64)
    P = np.diag(np.exp(np.asarray(p.log_lambda, np.float64))) + B @ B.T / 0.01
    cov = np.linalg.inv(P)
    want = np.asarray(w.mean) + (np.linalg.solve(P, B @ (y - np.asarray(w.mean)).T / 0.01)).T @ B
    se = np.sqrt(np.diag(B.T @ cov @ B)) / np.sqrt(T - burn)
    assert np.max(np.abs(got - want) / se) < Z
    # power: the noisy input itself is far outside that tolerance (measured: 37 se)
    assert np.max(np.abs(y - want) / se) > 4 * Z
