"""Samplers: generic block Gibbs kernels, gradient-based kernels (HMC, MALA), chain runners."""

from egm.samplers.chains import ChainSpec, gibbs_chain, gradient_chain
from egm.samplers.gibbs import GibbsInfo, Kernel, block_gibbs, run, step_chains
from egm.samplers.hmc import GradInfo, GradState, adapt_step_size, hmc, mala
from egm.samplers.langevin import (
    GaussianVisibleModel,
    GibbsLangevinInfo,
    gibbs_langevin,
    gibbs_langevin_chain,
)

__all__ = [
    "ChainSpec",
    "gibbs_chain",
    "gradient_chain",
    "GaussianVisibleModel",
    "GibbsInfo",
    "GibbsLangevinInfo",
    "GradInfo",
    "GradState",
    "Kernel",
    "adapt_step_size",
    "block_gibbs",
    "gibbs_langevin",
    "gibbs_langevin_chain",
    "hmc",
    "mala",
    "run",
    "step_chains",
]
