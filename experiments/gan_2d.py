"""A GAN on 2-D densities with known densities (§20.10.4): mode collapse where it can be seen.

Generator g(z), z ~ N(0, I_latent), an MLP with ReLU units and a linear output; a maxout
discriminator (no dropout: two inputs); the non-saturating (or minimax) loss, k discriminator
updates per generator update as one multi-player step (egm.models.gan), Adam; a phase per
density of egm.data.toy (the ring of 8 Gaussians, the concentric rings, the checkerboard: the
densities of flow_2d and gmmn_2d).  An implicit model has no density to evaluate:
``<density>_test_mmd2`` is the unbiased MMD² of ``n_test`` samples vs as many fresh test draws,
beside ``<density>_test_mmd2_floor`` (training draws: what a perfect model would reach); on
the ring, ``gaussian_mixture_modes_covered`` (of 8), ``..._high_quality_fraction`` (samples
within 3 sd of a mode) and ``..._mode_weight_tv`` (egm.data.toy.ring_mode_coverage), the
figures by which VEEGAN and unrolled GANs report mode collapse.  ``densities.png``: a row per
density; columns: the true density, a histogram of the GAN's samples.

    python experiments/gan_2d.py                    # default: 3 densities
    python experiments/gan_2d.py --config tiny      # smoke test, seconds
    python experiments/gan_2d.py --datasets gaussian_mixture --sweep seed=0:8   # collapse by seed
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from egm import run, train
from egm.estimators import mmd
from egm.models import gan
from egm.run import toy2d
from egm.run.config import at_least, field, greater_than, in_range, one_of

_nums = mmd.positive_numbers


def _ints_ok(v: str) -> None:
    _nums(v, int)  # raises a ConfigError that says what is wrong


@dataclasses.dataclass(frozen=True)
class Config(toy2d.Toy2DFields):
    latent_dim: int = field(2, check=at_least(1))
    gen_hidden: str = field("128,128", check=_ints_ok, help="generator widths (ReLU)")
    disc_units: str = field("64,64", check=_ints_ok, help="maxout units per layer")
    pieces: int = field(3, check=at_least(1))
    loss: str = field("non_saturating", check=one_of(*gan.GENERATOR_LOSSES))
    k: int = field(1, check=at_least(1), help="discriminator updates per generator update")
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    adam_b1: float = field(0.5, check=in_range(0, 1, closed_high=False), sweep=True)
    batch_size: int = field(256, check=at_least(2), help="m: examples per discriminator update")
    epochs: int = field(30, check=at_least(1))
    n_test: int = field(2500, check=at_least(2), eval_only=True)
    bandwidths: str = field("0.05,0.1,0.2,0.5,1", eval_only=True, help="σ of the MMD kernels")
    workdir: str = field("runs/gan_2d", eval_only=True)


PRESETS = {"default": Config(),
    "tiny": Config(datasets="gaussian_mixture", gen_hidden="16", disc_units="8", n_train=2000,
                   n_test=300, epochs=2, grid=24, progress=False, workdir="runs/gan_2d_tiny"),
}  # fmt: skip


def nets(cfg: Config):
    g = gan.MLPGenerator(cfg.latent_dim, _nums(cfg.gen_hidden, int), 2, "relu", "linear",
                         "gaussian", 0.0).check()  # fmt: skip
    d = gan.MaxoutDiscriminator(_nums(cfg.disc_units, int), cfg.pieces, input_keep=1.0,
                                hidden_keep=1.0).check()  # fmt: skip
    return g, d


def players(cfg: Config):
    opt = lambda: train.adam(cfg.learning_rate, cfg.adam_b1, 0.999)  # noqa: E731
    return gan.gan_players(*nets(cfg), opt(), opt(), k=cfg.k, loss=cfg.loss)


def phase(ds: str) -> run.Phase:
    def init(cfg, d, key, done):
        (g, disc), (kg, kd) = nets(cfg), jax.random.split(key)
        params = {"gen": gan.init_generator(kg, g), "disc": gan.init_discriminator(kd, disc, 2)}
        return train.init_multi_state(params, players(cfg))

    return run.Phase(ds, init, lambda cfg, d, done: train.make_multi_step(players(cfg)),
                     batch_size=lambda cfg: cfg.k * cfg.batch_size,
                     train_data=lambda cfg, d, done: d[ds][0])  # fmt: skip


def _samples(cfg: Config, done, key, ds: str, n: int) -> np.ndarray:
    return np.asarray(gan.sample(key, nets(cfg)[0], done[ds].params["gen"], n))


evaluate, pictures = toy2d.implicit_hooks(_samples, "GAN")


EXPERIMENT = run.Experiment(
    name="gan_2d", presets=PRESETS, load=toy2d.load, evaluate=evaluate, pictures=pictures,
    phases=lambda cfg: [phase(ds) for ds in toy2d.names(cfg.datasets)],
    describe=lambda cfg: {
        "model": f"GAN {cfg.latent_dim}-{cfg.gen_hidden}-2 (ReLU, linear output), maxout "
        f"discriminator {cfg.disc_units} x {cfg.pieces}",
        "training": f"{cfg.loss} loss, k={cfg.k}, Adam lr {cfg.learning_rate} b1 {cfg.adam_b1}, "
        f"m={cfg.batch_size}, {cfg.epochs} epochs of {cfg.n_train} fixed draws",
        "evaluation": "unbiased test MMD² of samples vs fresh draws, beside training draws; "
        "modes covered on the ring"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
