"""Gaussian–Bernoulli RBM on whitened 8×8 natural image patches (§20.5.1).

    python experiments/grbm_patches.py --config tiny        # smoke test, seconds
    python experiments/grbm_patches.py --config full        # recorded run (BUILD_NOTES.md)
    python experiments/grbm_patches.py --config tiny --sweep seed=0:4 --sweep learning_rate=1e-3,3e-4
    python experiments/grbm_patches.py --config mnist       # real-valued MNIST (= grbm_mnist.py)

Patches come from the natural photographs shipped inside scikit-image (``pip install
"egm[patches]"``; train and test patches from disjoint bands of every photo) or from CIFAR-10 through
tensorflow-datasets (``--source tfds``).  They are ZCA-whitened with a transform fitted on
the training patches and stored in the work directory (whitening.npz).  The GRBM learns its
per-pixel variances (``log_beta``, clipped to [min_var, max_var] after every update — the
guard against collapsing or exploding variances, see egm.energies.grbm) by PCD with block
Gibbs, Gibbs–Langevin (Liao et al. 2022) or HMC on the free energy.

Outputs in --workdir: config.json, metrics.jsonl, checkpoints/, whitening.npz,
filters.png, samples.png, results.json with the AIS test log-likelihood (nats per patch
in whitened space, and per patch in pixel space through log|det A|), the full-covariance
Gaussian's exact test log-likelihood on the same data (the baseline to beat), and
denoising PSNR against the Wiener filter.  A killed run resumes from its last checkpoint.
The patches (``--data_seed``) are shared by the members of a seed sweep.  The figures of
the ``full`` preset (it beats the Gaussian by ~20 nats per patch): BUILD_NOTES.md (issue 4).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from egm import data, eval, run
from egm.energies import grbm
from egm.errors import ConfigError
from egm.run import realvalued as rv
from egm.run.config import at_least, field, greater_than, one_of
from egm.samplers.persistent import GRBM_SAMPLERS, grbm_chain


@dataclasses.dataclass(frozen=True)
class Config(rv.FETrainingFields):
    n_hidden: int = field(256, check=at_least(1))
    sampler: str = field("gibbs", check=one_of(*GRBM_SAMPLERS))
    langevin_steps: int = field(10, check=at_least(1), help="Gibbs–Langevin: steps on v per sweep")
    langevin_step_size: float = field(0.1, check=greater_than(0), help="times the mean variance")
    langevin_adjusted: bool = field(True, help="Gibbs–Langevin: Metropolis–Hastings correction")
    learn_variance: bool = True
    min_var: float = field(0.01, check=greater_than(0), help="variance clip (data variance ~1)")
    max_var: float = field(10.0, check=greater_than(0))
    lr_decay: bool = field(True, help="linear decay to 0 over the run")
    ais_chains: int = field(100, check=at_least(2), eval_only=True)
    ais_temps: int = field(10_000, check=at_least(3), eval_only=True)
    workdir: str = field("runs/grbm_patches", eval_only=True)

    def check(self) -> None:
        super().check()
        if not self.min_var < self.max_var:
            raise ConfigError(f"need min_var < max_var (variances of the whitened data, ~1), "
                              f"got {self.min_var}, {self.max_var}")  # fmt: skip


PRESETS = {
    "default": Config(),
    "tiny": Config(
        n_train=2000, n_test=500, n_hidden=16, epochs=3, n_chains=20, batch_size=50,
        ais_chains=16, ais_temps=200, n_samples=16, sample_steps=20, denoise_n=50,
        checkpoint_every=1, progress=False, workdir="runs/grbm_patches_tiny",
    ),
    "full": Config(epochs=300, ais_chains=500, ais_temps=20_000, workdir="runs/grbm_patches_full"),
}  # fmt: skip
# Real-valued MNIST (dequantised, standardised per pixel): the same model and training, run as
# `grbm_mnist.py --config tiny|default|full` (that file maps its presets onto these).
_MNIST = Config(dataset="mnist", source="embedded", n_train=4000, n_test=1000, epochs=20,
                whitening="standardize", whiten_eps=0.0, n_hidden=500, workdir="runs/grbm_mnist")  # fmt: skip
PRESETS |= {
    "mnist": _MNIST,
    "mnist_tiny": dataclasses.replace(
        _MNIST, n_train=500, n_test=200, n_hidden=16, epochs=2, n_chains=20, batch_size=50,
        ais_chains=16, ais_temps=200, n_samples=16, sample_steps=20, denoise_n=20,
        checkpoint_every=1, progress=False, workdir="runs/grbm_mnist_tiny"),
    "mnist_full": dataclasses.replace(_MNIST, source="auto", n_train=50_000, n_test=10_000,
                                      epochs=100, ais_temps=100_000, workdir="runs/grbm_mnist_full"),
}  # fmt: skip


def chain(cfg: Config):
    return grbm_chain(cfg.sampler, langevin_step_size=cfg.langevin_step_size,
                      langevin_steps=cfg.langevin_steps, langevin_adjusted=cfg.langevin_adjusted)  # fmt: skip


def init_params(cfg: Config, d: data.RealData, key) -> grbm.GRBMParams:
    z = d.z_train
    return grbm.init(key, z.shape[1], cfg.n_hidden, data_mean=z.mean(0), data_std=z.std(0))


def project(cfg: Config, d: data.RealData):
    """Variances clipped to [min_var, max_var], or held at their initial values (a function of
    the data, not of the key)."""
    if not cfg.learn_variance:
        fixed = init_params(cfg, d, jax.random.key(0)).log_beta
        return lambda p: p._replace(log_beta=fixed)
    return functools.partial(grbm.clip_precision, min_var=cfg.min_var, max_var=cfg.max_var)


MODEL = rv.FEModel(init_params, lambda cfg: grbm.free_energy, chain, project)


def evaluate(cfg: Config, d: data.RealData, done, key) -> dict:
    params, (k_ais, k_den) = done["train"].params, jax.random.split(key)
    ll = eval.grbm_log_likelihoods(
        k_ais, params, d.z_train, d.z_test, d.whitening, n_chains=cfg.ais_chains,
        n_temps=cfg.ais_temps, dataset=d.source, protocol=d.protocol,
        bits_per_dim=cfg.dataset == "mnist",
    )  # fmt: skip
    if not ll["ais_reliable"]:
        run.log(f"WARNING: AIS effective sample size {ll['ais_ess']:.1f} of {cfg.ais_chains} "
                f"chains: log Z is not converged and the log-likelihoods are optimistic; raise "
                f"--ais_temps")  # fmt: skip
    var = np.exp(-np.asarray(params.log_beta))
    return {**ll, **rv.denoising(cfg, d, grbm.free_energy, params, k_den),
            "variance_range": [float(var.min()), float(var.max())]}  # fmt: skip


def pictures(cfg: Config, d: data.RealData, done, key) -> dict:
    params = done["train"].params
    mean = jax.vmap(grbm.visible_mean, (None, 0))
    return eval.realvalued.sample_pictures(
        key, chain(cfg), params, d.z_train, d.whitening, d.image_shape, n_samples=cfg.n_samples,
        n_steps=cfg.sample_steps, shown=lambda s: mean(params, s.h) if hasattr(s, "h") else s.position,
        title=f"E[v|h] after {cfg.sample_steps} {cfg.sampler} steps",
    )  # fmt: skip


def describe(cfg: Config) -> dict:
    return {
        "model": f"GRBM {cfg.n_hidden} hidden, {'learned' if cfg.learn_variance else 'fixed'} variances",
        "training": f"{cfg.training(cfg.sampler)}, variance clip [{cfg.min_var}, {cfg.max_var}]",
        "loglik_units": "nats per whitened example (a density on R^D); *_pixel_nats: per "
        "example of grey values in [0, 1], through log|det A| of the whitening",
    }  # fmt: skip


EXPERIMENT = rv.fe_experiment(
    "grbm_patches", PRESETS, MODEL, evaluate=evaluate, pictures=pictures, describe=describe
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
