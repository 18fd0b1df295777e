"""Categorical VAE on binarized MNIST: Gumbel-Softmax vs straight-through vs REINFORCE (§20.9).

Setting of Jang et al. (2017): 20 categorical latents of 10 classes each (uniform prior),
encoder 784-512-256, decoder mirrored, ReLU, Bernoulli output; Adam lr 1e-3, batch 100,
temperature ``τ = max(0.5, exp(-r t))`` updated every ``N`` steps (``r = 1e-4``,
``N = 500``).  The three estimators of ``∇ ELBO`` (:func:`egm.models.vae.
discrete_elbo_surrogate`): ``gumbel`` (the relaxed objective, biased for τ > 0),
``st_gumbel`` (straight-through: discrete forward pass, relaxed gradient) and ``reinforce``
(score function, leave-one-out baseline over 2 draws, unbiased).  All three are evaluated on
the same, discrete model: the test ELBO with categorical draws and closed-form KL, and the
importance-sampled log-likelihood with ``q(z|x)`` as the proposal.  Jang et al. report
negative ELBOs on MNIST; compare trends, not digits (other binarization and run lengths).
``--estimators`` picks the runs, one driver phase each (``--epochs`` may be raised to extend
a finished run).  Measured figures: BUILD_NOTES.md (issue 5).

    python experiments/gumbel_vae_mnist.py                 # default: embedded subset
    python experiments/gumbel_vae_mnist.py --config tiny   # smoke test, seconds
    python experiments/gumbel_vae_mnist.py --config full --source idx --data_dir ../shared/data/mnist
    python experiments/gumbel_vae_mnist.py --estimators st_gumbel --sweep seed=0:4
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from egm import data, run, train
from egm.estimators.gradients import temperature_schedule
from egm.eval import directed as ev
from egm.models import vae
from egm.run import directed as rd
from egm.run.config import MNISTFields, at_least, field, greater_than, one_of


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields, rd.ImportanceFields):
    binarization: str = field("dynamic", check=one_of("dynamic", "fixed", "threshold"))
    estimators: str = field("gumbel,st_gumbel,reinforce", eval_only=True, help="one phase each")
    hidden: str = field("512,256", help="comma-separated widths of the deterministic layers")
    activation: str = field("relu", check=one_of("tanh", "relu", "softplus", "elu"))
    n_latent: int = field(20, check=at_least(1), help="categorical variables")
    n_classes: int = field(10, check=at_least(2))
    batch_size: int = field(100, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    tau0: float = field(1.0, check=greater_than(0))
    tau_min: float = field(0.5, check=greater_than(0))
    anneal_rate: float = field(1e-4, check=at_least(0))
    anneal_every: int = field(500, check=at_least(1), help="steps between temperature updates")
    epochs: int = field(10, check=at_least(1), eval_only=True, help="a longer run resumes")
    eval_every: int = field(5, check=at_least(1), eval_only=True)
    eval_size: int = field(1000, check=at_least(1), eval_only=True, help="valid digits monitored")
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    checkpoint_every: int = field(1, check=at_least(1), eval_only=True)
    workdir: str = field("runs/gumbel_vae_mnist", eval_only=True)

    def check(self) -> None:
        super().check()
        estimators(self)
        vae.parse_hidden(self.hidden)


PRESETS = {
    "default": Config(),
    "tiny": Config(hidden="32", n_latent=3, n_classes=4, epochs=2, eval_every=1, eval_size=100,
                   is_samples=32, is_test_size=50, n_samples=16, progress=False,
                   workdir="runs/gumbel_vae_mnist_tiny"),
    "full": Config(source="auto", epochs=10, eval_every=2, workdir="runs/gumbel_vae_mnist_full"),
}  # fmt: skip


def estimators(cfg: Config) -> list[str]:
    return rd.choices(cfg.estimators, vae.DISCRETE_ESTIMATORS, "estimators")


def model(cfg: Config) -> vae.VAE:
    return vae.VAE(x_dim=784, latent_dim=cfg.n_latent, n_classes=cfg.n_classes,
                   latent="categorical", hidden=vae.parse_hidden(cfg.hidden),
                   activation=cfg.activation).check()  # fmt: skip


def tau(cfg: Config):
    return lambda step: temperature_schedule(
        step, cfg.tau0, cfg.anneal_rate, cfg.tau_min, cfg.anneal_every
    ).astype(jnp.float32)


def phase(est: str) -> run.Phase:
    def monitor(cfg, d, params, key):  # the step count (the state's aux) sets the temperature
        elbo = vae.elbo_on_data(key, model(cfg), params, d.binary["valid"][: cfg.eval_size])
        return {"valid_discrete_elbo": float(jnp.mean(elbo))}

    loss = lambda cfg, d: vae.make_discrete_loss(model(cfg), est, tau(cfg),
                                                 dynamic_binarization=cfg.binarization == "dynamic")  # fmt: skip
    return rd.loss_phase(est, lambda cfg, d, key: vae.init_params(key, model(cfg)), loss,
                         lambda cfg, d: train.adam(cfg.learning_rate), monitor=monitor,
                         count_steps=True)  # fmt: skip


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    m, x, fields, out = model(cfg), d.binary["test"], rd.record_fields(d), {}
    for i, est in enumerate(estimators(cfg)):
        p, (k1, k2) = done[est].params, jax.random.split(jax.random.fold_in(key, i))
        out[f"{est}_test_discrete_elbo"] = ev.bound_record(
            vae.elbo_on_data(k1, m, p, x), "ELBO with categorical draws, closed-form KL", **fields
        )
        out[f"{est}_test_loglik"] = ev.vae_importance_record(
            k2, m, p, x[: cfg.is_test_size or None], cfg.is_samples, chunk_size=cfg.is_chunk,
            **fields,
        )  # fmt: skip
        out[f"{est}_final_tau"] = float(tau(cfg)(done[est].step))
    return {**out, "epochs_trained": cfg.epochs, "n_train": len(d.train)}


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    return {name: pic for est in estimators(cfg)
            for name, pic in rd.vae_pictures(key, model(cfg), done[est].params, est,
                                             cfg.n_samples).items()}  # fmt: skip


def sample(cfg: Config, d: data.BinarizedMNIST, done, key, n: int) -> dict:
    """``n`` binary digits of each model: uniform codes ``z``, ``x ~ Bernoulli(E[x|z])``."""
    draw = lambda est, k: vae.generate(k, model(cfg), done[est].params, n, mean=False)
    return rd.per_model(estimators(cfg), key, draw)


EXPERIMENT = run.Experiment(
    name="gumbel_vae_mnist",
    presets=PRESETS,
    load=rd.load_mnist,
    phases=lambda cfg: [phase(e) for e in estimators(cfg)],
    evaluate=evaluate,
    pictures=pictures,
    sample=sample,
    describe=lambda c: {
        "model": f"categorical VAE 784-{c.hidden}-({c.n_latent}x{c.n_classes}), {c.activation}",
        "training": f"Adam lr {c.learning_rate}, batch {c.batch_size}, tau = max({c.tau_min}, "
        f"{c.tau0}·exp(-{c.anneal_rate} t)) every {c.anneal_every} steps",
    },
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
