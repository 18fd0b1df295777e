"""Training: optimisers, train-step factories, the epoch scan and loop, sweeps, checkpoints."""

from egm.train import classifier, dbm_step, greedy, helmholtz
from egm.train.checkpoint import Checkpointer
from egm.train.classifier import (
    ClassifierState,
    classification_error,
    init_classifier_state,
    make_classifier_step,
)
from egm.train.dbm_step import DBMStepConfig, DBMTrainState
from egm.train.fe_step import (
    FEStepConfig,
    FETrainState,
    check_acceptance,
    fe_data_check,
    init_fe_train_state,
    make_fe_train_step,
)
from egm.train.greedy import LayerSpec, pretrain_stack
from egm.train.likelihood_step import LossTrainState, init_loss_state, make_loss_step
from egm.train.loop import check_divergence, epoch_key, fit, make_epoch, metrics_to_floats
from egm.train.optim import linear_decay, matrices_only, sgd
from egm.train.rbm_step import (
    Offsets,
    RBMStepConfig,
    RBMTrainState,
    init_train_state,
    make_train_step,
    rbm_data_check,
)
from egm.train.sweep import set_hyperparams, stack, sweep_epoch, sweep_keys, unstack

__all__ = [
    "FEStepConfig",
    "FETrainState",
    "check_acceptance",
    "fe_data_check",
    "init_fe_train_state",
    "make_fe_train_step",
    "LossTrainState",
    "init_loss_state",
    "make_loss_step",
    "ClassifierState",
    "LayerSpec",
    "classification_error",
    "classifier",
    "greedy",
    "helmholtz",
    "init_classifier_state",
    "make_classifier_step",
    "pretrain_stack",
    "Checkpointer",
    "DBMStepConfig",
    "DBMTrainState",
    "Offsets",
    "RBMStepConfig",
    "RBMTrainState",
    "check_divergence",
    "dbm_step",
    "epoch_key",
    "fit",
    "init_train_state",
    "linear_decay",
    "make_epoch",
    "make_train_step",
    "metrics_to_floats",
    "rbm_data_check",
    "matrices_only",
    "set_hyperparams",
    "sgd",
    "stack",
    "sweep_epoch",
    "sweep_keys",
    "unstack",
]
