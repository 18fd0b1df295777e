"""Generative moment matching networks on 2-D densities with known densities (§20.10.5).

A generator g(z), z ~ U[-1, 1]^latent, MLP with ReLU units and a linear output, trained by
Li et al. (2015)'s loss sqrt(MMD²_b) between a minibatch of samples and one of data (a mixture
of Gaussian kernels, egm.estimators.mmd) on the ring of 8 Gaussians, the concentric rings and
the checkerboard of egm.data.toy (the densities of flow_2d), a phase per density, Adam.  An
implicit model has no density to evaluate: ``<density>_test_mmd2`` is the unbiased MMD² of
``n_test`` samples vs as many fresh test draws, beside ``<density>_test_mmd2_floor``, the same
statistic for as many training draws (what a perfect model would reach); on the ring, the
mode coverage of gan_2d.  ``densities.png``:
a row per density; columns: the true density, a histogram of the GMMN's samples.

    python experiments/gmmn_2d.py                    # default: 3 densities
    python experiments/gmmn_2d.py --config tiny      # smoke test, seconds
    python experiments/gmmn_2d.py --datasets rings --sweep seed=0:4
"""

from __future__ import annotations

import dataclasses

import numpy as np

from egm import run, train
from egm.estimators import mmd
from egm.models import gan
from egm.run import toy2d
from egm.run.config import at_least, field, greater_than


def _check_numbers(kind):
    def check(v):
        mmd.positive_numbers(v, kind)

    return check


@dataclasses.dataclass(frozen=True)
class Config(toy2d.Toy2DFields):
    latent_dim: int = field(4, check=at_least(1))
    hidden: str = field("128,128", check=_check_numbers(int), help="generator widths (ReLU)")
    bandwidths: str = field("0.05,0.1,0.2,0.5,1", check=_check_numbers(float),
                            help="σ of the Gaussian kernels")  # fmt: skip
    n_test: int = field(2000, check=at_least(2), eval_only=True)
    epochs: int = field(30, check=at_least(1))
    batch_size: int = field(500, check=at_least(2), help="samples = data points per MMD")
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    workdir: str = field("runs/gmmn_2d", eval_only=True)


PRESETS = {"default": Config(),
    "tiny": Config(datasets="checkerboard", hidden="16", n_train=2000, n_test=300, epochs=2,
                   batch_size=200, grid=24, progress=False, workdir="runs/gmmn_2d_tiny"),
}  # fmt: skip


def generator(cfg: Config) -> gan.MLPGenerator:
    return gan.MLPGenerator(cfg.latent_dim, mmd.positive_numbers(cfg.hidden, int), 2, "relu",
                            "linear", "uniform", 0.0).check()  # fmt: skip


def phase(ds: str) -> run.Phase:
    def init(cfg, d, key, done):
        return train.init_state(gan.init_generator(key, generator(cfg)),
                                train.adam(cfg.learning_rate))  # fmt: skip

    def step(cfg, d, done):
        g, bw = generator(cfg), mmd.positive_numbers(cfg.bandwidths)
        loss = lambda p, x, key: mmd.gmmn_loss(gan.sample(key, g, p, len(x)), x, bw)
        return train.make_step(train.loss_objective(loss), train.adam(cfg.learning_rate))

    return run.Phase(ds, init, step, train_data=lambda cfg, d, done: d[ds][0])


def _samples(cfg: Config, done, key, ds: str, n: int) -> np.ndarray:
    return np.asarray(gan.sample(key, generator(cfg), done[ds].params, n))


evaluate, pictures = toy2d.implicit_hooks(_samples, "GMMN")


EXPERIMENT = run.Experiment(
    name="gmmn_2d", presets=PRESETS, load=toy2d.load, evaluate=evaluate, pictures=pictures,
    phases=lambda cfg: [phase(ds) for ds in toy2d.names(cfg.datasets)],
    describe=lambda cfg: {
        "model": f"GMMN {cfg.latent_dim}-{cfg.hidden}-2, z ~ U[-1, 1], ReLU, linear output",
        "training": f"sqrt(MMD²_b) with σ in {{{cfg.bandwidths}}}, Adam lr {cfg.learning_rate}, "
        f"batch {cfg.batch_size}, {cfg.epochs} epochs of {cfg.n_train} fixed draws",
        "evaluation": "unbiased test MMD² of samples vs fresh draws, beside training draws"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
