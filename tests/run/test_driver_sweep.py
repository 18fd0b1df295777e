"""The run driver's sweeps when a phase trains on what an earlier phase made (features,
codes): each member's later phase must see its own earlier phase's output.

A two-phase toy: phase ``a`` fits ``w`` to the data by SGD (learning rate swept), phase ``b``
fits ``v`` to ``x ⊙ w`` — data that differ between members.  Each member of a sweep must end
where the same config run alone ends (float32 round-off of vmapped vs unbatched sums: 1e-5),
and the members must differ from each other (a sweep that fed member 0's ``w`` to every
member fails the first check by far more: the two learning rates leave ``w`` apart by ~0.1).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from egm import run, train
from egm.run.config import RunFields, at_least, field, greater_than


@dataclasses.dataclass(frozen=True)
class Cfg(RunFields):
    learning_rate: float = field(0.05, check=greater_than(0), sweep=True)
    epochs: int = field(2, check=at_least(1))
    batch_size: int = field(8, check=at_least(1))
    progress: bool = field(False, eval_only=True)


class Data(NamedTuple):
    train: np.ndarray


def _phase(name: str, features) -> run.Phase:
    def loss(p, x, key):
        return jnp.mean((x - p["w"]) ** 2)

    return run.Phase(
        name,
        lambda cfg, d, key, done: train.init_state({"w": jnp.zeros(3)}, train.sgd(cfg.learning_rate)),
        lambda cfg, d, done: train.make_step(train.loss_objective(loss), train.sgd(cfg.learning_rate)),
        train_data=features,
    )  # fmt: skip


EXP = run.Experiment(
    name="two_phase_toy",
    presets={"default": Cfg()},
    load=lambda cfg: Data(np.random.default_rng(0).normal(1.0, 0.5, (32, 3)).astype(np.float32)),
    phases=lambda cfg: [
        _phase("a", lambda cfg, d, done: d.train),
        _phase("b", lambda cfg, d, done: d.train * np.asarray(done["a"].params["w"])),
    ],
    evaluate=lambda cfg, d, done, key: {
        "w": float(done["a"].params["w"][0]),
        "v": float(done["b"].params["w"][0]),
    },  # fmt: skip
)


# map: the same driver path with lax.map (slow; the vmap case keeps the claim)
@pytest.mark.parametrize("members", ["vmap", pytest.param("map", marks=pytest.mark.slow)])
def test_later_phase_trains_on_each_members_own_features(tmp_path, members):
    exp = dataclasses.replace(EXP, sweep_members=members)
    lrs = (0.05, 0.2)
    swept = run.run(exp, Cfg(workdir=str(tmp_path / "sweep")), {"learning_rate": lrs})
    alone = [run.run(exp, Cfg(learning_rate=lr, workdir=str(tmp_path / f"lr{lr}"))) for lr in lrs]
    got = [(m["w"], m["v"]) for m in swept["members"]]
    want = [(r["w"], r["v"]) for r in alone]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert abs(want[0][0] - want[1][0]) > 0.05 and abs(want[0][1] - want[1][1]) > 0.01
