"""Categorical VAE on binarized MNIST: Gumbel-Softmax vs straight-through vs REINFORCE (§20.9).

Setting of Jang et al. (2017): 20 categorical latents of 10 classes each (uniform prior),
encoder 784-512-256, decoder mirrored, ReLU, Bernoulli output; Adam lr 1e-3, batch 100,
temperature ``τ = max(0.5, exp(-r t))`` updated every ``N`` steps (``r = 1e-4``,
``N = 500``).  The three estimators of ``∇ ELBO`` (:func:`egm.models.vae.discrete_elbo_surrogate`):

* ``gumbel``: the relaxed objective with Gumbel-Softmax samples (biased for τ > 0);
* ``st_gumbel``: straight-through Gumbel-Softmax (discrete forward pass, relaxed gradient);
* ``reinforce``: score function with a leave-one-out baseline over 2 draws (unbiased).

All three are evaluated on the same, discrete model: the test ELBO with categorical
draws and closed-form KL, and the importance-sampled log-likelihood with ``q(z|x)`` as
the proposal.  Jang et al. report negative ELBOs on MNIST for these estimators; compare
trends, not digits (different binarization and run lengths).

    python experiments/gumbel_vae_mnist.py                 # default: embedded subset
    python experiments/gumbel_vae_mnist.py --config tiny   # smoke test, seconds
    python experiments/gumbel_vae_mnist.py --config full --source idx --data_dir ../shared/data/mnist

Measured (BUILD_NOTES.md; ``--config full --epochs 5``, 50k digits, shared 2-core CPU): test
ELBO with discrete codes -128.49 (Gumbel-Softmax), -129.28 (straight-through), -139.09
(REINFORCE); IS log-likelihood (k = 1000, 1000 digits) -106.76 / -115.75 / -124.37 nats.
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
from jax.tree_util import Partial  # noqa: E402
from vae_mnist import load_splits, parse_hidden, protocol_text, train_loss_model  # noqa: E402

from egm import data  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.estimators.gradients import temperature_schedule  # noqa: E402
from egm.estimators.importance import importance_log_likelihood  # noqa: E402
from egm.eval import tile_images  # noqa: E402
from egm.models import vae  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    source: str = "embedded"
    data_dir: str | None = None
    train_split: str = "train"
    estimators: str = "gumbel,st_gumbel,reinforce"
    hidden: str = "512,256"
    activation: str = "relu"
    n_latent: int = 20  # categorical variables
    n_classes: int = 10
    batch_size: int = 100
    learning_rate: float = 1e-3
    tau0: float = 1.0
    tau_min: float = 0.5
    anneal_rate: float = 1e-4
    anneal_every: int = 500
    epochs: int = 10
    eval_every: int = 5
    eval_size: int = 1000
    is_samples: int = 1000
    is_test_size: int = 1000
    checkpoint_every: int = 1
    n_samples: int = 64
    workdir: str = "runs/gumbel_vae_mnist"
    progress: bool = True
    fast_cpu_rng: bool = True

    def validate(self) -> Config:
        if self.source not in data.MNIST_SOURCES:
            raise ConfigError(f"source must be one of {data.MNIST_SOURCES}, got {self.source!r}")
        if self.data_dir is not None and self.source == "embedded":
            raise ConfigError(
                "--data_dir is set but --source is 'embedded', which ignores it; add --source idx"
            )
        parse_estimators(self.estimators)
        parse_hidden(self.hidden)
        for name in ("n_latent", "batch_size", "epochs", "eval_every", "eval_size", "is_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_classes < 2:
            raise ConfigError(f"n_classes must be >= 2, got {self.n_classes}")
        if self.tau_min <= 0 or self.tau0 <= 0:
            raise ConfigError("temperatures tau0 and tau_min must be > 0")
        return self


PRESETS = {
    "default": Config(),
    "tiny": Config(
        hidden="32",
        n_latent=3,
        n_classes=4,
        epochs=2,
        eval_every=1,
        eval_size=100,
        is_samples=32,
        is_test_size=50,
        n_samples=16,
        progress=False,
        workdir="runs/gumbel_vae_mnist_tiny",
    ),
    "full": Config(
        source="auto",
        train_split="train",
        epochs=10,
        eval_every=2,
        workdir="runs/gumbel_vae_mnist_full",
    ),
}


def parse_estimators(spec: str) -> list[str]:
    out = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [e for e in out if e not in vae.DISCRETE_ESTIMATORS]
    if bad or not out:
        raise ConfigError(
            f"--estimators must be a comma list of {vae.DISCRETE_ESTIMATORS}, got {spec!r}"
        )
    return out


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return _run(cfg)


def _run(cfg: Config) -> dict:
    wd = Workdir(cfg.workdir)
    t0 = time.perf_counter()
    x_train, x_valid, x_test, source = load_splits(cfg)
    protocol = protocol_text(cfg)
    log(f"data: {source}, train {x_train.shape}, protocol: {protocol}")
    wd.write_json("config.json", dataclasses.asdict(cfg))
    model = vae.VAE(
        x_dim=784,
        latent_dim=cfg.n_latent,
        n_classes=cfg.n_classes,
        latent="categorical",
        hidden=parse_hidden(cfg.hidden),
        activation=cfg.activation,
    ).check()
    lw_fn = vae.log_weights_fn(model)
    v_eval = jnp.asarray(x_valid[: cfg.eval_size])
    n_is = min(cfg.is_test_size, x_test.shape[0])
    root = jax.random.key(cfg.seed)

    def tau_of(step: int):
        return temperature_schedule(
            step, cfg.tau0, cfg.anneal_rate, cfg.tau_min, cfg.anneal_every
        ).astype(jnp.float32)

    def discrete_elbo(p, key, x):
        keys = jax.random.split(key, x.shape[0])
        return jax.vmap(lambda kk, xx: vae.elbo(kk, model, p, xx, 1, analytic_kl=True))(keys, x)

    discrete_elbo_jit = jax.jit(discrete_elbo)
    rows = []
    for i, est in enumerate(parse_estimators(cfg.estimators)):
        k_init, k_train, k_eval, k_is, k_samp = jax.random.split(jax.random.fold_in(root, i), 5)
        params = vae.init_params(k_init, model)
        opt = optax.adam(cfg.learning_rate)

        def loss_fn(p, batch, key, tau, est=est):
            lf = vae.make_discrete_loss(model, est, tau, dynamic_binarization=True)
            return lf(p, batch, key)

        def eval_fn(ep, p, k_eval=k_eval):
            val = discrete_elbo_jit(p, jax.random.fold_in(k_eval, ep), v_eval)
            return {"valid_discrete_elbo": float(jnp.mean(val))}

        fp = dataclasses.asdict(cfg) | {"estimator": est}
        for k in ("progress", "workdir", "checkpoint_every", "eval_every", "eval_size",
                  "is_samples", "is_test_size", "n_samples", "estimators", "epochs"):  # fmt: skip
            fp.pop(k)
        log(f"{est}: {cfg.epochs} epochs")
        state, timing = train_loss_model(
            subdir=Path(cfg.workdir) / est,
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
            extra_fn=tau_of,
            hint=f"(estimator {est}, learning_rate={cfg.learning_rate})",
        )
        p = state.params
        t_eval = time.perf_counter()
        k1, k2 = jax.random.split(k_eval)
        test_elbo = discrete_elbo_jit(p, k1, jnp.asarray(x_test))
        is_res = importance_log_likelihood(k_is, Partial(lw_fn, p), x_test[:n_is], cfg.is_samples)
        eval_s = time.perf_counter() - t_eval
        sub = Workdir(Path(cfg.workdir) / est)
        sub.save_png(
            "samples.png",
            tile_images(np.asarray(vae.generate(k_samp, model, p, cfg.n_samples)), (28, 28)),
            f"{est}: E[x|z], z uniform one-hot codes",
        )
        row = {
            "estimator": est,
            "test_discrete_elbo": float(jnp.mean(test_elbo)),
            "test_discrete_elbo_stderr": float(
                jnp.std(test_elbo, ddof=1) / np.sqrt(len(test_elbo))
            ),
            "test_loglik_is": float(is_res.log_likelihood),
            "test_loglik_is_stderr": float(is_res.stderr),
            "is_samples": cfg.is_samples,
            "is_test_digits": n_is,
            "final_tau": float(tau_of(int(state.step))),
            "eval_seconds": eval_s,
            **timing,
        }
        sub.write_json("results.json", row)
        rows.append(row)
        log(
            f"{est}: test ELBO (discrete) {row['test_discrete_elbo']:.2f}, IS log-likelihood "
            f"{row['test_loglik_is']:.2f} ± {row['test_loglik_is_stderr']:.2f}"
        )
    results = {
        "experiment": "categorical VAE: Gumbel-Softmax vs straight-through vs REINFORCE",
        "network": f"784-{cfg.hidden}-({cfg.n_latent}x{cfg.n_classes} categorical), "
        f"{cfg.activation}, Bernoulli output",
        "training": f"Adam lr {cfg.learning_rate}, batch {cfg.batch_size}, {cfg.epochs} epochs, "
        f"tau = max({cfg.tau_min}, {cfg.tau0}·exp(-{cfg.anneal_rate} t)), updated every "
        f"{cfg.anneal_every} steps",
        "data": source,
        "protocol": protocol,
        "evaluation": f"test_discrete_elbo: categorical draws, closed-form KL, all test digits; "
        f"IS: k={cfg.is_samples} draws of q(z|x), first {n_is} test digits",
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
