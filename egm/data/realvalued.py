"""Real-valued data of the Gaussian-visible models (GRBM, mcRBM, mPoT, ssRBM; §20.5): 8×8
natural-image patches or dequantised MNIST, whitened by a transform fitted on the
training split.

:func:`load_real_data` returns a :class:`RealData`: pixel-space data in ``[0, 1]``, the
whitened data the models see, the transform (keep it with the run:
:func:`egm.data.save_whitening`), and what the figures were measured on.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from egm.data.mnist import MNIST_SOURCES, load_mnist
from egm.data.patches import PATCH_SOURCES, load_patches
from egm.data.whitening import Whitening, fit_whitening, whiten
from egm.errors import ConfigError

__all__ = ["REAL_DATASETS", "RealData", "load_real_data", "real_sources"]

REAL_DATASETS = ("patches", "mnist")


def real_sources(dataset: str) -> tuple[str, ...]:
    """The sources a dataset can come from (:data:`PATCH_SOURCES` or :data:`MNIST_SOURCES`)."""
    return MNIST_SOURCES if dataset == "mnist" else PATCH_SOURCES


class RealData(NamedTuple):
    """Pixel-space data in [0, 1] (``x_*``), their whitened versions (``z_*``), the
    transform, where they came from (``source``) and how they were transformed
    (``protocol``: dequantisation, whitening, scale), the image shape for
    pictures, and optional validation patches ``x_valid`` (pixel space; fresh draws from
    the training images, never the test ones)."""

    x_train: np.ndarray
    x_test: np.ndarray
    z_train: np.ndarray
    z_test: np.ndarray
    whitening: Whitening
    source: str
    protocol: str
    image_shape: tuple[int, int]
    x_valid: np.ndarray | None = None

    @property
    def train(self) -> np.ndarray:
        """What the models train on: the whitened training data."""
        return self.z_train


def _dequantised_mnist(source, data_dir, n_train, n_test, seed):
    out, name = {}, source
    for i, split in enumerate(("train", "test")):
        ds = load_mnist(split, source=source, data_dir=data_dir)
        n = n_train if split == "train" else n_test
        if n > len(ds.x):
            raise ConfigError(
                f"n_{split} = {n} but the {ds.source} {split} split has {len(ds.x)} images; "
                f"lower --n_{split}"
            )
        pixels = np.round(np.asarray(ds.x[:n], np.float64) * 255.0)
        u = np.random.default_rng(seed + 100 + i).random(pixels.shape)
        out[split], name = ((pixels + u) / 256.0).astype(np.float32), ds.source
    return out["train"], out["test"], name


def load_real_data(
    dataset: str = "patches",
    source: str = "auto",
    *,
    n_train: int,
    n_test: int,
    patch_size: int = 8,
    whitening: str = "zca",
    whiten_eps: float | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    scale: float = 1.0,
    n_valid: int = 0,
) -> RealData:
    """Load, whiten (and optionally rescale) real-valued training and test data.

    ``dataset="patches"``: ``patch_size``² patches of natural photographs
    (:func:`egm.data.load_patches`; test patches from images disjoint from the training
    ones, all drawn with ``seed``), plus ``n_valid`` validation patches drawn from the
    training split with ``seed + 1``.  ``dataset="mnist"``: grey levels ``(pixel + u) / 256``
    with one fixed uniform dequantisation draw ``u ~ U[0, 1)`` per pixel (seed ``seed + 100``
    for train, ``seed + 101`` for test; the splits' first ``n_train`` / ``n_test`` images).
    Dequantisation makes a density on the grey levels a lower bound on the probability of
    the 8-bit image (so bits per dimension compare across models) and leaves no pixel with
    zero variance (MNIST's border is constant), which would let a learned variance collapse.

    The whitening (``zca`` | ``pca`` | ``standardize``, regulariser ``whiten_eps``) is
    fitted on the training data; ``scale != 1`` multiplies the whitened data and folds the
    factor into the transform (``forward * scale``, ``inverse / scale``), so that whiten,
    unwhiten, the denoisers and the pictures see what the model sees.
    """
    if dataset not in REAL_DATASETS:
        raise ConfigError(f"dataset must be one of {REAL_DATASETS}, got {dataset!r}")
    if source not in real_sources(dataset):
        raise ConfigError(
            f"source must be one of {real_sources(dataset)} for {dataset}, got {source!r}"
        )
    if not scale > 0:
        raise ConfigError(f"scale must be > 0, got {scale}")
    x_valid = None
    if dataset == "mnist":
        x_tr, x_te, name = _dequantised_mnist(source, data_dir, n_train, n_test, seed)
        protocol, shape = f"dequantised (pixel + U[0,1)) / 256, {whitening}-whitened", (28, 28)
    else:
        kw = dict(patch_size=patch_size, seed=seed, data_dir=data_dir)
        x_tr = load_patches(source, split="train", n_patches=n_train, **kw)
        x_te = load_patches(source, split="test", n_patches=n_test, **kw)
        if n_valid:
            kw["seed"] = seed + 1
            x_valid = load_patches(source, split="train", n_patches=n_valid, **kw)
        name = f"{source} natural-image patches {patch_size}x{patch_size}"
        protocol, shape = f"{whitening}-whitened", (patch_size, patch_size)
    w = fit_whitening(x_tr, kind=whitening, eps=whiten_eps)
    if scale != 1.0:
        w = w._replace(forward=w.forward * scale, inverse=w.inverse / scale)
        protocol += f", times {scale}"
    z_tr = np.asarray(whiten(w, x_tr), np.float32)
    z_te = np.asarray(whiten(w, x_te), np.float32)
    return RealData(x_tr, x_te, z_tr, z_te, w, name, protocol, shape, x_valid)
