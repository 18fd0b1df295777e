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
The patches (``--data_seed``) are shared by the members of a seed sweep.

Full config (256 hidden, PCD-1 block Gibbs, 300 epochs, Adam 1e-3 decayed to 0, variances
clipped to [0.01, 10]; AIS 500 chains x 20,000 temperatures): test log-likelihood -61.87
nats per whitened patch (ESS 484/500) against -82.49 for the exact full-covariance
Gaussian; 105 s of training, 138 s in all on the 2-core CPU (BUILD_NOTES.md, issue 4).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run, train
from egm.energies import grbm
from egm.errors import ConfigError
from egm.run.config import at_least, field, greater_than, one_of
from egm.run.realvalued import FETrainingFields, run_files
from egm.samplers.persistent import GRBM_SAMPLERS, grbm_chain, long_chains


@dataclasses.dataclass(frozen=True)
class Config(FETrainingFields):
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
_MNIST = Config(
    dataset="mnist",
    source="embedded",
    n_train=4000,
    n_test=1000,
    epochs=20,
    whitening="standardize",
    whiten_eps=0.0,
    n_hidden=500,
    workdir="runs/grbm_mnist",
)
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


def init(cfg: Config, d: data.RealData, key, done) -> train.TrainState:
    k_params, k_chains, k_rows = jax.random.split(key, 3)
    v0 = jnp.asarray(d.z_train)[jax.random.choice(k_rows, len(d.z_train), (cfg.n_chains,))]
    params = init_params(cfg, d, k_params)
    return train.init_fe_state(k_chains, params, cfg.optimizer(len(d.z_train)), chain(cfg), v0)


def step(cfg: Config, d: data.RealData, done):
    project = functools.partial(grbm.clip_precision, min_var=cfg.min_var, max_var=cfg.max_var)
    if not cfg.learn_variance:  # the initial variances (a function of the data, not the key)
        fixed = init_params(cfg, d, jax.random.key(0)).log_beta
        project = lambda p: p._replace(log_beta=fixed)
    fe_cfg = train.FEStepConfig(cfg.estimator, cfg.k)
    return train.make_fe_step(grbm.free_energy, chain(cfg), cfg.optimizer(len(d.z_train)), fe_cfg,
                              project=project)  # fmt: skip


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
    den = eval.denoise.denoising_report(
        k_den, grbm.free_energy, params, d.x_train, d.x_test, d.whitening,
        noise_std=cfg.denoise_std, n=cfg.denoise_n,
    )  # fmt: skip
    var = np.exp(-np.asarray(params.log_beta))
    return {**ll, **den, "variance_range": [float(var.min()), float(var.max())],
            "data": f"{d.source}, {d.protocol}", "n_train": len(d.z_train), "n_test": len(d.z_test)}  # fmt: skip


def pictures(cfg: Config, d: data.RealData, done, key) -> dict:
    params = done["train"].params
    _, final = long_chains(key, chain(cfg), params, d.z_train, cfg.n_samples, cfg.sample_steps)
    shown = (jax.vmap(grbm.visible_mean, (None, 0))(params, final.h)
             if hasattr(final, "h") else final.position)  # fmt: skip
    filters, n_f = eval.filter_grid(params.W, d.whitening, d.image_shape)
    return {
        "samples.png": (eval.patch_grid(shown, d.whitening, d.image_shape),
                        f"E[v|h] after {cfg.sample_steps} {cfg.sampler} steps"),
        "filters.png": (filters, f"{n_f} largest filters W[:, j] (pixel space)"),
    }  # fmt: skip


def describe(cfg: Config) -> dict:
    return {
        "model": f"GRBM {cfg.n_hidden} hidden, "
        f"{'learned' if cfg.learn_variance else 'fixed'} variances",
        "training": f"{cfg.estimator.upper()}-{cfg.k} with {cfg.sampler}, {cfg.epochs} epochs, "
        f"batch {cfg.batch_size}, {cfg.n_chains} chains, Adam lr {cfg.learning_rate}"
        f"{' (linear decay to 0)' if cfg.lr_decay else ''}, grad clip {cfg.grad_clip}, "
        f"variance clip [{cfg.min_var}, {cfg.max_var}]",
        "loglik_units": "nats per whitened example (a density on R^D); *_pixel_nats: per "
        "example of grey values in [0, 1], through log|det A| of the whitening",
    }


def phases(cfg: Config) -> list[run.Phase]:
    check = lambda e, m: train.check_acceptance(e, m, hint=f"(learning_rate={cfg.learning_rate})")
    return [run.Phase("train", init, step, check_epoch=check)]


EXPERIMENT = run.Experiment(
    name="grbm_patches", presets=PRESETS, load=lambda cfg: cfg.load_data(), phases=phases,
    evaluate=evaluate, pictures=pictures, files=run_files(params=False), describe=describe,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate}, grad_clip={c.grad_clip}; "
    f"lower the learning rate)",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
