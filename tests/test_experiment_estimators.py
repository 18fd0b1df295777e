"""Smoke tests of experiments/estimator_variance.py and experiments/sbn_mnist.py (tiny configs)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))


def test_estimator_variance_tiny(tmp_path):
    import estimator_variance

    res = estimator_variance.main(
        ["--config", "tiny", "--taus", "1.0", "--workdir", str(tmp_path / "ev")]
    )
    for name in ("config.json", "results.json", "variance_bias.png"):
        assert (tmp_path / "ev" / name).exists(), name
    rows = {r["estimator"]: r for r in res["rows"]}
    assert "reinforce/optimal" in rows and "gumbel_softmax/tau=1" in rows
    assert "straight_through" in rows and "straight_through_gumbel/tau=1" in rows
    # baselines reduce the variance of plain REINFORCE on this problem (J ≈ -7 has a large
    # mean); with 100 repeats the sample variances are ~15% accurate, the gap is ~10x
    none = rows["reinforce/none"]["total_variance"]
    for b in ("constant", "leave_one_out", "optimal"):
        assert rows[f"reinforce/{b}"]["total_variance"] < 0.5 * none
    assert all(np.isfinite(r["mse"]) for r in res["rows"])
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["repeats"] == 100


def test_estimator_variance_rejects_bad_config(tmp_path):
    import estimator_variance

    from egm.errors import ConfigError

    with pytest.raises(ConfigError, match="n_samples"):
        estimator_variance.main(["--config", "tiny", "--n_samples", "1"])
    with pytest.raises(ConfigError, match="taus"):
        estimator_variance.main(["--config", "tiny", "--taus", "0,1"])


def test_sbn_mnist_tiny_writes_everything_and_resumes(tmp_path):
    import sbn_mnist

    wd = tmp_path / "run"
    res = sbn_mnist.main(["--config", "tiny", "--workdir", str(wd)])
    for name in ("config.json", "metrics.jsonl", "results.json", "samples.png"):
        assert (wd / name).exists(), name
    assert res["test_is_loglik_nats"] < 0 and np.isfinite(res["test_is_loglik_nats"])
    assert res["epochs_run"] == 2 and res["is_samples"] == 10
    assert "binarization" in res["protocol"] and "embedded" in res["data"]
    lines = (wd / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]
    res2 = sbn_mnist.main(["--config", "tiny", "--workdir", str(wd)])  # resumes: no training
    assert res2["test_is_loglik_nats"] == pytest.approx(res["test_is_loglik_nats"], abs=1e-4)
    from egm.errors import ConfigError

    with pytest.raises(ConfigError, match="different config"):
        sbn_mnist.main(["--config", "tiny", "--workdir", str(wd), "--hidden", "4"])


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["--estimator", "rws", "--q_update", "both"], marks=pytest.mark.slow),
        pytest.param(
            ["--estimator", "wake_sleep", "--binarization", "dynamic"], marks=pytest.mark.slow
        ),
    ],
)
def test_sbn_mnist_other_estimators(tmp_path, extra):
    import sbn_mnist

    res = sbn_mnist.main(["--config", "tiny", "--epochs", "1", "--workdir", str(tmp_path), *extra])
    assert np.isfinite(res["test_is_loglik_nats"]) and res["test_is_loglik_nats"] < 0


def test_sbn_mnist_rejects_bad_config(tmp_path):
    import sbn_mnist

    from egm.errors import ConfigError

    with pytest.raises(ConfigError, match="estimator"):
        sbn_mnist.main(["--config", "tiny", "--estimator", "vae"])
    with pytest.raises(ConfigError, match="hidden"):
        sbn_mnist.main(["--config", "tiny", "--hidden", "a,b"])
    with pytest.raises(ConfigError, match="source idx"):
        sbn_mnist.main(["--config", "tiny", "--data_dir", str(tmp_path)])
