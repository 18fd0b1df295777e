"""Flax (Linen) modules for directed and autoregressive nets, used as pure ``(apply_fn, params)``
pairs so they vmap over seeds and hyper-parameters like every energy in :mod:`egm.energies`;
plus the DBN (a stack of RBMs) and the MLP initialised from pretrained weights.

Layer order: ``egm.models`` may use ``egm.energies``, ``egm.samplers`` and ``egm.estimators``
(AIS, exact enumeration, importance sampling, gradient estimators); ``egm.train`` and
``egm.eval`` may use the models, never the reverse.
"""

from egm.models import (
    dbn,
    deep_nade,
    draw,
    fvsbn,
    made,
    mlp,
    nade,
    neural_ar,
    sbn,
    vae,
)
from egm.models._autoregressive import (
    check_ordering,
    ensemble_log_likelihood,
    observed_first_ordering,
    sample_sequential,
)
from egm.models._masks import MADEMasks, made_masks
from egm.models.deep_nade import DeepNADE
from egm.models.draw import DRAW
from egm.models.fvsbn import FVSBN
from egm.models.made import MADE
from egm.models.mlp import MLP, mlp_params_from_rbms
from egm.models.nade import NADE
from egm.models.neural_ar import NeuralAutoregressive
from egm.models.sbn import SBNInferenceNet, SigmoidBeliefNet
from egm.models.vae import VAE

__all__ = [
    "DRAW",
    "FVSBN",
    "MADE",
    "MADEMasks",
    "MLP",
    "NADE",
    "VAE",
    "DeepNADE",
    "NeuralAutoregressive",
    "SBNInferenceNet",
    "SigmoidBeliefNet",
    "check_ordering",
    "dbn",
    "deep_nade",
    "draw",
    "ensemble_log_likelihood",
    "fvsbn",
    "made",
    "made_masks",
    "mlp",
    "mlp_params_from_rbms",
    "nade",
    "neural_ar",
    "observed_first_ordering",
    "sample_sequential",
    "sbn",
    "vae",
]
