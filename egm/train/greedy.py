r"""Greedy layer-wise pretraining of a stack of RBMs (§20.3, Hinton, Osindero & Teh 2006).

Layer ``l`` is an RBM trained (with :func:`egm.train.rbm_objective`, :func:`make_epoch`
and :func:`fit`) on the representation the layers below produce: ``x_0 = data`` and

.. math:: x_{l+1} = P(h = 1 \mid x_l) = σ(c_l + m_v\, x_l W_l)    \quad(\text{"mean"})

or one Bernoulli draw of it (``"sample"``), where ``m_v`` is the layer's number of tied
visible copies (:mod:`egm.train.rbm_step`): an RBM trained with ``visible_copies = 2``
infers its hidden units with ``2 Wᵀv + c`` (Salakhutdinov & Hinton 2009, the bottom
layer of DBM pretraining).  The stack is the DBN of :mod:`egm.models.dbn` or, with copies,
the pretraining of a DBM.

Resumable layer by layer: with ``checkpoint_dir`` each layer ``l`` checkpoints its train
state in ``checkpoint_dir/layer_l`` (:class:`egm.train.Checkpointer`) next to its spec; a
killed run restarted with the same arguments restores the finished layers and resumes the
interrupted one from its last checkpoint.  Epoch ``e`` of layer ``l`` uses the key
``fold_in(fold_in(key, l), e)`` and the propagated representation is a function of the
key and the trained parameters, so a resumed stack ends with the same parameters.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies import rbm
from egm.energies.rbm import RBMParams
from egm.errors import ConfigError
from egm.train.checkpoint import Checkpointer
from egm.train.loop import fit, make_epoch
from egm.train.optim import linear_decay, sgd
from egm.train.rbm_step import RBMStepConfig, init_rbm_state, rbm_objective
from egm.train.state import make_step

PROPAGATIONS = ("mean", "sample")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """How to train one RBM of the stack and what it hands to the next layer.

    ``n_hidden``: hidden units; ``epochs``, ``batch_size``, ``learning_rate`` (linearly
    decayed to 0 over the layer's run if ``lr_decay``), ``momentum``, ``weight_decay``:
    SGD (:func:`egm.train.sgd`); ``estimator`` ("pcd" | "cd"), ``k``, ``centering``,
    ``n_chains`` (persistent chains): the RBM step (:class:`RBMStepConfig`);
    ``visible_copies``/``hidden_copies``: tied copies (DBM pretraining); ``propagate``:
    the next layer's data are the hidden means ("mean") or one draw ("sample");
    ``binarization``: "none" (train on this layer's input as given) or "dynamic" (re-draw
    ``Bernoulli(input)`` every minibatch: with "mean" inputs from the layer below this fits
    the RBM to fresh samples ``h ~ Q(h|v)`` of the aggregated posterior, the distribution
    the DBN's variational bound evaluates it on, §20.3); ``init_scale``: std of the initial
    weights.
    """

    n_hidden: int
    epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay: bool = True
    estimator: str = "pcd"
    k: int = 1
    centering: bool = True
    n_chains: int = 100
    visible_copies: int = 1
    hidden_copies: int = 1
    propagate: str = "mean"
    binarization: str = "none"
    init_scale: float = 0.01

    def validate(self) -> LayerSpec:
        for name in ("n_hidden", "epochs", "batch_size", "n_chains"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"LayerSpec.{name} must be an integer >= 1, got {v!r}")
        if self.propagate not in PROPAGATIONS:
            raise ConfigError(
                f"LayerSpec.propagate must be one of {PROPAGATIONS}, got {self.propagate!r}"
            )
        if self.learning_rate <= 0:
            raise ConfigError(f"LayerSpec.learning_rate must be > 0, got {self.learning_rate}")
        self.step_config()  # validates estimator, k, copies
        return self

    def step_config(self) -> RBMStepConfig:
        return RBMStepConfig(
            estimator=self.estimator,
            k=self.k,
            centering=self.centering,
            visible_copies=self.visible_copies,
            hidden_copies=self.hidden_copies,
            binarization=self.binarization,
        ).validate()


def infer_up(
    params: RBMParams, x: Float[Array, "N V"], visible_copies: int = 1
) -> Float[Array, "N H"]:
    """``P(h = 1 | x) = σ(c + m_v xW)`` of an RBM trained with ``m_v`` tied visible copies."""
    return jax.nn.sigmoid(params.c + visible_copies * (jnp.asarray(x, jnp.float32) @ params.W))


_infer_up = jax.jit(infer_up, static_argnums=2)


def propagate(
    key: PRNGKeyArray, params: RBMParams, x: Float[Array, "N V"], spec: LayerSpec
) -> Float[Array, "N H"]:
    """The next layer's training data from this layer's: means or one Bernoulli draw."""
    p = _infer_up(params, x, spec.visible_copies)
    if spec.propagate == "sample":
        return jax.random.bernoulli(key, p).astype(jnp.float32)
    return p


def _unit_interval_check(n_visible: int):
    from egm.data.validate import check_shape, check_unit_interval

    def check(x) -> None:
        check_shape(x, n_visible, "layer input")
        check_unit_interval(x, "layer input")

    return check


def pretrain_stack(
    key: PRNGKeyArray,
    data: Float[Array, "N V"],
    specs: Sequence[LayerSpec],
    *,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    on_epoch_end: Callable[[int, int, Any, dict[str, Any]], dict[str, Any] | None] | None = None,
    on_layer_end: Callable[[int, RBMParams, Array], None] | None = None,
    progress: bool = False,
) -> list[RBMParams]:
    """Train ``len(specs)`` RBMs greedily, bottom-up; returns their parameters.

    ``data``: (N, V) values in [0, 1] (binary data or, for a higher layer, means).
    ``on_epoch_end(layer, epoch, train_state, metrics)`` may return extra metrics
    (logging); ``on_layer_end(layer, params, next_data)`` sees each finished layer and the
    representation handed to the next one.  ``checkpoint_dir``: see the module docstring
    (a directory holding a different spec for a layer raises :class:`ConfigError`).
    """
    if not specs:
        raise ConfigError("pretrain_stack needs at least one LayerSpec")
    specs = [s.validate() for s in specs]
    x = jnp.asarray(data, jnp.float32)
    if x.ndim != 2:
        raise ConfigError(f"data must be (N, V), got shape {tuple(x.shape)}; flatten images")
    _unit_interval_check(x.shape[1])(np.asarray(x))
    stack: list[RBMParams] = []
    for layer, spec in enumerate(specs):
        k_layer = jax.random.fold_in(key, layer)
        params = _train_layer(
            k_layer,
            layer,
            x,
            spec,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
            checkpoint_every=checkpoint_every,
            on_epoch_end=on_epoch_end,
            progress=progress,
        )
        stack.append(params)
        x = propagate(jax.random.fold_in(k_layer, 1 << 20), params, x, spec)
        if on_layer_end is not None:
            on_layer_end(layer, params, x)
    return stack


def _train_layer(
    key: PRNGKeyArray,
    layer: int,
    x: Float[Array, "N V"],
    spec: LayerSpec,
    *,
    checkpoint_dir: Path | None,
    checkpoint_every: int,
    on_epoch_end,
    progress: bool,
) -> RBMParams:
    k_init, k_state, k_train = jax.random.split(key, 3)
    n, n_visible = x.shape
    data_mean = jnp.mean(x, axis=0)
    params = rbm.init(k_init, n_visible, spec.n_hidden, scale=spec.init_scale, data_mean=data_mean)
    steps = spec.epochs * (n // spec.batch_size)
    opt = sgd(
        spec.learning_rate,
        spec.momentum,
        spec.weight_decay,
        lr_multiplier=linear_decay(steps) if spec.lr_decay else None,
    )
    state = init_rbm_state(
        k_state,
        params,
        opt,
        data_mean,
        spec.n_chains,
        visible_copies=spec.visible_copies,
        hidden_copies=spec.hidden_copies,
    )
    epoch_fn = jax.jit(
        make_epoch(make_step(rbm_objective(spec.step_config()), opt), spec.batch_size),
        donate_argnums=0,
    )
    ckpt, start = None, 0
    if checkpoint_dir is not None:
        d = checkpoint_dir / f"layer_{layer}"
        d.mkdir(parents=True, exist_ok=True)
        spec_file = d / "spec.json"
        record = {"spec": dataclasses.asdict(spec), "n_visible": n_visible, "n_examples": n}
        ckpt = Checkpointer(d / "checkpoints", every=checkpoint_every)
        if ckpt.latest_epoch() is not None:
            saved = json.loads(spec_file.read_text()) if spec_file.exists() else None
            if saved != record:
                raise ConfigError(
                    f"{d} holds checkpoints of a layer trained with a different spec or data "
                    f"({saved} vs {record}); use a new checkpoint directory or delete that one"
                )
            last, state = ckpt.restore(state)
            start = last + 1
        spec_file.write_text(json.dumps(record, sort_keys=True))

    def hook(epoch, st, m):
        return None if on_epoch_end is None else on_epoch_end(layer, epoch, st, m)

    if start < spec.epochs:
        state = fit(
            state,
            x,
            epoch_fn=epoch_fn,
            key=k_train,
            n_epochs=spec.epochs,
            start_epoch=start,
            on_epoch_end=hook,
            checkpointer=ckpt,
            progress=progress,
            divergence_hint=f"(layer {layer}: learning_rate={spec.learning_rate}, "
            f"momentum={spec.momentum})",
            data_check=_unit_interval_check(n_visible),
        )
    if ckpt is not None:
        ckpt.close()
    return jax.tree_util.tree_map(jnp.asarray, state.params)
