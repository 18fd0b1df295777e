"""Spike-and-slab RBM on whitened 8×8 natural image patches (§20.5.2; Courville et al. 2011).

    python experiments/ssrbm_patches.py --config tiny        # smoke test, seconds
    python experiments/ssrbm_patches.py --config full        # recorded run (below)

Patches come from the natural photographs shipped inside scikit-image (``pip install
"egm[patches]"``; train and test patches from disjoint bands of every photo) or from CIFAR-10 through
tensorflow-datasets (``--source tfds``), ZCA-whitened by a transform fitted on the training
patches and stored in the work directory (whitening.npz).  The µ-ssRBM
(:mod:`egm.energies.ssrbm`) is trained by PCD-k with block Gibbs over ``h | v``,
``s | v, h``, ``v | s, h``; after every update :func:`egm.energies.ssrbm.project` raises
the slab precisions ``α`` where needed to keep the sufficient properness condition
``λ_max(Λ^(-1/2) Σ_i t_i W_i W_iᵀ Λ^(-1/2)) < 1``, so the model stays normalisable.

Outputs in --workdir: config.json, metrics.jsonl, checkpoints/, whitening.npz,
filters.png (the filters W_i mapped back to pixel space), samples.png (E[v | s, h] after
long Gibbs chains, un-whitened), results.json with denoising PSNR of held-out patches
(MAP under the ssRBM prior vs the Wiener filter of the training covariance vs the noisy
input).  A killed run started again with the same command resumes from its last checkpoint.

Denoising scores three estimators on the same noisy held-out patches (σ = 0.1 in [0, 1]
grey units): the Wiener filter of the training covariance, the MAP estimate under the
ssRBM prior (:func:`egm.eval.denoise.map_denoise`, monotone for any prior)
and the posterior mean under the ssRBM prior by block Gibbs on ``p(z, s, h | y)``
(:func:`egm.eval.denoise.ssrbm_posterior_mean`).

Full config (skimage patches, 50k train / 10k test from disjoint bands of the photos, ZCA; 64-256,
PCD-1, 100 chains, Adam 3e-4 decayed linearly to 0, 30 epochs): PSNR on 1000 held-out
patches at σ = 0.1: noisy 20.00 dB, Wiener 25.93 dB, ssRBM MAP 25.47 dB, ssRBM posterior
mean 25.97 dB; test spike rate 0.21, properness bound 0.95; 27 s of training, 34 s in all
on the 2-core CPU machine.  With a constant learning rate (``--lr_decay false``) the prior
ends more peaked: MAP 24.36 dB, posterior mean 25.20 dB (spike rate 0.14); MAP estimates
then shrink the patches' contrast (BUILD_NOTES.md, issue 4).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run, train
from egm.energies import ssrbm
from egm.run.config import at_least, field, greater_than
from egm.run.realvalued import FETrainingFields, run_files
from egm.samplers import gibbs_chain
from egm.samplers.persistent import long_chains


@dataclasses.dataclass(frozen=True)
class Config(FETrainingFields):
    n_hidden: int = field(256, check=at_least(1))
    w_scale: float = field(0.01, check=greater_than(0), help="egm.energies.ssrbm.init")
    b_init: float = 0.0
    mu_init: float = 0.0
    alpha_init: float = field(1.0, check=greater_than(0))
    phi_init: float = field(0.01, check=greater_than(0))
    proper_margin: float = field(0.05, check=greater_than(0))
    learn_lambda: bool = field(True, help="False: Λ stays at 1 / data variance (init)")
    learning_rate: float = field(3e-4, check=greater_than(0), sweep=True,
                                 help="1e-3: |∇| grows, Λ collapses, worse figures")  # fmt: skip
    denoise_steps: int = field(300, check=at_least(1), eval_only=True, help="MAP: gradient steps")
    denoise_sweeps: int = field(200, check=at_least(5), eval_only=True,
                                help="posterior mean: Gibbs sweeps (the first fifth discarded)")  # fmt: skip
    eval_size: int = field(2000, check=at_least(1), eval_only=True)
    workdir: str = field("runs/ssrbm_patches", eval_only=True)


PRESETS = {
    "default": Config(),
    "tiny": Config(
        n_train=2000, n_test=500, n_hidden=16, epochs=3, n_chains=20, batch_size=50,
        n_samples=16, sample_steps=20, denoise_n=50, denoise_steps=50, denoise_sweeps=20,
        eval_size=200, checkpoint_every=1, progress=False, workdir="runs/ssrbm_patches_tiny",
    ),
    "full": Config(lr_decay=True, workdir="runs/ssrbm_patches_full"),
}  # fmt: skip


CHAIN = gibbs_chain(ssrbm.BLOCKS, ssrbm.sample_state)


def init_params(cfg: Config, d: data.RealData, key) -> ssrbm.SSRBMParams:
    return ssrbm.init(
        key, d.z_train.shape[1], cfg.n_hidden, w_scale=cfg.w_scale, b=cfg.b_init, mu=cfg.mu_init,
        alpha=cfg.alpha_init, phi=cfg.phi_init, data_var=jnp.asarray(d.z_train.var(0)),
        margin=cfg.proper_margin,
    )  # fmt: skip


def init(cfg: Config, d: data.RealData, key, done) -> train.TrainState:
    k_params, k_chains, k_rows = jax.random.split(key, 3)
    v0 = jnp.asarray(d.z_train)[jax.random.choice(k_rows, len(d.z_train), (cfg.n_chains,))]
    return train.init_fe_state(
        k_chains, init_params(cfg, d, k_params), cfg.optimizer(len(d.z_train)), CHAIN, v0
    )


def step(cfg: Config, d: data.RealData, done):
    lam0 = init_params(cfg, d, jax.random.key(0)).log_lambda  # from the data, not the key

    def project(p):
        p = p if cfg.learn_lambda else p._replace(log_lambda=lam0)
        return ssrbm.project(p, margin=cfg.proper_margin)

    fe_cfg = train.FEStepConfig(cfg.estimator, cfg.k)
    return train.make_fe_step(
        ssrbm.free_energy, CHAIN, cfg.optimizer(len(d.z_train)), fe_cfg, project=project
    )


def monitor(cfg: Config, d: data.RealData, state, key, epoch: int) -> dict:
    p = state.params
    z_tr, z_te = d.z_train[: cfg.eval_size], d.z_test[: cfg.eval_size]
    spikes = jax.vmap(ssrbm.hidden_probs, (None, 0))(p, jnp.asarray(z_te))
    return {"free_energy_test_minus_train": float(eval.free_energy_gap(ssrbm.free_energy, p, z_tr, z_te)),
            "spike_rate_test": float(jnp.mean(spikes)),
            "properness_bound": float(ssrbm.properness_bound(p))}  # fmt: skip


def evaluate(cfg: Config, d: data.RealData, done, key) -> dict:
    state, (k_map, k_mmse) = done["train"], jax.random.split(key)
    params, burn_in = state.params, cfg.denoise_sweeps // 5
    ssrbm.check_proper(params)
    mmse = functools.partial(eval.denoise.ssrbm_posterior_mean, k_mmse, params, noise_std=cfg.denoise_std,
                             whitening=d.whitening, n_sweeps=cfg.denoise_sweeps, burn_in=burn_in)  # fmt: skip
    den = eval.denoise.denoising_report(
        k_map, ssrbm.free_energy, params, d.x_train, d.x_test, d.whitening, noise_std=cfg.denoise_std,
        n=cfg.denoise_n, n_steps=cfg.denoise_steps, extra={"model_mmse": mmse},
    )  # fmt: skip
    alpha, lam = np.exp(np.asarray(params.log_alpha)), np.exp(np.asarray(params.log_lambda))
    return {**den, "map_steps": cfg.denoise_steps, "mmse_sweeps": cfg.denoise_sweeps,
            "mmse_burn_in": burn_in, **monitor(cfg, d, state, key, cfg.epochs - 1),
            "alpha_range": [float(alpha.min()), float(alpha.max())],
            "lambda_range": [float(lam.min()), float(lam.max())],
            "phi_mean": float(np.exp(np.asarray(params.log_phi)).mean()),
            "data": f"{d.source}, {d.protocol}", "n_train": len(d.z_train), "n_test": len(d.z_test)}  # fmt: skip


def pictures(cfg: Config, d: data.RealData, done, key) -> dict:
    params = done["train"].params
    _, final = long_chains(key, CHAIN, params, d.z_train, cfg.n_samples, cfg.sample_steps)
    shown = jax.vmap(ssrbm.visible_mean, (None, 0, 0))(params, final.s, final.h)
    filters, n_f = eval.filter_grid(params.W, d.whitening, d.image_shape)
    return {"samples.png": (eval.patch_grid(shown, d.whitening, d.image_shape),
                            f"E[v|s,h] after {cfg.sample_steps} Gibbs sweeps"),
            "filters.png": (filters, f"{n_f} largest filters W_i (pixel space)")}  # fmt: skip


def describe(cfg: Config) -> dict:
    return {
        "model": f"mu-ssRBM {cfg.n_hidden} hidden (spikes h, slabs s, diagonal Lambda and Phi_i)",
        "training": f"{cfg.estimator.upper()}-{cfg.k} with block Gibbs (h|v, s|v,h, v|s,h), "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.n_chains} chains, Adam lr "
        f"{cfg.learning_rate}{' (linear decay to 0)' if cfg.lr_decay else ''}, grad clip "
        f"{cfg.grad_clip}; properness projection (alpha), margin {cfg.proper_margin}",
    }


EXPERIMENT = run.Experiment(
    name="ssrbm_patches", presets=PRESETS, load=lambda cfg: cfg.load_data(),
    phases=lambda cfg: [run.Phase("train", init, step, monitor=monitor)],
    evaluate=evaluate, pictures=pictures, files=run_files(params=False), describe=describe,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate}, grad_clip={c.grad_clip})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
