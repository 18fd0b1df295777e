"""gmmn_mnist's code space (GMMN+AE) and gmmn_2d beyond the smoke test: their config errors
(no compilation), and a tiny GMMN+AE run (slow): the autoencoder phase, then the generator on
its codes, the code-space figures and the published GMMN+AE Parzen figure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _experiments import load_experiment

from egm import run
from egm.errors import ConfigError
from egm.eval.directed import GENERATOR_SIGMAS
from egm.run import config as cfglib


@pytest.mark.parametrize(
    ("name", "args", "match"),
    [
        ("gmmn_mnist", ["--space", "pixels"], "space"),
        ("gmmn_mnist", ["--space", "code", "--ae_dropout", "0.2"], "one dropout rate"),
        ("gmmn_mnist", ["--space", "code", "--ae_hidden", "1024,0"], "> 0"),
        ("gmmn_mnist", ["--space", "code", "--code_kernel_variances", "0"], "> 0"),
        ("gmmn_2d", ["--datasets", "moons"], "datasets"),
        ("gmmn_2d", ["--bandwidths", "0.1,-1"], "> 0"),
        ("gmmn_2d", ["--sweep", "hidden=8,16"], "cannot be vmapped"),
    ],
)
def test_bad_configs(name, args, match):
    mod = load_experiment(name)
    with pytest.raises(ConfigError, match=match):
        cfglib.parse_args(mod.PRESETS, ["--config", "tiny", *args])


def test_code_space_kernels_and_published_figure():
    """GMMN+AE trains on the code with Li et al.'s one kernel σ² = 1 (bandwidth 1), scores
    decoded samples with the data kernels, and is placed beside GMMN+AE's 282 ± 2 nats."""
    mod = load_experiment("gmmn_mnist")
    cfg = mod.PRESETS["paper_code"]
    assert cfg.bandwidths == (1.0,) and mod.generator(cfg).out_dim == 32
    assert mod.EXPERIMENT.published(cfg) == {"parzen_test": "gmmn_ae_parzen"}
    assert [p.name for p in mod.EXPERIMENT.phases(cfg)] == ["autoencoder", "train"]
    assert [p.name for p in mod.EXPERIMENT.phases(mod.PRESETS["paper"])] == ["train"]


@pytest.mark.slow
def test_gmmn_ae_tiny_run(tmp_path):
    """A tiny GMMN+AE run: one metrics line per epoch of each phase in order, the code-space
    MMD² above its floor after 2 epochs, a positive reconstruction cross-entropy below that of
    the all-0.5 reconstruction (784 log 2 = 543 nats), and samples in [0, 1].  Decoder AIS
    through the uniform latent and the decoder (Wu et al.'s protocol; its exactness is
    tests/eval/test_directed.py's): a finite lower-bound record with σ on the grid."""
    mod = load_experiment("gmmn_mnist")
    cfg = dataclasses.replace(mod.PRESETS["tiny"], space="code", ae_hidden="32,4",
                              ae_epochs=2, workdir=str(tmp_path), decoder_ais_temps=5,
                              decoder_ais_chains=2, decoder_ais_size=4)  # fmt: skip
    res = run.run(mod.EXPERIMENT, cfg)
    rec = res["test_loglik_decoder_ais"]
    assert (
        rec["bound"] == "lower" and np.isfinite(rec["value"]) and rec["counts"]["temperatures"] == 5
    )
    assert res["decoder_ais_sigma"] in GENERATOR_SIGMAS
    assert res["code_test_mmd2"] > res["code_test_mmd2_floor"]
    assert 0 < res["autoencoder_test_cross_entropy_nats"] < 543.0
    assert res["published"]["parzen_test"]["value"] == 282.0
    assert res["schedule"]["phases"]["autoencoder"]["epochs"] == 2
    assert (tmp_path / "samples.png").exists()
