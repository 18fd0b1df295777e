"""Evaluation helpers for autoregressive nets (§20.10.7–20.10.10): ensembles, enumeration,
inpainting masks, and the binary nets of the MNIST comparison as one interface.

An ensemble of autoregressive models (orderings of an order-agnostic NADE, mask sets of a
MADE) is the MIXTURE ``p(x) = (1/K) Σ_k p_k(x)``; its log-likelihood is
``logsumexp_k log p_k(x) - log K``.  Averaging the members' logits instead gives a
different, unnormalised model (tested in ``tests/models/test_nade.py``).

:class:`BinaryAutoregressive` gives FVSBN, NADE, order-agnostic deep NADE (EoNADE) and
MADE the same pure functions (init, training loss, exact per-member log-likelihood,
sampling with clamped units), so one experiment trains, evaluates (:func:`exact_record`,
with the ensemble over members) and draws from (:func:`draw`) any of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from egm.errors import ConfigError
from egm.eval.record import LogLikelihood
from egm.models import deep_nade, fvsbn, made, nade
from egm.models._autoregressive import (
    ensemble_log_likelihood,
    observed_first_ordering,
    set_output_bias,
)

__all__ = [
    "AUTOREGRESSIVE_NETS",
    "BinaryAutoregressive",
    "binary_autoregressive",
    "draw",
    "ensemble_log_likelihood",
    "enumerate_log_probs",
    "exact_record",
    "exact_report",
    "member_log_probs",
    "top_half_mask",
]

AUTOREGRESSIVE_NETS = ("fvsbn", "nade", "eonade", "made")


def enumerate_log_probs(
    log_prob_fn: Callable[[Float[Array, "S D"]], Float[Array, " S"]], n_visible: int
) -> Float[Array, " S"]:
    """``log p(x)`` for all ``2^D`` binary vectors (rows of
    :func:`egm.estimators.exact.all_binary_states`); ``log_prob_fn`` takes a batch."""
    from egm.estimators.exact import all_binary_states

    return log_prob_fn(all_binary_states(n_visible))


def top_half_mask(height: int, width: int, rows: int | None = None) -> np.ndarray:
    """Boolean [height * width] mask of the first ``rows`` image rows (default: the top
    half), raster order: the observed pixels of an inpainting task."""
    rows = height // 2 if rows is None else rows
    if not 0 <= rows <= height:
        raise ConfigError(f"rows must be in [0, {height}], got {rows}")
    m = np.zeros((height, width), bool)
    m[:rows] = True
    return m.reshape(-1)


class BinaryAutoregressive(NamedTuple):
    """A binary autoregressive net as pure functions.

    ``init(key, data_mean) -> (params, family)``: Flax params with the output biases at the
    logit of the data mean, and ``family``, the key data (uint32) that fixes the net's
    ensemble family (MADE's mask sets, EoNADE's test orderings; unused by FVSBN and NADE).
    It belongs in the train state (``TrainState.aux``) so that every member of a seed sweep
    has its own.  ``loss(params, family, batch, key)``: the training loss (exact negative
    log-likelihood; MADE: under a random mask set of the ``n_members`` of the family per
    minibatch, connectivity-agnostic training; EoNADE: the order-agnostic loss).
    ``log_prob(params, family, x, k)``: exact ``log p(x)`` [N] of ensemble member ``k``
    (an int, may be traced; ``k = 0`` is the natural-order model: the identity ordering or
    mask set 0).  ``sample(key, params, family, x_clamp, clamp_mask)``: one ancestral draw
    [D] with the clamped units kept (an exact conditional when they come first in the
    ordering: the top half in raster order; EoNADE orders the observed units first; MADE
    uses mask set 0, approximate for order-agnostic masks).  ``n_members``: the ensemble
    at test time (1: none); ``members``: what they are.
    """

    name: str
    init: Callable[..., tuple[Any, Any]]
    loss: Callable[..., Array]
    log_prob: Callable[..., Array]
    sample: Callable[..., Array]
    n_members: int = 1
    members: str = ""


def _mean_nll(log_prob):
    return lambda p, fam, x, key: -jnp.mean(log_prob(p, fam, x, 0))


def _key(family):
    return jax.random.wrap_key_data(family)


def _family(key):
    return jax.random.key_data(jax.random.fold_in(key, 10_000))


@functools.lru_cache(maxsize=64)
def binary_autoregressive(
    name: str,
    n_visible: int = 784,
    hidden: Sequence[int] = (500,),
    n_members: int = 1,
    order_agnostic: bool = False,
) -> BinaryAutoregressive:
    """The net ``name`` (one of :data:`AUTOREGRESSIVE_NETS`) over ``n_visible`` units:
    ``hidden`` sizes (NADE: one layer; FVSBN: ignored), ``n_members`` mask sets (MADE,
    also the training family) or test orderings (EoNADE), MADE's ``order_agnostic`` masks.
    Cached, so equal arguments give the same functions (and their jit compilations)."""
    D, hidden = int(n_visible), tuple(int(h) for h in hidden)
    if name not in AUTOREGRESSIVE_NETS:
        raise ConfigError(f"unknown autoregressive net {name!r}; choose from {AUTOREGRESSIVE_NETS}")
    if n_members < 1 or (name != "fvsbn" and (not hidden or min(hidden) < 1)):
        raise ConfigError(f"need n_members >= 1 and hidden sizes >= 1, got {n_members}, {hidden}")
    z = jnp.zeros((1, D))
    if name in ("fvsbn", "nade"):
        model = fvsbn.FVSBN(D) if name == "fvsbn" else nade.NADE(D, hidden[0])
        mod = fvsbn if name == "fvsbn" else nade

        def init(key, mean):
            return set_output_bias(model.init(key, z), mean), _family(key)

        def log_prob(p, fam, x, k):
            return model.apply(p, x, method=type(model).log_prob)

        def sample(key, p, fam, xc, m):
            return mod.sample(key, model, p, xc, m)

        return BinaryAutoregressive(name, init, _mean_nll(log_prob), log_prob, sample)
    if name == "eonade":
        model = deep_nade.DeepNADE(D, hidden)

        def ordering(fam, k):  # member 0: the identity; others: fixed random permutations
            perm = jax.random.permutation(jax.random.fold_in(_key(fam), k), D)
            return jnp.where(k == 0, jnp.arange(D), perm)

        def init(key, mean):
            return set_output_bias(model.init(key, z, z), mean), _family(key)

        def loss(p, fam, x, key):
            return deep_nade.order_agnostic_loss(model, p, x, key)

        def log_prob(p, fam, x, k):
            return deep_nade.ordered_log_prob(model, p, x, ordering(fam, k))

        def sample(key, p, fam, xc, m):
            k1, k2 = jax.random.split(key)
            return deep_nade.sample(k2, model, p, observed_first_ordering(k1, m), xc, m)

        return BinaryAutoregressive(name, init, loss, log_prob, sample, n_members, "orderings")
    model = made.MADE(D, hidden)

    def masks(fam, k):
        return made.mask_set(_key(fam), k, D, hidden, order_agnostic)

    def init(key, mean):
        fam = _family(key)
        return set_output_bias(model.init(key, z, masks(fam, 0)), mean), fam

    def loss(p, fam, x, key):
        k = jax.random.randint(key, (), 0, n_members)
        return -jnp.mean(model.apply(p, x, masks(fam, k), method=made.MADE.log_prob))

    def log_prob(p, fam, x, k):
        return model.apply(p, x, masks(fam, k), method=made.MADE.log_prob)

    def sample(key, p, fam, xc, m):
        return made.sample(key, model, p, masks(fam, 0), xc, m)

    kind = f"mask sets ({'order-agnostic' if order_agnostic else 'natural ordering'})"
    return BinaryAutoregressive(name, init, loss, log_prob, sample, n_members, kind)


def member_log_probs(
    net: BinaryAutoregressive, params: Any, family: Any, x: np.ndarray, chunk: int = 1000
) -> np.ndarray:
    """``[n_members, N]`` exact per-member log-likelihoods of ``x`` (in chunks of ``chunk``
    examples; one compilation for every member and chunk size)."""
    fn = _jitted(net.log_prob)
    return np.stack(
        [
            np.concatenate(
                [
                    np.asarray(fn(params, family, jnp.asarray(x[i : i + chunk]), jnp.int32(k)))
                    for i in range(0, len(x), chunk)
                ]
            )
            for k in range(net.n_members)
        ]
    )


@functools.lru_cache(maxsize=64)
def _jitted(fn):
    return jax.jit(fn)


def _powers(k: int) -> list[int]:
    out = [1]
    while out[-1] * 2 <= k:
        out.append(out[-1] * 2)
    return out + ([k] if out[-1] != k else [])


def exact_record(
    net: BinaryAutoregressive,
    params: Any,
    family: Any,
    x: np.ndarray,
    *,
    chunk: int = 1000,
    **record_fields: Any,
) -> tuple[LogLikelihood, dict]:
    """The exact log-likelihood record of ``x`` under the net (its ensemble over
    ``n_members`` members when there are several: log of the mean probability), and a dict
    of figures: ``single_member_nats`` (member 0), ``mean_single_member_nats`` (the mean
    over members) and ``ensemble_curve`` (ensemble of the first k members, k = 1, 2, 4, ...).
    ``record_fields``: dataset, split, protocol of :class:`LogLikelihood`."""  # fmt: skip
    per = member_log_probs(net, params, family, x, chunk)
    ens = np.asarray(ensemble_log_likelihood(jnp.asarray(per)))
    if net.n_members == 1:
        return LogLikelihood.from_per_example(ens, "exact", **record_fields), {}
    notes = f"log of the mean probability over {net.n_members} {net.members}"
    rec = LogLikelihood.from_per_example(
        ens, "exact", counts={"members": net.n_members}, notes=notes, **record_fields
    )
    curve = {
        str(k): float(np.asarray(ensemble_log_likelihood(jnp.asarray(per[:k]))).mean())
        for k in _powers(net.n_members)
    }
    return rec, {
        "single_member_nats": float(per[0].mean()),
        "mean_single_member_nats": float(per.mean()),
        "ensemble_curve": curve,
    }


def draw(
    net: BinaryAutoregressive,
    params: Any,
    family: Any,
    key,
    n_samples: int,
    x_obs: np.ndarray,
    observed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` unconditional samples and one completion of each row of ``x_obs`` with
    the ``observed`` units kept, in one vmapped batch (one compilation)."""  # fmt: skip
    D = x_obs.shape[1]
    k_s, k_i = jax.random.split(key)
    keys = jnp.concatenate([jax.random.split(k_s, n_samples), jax.random.split(k_i, len(x_obs))])
    x0 = jnp.concatenate([jnp.zeros((n_samples, D)), jnp.asarray(x_obs, jnp.float32)])
    masks = jnp.concatenate([jnp.zeros((n_samples, D), bool),
                             jnp.broadcast_to(jnp.asarray(observed), (len(x_obs), D))])  # fmt: skip
    fn = jax.vmap(lambda k, x, m: net.sample(k, params, family, x, m))
    out = np.asarray(jax.jit(fn)(keys, x0, masks))
    return out[:n_samples], out[n_samples:]


def exact_report(
    name: str,
    net: BinaryAutoregressive,
    params: Any,
    family: Any,
    x: np.ndarray,
    *,
    paper: Any = None,
    figures: dict[str, Any] | None = None,
    **record_fields: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the autoregressive experiment records of one net ``name``: ``(results, figures)``.

    ``results``: ``<name>_test_loglik`` (:func:`exact_record`), with an ensemble
    ``<name>_test_loglik_single_member_nats`` (member 0), and with ``paper`` (an
    :class:`egm.eval.published.Published`) ``<name>_gap_to_paper_nats`` (ours minus the
    paper's).  ``figures``: the net's parameter count, the examples evaluated, the ensemble
    figures and the paper's value and source, after the given ``figures`` (the training
    settings of the run)."""
    extra = dict(figures or {})
    rec, figures = exact_record(net, params, family, x, **record_fields)
    out: dict[str, Any] = {f"{name}_test_loglik": rec}
    if paper is not None:
        out[f"{name}_gap_to_paper_nats"] = rec.value - paper.value
        figures |= {"paper": paper.value, "paper_source": f"{paper.model}, {paper.source}"}
    if "single_member_nats" in figures:
        out[f"{name}_test_loglik_single_member_nats"] = figures.pop("single_member_nats")
    n_params = int(sum(a.size for a in jax.tree_util.tree_leaves(params)))
    return out, {**extra, "n_parameters": n_params, "n_test_evaluated": int(len(x)), **figures}
