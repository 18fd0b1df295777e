"""Mean-covariance RBM on whitened 8×8 natural image patches (Ranzato & Hinton 2010; §20.5.1).

    python experiments/mcrbm_patches.py --config tiny        # smoke test, seconds
    python experiments/mcrbm_patches.py --config full --workdir /tmp/runs/mcrbm_full

Patches come from the natural photographs shipped inside scikit-image (``pip install
"egm[patches]"``; train and test patches from disjoint pixels, see egm.data.load_patches) or
from CIFAR-10 through tensorflow-datasets (``--source tfds``), whitened (ZCA by default, or
PCA) by a transform fitted on the training patches and stored in the work directory
(whitening.npz; times ``data_scale`` if that is not 1).

The model (:mod:`egm.energies.mcrbm`) sees the covariance part through the paper's input
normalisation ``ṽ = v / sqrt(mean(v²) + ε)`` (``--normalize_input``, ``--norm_eps``), so
``v | h`` is not Gaussian and the negative phase runs HMC on the free energy, as in the
paper (``hmc_leapfrog`` leapfrog steps, each persistent chain's step size adapted towards
``hmc_target_accept``: the paper keeps the rejection rate near 10%).  Without normalisation
(``--normalize_input false``) ``--sampler gibbs`` uses the exact block Gibbs sampler
(Gaussian ``v | h`` by Cholesky).  Filter norms and pooling: egm.run.realvalued.FactoredFields.

Outputs in --workdir: config.json, metrics.jsonl (with validation denoising PSNR every
``denoise_every`` epochs), checkpoints/, whitening.npz, params.npz, cov_filters.png,
mean_filters.png, samples.png (fixed-step HMC at the median adapted step size), results.json
with denoising PSNR of held-out patches (MAP under the mcRBM prior vs the Wiener filter of
the training covariance vs the noisy input).  A killed run resumes from its last checkpoint.
The paper reports no likelihood; the figures of the ``full`` preset: BUILD_NOTES.md (issue 4).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from egm import run
from egm.energies import mcrbm
from egm.errors import ConfigError
from egm.run import realvalued as rv
from egm.run.config import at_least, field, greater_than, one_of
from egm.samplers import gibbs_chain
from egm.samplers.persistent import median_step_size


@dataclasses.dataclass(frozen=True)
class Config(rv.FactoredFields):
    normalize_input: bool = True
    norm_eps: float = field(0.5, check=greater_than(0))
    b_c_init: float = 2.0
    sampler: str = field("hmc", check=one_of("hmc", "gibbs"), help="gibbs: no input normalisation")
    epochs: int = field(40, check=at_least(1))
    learning_rate: float = field(3e-4, check=greater_than(0), sweep=True)
    workdir: str = field("runs/mcrbm_patches", eval_only=True)

    def check(self) -> None:
        super().check()
        if self.sampler == "gibbs" and self.normalize_input:
            raise ConfigError("sampler gibbs needs a Gaussian p(v | h), which holds only without "
                              "input normalisation: add --normalize_input false, or use --sampler hmc")  # fmt: skip


PRESETS = {
    "default": Config(),
    "tiny": Config(**rv.FACTORED_TINY, workdir="runs/mcrbm_patches_tiny"),
    "full": Config(workdir="runs/mcrbm_patches_full"),
}


def chain(cfg: Config, step_size: float | None = None):
    """Block Gibbs (no input normalisation), or HMC on −F (with a ``step_size``: fixed-step)."""
    if cfg.sampler == "gibbs":
        blocks = mcrbm.gibbs_blocks(normalize_input=cfg.normalize_input)
        return gibbs_chain(blocks, mcrbm.init_state)
    norm = dict(normalize_input=cfg.normalize_input, eps=cfg.norm_eps)
    return cfg.hmc(functools.partial(mcrbm.log_density, **norm), step_size)


def free_energy(cfg: Config):
    return functools.partial(mcrbm.free_energy, normalize_input=cfg.normalize_input, eps=cfg.norm_eps)  # fmt: skip


MODEL = rv.FEModel(
    init_params=lambda cfg, d, key: mcrbm.init(
        key, d.z_train.shape[1], cfg.n_factors, cfg.n_cov, cfg.n_mean, b_c=cfg.b_c_init,
        **cfg.init_kw),
    free_energy=free_energy,
    chain=chain,
    project=lambda cfg, d: cfg.projection(functools.partial(mcrbm.project, c_norm=cfg.c_norm or None)),
)  # fmt: skip


def cov_hidden_on(cfg: Config, params, z) -> float:
    logits = jax.vmap(lambda v: mcrbm.covariance_hidden_logits(
        params, v, normalize_input=cfg.normalize_input, eps=cfg.norm_eps))(jnp.asarray(z))  # fmt: skip
    return float(jnp.mean(jax.nn.sigmoid(logits)))


def monitor(cfg: Config, d, state, key, epoch: int) -> dict:
    p, fe = state.params, free_energy(cfg)
    return {"free_energy_gap_test_minus_train": rv.free_energy_gap(cfg, d, fe, p),
            "mean_cov_hidden_on": cov_hidden_on(cfg, p, d.z_test[: cfg.eval_size]),
            "c_norm": float(jnp.mean(jnp.linalg.norm(p.C, axis=0))),
            **cfg.validation_denoising(d, fe, p, epoch)}  # fmt: skip


def evaluate(cfg: Config, d, done, key) -> dict:
    params, chains = done["train"].params, done["train"].chains
    return {**rv.denoising(cfg, d, free_energy(cfg), params, key),
            "c_norm_final": float(jnp.mean(jnp.linalg.norm(params.C, axis=0))),
            "hmc_step_size_median": median_step_size(chains),
            "mean_cov_hidden_on_test": cov_hidden_on(cfg, params, d.z_test[: cfg.eval_size])}  # fmt: skip


def describe(cfg: Config) -> dict:
    norm = f"v / sqrt(mean(v^2) + {cfg.norm_eps})" if cfg.normalize_input else "off"
    sampler = cfg.hmc_description() if cfg.sampler == "hmc" else "exact block Gibbs"
    return {"model": f"mcRBM, {cfg.description()}, input normalisation {norm}",
            "training": cfg.training(sampler)}  # fmt: skip


EXPERIMENT = rv.fe_experiment(
    "mcrbm_patches", PRESETS, MODEL, evaluate=evaluate, pictures=rv.factored_pictures(MODEL),
    describe=describe, monitor=monitor, save_params=True,
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
