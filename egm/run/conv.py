"""The convolutional DBN on MNIST as the run driver trains it (§20.6; Lee et al. 2009).

Two convolutional RBMs with probabilistic max pooling (:mod:`egm.energies.conv_rbm`) are
trained greedily, one driver phase each (``layer0``, ``layer1``): layer 0 on binarized
28x28 digits, layer 1 on layer 0's pooling probabilities ``P(p¹ = 1 | v)``, re-drawn as
Bernoulli units in every minibatch.  The features of a digit are both layers' pooling
probabilities (bottom-up inference), flattened and concatenated, computed from the grey digit
(its intensities as the visible units' probabilities; ``feature_input="binary"``: from the
binarized digit the layers train on); a linear softmax classifier
(multinomial logistic regression, Adam with L2 weight decay) is trained on them for each label
setting (``clf_all``, ``clf_1000``...: the first ``n`` labelled training digits, as in the
paper's 1k/2k/3k/5k/all-label table; the paper averages random subsets over trials), one per
candidate weight decay, the one of lowest validation error kept per setting, and,
with ``pixel_baseline``, the same classifier on the raw pixels of the same split (``pix_all``,
``pix_1000``...: the baseline the features must beat).

* :class:`CDBNFields`: the fields (inherit them);
* :func:`conv_rbm_objective`: the CD-k / PCD-k objective of one layer for
  :func:`egm.train.make_step` (gradient per detection position, sparsity regulariser);
* :func:`layer_phases`, :func:`classifier_phases`: the driver phases;
* :func:`features`, :func:`cdbn_pictures`: features and the PNGs.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from egm.data import BinarizedMNIST, load_binarized_mnist
from egm.energies import conv_rbm as cr
from egm.errors import ConfigError
from egm.eval.visualize import tile_images
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of
from egm.run.directed import sizes, sizes_ok
from egm.run.driver import Phase
from egm.train.state import ObjectiveOut

__all__ = [
    "CDBNFields",
    "cdbn_pictures",
    "classifier_phases",
    "conv_rbm_objective",
    "features",
    "layer_phases",
    "protocol",
]

IMAGE = 28


def conv_rbm_objective(
    spec: cr.ConvRBM,
    k: int = 1,
    estimator: str = "cd",
    *,
    sparsity_target: float | None = None,
    sparsity_cost: float = 0.0,
    binarize: bool = False,
):
    """The CD-k / PCD-k objective of a conv RBM for :func:`egm.train.make_step` on batches
    of images ``(B, Nv, Nv, C)`` (``chains``: the persistent :class:`ConvRBMState` batch for
    "pcd", ``()`` for "cd").

    The gradient is :func:`egm.energies.conv_rbm.cd_gradient`'s divided by the number of
    detection positions ``Nh²`` (a filter's statistic is a sum over positions; per position,
    one learning rate suits any image size, as in Lee et al.'s code), plus
    :func:`~egm.energies.conv_rbm.sparsity_gradient` on the hidden biases.  ``binarize``:
    draw ``Bernoulli(batch)`` first (a layer fed the pooling probabilities of the layer
    below).  Metrics: ``hidden_mean``, ``pool_mean``, ``recon_error`` (per image)."""
    if estimator not in ("cd", "pcd"):
        raise ConfigError(f"estimator must be 'cd' or 'pcd', got {estimator!r}")
    if not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"k (Gibbs sweeps per update) must be an integer >= 1, got {k!r}")
    if sparsity_target is not None and not 0.0 < sparsity_target < 1.0:
        raise ConfigError(f"sparsity_target must be in (0, 1), got {sparsity_target}")

    def objective(params, batch, key, chains, aux):
        k_bin, k_est = jax.random.split(key)
        v = batch
        if binarize:
            v = jax.random.bernoulli(k_bin, batch).astype(jnp.float32)
        pcd = estimator == "pcd"
        grads, new, info = cr.cd_gradient(k_est, spec, params, v, k, chains if pcd else None)
        nh = v.shape[1] - params.W.shape[0] + 1
        grads = jax.tree_util.tree_map(lambda g: g / (nh * nh), grads)
        if sparsity_target is not None:
            grads = grads._replace(
                b=grads.b + cr.sparsity_gradient(info.hidden_mean, sparsity_target, sparsity_cost)
            )
        metrics = {"hidden_mean": jnp.mean(info.hidden_mean), "pool_mean": info.pool_mean,
                   "recon_error": info.recon_error}  # fmt: skip
        return ObjectiveOut(grads, new if pcd else chains, aux, metrics)

    return objective


def _label_settings(text: str) -> str | None:
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if not parts or any(p != "all" and not (p.isdigit() and int(p) >= 1) for p in parts):
        return "must be comma-separated label counts >= 1 or 'all', e.g. all,1000,2000,5000"
    return None


def decays(text: str) -> tuple[float, ...]:
    """``"0.3,1,3"`` -> ``(0.3, 1.0, 3.0)`` (raises ``ValueError`` on a non-number)."""
    return tuple(float(s) for s in text.split(",") if s.strip())


def _decays_ok(text: str) -> str | None:
    try:
        values = decays(text)
    except ValueError:
        values = ()
    if not values or not all(np.isfinite(v) and v >= 0 for v in values):
        return "must be comma-separated weight decays >= 0, e.g. 0.3,1,3,10"
    return None


@dataclasses.dataclass(frozen=True)
class CDBNFields(MNISTFields):
    """A two-layer convolutional DBN (``filters`` per layer, square ``filter_sizes``,
    ``pools``), each layer trained by CD-k / PCD-k with SGD + momentum + weight decay and
    the sparsity regulariser, then linear classifiers on its features for each of ``labels``."""

    filters: str = field("24,24", check=sizes_ok, help="filters K per layer")
    filter_sizes: str = field("5,5", check=sizes_ok, help="filter side Nw per layer")
    pools: str = field("2,2", check=sizes_ok, help="pooling block side per layer")
    layer_epochs: str = field("2,2", check=sizes_ok)
    n_unlabelled: int | None = field(None, check=at_least(1),
                                     help="train the layers on the first n digits only")  # fmt: skip
    estimator: str = field("cd", check=one_of("cd", "pcd"))
    k: int = field(1, check=at_least(1))
    batch_size: int = field(50, check=at_least(1))
    learning_rate: float = field(0.05, check=greater_than(0), sweep=True)
    momentum: float = field(0.9, check=in_range(0, 1, closed_high=False), sweep=True)
    weight_decay: float = field(1e-3, check=at_least(0), sweep=True)
    sparsity_target: float = field(0.05, check=in_range(0, 1, closed_low=False, closed_high=False),
                                   help="target mean P(h=1|v) (Lee et al. 2008)")  # fmt: skip
    sparsity_cost: float = field(1.0, check=at_least(0), help="0: no sparsity regulariser")
    labels: str = field("all,1000,2000", check=_label_settings,
                        help="label settings: the first n labelled digits, or all")  # fmt: skip
    clf_epochs: int = field(60, check=at_least(1))
    clf_batch_size: int = field(100, check=at_least(1))
    clf_learning_rate: float = field(1e-2, check=greater_than(0), sweep=True)
    clf_weight_decays: str = field("0.3,1,3,10,30", check=_decays_ok,
                                   help="the classifiers' candidate weight decays: each label "
                                        "setting keeps the one of lowest validation error")  # fmt: skip
    pixel_baseline: bool = field(True, help="also train the same classifiers on the raw pixels")
    feature_input: str = field("grey", check=one_of("grey", "binary"),
                               help="what the features and the pixel baseline see: the grey "
                                    "digits (intensities as visible probabilities) or the "
                                    "binarized ones the layers train on")  # fmt: skip

    def check(self) -> None:
        super().check()
        lists = {n: sizes(getattr(self, n)) for n in ("filters", "filter_sizes", "pools",
                                                      "layer_epochs")}  # fmt: skip
        if any(len(v) != 2 for v in lists.values()):
            raise ConfigError(f"filters, filter_sizes, pools and layer_epochs need one value "
                              f"per layer (two layers), got {lists}")  # fmt: skip
        size = IMAGE
        for layer in range(2):
            spec = cr.ConvRBM(pool=lists["pools"][layer])
            size = cr.hidden_size(spec, size, lists["filter_sizes"][layer]) // spec.pool

    def specs(self) -> tuple[cr.ConvRBM, cr.ConvRBM]:
        return tuple(cr.ConvRBM(pool=p) for p in sizes(self.pools))

    def label_counts(self) -> list[tuple[str, int | None]]:
        """``[(phase suffix, n or None for all)]``."""
        out = []
        for s in (x.strip() for x in self.labels.split(",") if x.strip()):
            out.append(("all", None) if s == "all" else (s, int(s)))
        return out

    def load_data(self) -> BinarizedMNIST:
        d = load_binarized_mnist(self.binarization, self.binarization_seed, source=self.source,
                                 data_dir=self.data_dir,
                                 keep_grey=self.feature_input == "grey")  # fmt: skip
        n = len(d.labels["train"])
        too_many = [c for _, c in self.label_counts() if c is not None and c > n]
        if too_many:
            raise ConfigError(f"label settings {too_many} exceed the {n} training digits of "
                              f"{d.source}; drop them from --labels or use --source idx")  # fmt: skip
        return d

    def optimizer(self, n_train: int, layer: int):
        from egm.train.optim import linear_decay, sgd

        steps = max(sizes(self.layer_epochs)[layer] * (n_train // self.batch_size), 1)
        return sgd(self.learning_rate, self.momentum, self.weight_decay,
                   lr_multiplier=linear_decay(steps))  # fmt: skip

    def training(self) -> str:
        return (f"greedy {self.estimator.upper()}-{self.k} per layer, epochs "
                f"{self.layer_epochs}, batch {self.batch_size}, SGD lr {self.learning_rate} "
                f"(linear decay), momentum {self.momentum}, weight decay {self.weight_decay}, "
                f"sparsity target {self.sparsity_target} (cost {self.sparsity_cost}); linear "
                f"softmax classifiers on the {self.feature_input} digits' features: Adam lr "
                f"{self.clf_learning_rate}, {self.clf_epochs} epochs, weight decay chosen on "
                f"validation per label setting from {self.clf_weight_decays}")  # fmt: skip


# --------------------------------------------------------------------------------- layers


def _images(d: BinarizedMNIST, split: str, n: int | None = None,
            grey: bool = False) -> np.ndarray:  # fmt: skip
    """The binarized digits of ``split`` (the first ``n``) as ``(N, 28, 28, 1)`` images, or with
    ``grey`` the grey ones (``d`` loaded with ``keep_grey=True``)."""
    x = np.asarray(d.digits(split, grey, n), np.float32)
    return x.reshape(len(x), IMAGE, IMAGE, 1)


@functools.partial(jax.jit, static_argnums=0)
def _pool_up(spec: cr.ConvRBM, params: cr.ConvRBMParams, x: Array) -> Array:
    return jax.vmap(lambda v: cr.hidden_probs(spec, params, v)[1])(x)


def pool_probabilities(spec, params, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """``P(p = 1 | v)`` of every image in ``x`` (jitted, in batches of one shape ``batch``:
    the last one zero-padded, so one compilation per layer serves every split and size)."""
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        pad = batch - len(xb)
        if pad:
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
        out.append(np.asarray(_pool_up(spec, params, jnp.asarray(xb)))[: batch - pad])
    return np.concatenate(out)


def layer_inputs(cfg: CDBNFields, d: BinarizedMNIST, done: dict, layer: int, split: str,
                 n: int | None = None) -> np.ndarray:  # fmt: skip
    """What layer ``layer`` sees: the binary digits (layer 0), or layer 0's pooling
    probabilities."""
    x = _images(d, split, n)
    specs = cfg.specs()
    for j in range(layer):
        x = pool_probabilities(specs[j], done[f"layer{j}"].params, x)
    return x


def layer_phases(cfg: CDBNFields) -> list[Phase]:
    """``layer0`` and ``layer1``: each a conv RBM initialised with ``W ~ N(0, 0.01²)``,
    ``b = -2`` and the visible bias of the input mean, trained by :func:`conv_rbm_objective`."""
    from egm.train.state import init_state, make_step

    phases = []
    for layer in range(2):

        def inputs(c, d, done, layer=layer):
            return layer_inputs(c, d, done, layer, "train", c.n_unlabelled)

        def init(c, d, key, done, layer=layer):
            x = layer_inputs(c, d, done, layer, "train", c.n_unlabelled)
            spec = c.specs()[layer]
            params = cr.init(key, spec, x.shape[1], x.shape[3], sizes(c.filters)[layer],
                             sizes(c.filter_sizes)[layer], hidden_bias=-2.0,
                             data_mean=x.mean((0, 1, 2)))  # fmt: skip
            chains = ()
            if c.estimator == "pcd":  # batch_size chains from the base-rate model of the input
                chains = _base_rate_chains(jax.random.fold_in(key, 1), spec, params,
                                           jnp.asarray(x.mean(0)), c.batch_size, 0)  # fmt: skip
            return init_state(params, c.optimizer(len(x), layer), chains)

        def step(c, d, done, layer=layer):
            obj = conv_rbm_objective(
                c.specs()[layer], c.k, c.estimator, binarize=layer > 0,
                sparsity_target=c.sparsity_target if c.sparsity_cost > 0 else None,
                sparsity_cost=c.sparsity_cost,
            )  # fmt: skip
            n = len(d.binary["train"][: c.n_unlabelled])
            return make_step(obj, c.optimizer(n, layer))

        def data_check(c, x, layer=layer):
            from egm.data.validate import check_unit_interval

            if layer == 0:
                spec = c.specs()[0]
                nw = sizes(c.filter_sizes)[0]
                probe = cr.ConvRBMParams(jnp.zeros((nw, nw, 1, 1)), jnp.zeros(1), jnp.zeros(1))
                cr.check_data(spec, probe, x, "training digits")
            else:
                check_unit_interval(np.asarray(x).reshape(len(x), -1), "layer-0 pooling units")

        phases.append(Phase(f"layer{layer}", init, step,
                            epochs=lambda c, layer=layer: sizes(c.layer_epochs)[layer],
                            train_data=inputs, data_check=data_check))  # fmt: skip
    return phases


# --------------------------------------------------------------------------------- features


def features(cfg: CDBNFields, d: BinarizedMNIST, done: dict, split: str,
             n: int | None = None) -> np.ndarray:  # fmt: skip
    """Both layers' pooling probabilities of the digits of ``split`` (bottom-up inference from
    the grey or binarized digits, ``cfg.feature_input``), flattened and concatenated: ``(N, F)``."""
    specs = cfg.specs()
    x = _images(d, split, n, grey=cfg.feature_input == "grey")
    p1 = pool_probabilities(specs[0], done["layer0"].params, x)
    p2 = pool_probabilities(specs[1], done["layer1"].params, p1)
    return np.concatenate([p1.reshape(len(p1), -1), p2.reshape(len(p2), -1)], axis=1)


_FEATURES: dict[tuple, np.ndarray] = {}


def _features_cached(cfg, d, done, split, n=None, kind="cdbn"):
    """:func:`features` (``kind="cdbn"``) or the raw pixels (``kind="pixels"``: the baseline,
    grey or binarized as ``cfg.feature_input`` says) standardised per feature by the mean and
    standard deviation (+0.01) over all training digits (no labels), as the classifiers see
    them; computed once per (parameters, config, data, split, n) in a process, so every
    classifier phase and the evaluation share them (keyed by the parameters' bytes)."""
    import hashlib

    h = hashlib.sha1()
    if kind == "cdbn":
        for layer in ("layer0", "layer1"):
            for leaf in done[layer].params:
                h.update(np.asarray(leaf).tobytes())

    def raw(split, n=None):
        if kind == "pixels":
            x = _images(d, split, n, grey=cfg.feature_input == "grey")
            return x.reshape(len(x), -1)
        return features(cfg, d, done, split, n)

    key = (kind, h.hexdigest(), cfg.pools, cfg.feature_input, d.source, d.protocol, split, n)
    if key not in _FEATURES:
        if len(_FEATURES) >= 12:
            _FEATURES.pop(next(iter(_FEATURES)))
        stats_key = (*key[:6], "stats")
        if stats_key not in _FEATURES:  # standardisation by all training digits (no labels)
            x = raw("train")
            _FEATURES[stats_key] = (x.mean(0), x.std(0) + 0.01)
        mu, sd = _FEATURES[stats_key]
        _FEATURES[key] = (raw(split, n) - mu) / sd
    return _FEATURES[key]


def linear_logits(params: dict, x: Float[Array, "B F"]) -> Float[Array, "B 10"]:
    """Multinomial logistic regression: ``x W + b``."""
    return x @ params["W"] + params["b"]


def classifier_phases(cfg: CDBNFields, kind: str = "cdbn") -> list[Phase]:
    """``clf_<n>`` per label setting: linear softmax classifiers on :func:`features` of the
    first ``n`` training digits (``clf_all``: all of them), one per candidate weight decay of
    ``clf_weight_decays``, trained side by side (:func:`egm.train.sweep.grid_step`: each as it
    would train alone); :func:`test_errors` keeps the one of lowest validation error.
    ``kind="pixels"``: ``pix_<n>``, the same on the raw pixels (the baseline the features must
    beat, its weight decay chosen the same way)."""
    from egm.train.classifier import classifier_data_check, classifier_objective
    from egm.train.optim import adam, linear_decay
    from egm.train.state import init_state, make_step
    from egm.train.sweep import grid_states, grid_step

    def opt(c, n):
        steps = max(c.clf_epochs * (n // min(c.clf_batch_size, n)), 1)
        return adam(c.clf_learning_rate, weight_decay=decays(c.clf_weight_decays)[0],
                    lr_multiplier=linear_decay(steps))  # fmt: skip

    phases = []
    prefix = "clf" if kind == "cdbn" else "pix"
    for name, count in cfg.label_counts():

        def data(c, d, done, count=count):
            return (_features_cached(c, d, done, "train", count, kind),
                    np.asarray(d.labels["train"][:count]))  # fmt: skip

        def init(c, d, key, done, count=count):
            x = _features_cached(c, d, done, "train", count, kind)
            params = {"W": jnp.zeros((x.shape[1], 10)), "b": jnp.zeros(10)}
            return grid_states(init_state(params, opt(c, len(x))),
                               weight_decay=decays(c.clf_weight_decays))  # fmt: skip

        def step(c, d, done, count=count):
            n = len(d.labels["train"][:count])
            return grid_step(make_step(classifier_objective(linear_logits), opt(c, n)))

        def check(c, xy):
            classifier_data_check(xy[0].shape[1], 10)(xy)

        phases.append(Phase(f"{prefix}_{name}", init, step, epochs=lambda c: c.clf_epochs,
                            batch_size=lambda c, count=count: min(c.clf_batch_size, count or 10**9),
                            train_data=data, data_check=check))  # fmt: skip
    return phases


def protocol(cfg: CDBNFields, d: BinarizedMNIST) -> str:
    """The sentence stored with the test errors: the layers' binarization protocol and what
    the classifiers see."""
    seen = ("grey digits (intensities as the visible probabilities)"
            if cfg.feature_input == "grey" else "same binarized digits")  # fmt: skip
    return f"layers trained on {d.protocol}; features and pixel baseline from the {seen}"


def test_errors(cfg: CDBNFields, d: BinarizedMNIST, done: dict) -> dict[str, Any]:
    """Per label setting, the classifier of lowest validation error among the candidate
    weight decays (the first of equals): its ``test_error_<setting>`` (fraction
    misclassified) and binomial standard error, ``valid_error_<setting>``, the decay it has
    (``weight_decay_<setting>``) and every candidate's validation error
    (``valid_errors_<setting>``, in the order of ``clf_weight_decays``); with
    ``pixel_baseline`` the same for the classifiers on raw pixels (``pixels_...``)."""
    from egm.train.classifier import classification_error
    from egm.train.sweep import unstack

    grid = decays(cfg.clf_weight_decays)

    y = {s: np.asarray(d.labels[s]) for s in ("valid", "test")}
    out: dict[str, Any] = {"n_test": len(y["test"])}
    kinds = [("cdbn", "clf", "")] + ([("pixels", "pix", "pixels_")] if cfg.pixel_baseline else [])
    for kind, prefix, tag in kinds:
        x = {s: _features_cached(cfg, d, done, s, None, kind) for s in y}
        if kind == "cdbn":
            out["n_features"] = int(x["test"].shape[1])
        for name, count in cfg.label_counts():
            candidates = unstack(done[f"{prefix}_{name}"].params)
            valid = [classification_error(linear_logits, p, x["valid"], y["valid"])
                     for p in candidates]  # fmt: skip
            best = int(np.argmin(valid))
            err = classification_error(linear_logits, candidates[best], x["test"], y["test"])
            out[f"{tag}test_error_{name}"] = err
            out[f"{tag}test_error_{name}_stderr"] = float(np.sqrt(err * (1 - err) / len(y["test"])))
            out[f"{tag}valid_error_{name}"] = valid[best]
            out[f"{tag}weight_decay_{name}"] = grid[best]
            out[f"{tag}valid_errors_{name}"] = valid
            out[f"n_labels_{name}"] = len(d.labels["train"][:count])
    return out


# --------------------------------------------------------------------------------- pictures


def layer0_samples(cfg: CDBNFields, d: BinarizedMNIST, done: dict, key, n: int,
                   n_sweeps: int) -> cr.ConvRBMState:  # fmt: skip
    """``n`` chains of the layer-0 conv RBM after ``n_sweeps`` Gibbs sweeps from the
    pixel-wise base-rate model ``Bernoulli(mean digit)``."""
    mean = jnp.asarray(_images(d, "train").mean(0))
    return _base_rate_chains(key, cfg.specs()[0], done["layer0"].params, mean, n, n_sweeps)


@functools.partial(jax.jit, static_argnums=(1, 4, 5))
def _base_rate_chains(key, spec, params, mean, n, n_sweeps):
    k0, k1, k2 = jax.random.split(key, 3)
    v0 = jax.random.bernoulli(k0, mean, (n, *mean.shape)).astype(jnp.float32)
    s0 = jax.vmap(cr.init_state, (0, None, None, 0))(jax.random.split(k1, n), spec, params, v0)
    return cr.gibbs(k2, spec, params, s0, n_sweeps)


def cdbn_pictures(cfg: CDBNFields, d: BinarizedMNIST, done: dict, key, n: int,
                  n_sweeps: int) -> dict:  # fmt: skip
    """``filters.png`` (layer-0 filters, each normalised) and ``samples.png`` (``E[v | h]``
    of :func:`layer0_samples`)."""
    W = np.asarray(done["layer0"].params.W)  # (Nw, Nw, 1, K)
    nw, k = W.shape[0], W.shape[3]
    filters = tile_images(W[:, :, 0, :].transpose(2, 0, 1).reshape(k, -1), (nw, nw),
                          normalize=True)  # fmt: skip
    s = layer0_samples(cfg, d, done, key, n, n_sweeps)
    spec, params = cfg.specs()[0], done["layer0"].params
    means = jax.jit(jax.vmap(lambda h: cr.visible_mean(spec, params, h)))(s.h)
    return {"filters.png": (filters, f"the {k} layer-1 filters ({nw}x{nw})"),
            "samples.png": (tile_images(np.asarray(means).reshape(n, -1), (IMAGE, IMAGE)),
                            f"E[v | h] after {n_sweeps} Gibbs sweeps of the layer-1 conv RBM")}  # fmt: skip
