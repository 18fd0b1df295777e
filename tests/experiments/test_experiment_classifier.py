"""mnist_classifier (the feature network of egm.eval.features) on the run driver: the tiny
preset trains, evaluates, writes results.json and a loadable weights file, and exports it
only when asked."""

from __future__ import annotations

import types

import jax
import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError
from egm.eval import features as fnet


def test_mnist_classifier_export_copies_the_weights(tmp_path, monkeypatch):
    """--export true copies the written weights byte for byte to the package path
    (redirected to tmp_path here); the tiny run itself is test_smoke.py's case."""
    exp = load_experiment("mnist_classifier")
    target = tmp_path / "package" / "mnist_classifier.npz"
    monkeypatch.setattr(fnet, "DEFAULT_WEIGHTS", target)
    cfg = tiny("mnist_classifier", tmp_path, export=True)
    done = {"train": types.SimpleNamespace(params=fnet.init_feature_params(jax.random.key(0)))}
    exp.files(cfg, exp.load(cfg), done, tmp_path)
    assert target.read_bytes() == (tmp_path / "mnist_classifier.npz").read_bytes()
    assert fnet.load_feature_net(target).meta["n_train"] == 500


def test_mnist_classifier_rejects_bad_config():
    exp = load_experiment("mnist_classifier")
    with pytest.raises(ConfigError, match="embedded subset"):
        run.parse_args(exp.PRESETS, ["--config", "tiny", "--train_split", "train_full"])
    with pytest.raises(ConfigError, match="learning_rate"):
        run.parse_args(exp.PRESETS, ["--config", "tiny", "--learning_rate", "0"])
