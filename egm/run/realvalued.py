"""The real-valued experiments (§20.5) as the run driver trains them.

Field groups to inherit (``class Config(FETrainingFields): ...``): :class:`RealDataFields`
(which data, whitening, sizes, the data seed; ``cfg.load_data()``), :class:`FETrainingFields`
(CD/PCD of a free energy with Adam, the evaluation sizes), :class:`HMCFields` (HMC negative
phase, validation denoising) and :class:`FactoredFields` (the mcRBM's and mPoT's shared
sizes, pooling and filter norms).  :class:`FEModel` says how to build a model;
:func:`fe_experiment` turns it into an :class:`egm.run.Experiment` (one ``train`` phase: the
persistent chains start at random training rows, the step is :func:`egm.train.make_fe_step`
with the model's projection, a frozen Metropolis sampler stops the run), and
:func:`denoising` / :func:`free_energy_gap` are the evaluations the experiments share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.data.realvalued import REAL_DATASETS, RealData, load_real_data, real_sources
from egm.data.whitening import WHITENING_KINDS
from egm.energies._factored import POOLINGS, init_pooling
from egm.errors import ConfigError
from egm.run.config import RunFields, at_least, field, greater_than, in_range, one_of
from egm.run.driver import Experiment, Phase
from egm.samplers.chains import ChainSpec

__all__ = [
    "FEModel",
    "FETrainingFields",
    "FactoredFields",
    "HMCFields",
    "RealDataFields",
    "denoising",
    "factored_pictures",
    "fe_experiment",
    "fe_phases",
    "free_energy_gap",
    "run_files",
]

Params = Any
FreeEnergy = Callable[[Params, Float[Array, " D"]], Float[Array, ""]]


@dataclasses.dataclass(frozen=True)
class RealDataFields(RunFields):
    """Which real-valued data, how many examples and which whitening."""

    dataset: str = field("patches", check=one_of(*REAL_DATASETS))
    source: str = field("auto", help="patches: auto | skimage | tfds; mnist: egm.data.load_mnist")
    data_dir: str | None = field(None, help="patches: tfds data dir; mnist: folder of IDX files")
    patch_size: int = field(8, check=at_least(2))
    n_train: int = field(50_000, check=at_least(2))
    n_test: int = field(10_000, check=at_least(1), eval_only=True)
    whitening: str = field("zca", check=one_of(*WHITENING_KINDS))
    whiten_eps: float | None = field(
        None, check=at_least(0), help="None: 1% of the mean variance (egm.data.fit_whitening)"
    )
    data_seed: int = field(
        0, check=at_least(0), help="patch draws / dequantisation noise (a seed sweep shares them)"
    )

    def check(self) -> None:
        if self.source not in real_sources(self.dataset):
            raise ConfigError(
                f"source must be one of {real_sources(self.dataset)} for dataset "
                f"{self.dataset!r}, got {self.source!r}"
            )
        if self.dataset == "mnist" and self.data_dir is not None and self.source == "embedded":
            raise ConfigError(
                "--data_dir is set but --source is 'embedded' (the subset shipped in the "
                "package), which ignores it; add --source idx (or --source auto)"
            )
        batch = getattr(self, "batch_size", None)
        if batch is not None and batch > self.n_train:
            raise ConfigError(f"batch_size {batch} exceeds n_train {self.n_train}; lower it")

    def load_data(self, *, scale: float = 1.0, n_valid: int = 0) -> RealData:
        return load_real_data(
            self.dataset, self.source, n_train=self.n_train, n_test=self.n_test,
            patch_size=self.patch_size, whitening=self.whitening, whiten_eps=self.whiten_eps,
            seed=self.data_seed, data_dir=self.data_dir, scale=scale, n_valid=n_valid,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FETrainingFields(RealDataFields):
    """CD/PCD training of a free-energy model (:func:`egm.train.make_fe_step`) with Adam and a
    global-norm clip, and the evaluation sizes the real-valued experiments share.  An
    experiment redeclares a field to change its default."""

    estimator: str = field("pcd", check=one_of("pcd", "cd"))
    k: int = field(1, check=at_least(1), help="sampler steps per update")
    n_chains: int = field(100, check=at_least(1))
    batch_size: int = field(100, check=at_least(1))
    epochs: int = field(30, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    lr_decay: bool = field(False, help="linear decay to 0 over the run")
    grad_clip: float = field(10.0, check=greater_than(0))
    eval_size: int = field(1000, check=at_least(1), eval_only=True)
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    sample_steps: int = field(1000, check=at_least(1), eval_only=True)
    denoise_std: float = field(0.1, check=greater_than(0), eval_only=True)
    denoise_n: int = field(1000, check=at_least(1), eval_only=True)

    def optimizer(self, n_train: int):
        """Adam with the global-norm clip and, with ``lr_decay``, a linear decay to 0 over the
        run (injected hyper-parameters: sweepable)."""
        from egm import train

        steps = self.epochs * (n_train // self.batch_size)
        decay = train.linear_decay(steps) if self.lr_decay else None
        return train.adam(self.learning_rate, grad_clip=self.grad_clip, lr_multiplier=decay)

    def run_data(self) -> RealData:
        """The data of a run (:func:`fe_experiment` loads it): ``load_data()``."""
        return self.load_data()

    def training(self, sampler: str) -> str:
        """The training as ``results.json`` describes it, with the negative phase ``sampler``."""
        decay = " (linear decay to 0)" if self.lr_decay else ""
        return (
            f"{self.estimator.upper()}-{self.k} with {sampler}, {self.epochs} epochs, batch "
            f"{self.batch_size}, {self.n_chains} chains, Adam lr {self.learning_rate}{decay}, "
            f"grad clip {self.grad_clip}"
        )


@dataclasses.dataclass(frozen=True)
class HMCFields(FETrainingFields):
    """HMC on the free energy with a per-chain adapted step size, and validation denoising."""

    hmc_leapfrog: int = field(20, check=at_least(1))
    hmc_step_size: float = field(0.05, check=greater_than(0), help="initial, then adapted")
    hmc_target_accept: float = field(0.9, check=in_range(0, 1, closed_low=False, closed_high=False))
    denoise_every: int = field(5, check=at_least(0), eval_only=True, help="validation; 0: never")

    def hmc(self, log_density: FreeEnergy, step_size: float | None = None) -> ChainSpec:
        """HMC on ``log_density`` with ``hmc_leapfrog`` leapfrog steps: for training, started at
        ``hmc_step_size`` and adapted per chain towards ``hmc_target_accept``
        (:func:`egm.samplers.persistent.adaptive_step_size`); with a ``step_size``, plain
        fixed-step HMC (an adapted chain is not a fixed Markov kernel: final samples)."""
        from egm.samplers.persistent import hmc_chain

        if step_size:
            return hmc_chain(log_density, self.hmc_leapfrog, step_size, None)
        return hmc_chain(log_density, self.hmc_leapfrog, self.hmc_step_size, self.hmc_target_accept)

    def hmc_description(self) -> str:
        """The training sampler of :meth:`hmc` as ``results.json`` describes it."""
        return (
            f"HMC ({self.hmc_leapfrog} leapfrog steps, step size adapted per chain to acceptance "
            f"{self.hmc_target_accept})"
        )

    def validation_denoising(
        self, d: RealData, free_energy: FreeEnergy, params: Params, epoch: int
    ) -> dict:
        """Every ``denoise_every`` epochs (none if 0): PSNR of MAP denoising under the model and
        of the Wiener filter on ``eval_size`` validation patches (drawn from the training
        split, never the test patches: ``run_data`` loads them), one fixed noise draw
        (``data_seed``); ``{}`` on the other epochs."""
        if not self.denoise_every or (epoch + 1) % self.denoise_every:
            return {}
        from egm.eval.denoise import denoising_report

        den = denoising_report(
            jax.random.key(self.data_seed), free_energy, params, d.x_train, d.x_valid,
            d.whitening, noise_std=self.denoise_std, n=self.eval_size,
        )  # fmt: skip
        return {"psnr_valid_model_db": den["psnr_model_db"],
                "psnr_valid_wiener_db": den["psnr_wiener_db"]}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FactoredFields(HMCFields):
    """The factored covariance models (mcRBM, mPoT; :mod:`egm.energies._factored`): ``n_factors``
    filters ``C`` pooled by ``P`` into ``n_cov`` covariance units, ``n_mean`` mean units; after
    every update ``C``'s columns go to norm ``c_norm`` (0: their mean norm) and ``P ≥ 0`` keeps
    unit-L1 columns (held at its initial value without ``learn_pooling``).  Whitening: ZCA or
    PCA; the whitened data are multiplied by ``data_scale``."""

    data_scale: float = field(1.0, check=greater_than(0), help="whitened patches times this")
    n_factors: int = field(64, check=at_least(1))
    n_cov: int = field(64, check=at_least(1))
    n_mean: int = field(32, check=at_least(1))
    pooling: str = field("topographic", check=one_of(*POOLINGS))
    learn_pooling: bool = True
    c_norm: float = field(0.0, check=at_least(0), help="> 0: fixed norm of C's columns; 0: mean")
    c_init_norm: float = field(1.0, check=greater_than(0))
    b_m_init: float = -2.0
    w_scale: float = field(0.05, check=greater_than(0))

    def check(self) -> None:
        super().check()
        if self.whitening not in ("zca", "pca"):
            raise ConfigError(f"whitening must be one of ['zca', 'pca'], got {self.whitening!r}")

    def run_data(self) -> RealData:
        """``load_data`` scaled by ``data_scale``, with ``eval_size`` validation patches when the
        run denoises them (``denoise_every``)."""
        n_valid = self.eval_size if self.denoise_every else 0
        return self.load_data(scale=self.data_scale, n_valid=n_valid)

    @property
    def init_kw(self) -> dict:
        """The keyword arguments of ``mcrbm.init`` / ``mpot.init`` these fields set."""
        return dict(pooling=self.pooling, c_norm=self.c_init_norm, w_scale=self.w_scale,
                    b_m=self.b_m_init)  # fmt: skip

    def projection(
        self, project: Callable[[Params], Params], **fixed
    ) -> Callable[[Params], Params]:
        """``project`` (the model's, after every update), then the fields of ``fixed`` set to
        their values, and ``P`` to its initial pooling unless ``learn_pooling``."""
        if not self.learn_pooling:
            fixed = {"P": init_pooling(self.n_factors, self.n_cov, self.pooling), **fixed}
        return (lambda p: project(p)._replace(**fixed)) if fixed else project

    def description(self) -> str:
        """The sizes and pooling as ``results.json`` describes the model."""
        fixed = "" if self.learn_pooling else ", fixed"
        return (f"{self.n_factors} factors, {self.n_cov} covariance units ({self.pooling} "
                f"pooling{fixed}), {self.n_mean} mean units")  # fmt: skip


#: The tiny preset's sizes of the factored models (smoke tests: seconds).
FACTORED_TINY = dict(
    n_train=1000, n_test=200, n_factors=16, n_cov=16, n_mean=8, hmc_leapfrog=3, n_chains=20,
    batch_size=50, epochs=3, eval_size=50, n_samples=16, sample_steps=10, denoise_n=50,
    denoise_every=2, checkpoint_every=1, progress=False,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FEModel:
    """How a real-valued experiment builds its free-energy model (§20.5: ``p(v) ∝ exp(-F(v))``
    with the hiddens summed or integrated out), each a function of the config:

    ``init_params(cfg, data, key) -> params``; ``free_energy(cfg) -> F(params, v)``;
    ``chain(cfg) -> ChainSpec``, the negative phase's sampler (models with an HMC option also
    take ``chain(cfg, step_size)``: fixed-step HMC for final samples); ``project(cfg, data) ->
    (params -> params)``, run after every update (:func:`egm.train.make_fe_step`), or None.
    """

    init_params: Callable[[Any, RealData, PRNGKeyArray], Params]
    free_energy: Callable[[Any], FreeEnergy]
    chain: Callable[..., ChainSpec]
    project: Callable[[Any, RealData], Callable[[Params], Params]] | None = None


def fe_phases(model: FEModel, monitor: Callable[..., dict] | None = None):
    """``phases(cfg)`` of :func:`fe_experiment`: one ``train`` phase.  Its state starts one
    persistent chain at each of ``n_chains`` random training rows (keys: params, chains,
    rows, split once); its step is CD-k/PCD-k of ``model.free_energy`` with ``cfg.optimizer``
    and the model's projection; an epoch whose mean acceptance rate falls below 0.01 stops
    the run (:func:`egm.train.check_acceptance`)."""
    from egm import train

    def init(cfg, d: RealData, key, done) -> train.TrainState:
        k_params, k_chains, k_rows = jax.random.split(key, 3)
        v0 = jnp.asarray(d.z_train)[jax.random.choice(k_rows, len(d.z_train), (cfg.n_chains,))]
        params = model.init_params(cfg, d, k_params)
        opt = cfg.optimizer(len(d.z_train))
        return train.init_fe_state(k_chains, params, opt, model.chain(cfg), v0)

    def step(cfg, d: RealData, done):
        project = None if model.project is None else model.project(cfg, d)
        return train.make_fe_step(
            model.free_energy(cfg), model.chain(cfg), cfg.optimizer(len(d.z_train)),
            train.FEStepConfig(cfg.estimator, cfg.k), project=project,
        )  # fmt: skip

    def phases(cfg) -> list[Phase]:
        hint = f"(learning_rate={cfg.learning_rate})"
        check = lambda e, m: train.check_acceptance(e, m, hint=hint)  # noqa: E731
        return [Phase("train", init, step, monitor=monitor, check_epoch=check)]

    return phases


def fe_experiment(
    name: str,
    presets: dict[str, Any],
    model: FEModel,
    *,
    evaluate: Callable[..., dict],
    pictures: Callable[..., dict],
    describe: Callable[[Any], dict],
    monitor: Callable[..., dict] | None = None,
    save_params: bool = False,
) -> Experiment:
    """The :class:`egm.run.Experiment` of a free-energy model on real-valued data: data from
    ``cfg.run_data()``, the phases of :func:`fe_phases`, ``evaluate(cfg, data, done, key)``
    with the data's description and sizes added (``data``, ``n_train``, ``n_test``), the
    whitening (and with ``save_params`` the final parameters) kept in the work directory
    (:func:`run_files`)."""

    def evaluate_all(cfg, d: RealData, done, key) -> dict:
        return {**evaluate(cfg, d, done, key), "data": f"{d.source}, {d.protocol}",
                "n_train": len(d.z_train), "n_test": len(d.z_test)}  # fmt: skip

    return Experiment(
        name=name, presets=presets, load=lambda cfg: cfg.run_data(),
        phases=fe_phases(model, monitor), evaluate=evaluate_all, pictures=pictures,
        files=run_files(params=save_params), describe=describe,
        divergence_hint=lambda c: f"(learning_rate={c.learning_rate}, grad_clip={c.grad_clip})",
    )  # fmt: skip


def factored_pictures(model: FEModel) -> Callable[..., dict]:
    """The ``pictures`` of a factored model's experiment (mcRBM, mPoT):
    :func:`egm.eval.realvalued.factored_pictures` of ``n_samples`` chains run for
    ``sample_steps`` steps of ``model.chain(cfg, step)`` (fixed-step HMC at the median adapted
    step size, or the Gibbs chain)."""
    from egm.eval import realvalued as ev

    def pictures(cfg, d: RealData, done, key) -> dict:
        state = done["train"]
        return ev.factored_pictures(
            key, lambda step: model.chain(cfg, step), state.params, state.chains, d.z_train,
            d.whitening, d.image_shape, n_samples=cfg.n_samples, n_steps=cfg.sample_steps,
        )  # fmt: skip

    return pictures


def denoising(
    cfg: FETrainingFields, d: RealData, free_energy: FreeEnergy, params, key, **kw
) -> dict:
    """:func:`egm.eval.denoise.denoising_report` of ``denoise_n`` test patches at pixel noise
    ``denoise_std`` (``kw``: its ``n_steps``, ``extra`` estimators)."""
    from egm.eval.denoise import denoising_report

    return denoising_report(key, free_energy, params, d.x_train, d.x_test, d.whitening,
                            noise_std=cfg.denoise_std, n=cfg.denoise_n, **kw)  # fmt: skip


def free_energy_gap(cfg: FETrainingFields, d: RealData, free_energy: FreeEnergy, params) -> float:
    """Mean F on ``eval_size`` test rows minus mean F on as many training rows (an
    overfitting monitor: it grows when the model fits the training rows only)."""
    from egm.eval.metrics import free_energy_gap as gap

    n = cfg.eval_size
    return float(gap(free_energy, params, d.z_train[:n], d.z_test[:n]))


def run_files(*, params: bool = False):
    """The ``files`` hook of a real-valued experiment (:class:`egm.run.Experiment`): the
    whitening transform is kept with the run (``whitening.npz``, so filters and samples can be
    mapped back to pixels) and, with ``params``, the final parameters of the ``train`` phase as
    ``params.npz``."""

    def files(cfg, d: RealData, done, path) -> None:
        from egm.data import save_whitening

        save_whitening(path / "whitening.npz", d.whitening)
        if params:
            p = done["train"].params
            np.savez(path / "params.npz", **{k: np.asarray(v) for k, v in p._asdict().items()})

    return files
