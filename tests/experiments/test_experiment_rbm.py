"""The RBM experiment through the run driver: a killed process resumes, other paths, sweeps,
bad input, divergence, the README quick start.  The tiny preset's outputs and records:
test_smoke.py."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _experiments import EXPERIMENTS, load_experiment, tiny

from egm import run
from egm.errors import DataError, DivergenceError

RBM = load_experiment("rbm_mnist")


@pytest.mark.parametrize(
    "extra",
    [
        # 18 s cold; the CD step itself is tested in tests/train and tests/estimators
        pytest.param({"estimator": "cd", "k": 3, "centering": False}, marks=pytest.mark.slow),
        pytest.param({"binarization": "dynamic"}, marks=pytest.mark.slow),
        pytest.param(
            {"binarization": "threshold", "batch_size": 50, "n_chains": 20},
            marks=pytest.mark.slow,
        ),
    ],
)
def test_other_paths(tmp_path, extra):
    res = run.run(RBM.EXPERIMENT, tiny("rbm_mnist", tmp_path, epochs=2, **extra))
    assert res["test_loglik"]["upper"] < 0 and np.isfinite(res["test_loglik"]["value"])


def test_sweep_equals_separate_runs(tmp_path):
    """A vmapped sweep over learning rates trains the same models as separate runs.
    Tolerance: vmap batches the same float32 ops (the products become batched GEMMs whose
    summation order may differ), measured max |difference| of log Z ~1e-4 after 3 epochs;
    5e-3 nats leaves room while a wrong member (another seed or lr) moves it by > 1 nat.
    The second member is compared (the one a sweep that handed every member the first
    member's settings or state would get wrong); the two members must differ."""
    cfg = tiny("rbm_mnist", tmp_path / "sweep", ais_temps=100)
    sweep = {"learning_rate": (0.01, 0.03)}
    res = run.run(RBM.EXPERIMENT, dataclasses.replace(cfg, seed=1), sweep)
    assert len(res["members"]) == 2
    s = res["summary"]["test_loglik"]
    assert len(s["values"]) == 2 and s["sd"] > 0
    m = res["members"][1]
    one = dataclasses.replace(cfg, seed=1, workdir=str(tmp_path / "m1"), **m["overrides"])
    alone = run.run(RBM.EXPERIMENT, one)
    assert m["log_z_forward"] == pytest.approx(alone["log_z_forward"], abs=5e-3)
    assert abs(res["members"][0]["log_z_forward"] - alone["log_z_forward"]) > 0.05


def test_bad_input_is_one_message(tmp_path, capsys):
    bad = [
        (["--binarization", "sometimes"], "binarization must be one of"),
        (["--n_hiden", "5"], "valid fields"),
        (["--n_hidden", "many"], "expects int"),
        (["--ais_temps", "2"], "ais_temps must be >= 3"),
        (["--data_dir", str(tmp_path)], "source idx"),
        (["--sweep", "n_hidden=3,4"], "cannot be vmapped"),
        (["--learning_rate", "nan"], "learning_rate must be finite"),
    ]
    for argv, msg in bad:
        with pytest.raises(SystemExit) as e:
            run.main(RBM.EXPERIMENT, ["--config", "tiny", "--workdir", str(tmp_path), *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (argv, err)


def test_non_binary_data_is_refused(tmp_path):
    grey = dataclasses.replace(RBM.EXPERIMENT, load=lambda c: RBM.load(c)._replace(train=RBM.load(c).binary["train"] * 0.5))  # fmt: skip
    with pytest.raises(DataError, match="binary"):
        run.run(grey, tiny("rbm_mnist", tmp_path))


def test_explosion_without_nan_is_stopped(tmp_path):
    """lr 1e6: the weights grow by ~1e8 in the first epoch while every number stays finite."""
    with pytest.raises(DivergenceError, match="epoch 0.*parameter norm"):
        run.run(RBM.EXPERIMENT, tiny("rbm_mnist", tmp_path, learning_rate=1e6))
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow  # 59 s cold; the smoke test kills and resumes one experiment per family in the default suite
def test_killed_run_resumes_with_nothing_lost(tmp_path):
    """SIGKILL the job mid-training, start the same command again: it resumes from the last
    checkpoint and ends with exactly the parameters of an uninterrupted run (compared through
    the deterministic AIS log Z and train log-likelihood of the final model)."""
    args = [sys.executable, str(EXPERIMENTS / "rbm_mnist.py"), "--config", "tiny",
            "--epochs", "30", "--eval_every", "1000", "--checkpoint_every", "1",
            "--ais_temps", "50", "--sample_sweeps", "5"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--workdir", str(killed)], env=env, stderr=subprocess.DEVNULL)
    ckdir = killed / "checkpoints" / "train"
    deadline = time.time() + 180
    while time.time() < deadline:
        steps = [int(p.name) for p in ckdir.glob("*") if p.name.isdigit()] if ckdir.exists() else []
        if steps and max(steps) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "results.json").exists()
    subprocess.run(
        [*args, "--workdir", str(killed)], env=env, check=True, stderr=subprocess.DEVNULL
    )
    whole = tmp_path / "whole"
    subprocess.run([*args, "--workdir", str(whole)], env=env, check=True, stderr=subprocess.DEVNULL)
    a = json.loads((killed / "results.json").read_text())
    b = json.loads((whole / "results.json").read_text())
    assert a["log_z_forward"] == b["log_z_forward"]
    assert a["train_loglik_nats"] == b["train_loglik_nats"]
    epochs = [json.loads(x)["epoch"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(30))


def test_readme_quick_start_runs():
    import re

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"## Quick start.*?```python\n(.*?)```", text, re.S)
    assert block, "README.md must have a '## Quick start' section with a python block"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 25
    namespace: dict = {}
    exec(compile(code, "README quick start", "exec"), namespace)
    # the RBM must beat the independent-pixel (base-rate) model on the same test digits
    x, x_test = np.asarray(namespace["x"]), np.asarray(namespace["x_test"])
    q = np.clip(x.mean(0), 1e-3, 1 - 1e-3)
    base_ll = np.mean(x_test @ np.log(q) + (1 - x_test) @ np.log(1 - q))
    assert base_ll < namespace["test_ll"] < 0, (base_ll, namespace["test_ll"])
