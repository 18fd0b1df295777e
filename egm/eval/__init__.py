"""Evaluation: one log-likelihood record and its front-ends, training diagnostics, sample
scores and visualisation helpers."""

from egm.eval import decoder, denoise, features, published, realvalued, sample_quality
from egm.eval.autoregressive import enumerate_log_probs, top_half_mask
from egm.eval.baselines import gaussian_log_likelihood
from egm.eval.decoder import (
    bdmc_record,
    decoder_ais_record,
    decoder_log_likelihood,
    vae_decoder_log_likelihood,
    vae_log_likelihood_fn,
    vae_simulator,
)
from egm.eval.features import (
    FeatureNet,
    MNISTClassifier,
    class_probs,
    load_feature_net,
    save_feature_net,
)
from egm.eval.likelihood import (
    ais_log_likelihood,
    dbm_log_likelihood_bound,
    dbn_log_likelihood_bound,
    importance_record,
    importance_sampled_log_likelihood,
    mean_negative_free_energy,
    mpdbm_log_likelihood_bound,
    rbm_log_likelihood_bracket,
)
from egm.eval.metrics import (
    free_energy_gap,
    mean_free_energy,
    pseudo_log_likelihood,
    reconstruction_error,
    stochastic_pseudo_log_likelihood,
)
from egm.eval.published import PUBLISHED
from egm.eval.realvalued import filter_grid, grbm_log_likelihoods, patch_grid
from egm.eval.record import (
    BOUNDS,
    METHODS,
    SPLITS,
    UNITS,
    LogLikelihood,
    bracket_from_log_z,
)
from egm.eval.sample_quality import (
    classifier_score,
    copy_check,
    frechet_bias,
    frechet_distance,
    frechet_floor,
    frechet_gaussian,
    nearest_neighbours,
    parzen_log_density,
    parzen_log_likelihood,
    parzen_select_sigma,
)
from egm.eval.units import bits_per_dim, pixel_log_det
from egm.eval.visualize import tile_images

__all__ = [
    "mpdbm_log_likelihood_bound",
    "FeatureNet",
    "MNISTClassifier",
    "class_probs",
    "features",
    "load_feature_net",
    "save_feature_net",
    "BOUNDS",
    "METHODS",
    "PUBLISHED",
    "SPLITS",
    "UNITS",
    "LogLikelihood",
    "ais_log_likelihood",
    "bdmc_record",
    "bits_per_dim",
    "bracket_from_log_z",
    "classifier_score",
    "copy_check",
    "dbm_log_likelihood_bound",
    "dbn_log_likelihood_bound",
    "decoder",
    "decoder_ais_record",
    "decoder_log_likelihood",
    "denoise",
    "enumerate_log_probs",
    "filter_grid",
    "frechet_bias",
    "frechet_distance",
    "frechet_floor",
    "frechet_gaussian",
    "free_energy_gap",
    "gaussian_log_likelihood",
    "grbm_log_likelihoods",
    "importance_record",
    "importance_sampled_log_likelihood",
    "mean_free_energy",
    "mean_negative_free_energy",
    "nearest_neighbours",
    "parzen_log_density",
    "parzen_log_likelihood",
    "parzen_select_sigma",
    "patch_grid",
    "pixel_log_det",
    "pseudo_log_likelihood",
    "published",
    "rbm_log_likelihood_bracket",
    "realvalued",
    "reconstruction_error",
    "sample_quality",
    "stochastic_pseudo_log_likelihood",
    "tile_images",
    "top_half_mask",
    "vae_decoder_log_likelihood",
    "vae_log_likelihood_fn",
    "vae_simulator",
]
