"""Directed and autoregressive experiments through the run driver: sbn_mnist (Helmholtz
machines), nade_mnist (FVSBN, NADE, EoNADE, MADE: one phase each) and estimator_variance
(no training phase: evaluate measures).  Outputs, records, resume, a seed sweep, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError

SBN = load_experiment("sbn_mnist")
NADE = load_experiment("nade_mnist")
EV = load_experiment("estimator_variance")


def _lines(wd) -> list[dict]:
    return [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ sbn_mnist


def test_sbn_tiny_writes_everything_and_resumes(tmp_path):
    wd = tmp_path / "run"
    cfg = tiny("sbn_mnist", wd)
    res = run.run(SBN.EXPERIMENT, cfg)
    for name in ("config.json", "metrics.jsonl", "results.json", "samples.png"):
        assert (wd / name).exists(), name
    rec = res["test_loglik"]
    assert rec["method"] == "importance" and rec["bound"] == "lower" and rec["split"] == "test"
    assert rec["value"] < 0 and np.isfinite(rec["value"]) and rec["counts"]["samples"] == 10
    assert "embedded" in rec["dataset"] and "binarization" in rec["protocol"]
    assert res["epochs_run"] == 2 and res["n_test"] == 50
    lines = _lines(wd)
    assert [x["epoch"] for x in lines] == [0, 1] and "valid_is_bound_k10" in lines[-1]
    res2 = run.run(SBN.EXPERIMENT, cfg)  # finds the finished run's checkpoint: no training
    assert res2["test_loglik"]["value"] == pytest.approx(rec["value"], abs=1e-4)
    assert len(_lines(wd)) == 2
    with pytest.raises(ConfigError, match="different config"):
        run.run(SBN.EXPERIMENT, dataclasses.replace(cfg, hidden="4"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [{"estimator": "rws", "q_update": "both"},
     {"estimator": "wake_sleep", "binarization": "dynamic"}],
)  # fmt: skip
def test_sbn_other_estimators(tmp_path, extra):
    res = run.run(SBN.EXPERIMENT, tiny("sbn_mnist", tmp_path, epochs=1, **extra))
    assert np.isfinite(res["test_loglik"]["value"]) and res["test_loglik"]["value"] < 0


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


def _base_rate_loglik() -> float:
    """The independent-pixel model of the tiny run's 500 training digits on its 100 test
    digits: a floor every trained model must beat (up to a few nats of noise)."""
    import egm.data as data

    x = data.binarize_fixed(data.load_mnist("train", source="embedded").x, 0)[:500]
    xt = data.binarize_fixed(data.load_mnist("test", source="embedded").x, 2)[:100]
    q = np.clip(x.mean(0), 1e-3, 1 - 1e-3)
    return float(np.mean(xt @ np.log(q) + (1 - xt) @ np.log(1 - q)))


def test_nade_tiny_writes_everything_and_resumes(tmp_path):
    wd = tmp_path / "run"
    cfg = tiny("nade_mnist", wd)
    res = run.run(NADE.EXPERIMENT, cfg)
    models = ("fvsbn", "nade", "eonade", "made")
    names = ["config.json", "metrics.jsonl", "results.json", "inpainting.png"]
    for name in names + [f"samples_{m}.png" for m in models]:
        assert (wd / name).exists(), name
    base = _base_rate_loglik()
    for m in models:
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
    assert sorted((r["phase"], r["epoch"]) for r in lines) == sorted(
        (m, e) for m in models for e in range(2)
    )
    assert all("valid_loglik" in r for r in lines)
    # again with one model (an evaluation-only field): its checkpoint, no training, same model
    res2 = run.run(NADE.EXPERIMENT, dataclasses.replace(cfg, models="made"))
    assert res2["made_test_loglik"]["value"] == pytest.approx(
        res["made_test_loglik"]["value"], abs=1e-4
    )
    assert "nade_test_loglik" not in res2 and len(_lines(wd)) == len(lines)
    with pytest.raises(ConfigError, match="different config"):
        run.run(NADE.EXPERIMENT, dataclasses.replace(cfg, models="made", made_hidden="8"))


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


@pytest.mark.slow  # heavy; the default suite must fit CI (BUILD_NOTES, issue 11)
def test_estimator_variance_tiny_has_no_training_phase(tmp_path):
    wd = tmp_path / "ev"
    res = run.run(EV.EXPERIMENT, tiny("estimator_variance", wd, taus="1.0"))
    for name in ("config.json", "results.json", "variance_bias.png"):
        assert (wd / name).exists(), name
    assert not (wd / "checkpoints").exists() and res["train_seconds"] == 0
    rows = {r["estimator"]: r for r in res["rows"]}
    assert "reinforce/optimal" in rows and "gumbel_softmax/tau=1" in rows
    assert "straight_through" in rows and "straight_through_gumbel/tau=1" in rows
    # baselines reduce the variance of plain REINFORCE on this problem (J ≈ -7 has a large
    # mean); with 100 repeats the sample variances are ~15% accurate, the gap is ~10x
    none = rows["reinforce/none"]["total_variance"]
    for b in ("constant", "leave_one_out", "optimal"):
        assert rows[f"reinforce/{b}"]["total_variance"] < 0.5 * none
    assert all(np.isfinite(r["mse"]) for r in res["rows"])
    assert res["variance/reinforce/none"] == none
    assert json.loads((wd / "results.json").read_text())["repeats"] == 100


def test_estimator_variance_rejects_bad_config(tmp_path):
    with pytest.raises(ConfigError, match="n_samples"):
        run.run(EV.EXPERIMENT, tiny("estimator_variance", tmp_path, n_samples=1))
    with pytest.raises(ConfigError, match="taus"):
        run.run(EV.EXPERIMENT, tiny("estimator_variance", tmp_path, taus="0,1"))
    with pytest.raises(ConfigError, match="too many to enumerate"):
        run.run(EV.EXPERIMENT, tiny("estimator_variance", tmp_path, n_classes=20, n_groups=4))
