"""Generative moment matching networks on grey MNIST, data or code space (§20.10.5).

``paper``: Li et al. 2015's code (yujiali/gmmn, ``mnist_mmd_input_space``): z ~ U[-1, 1]^10,
generator 10-64-256-256-1024-784 ReLU/sigmoid, loss 1000 sqrt(MMD²_b) of 1000 samples vs 1000
digits, kernel variances σ² {2, 5, 10, 20, 40, 80}, SGD lr 2, momentum 0.9 (lr/10, momentum
0.99 after 10,000 updates), 40,000 updates; Parzen 147 ± 2 nats.  ``paper_code``: GMMN+AE
(``mnist_mmd_code_space``): phase ``autoencoder`` 784-1024-32 sigmoid, dropout 0.2 / 0.5 on the
encoder layers' inputs, cross-entropy, SGD lr 0.1, batch 100, 3000 updates (their layer-wise
pretraining left out), then the generator 10-64-256-256-1024-32 on the codes, one kernel σ² = 1,
samples decoded; Parzen 282 ± 2 nats.  ``test_mmd2``: unbiased MMD² of ``eval_size`` (decoded)
samples vs as many test digits, data kernels; ``code_test_mmd2``: on codes, code kernels;
``--decoder_ais_temps K``: Wu et al.'s AIS log-density with p(x|z) = N(g(z), σ²I).

    python experiments/gmmn_mnist.py [--config code|tiny]    # embedded subset; code: GMMN+AE
    python experiments/gmmn_mnist.py --config paper[_code] --data_dir ../shared/data/mnist
"""

from __future__ import annotations

import dataclasses

import numpy as np

from egm import data, eval, run, train
from egm.estimators import mmd
from egm.models import gan
from egm.run import directed as rd
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of

nums = mmd.positive_numbers


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields, rd.DecoderAISFields):
    space: str = field("data", check=one_of("data", "code"), help="code: GMMN+AE")
    latent_dim: int = field(10, check=at_least(1))
    gen_hidden: str = field("64,256,256,1024", help="generator widths (ReLU)")
    kernel_variances: str = field("2,5,10,20,40,80", help="σ² of the data-space kernels")
    code_kernel_variances: str = field("1", help="σ² of the code-space kernels (GMMN+AE)")
    loss_weight: float = field(1000.0, check=greater_than(0))
    optimizer: str = field("sgd", check=one_of("sgd", "adam"), help="sgd: the paper's schedules")
    learning_rate: float = field(2.0, check=greater_than(0), sweep=True)
    momentum: float = field(0.9, check=in_range(0, 1, closed_high=False))
    drop_after: int = field(10000, check=at_least(1), help="updates before lr/10, momentum -> 0.99")
    batch_size: int = field(1000, check=at_least(2), help="samples = digits per MMD")
    epochs: int = field(50, check=at_least(1))
    ae_hidden: str = field("1024,32", help="encoder widths (sigmoid), the last is the code")
    ae_dropout: str = field("0.2,0.5", help="dropout rate of each encoder layer's input")
    ae_learning_rate: float = field(0.1, check=greater_than(0))
    ae_batch_size: int = field(100, check=at_least(1))
    ae_epochs: int = field(5, check=at_least(1), help="5 x 600 = Li et al.'s 3000 updates")
    eval_size: int = field(1000, check=at_least(2), eval_only=True, help="samples for test_mmd2")
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    workdir: str = field("runs/gmmn_mnist", eval_only=True)

    def check(self) -> None:
        super().check(), rd.DecoderAISFields.check(self)
        nums(self.gen_hidden, int), mmd.check_bandwidths(self.bandwidths), self.autoencoder

    @property
    def bandwidths(self) -> tuple[float, ...]:  # of the training loss
        v = self.kernel_variances if self.space == "data" else self.code_kernel_variances
        return tuple(float(np.sqrt(s)) for s in nums(v))

    @property
    def autoencoder(self) -> mmd.Autoencoder:
        rates = tuple(float(r) for r in self.ae_dropout.split(","))
        return mmd.Autoencoder(784, nums(self.ae_hidden, int), rates).check()


_ADAM = dict(optimizer="adam", learning_rate=1e-3, batch_size=200, ae_learning_rate=1e-3)
PRESETS = {
    # Li et al.'s SGD (lr 2) stays flat for 1200 updates, Adam does not (BUILD_NOTES.md, "GMMN")
    "default": Config(**_ADAM, epochs=60),
    "code": Config(**_ADAM, space="code", epochs=60, ae_epochs=20, workdir="runs/gmmn_mnist_code"),
    "tiny": Config(**_ADAM, latent_dim=4, gen_hidden="16", epochs=2, eval_size=100,
                   n_samples=16, progress=False, workdir="runs/gmmn_mnist_tiny"),
    "paper": Config(source="auto", epochs=800, workdir="runs/gmmn_mnist_paper"),
    "paper_code": Config(source="auto", space="code", epochs=800, workdir="runs/gmmn_mnist_paper_code"),
}  # fmt: skip


def generator(cfg: Config) -> gan.MLPGenerator:
    return gan.MLPGenerator(cfg.latent_dim, nums(cfg.gen_hidden, int), 784 if cfg.space == "data"
                            else cfg.autoencoder.code_dim, "relu", "sigmoid", "uniform", 0.0).check()  # fmt: skip


def optimizer(cfg: Config, ae: bool = False):  # Li et al.'s SGD or Adam
    if cfg.optimizer == "adam":
        return train.adam(cfg.ae_learning_rate if ae else cfg.learning_rate)
    return mmd.li2015_ae_sgd(cfg.ae_learning_rate) if ae else mmd.li2015_sgd(
        cfg.learning_rate, cfg.momentum, cfg.drop_after)  # fmt: skip


codes = lambda cfg, done, x: mmd.encode(cfg.autoencoder, done["autoencoder"].params, x)
gmmn_loss = lambda cfg, g: lambda p, batch, key: cfg.loss_weight * mmd.gmmn_loss(
    gan.sample(key, g, p, len(batch)), batch, cfg.bandwidths)  # fmt: skip
UNIT = lambda cfg, x: data.check_unit_interval(x, "training data")
GMMN = run.Phase(
    "train", lambda cfg, d, key, done: train.init_state(gan.init_generator(key, generator(cfg)),
                                                        optimizer(cfg)),
    lambda cfg, d, done: train.make_step(train.loss_objective(gmmn_loss(cfg, generator(cfg))),
                                         optimizer(cfg)),
    data_check=UNIT, train_data=lambda cfg, d, done: d.train if cfg.space == "data" else
    np.asarray(codes(cfg, done, d.train)),
)  # fmt: skip
AUTOENCODER = run.Phase(
    "autoencoder", lambda cfg, d, key, done: train.init_state(
        mmd.init_autoencoder(key, cfg.autoencoder), optimizer(cfg, ae=True)),
    lambda cfg, d, done: train.make_step(train.loss_objective(mmd.autoencoder_loss(
        cfg.autoencoder)), optimizer(cfg, ae=True)),
    epochs=lambda c: c.ae_epochs, batch_size=lambda c: c.ae_batch_size, data_check=UNIT,
)  # fmt: skip


def draw(cfg: Config, done, key, n: int):  # (codes or digits, digits)
    h = gan.sample(key, generator(cfg), done["train"].params, n)
    return h, h if cfg.space == "data" else mmd.decode(done["autoencoder"].params, h)


def evaluate(cfg: Config, d, done, key) -> dict:
    (h, x), test = draw(cfg, done, key, cfg.eval_size), d.splits["test"]
    ae = () if cfg.space == "data" else (mmd.decode, done["autoencoder"].params)
    code = ae and mmd.code_space_report(cfg.autoencoder, ae[1], h, test, d.train, cfg.bandwidths)
    g = gan.latent_fn(generator(cfg), done["train"].params, *ae)  # digits, for decoder AIS
    return {**mmd.mmd2_with_floor(x, test, d.train, tuple(np.sqrt(nums(cfg.kernel_variances)))),
            **(code or {}), **rd.generator_ais(cfg, d, g, cfg.latent_dim, key),
            "n_train": len(d.train), "updates": cfg.epochs * (len(d.train) // cfg.batch_size)}  # fmt: skip


def describe(cfg: Config) -> dict:
    ae = f"autoencoder 784-{cfg.ae_hidden}, dropout {cfg.ae_dropout}; " * (cfg.space == "code")
    return {"model": f"{ae}GMMN {cfg.latent_dim}-{cfg.gen_hidden}-{generator(cfg).out_dim}, z ~ "
            f"U[-1, 1], {cfg.space} space; {cfg.optimizer} lr {cfg.learning_rate}"}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="gmmn_mnist", presets=PRESETS, evaluate=evaluate, describe=describe,
    load=lambda cfg: data.load_grey_mnist(source=cfg.source, data_dir=cfg.data_dir),
    phases=lambda c: [GMMN] if c.space == "data" else [AUTOENCODER, GMMN],
    pictures=lambda cfg, d, done, key: {"samples.png": (eval.tile_images(np.asarray(draw(
        cfg, done, key, cfg.n_samples)[1]), (28, 28)), f"GMMN samples, {cfg.space} space")},
    sample=lambda cfg, d, done, key, n: draw(cfg, done, key, n)[1],
    score_splits=lambda c, d: d.splits,
    published=lambda c: {"parzen_test": "gmmn_parzen" if c.space == "data" else "gmmn_ae_parzen"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
