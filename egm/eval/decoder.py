"""Log-likelihood records of decoder-based models by AIS over the latent space, and BDMC.

Front-ends of :mod:`egm.estimators.decoder_ais` that return one
:class:`egm.eval.record.LogLikelihood` (§20.10.2-§20.10.3; Wu et al. 2017):

* :func:`decoder_log_likelihood`: any ``log p(x | z)`` with a ``N(0, I)`` prior
  (method ``"ais"``, ``bound="lower"``: forward AIS is unbiased in ``p(x)``, so its log is a
  stochastic lower bound — the opposite direction to AIS for an RBM's ``log Z``);
* :func:`vae_decoder_log_likelihood`: the generator network of an :class:`egm.models.vae.VAE`
  with its output distribution (Bernoulli, Gaussian or discretized logistic);
* :func:`bdmc_record`: the bidirectional Monte Carlo bracket (Grosse et al. 2015, 2016) of a
  :func:`egm.estimators.decoder_ais.bdmc` run on data simulated from the model (method
  ``"ais_bracket"``: forward AIS the lower side and the estimate, reverse AIS from the
  generating latents the upper side); :func:`vae_simulator` draws those data from a VAE.

Conventions as in :mod:`egm.eval.likelihood`: ``stderr`` is the Monte-Carlo error of the
mean for these examples, ``sqrt(Σ_n se_n²) / N``; ``stderr_examples`` the spread of the
per-example values, ``sd / √N``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.data.validate import check_binary, check_shape, check_unit_interval
from egm.errors import ConfigError
from egm.estimators.decoder_ais import (
    BDMCResult,
    DecoderAISResult,
    LogLikelihoodFn,
    decoder_ais,
)
from egm.eval.record import LogLikelihood
from egm.models.vae import VAE, output_log_prob, sample_output

__all__ = [
    "bdmc_record",
    "decoder_ais_record",
    "decoder_log_likelihood",
    "vae_decoder_log_likelihood",
    "vae_log_likelihood_fn",
    "vae_simulator",
]


def _mc_se(se: Array) -> float | None:
    """``sqrt(Σ se_n²) / N``; None when the per-example errors are undefined (one chain)."""
    se = np.asarray(se, np.float64)
    v = float(np.sqrt(np.sum(se**2)) / se.size)
    return v if math.isfinite(v) else None


def _settings(res: DecoderAISResult) -> dict[str, int]:
    return {
        "chains": int(res.log_weights.shape[1]),
        "temperatures": int(res.step_sizes.shape[1]),
        "leapfrog": int(res.n_leapfrog),
        "hmc_steps": int(res.hmc_steps),
        "adapt_chains": int(res.adapt_chains),
    }


def decoder_ais_record(
    result: DecoderAISResult,
    *,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
) -> LogLikelihood:
    """The record of a forward :func:`egm.estimators.decoder_ais.decoder_ais` run: ``value``
    the mean of the per-example ``log p̂(x_n)``, ``bound="lower"`` (in expectation, Jensen),
    ``stderr`` the Monte-Carlo error for these examples (None with one chain), counts
    chains / temperatures / leapfrog steps / HMC moves per temperature / pilot chains and the
    mean ESS (its minimum, the mean acceptance and the median last step in ``extras``)."""
    if result.direction != "forward":
        raise ConfigError(
            "decoder_ais_record takes a forward run (a stochastic lower bound); a reverse run "
            "is one side of a BDMC bracket: use bdmc_record"
        )
    ess = np.asarray(result.ess, np.float64)
    return LogLikelihood.from_per_example(
        np.asarray(result.log_px, np.float64),
        "ais",
        stderr=_mc_se(result.log_px_se),
        bound="lower",
        counts={**_settings(result), "ess_forward": float(ess.mean())},
        dataset=dataset,
        split=split,
        protocol=protocol,
        notes="AIS over the latent space (HMC), prior to posterior: unbiased in p(x), so a "
        "stochastic lower bound on log p(x) (Jensen)",
        extras={
            "ess_forward_min": float(ess.min()),
            "acceptance": float(jnp.mean(result.acceptance)),
            "final_step_size_median": float(np.median(np.asarray(result.step_sizes)[:, -1])),
        },
    )


def decoder_log_likelihood(
    key: PRNGKeyArray,
    log_likelihood: LogLikelihoodFn,
    x: Float[ArrayLike, "N D"],
    latent_dim: int,
    *,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
    **ais_kwargs: Any,
) -> LogLikelihood:
    """Mean ``log p(x)`` of a decoder-based model by forward AIS over ``z`` as a record:
    runs :func:`egm.estimators.decoder_ais.decoder_ais` (``ais_kwargs``: ``n_chains``,
    ``betas``, ``n_leapfrog``, ``hmc_steps``, ``step_size``, ``target_accept``,
    ``adapt_chains``, ``adapt_rate``, ``batch_size``; same key, same numbers) and converts
    it with :func:`decoder_ais_record`."""
    res = decoder_ais(key, log_likelihood, x, latent_dim, **ais_kwargs)
    return decoder_ais_record(res, dataset=dataset, split=split, protocol=protocol)


# ----------------------------------------------------------------------------------------
# VAE generator networks
# ----------------------------------------------------------------------------------------


def _check_vae(model: VAE) -> VAE:
    model.check()
    if model.latent != "gaussian":
        raise ConfigError(
            f"decoder AIS runs HMC over continuous latents with a N(0, I) prior; this VAE has "
            f"latent={model.latent!r} (use importance sampling, "
            f"egm.eval.importance_sampled_log_likelihood)"
        )
    return model


@functools.lru_cache(maxsize=64)
def _cached_log_likelihood(model: VAE) -> Callable:
    def fn(params, z, x):
        return output_log_prob(model.likelihood, model.apply(params, z, method=VAE.decode), x)

    return fn


def vae_log_likelihood_fn(model: VAE, params: Any) -> LogLikelihoodFn:
    """``log p(x | z)`` of the VAE's generator network (§20.10.2) with its output
    distribution, as ``Partial(fn, params)`` (``fn`` cached per model, so new parameters reuse
    the compiled AIS program)."""
    return Partial(_cached_log_likelihood(_check_vae(model)), params)


def vae_simulator(
    model: VAE, params: Any
) -> Callable[[PRNGKeyArray, int], tuple[Float[Array, "n L"], Float[Array, "n D"]]]:
    """``sample(key, n) -> (z, x)``: ``z ~ N(0, I)``, ``x ~ p(x | z)`` (a Bernoulli draw, or a
    Gaussian / discretized-logistic one), the simulated data of BDMC; ``z`` are exact
    posterior samples of ``p(z | x)``."""
    _check_vae(model)

    def sample(key: PRNGKeyArray, n: int):
        k_z, k_x = jax.random.split(key)
        z = jax.random.normal(k_z, (n, model.latent_dim), jnp.float32)
        out = model.apply(params, z, method=VAE.decode)
        return z, sample_output(k_x, model.likelihood, out)

    return sample


def vae_decoder_log_likelihood(
    key: PRNGKeyArray,
    model: VAE,
    params: Any,
    x: Float[ArrayLike, "N D"],
    *,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
    **ais_kwargs: Any,
) -> LogLikelihood:
    """Mean test ``log p(x)`` of a Gaussian-latent VAE by forward AIS over ``z`` through its
    generator network only (Wu et al. 2017; the inference network plays no part): a
    stochastic lower bound, to compare with the importance-sampled estimate of
    :func:`egm.eval.importance_sampled_log_likelihood` (also a lower bound, looser when
    ``q(z|x)`` is far from the posterior).  ``ais_kwargs`` as :func:`decoder_log_likelihood`.
    Binary data for a Bernoulli output, grey levels in [0, 1] for a logistic one."""
    model = _check_vae(model)
    check_shape(x, model.x_dim, "x")
    if model.likelihood == "bernoulli":
        check_binary(x, "x")
    elif model.likelihood == "logistic":
        check_unit_interval(x, "x")
    return decoder_log_likelihood(
        key,
        vae_log_likelihood_fn(model, params),
        x,
        model.latent_dim,
        dataset=dataset,
        split=split,
        protocol=protocol,
        **ais_kwargs,
    )


# ----------------------------------------------------------------------------------------
# The BDMC bracket
# ----------------------------------------------------------------------------------------


def bdmc_record(
    result: BDMCResult,
    z: float = 3.0,
    *,
    dataset: str = "simulated from the model",
    split: str = "test",
    protocol: str = "z ~ p(z), x ~ p(x | z)",
) -> LogLikelihood:
    """The BDMC bracket on the mean ``log p(x)`` of simulated data as a record.

    ``value`` is the forward mean ``L`` (the number AIS reports; a lower bound in
    expectation), ``stderr`` its Monte-Carlo error ``se_L``; the lower side is
    ``L - z·se_L``, the upper side ``U + z·se_U`` (``U``: the reverse mean, an upper bound in
    expectation since its chains start at exact posterior samples).  The rule of
    :func:`egm.eval.record.bracket_from_log_z`, mirrored (here the estimate sits on the lower
    side): the bracket is *consistent* when the upper side does not fall below the estimate,
    ``U + z·se_U >= L``.  Otherwise the two directions cross beyond the reverse run's noise
    (more temperatures or HMC moves are needed, or the reverse start samples are not exact);
    the record says so (``consistent=False`` and a note) and reports the interval covering
    both sides and the estimate.  A crossing within the noise (``U < L <= U + z·se_U``) gets a
    note only.  With one chain per example there are no standard errors: the sides are not
    widened.  ``extras``: both means and errors, the gap ``U - L`` and the raw sides.
    """
    fwd, rev = result.forward, result.reverse
    lo_n = np.asarray(fwd.log_px, np.float64)
    hi_n = np.asarray(rev.log_px, np.float64)
    est, upper_mean = float(lo_n.mean()), float(hi_n.mean())
    se_f, se_r = _mc_se(fwd.log_px_se), _mc_se(rev.log_px_se)
    zf = float(z)
    if not (math.isfinite(zf) and zf >= 0):
        raise ConfigError(f"z must be a finite number >= 0, got {z!r}")
    lower_side = est - zf * (se_f or 0.0)
    upper_side = upper_mean + zf * (se_r or 0.0)
    consistent = upper_side >= est
    text = []
    if se_f is None or se_r is None:
        text.append("one chain per example: no Monte-Carlo standard errors, sides not widened")
    if not consistent:
        text.append(
            f"forward and reverse AIS cross: reverse mean log p(x) {upper_mean:.4f} ± "
            f"{se_r or 0.0:.4f} is below forward {est:.4f} ± {se_f or 0.0:.4f} beyond {zf:g} "
            f"reverse standard errors; the interval is widened to cover both sides "
            f"[{lower_side:.4f}, {upper_side:.4f}] nats and the estimate. Neither direction "
            f"has converged (or the reverse starts are not exact posterior samples): use "
            f"more temperatures or HMC moves"
        )
    elif upper_mean < est:
        text.append(
            f"reverse mean {upper_mean:.4f} is below forward mean {est:.4f}, within {zf:g} "
            f"reverse standard errors ({se_r or 0.0:.4f})"
        )
    text.append(
        "BDMC on simulated data: forward AIS a lower bound, reverse AIS from the generating "
        "latents an upper bound, both in expectation"
    )
    n = lo_n.size
    extras = {
        "log_px_forward": est,
        "log_px_forward_se": se_f,
        "log_px_reverse": upper_mean,
        "log_px_reverse_se": se_r,
        "gap": upper_mean - est,
        "bracket_z": zf,
        "lower_side": lower_side,
        "upper_side": upper_side,
        "acceptance_forward": float(jnp.mean(fwd.acceptance)),
        "acceptance_reverse": float(jnp.mean(rev.acceptance)),
    }
    return LogLikelihood(
        value=est,
        method="ais_bracket",
        stderr=se_f,
        stderr_examples=float(lo_n.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
        lower=min(lower_side, upper_side, est),
        upper=max(lower_side, upper_side, est),
        bound=None,
        counts={
            "examples": int(n),
            **_settings(fwd),
            "ess_forward": float(np.mean(np.asarray(fwd.ess))),
            "ess_reverse": float(np.mean(np.asarray(rev.ess))),
        },
        dataset=dataset,
        split=split,
        protocol=protocol,
        notes="; ".join(text),
        consistent=consistent,
        extras={k: v for k, v in extras.items() if v is not None},
    )
