"""Config fields, phases and pictures shared by the deep undirected experiments (DBN, DBM,
MP-DBM; §20.3–20.4).

* :class:`AISFields`: inherit it (``class Config(AISFields): ...``); ``cfg.load_data()``
  loads the binarized MNIST the :class:`~egm.run.config.MNISTFields` say, and the AIS
  fields size the log Z runs of :mod:`egm.eval.deep` (an experiment redeclares a field to
  change its default);
* :class:`DBMFields` (inherits them) and :func:`dbm_phase`: joint PCD training of a DBM;
* :class:`DBNFields` (inherits them): a DBN's greedy stack (:func:`egm.train.greedy.greedy_phases`);
* :class:`FinetuneFields` and :func:`classifier_phase`: a driver phase on (digits, labels),
  e.g. discriminative fine-tuning; :func:`ft_inputs_field` and :func:`ft_digits`: what a
  fine-tuned classifier sees (the grey digits by default);
* :func:`digit_pictures`: the samples and bottom-layer filters of a model of digits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from egm.data import BinarizedMNIST, load_binarized_mnist
from egm.energies.dbm import DBMParams
from egm.errors import ConfigError
from egm.eval.visualize import tile_images
from egm.run.config import (
    MNISTFields,
    at_least,
    field,
    greater_than,
    in_range,
    one_of,
    patience_field,
)
from egm.run.directed import sizes, sizes_ok
from egm.run.driver import Phase
from egm.train.classifier import classifier_data_check
from egm.train.dbm_step import DBMStepConfig, dbm_data_check, dbm_objective, init_dbm_state
from egm.train.greedy import PROPAGATIONS, LayerSpec
from egm.train.optim import linear_decay, sgd
from egm.train.state import TrainState, make_step

__all__ = [
    "AISFields",
    "DBMFields",
    "DBNFields",
    "FinetuneFields",
    "classifier_phase",
    "dbm_phase",
    "digit_pictures",
    "ft_digits",
    "ft_inputs_field",
]


@dataclasses.dataclass(frozen=True)
class AISFields(MNISTFields):
    """Forward and reverse AIS for log Z (chains, temperatures of the Salakhutdinov & Murray
    schedule, Gibbs sweeps at β = 1 before the reverse run) and the checkpoint cadence."""

    ais_chains: int = field(100, check=at_least(2), eval_only=True)
    ais_temps: int = field(20000, check=at_least(3), eval_only=True)
    reverse_burn_in: int = field(1000, check=at_least(0), eval_only=True,
                                 help="Gibbs sweeps at beta=1 before reverse AIS")  # fmt: skip
    checkpoint_every: int = field(1, check=at_least(1), eval_only=True)

    def load_data(self) -> BinarizedMNIST:
        """Binarized MNIST by :func:`egm.data.load_binarized_mnist` with these fields, keeping
        the grey digits when a fine-tuned classifier sees them (``ft_inputs="grey"``, a field
        of the configs that fine-tune: :func:`ft_inputs_field`)."""
        grey = getattr(self, "ft_inputs", "binary") == "grey"
        return load_binarized_mnist(self.binarization, self.binarization_seed, source=self.source,
                                    data_dir=self.data_dir, keep_grey=grey)  # fmt: skip


def ft_inputs_field() -> Any:
    """The one declaration of a fine-tuned classifier's inputs (:func:`ft_digits`): the grey
    digits, intensities in [0, 1] as the DBN and DBM papers fine-tune (Hinton & Salakhutdinov
    2006, Salakhutdinov & Hinton 2009), or the binarized digits the generative model trains on."""
    return field("grey", check=one_of("grey", "binary"), help="the fine-tuned classifier's "
                 "inputs: the grey digits or the binarized ones")  # fmt: skip


def ft_digits(cfg: Any, d: BinarizedMNIST, split: str) -> np.ndarray:
    """The digits of ``split`` a fine-tuned classifier sees, as ``cfg.ft_inputs`` says."""
    return d.digits(split, grey=cfg.ft_inputs == "grey")


@dataclasses.dataclass(frozen=True)
class DBMFields(AISFields):
    """A binary DBM 784-``n_h1``-``n_h2`` trained jointly by PCD-``k`` with a mean-field
    positive phase (:func:`dbm_phase`), SGD with momentum, weight decay and the learning
    rate linearly decayed to 0; the converged mean field of its evaluation; block-Gibbs
    samples.  Hooks an experiment overrides: :meth:`centered` (the centered gradient of
    Montavon & Müller 2012) and :meth:`mean_field_init` (``"half"`` or ``"bottom_up"``)."""

    n_h1: int = field(500, check=at_least(1))
    n_h2: int = field(1000, check=at_least(1))
    epochs: int = field(20, check=at_least(0))
    batch_size: int = field(100, check=at_least(1))
    n_chains: int = field(100, check=at_least(1))
    k: int = field(1, check=at_least(1), help="Gibbs sweeps of the persistent chains per update")
    mean_field_iters: int = field(10, check=at_least(1))
    learning_rate: float = field(0.005, check=greater_than(0), sweep=True)
    momentum: float = field(0.9, check=in_range(0, 1, closed_high=False), sweep=True)
    weight_decay: float = field(2e-4, check=at_least(0), sweep=True)
    offset_rate: float = field(0.01, check=in_range(0, 1, closed_low=False))
    mf_tol: float = field(1e-5, check=greater_than(0))
    mf_max_iter: int = field(100, check=at_least(1))
    n_samples: int = field(100, check=at_least(1), eval_only=True)
    sample_sweeps: int = field(1000, check=at_least(1), eval_only=True)

    def centered(self) -> bool:
        return False

    def mean_field_init(self) -> str:
        return "half"

    def step_config(self) -> DBMStepConfig:
        return DBMStepConfig(
            k=self.k, mean_field_iters=self.mean_field_iters,
            mean_field_init=self.mean_field_init(), centering=self.centered(),
            offset_rate=self.offset_rate,
            binarization="dynamic" if self.binarization == "dynamic" else "none",
        )  # fmt: skip

    def optimizer(self, n_train: int):
        decay = linear_decay(max(self.epochs * (n_train // self.batch_size), 1))
        return sgd(self.learning_rate, self.momentum, self.weight_decay, lr_multiplier=decay)


@dataclasses.dataclass(frozen=True)
class DBNFields(AISFields):
    """A DBN's greedy stack of RBMs (:mod:`egm.train.greedy`, one phase per layer): sizes
    and epochs per layer bottom to top, the RBM estimator, SGD (learning rate linearly
    decayed to 0 per layer), what each layer hands to the next; :meth:`layer_specs`."""

    hidden: str = field("500,1000", check=sizes_ok, help="hidden layer sizes, bottom to top")
    layer_epochs: str = field("30,30", check=sizes_ok, help="pretraining epochs per layer")
    estimator: str = field("pcd", check=one_of("pcd", "cd"))
    k: int = field(1, check=at_least(1))
    centering: bool = True
    propagate: str = field("mean", check=one_of(*PROPAGATIONS),
                           help="what each layer hands to the next")  # fmt: skip
    upper_binarization: str = field("dynamic", check=one_of("none", "dynamic"),
                                    help="layers above the first re-draw Bernoulli(input means) "
                                    "every minibatch: fit h ~ Q(h|v), which the bound evaluates")  # fmt: skip
    n_chains: int = field(100, check=at_least(1))
    batch_size: int = field(100, check=at_least(1))
    learning_rate: float = field(0.01, check=greater_than(0), sweep=True)
    momentum: float = field(0.9, check=in_range(0, 1, closed_high=False), sweep=True)
    weight_decay: float = field(1e-4, check=at_least(0), sweep=True)

    def check(self) -> None:
        super().check()
        if len(sizes(self.hidden)) != len(sizes(self.layer_epochs)):
            raise ConfigError(f"--hidden and --layer_epochs need one entry per layer, got "
                              f"{self.hidden!r} and {self.layer_epochs!r}")  # fmt: skip

    def layer_specs(self) -> list[LayerSpec]:
        """One :class:`egm.train.greedy.LayerSpec` per layer; layers above the first train
        on ``upper_binarization`` draws of their input."""
        common = dict(batch_size=self.batch_size, learning_rate=self.learning_rate, k=self.k,
                      momentum=self.momentum, weight_decay=self.weight_decay,
                      estimator=self.estimator, centering=self.centering,
                      n_chains=self.n_chains, propagate=self.propagate)  # fmt: skip
        layers = zip(sizes(self.hidden), sizes(self.layer_epochs), strict=True)
        return [LayerSpec(n, epochs=e, binarization="none" if i == 0 else self.upper_binarization,
                          **common) for i, (n, e) in enumerate(layers)]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FinetuneFields:
    """Discriminative fine-tuning of a classifier initialised from a generative model (inherit
    beside a model's fields): SGD with momentum and weight decay, the learning rate linearly
    decayed to 0 over ``ft_epochs``; :meth:`ft_optimizer`."""

    ft_epochs: int = field(30, check=at_least(0))
    ft_batch_size: int = field(100, check=at_least(1))
    ft_learning_rate: float = field(0.1, check=greater_than(0), sweep=True)
    ft_momentum: float = field(0.9, check=in_range(0, 1, closed_high=False), sweep=True)
    ft_weight_decay: float = field(0.0, check=at_least(0), sweep=True)
    ft_patience: int | None = patience_field("validation error of the fine-tuning")
    ft_inputs: str = ft_inputs_field()

    def ft_optimizer(self, n_train: int):
        steps = max(self.ft_epochs * (n_train // self.ft_batch_size), 1)
        return sgd(self.ft_learning_rate, self.ft_momentum, self.ft_weight_decay,
                   lr_multiplier=linear_decay(steps))  # fmt: skip


def classifier_phase(
    name: str,
    init: Callable[..., TrainState],
    objective: Callable[[Any], Callable],
    optimizer: Callable[[Any, Any], Any],
    *,
    epochs: Callable[[Any], int],
    batch_size: Callable[[Any], int] = lambda cfg: cfg.batch_size,
    inputs: Callable[[Any, Any], Any] = lambda cfg, d: d.binary["train"],
    labels: Callable[[Any, Any], Any] = lambda cfg, d: d.labels["train"],
    check: Callable[[Any], None] | None = None,
    valid_error: Callable[[Any, Any, TrainState], float] | None = None,
    select: bool = False,
    patience: str = "ft_patience",
) -> Phase:
    """A phase training on ``(inputs(cfg, data), labels(cfg, data))`` (784 features, 10
    classes, :func:`egm.train.classifier.classifier_data_check`, then ``check(x)`` if given)
    from ``init(cfg, data, key, done)`` with ``make_step(objective(cfg), optimizer(cfg,
    data))``: a DBN's or DBM's discriminative fine-tuning, an MP-DBM's training.

    ``valid_error(cfg, data, state)``: the classifier's validation error, monitored after
    every epoch (``valid_error`` in the metrics).  ``select`` (pass ``cfg.<patience> is not
    None``): keep the epoch of the lowest one, and stop after the config's ``patience`` field
    (:func:`egm.run.config.patience_field`, e.g. :class:`FinetuneFields`' ``ft_patience``)
    epochs without a lower one (:class:`egm.run.Phase`'s ``select``); else keep the last."""
    if select and valid_error is None:
        raise ConfigError("select needs the valid_error to select on")

    def data_check(cfg, xy) -> None:
        classifier_data_check(784, 10)(xy)
        if check is not None:
            check(xy[0])

    monitor = None if valid_error is None else (
        lambda c, d, st, key, epoch: {"valid_error": valid_error(c, d, st)})  # fmt: skip
    return Phase(name, init, lambda c, d, done: make_step(objective(c), optimizer(c, d)),
                 epochs=epochs, batch_size=batch_size, data_check=data_check, monitor=monitor,
                 train_data=lambda c, d, done: (inputs(c, d), labels(c, d)),
                 select="valid_error" if select else None,
                 patience=lambda c: int(getattr(c, patience, None) or 0))  # fmt: skip


def dbm_phase(name: str, init_params: Callable[..., tuple[DBMParams, tuple | None]]) -> Phase:
    """Joint PCD training of a binary DBM (:func:`egm.train.dbm_step.dbm_objective`) as the
    :class:`DBMFields` of the config say: ``init_params(cfg, data, key, done) -> (params,
    centering offsets or None)``, persistent chains and offsets from the training digits'
    mean (:func:`~egm.train.dbm_step.init_dbm_state`), ``cfg.step_config()``,
    ``cfg.optimizer(n_train)``; the data check of :func:`~egm.train.dbm_step.dbm_data_check`."""

    def init(cfg, d, key, done):
        k_params, k_state = jax.random.split(key)
        params, offsets = init_params(cfg, d, k_params, done)
        mean = jnp.mean(jnp.asarray(d.binary["train"]), axis=0)
        opt = cfg.optimizer(d.train.shape[0])
        return init_dbm_state(k_state, params, opt, mean, cfg.n_chains, offsets)

    def step(cfg, d, done):
        return make_step(dbm_objective(cfg.step_config()), cfg.optimizer(d.train.shape[0]))

    return Phase(name, init, step,
                 data_check=lambda c, x: dbm_data_check(784, c.step_config())(x))  # fmt: skip


def digit_pictures(
    samples: Float[ArrayLike, "n 784"], samples_title: str, weights: Float[ArrayLike, "784 H"]
) -> dict[str, tuple[np.ndarray, str]]:
    """``samples.png`` (the digits, e.g. ``P(v = 1 | h¹)`` of model samples) and
    ``filters.png`` (the first 100 columns of the bottom weights, each normalised)."""
    n_f = min(100, np.shape(weights)[1])
    filters = tile_images(np.asarray(weights)[:, :n_f].T, (28, 28), normalize=True)
    return {"samples.png": (tile_images(np.asarray(samples), (28, 28)), samples_title),
            "filters.png": (filters, f"first {n_f} bottom-layer filters")}  # fmt: skip
