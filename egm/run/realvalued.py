"""The config field group of the real-valued experiments' data (:func:`egm.data.load_real_data`).

Inherit it: ``class Config(RealDataFields): ...``; ``cfg.load_data()`` loads what the
fields say (patches or dequantised MNIST, whitening, sizes, the data seed).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from egm.data.realvalued import REAL_DATASETS, RealData, load_real_data, real_sources
from egm.data.whitening import WHITENING_KINDS
from egm.errors import ConfigError
from egm.run.config import RunFields, at_least, field, greater_than, in_range, one_of

__all__ = ["FETrainingFields", "HMCFields", "RealDataFields", "run_files"]


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


@dataclasses.dataclass(frozen=True)
class HMCFields(FETrainingFields):
    """HMC on the free energy with a per-chain adapted step size, and validation denoising."""

    hmc_leapfrog: int = field(20, check=at_least(1))
    hmc_step_size: float = field(0.05, check=greater_than(0), help="initial, then adapted")
    hmc_target_accept: float = field(0.9, check=in_range(0, 1, closed_low=False, closed_high=False))
    denoise_every: int = field(5, check=at_least(0), eval_only=True, help="validation; 0: never")


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
