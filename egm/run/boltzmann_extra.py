"""Data and evaluation plumbing of the "other Boltzmann machines" experiments (§20.8): the
classification RBM on MNIST (experiments/drbm_mnist.py) and the gated RBM on shifted
random-dot pairs (experiments/gated_rbm_shifts.py).

* :func:`labelled_mnist`: the MNIST train / valid / test splits as ``(images, labels)``;
* :func:`shifted_pairs` and :func:`shift_pairs`: random-dot images, their cyclic shifts and
  the shift class of each pair;
* :func:`analogy_partners`: for every example, another example of the same class;
* :func:`probe_accuracy`: the test accuracy of a ridge-regression linear probe.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int

from egm.data.mnist import load_mnist
from egm.energies.class_rbm import check_labels
from egm.errors import ConfigError, DataError

__all__ = [
    "LabelledMNIST",
    "ShiftPairs",
    "analogy_partners",
    "labelled_mnist",
    "probe_accuracy",
    "shift_pairs",
    "shifted_pairs",
]

Labelled = tuple[np.ndarray, np.ndarray]


class LabelledMNIST(NamedTuple):
    """``(images (N, 784) grey in [0, 1], int32 labels (N,))`` per split, and the source."""

    train: Labelled
    valid: Labelled
    test: Labelled
    source: str


def labelled_mnist(source: str, data_dir: str | None = None, n_train: int | None = None):
    """MNIST's train (50,000, or its first ``n_train``), valid and test splits as labelled
    pairs (:func:`egm.data.load_mnist`), every label checked to lie in 0..9."""
    splits = {
        s: load_mnist(s, source=source, data_dir=data_dir) for s in ("train", "valid", "test")
    }
    xy = {s: (d.x, check_labels(d.y, 10, f"{s} labels")) for s, d in splits.items()}
    x, y = xy["train"]
    return LabelledMNIST((x[:n_train], y[:n_train]), xy["valid"], xy["test"], splits["test"].source)


def shifted_pairs(
    rng: np.random.Generator, n: int, size: int, max_shift: int, density: float
) -> tuple[Float[np.ndarray, "n D"], Float[np.ndarray, "n D"], Int[np.ndarray, " n"]]:
    """``n`` random-dot images ``x`` (``size`` x ``size``, each pixel on with probability
    ``density``), ``y`` = ``x`` shifted cyclically by ``(dr, dc)`` with ``|dr|, |dc| <=
    max_shift`` drawn uniformly, and the shift class ``(dr + m) (2m + 1) + (dc + m)``, ``m =
    max_shift``; images flattened to ``D = size²``."""
    if not (n >= 1 and max_shift >= 0 and size > 2 * max_shift and 0 <= density <= 1):
        raise ConfigError(
            f"shifted pairs need n >= 1, max_shift >= 0, size > 2 max_shift (larger cyclic "
            f"shifts alias smaller ones) and density in [0, 1]; got n={n}, size={size}, "
            f"max_shift={max_shift}, density={density}"
        )
    s = np.arange(-max_shift, max_shift + 1)
    cls = rng.integers(0, len(s) ** 2, n)
    x = (rng.random((n, size, size)) < density).astype(np.float32)
    y = np.stack(
        [
            np.roll(a, (s[c // len(s)], s[c % len(s)]), axis=(0, 1))
            for a, c in zip(x, cls, strict=True)
        ]
    )
    return x.reshape(n, -1), y.reshape(n, -1), cls


class ShiftPairs(NamedTuple):
    """Training and test pairs ``(x, y)`` and the shift class of every pair, per split."""

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    shifts: dict[str, np.ndarray]


def shift_pairs(
    n_train: int, n_test: int, size: int, max_shift: int, density: float, seed: int
) -> ShiftPairs:
    """:func:`shifted_pairs` for a training and a test split, both from ``seed`` (train
    first)."""
    rng = np.random.default_rng(seed)
    tr = shifted_pairs(rng, n_train, size, max_shift, density)
    te = shifted_pairs(rng, n_test, size, max_shift, density)
    return ShiftPairs(tr[:2], te[:2], {"train": tr[2], "test": te[2]})


def analogy_partners(classes: Int[np.ndarray, " n"]) -> Int[np.ndarray, " n"]:
    """A permutation ``p`` with ``classes[p[i]] == classes[i]``: each example's partner is the
    next example of its class (cyclically; an example alone in its class is its own)."""
    classes = np.asarray(classes)
    partner = np.arange(len(classes))
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        partner[idx] = np.roll(idx, -1)
    return partner


def probe_accuracy(
    f_train: Float[np.ndarray, "n F"],
    c_train: Int[np.ndarray, " n"],
    f_test: Float[np.ndarray, "m F"],
    c_test: Int[np.ndarray, " m"],
    n_classes: int,
    ridge: float = 1e-2,
) -> float:
    """Test accuracy of a linear probe: ridge regression (penalty ``ridge · n`` on every
    weight, the bias included, float64) from the features plus a constant to the one-hot
    class, classifying by the arg-max of its output."""
    if len(f_train) != len(c_train) or len(f_test) != len(c_test) or not len(f_test):
        raise DataError(
            f"the probe needs one class per feature row and test rows, got {len(f_train)} "
            f"rows / {len(c_train)} classes (train), {len(f_test)} / {len(c_test)} (test)"
        )
    A = np.c_[f_train, np.ones(len(f_train))].astype(np.float64)
    W = np.linalg.solve(
        A.T @ A + ridge * len(A) * np.eye(A.shape[1]), A.T @ np.eye(n_classes)[c_train]
    )
    return float(np.mean((np.c_[f_test, np.ones(len(f_test))] @ W).argmax(1) == c_test))
