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
(:func:`gibbs_denoise`).

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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _realvalued as rv  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import Workdir, log, parse_overrides, rng_label, rng_mode  # noqa: E402

from egm.energies import ssrbm  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.samplers import gibbs_chain  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    source: str = "auto"  # auto | skimage | tfds
    data_dir: str | None = None
    patch_size: int = 8
    n_train: int = 50_000
    n_test: int = 10_000
    whitening: str = "zca"  # zca | pca | standardize
    whiten_eps: float | None = None  # None: 1% of the mean variance (egm.data.fit_whitening)
    n_hidden: int = 256
    # initial parameters (egm.energies.ssrbm.init); Λ starts at 1 / data variance
    w_scale: float = 0.01
    b_init: float = 0.0
    mu_init: float = 0.0
    alpha_init: float = 1.0
    phi_init: float = 0.01
    proper_margin: float = 0.05
    learn_lambda: bool = True  # False: Λ stays at 1 / data variance (init)
    estimator: str = "pcd"
    k: int = 1
    n_chains: int = 100
    batch_size: int = 100
    epochs: int = 30
    learning_rate: float = 3e-4  # 1e-3: |∇| grows, Λ collapses, worse figures (BUILD_NOTES.md)
    lr_decay: bool = False  # linear decay to 0 over the run (the recorded full run: constant)
    grad_clip: float = 10.0
    n_samples: int = 64
    sample_steps: int = 1000
    denoise_std: float = 0.1
    denoise_n: int = 1000
    denoise_steps: int = 300  # MAP: gradient steps
    denoise_sweeps: int = 200  # posterior mean: Gibbs sweeps (the first fifth discarded)
    eval_size: int = 2000
    checkpoint_every: int = 5
    workdir: str = "runs/ssrbm_patches"
    progress: bool = True
    fast_cpu_rng: bool = True

    def validate(self) -> Config:
        rv.validate_common(self)
        for name, low in (
            ("n_hidden", 1),
            ("denoise_steps", 1),
            ("denoise_sweeps", 5),
            ("eval_size", 1),
        ):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")
        for name in ("w_scale", "alpha_init", "phi_init", "proper_margin"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        return self


PRESETS = {
    "default": Config(),
    "tiny": Config(
        n_train=2000,
        n_test=500,
        n_hidden=16,
        epochs=3,
        n_chains=20,
        batch_size=50,
        n_samples=16,
        sample_steps=20,
        denoise_n=50,
        denoise_steps=50,
        denoise_sweeps=20,
        eval_size=200,
        checkpoint_every=1,
        progress=False,
        workdir="runs/ssrbm_patches_tiny",
    ),
    "full": Config(lr_decay=True, workdir="runs/ssrbm_patches_full"),
}

#: Fields that do not change the trained parameters (a resumed run may change them).
_EVAL_ONLY = rv.EVAL_ONLY + (
    "denoise_steps",
    "denoise_sweeps",
    "eval_size",
)


def gibbs_denoise(key, params, y, noise_std, whitening, *, n_sweeps, burn_in):
    """Posterior-mean (MMSE) denoising under the ssRBM prior by block Gibbs on
    ``p(z, s, h | y)``, ``z`` the whitened patch, ``y = m + z B + σ ε`` (``B`` =
    ``whitening.inverse``; exact for a square whitening, ZCA by default).

    ``y`` only touches ``z``: ``(h, s) | z`` are the model's conditionals, and ``z | s, h, y``
    is Gaussian with precision ``P = diag(Λ + Σ_i Φ_i h_i) + B Bᵀ/σ²`` and mean
    ``P⁻¹ (W (s ⊙ h) + B (y - m)/σ²)`` (one Cholesky of a D × D matrix per sweep).  Chains
    start at ``whiten(y)``; the estimate averages ``m + z B`` over the sweeps after
    ``burn_in``.  Unlike the MAP estimate it does not collapse onto the sharpest mode of a
    peaked prior."""
    mean = jnp.asarray(whitening.mean, jnp.float32)
    B = jnp.asarray(whitening.inverse, jnp.float32)
    fwd = jnp.asarray(whitening.forward, jnp.float32)
    G = B @ B.T / noise_std**2
    y = jnp.asarray(y, jnp.float32)

    def one(key, y_row):
        lin = B @ (y_row - mean) / noise_std**2

        def sweep(z, k):
            k_h, k_s, k_z = jax.random.split(k, 3)
            h = ssrbm.sample_hidden(k_h, params, z)
            s = ssrbm.sample_slab(k_s, params, z, h)
            L = jnp.linalg.cholesky(G + jnp.diag(ssrbm.visible_precision(params, h)))
            m = jax.scipy.linalg.cho_solve((L, True), params.W @ (s * h) + lin)
            eps = jax.random.normal(k_z, m.shape)
            z = m + jax.scipy.linalg.solve_triangular(L.T, eps, lower=False)
            return z, z

        _, zs = jax.lax.scan(sweep, (y_row - mean) @ fwd, jax.random.split(key, n_sweeps))
        return mean + jnp.mean(zs[burn_in:], axis=0) @ B

    # lax.map, one patch at a time: a vmapped version (batched Cholesky) wedged XLA CPU's
    # thread pool now and then on the 2-core machine (the process sleeps forever)
    keys = jax.random.split(key, y.shape[0])
    return np.asarray(jax.jit(lambda k, y: jax.lax.map(lambda a: one(*a), (k, y)))(keys, y))


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return _run(cfg)


def _run(cfg: Config) -> dict:
    wd = Workdir(cfg.workdir)
    t0 = time.perf_counter()
    p = rv.load_patches(cfg, wd)
    D = p.z_train.shape[1]
    log(f"data: {p.source}, train {p.z_train.shape}, test {p.z_test.shape}")
    k_init, k_samp, k_den = jax.random.split(jax.random.key(cfg.seed), 3)
    params0 = ssrbm.init(
        k_init,
        D,
        cfg.n_hidden,
        w_scale=cfg.w_scale,
        b=cfg.b_init,
        mu=cfg.mu_init,
        alpha=cfg.alpha_init,
        phi=cfg.phi_init,
        data_var=jnp.asarray(p.z_train.var(0)),
        margin=cfg.proper_margin,
    )
    chain = gibbs_chain(ssrbm.BLOCKS, ssrbm.sample_state)

    def project(params):
        if not cfg.learn_lambda:
            params = params._replace(log_lambda=params0.log_lambda)
        return ssrbm.project(params, margin=cfg.proper_margin)

    z_tr_eval = jnp.asarray(p.z_train[: cfg.eval_size])
    z_te_eval = jnp.asarray(p.z_test[: cfg.eval_size])

    @jax.jit
    def _eval(params):
        fe = jax.vmap(ssrbm.free_energy, (None, 0))
        ph = jax.vmap(ssrbm.hidden_probs, (None, 0))(params, z_te_eval)
        return {
            "free_energy_test_minus_train": jnp.mean(fe(params, z_te_eval))
            - jnp.mean(fe(params, z_tr_eval)),
            "spike_rate_test": jnp.mean(ph),
            "properness_bound": ssrbm.properness_bound(params),
        }

    state = rv.fit(
        cfg,
        wd,
        t0,
        params=params0,
        free_energy=ssrbm.free_energy,
        chain=chain,
        z_train=p.z_train,
        project=project,
        eval_fn=lambda epoch, params: {k: float(v) for k, v in _eval(params).items()},
        record=dataclasses.asdict(cfg),
        eval_only=_EVAL_ONLY,
    )
    params = state.params
    ssrbm.check_proper(params)
    train_s = time.perf_counter() - t0

    # samples: independent chains started at training patches, many sweeps
    v0 = p.z_train[np.asarray(jax.random.choice(k_samp, len(p.z_train), (cfg.n_samples,)))]
    _, final = rv.long_chains(jax.random.fold_in(k_samp, 1), chain, params, v0, cfg.sample_steps)
    shown = np.asarray(
        jax.jit(jax.vmap(ssrbm.visible_mean, (None, 0, 0)))(params, final.s, final.h)
    )
    rv.save_patch_grid(
        wd,
        "samples.png",
        shown,
        p.whitening,
        cfg.patch_size,
        f"E[v|s,h] after {cfg.sample_steps} Gibbs sweeps",
    )
    n_f = min(100, cfg.n_hidden)
    order = np.argsort(-np.linalg.norm(np.asarray(params.W), axis=0))[:n_f]
    rv.save_patch_grid(
        wd,
        "filters.png",
        np.asarray(params.W[:, order].T),
        p.whitening,
        cfg.patch_size,
        f"{n_f} largest filters W_i (pixel space)",
        directions=True,
    )

    # denoising of held-out patches: MAP under the ssRBM prior vs Wiener vs noisy input
    t_den = time.perf_counter()
    mmse = functools.partial(
        gibbs_denoise,
        jax.random.fold_in(k_den, 1),
        params,
        noise_std=cfg.denoise_std,
        whitening=p.whitening,
        n_sweeps=cfg.denoise_sweeps,
        burn_in=cfg.denoise_sweeps // 5,
    )
    den = rv.denoising(
        k_den,
        ssrbm.free_energy,
        params,
        p,
        noise_std=cfg.denoise_std,
        n=cfg.denoise_n,
        n_steps=cfg.denoise_steps,
        extra={"model_mmse": mmse},
    )
    den.update(
        {
            "map_steps": cfg.denoise_steps,
            "mmse_sweeps": cfg.denoise_sweeps,
            "mmse_burn_in": cfg.denoise_sweeps // 5,
        }
    )
    den_s = time.perf_counter() - t_den
    ev = {k: float(v) for k, v in _eval(params).items()}
    alpha = np.exp(np.asarray(params.log_alpha))
    lam = np.exp(np.asarray(params.log_lambda))
    results = {
        "model": f"mu-ssRBM {D}-{cfg.n_hidden} (spikes h, slabs s, diagonal Lambda and Phi_i)",
        "training": f"{cfg.estimator.upper()}-{cfg.k} with block Gibbs (h|v, s|v,h, v|s,h), "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.n_chains} chains, Adam lr "
        f"{cfg.learning_rate}, grad clip {cfg.grad_clip}; properness projection (alpha), "
        f"margin {cfg.proper_margin}",
        "data": p.source,
        "n_train": int(len(p.z_train)),
        "n_test": int(len(p.z_test)),
        "denoising": den,
        "spike_rate_test": ev["spike_rate_test"],
        "free_energy_test_minus_train": ev["free_energy_test_minus_train"],
        "properness_bound": ev["properness_bound"],
        "alpha_range": [float(alpha.min()), float(alpha.max())],
        "lambda_range": [float(lam.min()), float(lam.max())],
        "phi_mean": float(np.exp(np.asarray(params.log_phi)).mean()),
        "train_seconds": train_s,
        "denoise_seconds": den_s,
        "total_seconds": time.perf_counter() - t0,
        "device": str(jax.devices()[0]),
        "rng": rng_label(),
    }
    wd.write_json("results.json", results)
    log(
        f"denoising PSNR (sigma {cfg.denoise_std}): ssRBM MAP {den['psnr_model_db']:.2f} dB, "
        f"posterior mean {den['psnr_model_mmse_db']:.2f} dB, "
        f"Wiener {den['psnr_wiener_db']:.2f} dB, noisy {den['psnr_noisy_db']:.2f} dB; spike "
        f"rate {ev['spike_rate_test']:.3f}; results in {cfg.workdir}/results.json"
    )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
