"""Categorical VAE on binarized MNIST: Gumbel-Softmax vs straight-through vs REINFORCE (§20.9).

Setting of Jang et al. (2017): 20 categorical latents of 10 classes each (uniform prior),
encoder 784-512-256, decoder mirrored, ReLU, Bernoulli output; Adam lr 1e-3, batch 100,
temperature ``τ = max(0.5, exp(-r t))`` updated every ``N`` steps (``r = 1e-4``,
``N = 500``).  The three estimators of ``∇ ELBO``
(:func:`egm.models.vae.discrete_elbo_surrogate`):

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
    python experiments/gumbel_vae_mnist.py --estimators st_gumbel --sweep seed=0:4

``--estimators`` picks the runs, each one training phase of the run driver
(``checkpoints/<estimator>/``); ``results.json`` holds ``<estimator>_test_loglik`` (IS) and
``<estimator>_test_discrete_elbo`` records and the final temperature; ``--epochs`` may be
raised to extend a finished run (it resumes).  The temperature follows the step count (it is
updated every ``anneal_every`` steps, as in the paper).

Measured (BUILD_NOTES.md; ``--config full --epochs 5``, 50k digits, shared 2-core CPU): test
ELBO with discrete codes -128.49 (Gumbel-Softmax), -129.28 (straight-through), -139.09
(REINFORCE); IS log-likelihood (k = 1000, 1000 digits) -106.76 / -115.75 / -124.37 nats.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from egm import data, eval, run, train
from egm.errors import ConfigError
from egm.estimators.gradients import temperature_schedule
from egm.models import vae
from egm.run.config import MNISTFields, at_least, field, greater_than, one_of


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
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
    is_samples: int = field(1000, check=at_least(1), eval_only=True, help="IS draws per digit")
    is_test_size: int = field(1000, check=at_least(1), eval_only=True)
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    checkpoint_every: int = field(1, check=at_least(1), eval_only=True)
    workdir: str = field("runs/gumbel_vae_mnist", eval_only=True)

    def check(self) -> None:
        super().check()
        parse_estimators(self.estimators)
        vae.parse_hidden(self.hidden)


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
    "full": Config(source="auto", epochs=10, eval_every=2, workdir="runs/gumbel_vae_mnist_full"),
}


def parse_estimators(spec: str) -> list[str]:
    out = [s.strip() for s in spec.split(",") if s.strip()]
    if not out or any(e not in vae.DISCRETE_ESTIMATORS for e in out) or len(set(out)) < len(out):
        raise ConfigError(f"--estimators must be a comma list of distinct "
                          f"{vae.DISCRETE_ESTIMATORS}, got {spec!r}")  # fmt: skip
    return out


def load(cfg: Config) -> data.BinarizedMNIST:
    return data.load_binarized_mnist(
        cfg.binarization, cfg.binarization_seed, source=cfg.source, data_dir=cfg.data_dir
    )


def model(cfg: Config) -> vae.VAE:
    return vae.VAE(x_dim=784, latent_dim=cfg.n_latent, n_classes=cfg.n_classes,
                   latent="categorical", hidden=vae.parse_hidden(cfg.hidden),
                   activation=cfg.activation).check()  # fmt: skip


def tau(cfg: Config):
    return lambda step: temperature_schedule(
        step, cfg.tau0, cfg.anneal_rate, cfg.tau_min, cfg.anneal_every
    ).astype(jnp.float32)


def data_check(cfg: Config, x) -> None:
    data.check_unit_interval(x, "training data")  # grey levels or binary


def phase(est: str) -> run.Phase:
    def init(cfg, d, key, done):  # aux: the step count, which sets the temperature
        params = vae.init_params(key, model(cfg))
        return train.init_state(params, train.adam(cfg.learning_rate), aux=jnp.zeros((), jnp.int32))

    def step(cfg, d, done):
        dyn = cfg.binarization == "dynamic"
        loss = vae.make_discrete_loss(model(cfg), est, tau(cfg), dynamic_binarization=dyn)
        grad = jax.value_and_grad(loss, has_aux=True)

        def objective(params, batch, key, chains, t):
            (value, metrics), g = grad(params, batch, key, t)
            return train.ObjectiveOut(g, chains, t + 1, {"loss": value, **metrics})

        return train.make_step(objective, train.adam(cfg.learning_rate))

    def monitor(cfg, d, state, key, epoch):
        if (epoch + 1) % cfg.eval_every and epoch != cfg.epochs - 1:
            return {}
        elbo = vae.elbo_on_data(key, model(cfg), state.params, d.binary["valid"][: cfg.eval_size])
        return {"valid_discrete_elbo": float(jnp.mean(elbo))}

    return run.Phase(est, init, step, data_check=data_check, monitor=monitor)


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    m, x = model(cfg), d.binary["test"]
    fields = dict(dataset=d.source, split="test", protocol=d.protocol)
    out = {}
    for i, est in enumerate(parse_estimators(cfg.estimators)):
        p, (k1, k2) = done[est].params, jax.random.split(jax.random.fold_in(key, i))
        out[f"{est}_test_discrete_elbo"] = eval.LogLikelihood.from_per_example(
            np.asarray(vae.elbo_on_data(k1, m, p, x)), "variational_bound", bound="lower",
            counts={"samples": 1}, notes="ELBO with categorical draws, closed-form KL", **fields,
        )  # fmt: skip
        out[f"{est}_test_loglik"] = eval.importance_sampled_log_likelihood(
            k2, Partial(vae.log_weights_fn(m), p), x[: cfg.is_test_size], cfg.is_samples,
            chunk_size=min(500, cfg.is_samples), **fields,
        )  # fmt: skip
        out[f"{est}_final_tau"] = float(tau(cfg)(done[est].step))
    return {**out, "epochs_trained": cfg.epochs, "n_train": len(d.train)}


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    gen = lambda est: np.asarray(vae.generate(key, model(cfg), done[est].params, cfg.n_samples))
    return {
        f"{est}_samples.png": (
            eval.tile_images(gen(est), (28, 28)),
            f"{est}: E[x|z], uniform codes",
        )
        for est in parse_estimators(cfg.estimators)
    }


def describe(cfg: Config) -> dict:
    return {
        "model": f"categorical VAE 784-{cfg.hidden}-({cfg.n_latent}x{cfg.n_classes} categorical), "
        f"{cfg.activation}, Bernoulli output; estimators {cfg.estimators}",
        "training": f"Adam lr {cfg.learning_rate}, batch {cfg.batch_size}, {cfg.epochs} epochs, "
        f"tau = max({cfg.tau_min}, {cfg.tau0}·exp(-{cfg.anneal_rate} t)), updated every "
        f"{cfg.anneal_every} steps",
        "evaluation": f"test_discrete_elbo: categorical draws, closed-form KL, all test digits; "
        f"IS: k={cfg.is_samples} draws of q(z|x), first {cfg.is_test_size} test digits",
    }


EXPERIMENT = run.Experiment(
    name="gumbel_vae_mnist",
    presets=PRESETS,
    load=load,
    phases=lambda cfg: [phase(e) for e in parse_estimators(cfg.estimators)],
    evaluate=evaluate,
    pictures=pictures,
    describe=describe,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
