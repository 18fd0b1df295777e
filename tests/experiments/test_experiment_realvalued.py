"""The real-valued experiments (GRBM on patches and MNIST, mcRBM, mPoT, ssRBM) through the run
driver: outputs, records, resume, a seed sweep, bad input; and the ssRBM posterior-mean
denoiser (egm.eval.denoise.ssrbm_posterior_mean) against the exact Gaussian case.

The patches come from scikit-image's photos: the ``test`` extra installs it (egm[patches]).
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from _experiments import load_experiment, tiny

from egm import data, run
from egm.errors import ConfigError

GRBM = load_experiment("grbm_patches")
FACTORED_OUTPUTS = ("samples.png", "cov_filters.png", "mean_filters.png", "params.npz")


def _epochs(wd) -> list[int]:
    return [json.loads(x)["epoch"] for x in (wd / "metrics.jsonl").read_text().splitlines()]


def _denoising_sane(res: dict) -> None:
    assert res["psnr_wiener_db"] > res["psnr_noisy_db"]
    # MAP descent starts at y and never raises its objective, so it cannot end far below y
    assert np.isfinite(res["psnr_model_db"]) and res["psnr_model_db"] > res["psnr_noisy_db"]


def test_grbm_patches_tiny_writes_everything_and_resumes(tmp_path):
    wd = tmp_path / "run"
    cfg = tiny("grbm_patches", wd)
    res = run.run(GRBM.EXPERIMENT, cfg)
    for name in ("config.json", "metrics.jsonl", "results.json", "samples.png", "filters.png"):
        assert (wd / name).exists(), name
    w = data.load_whitening(wd / "whitening.npz")
    assert np.asarray(w.forward).shape == (64, 64)
    for key in ("test_loglik", "train_loglik"):
        rec = res[key]
        assert rec["method"] == "ais" and rec["bound"] == "upper" and rec["unit"] == "nats"
        assert rec["counts"]["chains"] == cfg.ais_chains and np.isfinite(rec["value"])
    gauss = res["gaussian_test_loglik"]
    assert gauss["method"] == "exact" and gauss["split"] == "test" and np.isfinite(gauss["value"])
    assert "patches" in res["test_loglik"]["dataset"]
    log_det = float(np.linalg.slogdet(np.asarray(w.forward, np.float64))[1])
    assert res["test_loglik_pixel_nats"] == pytest.approx(res["test_loglik"]["value"] + log_det)
    lo, hi = res["variance_range"]
    assert 0.01 * (1 - 1e-5) <= lo <= hi <= 10.0 * (1 + 1e-5)  # the clip of the tiny config
    _denoising_sane(res)
    assert _epochs(wd) == [0, 1, 2]
    res2 = run.run(GRBM.EXPERIMENT, cfg)  # finds the finished checkpoint: same model and AIS key
    assert res2["log_z"] == pytest.approx(res["log_z"], abs=1e-4)
    assert _epochs(wd) == [0, 1, 2]


def test_grbm_seed_sweep_equals_separate_runs(tmp_path):
    """A vmapped sweep over 2 seeds trains the same models as 2 separate runs (the members
    share the data: ``data_seed``).  Tolerance: vmap batches the same float32 ops (batched
    GEMMs may sum in another order); measured max |difference| of log Z and of the test
    log-likelihood 4e-6 nats (PSNR 2e-7 dB) after 2 epochs; 1e-4 leaves room while the other
    seed moves them by 0.025-0.1 (measured; checked below to exceed 1e-2)."""
    cfg = tiny("grbm_patches", tmp_path / "sweep", epochs=2, ais_temps=100, denoise_n=20)
    res = run.run(GRBM.EXPERIMENT, cfg, {"seed": (0, 1)})
    assert len(res["members"]) == 2 and res["summary"]["test_loglik"]["n"] == 2
    alone = [
        run.run(GRBM.EXPERIMENT, dataclasses.replace(cfg, seed=i, workdir=str(tmp_path / f"m{i}")))
        for i in (0, 1)
    ]
    for m, a in zip(res["members"], alone, strict=True):
        assert m["log_z"] == pytest.approx(a["log_z"], abs=1e-4)
        assert m["test_loglik"]["value"] == pytest.approx(a["test_loglik"]["value"], abs=1e-4)
        assert m["psnr_model_db"] == pytest.approx(a["psnr_model_db"], abs=1e-4)
    # the test can tell the seeds apart
    assert abs(alone[0]["test_loglik"]["value"] - alone[1]["test_loglik"]["value"]) > 1e-2


@pytest.mark.parametrize("sampler", ["gibbs_langevin", "hmc"])
def test_grbm_patches_other_samplers(tmp_path, sampler):
    cfg = tiny("grbm_patches", tmp_path, epochs=1, sampler=sampler, ais_temps=50, denoise_n=10)
    res = run.run(GRBM.EXPERIMENT, cfg)
    assert np.isfinite(res["test_loglik"]["value"])


def test_grbm_mnist_tiny_reports_bits_per_dim(tmp_path):
    res = run.run(GRBM.EXPERIMENT, tiny("grbm_patches:mnist_tiny", tmp_path))
    assert "embedded" in res["data"] and "dequantised" in res["data"]
    bpd, gauss = res["test_bits_per_dim"], res["gaussian_test_bits_per_dim"]
    assert bpd["unit"] == "bits/dim" and bpd["bound"] == "lower"  # optimistic nats -> fewer bits
    # E_u log p(x + u) <= log P(x) <= 0 for a density of dequantised pixels (Jensen), so the
    # bits per pixel are positive; 200 test images x 784 pixels keep the u-noise far below
    assert gauss["value"] > 0 and bpd["value"] > 0 and np.isfinite(bpd["value"])
    assert (tmp_path / "whitening.npz").exists()


def test_mcrbm_patches_tiny_writes_everything_and_resumes(tmp_path):
    mod, wd = load_experiment("mcrbm_patches"), tmp_path / "run"
    cfg = tiny("mcrbm_patches", wd)
    res = run.run(mod.EXPERIMENT, cfg)
    for name in (*FACTORED_OUTPUTS, "whitening.npz", "results.json"):
        assert (wd / name).exists(), name
    _denoising_sane(res)
    assert res["hmc_step_size_median"] > 0 and 0.0 <= res["mean_cov_hidden_on_test"] <= 1.0
    recs = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [0, 1, 2]
    assert "psnr_valid_model_db" in recs[1] and "psnr_valid_model_db" not in recs[2]
    # a kill during epoch 2: the same command resumes after epoch 1 and ends with the same model
    shutil.rmtree(wd / "checkpoints" / "train" / "2")
    res2 = run.run(mod.EXPERIMENT, cfg)
    assert _epochs(wd) == [0, 1, 2]
    assert res2["c_norm_final"] == pytest.approx(res["c_norm_final"], rel=1e-5)
    assert res2["psnr_model_db"] == pytest.approx(res["psnr_model_db"], abs=1e-3)
    with pytest.raises(ConfigError, match="different config"):  # no mixing of two runs
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, n_mean=4))


def test_mpot_patches_tiny_writes_everything(tmp_path):
    mod = load_experiment("mpot_patches")
    res = run.run(mod.EXPERIMENT, tiny("mpot_patches", tmp_path, epochs=2))
    for name in FACTORED_OUTPUTS:
        assert (tmp_path / name).exists(), name
    _denoising_sane(res)
    lo, hi = res["gamma_range"]
    assert 0.5 <= lo <= hi  # the tiny config's gamma_min
    assert res["c_norm_final"] == pytest.approx(1.5, rel=1e-4)  # the fixed filter norm


def test_ssrbm_patches_tiny_writes_everything(tmp_path):
    mod = load_experiment("ssrbm_patches")
    res = run.run(mod.EXPERIMENT, tiny("ssrbm_patches", tmp_path, epochs=2))
    for name in ("samples.png", "filters.png", "whitening.npz"):
        assert (tmp_path / name).exists(), name
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["free_energy_gap"]) and r["properness_bound"] < 1 for r in recs)
    assert res["n_patches"] == 50
    # every denoiser must beat the noisy input (by 4-6 dB here: measured in the tiny run)
    for name in ("psnr_wiener_db", "psnr_model_db", "psnr_model_mmse_db"):
        assert res[name] > res["psnr_noisy_db"] + 2, name
    assert res["properness_bound"] < 1 and 0 < res["spike_rate_test"] < 1


@pytest.mark.parametrize(
    "name, overrides, match",
    [
        ("grbm_patches", {"sampler": "gibs"}, "sampler must be one of"),
        ("grbm_patches", {"min_var": 5.0, "max_var": 1.0}, "min_var < max_var"),
        ("grbm_patches", {"batch_size": 5000}, "exceeds n_train"),
        ("grbm_patches", {"learning_rate": 0.0}, "learning_rate must be > 0"),
        ("grbm_patches:mnist_tiny", {"source": "skimage"}, "source must be one of"),
        ("grbm_patches:mnist_tiny", {"n_train": 100_000}, "n_train"),
        ("mcrbm_patches", {"sampler": "gibbs"}, "normalize_input false"),
        ("mcrbm_patches", {"pooling": "random"}, "pooling must be one of"),
        ("mcrbm_patches", {"whitening": "standardize"}, "whitening must be one of"),
        ("mpot_patches", {"gamma_init": 0.1}, "gamma_init"),
        ("mpot_patches", {"c_norm": -1.0}, "c_norm"),
        ("ssrbm_patches", {"proper_margin": 0.0}, "proper_margin"),
        ("ssrbm_patches", {"whitening": "none"}, "whitening"),
        ("ssrbm_patches", {"alpha_init": -1.0}, "alpha_init"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path, name, overrides, match):
    with pytest.raises(ConfigError, match=match):
        exp = load_experiment(name.partition(":")[0]).EXPERIMENT
        run.run(exp, tiny(name, tmp_path / "wd", **overrides))
    assert not (tmp_path / "wd" / "checkpoints").exists()  # rejected before any training


def test_command_line_errors_are_one_message(tmp_path, capsys):
    for argv, msg in (
        (["--n_hiden", "5"], "valid fields"),
        (["--sweep", "n_hidden=3,4"], "cannot be vmapped"),
        (["--sweep", "grad_clip=1,2"], "cannot be vmapped"),
    ):
        with pytest.raises(SystemExit) as e:
            run.main(GRBM.EXPERIMENT, ["--config", "tiny", "--workdir", str(tmp_path), *argv])
        assert e.value.code == 2 and msg in capsys.readouterr().err


def test_ssrbm_posterior_mean_is_exact_for_a_gaussian_prior():
    """With every spike off (b = -40) the ssRBM prior on the whitened patch is N(0, Λ⁻¹), so
    the posterior given y = m + zB + σε is Gaussian with precision P = Λ + BBᵀ/σ² and mean
    P⁻¹B(y - m)/σ²; the sampler's z-draws are then exact and independent, and the
    average of T draws is within 5 CLT standard errors (posterior sd of x / sqrt(T)) of the
    exact posterior mean in pixel space."""
    import jax
    import jax.numpy as jnp
    from _stats import Z

    from egm.energies import ssrbm
    from egm.eval.denoise import ssrbm_posterior_mean

    rng = np.random.default_rng(0)
    x = rng.random((300, 9)).astype(np.float32)
    w = data.fit_whitening(x)
    p = ssrbm.init(jax.random.key(0), 9, 5, w_scale=0.5)
    p = p._replace(b=jnp.full(5, -40.0), log_lambda=jnp.linspace(-0.5, 0.5, 9))
    y = x[:4] + 0.1 * rng.standard_normal((4, 9)).astype(np.float32)
    T, burn = 3000, 10
    got = ssrbm_posterior_mean(jax.random.key(1), p, y, 0.1, w, n_sweeps=T, burn_in=burn)
    B = np.asarray(w.inverse, np.float64)
    P = np.diag(np.exp(np.asarray(p.log_lambda, np.float64))) + B @ B.T / 0.01
    cov = np.linalg.inv(P)
    want = np.asarray(w.mean) + (np.linalg.solve(P, B @ (y - np.asarray(w.mean)).T / 0.01)).T @ B
    se = np.sqrt(np.diag(B.T @ cov @ B)) / np.sqrt(T - burn)
    assert np.max(np.abs(got - want) / se) < Z
    # power: the noisy input itself is far outside that tolerance (measured: 37 se)
    assert np.max(np.abs(y - want) / se) > 4 * Z
