"""MNIST loader: standard IDX files, tensorflow-datasets, or the embedded subset.

Splits (the convention of the likelihood literature, e.g. Salakhutdinov & Murray
2008): ``"train"`` = the first 50000 training images, ``"valid"`` = the last 10000
training images, ``"test"`` = the 10000 t10k images, ``"train_full"`` = all 60000
training images. Images come as ``(N, 784)`` float32 grey values ``k / 255`` in
``[0, 1]`` (row-major 28 x 28), labels as ``(N,)`` int32.

Sources:

* ``"idx"``: a folder with the four standard IDX files, gzipped or not
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``), given as
  ``data_dir=`` or by the environment variable ``EGM_DATA_DIR``. The folder may
  hold the files itself or in an ``mnist/`` subfolder.
* ``"tfds"``: tensorflow-datasets' ``mnist`` through ``tfds.data_source`` (random
  access to ArrayRecord files; needs no TensorFlow to read). Its data folder is
  tfds' own (``TFDS_DATA_DIR``, else ``~/tensorflow_datasets``). Nothing is
  downloaded unless ``download=True``.
* ``"embedded"``: a small subset shipped inside egm (train 4000 / valid 1000 /
  test 1000: the first images of each split), for tests and quick starts.
* ``"auto"``: idx if a folder is given and holds the files, else tfds if MNIST is
  already prepared there, else :class:`egm.errors.DatasetNotFoundError` saying
  how to get the data.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int

from egm.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from egm.errors import ConfigError, CorruptFileError, DatasetNotFoundError

__all__ = ["MNIST_SPLITS", "MNIST_SOURCES", "Dataset", "load_mnist"]

MNIST_SPLITS: tuple[str, ...] = ("train", "valid", "test", "train_full")
MNIST_SOURCES: tuple[str, ...] = ("auto", "idx", "tfds", "embedded")

ENV_DATA_DIR = "EGM_DATA_DIR"
_N_TRAIN = 50_000
_N_TRAIN_FULL = 60_000
_N_TEST = 10_000
_SIDE = 28
_IDX_STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("t10k", "images"): "t10k-images-idx3-ubyte",
    ("t10k", "labels"): "t10k-labels-idx1-ubyte",
}
_EMBEDDED_PATH = Path(__file__).resolve().parent / "_embedded" / "mnist_subset.npz"
_EMBEDDED_SPLITS = ("train", "valid", "test")


class Dataset(NamedTuple):
    """A labelled image dataset held in host memory.

    Attributes:
      x: grey values in ``[0, 1]``, one flattened image per row.
      y: integer class labels.
      name: dataset and split, e.g. ``"mnist/train"``.
      source: where the arrays came from, for results files, e.g.
        ``"idx:/data/mnist"``, ``"tfds:mnist"``, ``"embedded:mnist_subset(4000/1000/1000)"``.
    """

    x: Float[np.ndarray, "n d"]
    y: Int[np.ndarray, " n"]
    name: str
    source: str


def load_mnist(
    split: str,
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> Dataset:
    """Load one MNIST split as ``(N, 784)`` float32 grey values and ``(N,)`` int32 labels.

    Parsed files are cached in-process, so loading several splits, or the same
    split again, reads each file once. Every call returns fresh, writable arrays.

    Args:
      split: ``"train"`` (50000), ``"valid"`` (10000), ``"test"`` (10000) or
        ``"train_full"`` (60000); the embedded source has no ``"train_full"``.
      source: ``"auto"``, ``"idx"``, ``"tfds"`` or ``"embedded"`` (see the module doc).
      data_dir: folder of the IDX files (or its parent holding ``mnist/``); defaults
        to the environment variable ``EGM_DATA_DIR``. Not used by the tfds source,
        which reads tfds' own folder (``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      download: only for ``source="tfds"``: let tensorflow-datasets download and
        prepare MNIST if it is missing (needs network access, and TensorFlow to
        prepare). ``"auto"`` never downloads.

    Raises:
      ConfigError: unknown split or source.
      DatasetNotFoundError: the data is not where the source looks; the message says
        how to get it.
      CorruptFileError: an IDX or embedded file exists but is truncated or corrupt.
    """
    if split not in MNIST_SPLITS:
        raise ConfigError(f"unknown MNIST split {split!r}; expected one of {MNIST_SPLITS}")
    if source not in MNIST_SOURCES:
        raise ConfigError(f"unknown MNIST source {source!r}; expected one of {MNIST_SOURCES}")
    if download and source != "tfds":
        raise ConfigError('download=True only applies to source="tfds"')

    if source == "embedded":
        return _load_embedded(split)

    folder = _given_folder(data_dir)
    if source == "idx":
        if folder is None:
            raise DatasetNotFoundError(
                _not_found_message(["IDX files: no data_dir given and EGM_DATA_DIR unset"])
            )
        found, missing = _find_idx_folder(folder)
        if found is None:
            raise DatasetNotFoundError(_not_found_message([_missing_text(folder, missing)]))
        return _load_idx(split, found)
    if source == "tfds":
        try:
            return _load_tfds(split, download)
        except _TfdsUnavailable as e:
            raise DatasetNotFoundError(_not_found_message([f"tensorflow-datasets: {e}"])) from e

    # source == "auto"
    tried = []
    if folder is None:
        tried.append("IDX files: no data_dir given and EGM_DATA_DIR unset")
    else:
        found, missing = _find_idx_folder(folder)
        if found is not None:
            return _load_idx(split, found)
        tried.append(_missing_text(folder, missing))
    try:
        return _load_tfds(split, download=False)
    except _TfdsUnavailable as e:
        tried.append(f"tensorflow-datasets: {e}")
    raise DatasetNotFoundError(_not_found_message(tried))


# --------------------------------------------------------------------------- helpers


def _split_range(split: str) -> tuple[str, slice]:
    """Which file pair (``"train"``/``"t10k"``) and which rows a split takes."""
    return {
        "train": ("train", slice(0, _N_TRAIN)),
        "valid": ("train", slice(_N_TRAIN, _N_TRAIN_FULL)),
        "train_full": ("train", slice(0, _N_TRAIN_FULL)),
        "test": ("t10k", slice(0, _N_TEST)),
    }[split]


def _to_dataset(images: np.ndarray, labels: np.ndarray, split: str, source: str) -> Dataset:
    """uint8 images (N, 28, 28) or (N, 784) and labels -> fresh float32 / int32 arrays."""
    x = images.reshape(len(images), _SIDE * _SIDE).astype(np.float32) / np.float32(255.0)
    y = labels.astype(np.int32)
    return Dataset(x=x, y=y, name=f"mnist/{split}", source=source)


def _check_pair(images: np.ndarray, labels: np.ndarray, n: int, where: str) -> None:
    """Raise CorruptFileError unless images are (n, 28, 28) uint8 and labels (n,) in 0..9."""
    if images.shape[1:] != (_SIDE, _SIDE) or len(images) != n:
        raise CorruptFileError(f"{where}: images have shape {images.shape}, expected ({n}, 28, 28)")
    if labels.shape != (n,):
        raise CorruptFileError(f"{where}: labels have shape {labels.shape}, expected ({n},)")
    if labels.size and int(labels.max()) > 9:
        raise CorruptFileError(f"{where}: label {int(labels.max())} out of range 0..9")


# IDX -----------------------------------------------------------------------------


def _given_folder(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """``data_dir``, else ``$EGM_DATA_DIR``, else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else None


def _idx_path(folder: Path, stem: str) -> Path | None:
    """The file ``stem`` or ``stem.gz`` in ``folder`` (plain preferred), or None."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_idx_folder(folder: Path) -> tuple[Path | None, list[str]]:
    """The folder (``folder`` or ``folder/mnist``) holding all four files, else the missing ones."""
    missing: list[str] = []
    for candidate in (folder, folder / "mnist"):
        missing = [s for s in _IDX_STEMS.values() if _idx_path(candidate, s) is None]
        if not missing:
            return candidate.resolve(), []
    missing = [s for s in _IDX_STEMS.values() if _idx_path(folder, s) is None]
    return None, missing


def _missing_text(folder: Path, missing: list[str]) -> str:
    if not folder.is_dir():
        return f"IDX folder {folder}: does not exist"
    return f"IDX folder {folder} (or {folder / 'mnist'}): missing " + ", ".join(
        f"{m}[.gz]" for m in missing
    )


def _load_idx(split: str, folder: Path) -> Dataset:
    which, rows = _split_range(split)
    img_path = _idx_path(folder, _IDX_STEMS[(which, "images")])
    lab_path = _idx_path(folder, _IDX_STEMS[(which, "labels")])
    assert img_path is not None and lab_path is not None  # checked by _find_idx_folder
    images = read_idx(img_path, IDX_IMAGES_MAGIC)
    labels = read_idx(lab_path, IDX_LABELS_MAGIC)
    n = _N_TRAIN_FULL if which == "train" else _N_TEST
    _check_pair(images, labels, n, f"{img_path.name} / {lab_path.name} in {folder}")
    return _to_dataset(images[rows], labels[rows], split, f"idx:{folder}")


# tensorflow-datasets ---------------------------------------------------------------


class _TfdsUnavailable(Exception):
    """tensorflow-datasets is missing or has no prepared MNIST; the message says which."""


def _tfds_data_dir() -> str | None:
    """tfds' data folder, read from ``TFDS_DATA_DIR`` at call time (None: tfds default)."""
    return os.environ.get("TFDS_DATA_DIR") or None


def _load_tfds(split: str, download: bool) -> Dataset:
    which, rows = _split_range(split)
    tfds_split = "train" if which == "train" else "test"
    data_dir = _tfds_data_dir()
    if download:
        _tfds_download(data_dir)
    images, labels = _tfds_arrays(tfds_split, data_dir)
    return _to_dataset(images[rows], labels[rows], split, "tfds:mnist")


def _import_tfds():
    """Import tensorflow_datasets lazily (it is optional at run time)."""
    if importlib.util.find_spec("tensorflow_datasets") is None:
        raise _TfdsUnavailable("the package tensorflow-datasets is not installed")
    try:
        import tensorflow_datasets as tfds
    except Exception as e:  # a broken install should not hide the other sources
        raise _TfdsUnavailable(f"importing tensorflow_datasets failed ({e})") from e
    return tfds


def _tfds_download(data_dir: str | None) -> None:
    """Let tfds download and prepare MNIST (ArrayRecord format, readable without TF)."""
    tfds = _import_tfds()
    try:
        tfds.data_source("mnist", split="test", data_dir=data_dir, download=True)
    except Exception as e:  # tfds raises many kinds (network, missing TF, ...)
        raise _TfdsUnavailable(f"download and prepare failed: {type(e).__name__}: {e}") from e


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """Silence tfds' absl warnings (e.g. "Variant folder ... has no dataset_info.json")
    while probing for a prepared dataset; failures are reported by our own error."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@functools.lru_cache(maxsize=4)
def _tfds_arrays(tfds_split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and labels of a prepared tfds split; never downloads.

    Reads through ``tfds.data_source`` (ArrayRecord, no TensorFlow needed); if MNIST
    was prepared in the TFRecord format instead, falls back to ``tfds.load`` when
    TensorFlow is installed.
    """
    tfds = _import_tfds()
    where = data_dir or "tfds' default data folder (~/tensorflow_datasets)"
    try:
        with _quiet_absl():
            source = tfds.data_source("mnist", split=tfds_split, data_dir=data_dir, download=False)
        records = [source[i] for i in range(len(source))]
        images = np.stack([np.asarray(r["image"], dtype=np.uint8) for r in records])
        labels = np.asarray([int(r["label"]) for r in records], dtype=np.int64)
    except Exception as e:  # not prepared (KeyError), TFRecord format (NotImplementedError), ...
        if importlib.util.find_spec("tensorflow") is None:
            raise _TfdsUnavailable(
                f"mnist is not prepared for random access in {where} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from e
        try:
            arrays = tfds.as_numpy(
                tfds.load(
                    "mnist", split=tfds_split, batch_size=-1, data_dir=data_dir, download=False
                )
            )
        except Exception as e2:
            raise _TfdsUnavailable(
                f"mnist is not prepared in {where} ({type(e2).__name__}: {e2})"
            ) from e2
        images, labels = np.asarray(arrays["image"]), np.asarray(arrays["label"])
    images = images.reshape(len(images), _SIDE, _SIDE)
    n = _N_TRAIN_FULL if tfds_split == "train" else _N_TEST
    _check_pair(images, labels, n, f"tfds mnist/{tfds_split} in {where}")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


# embedded subset -------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> dict[str, np.ndarray]:
    """The arrays of the shipped subset: ``x_<split>`` (n, 784) uint8, ``y_<split>`` (n,)."""
    if not _EMBEDDED_PATH.is_file():
        raise DatasetNotFoundError(
            f"the embedded MNIST subset {_EMBEDDED_PATH} is missing from this egm install; "
            "rebuild it with experiments/tools/make_embedded_subset.py or reinstall egm"
        )
    try:
        with np.load(_EMBEDDED_PATH, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{_EMBEDDED_PATH}: cannot be read ({e})") from e
    for s in _EMBEDDED_SPLITS:
        x, y = arrays.get(f"x_{s}"), arrays.get(f"y_{s}")
        if x is None or y is None:
            raise CorruptFileError(f"{_EMBEDDED_PATH}: missing the arrays x_{s} / y_{s}")
        if (
            x.dtype != np.uint8
            or x.ndim != 2
            or x.shape[1] != _SIDE * _SIDE
            or y.shape != x[:, 0].shape
        ):
            raise CorruptFileError(
                f"{_EMBEDDED_PATH}: x_{s} {x.dtype}{x.shape} / y_{s} {y.shape} are not "
                "(n, 784) uint8 images with (n,) labels"
            )
    for a in arrays.values():
        a.flags.writeable = False
    return arrays


def _load_embedded(split: str) -> Dataset:
    if split not in _EMBEDDED_SPLITS:
        raise ConfigError(
            f"the embedded MNIST subset has the splits {_EMBEDDED_SPLITS}, not {split!r}; "
            'use source="idx" or "tfds" for all 60000 training images'
        )
    arrays = _embedded_arrays()
    counts = "/".join(str(len(arrays[f"y_{s}"])) for s in _EMBEDDED_SPLITS)
    return _to_dataset(
        arrays[f"x_{split}"], arrays[f"y_{split}"], split, f"embedded:mnist_subset({counts})"
    )


# error message ---------------------------------------------------------------------


def _not_found_message(tried: list[str]) -> str:
    lines = ["MNIST not found. Looked at:"]
    lines += [f"  - {t}" for t in tried]
    lines += [
        "Fix it in one of two ways:",
        "  (a) through tensorflow-datasets, with network access: `pip install "
        "tensorflow-datasets` (preparing MNIST also needs `tensorflow`), then "
        'load_mnist(split, source="tfds", download=True) once, or `tfds build mnist '
        "--file_format=array_record`;",
        "  (b) offline: put the four standard IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; "
        "gzipped or not) in a folder and set the environment variable "
        f'{ENV_DATA_DIR}=/that/folder or pass data_dir="/that/folder".',
        'For a quick test without any download, source="embedded" loads the small MNIST '
        "subset shipped with egm (train 4000 / valid 1000 / test 1000 images).",
    ]
    return "\n".join(lines)
