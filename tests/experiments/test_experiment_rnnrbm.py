"""rnnrbm_jsb beyond its smoke case: bad configs, the conditional RBM and the AIS path, the
RNN-NADE."""

from __future__ import annotations

import math

import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError
from egm.run import config as cfglib


def test_bad_config_values_are_refused():
    mod = load_experiment("rnnrbm_jsb")
    for argv, match in ((["--model", "lstm"], "model"), (["--k", "0"], "k"),
                        (["--loglik", "pseudo"], "loglik"),
                        (["--model", "rnn_nade", "--loglik", "ais"], "exact"),
                        (["--n_hidden", "32", "--patience", "5"], "exact validation"),
                        (["--model", "rnn_nade", "--patience", "-1"], "patience")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            cfglib.parse_args(mod.PRESETS, ["--config", "tiny", *argv])


@pytest.mark.slow
def test_rnn_nade_tiny_run(tmp_path):
    """The RNN-NADE through the driver (NADE pretraining, then the exact gradient through
    time): an exact per-step record over the 4725 test frames, a proper normalised density
    (< 0) no worse than 0.5 nats below the independent-keys baseline of -11.10 after 2 tiny
    epochs (measured -11.04), and a frame accuracy in [0, 1]; the tiny model's published
    entry is absent (only the 150-unit model is placed beside the paper)."""
    mod = load_experiment("rnnrbm_jsb")
    res = run.run(mod.EXPERIMENT, tiny("rnnrbm_jsb:tiny", tmp_path, model="rnn_nade"))
    rec = res["test_loglik_per_step"]
    assert rec["method"] == "exact" and rec["bound"] is None and rec["counts"]["frames"] == 4725
    assert -11.6 < rec["value"] < 0 and 0.0 <= res["test_frame_accuracy"] <= 1.0
    assert res["model"].startswith("RNN-NADE") and res["published"] == {}
    assert "exact gradient" in res["training"]


@pytest.mark.slow
def test_crbm_with_ais_log_likelihood(tmp_path):
    """The conditional RBM (order 2, no pretraining) evaluated by AIS per frame: the record
    is an AIS upper bound (forward AIS under-estimates log Z_t) with its Monte-Carlo error,
    and within 5 of its standard errors (plus the -se²/2 AIS bias, negligible) of the same
    model's exact per-step figure."""
    mod = load_experiment("rnnrbm_jsb")
    common = dict(model="crbm", order=2, pretrain_epochs=0, epochs=1)
    res_ais = run.run(mod.EXPERIMENT, tiny("rnnrbm_jsb:tiny", tmp_path / "a", loglik="ais",
                                           ais_chains=8, ais_temps=200, **common))  # fmt: skip
    res_ex = run.run(mod.EXPERIMENT, tiny("rnnrbm_jsb:tiny", tmp_path / "e", **common))
    a, e = res_ais["test_loglik_per_step"], res_ex["test_loglik_per_step"]
    assert a["method"] == "ais" and a["bound"] == "upper" and a["counts"]["chains"] == 8
    assert e["method"] == "exact" and "order 2" in res_ex["model"]
    assert math.isfinite(a["stderr"]) and abs(a["value"] - e["value"]) <= 5 * a["stderr"] + 1e-3
