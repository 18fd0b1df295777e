"""The DBM / MP-DBM / DBN evaluations (egm.eval.deep) on tiny models.

Each is checked against the front-ends it composes (same key, same numbers: the evaluation
must not change a figure) and against exact enumeration: the bracket of every split
contains the bound computed with the exact log Z.  Tolerance (as in
tests/eval/test_likelihood.py): the bracket is [u - log Ẑ_rev - 3 se_r, u - log Ẑ_fwd +
3 se_f] (u the exact mean of the bound's other terms), so it misses the exact bound only if
forward AIS over-shoots log Z by 3 se or reverse AIS under-shoots it by 3 se; with 500
temperatures both are close to unbiased (the Jensen biases point away from those misses),
so each side misses with probability ≈ P(N(0,1) > 3) = 0.13%.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import random_dbm, random_rbm

from egm.energies import dbm
from egm.errors import ConfigError
from egm.estimators import ais, exact, mpdbm
from egm.eval import likelihood
from egm.eval.deep import dbm_evaluation, dbn_evaluation
from egm.models import dbn

ALL_V4 = exact.all_binary_states(4)
KW = dict(n_chains=32, n_temps=500, reverse_burn_in=10, mf_tol=1e-7)


def _binary():
    train = jax.random.bernoulli(jax.random.key(1), 0.3, (40, 4)).astype(jnp.float32)
    return {"train": train, "test": ALL_V4}


def test_dbm_evaluation_is_the_front_end_on_one_ais_bracket():
    """Both splits share one forward/reverse AIS run (the same log Ẑ in both records, the
    figures of :func:`~egm.eval.likelihood.dbm_log_likelihood_bound` given that run), each
    bracket contains the split's bound with the exact log Z, and the log Z / ESS / mean-field
    fields are the run's and the test record's."""
    p, b, key = random_dbm(0, (4, 3, 2), 1.0), _binary(), jax.random.key(2)
    out = dbm_evaluation(key, p, b, dataset="toy", protocol="exact bits", **KW)
    bi = ais.dbm_bidirectional_ais(key, p, ais.base_rate_biases(b["train"]), n_chains=32,
                                   betas=ais.betas_salakhutdinov_murray(500), burn_in=10)  # fmt: skip
    log_z = float(exact.bm_log_partition(dbm.to_boltzmann(p)))
    fake = ais.AISResult(*(jnp.asarray(x) for x in (log_z, 0.0, 2.0)), jnp.zeros(2), log_z, ())
    for split in ("test", "train"):
        rec = out[f"{split}_loglik_bound"]
        want = likelihood.dbm_log_likelihood_bound(None, p, b[split], ais_result=bi,
                                                   mf_tol=1e-7, split=split)  # fmt: skip
        assert (rec.value, rec.lower, rec.upper) == (want.value, want.lower, want.upper)
        assert rec.split == split and rec.dataset == "toy" and rec.protocol == "exact bits"
        truth = likelihood.dbm_log_likelihood_bound(None, p, b[split], ais_result=fake,
                                                    mf_tol=1e-7).value  # fmt: skip
        assert rec.lower <= truth <= rec.upper, (split, rec, truth)
    assert out["log_z"] == float(bi.forward.log_z) and out["ais_ess"] == float(bi.forward.ess)
    assert out["log_z_reverse"] == float(bi.reverse.log_z)
    assert out["log_z_reverse_se"] == float(bi.reverse.log_z_se)
    ex = out["test_loglik_bound"].extras
    assert out["mean_field_residual_max"] == ex["mf_max_residual"] <= 1e-7
    assert out["mean_field_iters_mean"] == ex["mf_mean_iterations"]
    with pytest.raises(ConfigError, match="missing"):
        dbm_evaluation(key, p, {"test": ALL_V4}, **KW)


@pytest.mark.slow  # suite time: the smoke run of mpdbm_mnist goes through the same path
def test_mpdbm_evaluation_is_the_labels_summed_out_front_end():
    """An MP-DBM goes through the softmax-top AIS and the per-class bound: the test record is
    :func:`~egm.eval.likelihood.mpdbm_log_likelihood_bound` with ``reverse=True`` and the same
    key (what mpdbm_mnist reported before the evaluation was shared), number for number."""
    k = jax.random.split(jax.random.key(8), 2)
    mp = mpdbm.MPDBMParams(random_dbm(3, (4, 3, 2), 1.5), 1.5 * jax.random.normal(k[0], (2, 3)),
                           0.5 * jax.random.normal(k[1], (3,)))  # fmt: skip
    b, key = _binary(), jax.random.key(9)
    out = dbm_evaluation(key, mp, b, splits=("test",), **KW)
    want = likelihood.mpdbm_log_likelihood_bound(
        key, mp, b["test"], ais.base_rate_biases(b["train"]), reverse=True, reverse_burn_in=10,
        n_chains=32, betas=ais.betas_salakhutdinov_murray(500), mf_tol=1e-7,
    )  # fmt: skip
    rec = out["test_loglik_bound"]
    assert (rec.value, rec.lower, rec.upper) == (want.value, want.lower, want.upper)
    assert out["log_z"] == want.extras["log_z_forward"] and "train_loglik_bound" not in out
    assert out["log_z_reverse"] == want.extras["log_z_reverse"]


@pytest.mark.slow  # suite time: the smoke run of dbn_mnist goes through the same path
def test_dbn_evaluation_brackets_the_exact_bound():
    """A 4-3-6 DBN: the bound's bracket contains the exact bound (every expectation over Q
    enumerated, exact log Z_top; its sides also carry the Q-sampling error, so each misses
    with probability ≈ 0.13% as above); the top RBM's base rate comes from the training
    digits pushed up through the bottom layer; the bottom RBM's record is the forward-AIS
    front-end on the same schedule."""
    model = (random_rbm(0, 4, 3, 1.0), random_rbm(1, 3, 6, 1.0))
    b, key = {"train": _binary()["train"], "test": jnp.tile(ALL_V4, (2, 1))}, jax.random.key(4)
    out = dbn_evaluation(key, model, b, n_chains=32, n_temps=500, q_samples=20,
                         reverse_burn_in=10, dataset="toy", protocol="exact bits")  # fmt: skip
    rec = out["test_loglik_lower_bound"]
    truth = float(jnp.mean(dbn.lower_bound_exact(model, b["test"])))
    assert rec.lower <= truth <= rec.upper, (rec, truth)
    top = jax.nn.sigmoid(model[0].c + b["train"] @ model[0].W)
    want = likelihood.dbn_log_likelihood_bound(
        key, model, b["test"], base_b=ais.base_rate_biases(top), n_chains=32,
        betas=ais.betas_salakhutdinov_murray(500), n_samples=20, reverse=True, reverse_burn_in=10,
    )  # fmt: skip
    assert rec.value == pytest.approx(want.value, abs=1e-6)
    assert out["log_z_top"] == rec.extras["log_z_top"]
    assert out["log_z_top_reverse"] == rec.extras["log_z_reverse"]
    bottom = out["bottom_rbm_test_loglik"]
    assert bottom.method == "ais" and bottom.counts["temperatures"] == 500
    assert np.isfinite(bottom.value) and bottom.dataset == "toy"
