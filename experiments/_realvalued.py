"""Shared plumbing of the real-valued experiments (GRBM, mcRBM, mPoT, ssRBM; §20.5).

One copy of what every real-valued experiment does around its model: load 8×8 natural image
patches (or real-valued MNIST), whiten them with a transform stored in the work directory,
train any free-energy model by CD/PCD (:func:`egm.train.make_fe_step`) with
checkpoints and resume, draw samples after long chains, show filters in pixel space, and
measure denoising against the Gaussian (Wiener) baseline.  A model's experiment supplies its
energy functions, its chain and its ``project``; the config fields used here are listed in
:data:`FIELDS`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import Workdir, resume

from egm import data, train
from egm.errors import ConfigError
from egm.eval import tile_images
from egm.samplers import ChainSpec, run

#: Config fields this module reads (each experiment's Config dataclass defines them).
FIELDS = (
    "seed",
    "source",
    "data_dir",
    "patch_size",
    "n_train",
    "n_test",
    "whitening",
    "whiten_eps",
    "estimator",
    "k",
    "n_chains",
    "batch_size",
    "epochs",
    "learning_rate",
    "lr_decay",
    "grad_clip",
    "checkpoint_every",
    "progress",
    "workdir",
    "n_samples",
    "sample_steps",
    "denoise_std",
    "denoise_n",
)
#: Fields every real-valued experiment may change on a resumed run (they do not change the
#: trained parameters); each experiment adds its own evaluation-only fields.
EVAL_ONLY = (
    "progress",
    "workdir",
    "checkpoint_every",
    "n_samples",
    "sample_steps",
    "denoise_std",
    "denoise_n",
    "n_test",
)
WHITENINGS = ("zca", "pca", "standardize")
PATCH_SOURCES = ("auto", "skimage", "tfds")


def validate_common(cfg: Any) -> None:
    """Range checks of the :data:`FIELDS` (raise :class:`ConfigError` naming the field).
    A config with ``dataset = "mnist"`` takes the MNIST sources instead of the patch ones."""
    sources = data.MNIST_SOURCES if getattr(cfg, "dataset", "patches") == "mnist" else PATCH_SOURCES
    if cfg.source not in sources:
        raise ConfigError(f"source must be one of {sources}, got {cfg.source!r}")
    if cfg.whitening not in WHITENINGS:
        raise ConfigError(f"whitening must be one of {WHITENINGS}, got {cfg.whitening!r}")
    if cfg.estimator not in train.fe_step.ESTIMATORS:
        raise ConfigError(
            f"estimator must be one of {train.fe_step.ESTIMATORS}, got {cfg.estimator!r}"
        )
    for name, low in (
        ("patch_size", 2),
        ("n_train", 2),
        ("n_test", 1),
        ("k", 1),
        ("n_chains", 1),
        ("batch_size", 1),
        ("epochs", 1),
        ("checkpoint_every", 1),
        ("n_samples", 1),
        ("sample_steps", 1),
        ("denoise_n", 1),
    ):
        if getattr(cfg, name) < low:
            raise ConfigError(f"{name} must be >= {low}, got {getattr(cfg, name)}")
    if cfg.batch_size > cfg.n_train:
        raise ConfigError(
            f"batch_size {cfg.batch_size} exceeds n_train {cfg.n_train}; lower --batch_size"
        )
    for name in ("learning_rate", "grad_clip", "denoise_std"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(cfg, name)}")
    if cfg.whiten_eps is not None and not cfg.whiten_eps >= 0:
        raise ConfigError(
            f"whiten_eps must be >= 0 (or none: 1% of the mean variance), got {cfg.whiten_eps}"
        )


class RealData(NamedTuple):
    """Pixel-space data in [0, 1], their whitened versions, and the transform."""

    x_train: np.ndarray
    x_test: np.ndarray
    z_train: np.ndarray
    z_test: np.ndarray
    whitening: Any
    source: str


def load_patches(cfg: Any, wd: Workdir) -> RealData:
    """Train patches and test patches (from images disjoint from the training images),
    whitened by a transform fitted on the training patches and saved as ``whitening.npz``."""
    kw = dict(patch_size=cfg.patch_size, seed=cfg.seed, data_dir=cfg.data_dir)
    x_tr = data.load_patches(cfg.source, split="train", n_patches=cfg.n_train, **kw)
    x_te = data.load_patches(cfg.source, split="test", n_patches=cfg.n_test, **kw)
    w = data.fit_whitening(x_tr, kind=cfg.whitening, eps=cfg.whiten_eps)
    data.save_whitening(Path(cfg.workdir) / "whitening.npz", w)
    z_tr = np.asarray(data.whiten(w, x_tr), np.float32)
    z_te = np.asarray(data.whiten(w, x_te), np.float32)
    src = f"{cfg.source} natural-image patches {cfg.patch_size}x{cfg.patch_size}, {cfg.whitening}"
    return RealData(x_tr, x_te, z_tr, z_te, w, src)


def load_real_mnist(cfg: Any, wd: Workdir) -> RealData:
    """Real-valued MNIST: grey levels ``(pixel + u) / 256`` with one fixed uniform
    dequantisation draw ``u ~ U[0, 1)`` per pixel (seed ``cfg.seed``; the training split's
    first ``n_train`` images, the test split's first ``n_test``), then whitened (default:
    standardised per pixel).  Dequantisation makes a density on the grey levels a lower
    bound on the probability of the 8-bit image, so :func:`bits_per_dim` is comparable to
    other models' figures, and it leaves no pixel with zero variance (MNIST's border is
    constant), which would let a learned GRBM variance collapse."""
    out = {}
    for i, split in enumerate(("train", "test")):
        ds = data.load_mnist(split, source=cfg.source, data_dir=cfg.data_dir)
        n = cfg.n_train if split == "train" else cfg.n_test
        if n > len(ds.x):
            raise ConfigError(
                f"n_{split} = {n} but the {ds.source} {split} split has {len(ds.x)} images; "
                f"lower --n_{split}"
            )
        pixels = np.round(np.asarray(ds.x[:n], np.float64) * 255.0)
        u = np.random.default_rng(cfg.seed + 100 + i).random(pixels.shape)
        out[split] = ((pixels + u) / 256.0).astype(np.float32)
        source = ds.source
    w = data.fit_whitening(out["train"], kind=cfg.whitening, eps=cfg.whiten_eps)
    data.save_whitening(Path(cfg.workdir) / "whitening.npz", w)
    z_tr = np.asarray(data.whiten(w, out["train"]), np.float32)
    z_te = np.asarray(data.whiten(w, out["test"]), np.float32)
    src = f"{source}, dequantised (pixel + U[0,1)) / 256, {cfg.whitening}"
    return RealData(out["train"], out["test"], z_tr, z_te, w, src)


def bits_per_dim(loglik_z: float, whitening: Any) -> float:
    """Bits per pixel of the 8-bit image from a log-density of the whitened dequantised data
    (:func:`load_real_mnist`): ``-(log p(z) + log|det A| - D log 256) / (D log 2)``."""
    D = np.asarray(whitening.mean).shape[0]
    return float(-(loglik_z + pixel_log_det(whitening) - D * np.log(256.0)) / (D * np.log(2.0)))


def pixel_log_det(whitening: Any) -> float:
    """``log |det A|`` of a square whitening ``z = (x - m) A``: add it to a log-density of
    ``z`` to get the density of the pixels (None for PCA with fewer components)."""
    A = np.asarray(whitening.forward, np.float64)
    if A.shape[0] != A.shape[1]:
        return float("nan")
    return float(np.linalg.slogdet(A)[1])


def gaussian_log_likelihood(z_train: np.ndarray, z_test: np.ndarray, ridge: float = 1e-3) -> float:
    """Mean test log-density of the full-covariance Gaussian fitted to the training data
    (the baseline every real-valued model of the data should beat).  The covariance gets
    ``ridge`` times its mean variance on the diagonal, so that it stays invertible when
    there are fewer examples than dimensions (a tiny MNIST subset)."""
    z_train, z_test = np.asarray(z_train, np.float64), np.asarray(z_test, np.float64)
    m, S = z_train.mean(0), np.atleast_2d(np.cov(z_train, rowvar=False, bias=True))
    S = S + ridge * np.trace(S) / len(S) * np.eye(len(S))
    L = np.linalg.cholesky(S)
    r = np.linalg.solve(L, (z_test - m).T)
    D = z_train.shape[1]
    return float(
        -0.5 * np.mean(np.sum(r**2, 0)) - np.sum(np.log(np.diag(L))) - 0.5 * D * np.log(2 * np.pi)
    )


def fit(
    cfg: Any,
    wd: Workdir,
    t0: float,
    *,
    params: Any,
    free_energy,
    chain: ChainSpec,
    z_train: np.ndarray,
    project=None,
    eval_fn=None,
    record: dict[str, Any],
    eval_only: tuple[str, ...],
) -> Any:
    """Adam (global-norm clipped at ``grad_clip``; learning rate decayed linearly to 0 over
    the run if ``cfg.lr_decay``) on CD-k/PCD-k with ``chain``; persistent
    chains start at random training examples.  Checkpoints every ``checkpoint_every``
    epochs, resumes a killed run, logs metrics (plus ``eval_fn(epoch, params)``) to
    metrics.jsonl.  Returns the final train state."""
    k_state, k_init, k_train = jax.random.split(jax.random.key(cfg.seed + 1), 3)
    lr = cfg.learning_rate
    if cfg.lr_decay:  # linear decay to 0 over the run
        lr = optax.linear_schedule(lr, 0.0, cfg.epochs * (len(z_train) // cfg.batch_size))
    opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adam(lr))
    rows = jax.random.choice(k_init, z_train.shape[0], (cfg.n_chains,), replace=True)
    state = train.init_fe_state(k_state, params, opt, chain, jnp.asarray(z_train)[rows])
    step = train.make_fe_step(
        free_energy,
        chain,
        opt,
        train.FEStepConfig(estimator=cfg.estimator, k=cfg.k),
        project=project,
    )
    epoch_fn = jax.jit(train.make_epoch(step, cfg.batch_size), donate_argnums=0)
    ckpt = train.Checkpointer(Path(cfg.workdir) / "checkpoints", every=cfg.checkpoint_every)
    state, start = resume(wd, ckpt, state, record, eval_only)

    def on_epoch_end(epoch, st, m):
        train.check_acceptance(epoch, m, hint=f"(learning_rate={cfg.learning_rate})")
        rec = {"epoch": epoch, **m}
        if eval_fn is not None:
            rec.update(eval_fn(epoch, st.params) or {})
        rec["wall_s"] = time.perf_counter() - t0
        wd.log_metrics(rec)
        return rec

    state = train.fit(
        state,
        jnp.asarray(z_train),
        epoch_fn=epoch_fn,
        key=k_train,
        n_epochs=cfg.epochs,
        start_epoch=start,
        on_epoch_end=on_epoch_end,
        checkpointer=ckpt,
        progress=cfg.progress,
        divergence_hint=f"(learning_rate={cfg.learning_rate}, grad_clip={cfg.grad_clip}; "
        f"lower the learning rate)",
        data_check=train.fe_data_check(z_train.shape[1]),
    )
    ckpt.close()
    return state


def long_chains(
    key, chain: ChainSpec, params: Any, v0: np.ndarray, n_steps: int
) -> tuple[np.ndarray, Any]:
    """Run ``len(v0)`` independent chains of ``chain`` for ``n_steps`` steps from ``v0``;
    returns the visible samples and the final states."""
    k0, k1 = jax.random.split(key)
    keys = jax.random.split(k0, len(v0))
    states = jax.vmap(chain.from_visible, in_axes=(0, None, 0))(keys, params, jnp.asarray(v0))
    states, _ = jax.jit(run, static_argnums=(0, 4))(chain.kernel, k1, states, params, n_steps)
    return np.asarray(jax.vmap(chain.visible)(states)), states


def save_patch_grid(
    wd: Workdir,
    name: str,
    z: np.ndarray,
    whitening: Any,
    patch_size: int | tuple[int, int],
    title: str,
    *,
    directions: bool = False,
) -> None:
    """Show whitened vectors as pixel patches (``patch_size``: a side, or (height, width)
    for non-square images such as MNIST's (28, 28)): samples are un-whitened (mean added) and
    clipped to [0, 1]; ``directions`` (filters) are mapped by the linear part only and each
    tile is scaled on its own."""
    z = np.asarray(z, np.float32)
    shape = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    if directions:
        x = z @ np.asarray(whitening.inverse, np.float32)
        img = tile_images(x, shape, normalize=True)
    else:
        x = np.clip(np.asarray(data.unwhiten(whitening, z)), 0.0, 1.0)
        img = tile_images(x, shape)
    wd.save_png(name, img, title)


def denoising(
    key,
    free_energy,
    params: Any,
    p: RealData,
    *,
    noise_std: float,
    n: int,
    n_steps: int = 300,
    extra: dict[str, Any] | None = None,
) -> dict[str, float]:
    """PSNR of held-out patches corrupted by N(0, noise_std²) pixel noise (drawn with
    ``key``): noisy input, the Wiener (Gaussian prior) estimate, the model's MAP estimate
    (:func:`egm.eval.denoise.map_denoise`) and, for every ``name: f`` in ``extra``, the
    estimate ``f(y)`` of the same noisy patches as ``psnr_{name}_db``.  Higher is better."""
    from egm.eval import denoise

    x = p.x_test[:n]
    y = x + noise_std * np.asarray(jax.random.normal(key, x.shape), np.float32)
    wiener = denoise.wiener_denoise(p.x_train, y, noise_std)
    model = denoise.map_denoise(free_energy, params, y, noise_std, p.whitening, n_steps=n_steps)
    out = {
        "noise_std": noise_std,
        "psnr_noisy_db": float(denoise.psnr(x, y)),
        "psnr_wiener_db": float(denoise.psnr(x, wiener)),
        "psnr_model_db": float(denoise.psnr(x, model)),
        "n_patches": int(len(x)),
    }
    for name, estimate in (extra or {}).items():
        out[f"psnr_{name}_db"] = float(denoise.psnr(x, estimate(y)))
    return out
