"""Build the MNIST subset shipped inside egm: ``egm/data/_embedded/mnist_subset.npz``.

Contents (uint8 grey images flattened to 784 values, uint8 labels):

* ``x_train`` / ``y_train``: the first 4000 images of the 50k train split
  (training images 0..3999);
* ``x_valid`` / ``y_valid``: the first 1000 of the validation split
  (training images 50000..50999);
* ``x_test`` / ``y_test``: the first 1000 t10k images.

Written with ``np.savez_compressed`` (no pickled objects), so ``np.load(...,
allow_pickle=False)`` reads it. The output is deterministic given the IDX files.

Usage::

    python experiments/tools/make_embedded_subset.py [--mnist-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from egm.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
DEFAULT_OUT = REPO / "egm" / "data" / "_embedded" / "mnist_subset.npz"

# split -> (IDX file prefix, first index, count)
SUBSET = {
    "train": ("train", 0, 4000),
    "valid": ("train", 50_000, 1000),
    "test": ("t10k", 0, 1000),
}


def _read_split(mnist_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    def find(stem: str) -> Path:
        for name in (stem, stem + ".gz"):
            if (mnist_dir / name).is_file():
                return mnist_dir / name
        raise FileNotFoundError(f"{mnist_dir} has no {stem}[.gz]")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"), IDX_IMAGES_MAGIC)
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"), IDX_LABELS_MAGIC)
    return images.reshape(len(images), -1), labels


def build(mnist_dir: Path, out: Path) -> dict[str, np.ndarray]:
    """Write the subset to ``out`` and return the arrays written."""
    arrays: dict[str, np.ndarray] = {}
    for split, (prefix, start, count) in SUBSET.items():
        images, labels = _read_split(mnist_dir, prefix)
        arrays[f"x_{split}"] = np.ascontiguousarray(images[start : start + count], dtype=np.uint8)
        arrays[f"y_{split}"] = np.ascontiguousarray(labels[start : start + count], dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", type=Path, default=DEFAULT_MNIST_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    arrays = build(args.mnist_dir, args.out)
    shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {shapes}")


if __name__ == "__main__":
    main()
