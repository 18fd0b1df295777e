"""dae_mnist beyond its smoke case: the NADE reconstruction distribution through the driver."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _experiments import load_experiment, tiny

from egm import run


@pytest.mark.slow
def test_nade_output_tiny_run(tmp_path):
    """``--output nade`` trains, samples and inpaints: the reconstruction cost lies below the
    uniform P(x|x̃)'s 784 log 2 nats; the inpainting log-likelihood of the true bottom half is
    a proper log-probability (< 0; exact for the NADE, whose ordering starts at the bottom
    row); the classifier labels the full digits better than the half-noise ones (as the
    smoke test's check for the factorial output).  The default tests that keep these claims:
    tests/models/test_dae.py (the NADE output's table, block marginals and samples)."""
    mod = load_experiment("dae_mnist")
    res = run.run(mod.EXPERIMENT, tiny("dae_mnist:tiny", tmp_path, output="nade", nade_hidden=16))
    assert 0 < res["test_recon_nll"] < 784 * math.log(2)
    assert res["inpaint_loglik_missing"] < 0 and res["inpaint_loglik_missing_start"] < 0
    assert res["inpaint_accuracy_full"] > res["inpaint_accuracy_start"] + 0.2
    assert "nade" in res["model"] and np.isfinite(res["test_recon_nll_stderr"])


def test_gsn_scores_its_p_x_given_h_against_the_grey_digits():
    """gsn_mnist's ``--score_samples``: by default (``score_on="grey"``) the chain's p(x|h)
    against the grey digits, the protocol of the published deep-GSN Parzen figure it is
    placed beside; ``--score_on binary``: the chain's binary draws against the binarized
    digits (the grey splits are then not loaded).  Each protocol says which (the driver
    stores ``score_protocol`` with the record: the tiny run below, in the slow suite)."""
    from types import SimpleNamespace

    import jax

    from egm.models import gsn
    from egm.run import config as cfglib

    mod = load_experiment("gsn_mnist")
    for score_on in ("grey", "binary"):
        cfg, _ = cfglib.parse_args(mod.PRESETS, ["--config", "tiny", "--score_on", score_on])
        d = mod.EXPERIMENT.load(cfg)
        splits = mod.EXPERIMENT.score_splits(cfg, d)
        assert splits is (d.grey if score_on == "grey" else d.binary)
        assert (d.grey is None) == (score_on == "binary")
        params = gsn.init_params(jax.random.key(0), mod.model(cfg), np.mean(d.binary["train"], 0))
        x = mod.sample(cfg, d, {"gsn": SimpleNamespace(params=params)}, jax.random.key(1), 20)
        assert x.shape == (20, 784) and ((0 < x) & (x < 1)).any() == (score_on == "grey")
        words = "p(x|h) against the grey digits" if score_on == "grey" else "binary draws"
        assert words in mod.EXPERIMENT.score_protocol(cfg, d)


@pytest.mark.slow  # 15 s: a tiny gsn_mnist run with scores; its default companion is the
# test above (the same score_protocol and samples), which the driver stores with the record
def test_gsn_record_says_it_scores_against_the_grey_digits(tmp_path):
    """The tiny gsn_mnist run's Parzen record carries the grey-digit protocol and the
    published figure it is placed beside."""
    mod = load_experiment("gsn_mnist")
    res = run.run(mod.EXPERIMENT, tiny("gsn_mnist", tmp_path, score_samples=100))
    assert "p(x|h) against the grey digits" in res["parzen_test"]["protocol"]
    assert res["published"]["parzen_test"]["value"] == 214.0
