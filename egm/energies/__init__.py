"""Pure energy functions and parameter pytrees of undirected models."""

from egm.energies import boltzmann, dbm, grbm, mcrbm, mpot, rbm, ssrbm
from egm.energies.boltzmann import BMParams
from egm.energies.dbm import DBMParams
from egm.energies.grbm import GRBMParams, GRBMState
from egm.energies.mcrbm import MCRBMParams, MCRBMState
from egm.energies.mpot import MPoTParams, MPoTState
from egm.energies.rbm import RBMParams, RBMState
from egm.energies.ssrbm import SSRBMParams, SSRBMState

__all__ = [
    "BMParams",
    "DBMParams",
    "GRBMParams",
    "GRBMState",
    "MCRBMParams",
    "MCRBMState",
    "MPoTParams",
    "MPoTState",
    "RBMParams",
    "RBMState",
    "SSRBMParams",
    "SSRBMState",
    "boltzmann",
    "dbm",
    "grbm",
    "mcrbm",
    "mpot",
    "rbm",
    "ssrbm",
]
