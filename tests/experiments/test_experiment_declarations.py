"""Every experiment file is a declaration for the run driver: it loads without touching
sys.path or another experiment, declares an Experiment with a ``tiny`` preset, and all its
presets pass their declared checks.  (The tiny presets themselves run through
``egm.run.run`` in test_smoke.py.)"""

from __future__ import annotations

import ast

import pytest
from _experiments import EXPERIMENTS, load_experiment

from egm import run
from egm.run import config

FILES = sorted(p.stem for p in EXPERIMENTS.glob("*.py") if not p.stem.startswith("_"))
ALIASES = {"grbm_mnist"}  # command aliases: they run another file's presets (see the file)


def test_every_experiment_is_listed():
    assert {"rbm_mnist", "dbm_mnist", "vae_mnist", "grbm_patches", "nade_mnist"} <= set(FILES)


@pytest.mark.parametrize("name", sorted(set(FILES) - ALIASES))
def test_declaration(name):
    source = (EXPERIMENTS / f"{name}.py").read_text()
    tree = ast.parse(source)
    imported = {
        n.module.split(".")[0] if isinstance(n, ast.ImportFrom) and n.module else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert not imported & (set(FILES) | {"_common", "_realvalued"}), "imports another experiment"
    assert "sys.path" not in source
    mod = load_experiment(name)
    assert isinstance(mod.EXPERIMENT, run.Experiment) and mod.EXPERIMENT.name == name
    assert "tiny" in mod.PRESETS and "default" in mod.PRESETS
    for preset in mod.PRESETS.values():
        config.validate(preset)
    assert config.sweepable_fields(mod.PRESETS["default"]), "nothing can be swept"
    assert "seed" in config.sweepable_fields(mod.PRESETS["default"])


def test_grbm_mnist_alias_maps_its_presets():
    src = (EXPERIMENTS / "grbm_mnist.py").read_text()
    namespace: dict = {}
    exec(
        compile(src.replace('if __name__ == "__main__":', "if False:"), "alias", "exec"), namespace
    )
    argv = namespace["_argv"]
    assert argv(["--config", "tiny", "--epochs", "2"]) == [
        "--config",
        "mnist_tiny",
        "--epochs",
        "2",
    ]
    assert argv(["--config=full"]) == ["--config", "mnist_full"]
    assert argv(["--epochs", "2"]) == ["--config", "mnist", "--epochs", "2"]
    presets = load_experiment("grbm_patches").PRESETS
    assert {"mnist", "mnist_tiny", "mnist_full"} <= set(presets)
    assert presets["mnist"].dataset == "mnist"
