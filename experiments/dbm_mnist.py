"""Deep Boltzmann machine 784-500-1000 on binarized MNIST (Salakhutdinov & Hinton 2009, §20.4).

Two variants:

- ``pretrained``: greedy layer-wise pretraining with doubled inputs (bottom RBM with two tied
  copies of v, top RBM with two tied copies of h²; phases ``pretrain0``/``pretrain1`` of
  :func:`egm.train.greedy.greedy_phases`), composed into a DBM
  (:func:`egm.energies.dbm.from_pretrained_rbms`), then joint PCD with a mean-field
  positive phase started from the doubled bottom-up pass (phase ``joint``).
- ``centered``: the centered DBM of Montavon & Müller (2012), trained jointly from random
  initialisation, no pretraining.

Evaluation: AIS for log Z (odd layer annealed, v and h² summed out), the variational lower
bound on the test log-likelihood with converged mean field (iterations and residual
reported), and the test error of an MLP initialised from the DBM with the mean-field
augmented input of Salakhutdinov & Hinton (input ``[v, q(h²|v)]``, first layer ``[W₁; W₂ᵀ]``)
and fine-tuned with cross-entropy (phase ``finetune``).

    python experiments/dbm_mnist.py --config tiny                 # smoke test, seconds
    python experiments/dbm_mnist.py --config paper                # pretrained, the paper's setting
    python experiments/dbm_mnist.py --config paper_centered       # centered, random init
    python experiments/dbm_mnist.py --config tiny --sweep seed=0:4

Published (Salakhutdinov & Hinton 2009): test log-likelihood bound -84.62 nats, test error
0.95 %.  What shortened runs of the paper config reached on the 2-core CPU machine, and in how long, is in
BUILD_NOTES.md ("DBM").  A killed run started again resumes phase by phase.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run, train
from egm.energies import dbm
from egm.estimators import ais
from egm.models.mlp import MLP
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of
from egm.samplers import block_gibbs
from egm.samplers import run as run_chain
from egm.train import classifier, dbm_step, greedy


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    variant: str = field("pretrained", check=one_of("pretrained", "centered"))
    n_h1: int = field(500, check=at_least(1))
    n_h2: int = field(1000, check=at_least(1))
    # greedy pretraining (variant "pretrained"): centered PCD-1 RBMs with tied copies
    pretrain_epochs: int = field(20, check=at_least(1))
    pretrain_lr: float = field(0.005, check=greater_than(0), sweep=True)
    # joint training
    epochs: int = field(20, check=at_least(0))
    batch_size: int = field(100, check=at_least(1))
    n_chains: int = field(100, check=at_least(1))
    k: int = field(1, check=at_least(1), help="Gibbs sweeps of the persistent chains per update")
    mean_field_iters: int = field(10, check=at_least(1))
    learning_rate: float = field(0.005, check=greater_than(0), sweep=True)
    momentum: float = field(0.9, check=in_range(0, 1, closed_high=False), sweep=True)
    weight_decay: float = field(2e-4, check=at_least(0), sweep=True)
    offset_rate: float = field(0.01, check=in_range(0, 1, closed_low=False))
    # converged mean field: the bound and the fine-tuned MLP's input features
    mf_tol: float = field(1e-5, check=greater_than(0))
    mf_max_iter: int = field(100, check=at_least(1))
    finetune_epochs: int = field(10, check=at_least(0))
    finetune_lr: float = field(1e-3, check=greater_than(0), sweep=True, help="Adam")
    ais_chains: int = field(100, check=at_least(2), eval_only=True)
    ais_temps: int = field(20000, check=at_least(3), eval_only=True)
    reverse_burn_in: int = field(1000, check=at_least(0), eval_only=True,
                                 help="Gibbs sweeps at beta=1 before reverse AIS")  # fmt: skip
    reverse_start: str = field("forward", check=one_of("forward", "chains"), eval_only=True,
                               help="reverse AIS starts from the forward run's final states "
                               "or from the persistent training chains")  # fmt: skip
    n_samples: int = field(100, check=at_least(1), eval_only=True)
    sample_sweeps: int = field(1000, check=at_least(1), eval_only=True)
    checkpoint_every: int = field(1, check=at_least(1), eval_only=True)
    workdir: str = field("runs/dbm_mnist", eval_only=True)


# fmt: off
PRESETS = {
    "default": Config(),
    "tiny": Config(
        n_h1=16, n_h2=12, pretrain_epochs=1, epochs=2, n_chains=20, ais_chains=8, ais_temps=100,
        reverse_burn_in=0, mf_max_iter=20, finetune_epochs=1, n_samples=16, sample_sweeps=10,
        progress=False, workdir="runs/dbm_mnist_tiny",
    ),
    # Salakhutdinov & Hinton (2009): 100 pretraining epochs per RBM, 500 epochs of joint
    # training with 100 persistent chains updated by 5 Gibbs sweeps, AIS with 100 chains and
    # 20,000 temperatures, 100 epochs of discriminative fine-tuning.  Joint lr 0.001 with
    # momentum 0.5: at the RBM's lr 0.005 / momentum 0.9 joint training wrecked the pretrained
    # model (BUILD_NOTES.md, "DBM").
    "paper": Config(
        source="auto", pretrain_epochs=100, epochs=500, k=5, learning_rate=0.001, momentum=0.5,
        finetune_epochs=100, checkpoint_every=5, workdir="runs/dbm_mnist_paper",
    ),
    # Montavon & Müller (2012): centered, random init, no pretraining; stable at lr 0.005.
    "paper_centered": Config(
        source="auto", variant="centered", epochs=500, finetune_epochs=100, checkpoint_every=5,
        workdir="runs/dbm_mnist_paper_centered",
    ),
}
# fmt: on


def load(cfg: Config) -> data.BinarizedMNIST:
    return data.load_binarized_mnist(
        cfg.binarization, cfg.binarization_seed, source=cfg.source, data_dir=cfg.data_dir
    )


def layer_specs(cfg: Config) -> list[greedy.LayerSpec]:
    common = dict(epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size, momentum=0.9,
                  learning_rate=cfg.pretrain_lr, weight_decay=cfg.weight_decay,
                  n_chains=cfg.n_chains)  # fmt: skip
    return [greedy.LayerSpec(cfg.n_h1, visible_copies=2, **common),
            greedy.LayerSpec(cfg.n_h2, hidden_copies=2, **common)]  # fmt: skip


def mf_init(cfg: Config) -> str:
    return "bottom_up" if cfg.variant == "pretrained" else "half"


def step_config(cfg: Config) -> dbm_step.DBMStepConfig:
    return dbm_step.DBMStepConfig(
        k=cfg.k, mean_field_iters=cfg.mean_field_iters, mean_field_init=mf_init(cfg),
        centering=cfg.variant == "centered", offset_rate=cfg.offset_rate,
        binarization="dynamic" if cfg.binarization == "dynamic" else "none",
    )  # fmt: skip


def optimizer(cfg: Config, n_train: int):
    decay = train.linear_decay(max(cfg.epochs * (n_train // cfg.batch_size), 1))
    return train.sgd(cfg.learning_rate, cfg.momentum, cfg.weight_decay, lr_multiplier=decay)


def init_joint(cfg: Config, d: data.BinarizedMNIST, key, done):
    k_init, k_state = jax.random.split(key)
    mean = jnp.mean(jnp.asarray(d.binary["train"]), axis=0)
    if cfg.variant == "pretrained":
        params, offsets = dbm.from_pretrained_rbms(greedy.stacked(done, 2, "pretrain")), None
    else:
        params, offsets = dbm_step.init_centered_params(k_init, (784, cfg.n_h1, cfg.n_h2), mean)
    opt = optimizer(cfg, d.train.shape[0])
    return dbm_step.init_dbm_state(k_state, params, opt, mean, cfg.n_chains, offsets)


def step_joint(cfg: Config, d: data.BinarizedMNIST, done):
    opt = optimizer(cfg, d.train.shape[0])
    return train.make_step(dbm_step.dbm_objective(step_config(cfg)), opt)


def features(cfg: Config):
    return lambda p, x: dbm_step.augmented_input(p, x, tol=cfg.mf_tol, max_iter=cfg.mf_max_iter,
                                                 init=mf_init(cfg))  # fmt: skip


def apply_mlp(cfg: Config):
    module = MLP((cfg.n_h1, cfg.n_h2), 10)
    return lambda p, x: module.apply({"params": p}, x)


def init_finetune(cfg: Config, d: data.BinarizedMNIST, key, done):
    _, mlp = dbm_step.init_dbm_classifier(key, done["joint"].params)
    return train.init_state(mlp, train.adam(cfg.finetune_lr), aux=done["joint"].params)


def step_finetune(cfg: Config, d: data.BinarizedMNIST, done):
    objective = classifier.classifier_objective(apply_mlp(cfg), features(cfg))
    return train.make_step(objective, train.adam(cfg.finetune_lr))


def phases(cfg: Config) -> list[run.Phase]:
    pre = greedy.greedy_phases(cfg, layer_specs, prefix="pretrain")
    return [
        *(pre if cfg.variant == "pretrained" else []),
        run.Phase("joint", init_joint, step_joint,
                  data_check=lambda c, x: dbm_step.dbm_data_check(784, step_config(c))(x)),
        run.Phase("finetune", init_finetune, step_finetune, epochs=lambda c: c.finetune_epochs,
                  train_data=lambda c, d, done: (d.binary["train"], d.labels["train"]),
                  data_check=lambda c, xy: classifier.classifier_data_check(784, 10)(xy)),
    ]  # fmt: skip


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    params = done["joint"].params
    betas = ais.betas_salakhutdinov_murray(cfg.ais_temps)
    start = done["joint"].chains[1::2] if cfg.reverse_start == "chains" else None
    bi = ais.dbm_bidirectional_ais(key, params, ais.base_rate_biases(d.binary["train"]),
                                   n_chains=cfg.ais_chains, betas=betas,
                                   burn_in=cfg.reverse_burn_in, x_start=start)  # fmt: skip
    bound = {
        split: eval.dbm_log_likelihood_bound(
            key,
            params,
            d.binary[split],
            ais_result=bi,
            mf_tol=cfg.mf_tol,
            mf_max_iter=cfg.mf_max_iter,
            mf_init=mf_init(cfg),
            dataset=d.source,
            split=split,
            protocol=d.protocol,
        )  # fmt: skip
        for split in ("test", "train")
    }
    feats, mlp = features(cfg), apply_mlp(cfg)
    classify = lambda pp, x: mlp(pp[0], feats(pp[1], x))  # noqa: E731
    both = (done["finetune"].params, params)
    return {
        "test_loglik_bound": bound["test"],
        "train_loglik_bound": bound["train"],
        "log_z": float(bi.forward.log_z),
        "log_z_se": float(bi.forward.log_z_se),
        "ais_ess": float(bi.forward.ess),
        "log_z_reverse": float(bi.reverse.log_z),
        "log_z_reverse_se": float(bi.reverse.log_z_se),
        "ais_ess_reverse": float(bi.reverse.ess),
        "mean_field_iters_mean": bound["test"].extras["mf_mean_iterations"],
        "mean_field_residual_max": bound["test"].extras["mf_max_residual"],
        "test_error": classifier.classification_error(
            classify, both, d.binary["test"], d.labels["test"]
        ),
        "n_train": int(d.train.shape[0]),
    }


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    params = done["joint"].params
    mean = jnp.mean(jnp.asarray(d.binary["train"]), axis=0)
    v0 = jax.random.bernoulli(key, mean, (cfg.n_samples, 784)).astype(jnp.float32)
    hs = [jax.random.bernoulli(jax.random.fold_in(key, i), 0.5, (cfg.n_samples, n))
          for i, n in enumerate((cfg.n_h1, cfg.n_h2))]  # fmt: skip
    chains = (v0, *(h.astype(jnp.float32) for h in hs))
    final, _ = jax.jit(run_chain, static_argnums=(0, 4))(
        block_gibbs(dbm.BLOCKS), jax.random.fold_in(key, 99), chains, params, cfg.sample_sweeps
    )
    v_prob = jax.nn.sigmoid(jax.vmap(lambda *s: dbm.layer_logits(params, s, 0))(*final))
    n_f = min(100, cfg.n_h1)
    return {
        "samples.png": (eval.tile_images(np.asarray(v_prob), (28, 28)),
                        f"P(v|h1) after {cfg.sample_sweeps} Gibbs sweeps"),
        "filters.png": (eval.tile_images(np.asarray(params.weights[0][:, :n_f].T), (28, 28),
                                         normalize=True), f"first {n_f} first-layer filters"),
    }  # fmt: skip


def describe(cfg: Config) -> dict:
    pre = (
        f"greedy pretraining with doubled inputs, {cfg.pretrain_epochs} epochs per RBM, lr "
        f"{cfg.pretrain_lr}; "
        if cfg.variant == "pretrained"
        else "centered, random init; "
    )
    return {
        "model": f"DBM 784-{cfg.n_h1}-{cfg.n_h2} ({cfg.variant})",
        "training": f"{pre}joint PCD-{cfg.k} with {cfg.mean_field_iters} mean-field sweeps, "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.n_chains} persistent chains, lr "
        f"{cfg.learning_rate} (linear decay), momentum {cfg.momentum}, weight decay "
        f"{cfg.weight_decay}",
        "ais": f"{cfg.ais_chains} chains, {cfg.ais_temps} temperatures, base-rate model; odd "
        f"layer annealed, v and h2 summed out",
        "mean_field": f"while_loop to tol {cfg.mf_tol} (max {cfg.mf_max_iter}), init {mf_init(cfg)}",
        "finetune": f"MLP [v, q(h2|v)] -> {cfg.n_h1} -> {cfg.n_h2} -> 10 initialised from the "
        f"DBM, Adam lr {cfg.finetune_lr}, {cfg.finetune_epochs} epochs",
    }  # fmt: skip


EXPERIMENT = run.Experiment(
    name="dbm_mnist",
    published=lambda c: (
        {"test_loglik_bound": "dbm_500_1000", "test_error": "dbm_500_1000_error"}
        if (c.n_h1, c.n_h2) == (500, 1000)
        else {}
    ),
    presets=PRESETS,
    load=load,
    phases=phases,
    evaluate=evaluate,
    pictures=pictures,
    describe=describe,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate}, momentum={c.momentum})",
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
