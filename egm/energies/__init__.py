"""Pure energy functions and parameter pytrees of undirected models."""

from egm.energies import boltzmann, dbm, grbm, rbm
from egm.energies.boltzmann import BMParams
from egm.energies.dbm import DBMParams
from egm.energies.grbm import GRBMParams, GRBMState
from egm.energies.rbm import RBMParams, RBMState

__all__ = [
    "BMParams",
    "DBMParams",
    "GRBMParams",
    "GRBMState",
    "RBMParams",
    "RBMState",
    "boltzmann",
    "dbm",
    "grbm",
    "rbm",
]
