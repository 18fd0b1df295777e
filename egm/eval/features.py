r"""egm's fixed MNIST feature network, for sample-quality scores (§20.14).

A Fréchet distance between the feature statistics of two sample sets, or a classifier
("Inception-like") score :math:`\exp\,\mathbb{E}_x\,\mathrm{KL}(p(y\mid x)\,\|\,p(y))`, needs a
feature network that is the same for every model compared.  egm ships one: a small MNIST
convolutional classifier trained by ``experiments/mnist_classifier.py`` on the 60,000 MNIST
training images, whose weights live in the package (``egm/eval/_weights/mnist_classifier.npz``,
float32, read with ``np.load(allow_pickle=False)``; how it was trained is in its metadata,
:attr:`FeatureNet.meta`).  Test error of the shipped weights on the 10,000 MNIST test images:
0.68 % (68 errors, binomial s.e. 0.08 %), seed 0, 6 epochs, 7 minutes on a 2-core CPU.

**Scope.**  Scores computed on these features compare models *within egm's protocol only*
(this network, these weights, MNIST-like 28 x 28 grey digits).  They are not comparable with
the Inception-v3 FIDs / Inception scores reported on natural images, nor with MNIST scores of
other papers that use their own classifier.

**Architecture** (:class:`MNISTClassifier`)::

    28x28x1 -> conv 5x5, 32, ReLU -> max-pool 2 -> conv 5x5, 64, ReLU -> max-pool 2
            -> dense 128, ReLU  (the features, 128-d) -> dense 10 (logits)

(valid convolutions: 28 -> 24 -> 12 -> 8 -> 4).  Why this one: it is the classic LeNet-style
network that reaches about 1 % test error on MNIST in a few epochs without augmentation; its
184,586 parameters take 0.74 MB in float32 (0.69 MB as the compressed npz); a 128-d
penultimate layer keeps the 128 x 128 feature covariance of a Fréchet distance well estimated
from a few thousand samples (a 1024-d layer would need far more); and it runs at thousands of
images per second on a CPU.

**Two equal implementations of the convolutions** (``conv_impl``): ``"xla"``
(``lax.conv_general_dilated``, the default, for inference) and ``"matmul"`` (im2col patches
times the reshaped kernel, for training).  They compute the same function with the same
parameters.  Training uses ``"matmul"`` because XLA:CPU's convolution *gradients* are slow:
measured on the 2-core development machine, one Adam step on a batch of 100 took about 3 s
with ``"xla"`` against 0.13 s with ``"matmul"``, while the forward pass of 1000 images is
faster with ``"xla"`` (0.14 s against 0.8 s).

Inputs are grey images in ``[0, 1]`` (binary samples are fine), as ``(N, 784)`` or
``(N, 28, 28)``; a bad shape, NaN or values outside ``[0, 1]`` raise :class:`DataError`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.data.validate import check_unit_interval
from egm.errors import ConfigError, CorruptFileError, DataError

__all__ = [
    "CONV_IMPLS",
    "DEFAULT_WEIGHTS",
    "N_FEATURES",
    "PARAM_SHAPES",
    "FeatureNet",
    "MNISTClassifier",
    "apply",
    "class_probs",
    "features",
    "init_feature_params",
    "load_feature_net",
    "save_feature_net",
]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "_weights" / "mnist_classifier.npz"
N_FEATURES = 128
N_CLASSES = 10
CONV_IMPLS = ("xla", "matmul")
_FORMAT = "egm.eval.features/mnist_classifier/1"
_KERNEL = 5
_CHANNELS = (32, 64)
_REGENERATE = (
    "regenerate it with `python experiments/mnist_classifier.py --data_dir <folder of the MNIST "
    "IDX files> --export true` (about 7 minutes on a 2-core CPU), or reinstall egm"
)
# name -> shape of every array of the shipped network (the Flax params, flattened with "/")
PARAM_SHAPES: dict[str, tuple[int, ...]] = {
    "Conv_0/kernel": (_KERNEL, _KERNEL, 1, _CHANNELS[0]),
    "Conv_0/bias": (_CHANNELS[0],),
    "Conv_1/kernel": (_KERNEL, _KERNEL, _CHANNELS[0], _CHANNELS[1]),
    "Conv_1/bias": (_CHANNELS[1],),
    "Dense_0/kernel": (4 * 4 * _CHANNELS[1], N_FEATURES),
    "Dense_0/bias": (N_FEATURES,),
    "Dense_1/kernel": (N_FEATURES, N_CLASSES),
    "Dense_1/bias": (N_CLASSES,),
}


# ------------------------------------------------------------------------------ network


def _im2col(x: Float[Array, "B H W C"], k: int) -> Float[Array, "B Ho Wo KKC"]:
    """The ``k x k`` valid patches of ``x``, ordered (row, column, channel) like an HWIO kernel."""
    ho, wo = x.shape[1] - k + 1, x.shape[2] - k + 1
    return jnp.concatenate(
        [x[:, i : i + ho, j : j + wo, :] for i in range(k) for j in range(k)], axis=-1
    )


class _Conv(nn.Module):
    """A valid ``k x k`` convolution with an HWIO kernel and a bias (see ``conv_impl``)."""

    features: int
    kernel_size: int
    conv_impl: str

    @nn.compact
    def __call__(self, x: Float[Array, "B H W C"]) -> Float[Array, "B Ho Wo F"]:
        k = self.kernel_size
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.conv_impl == "matmul":
            y = _im2col(x, k) @ kernel.reshape(-1, self.features)
        else:
            y = jax.lax.conv_general_dilated(
                x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        return y + bias


class MNISTClassifier(nn.Module):
    """The feature network (module docstring): ``(features (B, 128), logits (B, 10))``.

    ``conv_impl``: ``"xla"`` (inference) or ``"matmul"`` (training); same function, same
    parameters.
    """

    conv_impl: str = "xla"

    @nn.compact
    def __call__(
        self, x: Float[Array, "B 784"] | Float[Array, "B 28 28"]
    ) -> tuple[Float[Array, "B 128"], Float[Array, "B 10"]]:
        if self.conv_impl not in CONV_IMPLS:
            raise ConfigError(f"conv_impl must be one of {CONV_IMPLS}, got {self.conv_impl!r}")
        h = x.reshape(x.shape[0], 28, 28, 1)
        for i, c in enumerate(_CHANNELS):
            h = _Conv(c, _KERNEL, self.conv_impl, name=f"Conv_{i}")(h)
            h = nn.max_pool(nn.relu(h), (2, 2), (2, 2))
        feats = nn.relu(nn.Dense(N_FEATURES, name="Dense_0")(h.reshape(h.shape[0], -1)))
        return feats, nn.Dense(N_CLASSES, name="Dense_1")(feats)


@jax.jit  # one compiled program: the op-by-op initialisers take seconds on CPU
def init_feature_params(key: PRNGKeyArray) -> dict:
    """Fresh Flax params of :class:`MNISTClassifier` (LeCun-normal kernels, zero biases)."""
    return MNISTClassifier().init(key, jnp.zeros((1, 784), jnp.float32))["params"]


def apply(
    params: dict, x: Float[Array, "B 784"] | Float[Array, "B 28 28"], *, conv_impl: str = "xla"
) -> tuple[Float[Array, "B 128"], Float[Array, "B 10"]]:
    """``(features, logits)`` of the network with ``params`` (pure, jit-able, no input checks)."""
    return MNISTClassifier(conv_impl).apply({"params": params}, x)


# ------------------------------------------------------------------------------ weights file


class FeatureNet(NamedTuple):
    """Loaded weights: the Flax ``params``, the file they came from and its metadata."""

    params: dict
    path: str
    meta: dict


def _flatten(params: dict) -> dict[str, np.ndarray]:
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    }


def save_feature_net(
    path: str | os.PathLike[str], params: dict, meta: dict[str, Any] | None = None
) -> None:
    """Write ``params`` (float32) and the JSON-able ``meta`` to the ``.npz`` file ``path``
    (exactly that path), in the format :func:`load_feature_net` reads (no pickles)."""
    flat = _flatten(params)
    wrong = {k: v.shape for k, v in flat.items() if PARAM_SHAPES.get(k) != v.shape}
    if wrong or set(flat) != set(PARAM_SHAPES):
        raise ConfigError(
            f"params are not those of MNISTClassifier: got {sorted(flat)} (mismatched shapes "
            f"{wrong}); expected {PARAM_SHAPES}"
        )
    arrays = {k: v.astype(np.float32) for k, v in flat.items()}
    arrays["__format__"] = np.array(_FORMAT)
    arrays["__meta__"] = np.array(json.dumps(meta or {}, sort_keys=True))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_feature_net(path: str | os.PathLike[str] | None = None) -> FeatureNet:
    """Read the weights written by :func:`save_feature_net` (default: the shipped file).

    Every array of :data:`PARAM_SHAPES` must be present with its shape, a floating dtype and
    finite values, and no other array may be there.

    Raises:
      DataError: no file at ``path`` (the message says how to regenerate it).
      CorruptFileError (a DataError): the file is truncated, not an npz written by
        :func:`save_feature_net`, or has missing / extra / misshapen / non-finite arrays.
    """
    p = DEFAULT_WEIGHTS if path is None else Path(path)
    if not p.is_file():
        raise DataError(f"feature-network weights not found at {p}; {_REGENERATE}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise CorruptFileError(
            f"{p}: cannot be read as feature-network weights ({type(e).__name__}: {e}); the file "
            f"is truncated or corrupt: {_REGENERATE}"
        ) from e
    if str(arrays.pop("__format__", "")) != _FORMAT:
        raise CorruptFileError(
            f"{p}: not a feature-network file written by egm.eval.save_feature_net (format "
            f"marker {_FORMAT!r} missing); {_REGENERATE}"
        )
    try:
        meta = json.loads(str(arrays.pop("__meta__", "{}")))
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{p}: its metadata is not valid JSON ({e}); {_REGENERATE}") from e
    missing = sorted(set(PARAM_SHAPES) - set(arrays))
    extra = sorted(set(arrays) - set(PARAM_SHAPES))
    if missing or extra:
        raise CorruptFileError(
            f"{p}: missing arrays {missing}, unexpected arrays {extra} (expected exactly "
            f"{sorted(PARAM_SHAPES)}); {_REGENERATE}"
        )
    for k, shape in PARAM_SHAPES.items():
        a = arrays[k]
        if a.shape != shape or not np.issubdtype(a.dtype, np.floating):
            raise CorruptFileError(
                f"{p}: array {k!r} is {a.dtype}{a.shape}, expected float {shape}; {_REGENERATE}"
            )
        if not np.all(np.isfinite(a)):
            raise CorruptFileError(f"{p}: array {k!r} holds NaN or inf values; {_REGENERATE}")
    params: dict = {}
    for k, a in arrays.items():
        layer, name = k.split("/")
        params.setdefault(layer, {})[name] = jnp.asarray(a, jnp.float32)
    return FeatureNet(params=params, path=str(p), meta=meta)


@functools.lru_cache(maxsize=1)
def _shipped() -> FeatureNet:
    return load_feature_net()


# ------------------------------------------------------------------------------ front-ends


@functools.partial(jax.jit, static_argnames="log")
def _forward(
    params: dict, x: Float[Array, "B 784"], log: bool
) -> tuple[Float[Array, "B 128"], Float[Array, "B 10"]]:
    feats, logits = apply(params, x)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return feats, (logp if log else jnp.exp(logp))


def _checked(x: ArrayLike) -> np.ndarray:
    """``x`` as float32 ``(N, 784)`` after the shape / NaN / range checks."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    shape = arr.shape
    if shape[1:] not in ((784,), (28, 28)):
        raise DataError(
            f"images: expected shape (N, 784) or (N, 28, 28), got {shape}; a single image "
            "needs a batch axis (x[None])"
        )
    if shape[0] == 0:
        raise DataError("images: got an empty batch (N = 0)")
    check_unit_interval(arr, "images")
    return arr.reshape(shape[0], 784).astype(np.float32)


def _run(x: ArrayLike, net: FeatureNet | None, batch_size: int, log: bool):
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    arr = _checked(x)
    params = (_shipped() if net is None else net).params
    n = arr.shape[0]
    # one compiled program per chunk size: powers of two up to batch_size (the tail is padded)
    chunk = min(batch_size, 1 << max(0, math.ceil(math.log2(n))))
    feats, probs = [], []
    for i in range(0, n, chunk):
        block = arr[i : i + chunk]
        m = block.shape[0]
        if m < chunk:
            block = np.concatenate([block, np.zeros((chunk - m, 784), np.float32)])
        f, p = _forward(params, jnp.asarray(block), log)
        feats.append(f[:m])
        probs.append(p[:m])
    return jnp.concatenate(feats), jnp.concatenate(probs)


def features(
    x: Float[ArrayLike, "N 784"] | Float[ArrayLike, "N 28 28"],
    net: FeatureNet | None = None,
    *,
    batch_size: int = 1000,
) -> Float[Array, "N 128"]:
    """The 128 penultimate (ReLU) activations of each image: the features of a Fréchet
    distance (§20.14).  ``net``: weights from :func:`load_feature_net` (default: the shipped
    ones).  Jitted, in chunks of ``batch_size`` images."""
    return _run(x, net, batch_size, log=False)[0]


def class_probs(
    x: Float[ArrayLike, "N 784"] | Float[ArrayLike, "N 28 28"],
    net: FeatureNet | None = None,
    *,
    log: bool = False,
    batch_size: int = 1000,
) -> Float[Array, "N 10"]:
    """The classifier's ``p(y | x)`` over the 10 digits for each image (``log=True``: its
    log-softmax, for log-space scores such as the classifier score's KL)."""
    return _run(x, net, batch_size, log=log)[1]
