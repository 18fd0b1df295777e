"""The DBM family on the run driver (tiny presets): dbm_mnist, dbn_mnist, mpdbm_mnist.

Records in the results, bad configs, resume after a run killed mid-stack, and the seed
sweep of the DBM (greedy phases, joint training and fine-tuning vmapped) against separate
runs."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError


def _phases(wd):
    recs = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    return [(r["phase"], r["epoch"]) for r in recs]


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
def test_dbm_mnist_pretrained_tiny_records_and_resume(tmp_path):
    """Greedy phases pretrain0/1, joint, finetune; then a run killed during joint training
    (its last checkpoint and the fine-tuning deleted) resumes to the same figures."""
    exp = load_experiment("dbm_mnist")
    wd = tmp_path / "run"
    cfg = tiny("dbm_mnist", wd)
    res = run.run(exp.EXPERIMENT, cfg)
    for name in ("config.json", "metrics.jsonl", "results.json", "samples.png", "filters.png"):
        assert (wd / name).exists(), name
    rec = res["test_loglik_bound"]
    assert rec["method"] == "variational_bound" and rec["bound"] == "lower"
    assert rec["value"] < 0 and rec["split"] == "test" and np.isfinite(res["log_z"])
    assert res["train_loglik_bound"]["split"] == "train"
    assert 0.0 <= res["test_error"] <= 1.0 and res["mean_field_residual_max"] <= 1e-5
    assert _phases(wd) == [("pretrain0", 0), ("pretrain1", 0), ("joint", 0), ("joint", 1),
                           ("finetune", 0)]  # fmt: skip
    shutil.rmtree(wd / "checkpoints" / "joint" / "1")
    shutil.rmtree(wd / "checkpoints" / "finetune")
    res2 = run.run(exp.EXPERIMENT, cfg)
    for k in ("log_z", "test_error"):
        assert res2[k] == pytest.approx(res[k], abs=1e-5), k
    assert res2["test_loglik_bound"]["value"] == pytest.approx(rec["value"], abs=1e-4)
    assert _phases(wd) == [("pretrain0", 0), ("pretrain1", 0), ("joint", 0), ("joint", 1),
                           ("finetune", 0)]  # fmt: skip


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


def test_dbn_mnist_tiny_records_and_resume(tmp_path):
    """A run killed during layer 1's second epoch and before fine-tuning restores layer 0,
    resumes layer 1 from its epoch-0 checkpoint and reproduces the bound and the errors."""
    exp = load_experiment("dbn_mnist")
    wd = tmp_path / "run"
    cfg = tiny("dbn_mnist", wd)
    res = run.run(exp.EXPERIMENT, cfg)
    for name in ("config.json", "metrics.jsonl", "results.json", "samples.png", "filters.png"):
        assert (wd / name).exists(), name
    rec = res["test_loglik_lower_bound"]
    assert rec["method"] == "variational_bound" and rec["value"] < 0 and rec["stderr"] > 0
    assert 0.0 <= res["test_error"] <= 1.0 and res["model"] == "DBN 784-16-32"
    assert "binarization" in rec["protocol"] and "AIS" in res["lower_bound"]
    assert 0.0 <= res["test_error_before_finetuning"] <= 1.0
    assert _phases(wd) == [("layer0", 0), ("layer0", 1), ("layer1", 0), ("layer1", 1),
                           ("finetune", 0), ("finetune", 1)]  # fmt: skip
    shutil.rmtree(wd / "checkpoints" / "layer1" / "1")
    shutil.rmtree(wd / "checkpoints" / "finetune")
    res2 = run.run(exp.EXPERIMENT, cfg)
    for key in ("log_z_top", "test_error", "valid_error", "test_error_before_finetuning"):
        assert res2[key] == pytest.approx(res[key], abs=1e-6), key
    assert res2["test_loglik_lower_bound"]["value"] == pytest.approx(rec["value"], abs=1e-5)


def test_dbn_mnist_rejects_bad_config(tmp_path):
    exp = load_experiment("dbn_mnist")
    with pytest.raises(ConfigError, match="one entry per layer"):
        run.parse_args(exp.PRESETS, ["--config", "tiny", "--hidden", "8,8", "--layer_epochs", "1"])
    with pytest.raises(ConfigError, match="binarization"):
        run.parse_args(exp.PRESETS, ["--config", "tiny", "--binarization", "dynamic"])
    with pytest.raises(ConfigError, match="hidden must be comma-separated"):
        run.parse_args(exp.PRESETS, ["--hidden", "8,x", "--layer_epochs", "1,1"])
    # a work dir holding checkpoints of another config is refused before any training
    wd = tmp_path / "w"
    run.run(exp.EXPERIMENT, tiny("dbn_mnist", wd, layer_epochs="1,1", ft_epochs=0))
    with pytest.raises(ConfigError, match="different config"):
        run.run(exp.EXPERIMENT, tiny("dbn_mnist", wd, layer_epochs="1,1", ft_epochs=1))


def test_mpdbm_mnist_tiny(tmp_path):
    exp = load_experiment("mpdbm_mnist")
    res = run.run(exp.EXPERIMENT, tiny("mpdbm_mnist", tmp_path))
    assert (tmp_path / "fill_in.png").exists() and (tmp_path / "results.json").exists()
    assert 0.0 <= res["test_error"] <= 1.0 and 0.0 <= res["valid_error"] <= 1.0
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert all(np.isfinite(r["loss"]) and "valid_error" in r for r in lines)
    with pytest.raises(ConfigError, match="hide_prob"):
        run.run(exp.EXPERIMENT, tiny("mpdbm_mnist", tmp_path, hide_prob=1.5))
