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
