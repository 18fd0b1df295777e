"""crbm_mnist's configuration checks (no training: each error is raised before any phase)."""

import dataclasses

import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError


def test_bad_configs_are_refused(tmp_path):
    """Layer sizes that the pooling does not divide, a label setting larger than the
    training set, a malformed label list, a list with one value per layer missing, and
    candidate weight decays that are negative, not numbers, none or NaN."""
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
    for bad in ("0.1,-1", "one", "", "nan"):
        with pytest.raises(ConfigError, match="weight decays >= 0"):
            run.run(mod.EXPERIMENT, dataclasses.replace(cfg, clf_weight_decays=bad))
    assert not (tmp_path / "results.json").exists()
