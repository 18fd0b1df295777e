"""Every sample-based score of §20.14 for one set of model samples, as one dict of results.

:func:`sample_scores` is what the run driver adds to an experiment's results with
``--score_samples N`` (``Experiment.sample`` draws the samples): on the features of egm's
MNIST classifier (:mod:`egm.eval.features`) the Fréchet distance to the test digits with
its held-out floor (two disjoint sets of test digits of the same size: the figure a perfect
model would get), the classifier score, the copy check against the training digits (pixel
and feature space), and the Parzen-window estimate of Goodfellow et al. (2014) with its
bandwidth chosen on validation digits and the warning of Theis et al. (2016) in its notes.

These numbers compare models within egm's protocol (egm's own feature network, binarized
digits); they are not comparable with Inception-based FIDs on natural images.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jaxtyping import Float, PRNGKeyArray

from egm.errors import DataError
from egm.eval import sample_quality as sq

__all__ = ["sample_scores"]


def sample_scores(
    key: PRNGKeyArray,
    samples: Float[Any, "N D"],
    train: Float[Any, "M D"],
    valid: Float[Any, "V D"],
    test: Float[Any, "T D"],
    *,
    parzen_valid: int = 1000,
    parzen_test: int = 1000,
    copy_show: int = 8,
    dataset: str = "unknown",
    protocol: str = "",
    net: Any = None,
) -> dict[str, Any]:
    """Scores of ``samples`` (N, 784) against the data's splits (module docstring).

    The Fréchet distance uses ``min(N, len(test) // 2)`` samples so that its floor (two
    disjoint test subsets of that size) exists; Parzen uses all N samples (the protocol's
    10,000 when N = 10,000) with the bandwidth chosen on ``parzen_valid`` validation digits
    and the figure on ``parzen_test`` test digits.  Returns flat results: floats, the Parzen
    :class:`~egm.eval.LogLikelihood` record, the copy check's summaries (without the
    per-sample index arrays) and ``copy_grid``, the image of the ``copy_show`` samples closest
    to a training digit, each beside that digit (the driver saves it as a PNG)."""
    from egm.eval import features as fnet

    samples = np.asarray(samples, np.float32)
    if samples.ndim != 2 or samples.shape[0] < 4:
        raise DataError(f"sample scores need (N >= 4, D) samples, got shape {samples.shape}")
    net = fnet.load_feature_net() if net is None else net
    k_floor, k_copy = jax.random.split(key)
    test, valid, train = (np.asarray(a, np.float32) for a in (test, valid, train))
    n_fd = min(samples.shape[0], test.shape[0] // 2)
    f_samples = np.asarray(fnet.features(samples, net))
    f_test = np.asarray(fnet.features(test, net))
    fd = sq.frechet_distance(f_samples[:n_fd], f_test[:n_fd])
    floor = sq.frechet_floor(f_test, n_fd, k_floor)
    cs_mean, cs_sd = sq.classifier_score(np.asarray(fnet.class_probs(samples, net)))
    n_train = min(train.shape[0], 10000)
    f_train = np.asarray(fnet.features(train[:n_train], net))
    copy = sq.copy_check(
        samples, train[:n_train], f_train, f_samples, k=1, n_show=copy_show,
        image_shape=(28, 28), key=k_copy,
    )  # fmt: skip
    parzen = sq.parzen_log_likelihood(
        samples, valid[:parzen_valid], test[:parzen_test], dataset=dataset, split="test",
        protocol=f"{protocol}; Gaussian Parzen window on {samples.shape[0]} model samples",
    )  # fmt: skip
    out: dict[str, Any] = {
        "frechet_distance": float(fd),
        "frechet_floor": float(floor.mean),
        "frechet_samples": int(n_fd),
        "classifier_score": float(cs_mean),
        "classifier_score_sd": float(cs_sd),
        "parzen_test": parzen,
        "scores_protocol": (
            f"{samples.shape[0]} model samples vs {dataset} ({protocol}); features and class "
            "probabilities of egm's MNIST classifier (egm.eval.features): comparable within "
            "egm only, not with Inception-based FIDs"
        ),
    }
    grid = copy.get("pixels", {}).get("grid")
    if grid is not None:  # each row: a sample, then its nearest training digit (pixels)
        out["copy_grid"] = np.asarray(grid)
    for space, summary in copy.items():
        if not isinstance(summary, dict):
            continue
        for k in ("distance_min", "distance_median", "threshold", "fraction_below_threshold"):
            if k in summary:
                out[f"copy_{space}_{k}"] = float(summary[k])
    return out
