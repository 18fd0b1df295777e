"""Smoke tests of the experiment scripts (tiny configs, seconds) and of the README quick start."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))


def test_rbm_mnist_tiny_writes_everything_and_resumes(tmp_path):
    import rbm_mnist

    wd = tmp_path / "run"
    res = rbm_mnist.main(["--config", "tiny", "--workdir", str(wd)])
    for name in ("config.json", "metrics.jsonl", "results.json", "samples.png", "filters.png"):
        assert (wd / name).exists(), name
    assert any((wd / "checkpoints").iterdir())
    on_disk = json.loads((wd / "results.json").read_text())
    assert on_disk["test_loglik_nats"] == pytest.approx(res["test_loglik_nats"])
    lo, hi = res["test_loglik_bracket"]
    assert max(lo, hi) < 0 and isinstance(res["bracket_consistent"], bool)
    assert res["test_loglik_nats"] <= hi  # upper side = forward estimate + 3 se
    assert "embedded" in res["data"] and "binarization" in res["protocol"]
    lines = (wd / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 2]
    # running the same command again finds the finished run's checkpoint and gives the same model
    res2 = rbm_mnist.main(["--config", "tiny", "--workdir", str(wd)])
    assert res2["log_z_forward"] == pytest.approx(res["log_z_forward"], abs=1e-5)
    assert len((wd / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "extra",
    [
        ["--estimator", "cd", "--k", "3", "--centering", "false"],
        ["--binarization", "dynamic"],
        ["--binarization", "threshold", "--batch_size", "50", "--n_chains", "20"],
    ],
)
def test_rbm_mnist_other_paths(tmp_path, extra):
    import rbm_mnist

    res = rbm_mnist.main(["--config", "tiny", "--epochs", "2", "--workdir", str(tmp_path), *extra])
    lo, hi = res["test_loglik_bracket"]
    assert max(lo, hi) < 0 and np.isfinite(res["test_loglik_nats"])


def test_rbm_mnist_rejects_bad_config(tmp_path):
    import rbm_mnist

    from egm.errors import ConfigError

    with pytest.raises(ConfigError, match="binarization"):
        rbm_mnist.main(
            ["--config", "tiny", "--binarization", "sometimes", "--workdir", str(tmp_path)]
        )
    with pytest.raises(ConfigError, match="valid fields"):
        rbm_mnist.main(["--config", "tiny", "--n_hiden", "5"])
    with pytest.raises(ConfigError, match="expects a int"):
        rbm_mnist.main(["--config", "tiny", "--n_hidden", "many"])
    with pytest.raises(ConfigError, match="ais_temps"):
        rbm_mnist.main(["--config", "tiny", "--ais_temps", "2"])
    with pytest.raises(ConfigError, match="source idx"):
        rbm_mnist.main(["--config", "tiny", "--data_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="different config"):
        rbm_mnist.main(["--config", "tiny", "--workdir", str(tmp_path / "r"), "--epochs", "1"])
        rbm_mnist.main(["--config", "tiny", "--workdir", str(tmp_path / "r"), "--n_hidden", "8"])


def test_readme_quick_start_runs():
    text = (ROOT / "README.md").read_text()
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


def test_rbm_mnist_sweep_tiny(tmp_path):
    import rbm_mnist_sweep

    res = rbm_mnist_sweep.main(["--config", "tiny", "--workdir", str(tmp_path / "s")])
    assert res["n_members"] == 4
    lls = [r["valid_loglik_nats"] for r in res["members"]]
    assert lls == sorted(lls, reverse=True) and all(ll < 0 for ll in lls)
    assert {(r["seed"], r["learning_rate"]) for r in res["members"]} == {
        (0, 0.01),
        (0, 0.05),
        (1, 0.01),
        (1, 0.05),
    }


def test_killed_run_resumes_with_nothing_lost(tmp_path):
    """SIGKILL the main job mid-training, start the same command again: it resumes from the
    last checkpoint and ends with exactly the parameters of an uninterrupted run (compared
    through the deterministic AIS log Z and train log-likelihood of the final model)."""
    import os
    import signal
    import subprocess
    import time

    args = [
        sys.executable,
        str(ROOT / "experiments" / "rbm_mnist.py"),
        "--config",
        "tiny",
        "--epochs",
        "60",
        "--eval_every",
        "1000",
        "--ais_every",
        "0",
        "--checkpoint_every",
        "1",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--workdir", str(killed)], env=env, stderr=subprocess.DEVNULL)
    ckdir = killed / "checkpoints"
    deadline = time.time() + 120
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
    assert epochs == list(range(60))


def test_overrides_of_fields_whose_default_is_none():
    """``float | None`` / ``int | None`` fields with a None default get the annotated type
    (a string "0.1" would reach the library and fail far from the flag)."""
    import dataclasses

    from _common import parse_overrides

    from egm.errors import ConfigError

    @dataclasses.dataclass(frozen=True)
    class C:
        eps: float | None = None
        n: int | None = None
        name: str | None = None

    c = parse_overrides(C(), ["--eps", "0.1", "--n", "3", "--name", "x"], {})
    assert c == C(eps=0.1, n=3, name="x") and isinstance(c.eps, float)
    assert parse_overrides(C(eps=0.5), ["--eps", "none"], {}).eps is None
    with pytest.raises(ConfigError, match="eps"):
        parse_overrides(C(), ["--eps", "abc"], {})
