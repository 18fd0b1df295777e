"""A GAN on grey MNIST (Goodfellow et al. 2014, §20.10.4); ``paper``: their setting as their
code states it (egm.models.gan), ``default``: smaller nets and Adam on the embedded subset.

    python experiments/gan_mnist.py                     # default: embedded subset, ~1 min
    python experiments/gan_mnist.py --config tiny       # smoke test, seconds
    python experiments/gan_mnist.py --sweep seed=0:8 --score_samples 1000   # FD over 8 seeds
    python experiments/gan_mnist.py --config paper --data_dir ../shared/data/mnist

``--score_samples N`` adds the driver's sample scores (Fréchet distance, Parzen vs the
published 225 ± 2 nats...; mean ± sd over a sweep).  ``test_mmd2``: unbiased MMD² of
``eval_size`` samples vs as many test digits, beside ``test_mmd2_floor`` (training digits);
``discriminator_won``: collapse (mean d > 0.99 on test digits, < 0.01 on samples).
``--decoder_ais_temps K``: Wu et al.'s AIS log-density with p(x|z) = N(g(z), σ²I), σ on valid.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run, train
from egm.errors import ConfigError
from egm.estimators import mmd
from egm.models import gan
from egm.run import directed as rd
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of


def _widths(s: str) -> tuple[int, ...]:
    return tuple(int(w) for w in s.split(","))


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields, rd.DecoderAISFields):
    latent_dim: int = field(100, check=at_least(1))
    gen_hidden: str = field("1200,1200", help="generator widths (ReLU)")
    disc_units: str = field("240,240", help="maxout units per discriminator layer")
    pieces: int = field(5, check=at_least(1))
    input_keep: float = field(0.8, check=in_range(0, 1, closed_low=False))
    hidden_keep: float = field(0.5, check=in_range(0, 1, closed_low=False))
    loss: str = field("non_saturating", check=one_of(*gan.GENERATOR_LOSSES))
    k: int = field(1, check=at_least(1), help="discriminator updates per generator update")
    optimizer: str = field("sgd", check=one_of("sgd", "adam"), help="sgd: the paper's schedule")
    learning_rate: float = field(0.1, check=greater_than(0), sweep=True)
    adam_b1: float = field(0.5, check=in_range(0, 1, closed_high=False), sweep=True)
    batch_size: int = field(100, check=at_least(1), help="m: examples per discriminator update")
    epochs: int = field(20, check=at_least(1))
    eval_size: int = field(1000, check=at_least(2), eval_only=True, help="samples for test_mmd2")
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    workdir: str = field("runs/gan_mnist", eval_only=True)

    def check(self) -> None:
        super().check(), rd.DecoderAISFields.check(self)
        if not all(
            w.isdigit() and int(w) > 0 for w in f"{self.gen_hidden},{self.disc_units}".split(",")
        ):
            raise ConfigError(
                f"layer widths must be positive integers, got {self.gen_hidden!r}, {self.disc_units!r}"
            )


PRESETS = {
    "default": Config(gen_hidden="256,256", disc_units="64,64", pieces=3, optimizer="adam",
                      learning_rate=1e-3, epochs=40),
    "tiny": Config(latent_dim=8, gen_hidden="32", disc_units="16", pieces=2, optimizer="adam",
                   learning_rate=1e-3, epochs=2, eval_size=100, n_samples=16, progress=False,
                   workdir="runs/gan_mnist_tiny"),
    # the paper's nets, loss, optimiser, 50,000 digits; the yaml sets no end: momentum saturates at 250
    "paper": Config(source="auto", epochs=250, workdir="runs/gan_mnist_paper"),
}  # fmt: skip


def load(cfg: Config) -> data.GreyMNIST:
    return data.load_grey_mnist(source=cfg.source, data_dir=cfg.data_dir)


def nets(cfg: Config):
    g = gan.MLPGenerator(cfg.latent_dim, _widths(cfg.gen_hidden), 784).check()
    d = gan.MaxoutDiscriminator(_widths(cfg.disc_units), cfg.pieces, input_keep=cfg.input_keep,
                                hidden_keep=cfg.hidden_keep).check()  # fmt: skip
    return g, d


def players(cfg: Config, n_train: int):
    def opt():
        if cfg.optimizer == "adam":
            return train.adam(cfg.learning_rate, cfg.adam_b1, 0.999)
        return gan.goodfellow_sgd(cfg.learning_rate, n_train // (cfg.k * cfg.batch_size))

    return gan.gan_players(*nets(cfg), opt(), opt(), k=cfg.k, loss=cfg.loss)


def init(cfg: Config, d, key, done):
    (g, disc), (kg, kd) = nets(cfg), jax.random.split(key)
    params = {"gen": gan.init_generator(kg, g, d.train.mean(0)),
              "disc": gan.init_discriminator(kd, disc)}  # fmt: skip
    return train.init_multi_state(params, players(cfg, len(d.train)))


PHASE = run.Phase(
    "train", init, lambda cfg, d, done: train.make_multi_step(players(cfg, len(d.train))),
    batch_size=lambda cfg: cfg.k * cfg.batch_size,
    data_check=lambda cfg, x: data.check_unit_interval(x, "training data"),
)  # fmt: skip


def sample(cfg: Config, d, done, key, n: int):
    return gan.sample(key, nets(cfg)[0], done["train"].params["gen"], n)


def evaluate(cfg: Config, d, done, key) -> dict:
    p, n = done["train"].params, cfg.eval_size
    x, test = sample(cfg, d, done, key, n), jnp.asarray(d.splits["test"][:n])
    disc = nets(cfg)[1]
    d_real, d_fake = (jax.nn.sigmoid(disc.apply({"params": p["disc"]}, a)) for a in (test, x))
    won = bool(jnp.mean(d_real) > 0.99 and jnp.mean(d_fake) < 0.01)
    g = gan.latent_fn(nets(cfg)[0], p["gen"])
    return {**rd.generator_ais(cfg, d, g, cfg.latent_dim, key),
        **mmd.mmd2_with_floor(x, test, d.train),
        "d_on_test": float(jnp.mean(d_real)), "d_on_samples": float(jnp.mean(d_fake)),
        "discriminator_won": won, "n_train": len(d.train),
    }  # fmt: skip


def pictures(cfg: Config, d, done, key) -> dict:
    x = np.asarray(sample(cfg, d, done, key, cfg.n_samples))
    return {"samples.png": (eval.tile_images(x, (28, 28)), f"GAN samples g(z), {cfg.loss} loss")}


def describe(cfg: Config) -> dict:
    opt = f"Adam (b1 {cfg.adam_b1:g})" if cfg.optimizer == "adam" else "Goodfellow et al.'s SGD"
    return {"model": f"GAN {cfg.latent_dim}-{cfg.gen_hidden}-784, maxout discriminator "
            f"{cfg.disc_units} x {cfg.pieces}; {cfg.loss} loss; {opt}, lr {cfg.learning_rate}, "
            f"k={cfg.k}, m={cfg.batch_size}, {cfg.epochs} epochs"}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="gan_mnist", presets=PRESETS, load=load, phases=lambda cfg: [PHASE],
    evaluate=evaluate, pictures=pictures, sample=sample, describe=describe,
    score_splits=lambda c, d: d.splits,
    published=lambda c: {"parzen_test": "gan_parzen"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
