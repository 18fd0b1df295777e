"""The reproduction report (egm.run.report), the provenance every results.json carries
(preset, command, schedule against the paper preset) and the table of published figures."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pytest
from _experiments import load_experiment

from egm.errors import ConfigError, DataError
from egm.eval import LogLikelihood, published
from egm.run import config as cfglib
from egm.run import report
from egm.run.driver import nearest_preset, provenance


@pytest.mark.parametrize(
    ("name", "preset", "overrides"),
    [
        ("rbm_mnist", "tiny", {}),
        ("rbm_mnist", "default", {"n_hidden": 64, "learning_rate": 0.02, "centering": False}),
        ("vae_mnist", "paper_first_3_epochs", {"hidden": "64,64"}),
        ("nade_mnist", "tiny", {"made_hidden": "8,8"}),
    ],
)
def test_command_repeats_the_run(name, preset, overrides):
    """The command written into results.json parses back (through the experiment's own
    command line) to the very config that ran."""
    mod = load_experiment(name)
    cfg = dataclasses.replace(mod.PRESETS[preset], **overrides)
    prov = provenance(mod.EXPERIMENT, cfg, {"seed": (0, 1)})
    assert prov["preset"] == preset and nearest_preset(mod.EXPERIMENT, cfg)[0] == preset
    argv = shlex.split(prov["command"])
    assert argv[:2] == ["python", f"experiments/{name}.py"]
    again, sweep = cfglib.parse_args(mod.PRESETS, argv[2:])
    assert again == cfg and sweep == {"seed": (0, 1)}


def test_schedule_against_the_paper_preset():
    mod = load_experiment("vae_mnist")
    cut = provenance(mod.EXPERIMENT, mod.PRESETS["paper_first_3_epochs"])["schedule"]
    assert {p["paper_epochs"] for p in cut["phases"].values()} == {3280}
    assert {p["epochs"] for p in cut["phases"].values()} == {3}
    assert cut["fraction_of_paper"] == pytest.approx(3 / 3280)
    assert "max_epochs" in cut["differs_from_paper"]
    whole = provenance(mod.EXPERIMENT, mod.PRESETS["paper"])["schedule"]
    assert whole["fraction_of_paper"] == 1.0 and whole["differs_from_paper"] == []
    rbm = load_experiment("rbm_mnist")
    none = provenance(rbm.EXPERIMENT, rbm.PRESETS["tiny"])["schedule"]
    assert none["paper_preset"] is None and none["phases"]["train"]["paper_epochs"] is None


def test_published_table():
    for key, p in published.PUBLISHED.items():
        assert p.source and p.model and p.unit in ("nats", "bits/dim", "error rate", "nats/step")
        if p.unit == "error rate":
            assert 0 < p.value < 1, key
    assert "recalled" in published.lookup("sbn_nvil").describe()
    with pytest.raises(ConfigError, match="known"):
        published.lookup("rbm_cd2")


def _results(**extra) -> dict:
    rec = LogLikelihood(
        value=-90.0, stderr=0.1, lower=-90.3, upper=-89.8, method="ais_bracket",
        dataset="mnist(idx)", split="test", protocol="fixed binarization", unit="nats",
    )  # fmt: skip
    return {
        "experiment": "rbm_mnist",
        "model": "RBM 784-500",
        "preset": "full",
        "command": "python experiments/rbm_mnist.py --config full",
        "schedule": {
            "phases": {"train": {"epochs": 40, "paper_epochs": 400}},
            "fraction_of_paper": 0.1,
            "paper_preset": "paper",
            "differs_from_paper": ["epochs"],
        },
        "total_seconds": 125.0,
        "device": "cpu:0",
        "n_devices": 1,
        "test_loglik": rec.to_dict(),
        "test_error": 0.02,
        "published": {"test_loglik": published.lookup("rbm_cd25").to_dict()},
        **extra,
    }


def test_rows_carry_every_protocol_field():
    rows = report.rows_of(_results())
    assert [r["result"] for r in rows] == ["test_loglik"]  # test_error maps to no published
    (row,) = rows
    assert report.check_rows(rows) == []
    assert row["figure"] == "-90.00" and "[-90.30, -89.80]" in row["uncertainty"]
    assert row["published"] == "-86.34" and row["source"] == "Salakhutdinov & Murray 2008"
    assert row["schedule"].startswith("40 of 400 epochs (10 %)") and "epochs" in row["schedule"]
    sel = {"train": {"criterion": "valid_nll", "best_epoch": 11, "best_value": 1.0,
                     "epochs_trained": 20, "patience": 8, "stopped_early": True}}  # fmt: skip
    (kept,) = report.rows_of(_results(selection=sel))
    assert kept["schedule"].endswith(
        "; train: stopped early after 20 of 40 epochs, kept epoch 12 (lowest valid_nll, patience 8)"
    )
    table = report.markdown(rows)
    assert table.count("\n") == 3 and "`python experiments/rbm_mnist.py --config full`" in table
    # a row without its protocol fields is named, field by field
    broken = dict(row, protocol="", command="")
    (msg,) = report.check_rows([broken])
    assert "protocol" in msg and "command" in msg


def test_published_non_record_figures_and_sweeps():
    res = _results(published={"test_error": published.lookup("mpdbm_error").to_dict()})
    rows = report.rows_of(res)
    err = next(r for r in rows if r["result"] == "test_error")
    assert err["figure"] == "2.00 %" and err["published"] == "0.88 %"
    assert err["dataset"] == "mnist(idx)" and report.check_rows(rows) == []
    assert err["uncertainty"] == "deterministic"  # no test_error_stderr in the results
    (with_se,) = [r for r in report.rows_of({**res, "test_error_stderr": 0.0014})
                  if r["result"] == "test_error"]  # fmt: skip
    assert with_se["uncertainty"] == "± 0.14 % (s.e.)"
    first = {"test_loglik": res["test_loglik"]}
    sweep = {
        **{k: v for k, v in res.items() if k not in ("test_loglik", "test_error")},
        "members": [first, first],
        "summary": {"test_loglik": {"mean": -90.5, "sd": 0.5, "n": 2, "values": [-90, -91]}},
    }
    (row,) = report.rows_of(sweep)
    assert row["figure"] == "-90.50" and "sd over 2 runs" in row["uncertainty"]


def test_collect_keep_readme_and_plot(tmp_path):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(_results()))
    kept = report.keep([tmp_path / "runs"], tmp_path / "kept")
    assert [p.name for p in kept] == ["rbm_mnist__a.json"]
    rows = report.collect([tmp_path / "kept"])
    assert len(rows) == 1
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\ntail\n")
    assert report.main([str(tmp_path / "kept"), "--readme", str(readme),
                        "--plot", str(tmp_path / "p.png")]) == 0  # fmt: skip
    text = readme.read_text()
    assert "old" not in text and "-90.00" in text and text.endswith(f"{report.END}\ntail\n")
    assert (tmp_path / "p.png").stat().st_size > 1000
    (run / "results.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable results.json"):
        report.collect([tmp_path / "runs"])
    assert report.main([str(tmp_path / "nowhere")]) == 2
