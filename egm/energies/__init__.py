"""Pure energy functions and parameter pytrees of undirected models."""

from egm.energies import boltzmann, rbm
from egm.energies.boltzmann import BMParams
from egm.energies.rbm import RBMParams, RBMState

__all__ = ["BMParams", "RBMParams", "RBMState", "boltzmann", "rbm"]
