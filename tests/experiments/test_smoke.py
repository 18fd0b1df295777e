"""One smoke test over every experiment file: its tiny preset through the run driver.

``test_smoke[name]`` runs ``experiments/<name>.py``'s tiny preset (``grbm_mnist``, a command
alias, runs grbm_patches' ``mnist_tiny``) through :func:`egm.run.run` once and checks

1. the driver's contract (:func:`_check_driver_contract`): ``results.json`` on disk is the
   returned dict; config.json, run.json and metrics.jsonl are written, with one metrics line
   per trained epoch of every phase, in order; exactly the declared PNGs (and run files)
   exist; the provenance (``preset``, a ``command`` that parses back to the same config, a
   ``schedule`` with the epochs of every phase); every log-likelihood record reads back
   through :meth:`egm.eval.LogLikelihood.from_dict` unchanged, names its dataset, split,
   protocol and unit, and contains its value when it has a bracket; and the report contract
   (:func:`egm.run.report.check_rows` finds no missing field, every record is a row);
2. the experiment's own assertions, ``CHECKS[name]`` (what the former per-experiment tiny
   tests checked);
3. for one experiment per family (``RESUME``: the cheapest to resume), a run killed
   mid-training (:func:`_kill_and_resume`): the same command resumes, retrains exactly the
   lost epochs and ends with the same figures.  ``test_kill_and_resume_slow`` does the same
   for every other experiment that trains (``-m slow``).

Overrides (``CASES``) keep each run as small as its checks allow.  Compilation, not
training, is most of a tiny run's time (a tiny RBM run: 11 s cold, 2 s with the compiled
programs cached), so where a family test trains the same configuration (the ``alone`` runs of
the seed/learning-rate sweep tests) the smoke case uses exactly that configuration and the
persistent compilation cache of tests/conftest.py serves both.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _experiments import EXPERIMENTS, load_experiment, tiny

from egm import data, run
from egm.errors import ConfigError
from egm.eval import LogLikelihood
from egm.run import config as cfglib
from egm.run import report

FILES = sorted(p.stem for p in EXPERIMENTS.glob("*.py") if not p.stem.startswith("_"))


@dataclasses.dataclass(frozen=True)
class Case:
    """How the smoke test runs one experiment file: ``module:preset`` with ``overrides``;
    ``pngs`` and ``files``: the pictures and other run files the run must write."""

    module: str
    preset: str = "tiny"
    overrides: dict = dataclasses.field(default_factory=dict)
    pngs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


_FACTORED = ("samples.png", "cov_filters.png", "mean_filters.png")
_NADE = ("fvsbn", "nade", "eonade", "made")

CASES: dict[str, Case] = {
    # ais_temps=100: test_sweep_equals_separate_runs trains and evaluates this very config
    "rbm_mnist": Case("rbm_mnist", overrides={"ais_temps": 100},
                      pngs=("samples.png", "filters.png")),
    "dbm_mnist": Case("dbm_mnist", pngs=("samples.png", "filters.png")),
    "dbn_mnist": Case("dbn_mnist", pngs=("samples.png", "filters.png")),
    "mpdbm_mnist": Case("mpdbm_mnist", pngs=("fill_in.png",)),
    "sbn_mnist": Case("sbn_mnist", pngs=("samples.png",)),
    "nade_mnist": Case("nade_mnist",
                       pngs=("inpainting.png", *(f"samples_{m}.png" for m in _NADE))),
    # one temperature instead of two: every estimator family is still measured
    "estimator_variance": Case("estimator_variance", overrides={"taus": "1.0"},
                               pngs=("variance_bias.png",)),
    # one model, one epoch, and the IS/monitor sizes of test_vae_seed_sweep_equals_separate_runs
    "vae_mnist": Case("vae_mnist", overrides={"models": "vae1", "max_epochs": 1,
                                              "is_samples": 32, "eval_size": 50},
                      pngs=("vae1_samples.png", "vae1_reconstructions.png")),
    "draw_mnist": Case("draw_mnist", overrides={"variants": "no_attention", "epochs": 1},
                       pngs=("no_attention_canvas.png", "no_attention_samples.png")),
    # one estimator; 2 epochs (a kill in the second), annealing fast enough to be seen
    "gumbel_vae_mnist": Case("gumbel_vae_mnist",
                             overrides={"estimators": "st_gumbel", "epochs": 2,
                                        "anneal_every": 10, "anneal_rate": 0.005},
                             pngs=("st_gumbel_samples.png",)),
    # the config of test_grbm_seed_sweep_equals_separate_runs' separate runs
    "grbm_patches": Case("grbm_patches",
                         overrides={"epochs": 2, "ais_temps": 100, "denoise_n": 20},
                         pngs=("samples.png", "filters.png"), files=("whitening.npz",)),
    "grbm_mnist": Case("grbm_patches", preset="mnist_tiny", pngs=("samples.png", "filters.png"),
                       files=("whitening.npz",)),
    "mcrbm_patches": Case("mcrbm_patches", pngs=_FACTORED,
                          files=("whitening.npz", "params.npz")),
    "mpot_patches": Case("mpot_patches", overrides={"epochs": 2}, pngs=_FACTORED,
                         files=("whitening.npz", "params.npz")),
    "ssrbm_patches": Case("ssrbm_patches", overrides={"epochs": 2},
                          pngs=("samples.png", "filters.png"), files=("whitening.npz",)),
    "mnist_classifier": Case("mnist_classifier", pngs=("misclassified.png",),
                             files=("mnist_classifier.npz",)),
    "gan_mnist": Case("gan_mnist", pngs=("samples.png",)),
    "gmmn_mnist": Case("gmmn_mnist", pngs=("samples.png",)),
    "flow_2d": Case("flow_2d", pngs=("densities.png",)),
    "flow_mnist": Case("flow_mnist", pngs=("realnvp_samples.png", "maf2_samples.png")),
    "gmmn_2d": Case("gmmn_2d", pngs=("densities.png",)),
    "gan_2d": Case("gan_2d", pngs=("densities.png",)),
    "lapgan_mnist": Case("lapgan_mnist", pngs=("samples.png", "coarse_to_fine.png")),
    "dcgan_mnist": Case("dcgan_mnist",
                        pngs=("samples.png", "interpolation.png", "arithmetic.png")),
    "abc_conjugate": Case("abc_conjugate", pngs=("abc_posteriors.png",)),
    "diffusion_2d": Case("diffusion_2d", pngs=("densities.png",)),
    "ddpm_mnist": Case("ddpm_mnist", pngs=("samples.png",)),
    "crbm_mnist": Case("crbm_mnist", pngs=("samples.png", "filters.png")),
    "drbm_mnist": Case("drbm_mnist", pngs=("filters.png",)),
    "rnnrbm_jsb": Case("rnnrbm_jsb", pngs=("generated.png",)),
    "gated_rbm_shifts": Case("gated_rbm_shifts", pngs=("filters.png", "analogies.png")),
    "dae_mnist": Case("dae_mnist", pngs=("samples.png", "inpainting.png")),
    "dae_2d": Case("dae_2d", pngs=("chains.png",)),
    "gsn_mnist": Case("gsn_mnist", pngs=("samples.png",)),
}  # fmt: skip

FAMILIES = {
    "feature net": ("mnist_classifier",),
    "RBM": ("rbm_mnist", "rnnrbm_jsb"),
    "DBM/DBN": ("dbm_mnist", "dbn_mnist", "mpdbm_mnist", "crbm_mnist"),
    "directed": ("sbn_mnist", "nade_mnist", "estimator_variance"),
    "VAE": ("vae_mnist", "draw_mnist", "gumbel_vae_mnist"),
    "real-valued": ("grbm_patches", "grbm_mnist", "mcrbm_patches", "mpot_patches",
                    "ssrbm_patches"),
    "implicit": ("gan_mnist", "gmmn_mnist", "gmmn_2d", "gan_2d", "dcgan_mnist", "lapgan_mnist"),
    "flows": ("flow_2d", "flow_mnist"),
    "ABC": ("abc_conjugate",),
    "other BMs": ("drbm_mnist", "gated_rbm_shifts"),
    "diffusion": ("diffusion_2d", "ddpm_mnist"),
    "autoencoder chains": ("dae_mnist", "dae_2d", "gsn_mnist"),
}  # fmt: skip

#: The family's kill-and-resume in the default suite: experiment -> the phase it is killed
#: in.  The cheapest of each family to resume (measured with the compiled programs cached:
#: 1-3 s), except DBM/DBN: dbn_mnist's kill during the second greedy layer (layer 0
#: restored, layer 1 resumed, fine-tuning retrained) is the multi-phase case, 2 s.
RESUME = {
    "mnist_classifier": "train",
    "rbm_mnist": "train",
    "dbn_mnist": "layer1",
    "sbn_mnist": "train",
    "gumbel_vae_mnist": "st_gumbel",
    "grbm_patches": "train",
    # the multi-player state (a dict of parameter groups, one optimiser state each)
    "gan_mnist": "train",
    # multi-phase: killed in the first model's phase, the second retrained
    "flow_mnist": "realnvp",
    # multi-phase: killed in the first walk-back phase
    "dae_2d": "wb0_gaussian_mixture",
    "ddpm_mnist": "train",
    "gated_rbm_shifts": "train",
}


def _lines(wd: Path) -> list[dict]:
    p = wd / "metrics.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def _phases(wd: Path) -> list[tuple[str, int]]:
    return [(r["phase"], r["epoch"]) for r in _lines(wd)]


def _records(obj: Any, path: str = "") -> dict[str, dict]:
    """Every log-likelihood record (a dict with method, value and unit) inside ``obj``."""
    out = {}
    if isinstance(obj, dict):
        if {"method", "value", "unit"} <= obj.keys():
            return {path: obj}
        for k, v in obj.items():
            if k not in ("config", "published"):
                out |= _records(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            out |= _records(v, f"{path}[{i}]")
    return out


def _epochs_of(mod, cfg) -> dict[str, int]:
    return {p.name: int(p.epochs(cfg)) for p in mod.EXPERIMENT.phases(cfg)}


def _check_driver_contract(name: str, case: Case, mod, cfg, res: dict, wd: Path) -> None:
    """What every run of the driver writes and records (see the module docstring)."""
    on_disk = json.loads((wd / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res)), "results.json differs from the returned dict"
    assert json.loads((wd / "config.json").read_text()) == json.loads(
        json.dumps(cfglib.to_dict(cfg))
    )
    assert json.loads((wd / "run.json").read_text())["experiment"] == mod.EXPERIMENT.name
    epochs = _epochs_of(mod, cfg)
    want = [(p, e) for p, n in epochs.items() for e in range(n)]
    assert _phases(wd) == want, "metrics.jsonl: one line per trained epoch of every phase"
    for line in _lines(wd):
        nums = {k: v for k, v in line.items() if isinstance(v, float)}
        assert all(math.isfinite(v) for v in nums.values()), line
    if not epochs:  # nothing trains: nothing to checkpoint or log
        assert not (wd / "checkpoints").exists() and not _lines(wd)
    assert sorted(p.name for p in wd.glob("*.png")) == sorted(case.pngs)
    for f in case.pngs:
        assert (wd / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
    for f in case.files:
        assert (wd / f).stat().st_size > 0, f
    # provenance: the preset, the command that repeats the run, the schedule
    assert res["experiment"] == mod.EXPERIMENT.name and res["preset"] == case.preset
    script = f"python experiments/{mod.EXPERIMENT.name}.py"
    assert res["command"].startswith(f"{script} --config {case.preset}"), res["command"]
    assert (EXPERIMENTS / f"{mod.EXPERIMENT.name}.py").exists()
    again, sweep = cfglib.parse_args(mod.PRESETS, shlex.split(res["command"])[2:])
    assert not sweep and again == dataclasses.replace(cfg, progress=again.progress), (
        "the recorded command does not repeat the run"
    )
    assert {k: v["epochs"] for k, v in res["schedule"]["phases"].items()} == epochs
    # every log-likelihood record reads back unchanged and says what it measured
    records = _records(res)
    for key, d in records.items():
        rec = LogLikelihood.from_dict(d)
        assert rec.to_dict() == d, key
        for f in ("dataset", "split", "protocol", "unit"):
            assert getattr(rec, f).strip() and getattr(rec, f) != "unknown", (key, f)
        if rec.lower is not None or rec.upper is not None:
            lo = -math.inf if rec.lower is None else rec.lower
            hi = math.inf if rec.upper is None else rec.upper
            assert lo <= rec.value <= hi, (key, rec.lower, rec.value, rec.upper)
    # the report contract: a row per record, none with a missing protocol field
    rows = report.rows_of(res, str(wd / "results.json"))
    assert report.check_rows(rows) == []
    assert set(records) <= {r["result"] for r in rows}


# ----------------------------------------------------------------------- per-experiment checks
# Each check(res, cfg, wd, mod) holds what the former per-experiment tiny test asserted.


def _check_rbm(res, cfg, wd, mod):
    rec = res["test_loglik"]
    assert rec["method"] == "ais_bracket" and rec["unit"] == "nats" and rec["split"] == "test"
    assert rec["lower"] <= rec["value"] <= rec["upper"] < 0
    assert "embedded" in rec["dataset"] and "binarization" in rec["protocol"]
    assert rec["counts"]["chains"] == cfg.ais_chains
    assert "pseudo_loglik_valid" in _lines(wd)[-1]
    # the same command again finds the finished run's checkpoint: same model, no new epochs
    res2 = run.run(mod.EXPERIMENT, cfg)
    assert res2["log_z_forward"] == pytest.approx(res["log_z_forward"], abs=1e-5)
    assert len(_lines(wd)) == cfg.epochs
    with pytest.raises(ConfigError, match="different config"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, n_hidden=8))


def _check_dbm(res, cfg, wd, mod):
    """Greedy phases pretrain0/1, joint PCD, discriminative fine-tuning."""
    rec = res["test_loglik_bound"]
    assert rec["method"] == "variational_bound" and rec["bound"] == "lower"
    assert rec["value"] < 0 and rec["split"] == "test" and np.isfinite(res["log_z"])
    assert res["train_loglik_bound"]["split"] == "train"
    assert 0.0 <= res["test_error"] <= 1.0 and res["mean_field_residual_max"] <= 1e-5
    assert rec["lower"] <= rec["value"] <= rec["upper"]  # forward + reverse AIS bracket
    assert rec["counts"]["reverse_burn_in"] == cfg.reverse_burn_in
    assert np.isfinite(res["log_z_reverse"])
    assert _phases(wd) == [("pretrain0", 0), ("pretrain1", 0), ("joint", 0), ("joint", 1),
                           ("finetune", 0)]  # fmt: skip


def _check_dbn(res, cfg, wd, mod):
    rec = res["test_loglik_lower_bound"]
    assert rec["method"] == "variational_bound" and rec["value"] < 0 and rec["stderr"] > 0
    assert 0.0 <= res["test_error"] <= 1.0 and res["model"] == "DBN 784-16-32"
    assert "binarization" in rec["protocol"] and "AIS" in res["lower_bound"]
    assert 0.0 <= res["test_error_before_finetuning"] <= 1.0
    assert rec["lower"] <= rec["value"] <= rec["upper"] and np.isfinite(res["log_z_top_reverse"])
    assert _phases(wd) == [("layer0", 0), ("layer0", 1), ("layer1", 0), ("layer1", 1),
                           ("finetune", 0), ("finetune", 1)]  # fmt: skip
    # a work dir holding checkpoints of another config is refused before any training
    with pytest.raises(ConfigError, match="different config"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, ft_epochs=1))


def _check_mpdbm(res, cfg, wd, mod):
    assert 0.0 <= res["test_error"] <= 1.0 and 0.0 <= res["valid_error"] <= 1.0
    rec = res["test_loglik_bound"]
    assert rec["method"] == "variational_bound" and rec["bound"] == "lower"
    assert rec["lower"] <= rec["value"] <= rec["upper"] < 0
    assert all(np.isfinite(r["loss"]) and "valid_error" in r for r in _lines(wd))
    with pytest.raises(ConfigError, match="hide_prob"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, hide_prob=1.5))


def _check_sbn(res, cfg, wd, mod):
    rec = res["test_loglik"]
    assert rec["method"] == "importance" and rec["bound"] == "lower" and rec["split"] == "test"
    assert rec["value"] < 0 and rec["counts"]["samples"] == cfg.is_samples == 10
    assert "embedded" in rec["dataset"] and "binarization" in rec["protocol"]
    assert res["epochs_run"] == 2 and res["n_test"] == 50
    assert "valid_is_bound_k10" in _lines(wd)[-1]
    res2 = run.run(mod.EXPERIMENT, cfg)  # finds the finished run's checkpoint: no training
    assert res2["test_loglik"]["value"] == pytest.approx(rec["value"], abs=1e-4)
    assert len(_lines(wd)) == 2
    with pytest.raises(ConfigError, match="different config"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, hidden="4"))


def _base_rate_loglik() -> float:
    """The independent-pixel model of the tiny run's 500 training digits on its 100 test
    digits: a floor every trained model must beat (up to a few nats of noise)."""
    x = data.binarize_fixed(data.load_mnist("train", source="embedded").x, 0)[:500]
    xt = data.binarize_fixed(data.load_mnist("test", source="embedded").x, 2)[:100]
    q = np.clip(x.mean(0), 1e-3, 1 - 1e-3)
    return float(np.mean(xt @ np.log(q) + (1 - xt) @ np.log(1 - q)))


def _check_nade(res, cfg, wd, mod):
    base = _base_rate_loglik()
    for m in _NADE:
        rec = res[f"{m}_test_loglik"]
        assert rec["method"] == "exact" and rec["counts"]["examples"] == 100
        assert "fixed binarization" in rec["protocol"] and "embedded" in rec["dataset"]
        assert base - 5 < rec["value"] < 0, (m, rec["value"], base)
        assert res["models"][m]["paper"] < 0 and res["models"][m]["epochs"] == 2
        assert res[f"{m}_gap_to_paper_nats"] == pytest.approx(
            rec["value"] - res["models"][m]["paper"]
        )
    assert res["eonade_test_loglik"]["counts"]["members"] == 2
    assert res["models"]["eonade"]["ensemble_curve"].keys() == {"1", "2"}
    made = res["models"]["made"]  # the mixture beats the mean of its members (Jensen)
    assert res["made_test_loglik"]["value"] >= made["mean_single_member_nats"] - 1e-4
    lines = _lines(wd)
    assert all("valid_loglik" in r for r in lines)
    # again with one model (an evaluation-only field): its checkpoint, no training, same model
    res2 = run.run(mod.EXPERIMENT, dataclasses.replace(cfg, models="made"))
    assert res2["made_test_loglik"]["value"] == pytest.approx(
        res["made_test_loglik"]["value"], abs=1e-4
    )
    assert "nade_test_loglik" not in res2 and len(_lines(wd)) == len(lines)
    with pytest.raises(ConfigError, match="different config"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, models="made", made_hidden="8"))


def _check_estimator_variance(res, cfg, wd, mod):
    """No training phase: evaluate measures.  Baselines reduce the variance of plain
    REINFORCE on this problem (J ≈ -7 has a large mean): with 100 repeats a sample variance
    is ~15 % accurate (sd of s²/σ² = √(2/99) for Gaussian estimates), the measured gap is
    ~10x, the threshold 2x."""
    assert res["train_seconds"] == 0 and res["repeats"] == 100
    rows = {r["estimator"]: r for r in res["rows"]}
    assert "reinforce/optimal" in rows and "gumbel_softmax/tau=1" in rows
    assert "straight_through" in rows and "straight_through_gumbel/tau=1" in rows
    none = rows["reinforce/none"]["total_variance"]
    for b in ("constant", "leave_one_out", "optimal"):
        assert rows[f"reinforce/{b}"]["total_variance"] < 0.5 * none
    assert all(np.isfinite(r["mse"]) for r in res["rows"])
    assert res["variance/reinforce/none"] == none


def _check_vae(res, cfg, wd, mod):
    rec = res["vae1_test_loglik"]
    assert rec["method"] == "importance" and rec["bound"] == "lower" and rec["value"] < 0
    assert rec["counts"]["samples"] == cfg.is_samples and rec["counts"]["examples"] == 50
    assert "dynamic binarization" in rec["protocol"]
    # IS (k = 32, first 50 test digits) vs. the one-draw ELBO and L50 on all test digits
    # (measured after one epoch: ELBO -369.9 < L50 -368.0 < IS -366.4); the slack of 1 and
    # 5 nats covers the one-draw noise and the 50-digit subset
    assert res["vae1_test_elbo"] < res["vae1_test_L50"] + 1.0 < rec["value"] + 5.0
    assert 0 <= res["vae1_active_units"] <= 4 and res["epochs_trained"] == 1
    assert res["schedule_epochs"] == 1 + 3 and "IS" in res["evaluation"]
    assert any((wd / "checkpoints" / "vae1").iterdir())
    # extending the truncated schedule resumes after epoch 0 instead of starting afresh
    res2 = run.run(mod.EXPERIMENT, dataclasses.replace(cfg, max_epochs=2))
    assert res2["epochs_trained"] == 2
    assert _phases(wd) == [("vae1", 0), ("vae1", 1)] and "valid_L1" in _lines(wd)[-1]


def _check_draw(res, cfg, wd, mod):
    rec = res["no_attention_test_loglik"]
    assert rec["method"] == "variational_bound" and rec["split"] == "test"
    assert rec["bound"] == "lower" and rec["counts"]["examples"] == 100
    assert res["no_attention_test_nll_bound"] == pytest.approx(-rec["value"]) and rec["value"] < 0
    with pytest.raises(ConfigError, match="variants"):
        cfglib.parse_args(mod.PRESETS, ["--config", "tiny", "--variants", "glimpse"])
    with pytest.raises(ConfigError, match="read_n"):
        cfglib.parse_args(mod.PRESETS, ["--config", "tiny", "--read_n", "1"])


def _check_gumbel(res, cfg, wd, mod):
    """τ = max(τ_min, τ0 exp(-r t)) follows the step count t rounded down to
    ``anneal_every``: after 2 tiny epochs of 40 steps (4000 digits, batch 100), t = 80 and
    τ = exp(-0.005 · 80) = 0.67 > τ_min = 0.5."""
    elbo, ll = res["st_gumbel_test_discrete_elbo"], res["st_gumbel_test_loglik"]
    assert elbo["method"] == "variational_bound" and ll["method"] == "importance"
    assert elbo["value"] < 0 and ll["value"] < 0 and ll["counts"]["samples"] == 32
    assert elbo["split"] == ll["split"] == "test" and ll["counts"]["examples"] > 0
    assert res["st_gumbel_final_tau"] == pytest.approx(np.exp(-0.005 * 80), rel=1e-6)
    with pytest.raises(ConfigError, match="estimators"):
        cfglib.parse_args(mod.PRESETS, ["--config", "tiny", "--estimators", "vimco"])


def _denoising_sane(res: dict) -> None:
    assert res["psnr_wiener_db"] > res["psnr_noisy_db"]
    # MAP descent starts at y and never raises its objective, so it cannot end far below y
    assert np.isfinite(res["psnr_model_db"]) and res["psnr_model_db"] > res["psnr_noisy_db"]


def _check_grbm(res, cfg, wd, mod):
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
    res2 = run.run(mod.EXPERIMENT, cfg)  # finds the finished checkpoint: same model and AIS key
    assert res2["log_z"] == pytest.approx(res["log_z"], abs=1e-4)
    assert len(_lines(wd)) == cfg.epochs


def _check_grbm_mnist(res, cfg, wd, mod):
    assert "embedded" in res["data"] and "dequantised" in res["data"]
    bpd, gauss = res["test_bits_per_dim"], res["gaussian_test_bits_per_dim"]
    assert bpd["unit"] == "bits/dim" and bpd["bound"] == "lower"  # optimistic nats -> fewer bits
    # E_u log p(x + u) <= log P(x) <= 0 for a density of dequantised pixels (Jensen), so the
    # bits per pixel are positive; 200 test images x 784 pixels keep the u-noise far below
    assert gauss["value"] > 0 and bpd["value"] > 0 and np.isfinite(bpd["value"])


def _check_mcrbm(res, cfg, wd, mod):
    _denoising_sane(res)
    assert res["hmc_step_size_median"] > 0 and 0.0 <= res["mean_cov_hidden_on_test"] <= 1.0
    recs = _lines(wd)  # validation denoising every denoise_every = 2 epochs
    assert "psnr_valid_model_db" in recs[1] and "psnr_valid_model_db" not in recs[2]
    with pytest.raises(ConfigError, match="different config"):  # no mixing of two runs
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, n_mean=4))


def _check_mpot(res, cfg, wd, mod):
    _denoising_sane(res)
    lo, hi = res["gamma_range"]
    assert 0.5 <= lo <= hi  # the tiny config's gamma_min
    assert res["c_norm_final"] == pytest.approx(1.5, rel=1e-4)  # the fixed filter norm


def _check_classifier(res, cfg, wd, mod):
    """One epoch on 500 embedded images: the test error on the 1000 embedded test digits with
    its binomial s.e.; the written weights load with egm.eval.features and reproduce that
    error exactly (same weights, same digits, same deterministic forward pass)."""
    from egm.eval import features as fnet

    p = res["test_error"]
    assert res["n_test"] == 1000 and res["n_train"] == 500 and 0.0 <= res["valid_error"] <= 1.0
    assert 0.0 < p < 0.9  # better than chance after one epoch (chance: 0.9)
    assert res["test_error_stderr"] == pytest.approx(np.sqrt(p * (1 - p) / 1000))
    net = fnet.load_feature_net(wd / "mnist_classifier.npz")
    assert net.meta["experiment"] == "mnist_classifier" and net.meta["n_train"] == 500
    x, y = mod.load(cfg).test
    err = float(np.mean(np.asarray(fnet.class_probs(x, net)).argmax(1) != y))
    assert err == pytest.approx(p, abs=1e-12)


def _check_ssrbm(res, cfg, wd, mod):
    assert all(np.isfinite(r["free_energy_gap"]) and r["properness_bound"] < 1 for r in _lines(wd))
    assert res["n_patches"] == 50
    # every denoiser must beat the noisy input (by 4-6 dB here: measured in the tiny run)
    for name in ("psnr_wiener_db", "psnr_model_db", "psnr_model_mmse_db"):
        assert res[name] > res["psnr_noisy_db"] + 2, name
    assert res["properness_bound"] < 1 and 0 < res["spike_rate_test"] < 1


def _check_gan(res, cfg, wd, mod):
    # tiny run: test_mmd2 2.98 against a floor of 0.037 (training vs test digits)
    assert res["test_mmd2_floor"] < res["test_mmd2"] and 0 <= res["d_on_samples"] <= 1
    assert 0 <= res["d_on_test"] <= 1 and isinstance(res["discriminator_won"], bool)
    assert {"disc/loss", "disc/d_real", "gen/loss"} <= set(_lines(wd)[-1])
    assert res["published"]["parzen_test"]["value"] == 225.0 and res["n_train"] == 4000


def _check_gmmn(res, cfg, wd, mod):
    assert res["test_mmd2_floor"] < res["test_mmd2"] and "loss" in _lines(wd)[-1]
    assert res["updates"] == cfg.epochs * (4000 // cfg.batch_size)
    assert res["published"]["parzen_test"]["value"] == 147.0


def _check_dcgan(res, cfg, wd, mod):
    # tiny run: test_mmd2 6.09 against a floor of 0.037 (training vs test digits)
    assert res["test_mmd2_floor"] < res["test_mmd2"] and 0 <= res["d_on_samples"] <= 1
    assert 0 <= res["d_on_test"] <= 1 and isinstance(res["discriminator_won"], bool)
    assert {"disc/loss", "disc/d_real", "disc/d_fake", "gen/loss"} <= set(_lines(wd)[-1])
    assert res["n_train"] == 256 and "batch norm" in res["model"]


def _check_lapgan(res, cfg, wd, mod):
    """Tiny run (2 epochs of 5 updates of all six players): test MMD² 1.79 against a floor
    of 0.037 (training vs test digits; an unbiased estimate whose sd is O(B/n), B the kernel
    bound: ~0.02 at n = 100), so ``floor < test_mmd2`` holds by ~90 sd.  Every level's mean d
    on test pairs and on the samples' pyramids is a probability, and every player of every
    level logs its metrics."""
    assert res["test_mmd2_floor"] < res["test_mmd2"] and isinstance(res["discriminator_won"], bool)
    last = set(_lines(wd)[-1])
    for k in range(cfg.levels + 1):
        assert 0 <= res[f"d{k}_on_test"] <= 1 and 0 <= res[f"d{k}_on_samples"] <= 1
        assert {f"disc{k}/loss", f"disc{k}/d_real", f"disc{k}/d_fake", f"gen{k}/loss"} <= last
    assert res["n_train"] == 512 and res["model"].startswith("LAPGAN 28 -> 14 -> 7")


def _check_gmmn_2d(res, cfg, wd, mod):
    """After 2 tiny epochs the checkerboard GMMN is far from the data: measured test MMD² 0.76
    against a floor of -0.0002 (the floor is an unbiased estimate of 0, sd O(B/n) = 5/300 ≈
    0.02), so a margin of 0.1 (~6 sd) cannot fail by noise."""
    assert res["checkerboard_test_mmd2"] > res["checkerboard_test_mmd2_floor"] + 0.1
    assert _phases(wd) == [("checkerboard", 0), ("checkerboard", 1)]


def _check_gan_2d(res, cfg, wd, mod):
    """The ring GAN after 2 tiny epochs: both players' metrics every epoch, the mode-coverage
    figures in their ranges, and samples still far from the data (test MMD² above its floor
    by 0.1, ~6 sd of the floor's O(B/n) noise as for gmmn_2d)."""
    g = "gaussian_mixture"
    assert res[f"{g}_test_mmd2"] > res[f"{g}_test_mmd2_floor"] + 0.1
    assert 0 <= res[f"{g}_modes_covered"] <= 8 and 0 <= res[f"{g}_high_quality_fraction"] <= 1
    assert 0 <= res[f"{g}_mode_weight_tv"] <= 1
    assert {"disc/loss", "disc/d_real", "disc/d_fake", "gen/loss"} <= set(_lines(wd)[-1])
    assert _phases(wd) == [(g, 0), (g, 1)]


def _check_crbm(res, cfg, wd, mod):
    """Two greedy conv-RBM layers, then a linear classifier per label setting.  With 2x2
    pooling a pooling unit's probability is the sum of its block's 4 detection
    probabilities, so the epoch means obey pool_mean = 4 hidden_mean exactly (float32
    rounding: rel 1e-5); the features must beat chance (0.9) clearly (< 0.6; deterministic
    given the seed, measured 0.147)."""
    assert _phases(wd) == [("layer0", 0), ("layer1", 0), ("clf_all", 0), ("clf_all", 1),
                           ("clf_100", 0), ("clf_100", 1)]  # fmt: skip
    assert res["n_labels_all"] == 4000 and res["n_labels_100"] == 100 and res["n_test"] == 1000
    assert res["n_features"] == 12 * 12 * 4 + 4 * 4 * 4
    for s in ("all", "100"):
        assert 0.0 <= res[f"test_error_{s}"] <= 1.0 and res[f"test_error_{s}_stderr"] > 0
    assert res["test_error_all"] < 0.6, res["test_error_all"]
    assert res["published"]["test_error_all"]["source"] == "Lee et al. 2009"
    assert "fixed binarization" in res["protocol"] and "from the grey digits" in res["protocol"]
    for s in ("all", "100"):  # the candidate decays' validation errors; the kept one is the lowest
        valid = res[f"valid_errors_{s}"]
        assert len(valid) == 2 and res[f"valid_error_{s}"] == min(valid)
        assert res[f"weight_decay_{s}"] == (0.1, 1.0)[valid.index(min(valid))]
    for line in _lines(wd)[:2]:
        assert line["pool_mean"] == pytest.approx(4 * line["hidden_mean"], rel=1e-5)
        assert line["recon_error"] > 0


def _check_diffusion_2d(res, cfg, wd, mod):
    """The checkerboard's true figure is exactly -log 8.  The bound record is a lower bound on
    log p_θ; KL(p || p_θ) <= E_p[log p + L] is the difference of the two records on the same test
    points (paired), >= 0, and after 2 tiny epochs far from 0 (measured ~800 ± 55 nats), so
    > 5 s.e. cannot fail by noise.  MMD²: the unbiased statistic between two sets of 200 true
    draws has mean 0 and s.d. below 0.02 (kernel sum <= 3, s.d. ~ 3√2/n), so |floor| < 0.1 is
    5 s.d.; the tiny model's samples are far off (measured 0.28)."""
    true, rec = res["checkerboard_true_test_loglik"], res["checkerboard_test_loglik_bound"]
    assert true["value"] == pytest.approx(-math.log(8), abs=1e-6) and true["method"] == "exact"
    assert rec["method"] == "variational_bound" and rec["bound"] == "lower"
    assert rec["counts"]["examples"] == cfg.n_test == 200 and rec["counts"]["steps"] == 10
    kl = res["checkerboard_kl_upper_nats"]
    assert kl == pytest.approx(true["value"] - rec["value"], rel=1e-9)
    assert kl > 5 * res["checkerboard_kl_upper_stderr"] > 0
    assert abs(res["checkerboard_mmd2_floor"]) < 0.1 < res["checkerboard_mmd2"]
    assert _phases(wd) == [("checkerboard", 0), ("checkerboard", 1)]


def _check_ddpm_mnist(res, cfg, wd, mod):
    """The bound on the discrete NLL of the 8-bit digits: every term is >= 0 (L_0 is minus
    the log of a probability <= 1, the others are KLs), so bits/dim > 0; a tiny model after one
    epoch scores below the 8 bits of the uniform distribution over 256 levels (measured 5.4).
    The record's value is the sum of its per-step terms L_0 + Σ L_{t-1} + L_T (float64 sums of
    the same numbers: rel 1e-9), and bits/dim = nats / (784 ln 2)."""
    bpd, rec = res["test_bits_per_dim"], res["test_loglik_bound"]
    assert bpd["unit"] == "bits/dim" and bpd["bound"] == "upper" and rec["bound"] == "lower"
    assert 0 < bpd["value"] < 8 and bpd["counts"] == {"examples": 32, "steps": 8,
                                                      "draws_per_step": 1}  # fmt: skip
    assert "no dequantisation" in rec["protocol"] and "discretised" in rec["protocol"]
    ex = rec["extras"]
    assert -rec["value"] == pytest.approx(ex["L_0_nats"] + ex["sum_L_t-1_nats"] + ex["L_T_nats"],
                                          rel=1e-9)  # fmt: skip
    assert bpd["value"] == pytest.approx(-rec["value"] / (784 * math.log(2)), rel=1e-9)
    assert min(res["bound_terms_bits_per_dim"].values()) >= 0
    assert res["n_train"] == 256 and res["n_test"] == 32


def _check_drbm(res, cfg, wd, mod):
    """Two epochs of the hybrid objective on 500 embedded digits: the exact p(y|x) classifies
    the 1000 test digits better than chance (0.9) with its binomial s.e.; the published
    figure it is placed beside is the hybrid one; a label out of range is refused."""
    from egm.errors import DataError

    p = res["test_error"]
    assert res["n_test"] == 1000 and res["n_train"] == 500 and 0.0 < p < 0.85
    assert res["test_error_stderr"] == pytest.approx(np.sqrt(p * (1 - p) / 1000))
    assert 0.0 < res["test_nll"] < np.log(10) + 0.05 and 0.0 <= res["valid_error"] <= 1.0
    assert res["published"]["test_error"]["value"] == 0.0128
    assert all("valid_error" in r and np.isfinite(r["loss"]) for r in _lines(wd))
    x, y = mod.load(cfg).train
    with pytest.raises(DataError, match="out of range"):
        mod.data_check(cfg, (x, np.where(np.arange(len(y)) == 3, 10, y)))


def _check_gated_rbm(res, cfg, wd, mod):
    """Two epochs on 500 shifted 6x6 random-dot pairs: figures in range; the copy baseline
    equals the data's own x != y rate (the analogy partners are a permutation)."""
    assert res["n_shifts"] == 9 and res["chance_accuracy"] == pytest.approx(1 / 9)
    for k in ("shift_probe_accuracy", "pixel_probe_accuracy", "recon_pixel_error",
              "analogy_pixel_error", "copy_pixel_error"):  # fmt: skip
        assert 0.0 <= res[k] <= 1.0, k
    assert all(np.isfinite(r["recon_error"]) for r in _lines(wd))
    x, y = mod.load(cfg).test
    assert res["copy_pixel_error"] == pytest.approx(float(np.mean(x != y)))


def _check_rnnrbm(res, cfg, wd, mod):
    """Pretraining then CD-1 through time; exact per-step test log-likelihood of 4725 frames
    (the 77 test chorales).  A frame model with independent keys at their base rates scores
    -11.10 nats per step; the tiny model must be a proper normalised density (< 0) and may be
    at most 0.5 nats worse than that baseline after 2 epochs (measured -11.06)."""
    rec = res["test_loglik_per_step"]
    assert rec["method"] == "exact" and rec["split"] == "test" and rec["unit"] == "nats"
    assert rec["counts"]["frames"] == 4725 and rec["counts"]["pieces"] == 77
    assert -11.6 < rec["value"] < 0
    assert 0.0 <= res["test_frame_accuracy"] <= 1.0 and res["loglik_method"] == "exact"
    assert _phases(wd) == [("pretrain", 0), ("train", 0), ("train", 1)]


def _check_flow_2d(res, cfg, wd, mod):
    """Every test point of the checkerboard lies in a dark cell: the true figure is exactly
    -log 8 with zero spread.  KL(p||q) = E_p[log p - log q] >= 0; after 2 tiny epochs the
    models are ~1 nat away (measured 1.04 / 1.03 nats, s.e. 0.03), so KL > 5 s.e. cannot fail
    by noise, and it is the difference of the two records (the same test points)."""
    true = res["checkerboard_true_test_loglik"]
    assert true["value"] == pytest.approx(-math.log(8), abs=1e-6) and true["method"] == "exact"
    for m in ("realnvp", "maf"):
        rec, kl = res[f"{m}_checkerboard_test_loglik"], res[f"{m}_checkerboard_kl_nats"]
        assert rec["method"] == "exact" and rec["counts"]["examples"] == cfg.n_test == 500
        assert kl == pytest.approx(true["value"] - rec["value"], abs=1e-5)
        assert kl > 5 * res[f"{m}_checkerboard_kl_stderr"] > 0
    assert _phases(wd) == [("realnvp_checkerboard", 0), ("realnvp_checkerboard", 1),
                           ("maf_checkerboard", 0), ("maf_checkerboard", 1)]  # fmt: skip


def _check_flow_mnist(res, cfg, wd, mod):
    """Bits/dim of the dequantised 8-bit scale: the uniform density on the cube scores 8, a
    trained flow less (measured after 2 tiny epochs: RealNVP 5.75, MAF(2) 5.93), and more
    than 0: E_u[-log p_y(k + u)] >= -log P(k) >= 0 by Jensen (P(k), the mass of the cell, is
    <= 1), and one draw of u over 100 x 784 pixels is far from moving a 5.8-bit figure to 0.
    Each metrics line's bits/dim is the affine map of its loss, (loss + 784 log 256) /
    (784 log 2), up to float32 rounding of the epoch means."""
    for m in ("realnvp", "maf2"):
        bpd, logit = res[f"{m}_test_bits_per_dim"], res[f"{m}_test_loglik_logit"]
        assert bpd["unit"] == "bits/dim" and bpd["method"] == logit["method"] == "exact"
        assert 0 < bpd["value"] < 8 and bpd["counts"]["examples"] == 100
        assert bpd["extras"]["bpd_n_levels"] == 256 and "dequantised" in bpd["protocol"]
        assert logit["unit"] == "nats" and "logit space" in logit["protocol"]
    assert res["published"].keys() == {"realnvp_test_bits_per_dim"}  # maf5 only for MAF(5)
    assert res["n_train"] == 500 and res["n_test"] == 100
    for line in _lines(wd):
        want = (line["loss"] + 784 * math.log(256)) / (784 * math.log(2))
        assert line["bits_per_dim"] == pytest.approx(want, rel=1e-5)


def _check_abc(res, cfg, wd, mod):
    """Rejection ABC at ε = 1 and 0.3 on 20,000 proposals.  Its sample's W1 to the exact ABC
    posterior p_ε is sampling noise (about 0.8 sd / sqrt(n): sd <= 0.65, n > 2000, so < 0.012;
    measured 0.007 and 0.006), far below what ε costs (exact W1(p_ε, p(θ | x)) 0.29 and 0.04):
    a sampler drawing from the wrong distribution fails the first, a quadrature error the
    second.  The sample's W1 to p(θ | x) is the triangle inequality's sum of the two."""
    rows = res["rows"]
    assert [r["tolerance"] for r in rows] == [1.0, 0.3]
    assert rows[0]["accepted"] > rows[1]["accepted"]
    for r in rows:
        assert r["w1_to_abc_posterior"] < 0.03 < r["w1_exact_bias"] < 0.5
        assert r["w1_to_posterior"] <= r["w1_to_abc_posterior"] + r["w1_exact_bias"] + 1e-9
        assert r["smc_simulations"] >= cfg.n_particles and r["smc_ess"] > 0.5 * cfg.n_particles
    assert rows[1]["w1_exact_bias"] < rows[0]["w1_exact_bias"]
    assert rows[0]["w1_summary_limit"] < 1e-6


def _check_dae_mnist(res, cfg, wd, mod):
    """Inpainting: egm's classifier labels the full test digits far better than the same
    digits with their bottom half replaced by coin flips (measured 1.0 vs 0.4 on 50 digits);
    the reconstruction cost lies below 784 log 2 = 543.4 nats, the uniform P(x|x̃)'s (the
    output biases start at the data mean: measured 201); the walk-back metrics are logged."""
    assert res["inpaint_accuracy_full"] > res["inpaint_accuracy_start"] + 0.2
    assert 0 < res["test_recon_nll"] < 784 * math.log(2) and res["test_recon_nll_stderr"] > 0
    assert res["inpaint_loglik_missing"] < 0 and res["inpaint_loglik_missing_start"] < 0
    assert {"loss", "recon_nll", "walkback_nll"} <= set(_lines(wd)[-1])


def _check_dae_2d(res, cfg, wd, mod):
    """The 1 % quantile of the true log density and both models' far masses (fractions of
    500 chains, with their binomial standard errors); a phase per walk-back value."""
    assert math.isfinite(res["gaussian_mixture_hdr99_log_density"])
    for wb in ("wb0", "wb2"):
        far = res[f"{wb}_gaussian_mixture_far_mass"]
        se = res[f"{wb}_gaussian_mixture_far_mass_stderr"]
        assert 0 <= far <= 1 and se == pytest.approx(math.sqrt(max(far * (1 - far), 1e-12) / 500))
    assert _phases(wd) == [("wb0_gaussian_mixture", 0), ("wb0_gaussian_mixture", 1),
                           ("wb2_gaussian_mixture", 0), ("wb2_gaussian_mixture", 1)]  # fmt: skip


def _check_gsn(res, cfg, wd, mod):
    """CSL is a log-mean of Bernoulli probabilities of binary digits, so < 0 exactly; counts
    are 2 chains x 20 states on 50 test digits; the published deep-GSN Parzen figure."""
    rec = res["test_csl_loglik"]
    assert rec["method"] == "importance" and rec["bound"] == "lower" and rec["value"] < 0
    assert rec["counts"]["samples"] == 40 and rec["counts"]["examples"] == 50
    assert res["published"]["parzen_test"]["value"] == 214.0 and "test_error" not in res
    assert _phases(wd) == [("gsn", 0), ("gsn", 1)] and res["walkback_steps"] == 2


CHECKS: dict[str, Callable[..., None]] = {
    "rbm_mnist": _check_rbm,
    "dbm_mnist": _check_dbm,
    "dbn_mnist": _check_dbn,
    "mpdbm_mnist": _check_mpdbm,
    "sbn_mnist": _check_sbn,
    "nade_mnist": _check_nade,
    "estimator_variance": _check_estimator_variance,
    "vae_mnist": _check_vae,
    "draw_mnist": _check_draw,
    "gumbel_vae_mnist": _check_gumbel,
    "grbm_patches": _check_grbm,
    "grbm_mnist": _check_grbm_mnist,
    "mcrbm_patches": _check_mcrbm,
    "mpot_patches": _check_mpot,
    "ssrbm_patches": _check_ssrbm,
    "mnist_classifier": _check_classifier,
    "gan_mnist": _check_gan,
    "gmmn_mnist": _check_gmmn,
    "gmmn_2d": _check_gmmn_2d,
    "gan_2d": _check_gan_2d,
    "dcgan_mnist": _check_dcgan,
    "lapgan_mnist": _check_lapgan,
    "flow_2d": _check_flow_2d,
    "flow_mnist": _check_flow_mnist,
    "abc_conjugate": _check_abc,
    "drbm_mnist": _check_drbm,
    "rnnrbm_jsb": _check_rnnrbm,
    "gated_rbm_shifts": _check_gated_rbm,
    "diffusion_2d": _check_diffusion_2d,
    "ddpm_mnist": _check_ddpm_mnist,
    "crbm_mnist": _check_crbm,
    "dae_mnist": _check_dae_mnist,
    "dae_2d": _check_dae_2d,
    "gsn_mnist": _check_gsn,
}

# ----------------------------------------------------------------------------- kill and resume

_TIMING = re.compile(r"seconds|_s$|^load_average$")  # wall-clock figures: differ between runs


def _figures(obj: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a results dict by its path, without the wall-clock figures."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not _TIMING.search(k):
                out |= _figures(v, f"{path}.{k}")
        return out
    if isinstance(obj, list | tuple):
        out = {}
        for i, v in enumerate(obj):
            out |= _figures(v, f"{path}[{i}]")
        return out
    return {path: obj}


#: Figures after a resume: the restored state is the saved float32 arrays bit for bit, the
#: epoch keys are fold_in(root, epoch) and the compiled programs the same, so on one machine
#: the figures are expected bit-identical.  Allowed: 8 float32 ulps (2^-24 · 8 ≈ 5e-7
#: relative), should XLA sum a reduction in another order after a cache miss, and 1e-6
#: absolute for figures near 0 (mean-field residuals).  A resume from the wrong state or key
#: moves a trained figure by far more (one epoch changes log-likelihoods by nats).
RTOL, ATOL = 5e-7, 1e-6


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and (
            math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)
        )  # fmt: skip
    return a == b


def _kill_and_resume(mod, cfg, wd: Path, killed_in: str) -> None:
    """Simulate a run killed during phase ``killed_in`` (its newest checkpoint, every later
    phase's checkpoints and results.json lost; its metrics lines may survive, as after a real
    kill between the log line and the checkpoint), run the same config again, and check that
    it resumed: the metrics lines of the epochs that kept their checkpoints are untouched,
    exactly the lost epochs were trained again (new lines, same metrics), no epoch twice,
    and the results have the same figures."""
    names = list(_epochs_of(mod, cfg))
    before, want = _lines(wd), _figures(json.loads((wd / "results.json").read_text()))
    root = wd / "checkpoints"
    steps = sorted(int(p.name) for p in (root / killed_in).iterdir() if p.name.isdigit())
    later = names[names.index(killed_in) + 1 :]
    shutil.rmtree(root / killed_in / str(steps[-1]))
    for phase in later:
        shutil.rmtree(root / phase, ignore_errors=True)
    (wd / "results.json").unlink()
    kept = steps[-2] if len(steps) > 1 else -1  # the epoch the resumed phase restarts after
    lost = {(p, e) for p, e in _phases(wd) if (p == killed_in and e > kept) or p in later}
    assert lost, "the kill must lose at least one epoch"

    res = run.run(mod.EXPERIMENT, cfg)
    after = _lines(wd)
    assert [(r["phase"], r["epoch"]) for r in after] == [(r["phase"], r["epoch"]) for r in before]
    for old, new in zip(before, after, strict=True):
        if (old["phase"], old["epoch"]) not in lost:
            assert new == old, f"epoch {old['epoch']} of {old['phase']} was trained again"
            continue
        assert (new["wall_s"], new["epoch_s"]) != (old["wall_s"], old["epoch_s"]), "not retrained"
        a, b = _figures(old), _figures(new)
        assert a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a), (old, new)
    got = _figures(res)
    assert got.keys() == want.keys()
    bad = {k: (want[k], got[k]) for k in want if not _close(want[k], got[k])}
    assert not bad, f"figures changed by the resume: {bad}"


# ----------------------------------------------------------------------------------- the tests


def test_every_experiment_has_a_case_a_check_and_a_family():
    assert set(CASES) == set(CHECKS) == set(FILES)
    assert sorted(n for f in FAMILIES.values() for n in f) == FILES
    for family, names in FAMILIES.items():
        if set(names) <= set(_UNTRAINED):
            continue  # nothing trains, nothing to resume
        assert len(set(names) & set(RESUME)) == 1, f"{family}: one kill-and-resume per family"


def _run_case(name: str, wd: Path):
    case = CASES[name]
    mod = load_experiment(case.module)
    cfg = tiny(f"{case.module}:{case.preset}", wd, **case.overrides)
    return case, mod, cfg, run.run(mod.EXPERIMENT, cfg)


#: Experiments whose tiny run is in the slow suite only (the default suite's 10-minute budget
#: on 2 cores: 603 s with them), each with the default tests that keep its claims:
#: rnnrbm_jsb (21 s cold) — tests/models/test_rnn_rbm.py (exact sequence probabilities,
#: padding, the bias recursions), test_experiment_rnnrbm.py (its config checks); lapgan_mnist
#: (13 s) — tests/models/test_lapgan.py (exact pyramid, zero-residual sampling, errors);
#: dcgan_mnist (15 s) — tests/models/test_dcgan.py (convolutions vs their definitions, init,
#: chunked generation, errors); lapgan and dcgan share the multi-player step and driver with
#: test_smoke[gan_mnist]; crbm_mnist (12 s) — tests/energies/test_conv_rbm.py (every
#: conditional, the free energy and Gibbs against enumeration), test_experiment_crbm.py;
#: diffusion_2d (11 s) — tests/models/test_diffusion.py and test_smoke[ddpm_mnist] (the same
#: library through the driver); flow_2d (21 s) — tests/models/test_flows.py (inverses,
#: Jacobians, densities integrating to 1) and test_smoke[flow_mnist] (the flows through the
#: driver, and the family's kill-and-resume); estimator_variance (14 s) —
#: tests/estimators/test_gradient_study.py and test_gradients.py (every estimator against
#: exact gradients).  Their kill-and-resume runs are in the slow suite as well.  Moved when
#: the clean-clone suite measured 676 s (BUILD_NOTES.md, fourth session of 2026-12-01):
#: mpot_patches (15 s) — tests/energies/test_mpot.py and test_smoke[mcrbm_patches] (the same
#: patch pipeline, denoising evaluation and driver); ssrbm_patches (11 s) —
#: tests/energies/test_ssrbm.py and test_smoke[grbm_patches] (the family's kill-and-resume);
#: mpdbm_mnist (12 s) — tests/estimators/test_mpdbm.py (clamped mean field, the MP loss) and
#: test_smoke[dbm_mnist] (the DBM evaluation path); gan_2d (8 s) — test_smoke[gmmn_2d] (the
#: same toy2d implicit hooks), test_smoke[gan_mnist] (the GAN's multi-player step) and
#: tests/data/test_data_toy.py (ring_mode_coverage).  Then (604 s): dbm_mnist (22 s) —
#: test_smoke[dbn_mnist] (the family's kill-and-resume), tests/estimators/test_ais.py and
#: tests/eval/test_likelihood.py (DBM AIS and the DBM bracket against exact answers),
#: test_experiment_dbm.py's config checks; grbm_mnist (13 s) —
#: tests/energies/test_grbm.py and test_smoke[grbm_patches] (the same GRBM and driver);
#: dae_mnist (9 s) — tests/models/test_dae.py (every output, clamping, walk-back) and
#: test_smoke[dae_2d]; gsn_mnist (8 s) — tests/models/test_gsn.py, test_gsn_order.py.
#: Moved when the clean-clone suite measured 674 s (BUILD_NOTES.md, session of 2026-12-02):
#: nade_mnist (27 s) — tests/models/test_nade.py, test_made.py, test_neural_ar.py,
#: test_fvsbn.py (every model normalised, against naive or enumerated answers) and
#: test_smoke[sbn_mnist] (the directed family's driver path and kill-and-resume); draw_mnist
#: (14 s) — tests/models/test_draw.py (the loss is the negative ELBO, ancestral samples
#: follow the exact marginal) and test_smoke[gumbel_vae_mnist] (the VAE family's driver path
#: and kill-and-resume).  Then (638 s; the main job took 110 s against 101 s the session
#: before: this machine ran ~9 % slower): mcrbm_patches (19 s) — tests/energies/test_mcrbm.py
#: (block Gibbs and HMC against exact moments), tests/eval/test_denoise.py (the denoising
#: evaluation) and test_smoke[grbm_patches] (the patch pipeline, driver and kill-and-resume;
#: mpot_patches' claims rest on the same three); vae_mnist (19 s) — tests/models/test_vae.py
#: (every bound exact under the exact posterior, categorical bounds against enumeration, the
#: draws' stream), test_experiment_vae.py (config errors, the CLI message, the lr schedule)
#: and test_smoke[gumbel_vae_mnist].  Then (606 s on an AVX2 AMD EPYC, Zen 3, the slowest CPU
#: yet: the main job 129 s): mnist_classifier (11 s, and with it the feature net's
#: kill-and-resume) — tests/eval/test_features.py (the shipped network: its test error on the
#: embedded digits, normalised class probabilities, the file's checks) and
#: test_experiment_classifier.py (the export copies the written weights byte for byte, config
#: errors); the driver's train-phase kill-and-resume stays in test_smoke[rbm_mnist].
SLOW_SMOKE = ("rnnrbm_jsb", "lapgan_mnist", "dcgan_mnist", "crbm_mnist", "diffusion_2d",
              "flow_2d", "estimator_variance", "mpot_patches", "ssrbm_patches", "mpdbm_mnist",
              "gan_2d", "dbm_mnist", "grbm_mnist", "dae_mnist", "gsn_mnist", "nade_mnist",
              "draw_mnist", "mcrbm_patches", "vae_mnist", "mnist_classifier")  # fmt: skip


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SMOKE else n for n in FILES]
)
def test_smoke(name, tmp_path):
    wd = tmp_path / "run"
    case, mod, cfg, res = _run_case(name, wd)
    _check_driver_contract(name, case, mod, cfg, res, wd)
    CHECKS[name](res, cfg, wd, mod)
    if name in RESUME:
        _kill_and_resume(mod, cfg, wd, RESUME[name])


_UNTRAINED = ("estimator_variance", "abc_conjugate")  # no training phase: nothing to resume
_TRAINED = [n for n in FILES if n not in RESUME and n not in _UNTRAINED]
_SLOW_KILL = {"dbm_mnist": "joint"}  # as in the old test: killed in joint training
_SLOW_OVERRIDES = {"vae_mnist": {"max_epochs": 2}, "draw_mnist": {"epochs": 2}}  # 2 epochs


@pytest.mark.slow
@pytest.mark.parametrize("name", _TRAINED)
def test_kill_and_resume_slow(name, tmp_path):
    """The kill-and-resume of the families' representatives for every other experiment that
    trains (killed in its last phase unless said otherwise)."""
    case = CASES[name]
    mod = load_experiment(case.module)
    over = {**case.overrides, **_SLOW_OVERRIDES.get(name, {})}
    cfg = tiny(f"{case.module}:{case.preset}", tmp_path, **over)
    run.run(mod.EXPERIMENT, cfg)
    _kill_and_resume(mod, cfg, tmp_path, _SLOW_KILL.get(name, list(_epochs_of(mod, cfg))[-1]))
