"""The log-likelihood record (egm.eval.record), its units and the Gaussian baseline.

Everything here is deterministic arithmetic, so the checks are exact (float64 rounding):
JSON round trips, validation, the AIS bracket rule of issues 11/12 (a bracket contains its
own estimate; a crossing is flagged), bits per dimension against closed-form entropies,
and the Gaussian baseline against the multivariate normal density written out by hand.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError, DataError
from egm.eval import (
    METHODS,
    LogLikelihood,
    bits_per_dim,
    bracket_from_log_z,
    gaussian_log_likelihood,
    pixel_log_det,
)

# A real run (centered RBM, embedded subset, short AIS): reverse log Z below forward log Z.
LZ_F, SE_F, LZ_R, SE_R = 1366.57, 0.03, 1366.46, 0.02
NFE = 1259.27  # mean -F(v) of the test digits: estimate -107.30 nats


def _record(**kw):
    base = dict(
        value=-107.3,
        method="ais_bracket",
        stderr=0.03,
        stderr_examples=0.8,
        lower=-107.7,
        upper=-107.1,
        counts={"chains": np.int64(100), "temperatures": 14500, "ess_forward": jnp.float32(40.5)},
        dataset="embedded:mnist_subset(4000/1000/1000)",
        split="test",
        protocol="fixed binarization",
        extras={"log_z_forward": np.float32(1366.57), "flag": np.bool_(True), "tag": "x"},
    )
    base.update(kw)
    return LogLikelihood(**base)


def test_json_round_trip_gives_plain_python_and_the_same_record():
    r = _record()
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)  # strict JSON: no NaN, no numpy scalars
    back = LogLikelihood.from_dict(json.loads(text))
    assert back == r
    assert type(d["counts"]["chains"]) is int and type(d["counts"]["ess_forward"]) is float
    assert type(d["extras"]["log_z_forward"]) is float and d["extras"]["flag"] is True
    assert set(d) >= {"value", "stderr", "lower", "upper", "bound", "method", "counts"}
    assert set(d) >= {"dataset", "split", "protocol", "unit", "notes", "consistent", "extras"}


def test_describe_names_method_counts_split_and_protocol():
    s = str(_record())
    assert s.startswith("-107.30 ± 0.03 nats [-107.70, -107.10] (AIS bracket")
    for part in ("100 chains x 14500 temps", "mnist_subset(4000/1000/1000) test", "fixed binar"):
        assert part in s
    assert "INCONSISTENT" not in s
    vb = LogLikelihood(value=-86.2, method="variational_bound", bound="lower")
    assert "variational bound, lower bound" in vb.describe()


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"method": "aiss"}, ConfigError, "method must be one of"),
        ({"unit": "bits"}, ConfigError, "unit must be one of"),
        ({"split": "validation"}, ConfigError, "split must be one of"),
        ({"bound": "below"}, ConfigError, "bound must be one of"),
        ({"value": float("nan")}, DataError, "value must be finite"),
        ({"value": float("-inf")}, DataError, "value must be finite"),
        ({"stderr": -0.1}, DataError, "stderr must be >= 0"),
        ({"stderr": float("nan")}, DataError, "stderr must be finite"),
        ({"lower": -107.0, "upper": -107.5}, DataError, "consistent=True is claimed"),
        ({"lower": -107.2}, DataError, "does not contain its own estimate"),
        ({"upper": -107.4}, DataError, "does not contain its own estimate"),
        ({"counts": {"chains": "100"}}, ConfigError, "counts"),
        ({"extras": {"a": [1, 2]}}, ConfigError, "scalar"),
        ({"dataset": ""}, ConfigError, "dataset"),
    ],
)
def test_validation(kw, err, match):
    with pytest.raises(err, match=match):
        _record(**kw)


def test_from_dict_rejects_unknown_and_missing_fields():
    d = _record().to_dict()
    with pytest.raises(ConfigError, match="unknown LogLikelihood fields"):
        LogLikelihood.from_dict({**d, "estimate": 1.0})
    d.pop("method")
    with pytest.raises(ConfigError, match="needs"):
        LogLikelihood.from_dict(d)
    assert set(METHODS) == {
        "exact",
        "ais",
        "reverse_ais",
        "ais_bracket",
        "importance",
        "variational_bound",
        "parzen",
    }


def test_bracket_of_crossing_runs_is_flagged_and_covers_estimate_and_both_sides():
    """Reverse log Z 1366.46 (± 0.02) < forward 1366.57: the raw lower side
    NFE - (1366.46 + 3·0.02) lies ABOVE the estimate NFE - 1366.57, so the raw bracket
    would not contain its own estimate.  The record says so and reports min/max of all
    three."""
    r = bracket_from_log_z(NFE, LZ_F, SE_F, LZ_R, SE_R, ess_forward=40.0, ess_reverse=35.0)
    est = NFE - LZ_F
    lower_side, upper_side = NFE - (LZ_R + 3 * SE_R), NFE - (LZ_F - 3 * SE_F)
    assert lower_side > est  # the crossing
    assert r.consistent is False and "cross" in r.notes and "INCONSISTENT" in str(r)
    assert r.value == pytest.approx(est, abs=1e-12)
    assert r.lower <= r.value <= r.upper
    assert r.lower <= lower_side <= r.upper and r.lower <= upper_side <= r.upper
    assert r.lower == pytest.approx(min(est, lower_side, upper_side), abs=1e-12)
    assert r.upper == pytest.approx(max(est, lower_side, upper_side), abs=1e-12)
    assert r.method == "ais_bracket" and r.stderr == SE_F and r.bound is None
    assert r.extras["log_z_reverse"] == LZ_R and r.extras["log_z_forward_se"] == SE_F
    assert r.counts == {"ess_forward": 40.0, "ess_reverse": 35.0}
    LogLikelihood.from_dict(json.loads(json.dumps(r.to_dict())))  # valid after the round trip


def test_bracket_of_ordered_runs_is_the_plain_bracket():
    """Reverse above forward: [NFE - (lz_r + 3 se_r), NFE - (lz_f - 3 se_f)], consistent; a
    crossing within 3 reverse s.e. stays consistent (expected by chance) with a note."""
    r = bracket_from_log_z(NFE, 1366.40, 0.03, 1366.50, 0.02)
    assert r.consistent and r.notes == ""
    assert r.lower == pytest.approx(NFE - 1366.56) and r.upper == pytest.approx(NFE - 1366.31)
    near = bracket_from_log_z(NFE, LZ_F, SE_F, LZ_R, 0.05)  # 1366.46 + 0.15 >= 1366.57
    assert near.consistent and "within 3 reverse standard errors" in near.notes
    assert near.lower == pytest.approx(NFE - (LZ_R + 0.15))
    with pytest.raises(DataError, match="finite"):
        bracket_from_log_z(NFE, float("nan"), SE_F, LZ_R, SE_R)


def test_bits_per_dim_of_uniform_and_gaussian_are_the_analytic_entropies():
    """Uniform on [0,1)^D: log p = 0 nats, 0 bits/dim of the unit cube, and exactly 8
    bits/dim of the dequantised 8-bit image (y = 256 x has density 256^-D).  Gaussian
    N(0, σ² I) whitened by A = I/σ: E log N(z; 0, I) = -D/2 (log 2π + 1) plus
    log|det A| = -D log σ gives the differential entropy ½ log₂(2πe σ²) per dimension."""
    D = 7
    assert bits_per_dim(0.0, D) == 0.0
    assert bits_per_dim(0.0, D, n_levels=256) == pytest.approx(8.0, abs=1e-12)
    sigma = 0.37

    class W(NamedTuple):
        forward: np.ndarray

    w = W(np.eye(D) / sigma)
    assert pixel_log_det(w) == pytest.approx(-D * math.log(sigma), abs=1e-12)
    ll_z = -0.5 * D * (math.log(2 * math.pi) + 1.0)
    analytic = 0.5 * math.log2(2 * math.pi * math.e * sigma**2)
    assert bits_per_dim(ll_z, D, pixel_log_det(w)) == pytest.approx(analytic, abs=1e-12)
    assert math.isnan(pixel_log_det(W(np.ones((D, 3)))))  # PCA onto a subspace
    with pytest.raises(DataError, match="finite"):
        bits_per_dim(ll_z, D, pixel_log_det(W(np.ones((D, 3)))))
    with pytest.raises(ConfigError, match="n_dims"):
        bits_per_dim(ll_z, 0)


def test_record_in_bits_per_dim_swaps_bracket_and_flips_bound():
    D, c = 784, 5.0
    r = _record(bound="lower")
    b = r.in_bits_per_dim(D, c)
    scale = 1 / (D * math.log(2))
    assert b.unit == "bits/dim" and b.bound == "upper"
    assert b.value == pytest.approx(-(r.value + c) * scale)
    assert b.lower == pytest.approx(-(r.upper + c) * scale) and b.lower < b.upper
    assert b.upper == pytest.approx(-(r.lower + c) * scale)
    assert b.stderr == pytest.approx(r.stderr * scale)
    assert b.extras["bpd_n_dims"] == D and b.extras["bpd_log_det_jacobian"] == c
    with pytest.raises(ConfigError, match="nats"):
        b.in_bits_per_dim(D)


def test_from_per_example():
    x = np.array([-1.0, -2.0, -4.0])
    r = LogLikelihood.from_per_example(x, "exact", counts={"dims": 2}, split="valid")
    assert r.value == pytest.approx(-7 / 3) and r.counts == {"examples": 3, "dims": 2}
    assert r.stderr_examples == pytest.approx(np.std(x, ddof=1) / math.sqrt(3))
    assert r.stderr is None and r.stderr_total == pytest.approx(r.stderr_examples)
    assert LogLikelihood.from_per_example(x[:1], "exact").stderr_examples is None
    with pytest.raises(DataError, match="NaN"):
        LogLikelihood.from_per_example(np.array([1.0, np.nan]), "exact")


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_gaussian_baseline_is_the_exact_multivariate_normal_log_density(ridge):
    """mean_m log N(z_m; μ, Σ_λ), Σ_λ = Σ_ML + ridge·tr(Σ_ML)/D·I, written out with slogdet
    and a linear solve (independent of the Cholesky route of the implementation)."""
    rng = np.random.default_rng(0)
    D = 3
    z_tr = rng.normal(size=(20, D)) @ rng.normal(size=(D, D)) + 1.5
    z_te = rng.normal(size=(6, D))
    mu = z_tr.mean(0)
    S = (z_tr - mu).T @ (z_tr - mu) / len(z_tr)
    S = S + ridge * np.trace(S) / D * np.eye(D)
    d = z_te - mu
    quad = np.einsum("nd,nd->n", d, np.linalg.solve(S, d.T).T)
    per = -0.5 * quad - 0.5 * np.linalg.slogdet(S)[1] - 0.5 * D * math.log(2 * math.pi)
    r = gaussian_log_likelihood(z_tr, z_te, ridge, dataset="toy", protocol="none")
    assert r.method == "exact" and r.stderr is None and r.unit == "nats"
    assert r.value == pytest.approx(per.mean(), rel=1e-12, abs=1e-12)
    assert r.stderr_examples == pytest.approx(per.std(ddof=1) / math.sqrt(6), rel=1e-10)
    assert r.counts == {"examples": 6, "train_examples": 20, "dims": D}
    with pytest.raises(DataError, match="singular"):
        gaussian_log_likelihood(np.zeros((5, 2)), z_te[:, :2], 0.0)
