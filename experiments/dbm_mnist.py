"""Deep Boltzmann machine 784-500-1000 on binarized MNIST (Salakhutdinov & Hinton 2009, §20.4).

Variants: ``pretrained`` (greedy pretraining with doubled inputs, phases ``pretrain0``/``1``,
then joint PCD with a mean-field positive phase, ``joint``) and ``centered`` (Montavon &
Müller 2012, joint training from random init).  Evaluation: AIS bracket on log Z and the
mean-field bound on test and train digits (:func:`egm.eval.deep.dbm_evaluation`); test error
of an MLP on ``[v, q(h²|v)]`` fine-tuned from the DBM on the grey digits (``finetune``;
``--ft_inputs binary``: the binarized ones; ``--ft_patience p``: keep its epoch of lowest
validation error, stop after p without a lower one); block-Gibbs samples.  Resumes by phase.

    python experiments/dbm_mnist.py --config tiny                 # smoke test, seconds
    python experiments/dbm_mnist.py --config paper                # pretrained, the paper's setting
    python experiments/dbm_mnist.py --config paper_centered       # centered, random init

Published (Salakhutdinov & Hinton 2009): bound -84.62 nats, test error 0.95 %; ours: BUILD_NOTES.md
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from egm import data, run, train
from egm.energies import dbm
from egm.eval.deep import dbm_evaluation
from egm.run import deep
from egm.run.config import at_least, field, greater_than, one_of, patience_field
from egm.train import classifier, dbm_step, greedy


@dataclasses.dataclass(frozen=True)
class Config(deep.DBMFields):
    variant: str = field("pretrained", check=one_of("pretrained", "centered"))
    pretrain_epochs: int = field(20, check=at_least(1))
    pretrain_lr: float = field(0.005, check=greater_than(0), sweep=True)
    finetune_epochs: int = field(10, check=at_least(0))
    finetune_lr: float = field(1e-3, check=greater_than(0), sweep=True, help="Adam")
    ft_patience: int | None = patience_field("validation error of the fine-tuning")
    ft_inputs: str = deep.ft_inputs_field()
    reverse_start: str = field("forward", check=one_of("forward", "chains"), eval_only=True,
                               help="reverse AIS starts from the forward chains or the PCD chains")  # fmt: skip
    workdir: str = field("runs/dbm_mnist", eval_only=True)

    def centered(self) -> bool:
        return self.variant == "centered"

    def mean_field_init(self) -> str:
        return "bottom_up" if self.variant == "pretrained" else "half"


# fmt: off
PRESETS = {
    "default": Config(),
    "tiny": Config(n_h1=16, n_h2=12, pretrain_epochs=1, epochs=2, n_chains=20, ais_chains=8,
                   ais_temps=100, reverse_burn_in=0, mf_max_iter=20, finetune_epochs=1,
                   n_samples=16, sample_sweeps=10, progress=False, workdir="runs/dbm_mnist_tiny"),
    # Salakhutdinov & Hinton (2009): 100 + 100 pretraining, 500 joint (PCD-5), 100 fine-tuning
    # epochs; joint lr 0.001, momentum 0.5 (0.005 / 0.9 wrecked the pretrained model; BUILD_NOTES)
    "paper": Config(source="auto", pretrain_epochs=100, epochs=500, k=5, learning_rate=0.001,
                    momentum=0.5, finetune_epochs=100, checkpoint_every=5,
                    workdir="runs/dbm_mnist_paper"),
    # Montavon & Müller (2012): centered, random init, no pretraining; stable at lr 0.005.
    "paper_centered": Config(source="auto", variant="centered", epochs=500, finetune_epochs=100,
                             checkpoint_every=5, workdir="runs/dbm_mnist_paper_centered"),
}
# fmt: on


def train_mean(d: data.BinarizedMNIST):  # the base rates: centering, sampling's start
    return jnp.mean(jnp.asarray(d.binary["train"]), axis=0)


def init_params(cfg: Config, d: data.BinarizedMNIST, key, done):
    if cfg.variant == "pretrained":
        return dbm.from_pretrained_rbms(greedy.stacked(done, 2, "pretrain")), None
    return dbm_step.init_centered_params(key, (784, cfg.n_h1, cfg.n_h2), train_mean(d))


def clf(cfg: Config) -> dbm_step.DBMClassifier:
    return dbm_step.dbm_classifier((cfg.n_h1, cfg.n_h2), tol=cfg.mf_tol, max_iter=cfg.mf_max_iter, init=cfg.mean_field_init())  # fmt: skip


def error(cfg: Config, d: data.BinarizedMNIST, params, split: str) -> float:
    return classifier.classification_error(clf(cfg).logits, params, deep.ft_digits(cfg, d, split),
                                           d.labels[split])  # fmt: skip


def init_finetune(cfg: Config, d: data.BinarizedMNIST, key, done):
    _, mlp = dbm_step.init_dbm_classifier(key, done["joint"].params)
    return train.init_state(mlp, train.adam(cfg.finetune_lr), aux=done["joint"].params)


def phases(cfg: Config) -> list[run.Phase]:
    specs = lambda c: greedy.dbm_pretraining_specs(  # noqa: E731
        (c.n_h1, c.n_h2), epochs=c.pretrain_epochs, batch_size=c.batch_size, momentum=0.9,
        learning_rate=c.pretrain_lr, weight_decay=c.weight_decay, n_chains=c.n_chains)  # fmt: skip
    objective = lambda c: classifier.classifier_objective(clf(c).apply, clf(c).features)  # noqa: E731
    return [
        *(greedy.greedy_phases(cfg, specs, prefix="pretrain") if cfg.variant == "pretrained" else []),
        deep.dbm_phase("joint", init_params),
        deep.classifier_phase("finetune", init_finetune, objective,
                              lambda c, d: train.adam(c.finetune_lr), epochs=lambda c: c.finetune_epochs,
                              inputs=lambda c, d: deep.ft_digits(c, d, "train"),
                              valid_error=lambda c, d, st: error(c, d, (st.params, st.aux), "valid"),
                              select=cfg.ft_patience is not None),  # --ft_patience: early stopping
    ]  # fmt: skip


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    params = done["joint"].params
    start = done["joint"].chains[1::2] if cfg.reverse_start == "chains" else None
    out = dbm_evaluation(key, params, d.binary, n_chains=cfg.ais_chains, n_temps=cfg.ais_temps,
                         reverse_burn_in=cfg.reverse_burn_in, reverse_start=start, mf_tol=cfg.mf_tol,
                         mf_max_iter=cfg.mf_max_iter, mf_init=cfg.mean_field_init(), dataset=d.source,
                         protocol=d.protocol)  # fmt: skip
    err = error(cfg, d, (done["finetune"].params, params), "test")  # the fine-tuned classifier's
    return {**out, "test_error": err, "n_train": int(d.train.shape[0])}


def sample(cfg: Config, d: data.BinarizedMNIST, done, key, n: int) -> tuple:
    """``n`` chains of ``sample_sweeps`` block-Gibbs sweeps from v ~ Bernoulli(train mean)."""
    return dbm.sample(key, done["joint"].params, n, cfg.sample_sweeps, train_mean(d))


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    params = done["joint"].params
    final = sample(cfg, d, done, key, cfg.n_samples)
    v_prob = jax.nn.sigmoid(jax.vmap(lambda *s: dbm.layer_logits(params, s, 0))(*final))
    return deep.digit_pictures(v_prob, f"P(v|h1) after {cfg.sample_sweeps} Gibbs sweeps",
                               params.weights[0])  # fmt: skip


EXPERIMENT = run.Experiment(
    name="dbm_mnist",
    published=lambda c: {"test_loglik_bound": "dbm_500_1000", "test_error": "dbm_500_1000_error"}
    if (c.n_h1, c.n_h2) == (500, 1000) else {},
    presets=PRESETS, load=lambda cfg: cfg.load_data(), phases=phases, evaluate=evaluate,
    pictures=pictures, sample=lambda cfg, d, done, key, n: sample(cfg, d, done, key, n)[0],
    describe=lambda c: {
        "model": f"DBM 784-{c.n_h1}-{c.n_h2} ({c.variant})",
        "training": ("greedy pretraining with doubled inputs; " if c.variant == "pretrained"
                     else "centered; ") + f"joint PCD-{c.k}, {c.mean_field_iters} mean-field sweeps",
        "finetune": f"MLP on [v, q(h2|v)] initialised from the DBM, inputs {c.ft_inputs}"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate}, momentum={c.momentum})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
