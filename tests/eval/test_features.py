"""egm's MNIST feature network (egm.eval.features): the shipped weights, the front-ends'
invariants, input checks, and the weights file's errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.data import load_mnist
from egm.errors import ConfigError, CorruptFileError, DataError
from egm.eval import features as fnet

MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def shipped() -> fnet.FeatureNet:
    return fnet.load_feature_net()


@pytest.fixture(scope="module")
def embedded_test() -> tuple[np.ndarray, np.ndarray]:
    d = load_mnist("test", source="embedded")
    return d.x, d.y


def test_shipped_weights_load_and_classify_the_embedded_test_digits(shipped, embedded_test):
    """The embedded subset's test split is the first 1000 of MNIST's 10,000 t10k test images
    (egm.data.mnist: "the first images of each split"; checked equal to the IDX file), so it
    is held-out data for the shipped network, trained on the 60,000 training images only.

    Tolerance: at a true error rate p = 1 % (the promise of the shipped weights on MNIST's
    test distribution) the number of errors among n = 1000 test digits has mean 10 and
    binomial sd sqrt(1000 * 0.01 * 0.99) = 3.1; 15 errors (1.5 %) is 1.6 sd above it.  The
    check itself is deterministic (fixed weights, fixed digits): it fails for a broken network
    or loader (an untrained net errs on ~90 %), not by chance.  Measured: 9 errors (0.9 %);
    the errors of the shipped net are not spread evenly over t10k (51 in its first 5000
    digits, 17 in the last 5000; 68 = 0.68 % in all), hence 0.9 % here."""
    x, y = embedded_test
    assert set(fnet.PARAM_SHAPES) == {
        f"{layer}/{name}" for layer, d in shipped.params.items() for name in d
    }
    assert shipped.meta["experiment"] == "mnist_classifier" and shipped.meta["n_train"] == 60000
    errors = int(np.sum(np.asarray(fnet.class_probs(x, shipped)).argmax(1) != y))
    assert errors <= 15, f"{errors} errors on the first 1000 MNIST test digits"


def test_shipped_weights_full_test_error_at_most_one_percent(shipped):
    """The shipped weights' promise: test error <= 1 % on all 10,000 MNIST test images
    (deterministic; measured 0.68 %, 68 errors; binomial s.e. 0.08 %).  Skipped without the
    IDX files."""
    if not MNIST_DIR.is_dir():
        pytest.skip(f"shared MNIST data not found at {MNIST_DIR}")
    d = load_mnist("test", source="idx", data_dir=MNIST_DIR)
    err = float(np.mean(np.asarray(fnet.class_probs(d.x, shipped)).argmax(1) != d.y))
    assert err <= 0.01, f"test error {err:.4f}"


def test_features_shape_determinism_layout_and_chunking(shipped, embedded_test):
    """(N, 128) float32 ReLU activations; the same call twice gives the same bits; (N, 28, 28)
    equals (N, 784); chunks of 7 (padded tail) equal one chunk of 32.  The chunked and unchunked
    programs may reassociate float32 sums (different batch shapes): 1e-5 relative is ~100 ulp
    of activations of order 1, far below any real difference."""
    x = embedded_test[0][:20]
    f = np.asarray(fnet.features(x, shipped))
    assert f.shape == (20, fnet.N_FEATURES) and f.dtype == np.float32 and f.min() >= 0
    assert f.max() > 0
    np.testing.assert_array_equal(f, np.asarray(fnet.features(x, shipped)))
    np.testing.assert_array_equal(f, np.asarray(fnet.features(x.reshape(20, 28, 28), shipped)))
    chunked = np.asarray(fnet.features(x, shipped, batch_size=7))
    np.testing.assert_allclose(chunked, f, rtol=1e-5, atol=1e-5)
    # the default network is the shipped one
    np.testing.assert_array_equal(np.asarray(fnet.features(x[:4])), f[:4])


def test_class_probs_normalised_and_log_consistent(shipped, embedded_test):
    """Rows of p(y|x) sum to 1 (float32: |sum - 1| <= 10 * 2^-24 * a few); log=True is the
    log of the same probabilities."""
    x = embedded_test[0][:8]
    p = np.asarray(fnet.class_probs(x, shipped))
    logp = np.asarray(fnet.class_probs(x, shipped, log=True))
    assert p.shape == (8, 10) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.exp(logp), p, rtol=1e-5, atol=1e-7)


def test_jit_equals_no_jit_and_conv_impls_agree(shipped):
    """jit == no-jit for the network, and the im2col ("matmul") convolutions used for
    training equal XLA's ("xla") on the same parameters; ``features`` is the jitted network.
    The programs differ only in the order of float32 sums of <= 1024 products: the rounding
    error of such a sum is at most ~n * 2^-24 ~ 6e-5 of the sum of |terms| in the worst case
    and ~sqrt(n) * 2^-24 ~ 2e-6 typically, so 1e-5 of the largest output is a bound that only
    a real difference (a mis-ordered kernel, a wrong pooling) exceeds."""
    x = jax.random.uniform(jax.random.key(0), (4, 784))
    jitted = jax.jit(fnet.apply, static_argnames="conv_impl")
    with jax.disable_jit():
        eager = fnet.apply(shipped.params, x)
    outputs = [jitted(shipped.params, x), jitted(shipped.params, x, conv_impl="matmul")]
    for out in outputs:
        for a, b in zip(out, eager, strict=True):
            scale = float(np.max(np.abs(b)))
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5 * scale)
    np.testing.assert_array_equal(np.asarray(fnet.features(x, shipped)), np.asarray(outputs[0][0]))
    with pytest.raises(ConfigError, match="conv_impl"):
        fnet.apply(shipped.params, x, conv_impl="fft")


def test_input_checks(shipped):
    ok = np.zeros((2, 784), np.float32)
    for bad, match in [
        (np.zeros((2, 100)), r"expected shape \(N, 784\) or \(N, 28, 28\)"),
        (np.zeros(784), "batch axis"),
        (np.zeros((0, 784)), "empty"),
        (np.full((2, 784), 255.0), r"outside \[0, 1\].*x / 255"),
        (np.where(np.eye(2, 784) > 0, np.nan, ok), "NaN"),
    ]:
        with pytest.raises(DataError, match=match):
            fnet.features(bad, shipped)
    with pytest.raises(ConfigError, match="batch_size"):
        fnet.features(ok, shipped, batch_size=0)
    # binary samples (float or bool) are valid input
    binary = np.eye(2, 784, dtype=np.float32)
    np.testing.assert_array_equal(
        np.asarray(fnet.class_probs(binary, shipped)),
        np.asarray(fnet.class_probs(binary.astype(bool), shipped)),
    )


def _rewrite(src: Path, dst: Path, drop: str | None = None, change: dict | None = None) -> None:
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != drop}
    arrays.update(change or {})
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


def test_save_load_roundtrip_and_file_errors(tmp_path, shipped):
    """Round trip is exact; every broken file names the problem and the command that
    regenerates the weights."""
    good = tmp_path / "net.npz"
    fnet.save_feature_net(good, shipped.params, {"note": "test"})
    back = fnet.load_feature_net(good)
    assert back.meta == {"note": "test"} and back.path == str(good)
    for a, b in zip(
        jax.tree_util.tree_leaves(shipped.params),
        jax.tree_util.tree_leaves(back.params),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    regenerate = "experiments/mnist_classifier.py"

    with pytest.raises(DataError, match=f"not found.*{regenerate}"):
        fnet.load_feature_net(tmp_path / "absent.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match=f"truncated or corrupt.*{regenerate}"):
        fnet.load_feature_net(truncated)
    text = tmp_path / "text.npz"
    text.write_text("not an npz")
    with pytest.raises(CorruptFileError, match="truncated or corrupt"):
        fnet.load_feature_net(text)
    cases = [
        ({"drop": "Dense_0/kernel"}, r"missing arrays \['Dense_0/kernel'\]"),
        ({"change": {"extra": np.zeros(3)}}, r"unexpected arrays \['extra'\]"),
        ({"change": {"Conv_1/bias": np.zeros(65, np.float32)}}, r"'Conv_1/bias' is float32\(65,\)"),
        ({"change": {"Dense_1/bias": np.full(10, np.nan, np.float32)}}, "NaN or inf"),
        ({"drop": "__format__"}, "format marker"),
        ({"change": {"Dense_1/bias": np.zeros(10, np.int32)}}, "expected float"),
    ]
    for i, (edit, match) in enumerate(cases):
        bad = tmp_path / f"bad{i}.npz"
        _rewrite(good, bad, **edit)
        with pytest.raises(CorruptFileError, match=match):
            fnet.load_feature_net(bad)
    assert zipfile.is_zipfile(good)  # the format is a plain npz (no pickles)
    with pytest.raises(ConfigError, match="not those of MNISTClassifier"):
        fnet.save_feature_net(tmp_path / "x.npz", {"Dense_0": {"kernel": jnp.zeros((2, 2))}})
