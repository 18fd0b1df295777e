"""Mean-product of Student-t (mPoT) on whitened 8×8 natural image patches (Ranzato, Mnih &
Hinton 2010; §20.5.1).

    python experiments/mpot_patches.py --config tiny        # smoke test, seconds
    python experiments/mpot_patches.py --config full --workdir /tmp/runs/mpot_full

The data are mcrbm_patches.py's: scikit-image (``egm[patches]``) or CIFAR-10 (``--source
tfds``) patches, whitened by a transform stored in the work directory (whitening.npz).

The model (:mod:`egm.energies.mpot`) has Gamma covariance hiddens; the negative phase is
block Gibbs between them (and the binary mean hiddens) and the Gaussian visibles
(``v | h`` drawn exactly by a Cholesky factor of ``Λ = I + C diag(P h_c) Cᵀ``), or HMC on
the free energy (``--sampler hmc``, step size adapted per chain as in mcrbm_patches.py).
Filter norms and pooling: egm.run.realvalued.FactoredFields (here the columns of ``C`` keep
the fixed norm ``c_norm``); ``γ ≥ gamma_min`` is clipped after every update and
``--learn_gamma false`` keeps ``γ`` at ``gamma_init``.

Outputs in --workdir: config.json, metrics.jsonl (with validation denoising PSNR every
``denoise_every`` epochs), checkpoints/, whitening.npz, params.npz, cov_filters.png,
mean_filters.png, samples.png, results.json with denoising PSNR of held-out patches (MAP
under the mPoT prior vs the Wiener filter vs the noisy input).  A killed run resumes from
its last checkpoint.  The paper reports no likelihood; the figures of the ``full`` preset
(below the Wiener filter; with ``--c_norm 0`` the filters keep sharpening and the MAP
denoiser gets worse): BUILD_NOTES.md (issue 4).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from egm import run
from egm.energies import mpot
from egm.errors import ConfigError
from egm.run import realvalued as rv
from egm.run.config import at_least, field, greater_than, one_of
from egm.samplers import gibbs_chain
from egm.samplers.persistent import median_step_size


@dataclasses.dataclass(frozen=True)
class Config(rv.FactoredFields):
    c_norm: float = field(1.5, check=at_least(0), help="> 0: fixed norm of C's columns; 0: mean")
    gamma_init: float = 2.0
    learn_gamma: bool = True
    gamma_min: float = field(0.5, check=greater_than(0))
    sampler: str = field("gibbs", check=one_of("gibbs", "hmc"))
    epochs: int = field(20, check=at_least(1))
    workdir: str = field("runs/mpot_patches", eval_only=True)

    def check(self) -> None:
        super().check()
        if not self.gamma_init >= self.gamma_min:
            raise ConfigError(f"gamma_init must be >= gamma_min (the clip), got "
                              f"{self.gamma_init} < {self.gamma_min}")  # fmt: skip


PRESETS = {
    "default": Config(),
    "tiny": Config(**rv.FACTORED_TINY, workdir="runs/mpot_patches_tiny"),
    "full": Config(workdir="runs/mpot_patches_full"),
}


def chain(cfg: Config, step_size: float | None = None):
    """Block Gibbs (Gamma h_c, binary h_m | v; Gaussian v | h), or HMC on −F (adapted; with a
    ``step_size``: fixed-step HMC for final samples)."""
    if cfg.sampler == "gibbs":
        return gibbs_chain(mpot.BLOCKS, mpot.init_state)
    return cfg.hmc(mpot.log_density, step_size)


def project(cfg: Config, d):
    clip = functools.partial(mpot.project, c_norm=cfg.c_norm or None, gamma_min=cfg.gamma_min)
    gamma0 = jnp.full((cfg.n_cov,), cfg.gamma_init, jnp.float32)
    return cfg.projection(clip, **({} if cfg.learn_gamma else {"gamma": gamma0}))


MODEL = rv.FEModel(
    init_params=lambda cfg, d, key: mpot.init(
        key, d.z_train.shape[1], cfg.n_factors, cfg.n_cov, cfg.n_mean, gamma=cfg.gamma_init,
        **cfg.init_kw),
    free_energy=lambda cfg: mpot.free_energy,
    chain=chain,
    project=project,
)  # fmt: skip


def monitor(cfg: Config, d, state, key, epoch: int) -> dict:
    p = state.params
    mean_h = jax.vmap(lambda v: p.gamma / mpot.covariance_rate(p, v))(jnp.asarray(d.z_test[: cfg.eval_size]))  # fmt: skip
    return {"free_energy_gap_test_minus_train": rv.free_energy_gap(cfg, d, mpot.free_energy, p),
            "mean_cov_hidden_test": float(jnp.mean(mean_h)), "gamma_mean": float(jnp.mean(p.gamma)),
            "c_norm": float(jnp.mean(jnp.linalg.norm(p.C, axis=0))),
            **cfg.validation_denoising(d, mpot.free_energy, p, epoch)}  # fmt: skip


def evaluate(cfg: Config, d, done, key) -> dict:
    params, g = done["train"].params, np.asarray(done["train"].params.gamma)
    return {**rv.denoising(cfg, d, mpot.free_energy, params, key),
            "c_norm_final": float(jnp.mean(jnp.linalg.norm(params.C, axis=0))),
            "gamma_range": [float(g.min()), float(g.max())],
            "hmc_step_size_median": median_step_size(done["train"].chains)}  # fmt: skip


def describe(cfg: Config) -> dict:
    sampler = ("block Gibbs (Gamma h_c, binary h_m | v; Gaussian v | h by Cholesky)"
               if cfg.sampler == "gibbs" else cfg.hmc_description())  # fmt: skip
    gamma = "" if cfg.learn_gamma else f" (fixed at {cfg.gamma_init})"
    return {"model": f"mPoT, {cfg.description()} (Gamma covariance units)",
            "training": f"{cfg.training(sampler)}; gamma >= {cfg.gamma_min}{gamma}"}  # fmt: skip


EXPERIMENT = rv.fe_experiment(
    "mpot_patches", PRESETS, MODEL, evaluate=evaluate, pictures=rv.factored_pictures(MODEL),
    describe=describe, monitor=monitor, save_params=True,
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
