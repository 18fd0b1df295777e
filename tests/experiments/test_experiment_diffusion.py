"""ddpm_mnist beyond its smoke case: the U-Net ε_θ through the driver."""

from __future__ import annotations

import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError
from egm.run import config as cfglib


@pytest.mark.slow
def test_unet_tiny_run(tmp_path):
    """``--net unet`` (channels 8) on the tiny preset: the bound on the discrete NLL of the
    8-bit digits is a proper one (every term ≥ 0, so bits/dim > 0) and below the 8 bits of the
    uniform distribution after one epoch (measured 5.43), and the results name the U-Net."""
    mod = load_experiment("ddpm_mnist")
    res = run.run(mod.EXPERIMENT, tiny("ddpm_mnist", tmp_path, net="unet", channels=8))
    assert 0 < res["test_bits_per_dim"]["value"] < 8
    assert min(res["bound_terms_bits_per_dim"].values()) >= 0
    assert res["model"].startswith("DDPM, ε-prediction U-Net 8 x (1, 2, 2)")


def test_bad_net_values_are_refused():
    mod = load_experiment("ddpm_mnist")
    for argv, match in ((["--net", "resnet"], "net"), (["--channels", "2"], "channels"),
                        (["--res_blocks", "0"], "res_blocks")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            cfglib.parse_args(mod.PRESETS, ["--config", "tiny", *argv])
    assert mod.PRESETS["paper"].net == "unet"
