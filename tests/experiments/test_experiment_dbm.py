"""The DBM family on the run driver: dbm_mnist, dbn_mnist, mpdbm_mnist.

The centered DBM variant, bad configs, and the seed sweep of the DBM (greedy phases, joint
training and fine-tuning vmapped) against separate runs.  The tiny presets, their records and
the resume after a run killed mid-stack: test_smoke.py."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError
from egm.run import deep


def _phases(wd):
    recs = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    return [(r["phase"], r["epoch"]) for r in recs]


# slow: the dbm smoke case runs the pretrained path through the driver (suite time, issue 12)
@pytest.mark.slow
def test_dbm_mnist_centered_tiny(tmp_path):
    exp = load_experiment("dbm_mnist")
    cfg = tiny("dbm_mnist", tmp_path, variant="centered", epochs=1, finetune_epochs=0)
    res = run.run(exp.EXPERIMENT, cfg)
    assert "centered" in res["model"] and res["test_loglik_bound"]["value"] < 0
    assert [p for p, _ in _phases(tmp_path)] == ["joint"]


def test_dbm_mnist_rejects_bad_config(tmp_path):
    exp = load_experiment("dbm_mnist")
    with pytest.raises(ConfigError, match="variant"):
        run.run(exp.EXPERIMENT, tiny("dbm_mnist", tmp_path, variant="deep"))
    with pytest.raises(ConfigError, match="mean_field_iters"):
        run.run(exp.EXPERIMENT, tiny("dbm_mnist", tmp_path, mean_field_iters=0))
    with pytest.raises(ConfigError, match="cannot be vmapped"):
        run.parse_args(exp.PRESETS, ["--config", "tiny", "--sweep", "n_h1=4,8"])


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
def test_dbm_mnist_seed_sweep_equals_separate_runs(tmp_path):
    """A vmapped sweep of 2 seeds (both greedy layers, joint PCD and fine-tuning on the
    sweep axis, each member pushing its data through its own frozen layers) ends with the
    figures of 2 separate runs.  Measured (float32, vmap reorders float ops): log Z within
    1.1e-4, the test bound within 3e-5 nats, the test error identical; asserted to 1e-3."""
    exp = load_experiment("dbm_mnist")
    cfg = tiny("dbm_mnist", tmp_path / "sweep", finetune_epochs=1)
    swept = run.run(exp.EXPERIMENT, cfg, {"seed": (0, 1)})
    assert [m["overrides"] for m in swept["members"]] == [{"seed": 0}, {"seed": 1}]
    for i, member in enumerate(swept["members"]):
        alone = run.run(exp.EXPERIMENT, dataclasses.replace(cfg, seed=i,
                                                            workdir=str(tmp_path / f"s{i}")))  # fmt: skip
        assert member["log_z"] == pytest.approx(alone["log_z"], abs=1e-3)
        got, want = member["test_loglik_bound"]["value"], alone["test_loglik_bound"]["value"]
        assert got == pytest.approx(want, abs=1e-3)
        assert member["test_error"] == pytest.approx(alone["test_error"], abs=2e-3)
    a, b = (m["log_z"] for m in swept["members"])
    assert abs(a - b) > 1e-3  # the seeds really differ
    assert swept["summary"]["test_loglik_bound"]["n"] == 2


def test_dbn_mnist_rejects_bad_config(tmp_path):
    exp = load_experiment("dbn_mnist")
    with pytest.raises(ConfigError, match="one entry per layer"):
        run.parse_args(exp.PRESETS, ["--config", "tiny", "--hidden", "8,8", "--layer_epochs", "1"])
    with pytest.raises(ConfigError, match="binarization"):
        run.parse_args(exp.PRESETS, ["--config", "tiny", "--binarization", "dynamic"])
    with pytest.raises(ConfigError, match="hidden must be comma-separated"):
        run.parse_args(exp.PRESETS, ["--hidden", "8,x", "--layer_epochs", "1,1"])
    # (a work dir holding checkpoints of another config is refused: test_smoke[dbn_mnist],
    # on the checkpoints of its tiny run, instead of training another DBN here)


@pytest.mark.slow  # two tiny runs with sample scores: ~1 min on 2 cores
@pytest.mark.parametrize("name", ["dbm_mnist", "dbn_mnist"])
def test_score_samples_scores_the_declared_sampler(name, tmp_path):
    """``--score_samples 100``: the experiment's declared sampler (DBM block Gibbs, DBN
    top-RBM Gibbs then the ancestral pass down; both checked against exact marginals in
    tests/energies/test_dbm.py and tests/models/test_dbn.py) gives the driver 100 digits,
    which it scores: Fréchet distance, classifier score, Parzen window on the test digits and the copy
    check with its picture."""
    exp = load_experiment(name)
    cfg = tiny(name, tmp_path, score_samples=100)
    res = run.run(exp.EXPERIMENT, cfg)
    assert res["frechet_samples"] == 100 and res["frechet_distance"] > 0
    # a tiny, barely trained model is farther from the test digits than held-out digits are
    # (measured: FD ~700 against a floor ~19); a sampler that returned data would fail this
    assert res["frechet_distance"] > 5 * res["frechet_floor"]
    assert np.isfinite(res["classifier_score"])
    assert res["parzen_test"]["method"] == "parzen"
    assert 0.0 <= res["copy_pixels_fraction_below_threshold"] <= 1.0
    assert (tmp_path / "copies.png").exists()


@pytest.mark.parametrize(("name", "phase", "flag"), [("dbn_mnist", "finetune", "ft_patience"),
                                                      ("dbm_mnist", "finetune", "ft_patience"),
                                                      ("mpdbm_mnist", "train", "patience")])  # fmt: skip
def test_classifier_phases_select_on_validation_with_patience(name, phase, flag):
    """``--ft_patience p`` (the DBN's and the DBM's fine-tuning) and ``--patience p`` (the
    MP-DBM's training): the phase selects on its monitored ``valid_error`` with patience p
    (the driver's early stopping, tests/run/test_driver_select.py); unset, it keeps the last
    epoch as before (still monitoring the validation error)."""
    from egm.run import config as cfglib

    mod = load_experiment(name)
    on, _ = cfglib.parse_args(mod.PRESETS, ["--config", "tiny", f"--{flag}", "3"])
    off, _ = cfglib.parse_args(mod.PRESETS, ["--config", "tiny"])
    ph_on, ph_off = mod.phases(on)[-1], mod.phases(off)[-1]
    assert (ph_on.name, ph_on.select, ph_on.patience(on)) == (phase, "valid_error", 3)
    assert ph_off.select is None and ph_off.patience(off) == 0 and ph_off.monitor is not None
    with pytest.raises(ConfigError, match=flag):
        cfglib.parse_args(mod.PRESETS, ["--config", "tiny", f"--{flag}", "-1"])


@pytest.mark.parametrize("name", ["dbn_mnist", "dbm_mnist"])
def test_finetuning_sees_the_grey_or_the_binarized_digits(name):
    """``ft_inputs``: the fine-tuning phase trains on, and its validation / test error is
    measured on, the grey digits (the default, as the DBN and DBM papers fine-tune) or with
    ``--ft_inputs binary`` on the binarized ones the model trains on; the data are loaded
    with the grey splits only when they are needed; a misspelt value is refused."""
    from egm.run import config as cfglib

    mod = load_experiment(name)
    for inputs in ("grey", "binary"):
        cfg, _ = cfglib.parse_args(mod.PRESETS, ["--config", "tiny", "--ft_inputs", inputs])
        d = cfg.load_data()
        assert (d.grey is not None) == (inputs == "grey")
        x, y = mod.phases(cfg)[-1].train_data(cfg, d, {})
        want = (d.grey if inputs == "grey" else d.binary)["train"]
        np.testing.assert_array_equal(x, want)
        np.testing.assert_array_equal(y, d.labels["train"])
        for split in ("valid", "test"):
            np.testing.assert_array_equal(
                deep.ft_digits(cfg, d, split), (d.grey if inputs == "grey" else d.binary)[split]
            )
    default, _ = cfglib.parse_args(mod.PRESETS, ["--config", "tiny"])
    assert default.ft_inputs == "grey"
    assert not np.array_equal(d.binary["train"], default.load_data().grey["train"])
    with pytest.raises(ConfigError, match="ft_inputs"):
        cfglib.parse_args(mod.PRESETS, ["--config", "tiny", "--ft_inputs", "gray"])
    with pytest.raises(ConfigError, match="keep_grey=True"):
        deep.ft_digits(default, d, "test")  # binary-only data for a grey config
