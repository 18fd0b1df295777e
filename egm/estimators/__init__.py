"""Estimators: contrastive gradients, exact enumeration, annealed importance sampling."""

from egm.estimators import ais, bm_sml, contrastive, dbm_pcd, exact, mpdbm
from egm.estimators.ais import AISResult, dbm_ais, grbm_ais, rbm_ais, rbm_reverse_ais
from egm.estimators.contrastive import cd_gradient, centered_gradient, pcd_gradient

__all__ = [
    "AISResult",
    "ais",
    "bm_sml",
    "cd_gradient",
    "centered_gradient",
    "contrastive",
    "dbm_ais",
    "dbm_pcd",
    "exact",
    "grbm_ais",
    "mpdbm",
    "pcd_gradient",
    "rbm_ais",
    "rbm_reverse_ais",
]
