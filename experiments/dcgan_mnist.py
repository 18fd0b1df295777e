"""DCGAN on grey MNIST 28 x 28 (Radford et al. 2015; §20.10.4, §20.10.6): egm.models.dcgan.

    python experiments/dcgan_mnist.py                  # default: embedded subset, f=16
    python experiments/dcgan_mnist.py --config tiny    # smoke test, seconds
    python experiments/dcgan_mnist.py --config sweep --sweep seed=0:8 --score_samples 1000
    python experiments/dcgan_mnist.py --config paper --data_dir ../shared/data/mnist

``paper``: the paper's rules, Adam (2e-4, b1 0.5) and batch 128, the PyTorch example's widths
(f = 64) and 25 epochs (the paper trains no MNIST model).  ``--upsample unpool``: G up-samples
by un-pooling + 5 x 5 convolution.  ``discriminator_won``: collapse (mean d > 0.99 on test
digits, < 0.01 on samples).  Pictures: samples, latent interpolations, Fig. 7's arithmetic.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run, train
from egm.estimators import mmd
from egm.eval import features
from egm.models import dcgan, gan
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of


def _three_classes(v: str) -> str | None:
    c = v.split(",")
    ok = len(c) == 3 and all(x.isdigit() and int(x) < 10 for x in c)
    return None if ok else "must be three digit classes a,b,c, e.g. 7,1,4"


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    latent_dim: int = field(100, check=at_least(1))
    features: int = field(64, check=at_least(1), help="channels f of G's last / D's first layer")
    upsample: str = field("transpose", check=one_of("transpose", "unpool"))
    conv_impl: str = field("matmul", check=one_of("matmul", "xla"), help="same function; see dcgan")
    loss: str = field("non_saturating", check=one_of(*gan.GENERATOR_LOSSES))
    learning_rate: float = field(2e-4, check=greater_than(0), sweep=True)
    adam_b1: float = field(0.5, check=in_range(0, 1, closed_high=False), sweep=True)
    batch_size: int = field(128, check=at_least(2))
    n_train: int = field(0, check=at_least(0), help="first n training digits (0: all)")
    epochs: int = field(25, check=at_least(1))
    eval_size: int = field(1000, check=at_least(2), eval_only=True, help="samples for test_mmd2")
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    arithmetic: str = field("7,1,4", eval_only=True, check=_three_classes,
                            help="classes a,b,c of z(a) - z(b) + z(c)")  # fmt: skip
    workdir: str = field("runs/dcgan_mnist", eval_only=True)


PRESETS = {
    "default": Config(features=16, epochs=10),
    # what 8 seeds in one call fit in ~5 min of this shared 2-core CPU (48 updates each)
    "sweep": Config(features=8, n_train=2048, epochs=3, workdir="runs/dcgan_mnist_sweep"),
    "tiny": Config(latent_dim=8, features=4, batch_size=32, n_train=256, epochs=2, eval_size=100,
                   n_samples=16, conv_impl="xla", progress=False, workdir="runs/dcgan_mnist_tiny"),
    "paper": Config(source="auto", workdir="runs/dcgan_mnist_paper"),
}  # fmt: skip


def load(cfg: Config) -> data.GreyMNIST:
    d = data.load_grey_mnist(source=cfg.source, data_dir=cfg.data_dir)
    return d._replace(train=d.train[: cfg.n_train]) if cfg.n_train else d


def nets(cfg: Config):
    g = dcgan.ConvGenerator(cfg.latent_dim, cfg.features, 28, cfg.upsample,
                            conv_impl=cfg.conv_impl).check()  # fmt: skip
    return g, dcgan.ConvDiscriminator(cfg.features, 28, conv_impl=cfg.conv_impl).check()


def players(cfg: Config):
    opt = lambda: train.adam(cfg.learning_rate, cfg.adam_b1, 0.999)  # noqa: E731
    return dcgan.dcgan_players(*nets(cfg), opt(), opt(), loss=cfg.loss)


def init(cfg: Config, d, key, done):
    params, stats = dcgan.init_dcgan(key, *nets(cfg))
    pl = players(cfg)  # one jitted init: optax's eager init would compile op by op
    return jax.jit(lambda p, s: train.init_multi_state(p, pl, aux=s))(params, stats)  # stats in aux


PHASE = run.Phase(
    "train", init, lambda cfg, d, done: train.make_multi_step(players(cfg)),
    data_check=lambda cfg, x: data.check_unit_interval(x, "training data"),
)  # fmt: skip


def _gen(cfg, done, z):
    return dcgan.generate(nets(cfg)[0], done["train"].params["gen"], done["train"].aux["gen"], z)


def sample(cfg: Config, d, done, key, n: int):
    s = done["train"]
    return dcgan.sample(key, nets(cfg)[0], s.params["gen"], s.aux["gen"], n)


def evaluate(cfg: Config, d, done, key) -> dict:
    s, n = done["train"], cfg.eval_size
    x, test = sample(cfg, d, done, key, n), jnp.asarray(d.splits["test"][:n])
    disc = nets(cfg)[1]
    d_real, d_fake = (
        jax.nn.sigmoid(dcgan.discriminator_logits(disc, s.params["disc"], s.aux["disc"], a))
        for a in (test, x)
    )
    return {
        **mmd.mmd2_with_floor(x, test, d.train),
        "d_on_test": float(jnp.mean(d_real)), "d_on_samples": float(jnp.mean(d_fake)),
        "discriminator_won": bool(jnp.mean(d_real) > 0.99 and jnp.mean(d_fake) < 0.01),
        "n_train": len(d.train),
    }  # fmt: skip


def pictures(cfg: Config, d, done, key) -> dict:
    k_s, k_i, k_a, k_n = jax.random.split(key, 4)
    g = nets(cfg)[0]
    tile = lambda x, cols: eval.tile_images(np.asarray(x), (28, 28), cols)  # noqa: E731
    z_path = gan.interpolation_path(g.noise(k_i, 8), g.noise(jax.random.fold_in(k_i, 1), 8), 10)
    z = g.noise(k_a, 512)  # Fig. 7, classes picked by egm's feature net
    probs = features.class_probs(np.asarray(_gen(cfg, done, z)))
    z_fig = gan.arithmetic_latents(k_n, z, probs, tuple(int(c) for c in cfg.arithmetic.split(",")))
    a, b, c = cfg.arithmetic.split(",")
    return {
        "samples.png": (tile(sample(cfg, d, done, k_s, cfg.n_samples), None), "DCGAN samples g(z)"),
        "interpolation.png": (tile(_gen(cfg, done, z_path), 10), "g((1-t) z0 + t z1), t in [0, 1]"),
        "arithmetic.png": (tile(_gen(cfg, done, z_fig), 4),
                           f"rows: 3 samples classed {a}, {b}, {c} and g(mean z); last: "
                           f"z({a}) - z({b}) + z({c}) (+ noise ±0.25, then alone)"),
    }  # fmt: skip


def describe(cfg: Config) -> dict:
    up = "transposed convolutions" if cfg.upsample == "transpose" else "un-pooling + 5x5 conv"
    return {"model": f"DCGAN z={cfg.latent_dim}, f={cfg.features}, G by {up}, batch norm; "
            f"{cfg.loss} loss; Adam lr {cfg.learning_rate:g} b1 {cfg.adam_b1:g}, "
            f"m={cfg.batch_size}, {cfg.epochs} epochs"}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="dcgan_mnist", presets=PRESETS, load=load, phases=lambda cfg: [PHASE],
    evaluate=evaluate, pictures=pictures, sample=sample, describe=describe,
    score_splits=lambda c, d: d.splits, sweep_members="map",  # convolutions batch poorly under vmap
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
