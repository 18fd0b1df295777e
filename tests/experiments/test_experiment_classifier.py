"""mnist_classifier (the feature network of egm.eval.features) on the run driver: the tiny
preset trains, evaluates, writes results.json and a loadable weights file, and exports it
only when asked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError
from egm.eval import features as fnet


def test_mnist_classifier_tiny_results_weights_and_export(tmp_path, monkeypatch):
    """One epoch on 500 embedded images: the driver writes results.json with the test error
    on the 1000 embedded test digits and its binomial standard error, the weights load with
    egm.eval.load_feature_net and reproduce the reported test error exactly (same weights,
    same digits, same deterministic forward pass), and --export copies them to the package
    path (redirected to tmp_path here)."""
    exp = load_experiment("mnist_classifier")
    target = tmp_path / "package" / "mnist_classifier.npz"
    monkeypatch.setattr(fnet, "DEFAULT_WEIGHTS", target)
    wd = tmp_path / "run"
    res = run.run(exp.EXPERIMENT, tiny("mnist_classifier", wd, export=True))
    on_disk = json.loads((wd / "results.json").read_text())
    assert on_disk["test_error"] == res["test_error"] and res["n_test"] == 1000
    assert res["n_train"] == 500 and 0.0 <= res["valid_error"] <= 1.0
    p = res["test_error"]
    assert 0.0 < p < 0.9  # better than chance after one epoch (chance: 0.9)
    assert res["test_error_stderr"] == pytest.approx(np.sqrt(p * (1 - p) / 1000))
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0] and np.isfinite(lines[0]["loss"])
    net = fnet.load_feature_net(wd / "mnist_classifier.npz")
    assert net.meta["experiment"] == "mnist_classifier" and net.meta["n_train"] == 500
    x, y = (exp.load(tiny("mnist_classifier", wd)).test[i] for i in (0, 1))
    err = float(np.mean(np.asarray(fnet.class_probs(x, net)).argmax(1) != y))
    assert err == pytest.approx(p, abs=1e-12)
    assert target.read_bytes() == (wd / "mnist_classifier.npz").read_bytes()


def test_mnist_classifier_rejects_bad_config():
    exp = load_experiment("mnist_classifier")
    with pytest.raises(ConfigError, match="embedded subset"):
        run.parse_args(exp.PRESETS, ["--config", "tiny", "--train_split", "train_full"])
    with pytest.raises(ConfigError, match="learning_rate"):
        run.parse_args(exp.PRESETS, ["--config", "tiny", "--learning_rate", "0"])
