"""Evaluation records of directed latent-variable models (§20.10.1-§20.10.3): what the VAE,
categorical-VAE and DRAW experiments report about one trained model.

* :func:`bound_record`: per-example variational lower bounds (an ELBO, DRAW's negative
  loss) as a ``variational_bound`` record;
* :func:`vae_importance_record`: the importance-sampled ``log p(x)`` of a VAE with
  ``q(z|x)`` as the proposal (§20.10.3; :mod:`egm.estimators.importance`);
* :func:`vae_report`: everything the VAE experiment records of one model: that IS record,
  the analytic-KL ELBO, the bound ``L_k``, Burda et al.'s active units, and, with a
  :class:`DecoderAIS` plan, decoder AIS (Wu et al. 2017) beside IS *on the same digits*
  and the BDMC gap on data simulated from the model (Grosse et al. 2015).

Every record names its dataset, split and protocol (``fields``); keys of
:func:`vae_report` are prefixed with the model's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.estimators.decoder_ais import bdmc, betas_sigmoid, gaussian_observation
from egm.estimators.importance import importance_log_likelihood
from egm.eval.decoder import (
    bdmc_record,
    decoder_log_likelihood,
    vae_decoder_log_likelihood,
    vae_log_likelihood_fn,
    vae_simulator,
)
from egm.eval.likelihood import importance_record
from egm.eval.record import LogLikelihood
from egm.models import vae

__all__ = [
    "DecoderAIS",
    "GENERATOR_SIGMAS",
    "bound_record",
    "gaussian_simulator",
    "generator_report",
    "vae_bdmc_record",
    "vae_importance_record",
    "vae_report",
]


def bound_record(
    per_example: Float[ArrayLike, " N"], notes: str, *, samples: int = 1, **fields: Any
) -> LogLikelihood:
    """A ``variational_bound`` record (``bound="lower"``) of per-example lower bounds on
    ``log p(x)`` (e.g. the ELBO of eq. 20.76 from ``samples`` draws of ``q`` per example);
    ``fields``: dataset, split, protocol."""
    return LogLikelihood.from_per_example(
        np.asarray(per_example, np.float64), "variational_bound", bound="lower",
        counts={"samples": int(samples)}, notes=notes, **fields,
    )  # fmt: skip


def vae_importance_record(
    key: PRNGKeyArray,
    model: vae.VAE,
    params: Any,
    x: Float[ArrayLike, "N D"],
    n_samples: int,
    *,
    chunk_size: int = 500,
    **fields: Any,
) -> LogLikelihood:
    """Mean ``log p(x)`` of a VAE (Gaussian or categorical latents) by importance sampling
    with ``n_samples`` draws of ``q(z|x)`` per example: ``log (1/k) Σ p(x, z_i)/q(z_i|x)``, a
    stochastic lower bound (§20.10.3).  Example ``n`` uses ``fold_in(key, n)``, so the first
    ``m`` examples get the same per-example values whatever follows them."""
    fn = Partial(vae.log_weights_fn(model), params)
    est = importance_log_likelihood(key, fn, x, n_samples, chunk_size=min(chunk_size, n_samples))
    return importance_record(est, **fields)


class DecoderAIS(NamedTuple):
    """What :func:`vae_report` adds through the decoder alone: forward AIS (Wu et al. 2017)
    with ``temps`` sigmoidal temperatures and ``chains`` chains per digit on the first
    ``size`` test digits, the IS estimate on exactly those digits, and with
    ``bdmc_examples > 0`` the BDMC bracket on that many digits simulated from the model."""

    temps: int
    chains: int = 8
    size: int = 100
    bdmc_examples: int = 0


def vae_bdmc_record(
    key: PRNGKeyArray,
    model: vae.VAE,
    params: Any,
    n_examples: int,
    *,
    z: float = 3.0,
    **ais_settings: Any,
) -> LogLikelihood:
    """The BDMC bracket (:func:`egm.eval.decoder.bdmc_record`, ``z`` standard errors) on the
    mean ``log p(x)`` of ``n_examples`` data simulated from a Gaussian-latent VAE
    (``z ~ N(0, I)``, ``x ~ p(x|z)``): forward AIS from the prior, reverse AIS from the
    generating latents; ``extras["gap"]`` is the gap ``upper - lower`` of the two means.
    ``ais_settings``: :class:`egm.estimators.decoder_ais.AISSettings`."""
    res = bdmc(key, vae_log_likelihood_fn(model, params), vae_simulator(model, params),
               n_examples, **ais_settings)  # fmt: skip
    return bdmc_record(res, z)


def vae_report(
    key: PRNGKeyArray,
    model: vae.VAE,
    params: Any,
    x: Float[ArrayLike, "N D"],
    name: str,
    *,
    is_samples: int,
    is_test_size: int = 0,
    is_chunk: int = 500,
    bound_k: int = 50,
    decoder_ais: DecoderAIS | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The test figures of one Gaussian-latent VAE ``name`` on binary digits ``x``:

    ``<name>_test_loglik``: IS with ``is_samples`` draws on the first ``is_test_size``
    digits (0: all); ``<name>_test_elbo``: the analytic-KL ELBO, one draw per digit, all
    digits; ``<name>_test_L<bound_k>``: the IWAE bound ``L_k``; ``<name>_active_units``
    (Burda et al. 2016).  With ``decoder_ais``: ``<name>_test_loglik_decoder_ais`` (forward
    AIS over ``z``, a stochastic lower bound), ``<name>_test_loglik_is_same_digits`` (IS on
    the same digits with the same key as ``<name>_test_loglik``, so its per-digit values are
    those of the larger run where the digits overlap), ``<name>_decoder_ais_minus_is_nats``
    (positive: AIS is the tighter bound) and, with ``bdmc_examples``, ``<name>_bdmc`` (an
    ``ais_bracket`` record on simulated digits) and ``<name>_bdmc_gap_nats``.
    ``fields``: dataset, split, protocol of the test records."""
    if decoder_ais is not None and min(decoder_ais) < 0 or is_test_size < 0:
        raise ConfigError(f"sizes must be >= 0, got {decoder_ais} and is_test_size {is_test_size}")
    x = np.asarray(x)
    k1, k2, k3 = jax.random.split(key, 3)
    is_rec = lambda xs: vae_importance_record(k3, model, params, xs, is_samples,
                                              chunk_size=is_chunk, **fields)  # fmt: skip
    out: dict[str, Any] = {
        f"{name}_test_loglik": is_rec(x[: is_test_size or None]),
        f"{name}_test_elbo": float(jnp.mean(vae.elbo_on_data(k1, model, params, x))),
        f"{name}_test_L{bound_k}": float(jnp.mean(vae.bound_on_data(k2, model, params, x, bound_k))),
        f"{name}_active_units": vae.active_units(model, params, x),
    }  # fmt: skip
    if decoder_ais is None or decoder_ais.temps == 0:
        return out
    same = x[: decoder_ais.size]
    betas = betas_sigmoid(decoder_ais.temps)
    ais = vae_decoder_log_likelihood(jax.random.fold_in(k3, 1), model, params, same,
                                     n_chains=decoder_ais.chains, betas=betas, **fields)  # fmt: skip
    is_same = is_rec(same)
    out |= {
        f"{name}_test_loglik_decoder_ais": ais,
        f"{name}_test_loglik_is_same_digits": is_same,
        f"{name}_decoder_ais_minus_is_nats": ais.value - is_same.value,
    }
    if decoder_ais.bdmc_examples:
        rec = vae_bdmc_record(jax.random.fold_in(k3, 2), model, params,
                              decoder_ais.bdmc_examples, n_chains=decoder_ais.chains,
                              betas=betas)  # fmt: skip
        out |= {f"{name}_bdmc": rec, f"{name}_bdmc_gap_nats": rec.extras["gap"]}
    return out


# ----------------------------------------------------------------------------------------
# Generator networks without a likelihood (GAN, GMMN): Wu et al. (2017)'s protocol
# ----------------------------------------------------------------------------------------

GENERATOR_SIGMAS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
"""The observation noise sds tried by :func:`generator_report` (grey levels in [0, 1])."""


def gaussian_simulator(
    generator_fn: Callable[[Float[Array, " L"]], Float[Array, " D"]], latent_dim: int, sigma: float
) -> Callable[[PRNGKeyArray, int], tuple[Float[Array, "n L"], Float[Array, "n D"]]]:
    """``sample(key, n) -> (z, x)``: ``z ~ N(0, I)``, ``x = g(z) + σ ε`` — data simulated from
    a generator with the Gaussian observation model, for BDMC (``z`` are exact posterior
    samples of ``p(z | x)``)."""

    def sample(key: PRNGKeyArray, n: int):
        k_z, k_e = jax.random.split(key)
        z = jax.random.normal(k_z, (n, int(latent_dim)), jnp.float32)
        mean = jax.vmap(generator_fn)(z)
        return z, mean + float(sigma) * jax.random.normal(k_e, mean.shape, jnp.float32)

    return sample


def generator_report(
    key: PRNGKeyArray,
    generator_fn: Callable[[Float[Array, " L"]], Float[Array, " D"]],
    latent_dim: int,
    x_valid: Float[ArrayLike, "V D"],
    x_test: Float[ArrayLike, "N D"],
    decoder_ais: DecoderAIS,
    *,
    sigmas: Sequence[float] = GENERATOR_SIGMAS,
    select_size: int = 20,
    **fields: Any,
) -> dict[str, Any]:
    """The log-likelihood of a generator network that has none of its own (a GAN's or a
    GMMN's, §20.10.4–20.10.5), by Wu et al. (2017)'s protocol: ``p(x | z) = N(x; g(z), σ² I)``
    with ``z ~ N(0, I)``, ``σ`` chosen from ``sigmas`` by the forward-AIS estimate on the first
    ``select_size`` validation examples, then forward AIS over ``z`` (``decoder_ais.temps``
    sigmoidal temperatures, ``decoder_ais.chains`` chains) on the first ``decoder_ais.size``
    test examples.  ``generator_fn(z) -> g(z)`` for one latent (give a ``Partial`` of the
    params so the AIS program compiles once for every ``σ``).

    Keys: ``test_loglik_decoder_ais`` (a stochastic lower bound on the density of the grey
    levels in nats; ``extras`` hold ``sigma`` and ``valid_log_density[sigma=s]``, the
    validation estimate per ``σ``: a lower bound, so the choice leans to the ``σ`` whose
    AIS converged best),
    ``decoder_ais_sigma``; with ``decoder_ais.bdmc_examples``, ``bdmc`` (the BDMC bracket on
    data simulated from the model at that ``σ``) and ``bdmc_gap_nats``.  Like a Parzen
    estimate this is a density of continuous grey levels, not a probability of binary digits."""
    sig = tuple(float(s) for s in sigmas)
    if not sig or not all(np.isfinite(s) and s > 0 for s in sig):
        raise ConfigError(f"sigmas must be a non-empty list of numbers > 0, got {sigmas!r}")
    if decoder_ais.temps < 1 or decoder_ais.chains < 1 or decoder_ais.size < 1:
        raise ConfigError(f"decoder AIS needs temps, chains and size >= 1, got {decoder_ais}")
    if int(select_size) < 1:
        raise ConfigError(f"select_size must be >= 1, got {select_size}")
    betas = betas_sigmoid(decoder_ais.temps)
    k_sel, k_test, k_bdmc = jax.random.split(key, 3)
    xv, xt = np.asarray(x_valid)[: int(select_size)], np.asarray(x_test)[: decoder_ais.size]

    def run(k, s, x, split):
        return decoder_log_likelihood(k, gaussian_observation(generator_fn, s), x, latent_dim,
                                      n_chains=decoder_ais.chains, betas=betas,
                                      **{**fields, "split": split})  # fmt: skip

    valid = {s: run(k_sel, s, xv, "valid").value for s in sig}  # same key: paired over σ
    best = max(valid, key=valid.get)
    rec = run(k_test, best, xt, fields.get("split", "test"))
    rec = dataclasses.replace(rec, protocol=f"{rec.protocol}; p(x|z) = N(g(z), {best:g}^2 I), "
                              f"sigma chosen on {len(xv)} validation examples",
                              extras={**rec.extras, "sigma": best,
                                      **{f"valid_log_density[sigma={s:g}]": v
                                         for s, v in valid.items()}})  # fmt: skip
    out: dict[str, Any] = {"test_loglik_decoder_ais": rec, "decoder_ais_sigma": best}
    if decoder_ais.bdmc_examples:
        res = bdmc(k_bdmc, gaussian_observation(generator_fn, best),
                   gaussian_simulator(generator_fn, latent_dim, best), decoder_ais.bdmc_examples,
                   n_chains=decoder_ais.chains, betas=betas)  # fmt: skip
        b = bdmc_record(res, 3.0)
        out |= {"bdmc": b, "bdmc_gap_nats": b.extras["gap"]}
    return out
