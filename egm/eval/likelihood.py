"""Test log-likelihood of RBMs from AIS, with a bracket (forward and reverse AIS).

``log p(v) = -F(v) - log Z``; the average over a dataset needs ``mean -F`` (exact, cheap)
and one estimate of ``log Z`` (:mod:`egm.estimators.ais`).  Forward AIS under-estimates
``log Z`` in expectation (so the log-likelihood is optimistic); reverse AIS from
(approximate) model samples over-estimates it.  :func:`rbm_log_likelihood_bracket`
reports both; the reverse side is a bound only in expectation and only if its start
samples were exact — here they are the forward chains after extra Gibbs sweeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.data.validate import check_binary, check_shape
from egm.energies import rbm
from egm.energies.rbm import RBMParams
from egm.estimators import ais
from egm.eval.metrics import mean_free_energy
from egm.samplers.gibbs import block_gibbs, run

_mean_free_energy = jax.jit(mean_free_energy, static_argnums=0)
_run = jax.jit(run, static_argnums=(0, 4))
_RBM_GIBBS = block_gibbs(rbm.BLOCKS)


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


class LogLikelihoodBracket(NamedTuple):
    """Average test log-likelihood from AIS with its bracket.

    ``estimate`` uses the forward ``log Ẑ`` (the number papers report); ``lower`` uses
    the reverse ``log Ẑ`` plus 3 standard errors, ``upper`` the forward ``log Ẑ`` minus 3
    standard errors.  ``consistent`` is False when ``lower > upper``: the two directions
    disagree beyond their noise, so neither has converged (the reverse start samples are
    not close enough to the model, or the schedule is too short) — use more temperatures
    or a longer ``reverse_burn_in`` before trusting the numbers.
    """

    estimate: float
    lower: float
    upper: float
    log_z_forward: float
    log_z_forward_se: float
    log_z_reverse: float
    log_z_reverse_se: float
    ess_forward: float
    ess_reverse: float
    consistent: bool


def rbm_log_likelihood_bracket(
    key: PRNGKeyArray,
    params: RBMParams,
    base_b: Float[Array, " V"],
    v_test: Float[Array, "N V"],
    *,
    n_chains: int = 100,
    betas: Float[Array, " K1"] | np.ndarray | None = None,
    reverse_burn_in: int = 1000,
) -> LogLikelihoodBracket:
    """Mean test log-likelihood ``mean -F(v) - log Z`` with forward and reverse AIS.

    The reverse run starts from the forward run's final states after
    ``reverse_burn_in`` further Gibbs sweeps at ``β = 1``.
    """
    check_shape(v_test, params.W.shape[0], "test data")
    check_binary(v_test, "test data")
    k_f, k_g, k_r = jax.random.split(key, 3)
    fwd = ais.rbm_ais(k_f, params, base_b, n_chains=n_chains, betas=betas)
    states = jax.vmap(rbm.init_state, in_axes=(None, 0))(params, fwd.final_v)
    if reverse_burn_in > 0:
        states, _ = _run(_RBM_GIBBS, k_g, states, params, reverse_burn_in)
    rev = ais.rbm_reverse_ais(k_r, params, base_b, states.v, betas=betas)
    nfe = mean_negative_free_energy(rbm.free_energy, params, v_test)
    lz_f, lz_r = float(fwd.log_z), float(rev.log_z)
    se_f, se_r = float(fwd.log_z_se), float(rev.log_z_se)
    return LogLikelihoodBracket(
        estimate=nfe - lz_f,
        lower=nfe - (lz_r + 3 * se_r),
        upper=nfe - (lz_f - 3 * se_f),
        log_z_forward=lz_f,
        log_z_forward_se=se_f,
        log_z_reverse=lz_r,
        log_z_reverse_se=se_r,
        ess_forward=float(fwd.ess),
        ess_reverse=float(rev.ess),
        consistent=bool(lz_r + 3 * se_r >= lz_f - 3 * se_f),
    )
