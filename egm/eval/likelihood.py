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
  (Salakhutdinov & Hinton 2009; ``"variational_bound"``); :func:`mpdbm_log_likelihood_bound`
  the same for a multi-prediction DBM with its labels summed out.

The three bounds take forward AIS for ``log Z`` (the value, optimistic by the AIS error) and,
with a reverse run (``reverse=True`` or a ``BidirectionalAIS``), a bracket ``[lower, upper]``
of the bound itself: ``bound="lower"`` with ``lower``/``upper`` set, by the rule of
:func:`egm.eval.record.bracket_from_log_z`.  ``lower`` (reverse AIS) is the conservative
figure.

Conventions of every record: ``stderr`` is the Monte-Carlo standard error for the examples
given; ``stderr_examples`` the spread of the per-example values (``sd / √N``).
"""

from __future__ import annotations

import dataclasses
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
from egm.estimators.mpdbm import MPDBMParams
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


_BRACKET_NOTE = (
    "the bracket is on the bound itself (the bound with the exact log Z): lower side from "
    "reverse AIS (conservative: below the log-likelihood in expectation when the reverse "
    "chains start from model samples), upper side from forward AIS"
)


def _bound_bracket(
    unnorm: float,
    se_unnorm: float,
    bi: ais.BidirectionalAIS,
    z: float,
    *,
    counts: dict,
    extras: dict,
    notes: str,
    stderr_examples: float | None,
    dataset: str,
    split: str,
    protocol: str,
) -> LogLikelihood:
    """The record of a variational bound ``unnorm - log Z`` with an AIS bracket on ``log Z``.

    ``unnorm``: the mean over examples of the bound without ``log Z`` (``mean -F(v)`` of
    :func:`egm.eval.record.bracket_from_log_z`), with Monte-Carlo error ``se_unnorm`` (0 when
    deterministic).  The rule is :func:`bracket_from_log_z`'s (estimate from the forward
    ``log Ẑ``; sides ``unnorm - (log Ẑ_rev + z·se_r)`` and ``unnorm - (log Ẑ_fwd - z·se_f)``;
    ``consistent=False`` and the covering interval when the two directions cross), with the
    standard errors of the two sides widened in quadrature by ``se_unnorm`` (the noise of
    ``unnorm`` is common to both sides, so it does not enter the crossing test).  Method
    ``"variational_bound"`` with ``bound="lower"``.
    """
    fwd, rev = bi.forward, bi.reverse
    lz_f, se_f = float(fwd.log_z), float(fwd.log_z_se)
    lz_r, se_r = float(rev.log_z), float(rev.log_z_se)
    counts = {
        **counts,
        "chains": int(fwd.log_weights.shape[0]),
        "chains_reverse": int(rev.log_weights.shape[0]),
        "temperatures": int(bi.temperatures),
        "reverse_burn_in": int(bi.burn_in),
    }
    rec = bracket_from_log_z(
        unnorm,
        lz_f,
        se_f,
        lz_r,
        se_r,
        z,
        ess_forward=float(fwd.ess),
        ess_reverse=float(rev.ess),
        counts=counts,
        stderr_examples=stderr_examples,
        dataset=dataset,
        split=split,
        protocol=protocol,
        notes=f"{notes}; {_BRACKET_NOTE}",
    )
    lower_side = rec.extras["lower_side"] - z * (math.hypot(se_r, se_unnorm) - se_r)
    upper_side = rec.extras["upper_side"] + z * (math.hypot(se_f, se_unnorm) - se_f)
    ex = {k: v for k, v in rec.extras.items() if k != "mean_negative_free_energy"}
    return dataclasses.replace(
        rec,
        method="variational_bound",
        bound="lower",
        stderr=math.hypot(se_f, se_unnorm),
        lower=min(lower_side, upper_side, rec.value),
        upper=max(lower_side, upper_side, rec.value),
        extras={
            **ex,
            "lower_side": lower_side,
            "upper_side": upper_side,
            "reverse_start": bi.start,
            "mean_bound_without_log_z": unnorm,
            **extras,
        },
    )


def dbn_log_likelihood_bound(
    key: PRNGKeyArray,
    dbn: Sequence[RBMParams],
    v: Float[Array, "N V"],
    *,
    base_b: Float[Array, " T"] | None = None,
    log_z_top: float | None = None,
    ais_result: ais.AISResult | ais.BidirectionalAIS | None = None,
    reverse: bool = False,
    reverse_burn_in: int = 1000,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    n_samples: int = 10,
    z: float = 3.0,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """The DBN variational lower bound on ``mean log p(v)`` (§20.3) as a record.

    ``log Z_top`` of the top RBM comes from exactly one of: ``base_b`` (the base-rate model
    over the top RBM's visible layer; forward AIS with ``n_chains`` x ``len(betas) - 1``
    temperatures, :func:`egm.models.dbn.ais_lower_bound`, and with ``reverse=True`` also
    reverse AIS from the forward run's final states after ``reverse_burn_in`` Gibbs sweeps,
    :func:`egm.estimators.ais.rbm_bidirectional_ais`); ``ais_result`` (a finished run of the
    top RBM, to share it between splits: an ``AISResult`` for the forward side only, a
    ``BidirectionalAIS`` for the bracket; ``key`` then only draws Q); or ``log_z_top``
    (exact, tiny top RBMs; :func:`egm.models.dbn.lower_bound`; ``reverse`` is then moot).
    ``n_samples`` samples of Q per example either way.

    ``value`` is the bound with the forward ``log Ẑ_top``; ``bound="lower"`` (with AIS it is
    stochastic: forward AIS under-estimates ``log Z_top``, so the value can be optimistic by
    the AIS error).  With a reverse run ``[lower, upper]`` brackets the bound (rule of
    :func:`egm.eval.record.bracket_from_log_z`, ``z`` standard errors, sides widened in
    quadrature by the Q-sampling error ``stderr_q``); ``lower`` is the conservative figure.
    ``stderr`` combines the Q-sampling and forward AIS errors.
    """
    given = [x is not None for x in (base_b, log_z_top, ais_result)]
    if sum(given) != 1:
        raise ConfigError(
            "give exactly one of base_b (AIS for log Z_top), ais_result (a finished AIS run of "
            "the top RBM) and log_z_top (a known value)"
        )
    if reverse and isinstance(ais_result, ais.AISResult):
        raise ConfigError(
            "reverse=True with a forward-only ais_result: for a bracket pass a BidirectionalAIS "
            "of the top RBM (egm.estimators.ais.rbm_bidirectional_ais) as ais_result"
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
    if base_b is not None and not reverse:
        res = dbn_lib.ais_lower_bound(
            key, dbn, v, base_b, n_chains=n_chains, betas=betas, n_samples=n_samples
        )
        return _dbn_forward_record(res, fields)
    if base_b is not None:
        dbn = dbn_lib.check(dbn)
        key, k_ais = jax.random.split(key)
        ais_result = ais.rbm_bidirectional_ais(
            k_ais, dbn[-1], base_b, n_chains=n_chains, betas=betas, burn_in=reverse_burn_in
        )
    fwd = ais_result.forward if isinstance(ais_result, ais.BidirectionalAIS) else ais_result
    lb = dbn_lib.lower_bound(key, dbn, v, fwd.log_z, n_samples=n_samples)
    lz, se_z = float(fwd.log_z), float(fwd.log_z_se)
    if isinstance(ais_result, ais.AISResult):  # a given forward run: its schedule, if told
        res = dbn_lib.DBNBound(
            bound=lb.bound,
            se=float(np.hypot(lb.se_q, se_z)),
            se_q=lb.se_q,
            log_z_top=lz,
            log_z_top_se=se_z,
            ais_ess=float(fwd.ess),
            n_samples=n_samples,
            n_chains=int(fwd.log_weights.shape[0]),
            n_temps=_n_temps(betas),
            per_example=lb.per_example,
        )
        return _dbn_forward_record(res, fields, temperatures=betas is not None)
    return _bound_bracket(
        lb.bound + lz,
        lb.se_q,
        ais_result,
        z,
        counts={"examples": int(lb.per_example.shape[0]), "samples": int(n_samples)},
        extras={"log_z_top": lz, "log_z_top_se": se_z, "stderr_q": lb.se_q},
        notes="DBN variational bound, log Z_top by forward and reverse AIS of the top RBM",
        stderr_examples=_se_of_mean(lb.per_example),
        dataset=dataset,
        split=split,
        protocol=protocol,
    )


def _dbn_forward_record(
    res: dbn_lib.DBNBound, fields: dict, *, temperatures: bool = True
) -> LogLikelihood:
    """The forward-only DBN record (``temperatures``: whether ``res.n_temps`` is known)."""
    counts = {
        "examples": int(res.per_example.shape[0]),
        "samples": int(res.n_samples),
        "chains": int(res.n_chains),
        "ess_forward": res.ais_ess,
    }
    if temperatures:
        counts["temperatures"] = int(res.n_temps)
    return LogLikelihood(
        value=res.bound,
        method="variational_bound",
        stderr=res.se,
        stderr_examples=_se_of_mean(res.per_example),
        counts=counts,
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


@jax.jit(static_argnames=("tol", "max_iter", "init"))
def _mpdbm_bounds(params, v, *, tol, max_iter, init):
    """Per-class mean field: ``logsumexp_k [c_k + bound_k(v)]`` with ``bound_k`` the DBM
    bound of the DBM that clamps the label to class ``k`` (its top bias ``b_L + U_{:,k}``)."""
    weights, biases = params.dbm.weights, params.dbm.biases
    n_classes = params.label_b.shape[0]

    def one(x):
        def per_class(k):
            p_k = dbm.DBMParams(weights, (*biases[:-1], biases[-1] + params.label_W[:, k]))
            mu, info = dbm.mean_field(p_k, x, tol=tol, max_iter=max_iter, init=init)
            return params.label_b[k] + dbm.variational_bound(p_k, x, mu), info.n_iter, info.residual

        b, it, res = jax.vmap(per_class)(jnp.arange(n_classes))
        return jax.nn.logsumexp(b), jnp.max(it), jnp.max(res)

    return jax.vmap(one)(v)


def _bidirectional(
    key,
    params,
    base_b,
    ais_result,
    *,
    reverse: bool,
    reverse_burn_in: int,
    reverse_start,
    n_chains: int,
    betas,
    softmax_top: bool,
):
    """The forward run or the forward/reverse pair behind a DBM-family bound."""
    if isinstance(ais_result, ais.BidirectionalAIS):
        return ais_result
    if reverse and ais_result is not None:
        raise ConfigError(
            "reverse=True with a forward-only ais_result: to reuse finished runs for a bracket "
            "pass a BidirectionalAIS (egm.estimators.ais.dbm_bidirectional_ais) as ais_result"
        )
    if ais_result is not None:
        return ais_result
    if base_b is None:
        raise ConfigError("give base_b (the AIS base-rate model) or a finished ais_result")
    if reverse:
        return ais.dbm_bidirectional_ais(
            key,
            params,
            base_b,
            n_chains=n_chains,
            betas=betas,
            burn_in=reverse_burn_in,
            x_start=reverse_start,
            softmax_top=softmax_top,
        )
    return ais.dbm_ais(key, params, base_b, n_chains=n_chains, betas=betas, softmax_top=softmax_top)


def _dbm_family_record(
    per_example_unnorm: np.ndarray,
    iters: np.ndarray,
    resid: np.ndarray,
    res: ais.AISResult | ais.BidirectionalAIS,
    temps: int | None,
    z: float,
    model: str,
    fields: dict,
) -> LogLikelihood:
    mf = {"mf_mean_iterations": float(iters.mean()), "mf_max_residual": float(resid.max())}
    if isinstance(res, ais.BidirectionalAIS):
        fwd = res.forward
        return _bound_bracket(
            float(per_example_unnorm.mean()),
            0.0,
            res,
            z,
            counts={"examples": int(per_example_unnorm.shape[0])},
            extras={"log_z": float(fwd.log_z), "log_z_se": float(fwd.log_z_se), **mf},
            notes=f"{model} mean-field bound, log Z by forward and reverse AIS",
            stderr_examples=_se_of_mean(per_example_unnorm),
            **fields,
        )
    lz, se = float(res.log_z), float(res.log_z_se)
    counts = {"chains": int(res.log_weights.shape[0]), "ess_forward": float(res.ess)}
    if temps is not None:
        counts["temperatures"] = temps
    return LogLikelihood.from_per_example(
        per_example_unnorm - lz,
        "variational_bound",
        stderr=se,
        bound="lower",
        counts=counts,
        notes=f"{model} mean-field bound, log Z by forward AIS (can be optimistic by the AIS "
        "error)",
        extras={"log_z": lz, "log_z_se": se, **mf},
        **fields,
    )


def _chunked_bounds(fn, params, v, chunk, **kw):
    vals, iters, resid = [], [], []
    for i in range(0, v.shape[0], chunk):
        b, it, r = fn(params, v[i : i + chunk], **kw)
        vals.append(np.asarray(b, np.float64))
        iters.append(np.asarray(it))
        resid.append(np.asarray(r))
    return np.concatenate(vals), np.concatenate(iters), np.concatenate(resid)


_FAMILY_ARGS = ("ais_result", "reverse", "reverse_burn_in", "reverse_start", "n_chains", "betas",
                "z", "mf_tol", "mf_max_iter", "mf_init", "chunk", "dataset", "split", "protocol")  # fmt: skip


def _family_args(args: dict) -> dict:
    """The keyword arguments that :func:`dbm_log_likelihood_bound` and
    :func:`mpdbm_log_likelihood_bound` share, from the caller's ``locals()``."""
    return {k: args[k] for k in _FAMILY_ARGS}


def _dbm_family_bound(
    key, params, as_dbm: dbm.DBMParams, v, base_b, *, ais_result, reverse: bool,
    reverse_burn_in: int, reverse_start, n_chains: int, betas, z: float, mf_tol: float,
    mf_max_iter: int, mf_init: str, chunk: int, dataset: str, split: str, protocol: str,
) -> LogLikelihood:  # fmt: skip
    """The bound of a DBM (``params`` a :class:`~egm.energies.dbm.DBMParams`) or of an MP-DBM
    with its labels summed out (``params`` an :class:`MPDBMParams`): check ``v``, run (or
    reuse) the AIS behind ``log Z`` on ``as_dbm`` (the MP-DBM as a DBM with a softmax top
    layer), the mean-field bounds in chunks, and assemble the record."""
    softmax_top = isinstance(params, MPDBMParams)
    v = jnp.asarray(v, jnp.float32)
    check_shape(v, as_dbm.biases[0].shape[0], "data")
    check_binary(v, "data")
    temps = _n_temps(betas) if ais_result is None or betas is not None else None
    res = _bidirectional(
        key, as_dbm, base_b, ais_result, reverse=reverse, reverse_burn_in=reverse_burn_in,
        reverse_start=reverse_start, n_chains=n_chains, betas=betas, softmax_top=softmax_top,
    )  # fmt: skip
    b, iters, resid = _chunked_bounds(
        _mpdbm_bounds if softmax_top else _dbm_bounds, params, v, chunk, tol=mf_tol,
        max_iter=mf_max_iter, init=mf_init,
    )  # fmt: skip
    model = "MP-DBM (labels summed out)" if softmax_top else "DBM"
    fields = dict(dataset=dataset, split=split, protocol=protocol)
    return _dbm_family_record(b, iters, resid, res, temps, z, model, fields)


def dbm_log_likelihood_bound(
    key: PRNGKeyArray,
    params: dbm.DBMParams,
    v: Float[Array, "N V"],
    base_b: Float[Array, " V"] | None = None,
    *,
    ais_result: ais.AISResult | ais.BidirectionalAIS | None = None,
    reverse: bool = False,
    reverse_burn_in: int = 1000,
    reverse_start: tuple[Float[Array, "C n"], ...] | None = None,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    z: float = 3.0,
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
    ``mf_max_iter``, ``mf_init``).  ``log Ẑ`` comes from forward AIS
    (:func:`egm.estimators.ais.dbm_ais` from the base-rate model ``base_b``, ``n_chains`` x
    ``len(betas) - 1`` temperatures); with ``reverse=True`` also from reverse AIS
    (:func:`egm.estimators.ais.dbm_reverse_ais`, started from ``reverse_start``, the odd
    layers of approximate model samples such as persistent chains, or by default from the
    forward run's final states, after ``reverse_burn_in`` Gibbs sweeps at ``β = 1``).  To reuse
    runs for several splits pass ``ais_result`` (an ``AISResult`` of the forward side, or a
    :class:`~egm.estimators.ais.BidirectionalAIS` for the bracket); then ``key`` and
    ``base_b`` are unused.

    ``value`` is the bound with the forward ``log Ẑ`` and ``stderr`` the forward AIS error
    (mean field is deterministic): stochastic, optimistic by the AIS error in expectation,
    ``bound="lower"``.  With the reverse run, ``[lower, upper]`` brackets the bound (rule of
    :func:`egm.eval.record.bracket_from_log_z` with ``z`` standard errors): ``lower`` is the
    conservative figure (a lower bound on the log-likelihood as long as reverse AIS
    over-estimates ``log Z``); ``consistent=False`` with a note when the directions cross.
    ``extras`` has both ``log Ẑ``, the mean-field iterations and the largest residual (a
    residual above ``mf_tol`` means some examples did not converge)."""
    return _dbm_family_bound(key, params, params, v, base_b, **_family_args(locals()))


def mpdbm_log_likelihood_bound(
    key: PRNGKeyArray,
    params: MPDBMParams,
    v: Float[Array, "N V"],
    base_b: Float[Array, " V"] | None = None,
    *,
    ais_result: ais.AISResult | ais.BidirectionalAIS | None = None,
    reverse: bool = False,
    reverse_burn_in: int = 1000,
    reverse_start: tuple[Float[Array, "C n"], ...] | None = None,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    z: float = 3.0,
    mf_tol: float = 1e-5,
    mf_max_iter: int = 200,
    mf_init: str = "half",
    chunk: int = 1000,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    r"""A variational lower bound on ``mean log p(v)`` of a multi-prediction DBM
    (:mod:`egm.estimators.mpdbm`, labels summed out), as a record.

    ``log p(v) = log Σ_k Σ_h exp(-E(v, h, y=k)) - log Z``.  For each class ``k`` the label
    clamped to ``k`` leaves a DBM with top bias ``b_L + U_{:,k}`` and the constant ``c_k``;
    its mean-field bound ``B_k(v) ≤ log Σ_h exp(-E(v, h, k))`` (:func:`dbm_log_likelihood_bound`'s
    ``Q``, one fixed point per class) gives ``log Σ_k exp(B_k(v)) - log Z ≤ log p(v)``.
    ``log Z`` is that of the DBM with a softmax top layer
    (:func:`egm.estimators.ais.mpdbm_as_dbm`, ``softmax_top=True``); ``ais_result`` must be
    a run of those parameters.  Arguments, bracket and record as in
    :func:`dbm_log_likelihood_bound`; ``mf_max_residual`` is over all examples and classes.
    """
    as_dbm = ais.mpdbm_as_dbm(params)  # checks the MP-DBM's shapes
    return _dbm_family_bound(key, params, as_dbm, v, base_b, **_family_args(locals()))
