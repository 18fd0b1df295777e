"""DDPM on 8-bit MNIST: the variational bound in bits/dim and samples with EMA weights (§20.13).

Protocol (Ho et al. 2020's for CIFAR-10, applied to MNIST): 8-bit levels k = round(255 grey)
scaled to x_0 = 2k/255 - 1 in [-1, 1]; ε-prediction trained on L_simple; reverse variances
σ_t² = β_t; the decoder p(x_0 | x_1) is their discretised Gaussian over the 256 levels, so the
test bound L = L_0 + Σ L_{t-1} + L_T bounds the *discrete* negative log-likelihood of the
8-bit digits (no dequantisation: bits/dim = L / (784 ln 2)); one draw of x_t per step and
digit, EMA weights, x̂_0 clipped to [-1, 1] (their code).  Ho et al. use T = 1000 and a U-Net
of 35.7M parameters for 800k steps; ``--net unet`` is that U-Net scaled to 28 x 28
(egm.models.diffusion.EpsUNet), the CPU presets a small MLP ε_θ and few steps (labelled so).
Samples (ancestral, EMA) are quantised to the 256 levels; ``--score_samples 1000`` adds the
driver's Fréchet distance (egm.eval.scores) of that many.

    python experiments/ddpm_mnist.py                          # default: embedded subset, 188 s CPU
    python experiments/ddpm_mnist.py --config tiny            # smoke test, seconds
    python experiments/ddpm_mnist.py --config paper --source idx --data_dir ../shared/data/mnist
"""

from __future__ import annotations

import dataclasses
import functools
import math
from types import SimpleNamespace as DDPMData

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run, train
from egm.models import diffusion as dm
from egm.run import directed as rd
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of

D = 784


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    n_steps: int = field(200, check=at_least(1), help="diffusion steps T (Ho et al.: 1000)")
    schedule: str = field("linear", check=one_of(*dm.SCHEDULES))
    net: str = field("mlp", check=one_of("mlp", "unet"), help="ε_θ: an MLP or a U-Net (EpsUNet)")
    hidden: str = field("1024,1024", check=rd.sizes_ok, help="widths of the MLP ε_θ")
    channels: int = field(32, check=at_least(4), help="U-Net base width (Ho et al.: 128)")
    res_blocks: int = field(1, check=at_least(1), help="U-Net blocks per level (Ho et al.: 2)")
    n_train: int = field(0, check=at_least(0), help="0: the whole split")
    n_test: int = field(500, check=at_least(0), eval_only=True, help="0: every test digit")
    epochs: int = field(120, check=at_least(1))
    batch_size: int = field(128, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    ema_decay: float = field(0.999, check=in_range(0, 1, closed_high=False))
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    workdir: str = field("runs/ddpm_mnist", eval_only=True)


PRESETS = {"default": Config(),
    "tiny": Config(n_steps=8, hidden="32", n_train=256, n_test=32, epochs=1, batch_size=64,
                   n_samples=16, progress=False, workdir="runs/ddpm_mnist_tiny"),
    # Ho et al.'s schedule (T = 1000, linear 1e-4..0.02, Adam 2e-4, batch 128, EMA 0.9999,
    # 800k steps = 1707 epochs of 60k) and U-Net widths (128, 2 blocks; 3 levels at 28 x 28)
    "paper": Config(source="auto", n_steps=1000, net="unet", channels=128, res_blocks=2, n_test=0,
                    epochs=1707, learning_rate=2e-4, ema_decay=0.9999, workdir="runs/ddpm_mnist_paper"),
}  # fmt: skip


def load(cfg: Config) -> DDPMData:
    grey = data.load_grey_mnist(source=cfg.source, data_dir=cfg.data_dir)
    protocol = ("8-bit levels k = round(255 grey) scaled to 2k/255 - 1; discretised Gaussian "
                "decoder over the 256 levels (Ho et al. 2020): a bound on the discrete NLL, "
                "no dequantisation")  # fmt: skip
    train, test = (dm.to_levels(grey.splits[s]) for s in ("train", "test"))
    return DDPMData(train=train[: cfg.n_train or None], test=test[: cfg.n_test or None],
                    splits=grey.splits, source=grey.source, protocol=protocol)  # fmt: skip


net = lambda cfg: dm.EpsUNet(channels=cfg.channels, num_res_blocks=cfg.res_blocks) if cfg.net == "unet" else dm.EpsMLP(rd.sizes(cfg.hidden))  # noqa: E731  # fmt: skip
schedule = lambda cfg: dm.named_schedule(cfg.schedule, cfg.n_steps)  # noqa: E731


def init(cfg: Config, d: DDPMData, key, done):
    x = jnp.asarray(d.train[: cfg.batch_size])
    p = net(cfg).init(key, x, jnp.zeros(len(x), jnp.int32))["params"]
    return dm.init_ema_state(p, train.adam(cfg.learning_rate))


def step(cfg: Config, d: DDPMData, done):
    loss = dm.make_loss(dm.eps_fn_of(net(cfg)), schedule(cfg))
    opt = train.adam(cfg.learning_rate)
    return dm.with_ema(
        train.make_step(train.loss_objective(loss, has_aux=True), opt), cfg.ema_decay
    )


@functools.cache
def _programs(cfg: Config):
    """Jitted: per-example bound terms (nats) and the ancestral sampler (EMA weights)."""
    sched, f = schedule(cfg), dm.eps_fn_of(net(cfg))
    bound = lambda p, x, k: dm.bound_terms(k, f, p, sched, x, decoder="discrete", clip=1.0)  # noqa: E731
    draw = lambda p, k, n: dm.sample(k, f, p, sched, (n, D), clip=1.0)  # noqa: E731
    return jax.jit(bound), jax.jit(draw, static_argnums=2)


def evaluate(cfg: Config, d: DDPMData, done, key) -> dict:
    ema, n = done["train"].aux["ema"], len(d.test)
    terms, prior = dm.bound_terms_in_chunks(_programs(cfg)[0], ema, d.test, key)
    L = terms.sum(1) + prior
    rec = eval.LogLikelihood.from_per_example(
        -L, "variational_bound", bound="lower", dataset=d.source, split="test", unit="nats",
        protocol=d.protocol, counts={"steps": cfg.n_steps, "draws_per_step": 1},
        extras={"L_0_nats": float(terms[:, 0].mean()), "L_T_nats": float(prior.mean()),
                "sum_L_t-1_nats": float(terms[:, 1:].sum(1).mean())})  # fmt: skip
    per_step = terms.mean(0) / (D * math.log(2))
    return {"test_bits_per_dim": rec.in_bits_per_dim(D), "test_loglik_bound": rec,
            "bound_terms_bits_per_dim": {"L_0": float(per_step[0]), "L_T": float(
                prior.mean() / (D * math.log(2))), "sum_L_t-1": float(per_step[1:].sum())},
            "n_train": len(d.train), "n_test": n}  # fmt: skip


def sample(cfg: Config, d: DDPMData, done, key, n: int) -> np.ndarray:
    """``n`` grey digits in [0, 1] (EMA weights), quantised to the 256 levels, in batches."""
    out, ema, b = [], done["train"].aux["ema"], min(n, 500)
    for i in range(0, n, b):
        out.append(dm.from_levels(_programs(cfg)[1](ema, jax.random.fold_in(key, i), b)))
    return np.concatenate(out)[:n]


EXPERIMENT = run.Experiment(
    name="ddpm_mnist", presets=PRESETS, load=load, evaluate=evaluate, sample=sample,
    phases=lambda cfg: [run.Phase("train", init, step, data_check=lambda c, x: dm.check_levels(x))],
    pictures=lambda cfg, d, done, key: {"samples.png": (eval.tile_images(
        sample(cfg, d, done, key, cfg.n_samples), (28, 28)), "DDPM samples (EMA weights)")},
    score_splits=lambda c, d: d.splits,
    describe=lambda cfg: {
        "model": "DDPM, ε-prediction " + (f"U-Net {cfg.channels} x (1, 2, 2) channels, {cfg.res_blocks}"
        " residual blocks per level, attention at 7 x 7 (Ho et al.'s, scaled to 28 x 28)" if cfg.net ==
        "unet" else f"MLP {cfg.hidden} (SiLU, sinusoidal step embedding; a small net for CPU, not Ho"
        " et al.'s U-Net)") + f", T = {cfg.n_steps} (Ho et al.: 1000), {cfg.schedule} schedule, σ_t² = β_t",
        "training": f"L_simple, Adam lr {cfg.learning_rate}, batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, EMA decay {cfg.ema_decay}",
        "evaluation": "test bound in bits/dim (discretised decoder, per-step terms, EMA "
        "weights, one x_t draw per step); samples with EMA weights"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
