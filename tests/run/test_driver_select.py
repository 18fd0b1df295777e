"""The run driver's selection on validation (``Phase.select``) and early stopping.

A toy with a known validation curve: ``w`` (3 numbers from 0) is fitted by SGD to data of
mean 1, so it rises monotonically towards 1; the monitor reports ``(w̄ - 0.6)²``, which
falls until ``w̄`` passes 0.6 and rises after.  The kept state must be the one of the epoch
where the logged value is lowest (its logged ``w̄`` equals the returned one exactly: the
state is copied, not retrained), training must stop exactly ``patience`` monitored epochs
after it, and a run killed after any epoch must, when its command is run again, end with
the same kept state, epoch and count of epochs as the uninterrupted run (the best state
rides in the checkpoint).  In a sweep each member keeps its own best epoch (two learning
rates reach 0.6 at different epochs).
"""

from __future__ import annotations

import dataclasses
import json
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from egm import run, train
from egm.errors import ConfigError
from egm.run.config import RunFields, at_least, field, greater_than

TARGET = 0.6


@dataclasses.dataclass(frozen=True)
class Cfg(RunFields):
    learning_rate: float = field(0.05, check=greater_than(0), sweep=True)
    epochs: int = field(30, check=at_least(1))
    batch_size: int = field(8, check=at_least(1))
    patience: int = field(3, check=at_least(0))
    kill_after: int | None = field(
        None, eval_only=True
    )  # the monitor stops the run after this epoch
    progress: bool = field(False, eval_only=True)


class Data(NamedTuple):
    train: np.ndarray


class Killed(Exception):
    pass


def _monitor(cfg, d, state, key, e):
    if cfg.kill_after is not None and e == cfg.kill_after + 1:
        raise Killed(e)  # as if the process died after epoch kill_after's checkpoint
    w = float(jnp.mean(state.params["w"]))
    return {"val": (w - TARGET) ** 2, "w_mean": w}


def _phase(cfg) -> run.Phase:
    def loss(p, x, key):
        return jnp.mean((x - p["w"]) ** 2)

    opt = train.sgd(cfg.learning_rate)
    return run.Phase(
        "fit",
        lambda c, d, key, done: train.init_state({"w": jnp.zeros(3)}, train.sgd(c.learning_rate)),
        lambda c, d, done: train.make_step(train.loss_objective(loss), opt),
        monitor=_monitor, select="val",
    )  # fmt: skip


EXP = run.Experiment(
    name="select_toy",
    presets={"default": Cfg()},
    load=lambda cfg: Data(np.random.default_rng(0).normal(1.0, 0.1, (32, 3)).astype(np.float32)),
    phases=lambda cfg: [_phase(cfg)],
    evaluate=lambda cfg, d, done, key: {"w_mean": float(jnp.mean(done["fit"].params["w"]))},
)


def _log(wd) -> list[dict]:
    return [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines() if x.strip()]


def test_keeps_the_best_epoch_and_stops_after_patience(tmp_path):
    res = run.run(EXP, Cfg(workdir=str(tmp_path)))
    log = _log(tmp_path)
    vals = [r["val"] for r in log]
    best = int(np.argmin(vals))
    sel = res["selection"]["fit"]
    assert 0 < best < len(vals) - 1  # the curve turned: a real selection, not the last epoch
    assert sel["best_epoch"] == best and sel["stopped_early"] and sel["patience"] == 3
    assert len(log) == sel["epochs_trained"] == best + 1 + 3 < Cfg().epochs
    assert res["w_mean"] == log[best]["w_mean"]  # the kept state is that epoch's, exactly
    assert log[-1]["w_mean"] > res["w_mean"]  # and not the last one


def test_patience_zero_trains_every_epoch_and_keeps_the_best(tmp_path):
    res = run.run(EXP, Cfg(patience=0, epochs=12, workdir=str(tmp_path)))
    log = _log(tmp_path)
    assert len(log) == 12 and res["selection"]["fit"]["stopped_early"] is False
    assert res["w_mean"] == log[int(np.argmin([r["val"] for r in log]))]["w_mean"]


# killed while waiting for a better epoch (the best state must come from the checkpoint), and
# before the best epoch (slow: the same code path with nothing kept yet)
@pytest.mark.parametrize("kill_after", [8, pytest.param(2, marks=pytest.mark.slow)])
def test_a_killed_run_resumes_to_the_same_selection(tmp_path, kill_after):
    whole = run.run(EXP, Cfg(workdir=str(tmp_path / "whole")))
    wd = tmp_path / "killed"
    with pytest.raises(Killed):
        run.run(EXP, Cfg(kill_after=kill_after, checkpoint_every=1, workdir=str(wd)))
    again = run.run(EXP, Cfg(checkpoint_every=1, workdir=str(wd)))
    assert again["selection"] == whole["selection"] and again["w_mean"] == whole["w_mean"]
    assert [r["epoch"] for r in _log(wd)] == list(
        range(whole["selection"]["fit"]["epochs_trained"])
    )
    # a finished (stopped) run run again trains nothing more and keeps the same state
    third = run.run(EXP, Cfg(checkpoint_every=1, workdir=str(wd)))
    assert third["selection"] == whole["selection"] and third["w_mean"] == whole["w_mean"]


def test_sweep_members_keep_their_own_best_epochs(tmp_path):
    lrs = (0.03, 0.1)
    swept = run.run(EXP, Cfg(workdir=str(tmp_path / "s")), {"learning_rate": lrs})
    alone = [run.run(EXP, Cfg(learning_rate=lr, workdir=str(tmp_path / f"{lr}"))) for lr in lrs]
    got = [m["selection"]["fit"]["best_epoch"] for m in swept["members"]]
    assert got == [r["selection"]["fit"]["best_epoch"] for r in alone] and got[0] != got[1]
    # measured equal here; rtol 1e-6 leaves room for XLA summing a vmapped mean in another
    # order (a few float32 ulps), far below the 0.02 between the two members' values
    np.testing.assert_allclose([m["w_mean"] for m in swept["members"]],
                               [r["w_mean"] for r in alone], rtol=1e-6)  # fmt: skip
    # the sweep runs until its slowest member's patience is spent
    trained = swept["members"][0]["selection"]["fit"]["epochs_trained"]
    assert trained == max(r["selection"]["fit"]["epochs_trained"] for r in alone)


def test_negative_patience_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="patience"):
        run.run(EXP, Cfg(patience=-1, workdir=str(tmp_path)))


def test_a_select_without_its_metric_is_refused_at_once(tmp_path):
    """A phase selecting on a metric its monitor does not report fails at the first
    monitored epoch (not after training), naming what the monitor reports; no monitor at
    all fails before training."""
    import dataclasses as dc

    for phase, match in ((dc.replace(_phase(Cfg()), select="valid_loss"), "w_mean"),
                         (dc.replace(_phase(Cfg()), monitor=None), "no monitor")):  # fmt: skip
        exp = dc.replace(EXP, phases=lambda cfg, p=phase: [p])
        with pytest.raises(ValueError, match=match):
            run.run(exp, Cfg(workdir=str(tmp_path / match.replace(" ", "_"))))
