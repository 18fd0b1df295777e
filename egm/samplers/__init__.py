"""Samplers: generic block Gibbs kernels and chain runners."""

from egm.samplers.gibbs import GibbsInfo, Kernel, block_gibbs, run, step_chains

__all__ = ["GibbsInfo", "Kernel", "block_gibbs", "run", "step_chains"]
