"""The config field group of the real-valued experiments' data (:func:`egm.data.load_real_data`).

Inherit it: ``class Config(RealDataFields): ...``; ``cfg.load_data()`` loads what the
fields say (patches or dequantised MNIST, whitening, sizes, the data seed).
"""

from __future__ import annotations

import dataclasses

from egm.data.realvalued import REAL_DATASETS, RealData, load_real_data, real_sources
from egm.data.whitening import WHITENING_KINDS
from egm.errors import ConfigError
from egm.run.config import RunFields, at_least, field, one_of

__all__ = ["RealDataFields"]


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
