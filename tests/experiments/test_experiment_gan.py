"""gan_mnist and gmmn_mnist beyond the smoke test: bad configs, and the seed sweep with sample
scores (the issue's distribution of the Fréchet distance across seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError
from egm.run import config as cfglib


@pytest.mark.parametrize(
    ("name", "args", "match"),
    [
        ("gan_mnist", ["--k", "0"], "k"),
        ("gan_mnist", ["--loss", "hinge"], "loss"),
        ("gan_mnist", ["--gen_hidden", "32,0"], "widths"),
        ("gan_mnist", ["--input_keep", "0"], "input_keep"),
        ("gmmn_mnist", ["--kernel_variances", "2,0"], "> 0"),
        ("gmmn_mnist", ["--latent_dim", "0"], "latent_dim"),
        ("gan_mnist", ["--bdmc_examples", "3"], "decoder_ais_temps"),
        ("gan_2d", ["--gen_hidden", "16,0"], "> 0"),
        ("gan_2d", ["--datasets", "moons"], "datasets"),
        ("gan_2d", ["--loss", "hinge"], "loss"),
        ("gmmn_mnist", ["--bdmc_examples", "3"], "decoder_ais_temps"),
    ],
)
def test_bad_configs(name, args, match):
    mod = load_experiment(name)
    with pytest.raises(ConfigError, match=match):
        cfglib.parse_args(mod.PRESETS, ["--config", "tiny", *args])


def test_gmmn_bandwidths_are_the_square_roots_of_li_et_al_variances():
    mod = load_experiment("gmmn_mnist")
    bw = mod.PRESETS["paper"].bandwidths
    assert np.asarray(bw) ** 2 == pytest.approx([2, 5, 10, 20, 40, 80], rel=1e-12)


@pytest.mark.slow
def test_gan_seed_sweep_scores_every_member(tmp_path):
    """``--sweep seed=0:2 --score_samples 100``: each member has its Fréchet distance and the
    summary is their mean and sample sd; members differ (different seeds, different GANs)."""
    mod = load_experiment("gan_mnist")
    cfg = tiny("gan_mnist", tmp_path, score_samples=100, epochs=1)
    res = run.run(mod.EXPERIMENT, cfg, {"seed": [0, 1]})
    fds = [m["frechet_distance"] for m in res["members"]]
    assert all(np.isfinite(fds)) and fds[0] != fds[1]
    s = res["summary"]["frechet_distance"]
    assert s["mean"] == pytest.approx(np.mean(fds)) and s["sd"] == pytest.approx(
        np.std(fds, ddof=1)
    )
    assert res["members"][0]["parzen_test"]["method"] == "parzen"
    assert res["published"]["parzen_test"]["value"] == 225.0
