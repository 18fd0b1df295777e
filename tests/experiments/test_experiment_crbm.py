"""crbm_mnist's configuration checks (no training: each error is raised before any phase)."""

import dataclasses

import pytest
from _experiments import load_experiment, tiny

from egm import run
from egm.errors import ConfigError


def test_bad_configs_are_refused(tmp_path):
    """Layer sizes that the pooling does not divide, a label setting larger than the
    training set, a malformed label list, a list with one value per layer missing, and
    candidate weight decays that are negative, not numbers, none or NaN."""
    mod = load_experiment("crbm_mnist")
    cfg = tiny("crbm_mnist", tmp_path)
    with pytest.raises(ConfigError, match="do not divide"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, filter_sizes="6,5"))  # 23x23 maps
    with pytest.raises(ConfigError, match="exceed the 4000 training digits"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, labels="all,5000"))
    with pytest.raises(ConfigError, match="label counts"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, labels="all,ten"))
    with pytest.raises(ConfigError, match="one value per layer"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, filters="4"))
    for bad in ("0.1,-1", "one", "", "nan"):
        with pytest.raises(ConfigError, match="weight decays >= 0"):
            run.run(mod.EXPERIMENT, dataclasses.replace(cfg, clf_weight_decays=bad))
    assert not (tmp_path / "results.json").exists()


def test_features_see_the_grey_or_the_binarized_digits(tmp_path):
    """``feature_input="grey"`` (the default) infers both layers' pooling probabilities from
    the grey digits (intensities as visible probabilities), ``"binary"`` from the binarized
    ones the layers train on: each equals the two-layer bottom-up pass written out on those
    images (the same jitted functions: exact), and the two differ; the pixel baseline sees
    the same input; a misspelt value and grey features from data loaded without the grey
    digits are refused with what to do."""
    import types

    import jax
    import numpy as np

    from egm.energies import conv_rbm as cr
    from egm.run import conv

    mod = load_experiment("crbm_mnist")
    cfg = tiny("crbm_mnist", tmp_path)
    assert cfg.feature_input == "grey"
    spec0, spec1 = cfg.specs()
    k0, k1 = jax.random.split(jax.random.key(0))
    p0 = cr.init(k0, spec0, 28, 1, 4, 5, scale=0.5, hidden_bias=-1.0)
    p1 = cr.init(k1, spec1, 12, 4, 4, 5, scale=0.5, hidden_bias=-1.0)
    done = {"layer0": types.SimpleNamespace(params=p0), "layer1": types.SimpleNamespace(params=p1)}
    out = {}
    for kind in ("grey", "binary"):
        c = dataclasses.replace(cfg, feature_input=kind)
        d = c.load_data()
        assert (d.grey is not None) == (kind == "grey")
        x = (d.grey if kind == "grey" else d.binary)["test"][:50].reshape(50, 28, 28, 1)
        q1 = conv.pool_probabilities(spec0, p0, x)
        q2 = conv.pool_probabilities(spec1, p1, q1)
        want = np.concatenate([q1.reshape(50, -1), q2.reshape(50, -1)], axis=1)
        out[kind] = conv.features(c, d, done, "test", 50)
        np.testing.assert_array_equal(out[kind], want)
        # the baseline: the same images standardised by all training digits of that kind
        xt = np.asarray((d.grey if kind == "grey" else d.binary)["train"], np.float32)
        pixels = conv._features_cached(c, d, done, "test", 50, kind="pixels")
        np.testing.assert_allclose(
            pixels, (x.reshape(50, -1) - xt.mean(0)) / (xt.std(0) + 0.01), rtol=1e-5, atol=1e-5
        )  # float32 rounding of the same sums
    assert np.abs(out["grey"] - out["binary"]).max() > 0.1
    with pytest.raises(ConfigError, match="keep_grey=True"):
        conv.features(cfg, dataclasses.replace(cfg, feature_input="binary").load_data(), done,
                      "test", 50)  # fmt: skip
    with pytest.raises(ConfigError, match="feature_input"):
        run.run(mod.EXPERIMENT, dataclasses.replace(cfg, feature_input="gray"))
