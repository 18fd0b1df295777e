"""egm.eval.scores.sample_scores and the driver's --score_samples, on "models" whose samples
are known: held-out digits (a perfect model), copies of training digits (a copying model)
and noise (a useless one)."""

from __future__ import annotations

import types

import jax
import numpy as np
import pytest

from egm import data, run
from egm.errors import ConfigError
from egm.eval.scores import sample_scores
from egm.run.config import MNISTFields


@pytest.fixture(scope="module")
def mnist():
    return data.load_binarized_mnist("fixed", 0, source="embedded")


def _scores(d, samples, key=0):
    b = d.binary
    return sample_scores(jax.random.key(key), samples, b["train"], b["valid"], b["test"][:400],
                         parzen_valid=200, parzen_test=200, dataset=d.source, protocol=d.protocol)  # fmt: skip


@pytest.mark.slow
def test_known_samplers_rank_as_they_must(mnist):
    """Held-out digits score like the data: their Fréchet distance to the test digits is
    about the held-out floor (both are distances between two sets of 200 real digits; we
    allow 2x for the sampling noise of one such pair, whose sd over pairs is a fraction of
    the mean at n=200), their classifier score is near the 10 classes (balanced, confidently
    classified digits), and the copy check flags about half of them (the threshold is the
    median train-to-train neighbour distance, so exchangeable samples fall below it with
    probability 1/2; 200 samples: binomial s.e. 0.035, we allow 0.2).  Copies of training
    digits are all flagged at distance 0.  Noise is far from the data on every score."""
    b = mnist.binary
    real = _scores(mnist, b["valid"][:200])
    assert real["frechet_samples"] == 200
    assert real["frechet_distance"] < 2 * real["frechet_floor"] + 1.0
    assert real["classifier_score"] > 7.0
    assert abs(real["copy_pixels_fraction_below_threshold"] - 0.5) < 0.2
    rec = real["parzen_test"]
    assert rec.method == "parzen" and "Theis" in rec.notes and rec.counts["samples"] == 200
    copies = _scores(mnist, b["train"][:200])
    assert copies["copy_pixels_fraction_below_threshold"] == 1.0
    assert copies["copy_pixels_distance_min"] == 0.0 and copies["copy_grid"].ndim == 2
    noise = _scores(mnist, (np.random.default_rng(0).random((200, 784)) < 0.5).astype(np.float32))
    assert noise["frechet_distance"] > 10 * real["frechet_distance"]
    assert noise["copy_pixels_fraction_below_threshold"] == 0.0
    # not asserted: the Parzen figure of 200 noise samples (-820 nats) is ABOVE that of 200
    # held-out digits (-2200) here, the failure Theis et al. (2016) warn of (BUILD_NOTES.md)


def test_bad_samples_are_refused(mnist):
    with pytest.raises(Exception, match="784|shape|samples"):
        _scores(mnist, np.zeros((10, 100), np.float32))


def test_driver_scores_every_member_and_saves_the_copy_grid(mnist, tmp_path):
    """An experiment without training whose sampler returns held-out digits: the driver adds
    the scores to each member's results and writes copies.png; without a sampler,
    --score_samples is a clear error."""

    class Cfg(MNISTFields):
        pass

    cfg = Cfg(workdir=str(tmp_path / "run"), progress=False, score_samples=200)
    exp = run.Experiment(
        name="known_sampler", presets={"default": cfg, "tiny": cfg},
        load=lambda c: mnist, phases=lambda c: [], evaluate=lambda c, d, done, key: {},
        sample=lambda c, d, done, key, n: {"held_out": d.binary["valid"][:n]},
    )  # fmt: skip
    res = run.run(exp, cfg)
    assert res["held_out_frechet_samples"] == 200  # held-out digits score like the data:
    assert res["held_out_frechet_distance"] < 2 * res["held_out_frechet_floor"] + 1.0
    assert res["held_out_classifier_score"] > 7.0
    assert res["held_out_parzen_test"]["method"] == "parzen"
    assert (tmp_path / "run" / "held_out_copies.png").stat().st_size > 1000
    no_sampler = types.SimpleNamespace(**{**exp.__dict__})
    with pytest.raises(ConfigError, match="declares no sampler"):
        run.run(run.Experiment(**{**no_sampler.__dict__, "sample": None}), cfg)
