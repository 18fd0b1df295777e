"""Smoke test of experiments/benchmarks/flow_train.py (tiny sizes, 2 training seeds a side): a
JSON line per flow with the protocol's keys, both likelihoods and their comparison over seeds;
the flowjax peer (``bench`` extra) is skipped when missing.  Slow: two flows from two
libraries compile (~55 s on a 2-core machine at load 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest


@pytest.mark.slow
def test_flow_train_benchmark_quick(run_quick):
    pytest.importorskip("flowjax")
    recs = run_quick("flow_train")
    assert [r["bench"].split("_")[2] for r in recs] == ["realnvp", "maf"]
    for rec in recs:
        assert rec["unit"] == "examples/s" and rec["peer"].startswith("flowjax")
        assert rec["peer_value"] > 0 and rec["ratio"] == pytest.approx(
            rec["egm"] / rec["peer_value"], rel=2e-2
        )
        # both log-likelihoods are finite means of exact log densities, below the true
        # density's -H(p) + noise: after 2 tiny epochs neither is near it
        for k in ("egm_test_loglik", "peer_test_loglik"):
            assert math.isfinite(rec[k]) and rec[k] < rec["true_test_loglik"]
        assert rec["epochs"] == 2 and rec["loglik_target_met"] is None  # --quick: no verdict
        # the comparison over seeds is its formulas (the JSON figures are rounded to 3-5
        # significant digits: 1e-2 relative, 1e-3 absolute allowed)
        assert rec["n_seeds"] == 2 and rec["seeds"] == [0, 1]
        for k in ("egm", "peer"):
            seeds = np.array(rec[f"{k}_test_loglik_seeds"])
            assert len(seeds) == 2 and rec[f"{k}_test_loglik"] == pytest.approx(
                seeds.mean(), abs=1e-3
            )
            sd = np.std(seeds, ddof=1)
            assert rec[f"{k}_test_loglik_sd"] == pytest.approx(sd, rel=1e-2, abs=1e-3)
            assert rec[f"{k}_test_loglik_se"] == pytest.approx(
                sd / math.sqrt(2), rel=1e-2, abs=1e-3
            )
        diff = rec["egm_test_loglik"] - rec["peer_test_loglik"]
        d_se = math.hypot(rec["egm_test_loglik_se"], rec["peer_test_loglik_se"])
        assert rec["loglik_diff"] == pytest.approx(diff, abs=1e-3)
        assert rec["loglik_diff_se"] == pytest.approx(d_se, rel=1e-2, abs=1e-4)
        assert rec["loglik_diff_se_kind"] == "Welch, over seeds"
        assert rec["welch_t"] == pytest.approx(diff / d_se, rel=2e-2, abs=1e-2)
        # Welch-Satterthwaite from the two standard errors, N = 2 seeds a side (the se's are
        # rounded to 3 digits, 5e-3 relative each; df is a ratio of their 4th powers: 3e-2)
        v1, v2 = rec["egm_test_loglik_se"] ** 2, rec["peer_test_loglik_se"] ** 2
        assert rec["welch_df"] == pytest.approx((v1 + v2) ** 2 / (v1**2 + v2**2), rel=3e-2)
