"""Data layer of egm: MNIST loaders, natural-image patches, whitening, binarization,
input checks, toy sets, batching.

The lowest layer: it imports nothing else from egm except :mod:`egm.errors`.
"""

from egm.data.batching import check_batch_size, minibatch_indices
from egm.data.binarize import (
    BINARIZATIONS,
    binarize_dynamic,
    binarize_fixed,
    binarize_threshold,
    describe_protocol,
)
from egm.data.binarized import BinarizedMNIST, load_binarized_mnist
from egm.data.grey import GreyMNIST, load_grey_mnist
from egm.data.idx import read_idx
from egm.data.mnist import MNIST_SOURCES, MNIST_SPLITS, Dataset, load_mnist
from egm.data.patches import PATCH_SOURCES, PATCH_SPLITS, load_patches
from egm.data.realvalued import REAL_DATASETS, RealData, load_real_data
from egm.data.toy import (
    bars_and_stripes,
    log_density_checkerboard,
    log_density_gaussian_mixture,
    log_density_rings,
    sample_checkerboard,
    sample_gaussian_mixture,
    sample_rings,
)
from egm.data.validate import check_binary, check_finite, check_shape, check_unit_interval
from egm.data.whitening import (
    WHITENING_KINDS,
    Whitening,
    fit_whitening,
    load_whitening,
    save_whitening,
    unwhiten,
    whiten,
)

__all__ = [
    "GreyMNIST",
    "load_grey_mnist",
    "BinarizedMNIST",
    "load_binarized_mnist",
    "BINARIZATIONS",
    "MNIST_SOURCES",
    "MNIST_SPLITS",
    "PATCH_SOURCES",
    "PATCH_SPLITS",
    "REAL_DATASETS",
    "RealData",
    "WHITENING_KINDS",
    "Whitening",
    "Dataset",
    "bars_and_stripes",
    "binarize_dynamic",
    "binarize_fixed",
    "binarize_threshold",
    "check_batch_size",
    "check_binary",
    "check_finite",
    "check_shape",
    "check_unit_interval",
    "describe_protocol",
    "fit_whitening",
    "load_mnist",
    "load_patches",
    "load_real_data",
    "load_whitening",
    "log_density_checkerboard",
    "log_density_gaussian_mixture",
    "log_density_rings",
    "minibatch_indices",
    "read_idx",
    "sample_checkerboard",
    "sample_gaussian_mixture",
    "sample_rings",
    "save_whitening",
    "unwhiten",
    "whiten",
]
