"""Binary RBM on MNIST: CD-k or PCD-k (optionally centered), AIS test log-likelihood with a bracket.

Setting of Salakhutdinov & Murray (2008) / Melchior et al. (2016): 784 visible units,
binarized MNIST, 500 hidden units, AIS with 100 chains and 14,500 temperatures.

    python experiments/rbm_mnist.py                       # main job: embedded subset, offline
    python experiments/rbm_mnist.py --config tiny         # smoke test, seconds
    python experiments/rbm_mnist.py --config full --source idx --data_dir ../shared/data/mnist
    python experiments/rbm_mnist.py --sweep seed=0:4 --sweep learning_rate=0.01,0.005

Outputs in ``--workdir``: config.json, metrics.jsonl, checkpoints/, samples.png,
filters.png, results.json.  A killed run started again resumes from its last checkpoint.
Figures and wall times of the presets: README.md and BUILD_NOTES.md.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run, train
from egm.energies import rbm
from egm.estimators import ais
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of
from egm.samplers import block_gibbs
from egm.samplers import run as run_chain


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    n_hidden: int = field(500, check=at_least(1))
    estimator: str = field("pcd", check=one_of("pcd", "cd"))
    k: int = field(1, check=at_least(1), help="Gibbs sweeps per update")
    centering: bool = True
    n_chains: int = field(100, check=at_least(1), help="persistent chains (PCD)")
    batch_size: int = field(100, check=at_least(1))
    epochs: int = field(60, check=at_least(1))
    learning_rate: float = field(0.01, check=greater_than(0), sweep=True)
    momentum: float = field(0.9, check=in_range(0, 1, closed_high=False), sweep=True)
    weight_decay: float = field(0.0, check=at_least(0), sweep=True)
    lr_decay: bool = field(True, help="linear decay to 0 over the run")
    eval_every: int = field(5, check=at_least(1), eval_only=True)
    eval_size: int = field(1000, check=at_least(1), eval_only=True)
    ais_chains: int = field(100, check=at_least(2), eval_only=True)
    ais_temps: int = field(14500, check=at_least(3), eval_only=True)
    reverse_burn_in: int = field(1000, check=at_least(0), eval_only=True)
    n_samples: int = field(100, check=at_least(1), eval_only=True)
    sample_sweeps: int = field(1000, check=at_least(1), eval_only=True)
    workdir: str = field("runs/rbm_mnist", eval_only=True)


PRESETS = {
    "default": Config(),
    "tiny": Config(
        n_hidden=16,
        epochs=3,
        eval_every=1,
        eval_size=200,
        ais_chains=16,
        ais_temps=200,
        reverse_burn_in=20,
        n_samples=16,
        sample_sweeps=20,
        checkpoint_every=1,
        progress=False,
        workdir="runs/rbm_mnist_tiny",
    ),  # fmt: skip
    # weight decay and learning rate chosen by validation AIS in a vmapped sweep (BUILD_NOTES.md)
    "full": Config(
        source="auto",
        epochs=400,
        learning_rate=0.005,
        weight_decay=3e-4,
        eval_every=20,
        checkpoint_every=10,
        ais_chains=500,
        workdir="runs/rbm_mnist_full",
    ),  # fmt: skip
}


def load(cfg: Config) -> data.BinarizedMNIST:
    return data.load_binarized_mnist(
        cfg.binarization, cfg.binarization_seed, source=cfg.source, data_dir=cfg.data_dir
    )


def step_config(cfg: Config) -> train.RBMStepConfig:
    dynamic = "dynamic" if cfg.binarization == "dynamic" else "none"
    return train.RBMStepConfig(cfg.estimator, cfg.k, cfg.centering, binarization=dynamic,
                               track_free_energy_gap=True)  # fmt: skip


def optimizer(cfg: Config, n_train: int):
    decay = train.linear_decay(cfg.epochs * (n_train // cfg.batch_size)) if cfg.lr_decay else None
    return train.sgd(cfg.learning_rate, cfg.momentum, cfg.weight_decay, lr_multiplier=decay)


def init(cfg: Config, d: data.BinarizedMNIST, key, done):
    k_params, k_chains = jax.random.split(key)
    mean = jnp.mean(jnp.asarray(d.binary["train"]), axis=0)
    params = rbm.init(k_params, 784, cfg.n_hidden, data_mean=mean)
    opt = optimizer(cfg, d.train.shape[0])
    return train.init_rbm_state(k_chains, params, opt, mean, cfg.n_chains)


def step(cfg: Config, d: data.BinarizedMNIST, done):
    return train.make_step(train.rbm_objective(step_config(cfg)), optimizer(cfg, d.train.shape[0]))


def monitor(cfg: Config, d: data.BinarizedMNIST, state, key, epoch: int) -> dict:
    if (epoch + 1) % cfg.eval_every and epoch != cfg.epochs - 1:
        return {}
    v_tr, v_va = (jnp.asarray(d.binary[s][: cfg.eval_size]) for s in ("train", "valid"))
    p = state.params
    return {
        "recon_error_valid": float(eval.reconstruction_error(p, v_va)),
        "free_energy_gap_valid_minus_train": float(
            eval.free_energy_gap(rbm.free_energy, p, v_tr, v_va)
        ),
        "pseudo_loglik_valid": float(
            eval.stochastic_pseudo_log_likelihood(key, rbm.free_energy, p, v_va)
        ),
    }


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    params = done["train"].params
    betas = ais.betas_salakhutdinov_murray(cfg.ais_temps)
    test = eval.rbm_log_likelihood_bracket(
        key, params, ais.base_rate_biases(d.binary["train"]), d.binary["test"],
        n_chains=cfg.ais_chains, betas=betas, reverse_burn_in=cfg.reverse_burn_in,
        dataset=d.source, split="test", protocol=d.protocol,
    )  # fmt: skip
    nfe = {s: eval.mean_negative_free_energy(rbm.free_energy, params, d.binary[s])
           for s in ("train", "valid")}  # fmt: skip
    return {
        "test_loglik": test,
        "train_loglik_nats": nfe["train"] - test.extras["log_z_forward"],
        "valid_loglik_nats": nfe["valid"] - test.extras["log_z_forward"],  # for model selection
        "log_z_forward": test.extras["log_z_forward"],
        "n_train": int(d.train.shape[0]),
    }


def gibbs(cfg: Config, d: data.BinarizedMNIST, done, key, n: int):
    """``n`` chains after ``sample_sweeps`` block Gibbs sweeps from the base-rate model."""
    params = done["train"].params
    mean = jnp.mean(jnp.asarray(d.binary["train"]), axis=0)
    v0 = jax.random.bernoulli(key, mean, (n, 784)).astype(jnp.float32)
    st0 = jax.vmap(rbm.init_state, in_axes=(None, 0))(params, v0)
    return jax.jit(run_chain, static_argnums=(0, 4))(
        block_gibbs(rbm.BLOCKS), jax.random.fold_in(key, 1), st0, params, cfg.sample_sweeps
    )[0]


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    params = done["train"].params
    final = gibbs(cfg, d, done, key, cfg.n_samples)
    means = jax.vmap(rbm.visible_probs, in_axes=(None, 0))(params, final.h)
    n_f = min(100, cfg.n_hidden)
    return {
        "samples.png": (eval.tile_images(np.asarray(means), (28, 28)),
                        f"P(v|h) after {cfg.sample_sweeps} Gibbs sweeps"),
        "filters.png": (eval.tile_images(np.asarray(params.W[:, :n_f].T), (28, 28), normalize=True),
                        f"first {n_f} filters W[:, j]"),
    }  # fmt: skip


def describe(cfg: Config) -> dict:
    decay = " (linear decay to 0)" if cfg.lr_decay else ""
    return {
        "model": f"RBM 784-{cfg.n_hidden}",
        "training": f"{'centered ' if cfg.centering else ''}{cfg.estimator.upper()}-{cfg.k}, "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.n_chains} chains, lr "
        f"{cfg.learning_rate}{decay}, momentum {cfg.momentum}, weight decay {cfg.weight_decay}",
    }


def data_check(cfg: Config, x) -> None:
    train.rbm_data_check(784, step_config(cfg))(x)


EXPERIMENT = run.Experiment(
    name="rbm_mnist",
    presets=PRESETS,
    load=load,
    phases=lambda cfg: [run.Phase("train", init, step, data_check=data_check, monitor=monitor)],
    evaluate=evaluate,
    pictures=pictures,
    sample=lambda cfg, d, done, key, n: gibbs(cfg, d, done, key, n).v,
    describe=describe,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate}, momentum={c.momentum})",
    published=lambda c: (
        {"test_loglik": "rbm_centered_pcd1" if c.estimator == "pcd" else f"rbm_cd{c.k}"}
        if c.n_hidden == 500
        and (c.estimator, c.k, c.centering)
        in {("pcd", 1, True), ("cd", 1, False), ("cd", 3, False), ("cd", 25, False)}
        else {}
    ),
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
