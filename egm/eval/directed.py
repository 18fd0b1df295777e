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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jaxtyping import ArrayLike, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.estimators.decoder_ais import bdmc, betas_sigmoid
from egm.estimators.importance import importance_log_likelihood
from egm.eval.decoder import (
    bdmc_record,
    vae_decoder_log_likelihood,
    vae_log_likelihood_fn,
    vae_simulator,
)
from egm.eval.likelihood import importance_record
from egm.eval.record import LogLikelihood
from egm.models import vae

__all__ = ["DecoderAIS", "bound_record", "vae_bdmc_record", "vae_importance_record", "vae_report"]


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
