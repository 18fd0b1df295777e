"""Run plumbing of the sequence RBMs (§20.7): phases, evaluation and pictures of an
RNN-RBM or conditional RBM experiment on a polyphonic set (experiments/rnnrbm_jsb.py).

The experiment's config carries the fields read here: ``model`` ("rnn_rbm", "crbm" or
"rnn_nade"),
``n_hidden``, ``n_recurrent``, ``order``, ``k``, ``pretrain_epochs``, ``pretrain_batch_size``,
``learning_rate``, ``patience``, ``eval_splits``, ``loglik``, ``ais_chains``, ``ais_temps``, ``acc_chains``,
``acc_sweeps``, ``gen_steps``, ``gen_sweeps`` and ``seed``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from egm.data import polyphonic
from egm.energies import rbm
from egm.eval.record import LogLikelihood
from egm.models import rnn_nade
from egm.models import rnn_rbm as seq
from egm.run.driver import Phase
from egm.train.optim import adam
from egm.train.state import TrainState, init_state, make_step

PROTOCOL = "88-key piano roll, quarter notes; log p(v_t | v_<t) per time step"


def pretrain_phase() -> Phase:
    """Pretraining of the frame model on every training frame: the RBM's ``W, b_v, b_h`` by
    CD-k (the paper's §3; :func:`egm.models.rnn_rbm.frame_cd_objective`), or the RNN-NADE's
    NADE by maximum likelihood (:func:`egm.models.rnn_nade.frame_nade_objective`)."""

    def init(c, d, key, done):
        mean = jnp.asarray(d.splits["train"].frames().mean(0))
        if c.model == "rnn_nade":
            p = rnn_nade.frame_nade_init(key, polyphonic.N_KEYS, c.n_hidden, data_mean=mean)
        else:
            p = _rbm_init(key, polyphonic.N_KEYS, c.n_hidden, mean)
        return init_state(p, adam(c.learning_rate))

    def objective(c):
        return (
            rnn_nade.frame_nade_objective()
            if c.model == "rnn_nade"
            else seq.frame_cd_objective(c.k)
        )

    return Phase(
        name="pretrain", init=init,
        step=lambda c, d, done: make_step(objective(c), adam(c.learning_rate)),
        epochs=lambda c: c.pretrain_epochs, batch_size=lambda c: c.pretrain_batch_size,
        train_data=lambda c, d, done: d.splits["train"].frames(),
    )  # fmt: skip


@functools.partial(jax.jit, static_argnums=(1, 2))  # one program, not one per eager op
def _rbm_init(key, n_visible, n_hidden, mean):
    return rbm.init(key, n_visible, n_hidden, data_mean=mean)


def init_train(c: Any, d: polyphonic.Polyphonic, key: jax.Array, done: dict) -> TrainState:
    """The sequence model's initial state: the pretrained RBM's ``W, b_v, b_h`` if there was
    pretraining, base-rate visible biases otherwise (:func:`egm.models.rnn_rbm.rnn_rbm_init`,
    :func:`egm.models.rnn_rbm.crbm_init`)."""
    pre = done["pretrain"].params if "pretrain" in done else None
    mean = d.splits["train"].frames().mean(0)
    if c.model == "rnn_nade":
        p = rnn_nade.rnn_nade_init(key, polyphonic.N_KEYS, c.n_hidden, c.n_recurrent,
                                   data_mean=mean, nade_params=pre)  # fmt: skip
    elif c.model == "rnn_rbm":
        p = seq.rnn_rbm_init(key, polyphonic.N_KEYS, c.n_hidden, c.n_recurrent, data_mean=mean,
                             rbm_params=pre)  # fmt: skip
    else:
        p = seq.crbm_init(key, polyphonic.N_KEYS, c.n_hidden, c.order, data_mean=mean)
        if pre is not None:
            p = p._replace(W=pre.W, b_v=pre.b, b_h=pre.c)
    return init_state(p, adam(c.learning_rate))


def phases(c: Any) -> list[Phase]:
    """Pretraining (when ``pretrain_epochs`` > 0), then CD-k through time
    (:func:`egm.models.rnn_rbm.sequence_objective`) or, for the RNN-NADE, the exact gradient
    through time (:func:`egm.models.rnn_nade.sequence_objective`).  With ``patience`` set, the
    training phase keeps the epoch of the best exact validation log-likelihood per step and
    stops after ``patience`` epochs without a better one (0: trains every epoch); the driver
    does the selection (:class:`egm.run.Phase` ``select``)."""

    def step(c, d, done):
        obj = (
            rnn_nade.sequence_objective() if c.model == "rnn_nade" else seq.sequence_objective(c.k)
        )
        return make_step(obj, adam(c.learning_rate))

    select = None if c.patience is None else "valid_nll_per_step"
    train = Phase(name="train", init=init_train, step=step, select=select,
                  monitor=None if select is None else _valid_monitor)  # fmt: skip
    return ([pretrain_phase()] if c.pretrain_epochs else []) + [train]


def _exact_log_likelihood(c: Any, params: Any, s: polyphonic.PianoRolls) -> tuple:
    """``(ll, v, b_v, b_h)`` of a split with an exact ``log p(v_t | v_<t)``."""
    if c.model == "rnn_nade":
        return rnn_nade.split_log_likelihood(params, s.rolls, s.mask)
    return seq.split_log_likelihood_exact(params, s.rolls, s.mask)


def _valid_monitor(c: Any, d: polyphonic.Polyphonic, state: Any, key: jax.Array, e: int) -> dict:
    """The exact negative log-likelihood per step of the validation split (the selection
    criterion)."""
    ll = _exact_log_likelihood(c, state.params, d.splits["valid"])[0]
    return {"valid_nll_per_step": -float(np.mean(ll))}


def loglik_method(c: Any) -> str:
    """``"exact"`` (enumerated ``log Z_t``, hidden layer ≤ 16, or the RNN-NADE's own exact
    conditionals) or ``"ais"``; ``loglik="auto"`` picks by model and ``n_hidden``."""
    if c.model == "rnn_nade":
        return "exact"
    return ("exact" if c.n_hidden <= 16 else "ais") if c.loglik == "auto" else c.loglik


def evaluate(c: Any, d: polyphonic.Polyphonic, done: dict, key: jax.Array) -> dict:
    """Per-step log-likelihood ``log p(v_t | v_<t)`` of every real frame of each split in
    ``eval_splits`` (a :class:`LogLikelihood`: ``log Z_t`` enumerated, or by AIS, a stochastic
    lower bound on ``log Z_t`` and so an upper estimate of the log-likelihood) and, on the test split, the frame accuracy
    of Bay et al. (2009) from Gibbs marginals (:func:`egm.models.rnn_rbm.marginals_gibbs`)."""
    params, out = done["train"].params, {}
    k_ais, k_acc = jax.random.split(key)
    method = loglik_method(c)
    for split in c.eval_splits.split(","):
        s = d.splits[split]
        extra, more = {}, {}
        if method == "exact":
            ll, v, b_v, b_h = _exact_log_likelihood(c, params, s)
        else:
            v, b_v, b_h = seq.split_frames(params, s.rolls, s.mask)
            log_z, se = map(np.asarray, seq.log_partition_ais(
                jax.random.fold_in(k_ais, len(v)), params.W, b_v, b_h,
                n_chains=c.ais_chains, n_temps=c.ais_temps))  # fmt: skip
            ll = np.asarray(seq.frame_log_unnormalised(params.W, v, b_v, b_h)) - log_z
            extra = {"stderr": float(np.sqrt(np.sum(se**2)) / len(v)), "bound": "upper"}
            more = {"chains": c.ais_chains, "temperatures": c.ais_temps}
        counts = {"frames": len(v), "pieces": len(s.lengths), **more}
        out[f"{split}_loglik_per_step"] = LogLikelihood.from_per_example(
            ll, method, counts=counts, dataset=polyphonic.describe(d), split=split,
            protocol=PROTOCOL, **extra,
        )  # fmt: skip
        if split == "test" and c.model == "rnn_nade":
            marg = rnn_nade.marginals_sampled(k_acc, params, b_v, b_h, n_samples=c.acc_chains)
            out["test_frame_accuracy"], _ = seq.frame_accuracy(marg, v)
        elif split == "test":
            marg = seq.marginals_gibbs(k_acc, params.W, b_v, b_h, n_chains=c.acc_chains,
                                       sweeps=c.acc_sweeps)  # fmt: skip
            out["test_frame_accuracy"], _ = seq.frame_accuracy(marg, v)
    out["loglik_method"] = method
    return out


def generated(c: Any, done: dict, key: jax.Array) -> np.ndarray:
    """A sampled piano roll ``(gen_steps, 88)`` (:func:`egm.models.rnn_rbm.generate`, or the
    RNN-NADE's exact ancestral :func:`egm.models.rnn_nade.generate`)."""
    params = done["train"].params
    if c.model == "rnn_nade":
        return np.asarray(rnn_nade.generate(key, params, c.gen_steps))
    return np.asarray(seq.generate(key, params, c.gen_steps, sweeps=c.gen_sweeps))


def pictures(c: Any, d: polyphonic.Polyphonic, done: dict, key: jax.Array) -> dict:
    """``generated.png``: a sampled piano roll, keys up, time right, notes dark."""
    roll = generated(c, done, key)
    img = np.kron(1.0 - roll.T[::-1], np.ones((3, 3)))
    return {"generated.png": (img, f"{c.model}: {c.gen_steps} sampled quarter notes")}


def files(c: Any, d: polyphonic.Polyphonic, done: dict, path: str) -> None:
    """``generated.mid`` when the optional ``pretty_midi`` is installed (``egm[midi]``)."""
    from egm.eval import midi

    if midi.available():
        midi.write_midi(generated(c, done, jax.random.key(c.seed)), f"{path}/generated.mid")


def describe(c: Any) -> dict:
    """The model and training strings of ``results.json``."""
    model = {"rnn_rbm": "RNN-RBM", "crbm": "conditional RBM", "rnn_nade": "RNN-NADE"}[c.model]
    frame = "NADE" if c.model == "rnn_nade" else "RBM"
    grad = "exact gradient" if c.model == "rnn_nade" else f"CD-{c.k}"
    return {
        "model": f"{model} 88-{c.n_hidden}"
        + (f", order {c.order}" if c.model == "crbm" else f", {c.n_recurrent} recurrent"),
        "training": f"{frame} pretraining {c.pretrain_epochs} epochs, {grad} through time "
        f"{c.epochs} epochs, adam {c.learning_rate}",
    }
