"""Binary RBM on MNIST: CD-k or PCD-k (optionally centered), AIS test log-likelihood with a bracket.

Setting of Salakhutdinov & Murray (2008) / Melchior et al. (2016): 784 visible units,
binarized MNIST, 500 hidden units, AIS with 100 chains and 14,500 temperatures.  Published
test log-likelihoods: -125.53 / -105.50 / -86.34 nats for CD-1 / CD-3 / CD-25 (Salakhutdinov
& Murray 2008), -84.86 for centered PCD-1 (Melchior et al. 2016); results.json carries the
one its config matches (``published``).  Model, training and AIS: egm.run.rbm, egm.eval.rbm.

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

import jax.numpy as jnp

from egm import data, run
from egm.eval import rbm as rbm_eval
from egm.run.config import at_least, field
from egm.run.rbm import RBMFields, rbm_phase
from egm.samplers.persistent import rbm_base_rate_chains


@dataclasses.dataclass(frozen=True)
class Config(RBMFields):
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
        n_hidden=16, epochs=3, eval_every=1, eval_size=200, ais_chains=16, ais_temps=200,
        reverse_burn_in=20, n_samples=16, sample_sweeps=20, checkpoint_every=1, progress=False,
        workdir="runs/rbm_mnist_tiny",
    ),
    # weight decay and learning rate chosen by validation AIS in a vmapped sweep (BUILD_NOTES.md)
    "full": Config(
        source="auto", epochs=400, learning_rate=0.005, weight_decay=3e-4, eval_every=20,
        checkpoint_every=10, ais_chains=500, workdir="runs/rbm_mnist_full",
    ),
}  # fmt: skip


def load(cfg: Config) -> data.BinarizedMNIST:
    return cfg.load_data()


def monitor(cfg: Config, d: data.BinarizedMNIST, state, key, epoch: int) -> dict:
    if (epoch + 1) % cfg.eval_every and epoch != cfg.epochs - 1:
        return {}
    v_tr, v_va = (jnp.asarray(d.binary[s][: cfg.eval_size]) for s in ("train", "valid"))
    return rbm_eval.rbm_monitor(key, state.params, v_tr, v_va)


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    return rbm_eval.rbm_results(
        key, done["train"].params, d.binary, n_chains=cfg.ais_chains, n_temps=cfg.ais_temps,
        reverse_burn_in=cfg.reverse_burn_in, dataset=d.source, protocol=d.protocol,
    )  # fmt: skip


def gibbs(cfg: Config, d: data.BinarizedMNIST, done, key, n: int):
    """``n`` chains after ``sample_sweeps`` block Gibbs sweeps from the base-rate model."""
    mean = jnp.mean(jnp.asarray(d.binary["train"]), axis=0)
    return rbm_base_rate_chains(key, done["train"].params, mean, n, cfg.sample_sweeps)


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    final = gibbs(cfg, d, done, key, cfg.n_samples)
    return rbm_eval.rbm_pictures(done["train"].params, final, cfg.sample_sweeps)


EXPERIMENT = run.Experiment(
    name="rbm_mnist",
    presets=PRESETS,
    load=load,
    phases=lambda cfg: [rbm_phase(monitor)],
    evaluate=evaluate,
    pictures=pictures,
    sample=lambda cfg, d, done, key, n: gibbs(cfg, d, done, key, n).v,
    describe=lambda c: {"model": f"RBM 784-{c.n_hidden}", "training": c.training()},
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
