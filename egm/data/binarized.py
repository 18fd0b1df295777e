"""Binarized MNIST under a named protocol: the splits every binary model trains and is scored on."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from egm.data.binarize import binarize_fixed, binarize_threshold, describe_protocol
from egm.data.mnist import load_mnist
from egm.errors import ConfigError


class BinarizedMNIST(NamedTuple):
    """``train``: the training array (binary, or grey under "dynamic" where the train step
    re-draws it); ``binary``: train/valid/test dicts, binary under every protocol (dynamic:
    one fixed draw, seed ``binarization_seed + 10 + split index``); ``labels``: the integer
    classes per split; ``source``: where the digits came from; ``protocol``: the sentence
    stored with every likelihood; ``grey``: the grey digits per split (values in [0, 1]) when
    loaded with ``keep_grey=True``, else ``None``."""

    train: np.ndarray
    binary: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    source: str
    protocol: str
    grey: dict[str, np.ndarray] | None = None

    def digits(self, split: str, grey: bool = False, n: int | None = None) -> np.ndarray:
        """The first ``n`` (all: ``None``) digits of ``split``, binarized or, with ``grey``,
        the grey ones (values in [0, 1]; loaded with ``keep_grey=True``, else a ConfigError)."""
        if grey and self.grey is None:
            raise ConfigError("the grey digits were not loaded: load_binarized_mnist(..., "
                              "keep_grey=True)")  # fmt: skip
        return (self.grey if grey else self.binary)[split][:n]


def load_binarized_mnist(
    binarization: str,
    binarization_seed: int = 0,
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    keep_grey: bool = False,
) -> BinarizedMNIST:
    """Train/valid/test MNIST (:func:`egm.data.load_mnist`) under ``binarization``: "fixed"
    (one seeded draw per split, seeds ``s, s+1, s+2``), "dynamic" or "threshold";
    ``keep_grey``: also keep the grey splits (``.grey``; e.g. a classifier's inputs)."""
    splits = {
        s: load_mnist(s, source=source, data_dir=data_dir) for s in ("train", "valid", "test")
    }
    grey = {name: ds.x for name, ds in splits.items()}
    binary = {}
    for i, (name, x) in enumerate(grey.items()):
        if binarization == "fixed":
            binary[name] = binarize_fixed(x, seed=binarization_seed + i)
        elif binarization == "threshold":
            binary[name] = binarize_threshold(x)
        else:
            binary[name] = binarize_fixed(x, seed=binarization_seed + 10 + i)
    train = grey["train"] if binarization == "dynamic" else binary["train"]
    protocol = describe_protocol(binarization, seed=binarization_seed)
    if binarization == "fixed":
        s = binarization_seed
        protocol += f" (train/valid/test drawn with seeds {s}/{s + 1}/{s + 2})"
    elif binarization == "dynamic":
        protocol += "; evaluation on one fixed draw per split (seed binarization_seed + 10 + split)"
    labels = {name: np.asarray(ds.y) for name, ds in splits.items()}
    return BinarizedMNIST(train, binary, labels, splits["train"].source, protocol,
                          grey if keep_grey else None)  # fmt: skip
