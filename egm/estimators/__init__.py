"""Estimators: contrastive gradients, exact enumeration, annealed importance sampling."""

from egm.estimators import (
    ais,
    bm_sml,
    contrastive,
    dbm_pcd,
    decoder_ais,
    exact,
    gradients,
    importance,
    mpdbm,
)
from egm.estimators.ais import AISResult, dbm_ais, grbm_ais, rbm_ais, rbm_reverse_ais
from egm.estimators.contrastive import cd_gradient, centered_gradient, pcd_gradient
from egm.estimators.decoder_ais import (
    BDMCResult,
    DecoderAISResult,
    anneal_latent,
    bdmc,
    betas_sigmoid,
    gaussian_observation,
    reverse_decoder_ais,
)
from egm.estimators.gradients import (
    gumbel_softmax,
    reinforce,
    reparam_gaussian,
    straight_through_bernoulli,
    temperature_schedule,
)
from egm.estimators.importance import ISEstimate, importance_log_likelihood, log_mean_exp

__all__ = [
    "AISResult",
    "BDMCResult",
    "DecoderAISResult",
    "ISEstimate",
    "ais",
    "anneal_latent",
    "bdmc",
    "betas_sigmoid",
    "bm_sml",
    "cd_gradient",
    "centered_gradient",
    "contrastive",
    "dbm_ais",
    "dbm_pcd",
    "decoder_ais",
    "exact",
    "gaussian_observation",
    "gradients",
    "grbm_ais",
    "gumbel_softmax",
    "importance",
    "importance_log_likelihood",
    "log_mean_exp",
    "mpdbm",
    "pcd_gradient",
    "rbm_ais",
    "rbm_reverse_ais",
    "reinforce",
    "reparam_gaussian",
    "reverse_decoder_ais",
    "straight_through_bernoulli",
    "temperature_schedule",
]
