"""Training phases and small helpers shared by the directed-model experiments (VAE,
categorical VAE, DRAW, SBN and the autoregressive nets of §20.10).

* :func:`loss_phase`: a driver :class:`egm.run.driver.Phase` that minimises a loss
  ``(params, batch, key[, step]) -> (value, metrics)`` with an optax optimiser, monitored
  every ``eval_every`` epochs and at the last (:func:`due`);
* :func:`autoregressive_phase`: the same for a :class:`egm.eval.autoregressive.
  BinaryAutoregressive` net, whose ensemble family rides in the train state's ``aux``;
* :func:`sizes` and :func:`sizes_ok`: layer sizes such as ``"200,200"`` and their field check;
* :func:`choices` (and the field check :func:`choices_ok`): a comma list of distinct names from a fixed set (``--variants``,
  ``--estimators``), refused with a :class:`ConfigError` that lists the set;
* :func:`per_model`: one value per model name, each from its own ``fold_in`` key;
* :func:`load_mnist`: binarized MNIST under a config's protocol fields;
* :func:`digit_grid`: 28x28 images tiled into one picture; :func:`vae_pictures`: a VAE's
  samples and reconstructions; :func:`record_fields`: the
  dataset, split and protocol of a record;
* config field groups: :class:`ImportanceFields` (the IS evaluation) and
  :class:`DecoderAISFields` (decoder AIS beside IS, and BDMC).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from egm.data.binarized import BinarizedMNIST, load_binarized_mnist
from egm.data.mnist import load_mnist as _load_mnist
from egm.data.validate import check_binary, check_shape, check_unit_interval
from egm.errors import ConfigError
from egm.eval.directed import DecoderAIS, generator_report
from egm.eval.visualize import tile_images
from egm.run.config import at_least, field
from egm.run.driver import Phase
from egm.train.state import ObjectiveOut, init_state, loss_objective, make_step

__all__ = [
    "DecoderAISFields",
    "ImportanceFields",
    "autoregressive_phase",
    "choices",
    "choices_ok",
    "digit_grid",
    "due",
    "generator_ais",
    "loss_phase",
    "load_mnist",
    "per_model",
    "vae_pictures",
    "record_fields",
    "sizes",
    "sizes_ok",
]

_EVAL = dict(check=at_least(1), eval_only=True)


@dataclasses.dataclass(frozen=True)
class ImportanceFields:
    """The importance-sampled test log-likelihood (inherit beside ``MNISTFields``)."""

    is_samples: int = field(1000, **_EVAL, help="IS draws of q per digit")
    is_test_size: int = field(1000, check=at_least(0), eval_only=True, help="0: all test digits")
    is_chunk: int = field(500, **_EVAL, help="IS draws per compiled chunk")


@dataclasses.dataclass(frozen=True)
class DecoderAISFields:
    """Decoder AIS (Wu et al. 2017) beside IS on the same test digits, and BDMC on digits
    simulated from the model (:class:`egm.eval.directed.DecoderAIS`)."""

    decoder_ais_temps: int = field(0, check=at_least(0), eval_only=True, help="0: off")
    decoder_ais_chains: int = field(8, **_EVAL)
    decoder_ais_size: int = field(100, **_EVAL, help="test digits (IS on the same ones too)")
    bdmc_examples: int = field(0, check=at_least(0), eval_only=True, help="simulated digits")

    def check(self) -> None:
        if self.bdmc_examples and not self.decoder_ais_temps:
            raise ConfigError("--bdmc_examples needs --decoder_ais_temps K (its temperatures)")

    def decoder_ais(self) -> DecoderAIS:
        return DecoderAIS(self.decoder_ais_temps, self.decoder_ais_chains,
                          self.decoder_ais_size, self.bdmc_examples)  # fmt: skip


def generator_ais(
    cfg: DecoderAISFields, d: Any, generator_fn: Callable, latent_dim: int, key: Any
) -> dict[str, Any]:
    """``{}`` unless ``--decoder_ais_temps K``; then the log-density of the grey test digits
    of ``d`` (an :class:`egm.data.GreyMNIST`) under a generator network with a Gaussian
    observation model, σ chosen on the validation digits (Wu et al. 2017;
    :func:`egm.eval.directed.generator_report`, ``generator_fn(z)`` for one ``z ~ N(0, I)``),
    with BDMC on ``--bdmc_examples`` simulated digits.  ``key``: the caller's evaluation key
    (the AIS runs use ``fold_in(key, 1)``)."""
    if not cfg.decoder_ais_temps:
        return {}
    return generator_report(jax.random.fold_in(key, 1), generator_fn, latent_dim, d.splits["valid"], d.splits["test"],
                            cfg.decoder_ais(), dataset=d.source, split="test",
                            protocol=d.protocol)  # fmt: skip


def record_fields(d: Any, split: str = "test") -> dict[str, str]:
    """``dataset``, ``split`` and ``protocol`` of a record on the ``split`` digits of ``d``
    (an :class:`egm.data.BinarizedMNIST`)."""
    return {"dataset": d.source, "split": split, "protocol": d.protocol}


def due(every: int, epoch: int, n_epochs: int) -> bool:
    """Whether to evaluate after (0-based) ``epoch``: every ``every`` epochs and at the last."""
    return (epoch + 1) % every == 0 or epoch == n_epochs - 1


def choices(spec: str, allowed: Sequence[str], flag: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``, each in ``allowed`` and none twice; else a
    :class:`ConfigError` naming ``--flag`` and the allowed names."""
    out = [s.strip() for s in spec.split(",") if s.strip()]
    if not out or any(v not in allowed for v in out) or len(set(out)) < len(out):
        raise ConfigError(
            f"--{flag} must be a comma list of distinct {tuple(allowed)}, got {spec!r}"
        )
    return out


def choices_ok(allowed: Sequence[str]) -> Callable[[str], str | None]:
    """The field check of a comma list of distinct names from ``allowed`` (:func:`choices`)."""

    def check(spec: str) -> str | None:
        out = [s.strip() for s in spec.split(",") if s.strip()]
        ok = out and set(out) <= set(allowed) and len(set(out)) == len(out)
        return None if ok else f"must be a comma list of distinct {tuple(allowed)}"

    return check


def sizes(text: str) -> tuple[int, ...]:
    """``"500,500"`` -> ``(500, 500)`` (raises ``ValueError`` on a non-integer)."""
    return tuple(int(s) for s in text.split(",") if s.strip())


def sizes_ok(text: str) -> str | None:
    """The field check of layer sizes: ``None`` when ``text`` is comma-separated ints
    ``>= 1`` (at least one), else what is wrong (:func:`egm.run.config.field`'s ``check``)."""
    try:
        return None if sizes(text) and min(sizes(text)) >= 1 else "must be sizes >= 1"
    except ValueError:
        return "must be comma-separated sizes >= 1, e.g. 200,200,200"


def unit_interval_data(cfg: Any, x: Any) -> None:
    """The data check of models trained on grey levels or binary pixels in [0, 1]."""
    check_unit_interval(x, "training data")


def loss_phase(
    name: str,
    init_params: Callable[[Any, Any, PRNGKeyArray], Any],
    loss: Callable[[Any, Any], Callable],
    optimizer: Callable[[Any, Any], Any],
    *,
    epochs: Callable[[Any], int] = lambda cfg: cfg.epochs,
    monitor: Callable[[Any, Any, Any, PRNGKeyArray], dict] | None = None,
    every: Callable[[Any], int] = lambda cfg: cfg.eval_every,
    data_check: Callable[[Any, Any], None] = unit_interval_data,
    count_steps: bool = False,
) -> Phase:
    """A phase minimising ``loss(cfg, data)`` (a function ``(params, batch, key) ->
    (value, metrics)``) from ``init_params(cfg, data, key)`` with ``optimizer(cfg, data)``;
    ``monitor(cfg, data, params, key) -> dict`` runs when :func:`due`.  With
    ``count_steps`` the state's ``aux`` holds the step count (int32), passed to the loss as
    a fourth argument (a temperature schedule) and incremented by every update."""

    def init(cfg, d, key, done):
        aux = jnp.zeros((), jnp.int32) if count_steps else ()
        return init_state(init_params(cfg, d, key), optimizer(cfg, d), aux=aux)

    def step(cfg, d, done):
        fn = loss(cfg, d)
        if not count_steps:
            return make_step(loss_objective(fn, has_aux=True), optimizer(cfg, d))
        grad = jax.value_and_grad(fn, has_aux=True)

        def objective(params, batch, key, chains, t):
            (value, metrics), g = grad(params, batch, key, t)
            return ObjectiveOut(g, chains, t + 1, {"loss": value, **metrics})

        return make_step(objective, optimizer(cfg, d))

    def watch(cfg, d, state, key, epoch):
        return monitor(cfg, d, state.params, key) if due(every(cfg), epoch, epochs(cfg)) else {}

    return Phase(name, init, step, epochs=epochs, data_check=data_check,
                 monitor=None if monitor is None else watch)  # fmt: skip


def autoregressive_phase(
    name: str,
    net: Callable[[Any], Any],
    optimizer: Callable[[Any], Any],
    epochs: Callable[[Any], int],
    *,
    every: Callable[[Any], int] = lambda cfg: cfg.eval_every,
    eval_size: Callable[[Any], int] = lambda cfg: cfg.eval_size,
    n_visible: int = 784,
) -> Phase:
    """A phase training ``net(cfg)`` (a :class:`egm.eval.autoregressive.BinaryAutoregressive`)
    on its loss with ``optimizer(cfg)``: output biases at the logit of the mean training
    digit, the net's family (mask sets, orderings) in the state's ``aux``, each minibatch
    re-drawn as Bernoulli(grey) under ``cfg.binarization == "dynamic"`` (binary data
    ``(N, n_visible)`` otherwise).  Monitored when :func:`due`: ``valid_loglik``, the exact
    mean log-likelihood of member 0 (the natural-order model) on the first
    ``eval_size(cfg)`` valid digits."""
    from egm.eval.autoregressive import member_log_probs

    def init(cfg, d, key, done):
        params, family = net(cfg).init(key, np.mean(d.binary["train"], axis=0))
        return init_state(params, optimizer(cfg), aux=family)

    def step(cfg, d, done):
        loss_fn, dynamic = net(cfg).loss, cfg.binarization == "dynamic"

        def objective(params, batch, key, chains, family):
            k_bin, k = jax.random.split(key)
            x = jax.random.bernoulli(k_bin, batch).astype(jnp.float32) if dynamic else batch
            loss, grads = jax.value_and_grad(loss_fn)(params, family, x, k)
            return ObjectiveOut(grads, chains, family, {"loss": loss})

        return make_step(objective, optimizer(cfg))

    def data_check(cfg, x):
        check_shape(x, n_visible, "training data")
        (check_unit_interval if cfg.binarization == "dynamic" else check_binary)(x, "training data")

    def monitor(cfg, d, state, key, epoch):
        if not due(every(cfg), epoch, epochs(cfg)):
            return {}
        one = net(cfg)._replace(n_members=1)
        ll = member_log_probs(one, state.params, state.aux, d.binary["valid"][: eval_size(cfg)])
        return {"valid_loglik": float(ll.mean())}

    return Phase(name, init, step, epochs=epochs, data_check=data_check, monitor=monitor)


def per_model(names: Sequence[str], key: PRNGKeyArray, fn: Callable[[str, Any], Any]) -> dict:
    """``{name: fn(name, fold_in(key, i))}`` over the ``i``-th model ``name``."""
    return {name: fn(name, jax.random.fold_in(key, i)) for i, name in enumerate(names)}


def digit_grid(images: Any, n_cols: int | None = None) -> np.ndarray:
    """Images of 784 pixels (any leading axes, flattened in order) tiled as 28x28 digits."""
    return tile_images(np.asarray(images).reshape(-1, 784), (28, 28), n_cols=n_cols)


def load_mnist(cfg: Any, train_split: str | None = None, n_train: int = 0,
               keep_grey: bool = False) -> BinarizedMNIST:  # fmt: skip
    """:func:`egm.data.load_binarized_mnist` with ``cfg``'s binarization, seed, source and
    data folder (``keep_grey``: also the grey splits), keeping the first ``n_train`` training
    digits (0: all).  With ``train_split`` the protocol names the training digits, and
    ``"train_full"`` trains on all 60,000 as grey levels (re-drawn in every step, as Burda et
    al. 2016) instead of the binarized first 50,000."""
    d = load_binarized_mnist(cfg.binarization, cfg.binarization_seed, source=cfg.source,
                             data_dir=cfg.data_dir, keep_grey=keep_grey)  # fmt: skip
    if n_train:
        grey = None if d.grey is None else {**d.grey, "train": d.grey["train"][:n_train]}
        d = d._replace(train=d.train[:n_train], grey=grey,
                       binary={**d.binary, "train": d.binary["train"][:n_train]})  # fmt: skip
    if train_split is None:
        return d
    if train_split == "train_full":
        full = _load_mnist(train_split, source=cfg.source, data_dir=cfg.data_dir)
        d = d._replace(train=np.asarray(full.x, np.float32))
    return d._replace(protocol=f"{d.protocol} (training digits: {train_split})")


def vae_pictures(
    key: PRNGKeyArray, model: Any, params: Any, name: str, n: int, x: Any = None
) -> dict[str, tuple[np.ndarray, str]]:
    """``<name>_samples.png``: ``E[x|z]`` of ``n`` prior draws of a VAE; with test digits
    ``x``, ``<name>_reconstructions.png``: each digit beside ``E[x | mode of q(z|x)]``."""
    from egm.models import vae

    prior = "z ~ N(0, I)" if model.latent == "gaussian" else "uniform codes"
    gen = vae.generate(key, model, params, n)
    out = {f"{name}_samples.png": (digit_grid(gen), f"{name}: E[x|z], {prior}")}
    if x is not None:
        pairs = np.stack([x, np.asarray(vae.reconstruct(model, params, jnp.asarray(x)))], 1)
        out[f"{name}_reconstructions.png"] = (digit_grid(pairs, 8), f"{name}: digit, recon.")
    return out
