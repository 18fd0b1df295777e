"""Grey natural-image patches for the real-valued Boltzmann machines (§20.5).

:func:`load_patches` returns ``(n_patches, patch_size**2)`` float32 grey values in
``[0, 1]`` (row-major patches), cut at random positions from natural photographs.
The result is a pure function of ``(source, split, patch_size, n_patches, seed)``.

Sources:

* ``"skimage"``: the natural photographs that scikit-image ships inside its package
  (no download; the optional extra ``pip install "egm[patches]"``),
  :data:`SKIMAGE_IMAGES`: astronaut, camera, coffee, chelsea, rocket, grass, brick, moon,
  motorcycle_left (the left view of ``skimage.data.stereo_motorcycle``), gravel, coins.
  The train and test patches come from *disjoint pixels* of every photograph, cut
  into horizontal bands of :data:`BAND_ROWS` rows: in each band the last
  :data:`TEST_ROWS` rows (20 %) are test, the others train (pieces shorter than
  :data:`TEST_ROWS` at the bottom are dropped).  Interleaved bands keep both splits
  spread over the whole of every photograph: holding out whole photographs (3 of 11)
  or the bottom fifth of each made the test set a different distribution (sky above,
  textured ground below) — the full-covariance Gaussian's test log-likelihood fell 8–20
  nats below its training figure, a gap that measured the split, not the model.

  Each patch first draws its image uniformly (so a large photograph does not outweigh
  a small one), then its top-left corner uniformly among the positions where the
  patch fits.
* ``"tfds"``: CIFAR-10 through tensorflow-datasets (train split: 50000 images, test
  split: 10000), turned grey; patches are cut from the 32 x 32 images in the same way,
  so ``patch_size=32`` gives whole images. Read from tfds' data folder (``data_dir``,
  else ``TFDS_DATA_DIR``, else ``~/tensorflow_datasets``); nothing is downloaded.
* ``"auto"``: ``"skimage"`` if scikit-image is installed, else ``"tfds"`` if CIFAR-10
  is prepared there, else :class:`egm.errors.DatasetNotFoundError` saying how to get
  either.

Images are drawn without replacement while ``n_patches`` is at most the number of
images in the split (so whole CIFAR images are distinct), with replacement beyond.
Colour becomes luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (ITU-R BT.709, the weights
of ``skimage.color.rgb2gray``) of the 8-bit values divided by 255.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Float, Int

from egm.data.mnist import _import_tfds, _quiet_absl, _tfds_data_dir, _TfdsUnavailable
from egm.errors import ConfigError, CorruptFileError, DatasetNotFoundError

__all__ = [
    "PATCH_SOURCES",
    "PATCH_SPLITS",
    "SKIMAGE_IMAGES",
    "BAND_ROWS",
    "TEST_ROWS",
    "load_patches",
]

PATCH_SOURCES: tuple[str, ...] = ("auto", "skimage", "tfds")
PATCH_SPLITS: tuple[str, ...] = ("train", "test")

#: Natural photographs of ``skimage.data`` behind the patches.
SKIMAGE_IMAGES: tuple[str, ...] = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "grass",
    "brick",
    "moon",
    "motorcycle_left",
    "gravel",
    "coins",
)
#: Height of the bands each photograph is cut into; the last TEST_ROWS rows of a band are test.
BAND_ROWS = 160
TEST_ROWS = 32

_LUMA = np.array([0.2125, 0.7154, 0.0721])
_CIFAR_SIDE = 32
_INSTALL_HINT = (
    'install scikit-image (`pip install "egm[patches]"`) for patches of the natural '
    "photographs shipped inside it, no download needed; or, with network access, prepare "
    "CIFAR-10 for tensorflow-datasets once (`pip install tensorflow-datasets tensorflow`, "
    'then `tfds build cifar10 --file_format=array_record`) and use source="tfds"'
)


def load_patches(
    source: str = "auto",
    *,
    split: str = "train",
    patch_size: int = 8,
    n_patches: int = 50_000,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
) -> Float[np.ndarray, "n_patches d"]:
    """``n_patches`` random grey ``patch_size x patch_size`` patches, one flattened per row.

    Args:
      source: ``"auto"``, ``"skimage"`` or ``"tfds"`` (see the module doc).
      split: ``"train"`` or ``"test"``; the two come from disjoint regions (see the module doc).
      patch_size: side of the square patches, at least 2 and at most the smallest image
        side of the split's regions (32 for skimage: :data:`TEST_ROWS`; 32 for CIFAR-10).
      n_patches: number of patches, at least 1.
      seed: seed of the ``numpy.random.Generator`` that picks images and positions.
      data_dir: tfds' data folder for the tfds source (and for "auto" when it falls back
        to tfds); default ``TFDS_DATA_DIR``, else ``~/tensorflow_datasets``.

    Returns:
      float32 array ``(n_patches, patch_size**2)`` with values in ``[0, 1]``.

    Raises:
      ConfigError: unknown source or split, a patch size or count out of range, a
        negative seed, or ``data_dir`` with ``source="skimage"``.
      DatasetNotFoundError: the source's data is missing; the message says how to get it.
      CorruptFileError: tfds serves CIFAR-10 images that are not 32 x 32 x 3 uint8.
    """
    if source not in PATCH_SOURCES:
        raise ConfigError(f"unknown patch source {source!r}; expected one of {PATCH_SOURCES}")
    if split not in PATCH_SPLITS:
        raise ConfigError(f"unknown patch split {split!r}; expected one of {PATCH_SPLITS}")
    for name, value, low in (("patch_size", patch_size, 2), ("n_patches", n_patches, 1)):
        if not _is_int(value) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if source == "skimage" and data_dir is not None:
        raise ConfigError(
            'data_dir only applies to source="tfds" (the skimage photographs ship inside '
            'scikit-image); drop data_dir or use source="tfds"'
        )
    folder = os.fspath(data_dir) if data_dir is not None else _tfds_data_dir()

    if source == "auto":
        try:
            _import_skimage_data()
            source = "skimage"
        except _SkimageUnavailable as e_sk:
            try:
                return _tfds_patches(split, patch_size, n_patches, seed, folder)
            except _TfdsUnavailable as e_tf:
                raise DatasetNotFoundError(
                    "no source of natural-image patches found. Looked at:\n"
                    f"  - scikit-image: {e_sk}\n"
                    f"  - tensorflow-datasets CIFAR-10: {e_tf}\n"
                    f"Fix it: {_INSTALL_HINT}."
                ) from e_tf
    if source == "skimage":
        images = _skimage_images(split)
        patches, _, _, _ = _cut_patches(images, patch_size, n_patches, seed)
        return patches
    try:
        return _tfds_patches(split, patch_size, n_patches, seed, folder)
    except _TfdsUnavailable as e:
        raise DatasetNotFoundError(
            f"CIFAR-10 patches: tensorflow-datasets: {e}. Fix it: {_INSTALL_HINT}."
        ) from e


# --------------------------------------------------------------------------- helpers


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _to_grey(image: np.ndarray) -> np.ndarray:
    """8-bit grey image ``(H, W)``, or RGB(A) images ``(..., H, W, 3 or 4)`` -> float32
    luminance in [0, 1] (BT.709 weights)."""
    x = np.asarray(image, dtype=np.float64) / 255.0
    if x.ndim >= 3:
        x = x[..., :3] @ _LUMA
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _draw_image_ids(rng: np.random.Generator, n_images: int, n_patches: int) -> np.ndarray:
    """Which image each patch comes from: distinct while possible, uniform otherwise."""
    if n_patches <= n_images:
        return rng.choice(n_images, size=n_patches, replace=False)
    return rng.integers(0, n_images, size=n_patches)


def _cut_patches(
    images: Sequence[np.ndarray], patch_size: int, n_patches: int, seed: int
) -> tuple[
    Float[np.ndarray, "n d"], Int[np.ndarray, " n"], Int[np.ndarray, " n"], Int[np.ndarray, " n"]
]:
    """Random patches of grey images ``(H_i, W_i)``, with where each came from.

    Returns the patches ``(n, patch_size**2)`` float32, and per patch the index of its
    image in ``images`` and its top-left row and column.
    """
    fits = [min(im.shape) for im in images]
    if patch_size > min(fits):
        raise ConfigError(
            f"patch_size {patch_size} does not fit the images of this split: the smallest "
            f"is {min(fits)} pixels on its short side; use patch_size <= {min(fits)}"
        )
    rng = np.random.default_rng(seed)
    ids = _draw_image_ids(rng, len(images), n_patches)
    row_max = np.array([im.shape[0] - patch_size for im in images])[ids]
    col_max = np.array([im.shape[1] - patch_size for im in images])[ids]
    rows = rng.integers(0, row_max + 1)
    cols = rng.integers(0, col_max + 1)
    out = np.empty((n_patches, patch_size, patch_size), np.float32)
    for i, image in enumerate(images):
        sel = np.flatnonzero(ids == i)
        if sel.size:
            windows = np.lib.stride_tricks.sliding_window_view(image, (patch_size, patch_size))
            out[sel] = windows[rows[sel], cols[sel]]
    return out.reshape(n_patches, patch_size * patch_size), ids, rows, cols


# scikit-image ----------------------------------------------------------------------


class _SkimageUnavailable(Exception):
    """scikit-image is not installed or cannot be imported; the message says which."""


def _import_skimage_data():
    """Import ``skimage.data`` lazily (scikit-image is an optional extra)."""
    try:
        import skimage.data as skdata
    except ImportError as e:
        raise _SkimageUnavailable(f"the package scikit-image is not installed ({e})") from e
    except Exception as e:  # a broken install should not hide the tfds source
        raise _SkimageUnavailable(f"importing skimage.data failed ({e})") from e
    return skdata


def _skimage_loader(name: str) -> Callable[[], np.ndarray]:
    skdata = _import_skimage_data()
    if name == "motorcycle_left":
        return lambda: skdata.stereo_motorcycle()[0]
    return getattr(skdata, name)


@functools.cache
def _skimage_grey(name: str) -> np.ndarray:
    """One ``skimage.data`` photograph as a read-only float32 grey image in [0, 1]."""
    try:
        image = _skimage_loader(name)()
    except _SkimageUnavailable:
        raise
    except Exception as e:  # a slimmed install without the file, a decoder error, ...
        raise DatasetNotFoundError(
            f"scikit-image could not load its sample image {name!r} "
            f"({type(e).__name__}: {e}); reinstall scikit-image (`pip install --force-reinstall "
            '"scikit-image>=0.19"`) or use source="tfds"'
        ) from e
    grey = _to_grey(image)
    grey.flags.writeable = False
    return grey


def _skimage_images(split: str) -> list[np.ndarray]:
    """The split's regions of every photograph, in photograph then band order: the first
    ``BAND_ROWS - TEST_ROWS`` rows of every band (train) or its last ``TEST_ROWS`` (test);
    pieces shorter than ``TEST_ROWS`` rows are dropped."""
    try:
        images = [_skimage_grey(n) for n in SKIMAGE_IMAGES]
    except _SkimageUnavailable as e:
        raise DatasetNotFoundError(
            f'source="skimage": {e}. Fix it: `pip install "egm[patches]"` (scikit-image), '
            'or use source="tfds" (CIFAR-10 through tensorflow-datasets).'
        ) from e
    lo, hi = (0, BAND_ROWS - TEST_ROWS) if split == "train" else (BAND_ROWS - TEST_ROWS, BAND_ROWS)
    pieces = [
        im[start + lo : start + hi] for im in images for start in range(0, im.shape[0], BAND_ROWS)
    ]
    return [p for p in pieces if p.shape[0] >= TEST_ROWS]


# tensorflow-datasets CIFAR-10 ------------------------------------------------------


def _cifar_source(tfds_split: str, data_dir: str | None):
    """Random-access CIFAR-10 records (``record["image"]``: (32, 32, 3) uint8); never downloads.

    Reads through ``tfds.data_source`` (ArrayRecord, no TensorFlow needed); if CIFAR-10
    was prepared in the TFRecord format instead, falls back to ``tfds.load`` when
    TensorFlow is installed (as :func:`egm.data.load_mnist` does).
    """
    tfds = _import_tfds()
    where = data_dir or "tfds' default data folder (~/tensorflow_datasets)"
    try:
        with _quiet_absl():
            return tfds.data_source("cifar10", split=tfds_split, data_dir=data_dir, download=False)
    except Exception as e:  # not prepared (KeyError), TFRecord format (NotImplementedError), ...
        first = str(e).splitlines()[0] if str(e) else ""
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            raise _TfdsUnavailable(
                f"cifar10 is not prepared for random access in {where} ({type(e).__name__}: {first})"
            ) from e
        try:
            arrays = tfds.as_numpy(
                tfds.load(
                    "cifar10", split=tfds_split, batch_size=-1, data_dir=data_dir, download=False
                )
            )
        except Exception as e2:
            raise _TfdsUnavailable(
                f"cifar10 is not prepared in {where} ({type(e2).__name__}: {e2})"
            ) from e2
        return [{"image": im} for im in np.asarray(arrays["image"])]


def _tfds_patches(
    split: str, patch_size: int, n_patches: int, seed: int, data_dir: str | None
) -> np.ndarray:
    if patch_size > _CIFAR_SIDE:
        raise ConfigError(
            f"patch_size {patch_size} does not fit the 32 x 32 CIFAR-10 images; "
            "use patch_size <= 32 (32 gives whole images)"
        )
    source = _cifar_source(split, data_dir)
    n_images = len(source)
    if n_images == 0:
        raise CorruptFileError(f"tfds cifar10/{split} has no images")
    rng = np.random.default_rng(seed)
    ids = _draw_image_ids(rng, n_images, n_patches)
    rows = rng.integers(0, _CIFAR_SIDE - patch_size + 1, size=n_patches)
    cols = rng.integers(0, _CIFAR_SIDE - patch_size + 1, size=n_patches)
    unique, inverse = np.unique(ids, return_inverse=True)
    raw = [np.asarray(source[int(i)]["image"]) for i in unique]
    for i, im in zip(unique, raw, strict=True):
        if im.shape != (_CIFAR_SIDE, _CIFAR_SIDE, 3) or im.dtype != np.uint8:
            raise CorruptFileError(
                f"tfds cifar10/{split} image {int(i)} is {im.dtype}{im.shape}, "
                "expected uint8 (32, 32, 3); re-prepare the dataset with `tfds build cifar10`"
            )
    # grey in chunks, so 50000 images never sit in memory as float64 RGB
    grey = np.concatenate([_to_grey(np.stack(raw[i : i + 4096])) for i in range(0, len(raw), 4096)])
    windows = np.lib.stride_tricks.sliding_window_view(grey, (patch_size, patch_size), axis=(1, 2))
    out = windows[inverse, rows, cols]
    return np.ascontiguousarray(out.reshape(n_patches, patch_size * patch_size), np.float32)
