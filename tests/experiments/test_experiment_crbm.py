"""crbm_mnist's configuration checks (no training: each error is raised before any phase)."""

import dataclasses

import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError


def test_bad_configs_are_refused(tmp_path):
    """Layer sizes that the pooling does not divide, a label setting larger than the
    training set, a malformed label list, and a list with one value per layer missing."""
    mod = load_experiment("crbm_mnist")
    cfg = tiny("crbm_mnist", tmp_path)
    with pytest.raises(ConfigError, match="do not divide"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, filter_sizes="6,5"))  # 23x23 maps
    with pytest.raises(ConfigError, match="exceed the 4000 training digits"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, labels="all,5000"))
    with pytest.raises(ConfigError, match="label counts"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, labels="all,ten"))
    with pytest.raises(ConfigError, match="one value per layer"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, filters="4"))
    assert not (tmp_path / "results.json").exists()
