"""LAPGAN on grey MNIST, 28 -> 14 -> 7 (Denton et al. 2015; §20.10.4): egm.models.lapgan.

    python experiments/lapgan_mnist.py                  # default: embedded subset
    python experiments/lapgan_mnist.py --config tiny    # smoke test, seconds
    python experiments/lapgan_mnist.py --sweep seed=0:8 --score_samples 1000   # FD over 8 seeds
    python experiments/lapgan_mnist.py --config paper --data_dir ../shared/data/mnist

A GAN of the 7 x 7 level and a conditional GAN of the residual at 14 and 28 given the
up-sampled coarser image; all levels in one jitted multi-player step (they train
independently, so one program and one data pass serve all).  ``paper`` (full MNIST): the
noise (100), loss and dense-net sizes of Goodfellow et al.'s MNIST GAN at every level, about
the size of Denton et al.'s fully connected coarsest level (recalled); theirs, not ours: no
MNIST model (CIFAR-10 / STL / LSUN), conv nets above the coarsest level, a Gaussian pyramid,
SGD; ours: dense nets at every level, a 2 x 2 mean pyramid, Adam, 25 epochs (a guess).
``discriminator_won``: a level collapsed (mean d > 0.99 on test pairs, < 0.01 on the samples'
pyramid).  Pictures: samples, coarse-to-fine sequences.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run, train
from egm.errors import ConfigError
from egm.estimators import mmd
from egm.models import gan, lapgan
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of


def _widths(s: str) -> tuple[int, ...]:
    return tuple(int(w) for w in s.split(","))


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    levels: int = field(2, check=at_least(0), help="halvings: 2 is 28 -> 14 -> 7")
    latent_dim: int = field(100, check=at_least(1))
    gen_hidden: str = field("1200,1200", help="generator widths (ReLU), every level")
    disc_units: str = field("240,240", help="maxout units per discriminator layer")
    pieces: int = field(5, check=at_least(1))
    input_keep: float = field(0.8, check=in_range(0, 1, closed_low=False), help="D's dropout")
    hidden_keep: float = field(0.5, check=in_range(0, 1, closed_low=False))
    loss: str = field("non_saturating", check=one_of(*gan.GENERATOR_LOSSES))
    learning_rate: float = field(2e-4, check=greater_than(0), sweep=True)
    adam_b1: float = field(0.5, check=in_range(0, 1, closed_high=False), sweep=True)
    batch_size: int = field(100, check=at_least(2))
    n_train: int = field(0, check=at_least(0), help="first n training digits (0: all)")
    epochs: int = field(25, check=at_least(1))
    eval_size: int = field(1000, check=at_least(2), eval_only=True, help="samples for test_mmd2")
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    workdir: str = field("runs/lapgan_mnist", eval_only=True)

    def check(self) -> None:
        super().check()
        if not all(w.isdigit() and int(w) > 0
                   for w in f"{self.gen_hidden},{self.disc_units}".split(",")):  # fmt: skip
            raise ConfigError(f"widths must be positive integers: {self.gen_hidden!r}, "
                              f"{self.disc_units!r}")  # fmt: skip
        model(self)


PRESETS = {
    "default": Config(gen_hidden="256,256", disc_units="64,64", pieces=3, learning_rate=1e-3,
                      epochs=40),
    "tiny": Config(latent_dim=8, gen_hidden="32", disc_units="16", pieces=2, learning_rate=1e-3,
                   n_train=512, epochs=2, eval_size=100, n_samples=16, progress=False,
                   workdir="runs/lapgan_mnist_tiny"),
    "paper": Config(source="auto", workdir="runs/lapgan_mnist_paper"),
}  # fmt: skip


def load(cfg: Config) -> data.GreyMNIST:
    d = data.load_grey_mnist(source=cfg.source, data_dir=cfg.data_dir)
    return d._replace(train=d.train[: cfg.n_train]) if cfg.n_train else d


def model(cfg: Config) -> lapgan.LapGAN:
    return lapgan.LapGAN(28, cfg.levels, cfg.latent_dim, _widths(cfg.gen_hidden),
                         _widths(cfg.disc_units), cfg.pieces, cfg.input_keep,
                         cfg.hidden_keep).check()  # fmt: skip


def players(cfg: Config):
    opt = lambda: train.adam(cfg.learning_rate, cfg.adam_b1, 0.999)  # noqa: E731
    return lapgan.lapgan_players(model(cfg), opt(), opt(), loss=cfg.loss)


def init(cfg: Config, d, key, done):
    m = model(cfg)
    coarse, _ = lapgan.laplacian_pyramid(jnp.asarray(d.train).reshape(-1, 28, 28), cfg.levels)
    params = lapgan.init_lapgan(key, m, coarse.reshape(len(coarse), -1).mean(0))
    pl = players(cfg)  # one jitted init: optax's eager init would compile op by op
    return jax.jit(lambda p: train.init_multi_state(p, pl))(params)


PHASE = run.Phase(
    "train", init, lambda cfg, d, done: train.make_multi_step(players(cfg)),
    data_check=lambda cfg, x: data.check_unit_interval(x, "training data"),
)  # fmt: skip


def sample(cfg: Config, d, done, key, n: int):
    return lapgan.sample(key, model(cfg), done["train"].params, n)


def evaluate(cfg: Config, d, done, key) -> dict:
    p, n, m = done["train"].params, cfg.eval_size, model(cfg)
    x, test = sample(cfg, d, done, key, n), jnp.asarray(d.splits["test"][:n])
    out = {**mmd.mmd2_with_floor(x, test, d.train), "n_train": len(d.train)}
    d_test, d_samples = lapgan.level_scores(m, p, test, x)  # D of the samples' pyramids
    for k in range(cfg.levels + 1):
        out[f"d{k}_on_test"], out[f"d{k}_on_samples"] = float(d_test[k]), float(d_samples[k])
    won = [float(d_test[k]) > 0.99 and float(d_samples[k]) < 0.01 for k in range(cfg.levels + 1)]
    return {**out, "discriminator_won": any(won)}


def pictures(cfg: Config, d, done, key) -> dict:
    seq = lapgan.coarse_to_fine(model(cfg), done["train"].params, key, cfg.n_samples)
    big = [
        np.repeat(np.repeat(np.asarray(a), 28 // a.shape[1], 1), 28 // a.shape[1], 2) for a in seq
    ]
    rows = np.stack(big, axis=1)[:8].reshape(-1, 784)  # a row per sample: coarsest ... finest
    x = big[-1].reshape(-1, 784)
    return {
        "samples.png": (eval.tile_images(x, (28, 28)), "LAPGAN samples (coarse to fine)"),
        "coarse_to_fine.png": (eval.tile_images(rows, (28, 28), len(seq)),
                               "coarse to fine: I_K ... I_0"),
    }  # fmt: skip


def describe(cfg: Config) -> dict:
    sides = " -> ".join(str(28 // 2**k) for k in range(cfg.levels + 1))
    return {"model": f"LAPGAN {sides}, z={cfg.latent_dim}, G {cfg.gen_hidden} (ReLU), maxout D "
            f"{cfg.disc_units} x {cfg.pieces} per level; {cfg.loss} loss; Adam lr "
            f"{cfg.learning_rate:g} b1 {cfg.adam_b1:g}, m={cfg.batch_size}, {cfg.epochs} epochs"}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="lapgan_mnist", presets=PRESETS, load=load, phases=lambda cfg: [PHASE],
    evaluate=evaluate, pictures=pictures, sample=sample, describe=describe,
    score_splits=lambda c, d: d.splits,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
