"""Evaluation: one log-likelihood record and its front-ends, training diagnostics, sample
scores and visualisation helpers."""

from egm.eval import denoise, realvalued
from egm.eval.autoregressive import enumerate_log_probs, top_half_mask
from egm.eval.baselines import gaussian_log_likelihood
from egm.eval.likelihood import (
    ais_log_likelihood,
    dbm_log_likelihood_bound,
    dbn_log_likelihood_bound,
    importance_record,
    importance_sampled_log_likelihood,
    mean_negative_free_energy,
    rbm_log_likelihood_bracket,
)
from egm.eval.metrics import (
    free_energy_gap,
    mean_free_energy,
    pseudo_log_likelihood,
    reconstruction_error,
    stochastic_pseudo_log_likelihood,
)
from egm.eval.realvalued import filter_grid, grbm_log_likelihoods, patch_grid
from egm.eval.record import (
    BOUNDS,
    METHODS,
    SPLITS,
    UNITS,
    LogLikelihood,
    bracket_from_log_z,
)
from egm.eval.units import bits_per_dim, pixel_log_det
from egm.eval.visualize import tile_images

__all__ = [
    "BOUNDS",
    "METHODS",
    "SPLITS",
    "UNITS",
    "LogLikelihood",
    "ais_log_likelihood",
    "bits_per_dim",
    "bracket_from_log_z",
    "dbm_log_likelihood_bound",
    "dbn_log_likelihood_bound",
    "denoise",
    "enumerate_log_probs",
    "filter_grid",
    "free_energy_gap",
    "gaussian_log_likelihood",
    "grbm_log_likelihoods",
    "importance_record",
    "importance_sampled_log_likelihood",
    "mean_free_energy",
    "mean_negative_free_energy",
    "patch_grid",
    "pixel_log_det",
    "pseudo_log_likelihood",
    "rbm_log_likelihood_bracket",
    "realvalued",
    "reconstruction_error",
    "stochastic_pseudo_log_likelihood",
    "tile_images",
    "top_half_mask",
]
