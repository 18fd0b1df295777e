"""The DBN/DBM config groups and phase builders of egm.run.deep, and DBM pretraining specs."""

from __future__ import annotations

import dataclasses

import pytest

from egm.errors import ConfigError
from egm.run import config as cfglib
from egm.run import deep
from egm.train import greedy


@dataclasses.dataclass(frozen=True)
class _DBN(deep.DBNFields, deep.FinetuneFields):
    pass


@dataclasses.dataclass(frozen=True)
class _DBM(deep.DBMFields):
    def centered(self) -> bool:
        return True


def test_dbn_fields_give_one_layer_spec_per_layer():
    """Sizes and epochs bottom to top; the bottom layer trains on its input as given, the
    layers above on ``upper_binarization`` draws; the SGD, estimator and propagation fields
    reach every layer; mismatched or malformed lists are refused at validation."""
    cfg = cfglib.validate(_DBN(hidden="6,5,4", layer_epochs="1,2,3", k=3, propagate="sample"))
    specs = cfg.layer_specs()
    assert [(s.n_hidden, s.epochs) for s in specs] == [(6, 1), (5, 2), (4, 3)]
    assert [s.binarization for s in specs] == ["none", "dynamic", "dynamic"]
    assert {(s.k, s.propagate, s.learning_rate) for s in specs} == {(3, "sample", 0.01)}
    with pytest.raises(ConfigError, match="one entry per layer"):
        cfglib.validate(_DBN(hidden="6,5", layer_epochs="1"))
    with pytest.raises(ConfigError, match="hidden must be comma-separated"):
        cfglib.validate(_DBN(hidden="6,x"))


def test_dbm_fields_step_config_follows_the_hooks():
    cfg = cfglib.validate(_DBM(k=2, mean_field_iters=4, binarization="dynamic"))
    sc = cfg.step_config()
    assert (sc.k, sc.mean_field_iters, sc.centering) == (2, 4, True)
    assert (sc.mean_field_init, sc.binarization) == ("half", "dynamic")


def test_dbm_pretraining_specs_double_the_outer_layers():
    """Salakhutdinov & Hinton's stack: two tied visible copies at the bottom, two tied hidden
    copies at the top, middle layers ordinary (from_pretrained_rbms halves their weights)."""
    specs = greedy.dbm_pretraining_specs((6, 5, 4), epochs=2, n_chains=8)
    copies = [(s.visible_copies, s.hidden_copies) for s in specs]
    assert copies == [(2, 1), (1, 1), (1, 2)]
    assert {(s.epochs, s.n_chains) for s in specs} == {(2, 8)}
    two = greedy.dbm_pretraining_specs((6, 4))
    assert [(s.visible_copies, s.hidden_copies) for s in two] == [(2, 1), (1, 2)]
    with pytest.raises(ConfigError, match="at least 2 hidden layers"):
        greedy.dbm_pretraining_specs((6,))
