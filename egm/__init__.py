"""egm: a JAX functional framework for energy-based and deep generative models.

Layers (data flows one way): ``egm.data`` → ``egm.energies`` → ``egm.samplers`` →
``egm.estimators`` → ``egm.train`` → ``egm.eval``.  See README.md for a quick start.
"""

from egm import data, energies, errors, estimators, eval, samplers, train
from egm.energies import boltzmann, rbm
from egm.energies.boltzmann import BMParams
from egm.energies.rbm import RBMParams, RBMState

__version__ = "0.1.0"

__all__ = [
    "BMParams",
    "RBMParams",
    "RBMState",
    "boltzmann",
    "data",
    "energies",
    "errors",
    "estimators",
    "eval",
    "rbm",
    "samplers",
    "train",
]
