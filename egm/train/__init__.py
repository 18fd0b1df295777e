"""Training: optimisers, train-step factories, the epoch scan and loop, sweeps, checkpoints."""

from egm.train import classifier, dbm_step, greedy, helmholtz, shard
from egm.train.checkpoint import Checkpointer
from egm.train.classifier import classification_error, classifier_objective
from egm.train.dbm_step import DBMStepConfig, dbm_objective, init_dbm_state
from egm.train.fe_step import (
    FEStepConfig,
    check_acceptance,
    fe_data_check,
    fe_objective,
    init_fe_state,
    make_fe_step,
)
from egm.train.greedy import LayerSpec, pretrain_stack
from egm.train.helmholtz import HelmholtzConfig, helmholtz_objective, init_helmholtz_state
from egm.train.loop import check_divergence, epoch_key, fit, make_epoch, metrics_to_floats
from egm.train.optim import adam, linear_decay, matrices_only, sgd
from egm.train.rbm_step import (
    Offsets,
    RBMStepConfig,
    init_rbm_state,
    rbm_data_check,
    rbm_objective,
)
from egm.train.shard import (
    batch_sharded_step,
    data_mesh,
    data_parallel_epoch,
    replicate,
    shard_batch,
    shard_sweep,
    sharded_sweep_epoch,
    sweep_mesh,
)
from egm.train.state import (
    ObjectiveOut,
    Player,
    TrainState,
    init_multi_state,
    init_state,
    loss_objective,
    make_multi_step,
    make_step,
)
from egm.train.sweep import (
    grid_states,
    grid_step,
    map_epoch,
    set_hyperparams,
    stack,
    sweep_epoch,
    sweep_keys,
    unstack,
)

__all__ = [
    "Checkpointer",
    "DBMStepConfig",
    "FEStepConfig",
    "HelmholtzConfig",
    "LayerSpec",
    "ObjectiveOut",
    "Offsets",
    "Player",
    "RBMStepConfig",
    "TrainState",
    "adam",
    "batch_sharded_step",
    "check_acceptance",
    "check_divergence",
    "classification_error",
    "classifier",
    "classifier_objective",
    "data_mesh",
    "data_parallel_epoch",
    "dbm_objective",
    "dbm_step",
    "epoch_key",
    "fe_data_check",
    "fe_objective",
    "fit",
    "grid_states",
    "grid_step",
    "greedy",
    "helmholtz",
    "helmholtz_objective",
    "init_dbm_state",
    "init_fe_state",
    "init_helmholtz_state",
    "init_multi_state",
    "init_rbm_state",
    "init_state",
    "linear_decay",
    "loss_objective",
    "make_epoch",
    "make_fe_step",
    "make_multi_step",
    "make_step",
    "matrices_only",
    "metrics_to_floats",
    "pretrain_stack",
    "rbm_data_check",
    "rbm_objective",
    "replicate",
    "set_hyperparams",
    "sgd",
    "shard",
    "shard_batch",
    "shard_sweep",
    "sharded_sweep_epoch",
    "stack",
    "sweep_epoch",
    "map_epoch",
    "sweep_keys",
    "sweep_mesh",
    "unstack",
]
