"""Evaluation: training diagnostics, likelihood estimates and visualisation helpers."""

from egm.eval.metrics import (
    free_energy_gap,
    mean_free_energy,
    pseudo_log_likelihood,
    reconstruction_error,
)
from egm.eval.visualize import tile_images

__all__ = [
    "free_energy_gap",
    "mean_free_energy",
    "pseudo_log_likelihood",
    "reconstruction_error",
    "tile_images",
]
