"""Natural-image patches: determinism, shape and range, disjoint train/test regions, the
grey conversion, errors, and the tfds CIFAR-10 path on mocked records."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from egm.data import PATCH_SOURCES, load_patches
from egm.data import patches as patches_module
from egm.data.patches import BAND_ROWS, SKIMAGE_IMAGES, TEST_ROWS, _cut_patches
from egm.errors import ConfigError, CorruptFileError, DatasetNotFoundError

pytest.importorskip("skimage")


@pytest.fixture
def no_skimage(monkeypatch: pytest.MonkeyPatch):
    """scikit-image made unimportable (a None entry in sys.modules makes `import` fail)."""
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    patches_module._skimage_grey.cache_clear()
    yield
    patches_module._skimage_grey.cache_clear()


# ----------------------------------------------------------------------------- skimage


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("patch_size", [2, 8, 16])
def test_shape_dtype_range(split: str, patch_size: int) -> None:
    x = load_patches("skimage", split=split, patch_size=patch_size, n_patches=500, seed=3)
    assert x.shape == (500, patch_size**2) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.std() > 0.05  # real photographs, not a constant fill


def test_deterministic_in_its_arguments() -> None:
    kw = dict(split="train", patch_size=8, n_patches=300)
    a = load_patches("skimage", seed=7, **kw)
    np.testing.assert_array_equal(a, load_patches("skimage", seed=7, **kw))
    np.testing.assert_array_equal(a, load_patches("auto", seed=7, **kw))  # auto -> skimage here
    assert not np.array_equal(a, load_patches("skimage", seed=8, **kw))
    assert not np.array_equal(
        a, load_patches("skimage", seed=7, split="test", patch_size=8, n_patches=300)
    )


def test_train_and_test_regions_are_disjoint_bands_of_every_photo() -> None:
    train = patches_module._skimage_images("train")
    test = patches_module._skimage_images("test")
    rows = {"train": sum(p.shape[0] for p in train), "test": sum(p.shape[0] for p in test)}
    total = sum(patches_module._skimage_grey(n).shape[0] for n in SKIMAGE_IMAGES)
    assert rows["train"] + rows["test"] <= total
    assert 0.15 < rows["test"] / total < 0.25  # about TEST_ROWS / BAND_ROWS = 20 %
    assert max(p.shape[0] for p in train) == BAND_ROWS - TEST_ROWS
    # each region is a verbatim block of rows of its photograph, and no row is in both splits
    seen: dict[str, set] = {}
    for split, regions in (("train", train), ("test", test)):
        used = set()
        for reg in regions:
            hit = False
            for name in SKIMAGE_IMAGES:
                full = patches_module._skimage_grey(name)
                if full.shape[1] != reg.shape[1]:
                    continue
                for start in range(0, full.shape[0] - reg.shape[0] + 1):
                    if np.array_equal(full[start : start + reg.shape[0]], reg):
                        used |= {(name, r) for r in range(start, start + reg.shape[0])}
                        hit = True
                        break
                if hit:
                    break
            assert hit
        seen[split] = used
    assert not seen["train"] & seen["test"]
    # the test split's patches are exactly the ones cut from the test regions
    got = load_patches("skimage", split="test", patch_size=8, n_patches=200, seed=1)
    ref, _, _, _ = _cut_patches(test, 8, 200, 1)
    np.testing.assert_array_equal(got, ref)


def test_patches_are_crops_of_their_images() -> None:
    images = patches_module._skimage_images("train")
    x, ids, rows, cols = _cut_patches(images, 6, 400, 0)
    for p, i, r, c in zip(x, ids, rows, cols, strict=True):
        np.testing.assert_array_equal(p.reshape(6, 6), images[i][r : r + 6, c : c + 6])
    counts = np.bincount(ids, minlength=len(images))
    # image drawn uniformly: each count ~ Binomial(400, 1/n), z=5 bound
    n = len(images)
    assert np.all(np.abs(counts - 400 / n) < 5 * np.sqrt(400 * (1 / n) * (1 - 1 / n)))
    # every position of the image is allowed: the corners are reachable
    x, ids, rows, cols = _cut_patches([images[1][:10, :10]], 9, 200, 0)
    assert set(rows.tolist()) == {0, 1} and set(cols.tolist()) == {0, 1}


def test_distinct_images_while_possible() -> None:
    images = [np.full((5, 5), k, np.float32) for k in range(6)]
    x, ids, _, _ = _cut_patches(images, 5, 6, 0)
    assert sorted(ids.tolist()) == list(range(6))
    np.testing.assert_array_equal(x[:, 0], ids)


def test_grey_is_bt709_luminance() -> None:
    """The grey conversion equals scikit-image's own rgb2gray (same BT.709 weights)."""
    from skimage import color, data

    rgb = data.astronaut()
    np.testing.assert_allclose(
        patches_module._to_grey(rgb), color.rgb2gray(rgb), rtol=0, atol=1e-6
    )  # float32 rounding of values in [0, 1]
    grey = data.camera()
    np.testing.assert_array_equal(patches_module._to_grey(grey), (grey / 255.0).astype(np.float32))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(source="flickr"), r"unknown patch source 'flickr'.*'auto', 'skimage', 'tfds'"),
        (dict(split="valid"), r"unknown patch split 'valid'.*'train', 'test'"),
        (dict(patch_size=1), r"patch_size must be an integer >= 2"),
        (dict(patch_size=8.0), r"patch_size must be an integer >= 2"),
        (dict(n_patches=0), r"n_patches must be an integer >= 1"),
        (dict(seed=-1), r"seed must be a non-negative integer"),
        (dict(source="skimage", data_dir="/tmp"), r"data_dir only applies to source=\"tfds\""),
        (dict(source="skimage", patch_size=33), r"patch_size 33 does not fit.*<= 32"),
    ],
)
def test_config_errors(kwargs: dict, match: str) -> None:
    kw = dict(n_patches=10) | kwargs
    with pytest.raises(ConfigError, match=match):
        load_patches(**kw)
    assert set(PATCH_SOURCES) == {"auto", "skimage", "tfds"}


def test_missing_skimage_says_how_to_fix(no_skimage) -> None:
    with pytest.raises(DatasetNotFoundError, match=r'pip install "egm\[patches\]".*source="tfds"'):
        load_patches("skimage", n_patches=10)


def test_auto_without_any_source(no_skimage) -> None:
    """No scikit-image and an empty tfds folder (tests/data/conftest.py): one error naming
    both sources and both fixes."""
    with pytest.raises(DatasetNotFoundError) as info:
        load_patches("auto", n_patches=10)
    msg = str(info.value)
    assert "scikit-image" in msg and "tensorflow-datasets CIFAR-10" in msg
    assert 'pip install "egm[patches]"' in msg and "tfds build cifar10" in msg


def test_tfds_without_cifar() -> None:
    with pytest.raises(DatasetNotFoundError, match=r"cifar10 is not prepared"):
        load_patches("tfds", n_patches=10)


# --------------------------------------------------------------------- tfds (mocked)

N_FAKE = 12


@pytest.fixture
def fake_cifar():
    """tfds.data_source mocked to serve random (32, 32, 3) uint8 records, so the CIFAR-10
    path runs without TensorFlow, network or the real dataset."""
    tfds = pytest.importorskip("tensorflow_datasets")
    rng = np.random.default_rng(0)
    images = {
        s: rng.integers(0, 256, (N_FAKE, 32, 32, 3), dtype=np.uint8) for s in ("train", "test")
    }

    class _Records:
        def __init__(self, split: str) -> None:
            self.images = images[split]

        def __len__(self) -> int:
            return len(self.images)

        def __getitem__(self, i: int) -> dict:
            return {"image": self.images[i], "label": np.int64(i % 10), "id": f"train_{i}"}

    def as_data_source(builder, split, **kwargs):
        assert builder.name == "cifar10"
        return _Records(split)

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        yield images


def test_tfds_whole_images_are_distinct_grey_images(fake_cifar) -> None:
    x = load_patches("tfds", split="test", patch_size=32, n_patches=N_FAKE, seed=0)
    assert x.shape == (N_FAKE, 1024) and x.dtype == np.float32
    grey = patches_module._to_grey(fake_cifar["test"]).reshape(N_FAKE, 1024)
    # a permutation of all the images: each appears exactly once
    match = [[np.array_equal(row, g) for g in grey] for row in x]
    assert np.array_equal(np.sum(match, axis=0), np.ones(N_FAKE)) and np.all(np.sum(match, 1) == 1)


def test_tfds_patches_are_crops(fake_cifar) -> None:
    x = load_patches("tfds", split="train", patch_size=8, n_patches=50, seed=2)
    np.testing.assert_array_equal(
        x, load_patches("tfds", split="train", patch_size=8, n_patches=50, seed=2)
    )
    grey = patches_module._to_grey(fake_cifar["train"])
    crops = np.lib.stride_tricks.sliding_window_view(grey, (8, 8), axis=(1, 2)).reshape(-1, 64)
    for p in x:
        assert np.any(np.all(crops == p, axis=1))
    with pytest.raises(ConfigError, match=r"patch_size 33 does not fit the 32 x 32"):
        load_patches("tfds", patch_size=33, n_patches=5)


def test_auto_falls_back_to_tfds(fake_cifar, no_skimage) -> None:
    np.testing.assert_array_equal(
        load_patches("auto", patch_size=4, n_patches=30, seed=5),
        load_patches("tfds", patch_size=4, n_patches=30, seed=5),
    )


def test_tfds_wrong_image_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")

    def as_data_source(builder, split, **kwargs):
        return [{"image": np.zeros((28, 28, 1), np.uint8)}] * 3

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        with pytest.raises(CorruptFileError, match=r"expected uint8 \(32, 32, 3\)"):
            load_patches("tfds", n_patches=2)
