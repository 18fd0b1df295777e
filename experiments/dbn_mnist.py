"""Deep belief network on MNIST (§20.3): greedy pretraining, AIS lower bound, fine-tuned MLP.

Setting of Salakhutdinov & Murray (2008, DBN 784-500-2000, test lower bound about -86.22
nats on binarized MNIST) and Hinton & Salakhutdinov (2006, DBN-initialised classifier):
greedy training of the RBM stack, a phase per layer (``layer0``, ``layer1``, ...); the
variational lower bound with an AIS bracket on the top RBM's log Z, and the bottom RBM's AIS
log-likelihood (:func:`egm.eval.deep.dbn_evaluation`); samples by Gibbs in the top RBM and a
pass down (:func:`egm.models.dbn.sample`, scored with ``--score_samples N``); the test error
of an MLP initialised from the DBN and fine-tuned (``finetune``) on the grey digits, as
Hinton & Salakhutdinov fine-tune (``--ft_inputs binary``: on the binarized ones).  Resumes
layer by layer.

    python experiments/dbn_mnist.py                       # default: embedded subset, offline
    python experiments/dbn_mnist.py --config tiny         # smoke test, seconds
    python experiments/dbn_mnist.py --config paper --data_dir ../shared/data/mnist
    python experiments/dbn_mnist.py --hidden 500,2000 --layer_epochs 100,100

Figures and wall times of the (truncated) CPU run: BUILD_NOTES.md, "DBN".
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from egm import data, run, train
from egm.eval.deep import dbn_evaluation
from egm.models import dbn as dbn_lib
from egm.models.mlp import MLP, mlp_params_from_rbms
from egm.run import deep
from egm.run.config import at_least, field, one_of
from egm.run.directed import sizes
from egm.train import classifier, greedy


@dataclasses.dataclass(frozen=True)
class Config(deep.DBNFields, deep.FinetuneFields):
    binarization: str = field("fixed", check=one_of("fixed", "threshold"),
                              help="the lower bound is on binary test data")  # fmt: skip
    ais_temps: int = field(14500, check=at_least(3), eval_only=True)
    q_samples: int = field(10, check=at_least(2), eval_only=True, help="samples of Q per digit")
    bottom_rbm_ais: bool = field(True, eval_only=True, help="also the bottom RBM's AIS log-lik")
    n_samples: int = field(100, check=at_least(1), eval_only=True)
    sample_gibbs: int = field(1000, check=at_least(0), eval_only=True)
    workdir: str = field("runs/dbn_mnist", eval_only=True)


# fmt: off
PRESETS = {
    "default": Config(),
    "tiny": Config(
        hidden="16,32", layer_epochs="2,2", ais_chains=8, ais_temps=100, reverse_burn_in=0,
        q_samples=2, bottom_rbm_ais=False, ft_epochs=2, n_samples=16, sample_gibbs=10,
        progress=False, workdir="runs/dbn_mnist_tiny",
    ),
    "paper": Config(
        source="auto", hidden="500,2000", layer_epochs="200,200", learning_rate=0.005,
        weight_decay=3e-4, ft_epochs=100, ft_learning_rate=0.1, workdir="runs/dbn_mnist_paper",
    ),
}
# fmt: on


def model(cfg: Config, done) -> dbn_lib.DBN:
    return greedy.stacked(done, len(cfg.layer_specs()))


def apply_mlp(cfg: Config):
    module = MLP(sizes(cfg.hidden), 10)
    return lambda p, x: module.apply({"params": p}, x)


def error(cfg: Config, d: data.BinarizedMNIST, params, split: str) -> float:
    return classifier.classification_error(apply_mlp(cfg), params, deep.ft_digits(cfg, d, split),
                                           d.labels[split])  # fmt: skip


def init_finetune(cfg: Config, d: data.BinarizedMNIST, key, done):
    _, params = mlp_params_from_rbms(model(cfg, done), 10, key)
    before = {"test_error_before_finetuning": jnp.float32(error(cfg, d, params, "test"))}
    return train.init_state(params, cfg.ft_optimizer(len(d.binary["train"])), aux=before)


def phases(cfg: Config) -> list[run.Phase]:
    finetune = deep.classifier_phase(
        "finetune", init_finetune, lambda c: classifier.classifier_objective(apply_mlp(c)),
        lambda c, d: c.ft_optimizer(len(d.binary["train"])), epochs=lambda c: c.ft_epochs, batch_size=lambda c: c.ft_batch_size,
        inputs=lambda c, d: deep.ft_digits(c, d, "train"),
        valid_error=lambda c, d, st: error(c, d, st.params, "valid"),
        select=cfg.ft_patience is not None,  # --ft_patience: early stopping
    )  # fmt: skip
    pre = greedy.greedy_phases(cfg, lambda c: c.layer_specs(), lambda c, d: d.binary["train"])
    return [*pre, finetune]


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    out = dbn_evaluation(
        key, model(cfg, done), d.binary, n_chains=cfg.ais_chains, n_temps=cfg.ais_temps,
        q_samples=cfg.q_samples, reverse_burn_in=cfg.reverse_burn_in,
        bottom_rbm=cfg.bottom_rbm_ais, dataset=d.source, protocol=d.protocol,
    )  # fmt: skip
    ft = done["finetune"]
    errors = {f"{s}_error": error(cfg, d, ft.params, s) for s in ("test", "valid")}
    return {**out, **errors, "n_train": len(d.binary["train"]), "n_test": len(d.binary["test"]),
            "test_error_before_finetuning": float(ft.aux["test_error_before_finetuning"])}  # fmt: skip


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    stack = model(cfg, done)
    samples = dbn_lib.sample(key, stack, cfg.n_samples, cfg.sample_gibbs)
    return deep.digit_pictures(samples.v_probs, f"P(v|h1) after {cfg.sample_gibbs} Gibbs sweeps "
                               "in the top RBM", stack[0].W)  # fmt: skip


def describe(cfg: Config) -> dict:
    arch = "-".join(map(str, [784, *sizes(cfg.hidden)]))
    return {"model": f"DBN {arch}",
            "lower_bound": f"variational bound, {cfg.q_samples} samples of Q per test digit; log "
            "Z_top by forward and reverse AIS from a base-rate model (stochastic)",
            "finetune": f"MLP {arch}-10 initialised from the DBN, inputs {cfg.ft_inputs}"}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="dbn_mnist",
    published=lambda c: {"test_loglik_lower_bound": "dbn_500_2000"} if c.hidden == "500,2000" else {},
    presets=PRESETS,
    load=lambda cfg: cfg.load_data(),
    phases=phases,
    evaluate=evaluate,
    pictures=pictures,
    sample=lambda c, d, done, key, n: dbn_lib.sample(key, model(c, done), n, c.sample_gibbs).v,
    describe=describe,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate}, momentum={c.momentum}, "
    f"ft_learning_rate={c.ft_learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
