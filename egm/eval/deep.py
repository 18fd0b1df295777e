"""The evaluations of the deep models of §20.3–20.4 as dicts of results (records and figures).

* :func:`dbm_evaluation`: a DBM (:class:`egm.energies.dbm.DBMParams`) or a multi-prediction
  DBM (:class:`egm.estimators.mpdbm.MPDBMParams`, labels summed out): ONE bidirectional AIS
  run for ``log Z`` (:func:`egm.estimators.ais.dbm_bidirectional_ais`, base-rate model of
  the training digits) shared by the mean-field variational bounds of every split
  (:func:`egm.eval.likelihood.dbm_log_likelihood_bound` /
  :func:`~egm.eval.likelihood.mpdbm_log_likelihood_bound`, eq. 20.31), with both
  ``log Ẑ``, their standard errors and ESS, and the mean-field convergence figures.
* :func:`dbn_evaluation`: a DBN (tuple of RBMs): the variational lower bound on the test
  digits with forward and reverse AIS for the top RBM's ``log Z`` (base-rate model of the
  training digits pushed up through the layers below;
  :func:`egm.eval.likelihood.dbn_log_likelihood_bound`) and, optionally, the bottom RBM's own
  AIS log-likelihood.

Both take the binary splits of a dataset (``{"train": ..., "test": ...}``) and say the
dataset and protocol every record carries; the AIS schedule is
:func:`egm.estimators.ais.betas_salakhutdinov_murray` with ``n_temps`` temperatures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import dbm, rbm
from egm.energies.rbm import RBMParams
from egm.errors import ConfigError
from egm.estimators import ais
from egm.estimators.mpdbm import MPDBMParams
from egm.eval import likelihood


def _splits_present(binary: Mapping[str, Any], splits: Sequence[str]) -> None:
    missing = [s for s in ("train", *splits) if s not in binary]
    if missing:
        raise ConfigError(
            f"the evaluation needs the binary splits {sorted({'train', *splits})}; missing "
            f"{missing} (pass the dict of binary splits, e.g. BinarizedMNIST.binary)"
        )


def dbm_evaluation(
    key: PRNGKeyArray,
    params: dbm.DBMParams | MPDBMParams,
    binary: Mapping[str, Float[Array, "N V"]],
    *,
    splits: Sequence[str] = ("test", "train"),
    n_chains: int = 100,
    n_temps: int = 20000,
    reverse_burn_in: int = 1000,
    reverse_start: tuple[Float[Array, "C n"], ...] | None = None,
    mf_tol: float = 1e-5,
    mf_max_iter: int = 100,
    mf_init: str = "half",
    dataset: str = "unknown",
    protocol: str = "unknown",
) -> dict[str, Any]:
    """Bounds on ``mean log p(v)`` of every split in ``splits`` with one AIS bracket on ``log Z``.

    ``log Z`` (of the MP-DBM as a DBM with a softmax label layer,
    :func:`egm.estimators.ais.mpdbm_as_dbm`, when ``params`` is an MP-DBM): forward AIS with
    ``n_chains`` chains x ``n_temps`` temperatures from the base-rate model of
    ``binary["train"]``, and reverse AIS from ``reverse_start`` (odd layers of model samples,
    e.g. persistent chains) or the forward run's final states, after ``reverse_burn_in``
    Gibbs sweeps.  Each split's record is the mean-field bound with that bracket (``mf_tol``,
    ``mf_max_iter``, ``mf_init``).  Returns ``{f"{split}_loglik_bound": LogLikelihood}`` and
    ``log_z``, ``log_z_se``, ``ais_ess`` (forward), ``log_z_reverse``, ``log_z_reverse_se``,
    ``ais_ess_reverse``, ``mean_field_iters_mean``, ``mean_field_residual_max`` (of the first
    split)."""
    if not splits:
        raise ConfigError("dbm_evaluation needs at least one split to bound")
    _splits_present(binary, splits)
    mp = isinstance(params, MPDBMParams)
    as_dbm = ais.mpdbm_as_dbm(params) if mp else params
    bound = likelihood.mpdbm_log_likelihood_bound if mp else likelihood.dbm_log_likelihood_bound
    bi = ais.dbm_bidirectional_ais(
        key, as_dbm, ais.base_rate_biases(binary["train"]), n_chains=n_chains,
        betas=ais.betas_salakhutdinov_murray(n_temps), burn_in=reverse_burn_in,
        x_start=reverse_start, softmax_top=mp,
    )  # fmt: skip
    records = {
        f"{s}_loglik_bound": bound(key, params, binary[s], ais_result=bi, mf_tol=mf_tol,
                                   mf_max_iter=mf_max_iter, mf_init=mf_init, dataset=dataset,
                                   split=s, protocol=protocol)
        for s in splits
    }  # fmt: skip
    first = records[f"{splits[0]}_loglik_bound"].extras
    fwd, rev = bi.forward, bi.reverse
    return {
        **records,
        "log_z": float(fwd.log_z),
        "log_z_se": float(fwd.log_z_se),
        "ais_ess": float(fwd.ess),
        "log_z_reverse": float(rev.log_z),
        "log_z_reverse_se": float(rev.log_z_se),
        "ais_ess_reverse": float(rev.ess),
        "mean_field_iters_mean": first["mf_mean_iterations"],
        "mean_field_residual_max": first["mf_max_residual"],
    }


_hidden_probs = jax.jit(rbm.hidden_probs)


def dbn_evaluation(
    key: PRNGKeyArray,
    stack: Sequence[RBMParams],
    binary: Mapping[str, Float[Array, "N V"]],
    *,
    n_chains: int = 100,
    n_temps: int = 14500,
    q_samples: int = 10,
    reverse_burn_in: int = 1000,
    bottom_rbm: bool = True,
    dataset: str = "unknown",
    protocol: str = "unknown",
) -> dict[str, Any]:
    """The DBN's variational lower bound on the test digits (§20.3) and its ``log Z_top``.

    The top RBM's base-rate model is fitted to ``binary["train"]`` pushed up through the
    layers below (hidden means); forward and reverse AIS (``n_chains`` x ``n_temps``, reverse
    after ``reverse_burn_in`` sweeps) bracket the bound, ``q_samples`` samples of Q per test
    digit.  Returns ``test_loglik_lower_bound`` (a record), ``log_z_top``,
    ``log_z_top_reverse`` and, with ``bottom_rbm``, ``bottom_rbm_test_loglik``: the bottom
    RBM alone as a model of the digits, by forward AIS on the same schedule (an
    :func:`egm.eval.likelihood.ais_log_likelihood` record)."""
    _splits_present(binary, ("test",))
    top = np.asarray(binary["train"], np.float32)
    for p in stack[:-1]:
        top = np.asarray(_hidden_probs(p, top))
    betas = ais.betas_salakhutdinov_murray(n_temps)
    where = dict(dataset=dataset, split="test", protocol=protocol)
    bound = likelihood.dbn_log_likelihood_bound(
        key, stack, binary["test"], base_b=ais.base_rate_biases(top), n_chains=n_chains,
        betas=betas, n_samples=q_samples, reverse=True, reverse_burn_in=reverse_burn_in, **where,
    )  # fmt: skip
    out = {
        "test_loglik_lower_bound": bound,
        "log_z_top": bound.extras["log_z_top"],
        "log_z_top_reverse": bound.extras["log_z_reverse"],
    }
    if bottom_rbm:
        res = ais.rbm_ais(key, stack[0], ais.base_rate_biases(binary["train"]),
                          n_chains=n_chains, betas=betas)  # fmt: skip
        out["bottom_rbm_test_loglik"] = likelihood.ais_log_likelihood(
            rbm.free_energy, stack[0], binary["test"], res, temperatures=len(betas) - 1, **where
        )
    return out
