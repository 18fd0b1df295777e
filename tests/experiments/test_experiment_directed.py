"""Directed and autoregressive experiments through the run driver: sbn_mnist (Helmholtz
machines), nade_mnist (FVSBN, NADE, EoNADE, MADE: one phase each) and estimator_variance
(no training phase: evaluate measures).  Other estimators, a seed sweep, bad input; the tiny
presets, their records and the kill-and-resume: test_smoke.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError

SBN = load_experiment("sbn_mnist")
NADE = load_experiment("nade_mnist")
EV = load_experiment("estimator_variance")


# ------------------------------------------------------------------------------ sbn_mnist


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [{"estimator": "rws", "q_update": "both"},
     {"estimator": "wake_sleep", "binarization": "dynamic"}],
)  # fmt: skip
def test_sbn_other_estimators(tmp_path, extra):
    res = run.run(SBN.EXPERIMENT, tiny("sbn_mnist", tmp_path, epochs=1, **extra))
    assert np.isfinite(res["test_loglik"]["value"]) and res["test_loglik"]["value"] < 0


# slow: 15 s, nearly all of it the scores; the smoke test's samples.png runs the same sampler
@pytest.mark.slow
def test_sbn_samples_are_scored(tmp_path):
    """``--score_samples 100`` on the tiny SBN (the smoke test's training config; the field
    is eval-only): the driver draws exact ancestral samples (``Experiment.sample``, tested
    against the enumerated p(x) in tests/models/test_sbn.py) and records their scores."""
    res = run.run(SBN.EXPERIMENT, tiny("sbn_mnist", tmp_path, score_samples=100))
    assert res["frechet_samples"] == 100 and np.isfinite(res["frechet_distance"])
    assert res["parzen_test"]["method"] == "parzen" and 1.0 <= res["classifier_score"] <= 10.0
    assert (tmp_path / "copies.png").exists()


def test_sbn_full_preset_epochs_follow_the_estimator():
    full = SBN.PRESETS["full"]
    assert full.n_epochs() == SBN.FULL_EPOCHS["nvil"]
    assert dataclasses.replace(full, estimator="rws").n_epochs() == 30
    assert dataclasses.replace(full, epochs=5).n_epochs() == 5


def test_sbn_rejects_bad_config(tmp_path, capsys):
    for argv, msg in [
        (["--estimator", "vae"], "estimator must be one of"),
        (["--hidden", "a,b"], "hidden must be comma-separated"),
        (["--data_dir", str(tmp_path)], "source idx"),
    ]:
        with pytest.raises(SystemExit) as e:
            run.main(SBN.EXPERIMENT, ["--config", "tiny", "--workdir", str(tmp_path), *argv])
        assert e.value.code == 2 and msg in capsys.readouterr().err
    with pytest.raises(ConfigError, match="alpha"):
        run.run(SBN.EXPERIMENT, tiny("sbn_mnist", tmp_path, alpha=1.0))
    with pytest.raises(ConfigError, match="cannot be vmapped"):
        run.parse_args(SBN.PRESETS, ["--sweep", "hidden=4,8"])


# ------------------------------------------------------------------------------ nade_mnist


# slow: 33 s cold; the RBM, VAE and GRBM sweep == separate-runs tests stay in the default suite
@pytest.mark.slow
def test_nade_sweep_of_seeds_equals_separate_runs(tmp_path):
    """MADE (its mask family lives in the train state, so each seed has its own): a vmapped
    sweep of 2 seeds gives the same models as 2 separate runs.  Tolerance: vmap batches the
    same float32 ops (batched GEMMs may sum in another order); measured max |difference| of
    the test log-likelihood 3e-7 nats after 2 epochs (CPU); 1e-4 nats leaves room while the
    other seed's model differs by 0.1 nat."""
    cfg = tiny("nade_mnist", tmp_path / "sweep", models="made")
    res = run.run(NADE.EXPERIMENT, cfg, {"seed": (0, 1)})
    assert len(res["members"]) == 2 and res["summary"]["made_test_loglik"]["n"] == 2
    values = []
    for i, m in enumerate(res["members"]):
        one = dataclasses.replace(cfg, workdir=str(tmp_path / f"m{i}"), seed=i)
        alone = run.run(NADE.EXPERIMENT, one)
        assert m["overrides"] == {"seed": i}
        value = alone["made_test_loglik"]["value"]
        assert m["made_test_loglik"]["value"] == pytest.approx(value, abs=1e-4)
        single = "made_test_loglik_single_member_nats"
        assert m[single] == pytest.approx(alone[single], abs=1e-4)
        values.append(value)
    assert abs(values[0] - values[1]) > 0.01  # the seeds do differ


def test_nade_rejects_bad_config(tmp_path):
    with pytest.raises(ConfigError, match="models"):
        run.run(NADE.EXPERIMENT, tiny("nade_mnist", tmp_path, models="nade,pixelcnn"))
    with pytest.raises(ConfigError, match="eonade_hidden"):
        run.run(NADE.EXPERIMENT, tiny("nade_mnist", tmp_path, eonade_hidden="500,x"))
    with pytest.raises(ConfigError, match="made_learning_rate"):
        run.run(NADE.EXPERIMENT, tiny("nade_mnist", tmp_path, made_learning_rate=-1.0))
    with pytest.raises(ConfigError, match="cannot be vmapped"):
        run.parse_args(NADE.PRESETS, ["--sweep", "made_masks=1,2"])


# ------------------------------------------------------------------------ estimator_variance


def test_estimator_variance_rejects_bad_config(tmp_path):
    with pytest.raises(ConfigError, match="n_samples"):
        run.run(EV.EXPERIMENT, tiny("estimator_variance", tmp_path, n_samples=1))
    with pytest.raises(ConfigError, match="taus"):
        run.run(EV.EXPERIMENT, tiny("estimator_variance", tmp_path, taus="0,1"))
    with pytest.raises(ConfigError, match="too many to enumerate"):
        run.run(EV.EXPERIMENT, tiny("estimator_variance", tmp_path, n_classes=20, n_groups=4))
