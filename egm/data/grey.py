"""Grey-level MNIST: the train/valid/test splits a grey-level model (a GAN, a GMMN, a flow)
trains on and is scored against."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from egm.data.mnist import load_mnist


class GreyMNIST(NamedTuple):
    """``train``: the training grey levels; ``splits``: train/valid/test grey levels in
    [0, 1], (N, 784) float32 (the splits of :func:`egm.data.load_mnist`); ``labels``: the
    classes per split; ``source``: where the digits came from; ``protocol``: the sentence
    stored with every figure."""

    train: np.ndarray
    splits: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    source: str
    protocol: str


def load_grey_mnist(
    *, source: str = "auto", data_dir: str | os.PathLike[str] | None = None
) -> GreyMNIST:
    """Train/valid/test MNIST as grey levels k/255 in [0, 1], no binarization."""
    ds = {s: load_mnist(s, source=source, data_dir=data_dir) for s in ("train", "valid", "test")}
    grey = {name: np.asarray(d.x, np.float32) for name, d in ds.items()}
    labels = {name: np.asarray(d.y) for name, d in ds.items()}
    return GreyMNIST(grey["train"], grey, labels, ds["train"].source, "grey levels in [0, 1]")
