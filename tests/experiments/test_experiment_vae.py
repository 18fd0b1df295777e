"""Directed latent-variable experiments on the run driver: vae_mnist, draw_mnist and
gumbel_vae_mnist (tiny presets through ``run.run``): config errors, every variant and
estimator (slow), and a vmapped sweep equal to separate runs.  One tiny run of each, its
records and the kill-and-resume: test_smoke.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from egm.errors import ConfigError
from egm.models import vae
from egm.run import config as cfglib
from egm.run import run as run_experiment


@pytest.fixture
def tiny(experiment):
    """``tiny(name, workdir, **overrides) -> (module, config)``."""

    def make(name, workdir, **overrides):
        mod = experiment(name)
        cfg = dataclasses.replace(mod.PRESETS["tiny"], workdir=str(workdir), **overrides)
        return mod, cfg

    return make


def _record(res, key, method):
    rec = res[key]
    assert rec["method"] == method and rec["split"] == "test", rec
    assert np.isfinite(rec["value"]) and rec["counts"]["examples"] > 0
    return rec


def test_vae_config_errors(experiment, tmp_path):
    presets = experiment("vae_mnist").PRESETS
    base = ["--config", "tiny", "--workdir", str(tmp_path)]
    for args, match in (
        (["--models", "vae"], "vae<k> or iwae<k>"),
        (["--models", "vae1,vae1"], "distinct"),
        (["--hidden", "a,b"], "hidden"),
        (["--data_dir", str(tmp_path)], "source idx"),
        (["--learning_rate", "-1"], "learning_rate"),
        (["--train_split", "train_full", "--binarization", "fixed"], "dynamic"),
        (["--sweep", "latent_dim=2,4"], "cannot be vmapped"),
    ):
        with pytest.raises(ConfigError, match=match):
            cfglib.parse_args(presets, base + args)


def test_vae_cli_error_is_one_message(experiment, tmp_path, capsys):
    mod = experiment("vae_mnist")
    with pytest.raises(SystemExit) as e:
        mod.run.main(mod.EXPERIMENT, ["--config", "tiny", "--models", "gan1"])
    assert e.value.code == 2 and "vae<k> or iwae<k>" in capsys.readouterr().err


def test_burda_lr_multiplier():
    mult, total = vae.burda_lr_multiplier(3, steps_per_epoch=10)
    assert total == 1 + 3 + 9
    got = [float(mult(s)) for s in (0, 9, 10, 39, 40, 129)]
    r1, r2 = 10 ** (-1 / 7), 10 ** (-2 / 7)
    np.testing.assert_allclose(got, [1, 1, r1, r1, r2, r2], rtol=1e-6)
    with pytest.raises(ConfigError, match="batch larger"):
        vae.burda_lr_multiplier(3, steps_per_epoch=0)


def test_vae_seed_sweep_equals_separate_runs(tiny, tmp_path):
    """A vmapped sweep of 2 seeds ends with the figures of 2 separate runs.  vmap may reorder
    float operations: measured differences <= 3.1e-5 nats (one float32 ulp at -380 nats; member
    0 identical) on the IS figure and the ELBOs; the test allows 1e-3 absolute."""
    mod, cfg = tiny("vae_mnist", tmp_path / "sweep", models="vae1", max_epochs=1,
                    is_samples=32, eval_size=50)  # fmt: skip
    swept = run_experiment(mod.EXPERIMENT, cfg, {"seed": (0, 1)})
    assert [m["overrides"] for m in swept["members"]] == [{"seed": 0}, {"seed": 1}]
    summary = swept["summary"]["vae1_test_loglik"]
    assert summary["n"] == 2 and summary["sd"] > 0
    for i, member in enumerate(swept["members"]):
        one = run_experiment(
            mod.EXPERIMENT, dataclasses.replace(cfg, seed=i, workdir=str(tmp_path / f"s{i}"))
        )
        for key in ("vae1_test_elbo", "vae1_test_L50"):
            assert member[key] == pytest.approx(one[key], abs=1e-3), key
        assert member["vae1_test_loglik"]["value"] == pytest.approx(
            one["vae1_test_loglik"]["value"], abs=1e-3
        )


@pytest.mark.slow
def test_draw_tiny_both_variants_and_finished_run(tiny, tmp_path):
    mod, cfg = tiny("draw_mnist", tmp_path / "draw", epochs=1)
    res = run_experiment(mod.EXPERIMENT, cfg)
    for v in ("attention", "no_attention"):
        assert _record(res, f"{v}_test_loglik", "variational_bound")["value"] < 0
        assert (tmp_path / "draw" / f"{v}_canvas.png").exists()
    res2 = run_experiment(mod.EXPERIMENT, cfg)  # finished: restores, trains nothing
    for v in ("attention", "no_attention"):
        assert res2[f"{v}_test_nll_bound"] == pytest.approx(res[f"{v}_test_nll_bound"], rel=1e-5)


@pytest.mark.slow
def test_gumbel_tiny_all_estimators(tiny, tmp_path):
    mod, cfg = tiny("gumbel_vae_mnist", tmp_path / "g", epochs=1)
    res = run_experiment(mod.EXPERIMENT, cfg)
    for est in ("gumbel", "st_gumbel", "reinforce"):
        assert _record(res, f"{est}_test_discrete_elbo", "variational_bound")["value"] < 0
        assert _record(res, f"{est}_test_loglik", "importance")["value"] < 0
        assert 0.5 <= res[f"{est}_final_tau"] <= 1.0
        assert (tmp_path / "g" / f"{est}_samples.png").exists()
