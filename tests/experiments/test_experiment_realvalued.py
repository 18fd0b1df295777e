"""The real-valued experiments (GRBM on patches and MNIST, mcRBM, mPoT, ssRBM) through the run
driver: a seed sweep, the other samplers, bad input; and the ssRBM posterior-mean denoiser
(egm.eval.denoise.ssrbm_posterior_mean) against the exact Gaussian case.  The tiny presets,
their records and the kill-and-resume: test_smoke.py.

The patches come from scikit-image's photos: the ``test`` extra installs it (egm[patches]).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _experiments import load_experiment, tiny

from egm import data, run
from egm.errors import ConfigError

GRBM = load_experiment("grbm_patches")


@pytest.mark.slow  # 21 s cold; the RBM's sweep == separate runs stays in the default suite
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


@pytest.mark.slow  # 14 s cold; both samplers are checked against exact moments in tests/samplers
@pytest.mark.parametrize("sampler", ["gibbs_langevin", "hmc"])
def test_grbm_patches_other_samplers(tmp_path, sampler):
    # ais_temps and denoise_n of test_smoke[grbm_patches]: the evaluation programs do not depend
    # on the sampler, so they come from the compilation cache
    cfg = tiny("grbm_patches", tmp_path, epochs=1, sampler=sampler, ais_temps=100, denoise_n=20)
    res = run.run(GRBM.EXPERIMENT, cfg)
    assert np.isfinite(res["test_loglik"]["value"])


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
