r"""Greedy layer-wise pretraining of a stack of RBMs (§20.3, Hinton, Osindero & Teh 2006).

Layer ``l`` is an RBM trained (with :func:`egm.train.rbm_objective`) on the representation
the layers below produce: ``x_0 = data`` and

.. math:: x_{l+1} = P(h = 1 \mid x_l) = σ(c_l + m_v\, x_l W_l)    \quad(\text{"mean"})

or one Bernoulli draw of it (``"sample"``, one fixed draw per example, keyed by the
example's index), where ``m_v`` is the layer's number of tied visible copies
(:mod:`egm.train.rbm_step`): an RBM trained with ``visible_copies = 2`` infers its hidden
units with ``2 Wᵀv + c`` (Salakhutdinov & Hinton 2009, the bottom layer of DBM
pretraining).  The stack is the DBN of :mod:`egm.models.dbn` or, with copies, the
pretraining of a DBM.

One path builds every layer: :func:`init_layer_state` (the RBM initialised on its input,
the frozen layers below in the state's ``aux``, :class:`LayerAux`), :func:`layer_objective`
(each raw minibatch pushed up through those layers, :func:`layer_inputs`, so the members
of a vmapped sweep each train on their own representation) and :func:`layer_optimizer`.
The run driver (:mod:`egm.run`) runs it as one phase per layer (:func:`greedy_phases`);
the functional :func:`pretrain_stack` runs the same layers with :func:`egm.train.fit`.

:func:`pretrain_stack` resumes layer by layer: with ``checkpoint_dir`` each layer ``l``
checkpoints its train state in ``checkpoint_dir/layer_l`` (:class:`egm.train.Checkpointer`)
next to its spec; a killed run restarted with the same arguments restores the finished
layers and resumes the interrupted one from its last checkpoint.  Epoch ``e`` of layer
``l`` uses the key ``fold_in(k_train, e)`` with ``k_train`` from ``fold_in(key, l)``, and
the representation is a function of the keys and the trained parameters, so a resumed stack
ends with the same parameters.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

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
from egm.train.state import ObjectiveOut, TrainState, make_step

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


def dbm_pretraining_specs(n_hidden: Sequence[int], **common: Any) -> list[LayerSpec]:
    """The stack of DBM pretraining (Salakhutdinov & Hinton 2009, §20.4.4), composed by
    :func:`egm.energies.dbm.from_pretrained_rbms`: the bottom RBM with two tied copies of
    its visible layer, the top one with two tied copies of its hidden layer, any middle ones
    ordinary; every other :class:`LayerSpec` field from ``common``."""
    if len(n_hidden) < 2:
        raise ConfigError(f"DBM pretraining needs at least 2 hidden layers, got {list(n_hidden)}")
    last = len(n_hidden) - 1
    return [LayerSpec(n, visible_copies=2 if l == 0 else 1, hidden_copies=2 if l == last else 1,
                      **common) for l, n in enumerate(n_hidden)]  # fmt: skip


def infer_up(
    params: RBMParams, x: Float[Array, "N V"], visible_copies: int = 1
) -> Float[Array, "N H"]:
    """``P(h = 1 | x) = σ(c + m_v xW)`` of an RBM trained with ``m_v`` tied visible copies."""
    return jax.nn.sigmoid(params.c + visible_copies * (jnp.asarray(x, jnp.float32) @ params.W))


def layer_optimizer(spec: LayerSpec, n_examples: int):
    """SGD of one layer (:func:`egm.train.sgd`, injectable numbers), with the learning rate
    linearly decayed to 0 over the layer's ``epochs`` if ``lr_decay``."""
    steps = max(spec.epochs * (n_examples // spec.batch_size), 1)
    return sgd(
        spec.learning_rate,
        spec.momentum,
        spec.weight_decay,
        lr_multiplier=linear_decay(steps) if spec.lr_decay else None,
    )


class LayerAux(NamedTuple):
    """``aux`` of a layer phase's train state: the RBM step's centering ``offsets``, the
    frozen layers ``below`` (bottom first) and ``keys``, the key data (uint32) of every
    layer's ``"sample"`` draws up to this one (row ``j`` for layer ``j``)."""

    offsets: Any
    below: tuple
    keys: Array


def layer_inputs(
    below: Sequence[RBMParams],
    specs: Sequence[LayerSpec],
    keys: Array,
    x: Float[Array, "N V"],
    index: Array,
) -> Float[Array, "N H"]:
    """What the layer above ``below`` trains on: ``x`` pushed up through the frozen layers
    (:func:`infer_up` with each layer's visible copies); a ``"sample"`` layer ``j`` draws
    example ``index[n]``'s binary state with ``fold_in(keys[j], index[n])``, so an example
    gets the same draw in every epoch and every minibatch."""
    x = jnp.asarray(x, jnp.float32)
    for j, (p, s) in enumerate(zip(below, specs, strict=False)):
        x = infer_up(p, x, s.visible_copies)
        if s.propagate == "sample":
            k = jax.random.wrap_key_data(keys[j])
            u = jax.vmap(lambda i, k=k, d=x.shape[1]: jax.random.uniform(
                jax.random.fold_in(k, i), (d,)))(index)  # fmt: skip
            x = (u < x).astype(jnp.float32)
    return x


_layer_inputs = jax.jit(layer_inputs, static_argnums=1)


def init_layer_state(
    key: PRNGKeyArray,
    specs: Sequence[LayerSpec],
    layer: int,
    data: Float[Array, "N V"],
    below_states: Sequence[TrainState],
) -> TrainState:
    """The initial state of layer ``layer``: an RBM (``N(0, init_scale²)`` weights, base-rate
    visible biases) on its input (``data`` pushed up through ``below_states``, the finished
    states of the layers under it), with :class:`LayerAux` as ``aux``."""
    specs = tuple(s.validate() for s in specs)
    spec = specs[layer]
    if len(below_states) != layer:
        raise ConfigError(
            f"layer {layer} needs the {layer} layers below it, got {len(below_states)}"
        )
    k_init, k_state, k_prop = jax.random.split(key, 3)
    # copies: this state is donated by its epoch, the finished states must stay valid
    below = tuple(jax.tree_util.tree_map(jnp.array, s.params) for s in below_states)
    own = jax.random.key_data(k_prop)[None]
    keys = jnp.concatenate([below_states[-1].aux.keys, own]) if below_states else own
    x = jnp.asarray(data, jnp.float32)
    x = _layer_inputs(below, specs[:layer], keys, x, jnp.arange(x.shape[0]))
    data_mean = jnp.mean(x, axis=0)
    params = rbm.init(k_init, x.shape[1], spec.n_hidden, scale=spec.init_scale, data_mean=data_mean)
    state = init_rbm_state(
        k_state,
        params,
        layer_optimizer(spec, x.shape[0]),
        data_mean,
        spec.n_chains,
        visible_copies=spec.visible_copies,
        hidden_copies=spec.hidden_copies,
    )
    return state._replace(aux=LayerAux(state.aux, below, keys))


def layer_objective(specs: Sequence[LayerSpec], layer: int):
    """The objective of layer ``layer``'s phase: batches ``(x, index)`` of the stack's raw
    input and the examples' indices, pushed up through ``aux.below`` (:func:`layer_inputs`)
    and fed to the layer's RBM objective (:func:`egm.train.rbm_objective`)."""
    specs = tuple(s.validate() for s in specs)
    inner = rbm_objective(specs[layer].step_config())
    below_specs = specs[:layer]

    def objective(params, batch, key, chains, aux: LayerAux):
        x, index = batch
        x = layer_inputs(aux.below, below_specs, aux.keys, x, index)
        out = inner(params, x, key, chains, aux.offsets)
        return ObjectiveOut(out.grads, out.chains, aux._replace(offsets=out.aux), out.metrics)

    return objective


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

    Layer ``l`` is the driver's layer phase (:func:`init_layer_state`, :func:`layer_objective`,
    :func:`layer_optimizer`) trained by :func:`egm.train.fit` on ``(data, index)``, with the
    keys ``split(fold_in(key, l))`` for its initial state and its epochs.
    ``data``: (N, V) values in [0, 1] (binary data or, for a higher layer, means).
    ``on_epoch_end(layer, epoch, train_state, metrics)`` may return extra metrics
    (logging); ``on_layer_end(layer, params, next_data)`` sees each finished layer and the
    representation it hands to the next one (:func:`layer_inputs` of the whole ``data``).
    ``checkpoint_dir``: see the module docstring (a directory holding a different spec for a
    layer raises :class:`ConfigError`).
    """
    if not specs:
        raise ConfigError("pretrain_stack needs at least one LayerSpec")
    specs = tuple(s.validate() for s in specs)
    x = jnp.asarray(data, jnp.float32)
    if x.ndim != 2:
        raise ConfigError(f"data must be (N, V), got shape {tuple(x.shape)}; flatten images")
    _unit_interval_check(x.shape[1])(np.asarray(x))
    index = jnp.arange(x.shape[0], dtype=jnp.int32)
    states: list[TrainState] = []
    for layer in range(len(specs)):
        k_init, k_train = jax.random.split(jax.random.fold_in(key, layer))
        state = init_layer_state(k_init, specs, layer, x, states)
        where = None if checkpoint_dir is None else Path(checkpoint_dir) / f"layer_{layer}"
        state = _train_layer(k_train, state, specs, layer, (x, index), where, checkpoint_every,
                             on_epoch_end, progress)  # fmt: skip
        states.append(state)
        if on_layer_end is not None:
            below = (*state.aux.below, state.params)
            nxt = _layer_inputs(below, specs[: layer + 1], state.aux.keys, x, index)
            on_layer_end(layer, state.params, nxt)
    return [s.params for s in states]


def _train_layer(
    key: PRNGKeyArray,
    state: TrainState,
    specs: tuple[LayerSpec, ...],
    layer: int,
    data: tuple[Array, Array],
    checkpoint_dir: Path | None,
    checkpoint_every: int,
    on_epoch_end,
    progress: bool,
) -> TrainState:
    """Layer ``layer``'s epochs from ``state`` (resumed from ``checkpoint_dir`` if it holds
    checkpoints of the same spec, input size and example count)."""
    spec, n = specs[layer], data[0].shape[0]
    step = make_step(layer_objective(specs, layer), layer_optimizer(spec, n))
    epoch_fn = jax.jit(make_epoch(step, spec.batch_size), donate_argnums=0)
    ckpt, start = None, 0
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        spec_file = checkpoint_dir / "spec.json"
        record = {"spec": dataclasses.asdict(spec), "n_visible": int(state.params.W.shape[0]),
                  "n_examples": int(n)}  # fmt: skip
        ckpt = Checkpointer(checkpoint_dir / "checkpoints", every=checkpoint_every)
        if ckpt.latest_epoch() is not None:
            saved = json.loads(spec_file.read_text()) if spec_file.exists() else None
            if saved != record:
                raise ConfigError(
                    f"{checkpoint_dir} holds checkpoints of a layer trained with a different "
                    f"spec or data ({saved} vs {record}); use a new checkpoint directory or "
                    f"delete that one"
                )
            last, state = ckpt.restore(state)
            start = last + 1
        spec_file.write_text(json.dumps(record, sort_keys=True))
    if start < spec.epochs:
        state = fit(
            state, data, epoch_fn=epoch_fn, key=key, n_epochs=spec.epochs, start_epoch=start,
            on_epoch_end=None if on_epoch_end is None else (
                lambda epoch, st, m: on_epoch_end(layer, epoch, st, m)),
            checkpointer=ckpt, progress=progress,
            divergence_hint=f"(layer {layer}: learning_rate={spec.learning_rate}, "
            f"momentum={spec.momentum})",
        )  # fmt: skip
    if ckpt is not None:
        ckpt.close()
    return state


def stacked(done: dict, n_layers: int, prefix: str = "layer") -> tuple[RBMParams, ...]:
    """The trained stack from the driver's finished states ``done[f"{prefix}{l}"]``."""
    return tuple(done[f"{prefix}{l}"].params for l in range(n_layers))


def greedy_phases(
    cfg: Any,
    specs_of: Callable[[Any], Sequence[LayerSpec]],
    inputs_of: Callable[[Any, Any], Any] = lambda cfg, data: data.train,
    *,
    prefix: str = "layer",
) -> list:
    """One :class:`egm.run.Phase` per layer of ``specs_of(cfg)``, named ``f"{prefix}{l}"``,
    bottom first; ``inputs_of(cfg, data)`` is the stack's input (N, V) in [0, 1].  Each
    phase checkpoints and resumes on its own; a finished layer is never trained again.
    Read the stack back with :func:`stacked`."""
    from egm.run.driver import Phase

    def make(l: int):
        def init(c, d, key, done):
            below = [done[f"{prefix}{j}"] for j in range(l)]
            return init_layer_state(key, specs_of(c), l, inputs_of(c, d), below)

        def step(c, d, done):
            n = np.shape(inputs_of(c, d))[0]
            return make_step(layer_objective(specs_of(c), l), layer_optimizer(specs_of(c)[l], n))

        def train_data(c, d, done):
            x = inputs_of(c, d)
            return (x, np.arange(np.shape(x)[0], dtype=np.int32))

        return Phase(
            name=f"{prefix}{l}",
            init=init,
            step=step,
            epochs=lambda c: specs_of(c)[l].epochs,
            batch_size=lambda c: specs_of(c)[l].batch_size,
            train_data=train_data,
            data_check=lambda c, host: _unit_interval_check(host[0].shape[1])(host[0]),
        )

    return [make(l) for l in range(len(specs_of(cfg)))]
