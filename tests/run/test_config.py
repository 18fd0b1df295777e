"""Configs with declared checks and their command line (egm.run.config)."""

from __future__ import annotations

import dataclasses

import pytest

from egm.errors import ConfigError
from egm.run import config as c


@dataclasses.dataclass(frozen=True)
class Cfg(c.RunFields):
    lr: float = c.field(0.1, check=c.greater_than(0), sweep=True)
    n: int = c.field(3, check=c.at_least(1))
    kind: str = c.field("a", check=c.one_of("a", "b"))
    eps: float | None = c.field(None, check=c.in_range(0, 1))
    sizes: tuple = (4, 2)
    flag: bool = False

    def check(self) -> None:
        if self.kind == "b" and self.n > 5:
            raise ConfigError("kind b needs n <= 5")


PRESETS = {"default": Cfg(), "big": Cfg(n=10)}


def test_presets_overrides_and_types():
    cfg, sweep = c.parse_args(PRESETS, ["--config", "big", "--lr=0.5", "--eps", "0.2",
                                        "--sizes", "8,4,2", "--flag", "true"])  # fmt: skip
    assert cfg == Cfg(n=10, lr=0.5, eps=0.2, sizes=(8, 4, 2), flag=True) and sweep == {}
    assert isinstance(cfg.eps, float)
    assert c.parse_args(PRESETS, ["--eps", "none"])[0].eps is None


def test_sweeps_are_products_of_sweepable_fields():
    cfg, sweep = c.parse_args(PRESETS, ["--sweep", "seed=0:3", "--sweep", "lr=0.1,0.2"])
    assert sweep == {"seed": (0, 1, 2), "lr": (0.1, 0.2)}
    members = c.sweep_members(cfg, sweep)
    assert [(m.seed, m.lr) for m in members] == [(s, lr) for s in range(3) for lr in (0.1, 0.2)]
    with pytest.raises(ConfigError, match="cannot be vmapped"):
        c.parse_args(PRESETS, ["--sweep", "n=1,2"])
    with pytest.raises(ConfigError, match="lr must be > 0"):
        c.parse_args(PRESETS, ["--sweep", "lr=0.1,-1"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n", "0"], "n must be >= 1, got 0"),
        (["--n", "2.5"], "--n expects int"),
        (["--kind", "c"], "kind must be one of"),
        (["--eps", "2"], "eps must be in [0, 1]"),
        (["--lr", "inf"], "lr must be finite"),
        (["--nn", "3"], "unknown config field --nn; valid fields"),
        (["--config", "huge"], "unknown --config 'huge'"),
        (["--n"], "--n needs a value"),
        (["n", "3"], "unexpected argument"),
        (["--flag", "maybe"], "--flag expects true/false"),
        (["--kind", "b", "--n", "6"], "kind b needs n <= 5"),
    ],
)
def test_bad_values_name_the_field(argv, message):
    with pytest.raises(ConfigError) as e:
        c.parse_args(PRESETS, argv)
    assert message in str(e.value)


def test_field_roles():
    assert "workdir" in c.eval_only_fields(Cfg()) and "lr" not in c.eval_only_fields(Cfg())
    assert set(c.sweepable_fields(Cfg())) == {"seed", "lr"}
    with pytest.raises(TypeError):
        c.field([1, 2])
