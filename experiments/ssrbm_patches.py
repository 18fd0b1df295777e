"""Spike-and-slab RBM on whitened 8×8 natural image patches (§20.5.2; Courville et al. 2011).

    python experiments/ssrbm_patches.py --config tiny        # smoke test, seconds
    python experiments/ssrbm_patches.py --config full        # recorded run (BUILD_NOTES.md)

Patches come from the natural photographs shipped inside scikit-image (``pip install
"egm[patches]"``; train and test patches from disjoint bands of every photo) or from CIFAR-10 through
tensorflow-datasets (``--source tfds``), ZCA-whitened by a transform fitted on the training
patches and stored in the work directory (whitening.npz).  The µ-ssRBM
(:mod:`egm.energies.ssrbm`) is trained by PCD-k with block Gibbs over ``h | v``,
``s | v, h``, ``v | s, h``; after every update :func:`egm.energies.ssrbm.project` raises
the slab precisions ``α`` where needed to keep the sufficient properness condition
``λ_max(Λ^(-1/2) Σ_i t_i W_i W_iᵀ Λ^(-1/2)) < 1``, so the model stays normalisable.

Outputs in --workdir: config.json, metrics.jsonl, checkpoints/, whitening.npz, filters.png
(the filters W_i in pixel space), samples.png (E[v | s, h] after long Gibbs chains),
results.json.  A killed run started again with the same command resumes from its last
checkpoint.  Denoising (results.json) scores three estimators on the same noisy held-out
patches (σ = 0.1 in [0, 1] grey units): the Wiener filter of the training covariance, the
MAP estimate under the ssRBM prior (:func:`egm.eval.denoise.map_denoise`) and the posterior
mean under it by block Gibbs on ``p(z, s, h | y)`` (:func:`egm.eval.denoise.ssrbm_posterior_mean`).

The figures of the ``full`` preset (the posterior mean just beats the Wiener filter, MAP
does not; a constant learning rate makes the prior more peaked): BUILD_NOTES.md (issue 4).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run
from egm.energies import ssrbm
from egm.run import realvalued as rv
from egm.run.config import at_least, field, greater_than
from egm.samplers import gibbs_chain


@dataclasses.dataclass(frozen=True)
class Config(rv.FETrainingFields):
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


def project(cfg: Config, d: data.RealData):
    """Λ held at 1 / data variance unless learned, then α raised where the properness bound
    needs it (:func:`egm.energies.ssrbm.project`)."""
    lam0 = init_params(cfg, d, jax.random.key(0)).log_lambda  # from the data, not the key

    def project(p):
        p = p if cfg.learn_lambda else p._replace(log_lambda=lam0)
        return ssrbm.project(p, margin=cfg.proper_margin)

    return project


MODEL = rv.FEModel(init_params, lambda cfg: ssrbm.free_energy, lambda cfg: CHAIN, project)


def monitor(cfg: Config, d: data.RealData, state, key, epoch: int) -> dict:
    p = state.params
    spikes = jax.vmap(ssrbm.hidden_probs, (None, 0))(p, jnp.asarray(d.z_test[: cfg.eval_size]))
    return {"free_energy_test_minus_train": rv.free_energy_gap(cfg, d, ssrbm.free_energy, p),
            "spike_rate_test": float(jnp.mean(spikes)),
            "properness_bound": float(ssrbm.properness_bound(p))}  # fmt: skip


def evaluate(cfg: Config, d: data.RealData, done, key) -> dict:
    state, (k_map, k_mmse) = done["train"], jax.random.split(key)
    params, burn_in = state.params, cfg.denoise_sweeps // 5
    ssrbm.check_proper(params)
    mmse = functools.partial(eval.denoise.ssrbm_posterior_mean, k_mmse, params, noise_std=cfg.denoise_std,
                             whitening=d.whitening, n_sweeps=cfg.denoise_sweeps, burn_in=burn_in)  # fmt: skip
    den = rv.denoising(cfg, d, ssrbm.free_energy, params, k_map, n_steps=cfg.denoise_steps,
                       extra={"model_mmse": mmse})  # fmt: skip
    alpha, lam = np.exp(np.asarray(params.log_alpha)), np.exp(np.asarray(params.log_lambda))
    return {**den, "map_steps": cfg.denoise_steps, "mmse_sweeps": cfg.denoise_sweeps,
            "mmse_burn_in": burn_in, **monitor(cfg, d, state, key, cfg.epochs - 1),
            "alpha_range": [float(alpha.min()), float(alpha.max())],
            "lambda_range": [float(lam.min()), float(lam.max())],
            "phi_mean": float(np.exp(np.asarray(params.log_phi)).mean())}  # fmt: skip


def pictures(cfg: Config, d: data.RealData, done, key) -> dict:
    params = done["train"].params
    mean = jax.vmap(ssrbm.visible_mean, (None, 0, 0))
    return eval.realvalued.sample_pictures(
        key, CHAIN, params, d.z_train, d.whitening, d.image_shape, n_samples=cfg.n_samples,
        n_steps=cfg.sample_steps, shown=lambda s: mean(params, s.s, s.h),
        title=f"E[v|s,h] after {cfg.sample_steps} Gibbs sweeps",
    )  # fmt: skip


def describe(cfg: Config) -> dict:
    return {
        "model": f"mu-ssRBM {cfg.n_hidden} hidden (spikes h, slabs s, diagonal Lambda and Phi_i)",
        "training": f"{cfg.training('block Gibbs (h|v, s|v,h, v|s,h)')}; properness projection "
        f"(alpha), margin {cfg.proper_margin}",
    }


EXPERIMENT = rv.fe_experiment(
    "ssrbm_patches", PRESETS, MODEL, evaluate=evaluate, pictures=pictures, describe=describe,
    monitor=monitor,
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
