"""RNN-RBM, RNN-NADE or conditional RBM on JSB Chorales: log-likelihood per step, frame accuracy.

Boulanger-Lewandowski, Bengio & Vincent (2012), §20.7: each frame's RBM gets its biases from an
RNN state (``--model rnn_rbm``) or from the previous ``order`` frames (``--model crbm``, Taylor
et al. 2007); RBM pretraining of W on all training frames, then CD-k at every time step with
back-propagation through time (egm.models.rnn_rbm).  ``--model rnn_nade`` replaces each frame's
RBM by a NADE (the paper's §4; egm.models.rnn_nade): exact likelihood and exact gradient.  Test log-likelihood per time step with
``log Z_t`` of every frame's RBM exact (hidden layer ≤ 16 units, enumerated) or by AIS; frame-level
accuracy ACC = TP/(TP+FP+FN) (Bay et al. 2009) of the predicted frame (P(v_ti | past) > 0.5);
published: -6.27 nats per step for the RNN-RBM, -5.56 for the RNN-NADE (recalled).

    python experiments/rnnrbm_jsb.py --config tiny        # smoke test, seconds
    python experiments/rnnrbm_jsb.py                      # default (truncated schedule), minutes
    python experiments/rnnrbm_jsb.py --config paper       # the paper's sizes, 200 epochs
    python experiments/rnnrbm_jsb.py --model crbm --order 3
    python experiments/rnnrbm_jsb.py --model rnn_nade    # exact likelihood per step
    python experiments/rnnrbm_jsb.py --config paper --model rnn_nade --patience 20  # early stopping

Outputs in ``--workdir``: results.json, metrics.jsonl, checkpoints/, generated.png (a sampled
piano roll) and, with pretty_midi installed (``pip install egm[midi]``), generated.mid.
"""

from __future__ import annotations

import dataclasses

from egm import run
from egm.data import polyphonic
from egm.errors import ConfigError
from egm.run import sequence
from egm.run.config import RunFields, at_least, field, greater_than, one_of, patience_field


@dataclasses.dataclass(frozen=True)
class Config(RunFields):
    model: str = field("rnn_rbm", check=one_of("rnn_rbm", "crbm", "rnn_nade"))
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
    patience: int | None = patience_field("exact validation NLL per step")
    eval_splits: str = field("test", check=one_of("valid,test", "test"), eval_only=True)
    loglik: str = field("auto", check=one_of("auto", "exact", "ais"), eval_only=True)
    ais_chains: int = field(16, check=at_least(2), eval_only=True)
    ais_temps: int = field(1000, check=at_least(3), eval_only=True)
    acc_chains: int = field(10, check=at_least(1), eval_only=True)
    acc_sweeps: int = field(50, check=at_least(1), eval_only=True)
    gen_steps: int = field(64, check=at_least(1), eval_only=True)
    gen_sweeps: int = field(25, check=at_least(1), eval_only=True)
    workdir: str = field("runs/rnnrbm_jsb", eval_only=True)

    def check(self) -> None:
        if self.model == "rnn_nade" and self.loglik == "ais":
            raise ConfigError("the RNN-NADE's likelihood is exact; --loglik ais is for the RBMs")
        if self.patience is not None and sequence.loglik_method(self) != "exact":
            raise ConfigError("--patience selects on the exact validation likelihood, which each "
                              "epoch needs: use --model rnn_nade or an RBM with n_hidden <= 16 "
                              "(AIS per epoch is too slow); or leave --patience unset")  # fmt: skip


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


EXPERIMENT = run.Experiment(
    name="rnnrbm_jsb",
    presets=PRESETS,
    load=load,
    phases=sequence.phases,
    evaluate=sequence.evaluate,
    pictures=sequence.pictures,
    files=sequence.files,
    describe=sequence.describe,
    published=lambda c: (
        {"test_loglik_per_step": {"rnn_rbm": "rnnrbm_jsb", "rnn_nade": "rnnnade_jsb"}[c.model]}
        if c.model != "crbm" and c.n_hidden == 150
        else {}
    ),
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
