"""Evaluation of a binary RBM on binarized MNIST (§18.2, §20.2): the cheap per-epoch
monitors, the AIS test log-likelihood with its bracket (and the train / validation figures
under the same log Z), and the pictures of samples and filters.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import rbm
from egm.energies.rbm import RBMParams, RBMState
from egm.estimators import ais
from egm.eval.likelihood import mean_negative_free_energy, rbm_log_likelihood_bracket
from egm.eval.metrics import free_energy_gap, reconstruction_error, stochastic_pseudo_log_likelihood
from egm.eval.visualize import tile_images

__all__ = ["rbm_monitor", "rbm_pictures", "rbm_results"]


def rbm_monitor(
    key: PRNGKeyArray,
    params: RBMParams,
    v_train: Float[Array, "N V"],
    v_valid: Float[Array, "M V"],
) -> dict[str, float]:
    """Cheap progress measures on a validation subset (no partition function):
    ``recon_error_valid`` (one up-down pass, :func:`egm.eval.reconstruction_error`),
    ``free_energy_gap_valid_minus_train`` (mean F(valid) − mean F(train): it grows when the
    model overfits) and ``pseudo_loglik_valid`` (stochastic pseudo-log-likelihood, one
    random pixel per digit, drawn with ``key``)."""
    return {
        "recon_error_valid": float(reconstruction_error(params, v_valid)),
        "free_energy_gap_valid_minus_train": float(
            free_energy_gap(rbm.free_energy, params, v_train, v_valid)
        ),
        "pseudo_loglik_valid": float(
            stochastic_pseudo_log_likelihood(key, rbm.free_energy, params, v_valid)
        ),
    }


def rbm_results(
    key: PRNGKeyArray,
    params: RBMParams,
    binary: dict[str, Float[Array, "N V"]],
    *,
    n_chains: int,
    n_temps: int,
    reverse_burn_in: int,
    dataset: str,
    protocol: str,
) -> dict[str, Any]:
    """The results of a trained RBM: ``test_loglik``, the AIS record of the test split with
    its forward/reverse bracket (:func:`egm.eval.rbm_log_likelihood_bracket`: ``n_chains``
    chains, ``n_temps`` temperatures of the Salakhutdinov & Murray schedule, from the
    base-rate model of the training split); ``train_loglik_nats`` and ``valid_loglik_nats``,
    ``mean -F(v) - log Ẑ`` under the same forward ``log Ẑ`` (the validation figure selects
    models in a sweep); ``log_z_forward``; ``n_train``."""
    betas = ais.betas_salakhutdinov_murray(n_temps)
    test = rbm_log_likelihood_bracket(
        key, params, ais.base_rate_biases(binary["train"]), binary["test"],
        n_chains=n_chains, betas=betas, reverse_burn_in=reverse_burn_in,
        dataset=dataset, split="test", protocol=protocol,
    )  # fmt: skip
    log_z = test.extras["log_z_forward"]
    nfe = {s: mean_negative_free_energy(rbm.free_energy, params, binary[s])
           for s in ("train", "valid")}  # fmt: skip
    return {
        "test_loglik": test,
        "train_loglik_nats": nfe["train"] - log_z,
        "valid_loglik_nats": nfe["valid"] - log_z,
        "log_z_forward": log_z,
        "n_train": int(binary["train"].shape[0]),
    }


def rbm_pictures(params: RBMParams, final: RBMState, n_sweeps: int) -> dict:
    """``samples.png``: ``P(v | h)`` of the final states of Gibbs chains (``n_sweeps`` sweeps);
    ``filters.png``: the first 100 filters ``W[:, j]`` as 28 × 28 images, each scaled on its
    own; ``{name: (image, title)}`` for the run driver."""
    means = jax.vmap(rbm.visible_probs, in_axes=(None, 0))(params, final.h)
    n_f = min(100, params.W.shape[1])
    filters = tile_images(np.asarray(params.W[:, :n_f].T), (28, 28), normalize=True)
    return {
        "samples.png": (tile_images(np.asarray(means), (28, 28)),
                        f"P(v|h) after {n_sweeps} Gibbs sweeps"),
        "filters.png": (filters, f"first {n_f} filters W[:, j]"),
    }  # fmt: skip
