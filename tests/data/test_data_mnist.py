"""MNIST loading: IDX folder, EGM_DATA_DIR, tfds (mocked), embedded subset, errors."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from egm.data import Dataset, load_mnist, read_idx
from egm.data import mnist as mnist_module
from egm.data.idx import _read_idx_cached
from egm.errors import ConfigError, CorruptFileError, DatasetNotFoundError

SPLIT_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000, "train_full": 60_000}
LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
STEMS = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def _check_dataset(ds: Dataset, split: str) -> None:
    n = SPLIT_SIZES[split]
    assert ds.x.shape == (n, 784) and ds.x.dtype == np.float32
    assert ds.y.shape == (n,) and ds.y.dtype == np.int32
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert set(np.unique(ds.y)) == set(range(10))
    assert ds.name == f"mnist/{split}"


def _idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def _folder_with(tmp_path: Path, mnist_dir: Path, replace: dict[str, bytes]) -> Path:
    """A folder linking the four shared files, with some replaced by the given bytes."""
    folder = tmp_path / "mnist_copy"
    folder.mkdir()
    for stem in STEMS:
        name = stem + ".gz"
        if name in replace:
            (folder / name).write_bytes(replace[name])
        elif stem in replace:
            (folder / stem).write_bytes(replace[stem])
        else:
            os.symlink(mnist_dir / name, folder / name)
    return folder


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("split", list(SPLIT_SIZES))
def test_load_split_via_data_dir(mnist_dir: Path, split: str) -> None:
    ds = load_mnist(split, data_dir=mnist_dir)
    _check_dataset(ds, split)
    assert ds.source == f"idx:{mnist_dir.resolve()}"


def test_load_via_env(mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EGM_DATA_DIR", str(mnist_dir))
    by_env = load_mnist("test")
    by_arg = load_mnist("test", data_dir=mnist_dir)
    _check_dataset(by_env, "test")
    np.testing.assert_array_equal(by_env.x, by_arg.x)
    np.testing.assert_array_equal(by_env.y, by_arg.y)
    assert by_env.source == by_arg.source


def test_env_may_point_at_parent_of_mnist(mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EGM_DATA_DIR=<folder holding mnist/> works too, so one variable serves every dataset."""
    monkeypatch.setenv("EGM_DATA_DIR", str(mnist_dir.parent))
    ds = load_mnist("valid", source="idx")
    _check_dataset(ds, "valid")
    assert ds.source == f"idx:{mnist_dir.resolve()}"


def test_train_full_label_counts_and_mean_pixel(mnist_dir: Path) -> None:
    """Published figures of the MNIST training set (shared/data/README.md)."""
    ds = load_mnist("train_full", data_dir=mnist_dir)
    assert np.bincount(ds.y, minlength=10).tolist() == LABEL_COUNTS
    assert abs(ds.x.mean(dtype=np.float64) - 33.318 / 255) < 1e-3
    head = ds.x[:1000]  # grey values are exactly the float32 nearest k / 255
    np.testing.assert_array_equal(np.round(head * 255).astype(np.float32) / np.float32(255), head)


def test_train_and_valid_partition_train_full(mnist_dir: Path) -> None:
    full = load_mnist("train_full", data_dir=mnist_dir)
    train = load_mnist("train", data_dir=mnist_dir)
    valid = load_mnist("valid", data_dir=mnist_dir)
    assert np.array_equal(train.x, full.x[:50_000]) and np.array_equal(valid.x, full.x[50_000:])
    assert np.array_equal(np.concatenate([train.y, valid.y]), full.y)


def test_repeated_loads_are_cached_and_fresh(mnist_dir: Path) -> None:
    first = load_mnist("test", data_dir=mnist_dir)
    before = _read_idx_cached.cache_info().hits
    first.x[0, 0] = 123.0  # arrays handed out are writable copies ...
    second = load_mnist("test", data_dir=mnist_dir)
    assert _read_idx_cached.cache_info().hits == before + 2  # images and labels
    assert second.x[0, 0] == 0.0  # ... so a caller's edit never leaks into the cache


def test_plain_idx_files_load(mnist_dir: Path, tmp_path: Path) -> None:
    """Uncompressed IDX files are read too, and give the same arrays as the .gz ones."""
    folder = tmp_path / "plain"
    folder.mkdir()
    for stem in STEMS:
        (folder / stem).write_bytes(gzip.decompress((mnist_dir / (stem + ".gz")).read_bytes()))
    plain = load_mnist("test", data_dir=folder, source="idx")
    ref = load_mnist("test", data_dir=mnist_dir)
    np.testing.assert_array_equal(plain.x, ref.x)
    np.testing.assert_array_equal(plain.y, ref.y)


def test_read_idx_roundtrip_of_small_files(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(0x0803, a.shape, a.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "a", 2051), a)
    b = np.array([-5, 7, 1 << 20], dtype=">i4")
    (tmp_path / "b.gz").write_bytes(gzip.compress(_idx_bytes(0x0C01, b.shape, b.tobytes())))
    got = read_idx(tmp_path / "b.gz")
    assert got.tolist() == [-5, 7, 1 << 20] and not got.flags.writeable


# ------------------------------------------------------------------------- corrupt files


def test_truncated_gz_raises(mnist_dir: Path, tmp_path: Path) -> None:
    good = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    folder = _folder_with(
        tmp_path, mnist_dir, {"t10k-labels-idx1-ubyte.gz": good[: len(good) // 2]}
    )
    with pytest.raises(CorruptFileError, match=r"t10k-labels-idx1-ubyte\.gz.*truncated"):
        load_mnist("test", data_dir=folder)


def test_bad_magic_raises(tmp_path: Path) -> None:
    labels = np.zeros(10, dtype=np.uint8)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(_idx_bytes(2051, (10,), labels.tobytes()))  # image magic on a label file
    with pytest.raises(CorruptFileError, match=r"t10k-labels-idx1-ubyte: bad magic number 2051"):
        read_idx(path, expect_magic=2049)
    path.write_bytes(b"\x12\x34\x56\x78" + bytes(20))
    with pytest.raises(CorruptFileError, match="bad magic number.*not an IDX file"):
        read_idx(path)


def test_bad_magic_in_folder_raises_on_load(mnist_dir: Path, tmp_path: Path) -> None:
    bad = _idx_bytes(2049, (10_000,), bytes(10_000))  # label magic where images belong
    folder = _folder_with(tmp_path, mnist_dir, {"t10k-images-idx3-ubyte": bad})
    with pytest.raises(CorruptFileError, match="t10k-images-idx3-ubyte: bad magic number 2049"):
        load_mnist("test", data_dir=folder)


@pytest.mark.parametrize("delta", [-1, +3])
def test_wrong_length_raises(tmp_path: Path, delta: int) -> None:
    payload = bytes(2 * 28 * 28 + delta)
    path = tmp_path / "images"
    path.write_bytes(_idx_bytes(2051, (2, 28, 28), payload))
    what = "truncated" if delta < 0 else "trailing bytes"
    with pytest.raises(CorruptFileError, match=rf"images: .*{what}.*\(2, 28, 28\)"):
        read_idx(path, 2051)


def test_bad_gzip_raises(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(range(60)))
    with pytest.raises(CorruptFileError, match=r"x\.gz: not a valid gzip file"):
        read_idx(path)
    path.write_bytes(_idx_bytes(2049, (1,), b"\x03"))  # plain data under a .gz name
    with pytest.raises(CorruptFileError, match="does not start with the gzip magic"):
        read_idx(path)


def test_wrong_image_count_raises(mnist_dir: Path, tmp_path: Path) -> None:
    short = _idx_bytes(2051, (5, 28, 28), bytes(5 * 784))
    folder = _folder_with(tmp_path, mnist_dir, {"t10k-images-idx3-ubyte": short})
    with pytest.raises(CorruptFileError, match=r"shape \(5, 28, 28\), expected \(10000, 28, 28\)"):
        load_mnist("test", data_dir=folder)


# ------------------------------------------------------------------------ missing data


def test_missing_folder_raises_with_both_fixes(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist("train", data_dir=tmp_path / "nowhere")
    msg = str(info.value)
    for needle in ("EGM_DATA_DIR", "tensorflow-datasets", "data_dir=", 'source="embedded"'):
        assert needle in msg, needle
    assert str(tmp_path / "nowhere") in msg
    assert isinstance(info.value, FileNotFoundError)


def test_nothing_configured_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="EGM_DATA_DIR unset"):
        load_mnist("test")
    with pytest.raises(DatasetNotFoundError, match="EGM_DATA_DIR"):
        load_mnist("test", source="idx")
    with pytest.raises(DatasetNotFoundError, match="tensorflow-datasets"):
        load_mnist("test", source="tfds")


def test_folder_missing_some_files_names_them(mnist_dir: Path, tmp_path: Path) -> None:
    os.symlink(mnist_dir / "train-images-idx3-ubyte.gz", tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetNotFoundError, match=r"missing train-labels-idx1-ubyte\[\.gz\]"):
        load_mnist("train", data_dir=tmp_path, source="idx")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "training"},
        {"split": "test", "source": "web"},
        {"split": "test", "download": True},
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict) -> None:
    split = kwargs.pop("split")
    with pytest.raises(ConfigError):
        load_mnist(split, **kwargs)


# ------------------------------------------------------------------------------ embedded


@pytest.mark.parametrize(
    ("split", "start", "count"), [("train", 0, 4000), ("valid", 0, 1000), ("test", 0, 1000)]
)
def test_embedded_matches_idx(mnist_dir: Path, split: str, start: int, count: int) -> None:
    """The shipped subset is exactly the first images of each split of the IDX files."""
    emb = load_mnist(split, source="embedded")
    ref = load_mnist(split, data_dir=mnist_dir)
    assert emb.x.shape == (count, 784) and emb.x.dtype == np.float32 and emb.y.dtype == np.int32
    np.testing.assert_array_equal(emb.x, ref.x[start : start + count])
    np.testing.assert_array_equal(emb.y, ref.y[start : start + count])
    assert emb.name == f"mnist/{split}"
    assert emb.source == "embedded:mnist_subset(4000/1000/1000)"


def test_embedded_has_no_train_full() -> None:
    with pytest.raises(ConfigError, match="embedded"):
        load_mnist("train_full", source="embedded")


def test_embedded_file_is_small_and_pickle_free() -> None:
    path = mnist_module._EMBEDDED_PATH
    assert path.stat().st_size < 1_500_000
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["x_test", "x_train", "x_valid", "y_test", "y_train", "y_valid"]


# --------------------------------------------------------------------- tfds (mocked)


@pytest.fixture
def fake_tfds(mnist_dir: Path):
    """tfds.data_source mocked to serve the IDX arrays as tfds records (image (28, 28, 1)
    uint8, label int64), so the tfds code path is tested without TensorFlow or network."""
    tfds = pytest.importorskip("tensorflow_datasets")
    arrays = {
        "train": (
            read_idx(mnist_dir / "train-images-idx3-ubyte.gz"),
            read_idx(mnist_dir / "train-labels-idx1-ubyte.gz"),
        ),
        "test": (
            read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz"),
            read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz"),
        ),
    }

    class _Records:
        def __init__(self, split: str) -> None:
            self.images, self.labels = arrays[split]

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, i: int) -> dict:
            return {"image": self.images[i][:, :, None], "label": np.int64(self.labels[i])}

    def as_data_source(builder, split, **kwargs):
        return _Records(split)

    mnist_module._tfds_arrays.cache_clear()
    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        yield
    mnist_module._tfds_arrays.cache_clear()


def test_tfds_source_matches_idx(fake_tfds, mnist_dir: Path) -> None:
    got = load_mnist("test", source="tfds")
    ref = load_mnist("test", data_dir=mnist_dir)
    _check_dataset(got, "test")
    assert got.source == "tfds:mnist"
    np.testing.assert_array_equal(got.x, ref.x)
    np.testing.assert_array_equal(got.y, ref.y)


def test_auto_falls_back_to_tfds(fake_tfds, tmp_path: Path) -> None:
    assert load_mnist("test", data_dir=tmp_path / "nowhere").source == "tfds:mnist"
