"""RNN-RBM (or conditional RBM) on JSB Chorales: log-likelihood per time step, frame accuracy.

Boulanger-Lewandowski, Bengio & Vincent (2012), §20.7: each frame's RBM gets its biases from an
RNN state (``--model rnn_rbm``) or from the previous ``order`` frames (``--model crbm``, Taylor
et al. 2007); RBM pretraining of W on all training frames, then CD-k at every time step with
back-propagation through time (egm.models.rnn_rbm).  Test log-likelihood per time step with
``log Z_t`` of every frame's RBM exact (hidden layer ≤ 16 units, enumerated) or by AIS; frame-level
accuracy ACC = TP/(TP+FP+FN) (Bay et al. 2009) of the predicted frame (P(v_ti | past) > 0.5);
published: -6.27 nats per step (results.json ``published``, recalled).

    python experiments/rnnrbm_jsb.py --config tiny        # smoke test, seconds
    python experiments/rnnrbm_jsb.py                      # default (truncated schedule), minutes
    python experiments/rnnrbm_jsb.py --config paper       # the paper's sizes, 200 epochs
    python experiments/rnnrbm_jsb.py --model crbm --order 3

Outputs in ``--workdir``: results.json, metrics.jsonl, checkpoints/, generated.png (a sampled
piano roll) and, with pretty_midi installed (``pip install egm[midi]``), generated.mid.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import run
from egm.data import polyphonic
from egm.energies import rbm
from egm.eval.record import LogLikelihood
from egm.models import rnn_rbm as seq
from egm.run.config import RunFields, at_least, field, greater_than, one_of
from egm.train.optim import adam
from egm.train.rbm_step import RBMStepConfig, init_rbm_state, rbm_objective
from egm.train.state import init_state, make_step


@dataclasses.dataclass(frozen=True)
class Config(RunFields):
    model: str = field("rnn_rbm", check=one_of("rnn_rbm", "crbm"))
    data_dir: str | None = field(None, help="folder holding jsb_chorales/jsb-chorales-quarter.json")
    n_hidden: int = field(150, check=at_least(1))
    n_recurrent: int = field(100, check=at_least(1))
    order: int = field(3, check=at_least(1), help="past frames of the conditional RBM")
    k: int = field(15, check=at_least(1), help="Gibbs sweeps per frame (CD-k)")
    pretrain_epochs: int = field(20, check=at_least(0))
    epochs: int = field(30, check=at_least(1))
    batch_size: int = field(10, check=at_least(1), help="sequences per update")
    pretrain_batch_size: int = field(100, check=at_least(1), help="frames per RBM update")
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    eval_splits: str = field("test", check=one_of("valid,test", "test"), eval_only=True)
    loglik: str = field("auto", check=one_of("auto", "exact", "ais"), eval_only=True)
    ais_chains: int = field(16, check=at_least(2), eval_only=True)
    ais_temps: int = field(1000, check=at_least(3), eval_only=True)
    acc_chains: int = field(10, check=at_least(1), eval_only=True)
    acc_sweeps: int = field(50, check=at_least(1), eval_only=True)
    gen_steps: int = field(64, check=at_least(1), eval_only=True)
    gen_sweeps: int = field(25, check=at_least(1), eval_only=True)
    workdir: str = field("runs/rnnrbm_jsb", eval_only=True)


PRESETS = {
    "default": Config(progress=True),
    "tiny": Config(n_hidden=8, n_recurrent=8, k=1, pretrain_epochs=1, epochs=2, batch_size=32,
                   pretrain_batch_size=500, learning_rate=3e-3, acc_chains=2, acc_sweeps=5,
                   gen_steps=16, gen_sweeps=5, checkpoint_every=1, progress=False,
                   workdir="runs/rnnrbm_jsb_tiny"),
    # sizes of the paper / the deeplearning.net tutorial: 150 hidden, 100 recurrent, CD-15
    "paper": Config(pretrain_epochs=100, epochs=200, ais_chains=100, ais_temps=14500,
                    eval_splits="valid,test",
                    workdir="runs/rnnrbm_jsb_paper"),
}  # fmt: skip


def load(cfg: Config) -> polyphonic.Polyphonic:
    return polyphonic.load_polyphonic("jsb", cfg.data_dir)


def _pretrain_phase() -> run.Phase:
    """RBM pretraining of ``W, b_v, b_h`` on every training frame (CD-k, the paper's §3)."""

    def init(c, d, key, done):
        mean = jnp.asarray(d.splits["train"].frames().mean(0))
        k_w, k_s = jax.random.split(key)
        params = rbm.init(k_w, polyphonic.N_KEYS, c.n_hidden, data_mean=mean)
        return init_rbm_state(k_s, params, adam(c.learning_rate), mean, 1)

    step_cfg = lambda c: RBMStepConfig(estimator="cd", k=c.k, centering=False)
    return run.Phase(
        name="pretrain", init=init,
        step=lambda c, d, done: make_step(rbm_objective(step_cfg(c)), adam(c.learning_rate)),
        epochs=lambda c: c.pretrain_epochs, batch_size=lambda c: c.pretrain_batch_size,
        train_data=lambda c, d, done: d.splits["train"].frames(),
    )  # fmt: skip


def _init(c: Config, d, key, done):
    pre = done["pretrain"].params if "pretrain" in done else None
    mean = d.splits["train"].frames().mean(0)
    if c.model == "rnn_rbm":
        p = seq.rnn_rbm_init(key, polyphonic.N_KEYS, c.n_hidden, c.n_recurrent, data_mean=mean,
                             rbm_params=pre)  # fmt: skip
    else:
        p = seq.crbm_init(key, polyphonic.N_KEYS, c.n_hidden, c.order, data_mean=mean)
        if pre is not None:
            p = p._replace(W=pre.W, b_v=pre.b, b_h=pre.c)
    return init_state(p, adam(c.learning_rate))


def phases(c: Config) -> list[run.Phase]:
    train = run.Phase(
        name="train", init=_init,
        step=lambda c, d, done: make_step(seq.sequence_objective(c.k), adam(c.learning_rate)),
    )  # fmt: skip
    return ([_pretrain_phase()] if c.pretrain_epochs else []) + [train]


def _method(c: Config) -> str:
    return ("exact" if c.n_hidden <= 16 else "ais") if c.loglik == "auto" else c.loglik


def evaluate(c: Config, d, done, key) -> dict:
    params, out = done["train"].params, {}
    k_ais, k_acc = jax.random.split(key)
    method = _method(c)
    for split in c.eval_splits.split(","):
        s = d.splits[split]
        v, b_v, b_h = seq.split_frames(params, s.rolls, s.mask)
        counts, extra = {"frames": len(v), "pieces": len(s.lengths)}, {}
        if method == "exact":
            log_z = np.asarray(seq.log_partition_exact(params.W, b_v, b_h))
        else:
            log_z, se = map(np.asarray, seq.log_partition_ais(
                jax.random.fold_in(k_ais, len(v)), params.W, b_v, b_h,
                n_chains=c.ais_chains, n_temps=c.ais_temps))  # fmt: skip
            counts |= {"chains": c.ais_chains, "temperatures": c.ais_temps}
            extra = {"stderr": float(np.sqrt(np.sum(se**2)) / len(v)), "bound": "upper"}
        ll = np.asarray(seq.frame_log_unnormalised(params.W, v, b_v, b_h)) - log_z
        out[f"{split}_loglik_per_step"] = LogLikelihood.from_per_example(
            ll, method, counts=counts, dataset=polyphonic.describe(d), split=split,
            protocol="88-key piano roll, quarter notes; log p(v_t | v_<t) per time step",
            **extra,
        )  # fmt: skip
        if split == "test":
            marg = seq.marginals_gibbs(k_acc, params.W, b_v, b_h, n_chains=c.acc_chains,
                                       sweeps=c.acc_sweeps)  # fmt: skip
            out["test_frame_accuracy"], _ = seq.frame_accuracy(marg, v)
    out["loglik_method"] = method
    return out


def _generated(c: Config, done, key) -> np.ndarray:
    return np.asarray(seq.generate(key, done["train"].params, c.gen_steps, sweeps=c.gen_sweeps))


def pictures(c: Config, d, done, key) -> dict:
    roll = _generated(c, done, key)
    img = np.kron(1.0 - roll.T[::-1], np.ones((3, 3)))  # keys up, time right; notes dark
    return {"generated.png": (img, f"{c.model}: {c.gen_steps} sampled quarter notes")}


def files(c: Config, d, done, path) -> None:
    from egm.eval import midi

    if midi.available():  # optional extra: pretty_midi
        midi.write_midi(_generated(c, done, jax.random.key(c.seed)), f"{path}/generated.mid")


EXPERIMENT = run.Experiment(
    name="rnnrbm_jsb",
    presets=PRESETS,
    load=load,
    phases=phases,
    evaluate=evaluate,
    pictures=pictures,
    files=files,
    describe=lambda c: {
        "model": f"{'RNN-RBM' if c.model == 'rnn_rbm' else 'conditional RBM'} 88-{c.n_hidden}"
        + (f", {c.n_recurrent} recurrent" if c.model == "rnn_rbm" else f", order {c.order}"),
        "training": f"RBM pretraining {c.pretrain_epochs} epochs, CD-{c.k} through time "
        f"{c.epochs} epochs, adam {c.learning_rate}",
    },
    published=lambda c: (
        {"test_loglik_per_step": "rnnrbm_jsb"} if c.model == "rnn_rbm" and c.n_hidden == 150 else {}
    ),
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
