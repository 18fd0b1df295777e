"""Evaluation: training diagnostics, likelihood estimates and visualisation helpers."""

from egm.eval import denoise
from egm.eval.autoregressive import enumerate_log_probs, top_half_mask
from egm.eval.likelihood import (
    LogLikelihoodBracket,
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
from egm.eval.visualize import tile_images

__all__ = [
    "denoise",
    "enumerate_log_probs",
    "top_half_mask",
    "LogLikelihoodBracket",
    "mean_negative_free_energy",
    "rbm_log_likelihood_bracket",
    "free_energy_gap",
    "mean_free_energy",
    "pseudo_log_likelihood",
    "reconstruction_error",
    "stochastic_pseudo_log_likelihood",
    "tile_images",
]
