"""Log-likelihood front-ends: each returns one :class:`egm.eval.record.LogLikelihood`.

* :func:`rbm_log_likelihood_bracket`: RBM, forward and reverse AIS (``"ais_bracket"``).
  ``log p(v) = -F(v) - log Z``; the average over a dataset needs ``mean -F`` (exact, cheap)
  and one estimate of ``log Z`` (:mod:`egm.estimators.ais`).  Forward AIS under-estimates
  ``log Z`` in expectation (so the log-likelihood is optimistic); reverse AIS from
  (approximate) model samples over-estimates it.  The reverse side is a bound only in
  expectation and only if its start samples were exact — here they are the forward chains
  after extra Gibbs sweeps.
* :func:`ais_log_likelihood`: any model with an exact free energy and a forward AIS run
  (RBM, GRBM, ...; ``"ais"``).
* :func:`importance_sampled_log_likelihood` / :func:`importance_record`: importance
  sampling with a proposal ``q(z | x)`` (SBN, VAE; ``"importance"``, §20.10.3).
* :func:`dbn_log_likelihood_bound`: the DBN variational lower bound with AIS for the top
  RBM (Salakhutdinov & Murray 2008; ``"variational_bound"``).
* :func:`dbm_log_likelihood_bound`: the DBM mean-field bound with AIS for ``log Z``
  (Salakhutdinov & Hinton 2009; ``"variational_bound"``).

Conventions of every record: ``stderr`` is the Monte-Carlo standard error for the examples
given; ``stderr_examples`` the spread of the per-example values (``sd / √N``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.data.validate import check_binary, check_shape
from egm.energies import dbm, rbm
from egm.energies.rbm import RBMParams
from egm.errors import ConfigError, DataError
from egm.estimators import ais
from egm.estimators.importance import ISEstimate, LogWeightsFn, importance_log_likelihood
from egm.eval.metrics import mean_free_energy
from egm.eval.record import LogLikelihood, bracket_from_log_z
from egm.models import dbn as dbn_lib
from egm.samplers.gibbs import block_gibbs, run

_mean_free_energy = jax.jit(mean_free_energy, static_argnums=0)
_run = jax.jit(run, static_argnums=(0, 4))
_RBM_GIBBS = block_gibbs(rbm.BLOCKS)


@jax.jit(static_argnums=0)
def _free_energies(free_energy, params, v):
    return jax.vmap(free_energy, in_axes=(None, 0))(params, v)


def mean_negative_free_energy(
    free_energy: Callable[[Any, Array], Array],
    params: Any,
    v: Float[Array, "N V"],
    chunk: int = 10000,
) -> float:
    """``mean_n -F(v_n)`` over a (possibly large) dataset, in chunks of ``chunk`` rows."""
    v = jnp.asarray(v, jnp.float32)
    n = v.shape[0]
    total = 0.0
    for i in range(0, n, chunk):
        part = v[i : i + chunk]
        total += float(_mean_free_energy(free_energy, params, part)) * part.shape[0]
    return -total / n


def _sd_over_examples(
    free_energy: Callable[[Any, Array], Array], params: Any, v: Array, chunk: int = 10000
) -> float | None:
    """``sd_n(F(v_n)) / √N`` (float64 accumulation); None for one example."""
    n = v.shape[0]
    if n < 2:
        return None
    f = np.concatenate(
        [
            np.asarray(_free_energies(free_energy, params, v[i : i + chunk]), np.float64)
            for i in range(0, n, chunk)
        ]
    )
    return float(f.std(ddof=1) / math.sqrt(n))


def _se_of_mean(per_example: Any) -> float | None:
    """``sd / √N`` of per-example values (None for one example)."""
    x = np.asarray(per_example, np.float64)
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else None


def _n_temps(betas: Any) -> int:
    return int(len(ais.betas_salakhutdinov_murray() if betas is None else np.asarray(betas)) - 1)


def rbm_log_likelihood_bracket(
    key: PRNGKeyArray,
    params: RBMParams,
    base_b: Float[Array, " V"],
    v_test: Float[Array, "N V"],
    *,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    reverse_burn_in: int = 1000,
    z: float = 3.0,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """Mean log-likelihood ``mean -F(v) - log Z`` of ``v_test`` with forward and reverse AIS.

    The reverse run starts from the forward run's final states after ``reverse_burn_in``
    further Gibbs sweeps at ``β = 1``.  The record's ``value`` uses the forward ``log Ẑ``;
    ``[lower, upper]`` is the bracket of :func:`egm.eval.record.bracket_from_log_z` (sides
    widened by ``z`` standard errors; ``consistent=False`` and widened to cover the estimate
    when the two directions cross).  ``extras`` carries both ``log Ẑ`` with their standard
    errors; ``counts`` the chains, temperatures, burn-in sweeps, examples and both ESS.
    """
    check_shape(v_test, params.W.shape[0], "test data")
    check_binary(v_test, "test data")
    k_f, k_g, k_r = jax.random.split(key, 3)
    fwd = ais.rbm_ais(k_f, params, base_b, n_chains=n_chains, betas=betas)
    states = jax.vmap(rbm.init_state, in_axes=(None, 0))(params, fwd.final_v)
    if reverse_burn_in > 0:
        states, _ = _run(_RBM_GIBBS, k_g, states, params, reverse_burn_in)
    rev = ais.rbm_reverse_ais(k_r, params, base_b, states.v, betas=betas)
    v = jnp.asarray(v_test, jnp.float32)
    nfe = mean_negative_free_energy(rbm.free_energy, params, v)
    return bracket_from_log_z(
        nfe,
        float(fwd.log_z),
        float(fwd.log_z_se),
        float(rev.log_z),
        float(rev.log_z_se),
        z,
        ess_forward=float(fwd.ess),
        ess_reverse=float(rev.ess),
        counts={
            "examples": int(v.shape[0]),
            "chains": int(n_chains),
            "temperatures": _n_temps(betas),
            "reverse_burn_in": int(reverse_burn_in),
        },
        stderr_examples=_sd_over_examples(rbm.free_energy, params, v),
        dataset=dataset,
        split=split,
        protocol=protocol,
    )


def ais_log_likelihood(
    free_energy: Callable[[Any, Array], Array],
    params: Any,
    v: Float[Array, "N V"],
    result: ais.AISResult,
    *,
    temperatures: int | None = None,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """``mean_n -F(v_n) - log Ẑ`` from a forward AIS run ``result`` (e.g.
    :func:`egm.estimators.ais.rbm_ais` / ``grbm_ais`` of the same ``params``): method
    ``"ais"``, ``bound="upper"`` (forward AIS under-estimates ``log Z`` in expectation, so the
    figure is optimistic), ``stderr`` the AIS standard error.  ``temperatures``: the number
    of intermediate distributions (``len(betas) - 1``), recorded in ``counts``."""
    v = jnp.asarray(v, jnp.float32)
    if v.ndim != 2 or v.shape[0] < 1:
        raise DataError(f"v must be (N, V) with N >= 1, got shape {tuple(v.shape)}")
    nfe = mean_negative_free_energy(free_energy, params, v)
    lz, se = float(result.log_z), float(result.log_z_se)
    counts = {
        "examples": int(v.shape[0]),
        "chains": int(result.log_weights.shape[0]),
        "ess_forward": float(result.ess),
    }
    if temperatures is not None:
        counts["temperatures"] = int(temperatures)
    return LogLikelihood(
        value=nfe - lz,
        method="ais",
        stderr=se,
        stderr_examples=_sd_over_examples(free_energy, params, v),
        bound="upper",
        counts=counts,
        dataset=dataset,
        split=split,
        protocol=protocol,
        notes="forward AIS: optimistic in expectation (log Z under-estimated)",
        extras={"log_z_forward": lz, "log_z_forward_se": se, "mean_negative_free_energy": nfe},
    )


def importance_record(
    est: ISEstimate,
    *,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """The record of an :func:`egm.estimators.importance.importance_log_likelihood` result:
    ``value`` the mean of the per-example ``log (1/k) Σ w``, ``stderr`` its Monte-Carlo
    error for these examples (``mc_stderr_mean``), ``stderr_examples`` the spread over
    examples (``stderr_total`` combines the two), ``bound="lower"`` (a stochastic lower bound
    in expectation, Jensen; exact when q is the posterior), ``counts`` samples = k."""
    per_ex = np.asarray(est.per_example, np.float64)
    mc = float(est.mc_stderr_mean)
    return LogLikelihood.from_per_example(
        per_ex,
        "importance",
        stderr=mc if math.isfinite(mc) else None,  # NaN for k = 1
        bound="lower",
        counts={"samples": int(est.n_samples)},
        dataset=dataset,
        split=split,
        protocol=protocol,
        notes="importance sampling: a lower bound in expectation (Jensen)",
    )


def importance_sampled_log_likelihood(
    key: PRNGKeyArray,
    log_weights_fn: LogWeightsFn,
    x: Float[ArrayLike, "N ..."],
    n_samples: int,
    *,
    chunk_size: int = 500,
    batch_size: int = 100,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """Importance-sampled mean ``log p(x)`` (§20.10.3) as a record: runs
    :func:`egm.estimators.importance.importance_log_likelihood` (same arguments, same
    numbers) and converts it with :func:`importance_record`."""
    est = importance_log_likelihood(
        key, log_weights_fn, x, n_samples, chunk_size=chunk_size, batch_size=batch_size
    )
    return importance_record(est, dataset=dataset, split=split, protocol=protocol)


def dbn_log_likelihood_bound(
    key: PRNGKeyArray,
    dbn: Sequence[RBMParams],
    v: Float[Array, "N V"],
    *,
    base_b: Float[Array, " T"] | None = None,
    log_z_top: float | None = None,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    n_samples: int = 10,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """The DBN variational lower bound on ``mean log p(v)`` (§20.3) as a record.

    Give ``base_b`` (the base-rate model over the top RBM's visible layer) for
    :func:`egm.models.dbn.ais_lower_bound` (forward AIS for ``log Z_top``, ``n_chains`` x
    ``len(betas) - 1`` temperatures), or ``log_z_top`` (exact, tiny top RBMs) for
    :func:`egm.models.dbn.lower_bound`; ``n_samples`` samples of Q per example either way.
    ``stderr`` combines the Q-sampling and AIS errors; ``bound="lower"`` (with AIS it is
    stochastic: forward AIS under-estimates ``log Z_top``, so it can be optimistic by the
    AIS error)."""
    if (base_b is None) == (log_z_top is None):
        raise ConfigError(
            "give exactly one of base_b (AIS for log Z_top) and log_z_top (a known value)"
        )
    fields = dict(bound="lower", dataset=dataset, split=split, protocol=protocol)
    if log_z_top is not None:
        lb = dbn_lib.lower_bound(key, dbn, v, log_z_top, n_samples=n_samples)
        return LogLikelihood(
            value=lb.bound,
            method="variational_bound",
            stderr=lb.se_q,
            stderr_examples=_se_of_mean(lb.per_example),
            counts={"examples": int(lb.per_example.shape[0]), "samples": int(n_samples)},
            notes="DBN variational bound with a given log Z_top",
            extras={"log_z_top": float(log_z_top), "stderr_q": lb.se_q},
            **fields,
        )
    res = dbn_lib.ais_lower_bound(
        key, dbn, v, base_b, n_chains=n_chains, betas=betas, n_samples=n_samples
    )
    return LogLikelihood(
        value=res.bound,
        method="variational_bound",
        stderr=res.se,
        stderr_examples=_se_of_mean(res.per_example),
        counts={
            "examples": int(res.per_example.shape[0]),
            "samples": int(n_samples),
            "chains": int(res.n_chains),
            "temperatures": int(res.n_temps),
            "ess_forward": res.ais_ess,
        },
        notes="DBN variational bound, log Z_top by forward AIS (can be optimistic by the "
        "AIS error)",
        extras={
            "log_z_top": res.log_z_top,
            "log_z_top_se": res.log_z_top_se,
            "stderr_q": res.se_q,
        },
        **fields,
    )


@jax.jit(static_argnames=("tol", "max_iter", "init"))
def _dbm_bounds(params, v, *, tol, max_iter, init):
    def one(x):
        mu, info = dbm.mean_field(params, x, tol=tol, max_iter=max_iter, init=init)
        return dbm.variational_bound(params, x, mu), info.n_iter, info.residual

    return jax.vmap(one)(v)


def dbm_log_likelihood_bound(
    key: PRNGKeyArray,
    params: dbm.DBMParams,
    v: Float[Array, "N V"],
    base_b: Float[Array, " V"] | None = None,
    *,
    ais_result: ais.AISResult | None = None,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    mf_tol: float = 1e-5,
    mf_max_iter: int = 200,
    mf_init: str = "half",
    chunk: int = 1000,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """The DBM variational lower bound ``mean_n [-E_Q[E(v_n, h)] + H(Q_n)] - log Ẑ``
    (§20.4.2, eq. 20.31; Salakhutdinov & Hinton 2009) as a record.

    ``Q`` is the mean-field fixed point of :func:`egm.energies.dbm.mean_field` (``mf_tol``,
    ``mf_max_iter``, ``mf_init``); ``log Ẑ`` comes from forward AIS
    (:func:`egm.estimators.ais.dbm_ais` from the base-rate model ``base_b``, ``n_chains`` x
    ``len(betas) - 1`` temperatures), or from ``ais_result`` to reuse one run for several
    splits (then ``key`` and ``base_b`` are unused).  ``stderr`` is the AIS standard error
    (mean field is deterministic); the bound is stochastic through ``log Ẑ``, optimistic by
    the AIS error in expectation.  ``extras`` has the mean-field iterations and the largest
    residual (a residual above ``mf_tol`` means some examples did not converge)."""
    v = jnp.asarray(v, jnp.float32)
    check_shape(v, params.biases[0].shape[0], "data")
    check_binary(v, "data")
    temps = _n_temps(betas) if ais_result is None or betas is not None else None
    if ais_result is None:
        if base_b is None:
            raise ConfigError("give base_b (the AIS base-rate model) or a finished ais_result")
        ais_result = ais.dbm_ais(key, params, base_b, n_chains=n_chains, betas=betas)
    vals, iters, resid = [], [], []
    for i in range(0, v.shape[0], chunk):
        b, it, r = _dbm_bounds(
            params, v[i : i + chunk], tol=mf_tol, max_iter=mf_max_iter, init=mf_init
        )
        vals.append(np.asarray(b, np.float64))
        iters.append(np.asarray(it))
        resid.append(np.asarray(r))
    lz, se = float(ais_result.log_z), float(ais_result.log_z_se)
    iters, resid = np.concatenate(iters), np.concatenate(resid)
    counts = {"chains": int(ais_result.log_weights.shape[0]), "ess_forward": float(ais_result.ess)}
    if temps is not None:
        counts["temperatures"] = temps
    return LogLikelihood.from_per_example(
        np.concatenate(vals) - lz,
        "variational_bound",
        stderr=se,
        bound="lower",
        counts=counts,
        dataset=dataset,
        split=split,
        protocol=protocol,
        notes="DBM mean-field bound, log Z by forward AIS (can be optimistic by the AIS error)",
        extras={
            "log_z": lz,
            "log_z_se": se,
            "mf_mean_iterations": float(iters.mean()),
            "mf_max_residual": float(resid.max()),
        },
    )
