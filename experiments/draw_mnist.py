"""DRAW with and without attention on binarized MNIST: bound on the test NLL, canvas sequences.

Setting of Gregor et al. (2015), MNIST: T = 64 glimpses, LSTMs of 256 units, 100 latents
per step, read 2x2 and write 5x5 attention.  Published bounds on the test negative
log-likelihood: <= 87.40 nats without attention, <= 80.97 with attention.  Optimiser (not
given in the paper; the choice of the authors' public reimplementations): Adam, lr 1e-3,
β1 = 0.5, global gradient-norm clipping at 5, batch 100.

    python experiments/draw_mnist.py                  # default: embedded subset, small net
    python experiments/draw_mnist.py --config tiny    # smoke test, seconds
    python experiments/draw_mnist.py --config full --source idx --data_dir ../shared/data/mnist

``--variants attention,no_attention`` picks the runs; each trains in
``<workdir>/<variant>/`` (checkpoints, metrics, ``canvas.png``: rows are test digits,
columns canvases σ(c_t) at evenly spaced t; ``samples.png``: generated canvas sequences),
and ``<workdir>/results.json`` collects the bounds.  The paper's runs are far beyond a
2-core CPU: ``--epochs`` truncates them and results say how far they got.

Measured (BUILD_NOTES.md): the *default* network (T = 16, 128-unit LSTMs, 20 latents) for 7
epochs on the 50k training digits, fixed binarization, on the shared 2-core CPU: test NLL bound
139.84 ± 0.41 (attention) and 102.77 ± 0.29 (no attention) nats, 40 / 61 s per epoch.  The
paper's network (``--config full``) costs ~16x more per epoch (T = 64, 256 units): about an
hour per epoch on this CPU, so it needs an accelerator.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _common import Workdir, log, parse_overrides, rng_label, rng_mode  # noqa: E402
from vae_mnist import train_loss_model  # noqa: E402

from egm import data  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.eval import tile_images  # noqa: E402
from egm.models import draw  # noqa: E402

VARIANTS = ("attention", "no_attention")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    source: str = "embedded"
    data_dir: str | None = None
    binarization: str = "fixed"  # fixed | dynamic
    variants: str = "attention,no_attention"
    n_steps: int = 64
    enc_size: int = 256
    dec_size: int = 256
    latent_dim: int = 100
    read_n: int = 2
    write_n: int = 5
    batch_size: int = 100
    learning_rate: float = 1e-3
    beta1: float = 0.5
    clip_norm: float = 5.0
    epochs: int = 20
    eval_every: int = 5
    eval_size: int = 1000
    test_size: int = 0  # test digits for the final bound (0: all)
    checkpoint_every: int = 1
    n_show: int = 8
    workdir: str = "runs/draw_mnist"
    progress: bool = True
    fast_cpu_rng: bool = True

    def validate(self) -> Config:
        if self.source not in data.MNIST_SOURCES:
            raise ConfigError(f"source must be one of {data.MNIST_SOURCES}, got {self.source!r}")
        if self.data_dir is not None and self.source == "embedded":
            raise ConfigError(
                "--data_dir is set but --source is 'embedded', which ignores it; add --source idx"
            )
        if self.binarization not in ("fixed", "dynamic"):
            raise ConfigError(f"binarization must be fixed or dynamic, got {self.binarization!r}")
        parse_variants(self.variants)
        for name in ("n_steps", "enc_size", "dec_size", "latent_dim", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "eval_size", "checkpoint_every", "n_show"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.clip_norm <= 0:
            raise ConfigError("learning_rate and clip_norm must be > 0")
        return self


PRESETS = {
    "default": Config(n_steps=16, enc_size=128, dec_size=128, latent_dim=20, epochs=10),
    "tiny": Config(
        n_steps=3,
        enc_size=16,
        dec_size=16,
        latent_dim=4,
        epochs=2,
        eval_every=1,
        eval_size=100,
        test_size=100,
        n_show=4,
        progress=False,
        workdir="runs/draw_mnist_tiny",
    ),
    # the paper's network; epochs truncated to what a CPU affords
    "full": Config(source="auto", epochs=2, eval_every=1, workdir="runs/draw_mnist_full"),
}


def parse_variants(spec: str) -> list[str]:
    out = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [v for v in out if v not in VARIANTS]
    if bad or not out:
        raise ConfigError(f"--variants must be a comma list of {VARIANTS}, got {spec!r}")
    return out


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return _run(cfg)


def _run(cfg: Config) -> dict:
    wd = Workdir(cfg.workdir)
    t0 = time.perf_counter()
    ds = {
        s: data.load_mnist(s, source=cfg.source, data_dir=cfg.data_dir)
        for s in ("train", "valid", "test")
    }
    if cfg.binarization == "fixed":
        x_train = data.binarize_fixed(ds["train"].x, seed=cfg.seed)
        protocol = data.describe_protocol("fixed", seed=cfg.seed) + (
            f" (train/valid/test seeds {cfg.seed}/{cfg.seed + 1}/{cfg.seed + 2})"
        )
    else:
        x_train = np.asarray(ds["train"].x, np.float32)
        protocol = data.describe_protocol("dynamic", seed=cfg.seed) + (
            f"; valid/test one fixed draw (seeds {cfg.seed + 1}/{cfg.seed + 2})"
        )
    x_valid = data.binarize_fixed(ds["valid"].x, seed=cfg.seed + 1)[: cfg.eval_size]
    x_test = data.binarize_fixed(ds["test"].x, seed=cfg.seed + 2)
    if cfg.test_size:
        x_test = x_test[: cfg.test_size]
    log(f"data: {ds['train'].source}, train {x_train.shape}, protocol: {protocol}")
    wd.write_json("config.json", dataclasses.asdict(cfg))
    root = jax.random.key(cfg.seed)
    rows = []
    for i, variant in enumerate(parse_variants(cfg.variants)):
        model = draw.DRAW(
            n_steps=cfg.n_steps,
            enc_size=cfg.enc_size,
            dec_size=cfg.dec_size,
            latent_dim=cfg.latent_dim,
            attention=variant == "attention",
            read_n=cfg.read_n,
            write_n=cfg.write_n,
        ).check()
        k_init, k_train, k_eval, k_test, k_show = jax.random.split(jax.random.fold_in(root, i), 5)
        params = draw.init_params(k_init, model)
        opt = optax.chain(
            optax.clip_by_global_norm(cfg.clip_norm), optax.adam(cfg.learning_rate, b1=cfg.beta1)
        )
        loss_fn = draw.make_loss(model, dynamic_binarization=cfg.binarization == "dynamic")
        v_eval = jnp.asarray(x_valid)
        eval_nll = jax.jit(
            lambda p, key, model=model, v_eval=v_eval: jnp.mean(
                jax.vmap(lambda kk, x: draw.draw_forward(kk, model, p, x).loss)(
                    jax.random.split(key, v_eval.shape[0]), v_eval
                )
            )
        )

        def eval_fn(ep, params, eval_nll=eval_nll, k_eval=k_eval):
            return {"valid_nll_bound": float(eval_nll(params, jax.random.fold_in(k_eval, ep)))}

        fp = dataclasses.asdict(cfg) | {"variant": variant}
        for k in ("progress", "workdir", "checkpoint_every", "eval_every", "eval_size",
                  "test_size", "n_show", "variants", "epochs"):  # fmt: skip
            fp.pop(k)
        log(
            f"{variant}: T={cfg.n_steps}, {cfg.enc_size}/{cfg.dec_size} LSTM units, {cfg.epochs} epochs"
        )
        state, timing = train_loss_model(
            subdir=Path(cfg.workdir) / variant,
            fingerprint=fp,
            loss_fn=loss_fn,
            params=params,
            optimizer=opt,
            x_train=x_train,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            key=k_train,
            eval_fn=eval_fn,
            eval_every=cfg.eval_every,
            checkpoint_every=cfg.checkpoint_every,
            progress=cfg.progress,
            hint=f"(DRAW {variant}, learning_rate={cfg.learning_rate})",
        )
        p = state.params
        t_eval = time.perf_counter()
        per = draw.nll_bound(k_test, model, p, x_test)
        eval_s = time.perf_counter() - t_eval
        sub = Workdir(Path(cfg.workdir) / variant)
        cols = np.unique(np.linspace(0, cfg.n_steps - 1, min(10, cfg.n_steps)).astype(int))
        out = jax.vmap(
            lambda kk, x, model=model, p=p: (
                draw.draw_forward(kk, model, p, x, return_canvases=True).canvases
            )
        )(jax.random.split(k_show, cfg.n_show), jnp.asarray(x_test[: cfg.n_show]))
        seq = np.concatenate([np.asarray(out)[:, cols], x_test[: cfg.n_show, None]], 1)
        sub.save_png(
            "canvas.png",
            tile_images(seq.reshape(-1, 784), (28, 28), n_cols=len(cols) + 1),
            f"DRAW {variant}: canvases at t={[int(c) + 1 for c in cols]}, then the digit",
        )
        gen = np.asarray(draw.generate(k_show, model, p, cfg.n_show))[:, cols]
        sub.save_png(
            "samples.png",
            tile_images(gen.reshape(-1, 784), (28, 28), n_cols=len(cols)),
            f"DRAW {variant}: generated canvases at t={[int(c) + 1 for c in cols]}",
        )
        row = {
            "variant": variant,
            "test_nll_bound": float(jnp.mean(per)),
            "test_nll_bound_stderr": float(jnp.std(per, ddof=1) / np.sqrt(per.shape[0])),
            "test_digits": int(per.shape[0]),
            "eval_seconds": eval_s,
            **timing,
        }
        sub.write_json("results.json", row)
        rows.append(row)
        log(
            f"{variant}: test NLL bound {row['test_nll_bound']:.2f} ± {row['test_nll_bound_stderr']:.2f}"
        )
    results = {
        "experiment": "DRAW (Gregor et al. 2015)",
        "network": f"T={cfg.n_steps}, LSTM {cfg.enc_size}/{cfg.dec_size}, {cfg.latent_dim} latents "
        f"per step, read {cfg.read_n}x{cfg.read_n}, write {cfg.write_n}x{cfg.write_n}",
        "training": f"Adam lr {cfg.learning_rate}, b1 {cfg.beta1}, clip {cfg.clip_norm}, batch "
        f"{cfg.batch_size}, {cfg.epochs} epochs",
        "data": ds["train"].source,
        "protocol": protocol,
        "evaluation": "negative ELBO L^x + Σ_t KL_t with one draw of z_{1:T} per test digit "
        "(the paper's 'bound on the test NLL'); stderr over digits",
        "published": {"no_attention": 87.40, "attention": 80.97},
        "models": rows,
        "total_seconds": time.perf_counter() - t0,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "device": str(jax.devices()[0]),
        "rng": rng_label(),
    }
    wd.write_json("results.json", results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
