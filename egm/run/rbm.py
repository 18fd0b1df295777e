"""The binary RBM on binarized MNIST as the run driver trains it (§20.2, §18.2).

Inherit the field group (``class Config(RBMFields): ...``): the model size, CD-k or PCD-k
(optionally centered, Melchior et al. 2016) and SGD with momentum, weight decay and a linear
decay of the learning rate; ``cfg.load_data()`` loads binarized MNIST under the protocol of
:class:`egm.run.config.MNISTFields`.  :func:`rbm_phase` is the one training phase: the
parameters start at the base-rate model (visible biases from the training mean), the
persistent chains at the data mean, and the step is :func:`egm.train.rbm_objective` (the
fused Gibbs sweep) under :func:`egm.train.make_step`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from egm.data import BinarizedMNIST, load_binarized_mnist
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of
from egm.run.driver import Phase

__all__ = ["N_PIXELS", "RBMFields", "rbm_phase"]

#: Visible units of an MNIST digit (28 × 28).
N_PIXELS = 784


@dataclasses.dataclass(frozen=True)
class RBMFields(MNISTFields):
    """A binary RBM ``784-n_hidden`` trained by CD-k / PCD-k with SGD (injected
    hyper-parameters: ``learning_rate``, ``momentum`` and ``weight_decay`` can be swept)."""

    n_hidden: int = field(500, check=at_least(1))
    estimator: str = field("pcd", check=one_of("pcd", "cd"))
    k: int = field(1, check=at_least(1), help="Gibbs sweeps per update")
    centering: bool = True
    n_chains: int = field(100, check=at_least(1), help="persistent chains (PCD)")
    batch_size: int = field(100, check=at_least(1))
    epochs: int = field(60, check=at_least(1))
    learning_rate: float = field(0.01, check=greater_than(0), sweep=True)
    momentum: float = field(0.9, check=in_range(0, 1, closed_high=False), sweep=True)
    weight_decay: float = field(0.0, check=at_least(0), sweep=True)
    lr_decay: bool = field(True, help="linear decay to 0 over the run")

    def load_data(self) -> BinarizedMNIST:
        """Binarized MNIST under these fields' protocol (:func:`egm.data.load_binarized_mnist`)."""
        return load_binarized_mnist(
            self.binarization, self.binarization_seed, source=self.source, data_dir=self.data_dir
        )

    def step_config(self):
        """The static choices of the step (:class:`egm.train.RBMStepConfig`): dynamic
        binarization re-draws each minibatch; the free-energy gap is tracked."""
        from egm.train import RBMStepConfig

        dynamic = "dynamic" if self.binarization == "dynamic" else "none"
        return RBMStepConfig(self.estimator, self.k, self.centering, binarization=dynamic,
                             track_free_energy_gap=True)  # fmt: skip

    def optimizer(self, n_train: int) -> optax.GradientTransformation:
        """SGD with momentum and weight decay; with ``lr_decay`` the learning rate falls
        linearly to 0 over the run's ``epochs * (n_train // batch_size)`` updates."""
        from egm import train

        steps = self.epochs * (n_train // self.batch_size)
        decay = train.linear_decay(steps) if self.lr_decay else None
        return train.sgd(self.learning_rate, self.momentum, self.weight_decay, lr_multiplier=decay)

    def training(self) -> str:
        """The training as ``results.json`` describes it."""
        decay = " (linear decay to 0)" if self.lr_decay else ""
        return (
            f"{'centered ' if self.centering else ''}{self.estimator.upper()}-{self.k}, "
            f"{self.epochs} epochs, batch {self.batch_size}, {self.n_chains} chains, lr "
            f"{self.learning_rate}{decay}, momentum {self.momentum}, weight decay "
            f"{self.weight_decay}"
        )


def rbm_phase(monitor: Callable[..., dict] | None = None) -> Phase:
    """The ``train`` phase of an :class:`RBMFields` config: ``init`` splits its key once into
    the parameters' (:func:`egm.energies.rbm.init` with the visible biases of the training
    mean) and the chains' (:func:`egm.train.init_rbm_state`, ``n_chains`` persistent chains);
    the step is ``make_step(rbm_objective(cfg.step_config()), cfg.optimizer(n_train))``; the
    training data must be binary ``(N, 784)`` (dynamic binarization: grey values in [0, 1])."""
    from egm import train
    from egm.energies import rbm

    def init(cfg: RBMFields, d: BinarizedMNIST, key, done) -> train.TrainState:
        k_params, k_chains = jax.random.split(key)
        mean = jnp.mean(jnp.asarray(d.binary["train"]), axis=0)
        params = rbm.init(k_params, N_PIXELS, cfg.n_hidden, data_mean=mean)
        opt = cfg.optimizer(d.train.shape[0])
        return train.init_rbm_state(k_chains, params, opt, mean, cfg.n_chains)

    def step(cfg: RBMFields, d: BinarizedMNIST, done):
        objective = train.rbm_objective(cfg.step_config())
        return train.make_step(objective, cfg.optimizer(d.train.shape[0]))

    def data_check(cfg: RBMFields, x) -> None:
        train.rbm_data_check(N_PIXELS, cfg.step_config())(x)

    return Phase("train", init, step, data_check=data_check, monitor=monitor)
