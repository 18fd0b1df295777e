r"""Classification RBM of Larochelle & Bengio (2008) (§20.8, "other Boltzmann machines").

A binary RBM whose visible layer is an input ``x ∈ {0,1}^V`` together with a one-hot class
vector ``y ∈ {e_1, …, e_K}``; the energy of one configuration is

.. math:: E(x, y, h) = -b^\top x - c^\top h - d^\top y - x^\top W h - y^\top U h.

Summing out the hidden units (they are independent given ``(x, y)``) gives the free energy

.. math:: F(x, y) = -b^\top x - d_y - \sum_j \zeta(c_j + U_{yj} + x^\top W_{:,j}),

and, since there are only ``K`` classes, the exact class posterior (their eq. 2)

.. math:: \log p(y \mid x) = -F(x, y) - \log \sum_{y'} e^{-F(x, y')},

a log-sum-exp over classes of softplus sums, ``O(K H)`` per example after ``xᵀW``.

Three training objectives (all as a loss to minimise, mean over a minibatch):

- **generative**: ``-log p(x, y)``, whose gradient is the positive phase minus the negative
  phase (§18.1–18.2) ``∂F(x, y)/∂θ − E_{p(x', y')}[∂F(x', y')/∂θ]``; the negative phase is
  estimated with CD-k samples of the joint (:func:`generative_surrogate`);
- **discriminative**: ``-log p(y | x)``, exact, its gradient by autodiff;
- **hybrid**: discriminative ``+ α ·`` generative.

Every function acts on ONE example (labels as integer class indices, ``0 ≤ y < K``);
batches come from ``jax.vmap``.  Labels are checked host-side by :func:`check_labels`
(values cannot be checked inside ``jit``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from egm.energies.rbm import bernoulli_logits
from egm.errors import ConfigError, DataError

__all__ = [
    "ClassRBMParams",
    "cd_negatives",
    "check_data",
    "check_labels",
    "class_log_probs",
    "discriminative_loss",
    "energy",
    "error_and_nll",
    "free_energy",
    "generative_surrogate",
    "gibbs_step",
    "hidden_probs",
    "hybrid_loss",
    "init",
    "log_partition",
    "predict",
    "scores",
]


class ClassRBMParams(NamedTuple):
    """Input couplings ``W`` (V, H), class couplings ``U`` (K, H), biases ``b`` (V,), ``c``
    (H,) and ``d`` (K,)."""

    W: Float[Array, "V H"]
    U: Float[Array, "K H"]
    b: Float[Array, " V"]
    c: Float[Array, " H"]
    d: Float[Array, " K"]


def init(
    key: PRNGKeyArray, n_visible: int, n_hidden: int, n_classes: int, *, scale: float | None = None
) -> ClassRBMParams:
    """Initial parameters: ``W, U ~ U(-m, m)`` with ``m = scale`` (default ``(max(V, H))^{-1/2}``,
    Larochelle & Bengio's choice), zero biases."""
    if min(n_visible, n_hidden) < 1 or n_classes < 2:
        raise ConfigError(
            f"a classification RBM needs n_visible, n_hidden >= 1 and n_classes >= 2, got "
            f"{n_visible}, {n_hidden}, {n_classes}"
        )
    m = float(max(n_visible, n_hidden)) ** -0.5 if scale is None else scale
    k_w, k_u = jax.random.split(key)
    W = jax.random.uniform(k_w, (n_visible, n_hidden), jnp.float32, -m, m)
    U = jax.random.uniform(k_u, (n_classes, n_hidden), jnp.float32, -m, m)
    zeros = lambda n: jnp.zeros((n,), jnp.float32)  # noqa: E731
    return ClassRBMParams(W, U, zeros(n_visible), zeros(n_hidden), zeros(n_classes))


def energy(
    params: ClassRBMParams, x: Float[Array, " V"], y: Int[Array, ""], h: Float[Array, " H"]
) -> Float[Array, ""]:
    """``E(x, y, h) = -bᵀx - cᵀh - d_y - xᵀWh - U_{y,:}h`` (``y`` an integer class)."""
    p = params
    return -(p.b @ x) - (p.c @ h) - p.d[y] - x @ p.W @ h - p.U[y] @ h


def _class_scores(params: ClassRBMParams, x: Float[Array, " V"]) -> Float[Array, " K"]:
    """``-F(x, y) + bᵀx`` for every class ``y``: ``d_y + Σ_j ζ(c_j + U_{yj} + (xᵀW)_j)``."""
    pre = params.c + x @ params.W  # (H,)
    return params.d + jnp.sum(jax.nn.softplus(pre[None, :] + params.U), axis=-1)


def free_energy(
    params: ClassRBMParams, x: Float[Array, " V"], y: Int[Array, ""]
) -> Float[Array, ""]:
    """``F(x, y) = -bᵀx - d_y - Σ_j softplus(c_j + U_{yj} + xᵀW_{:,j})``."""
    pre = params.c + params.U[y] + x @ params.W
    return -(params.b @ x) - params.d[y] - jnp.sum(jax.nn.softplus(pre))


def class_log_probs(params: ClassRBMParams, x: Float[Array, " V"]) -> Float[Array, " K"]:
    """Exact ``log p(y | x)`` for every class (Larochelle & Bengio 2008, eq. 2): a log-softmax
    over classes of ``-F(x, y)`` (the ``bᵀx`` term cancels)."""
    return jax.nn.log_softmax(_class_scores(params, x))


def predict(params: ClassRBMParams, x: Float[Array, "N V"]) -> Int[Array, " N"]:
    """The most probable class ``argmax_y p(y | x)`` of each row."""
    return jnp.argmax(jax.vmap(_class_scores, (None, 0))(params, x), axis=-1)


def discriminative_loss(
    params: ClassRBMParams, x: Float[Array, "B V"], y: Int[Array, " B"]
) -> Float[Array, ""]:
    """Mean ``-log p(y | x)`` over a batch (the discriminative objective, exact)."""
    logp = jax.vmap(class_log_probs, (None, 0))(params, x)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def error_and_nll(
    params: ClassRBMParams, x: Float[Array, "B V"], y: Int[Array, " B"]
) -> Float[Array, " 2"]:
    """``[error rate, mean -log p(y|x)]`` of a labelled batch (an example counts as an error
    when another class is strictly more probable; ties are correct)."""
    logp = jax.vmap(class_log_probs, (None, 0))(params, x)
    logp_y = jnp.take_along_axis(logp, y[:, None], axis=1)[:, 0]
    err = jnp.mean((logp_y < jnp.max(logp, axis=-1)).astype(jnp.float32))
    return jnp.stack([err, -jnp.mean(logp_y)])


def hidden_probs(
    params: ClassRBMParams, x: Float[Array, " V"], y: Int[Array, ""]
) -> Float[Array, " H"]:
    """``P(h_j = 1 | x, y) = σ(c_j + U_{yj} + xᵀW_{:,j})``."""
    return jax.nn.sigmoid(params.c + params.U[y] + x @ params.W)


def gibbs_step(
    key: PRNGKeyArray, params: ClassRBMParams, x: Float[Array, " V"], y: Int[Array, ""]
) -> tuple[Float[Array, " V"], Int[Array, ""], Float[Array, " H"]]:
    """One block Gibbs sweep of the joint: ``h ~ p(h | x, y)``, then ``x ~ p(x | h)``
    (``σ(b + W h)``) and ``y ~ p(y | h)`` (``softmax(d + U h)``) together (they are independent
    given ``h``).  Returns the new ``(x, y)`` and the ``h`` that produced them."""
    k_h, k_x, k_y = jax.random.split(key, 3)
    h = bernoulli_logits(k_h, params.c + params.U[y] + x @ params.W)
    x_new = bernoulli_logits(k_x, params.b + params.W @ h)
    y_new = _categorical(k_y, params.d + params.U @ h)
    return x_new, y_new, h


def _categorical(key: PRNGKeyArray, logits: Float[Array, "*b K"]) -> Int[Array, "*b"]:
    """One draw from ``softmax(logits)`` per row by inverting the CDF (one uniform per row;
    compiles several times faster on XLA:CPU than the Gumbel arg-max of
    ``jax.random.categorical``)."""
    u = jax.random.uniform(key, logits.shape[:-1] + (1,), logits.dtype)
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
    return jnp.minimum(jnp.sum(cdf < u, axis=-1), logits.shape[-1] - 1).astype(jnp.int32)


def generative_surrogate(
    params: ClassRBMParams,
    x: Float[Array, "B V"],
    y: Int[Array, " B"],
    x_neg: Float[Array, "M V"],
    y_neg: Int[Array, " M"],
    neg_weights: Float[Array, " M"] | None = None,
) -> Float[Array, ""]:
    """``mean_data F(x, y) − Σ_m w_m F(x⁻_m, y⁻_m)`` with the negatives held constant: its
    gradient is the positive-minus-negative-phase estimate of ``∇ mean(-log p(x, y))``
    (``w`` uniform by default; pass exact model probabilities of enumerated states to get
    the exact gradient)."""
    fe = jax.vmap(free_energy, (None, 0, 0))
    x_neg, y_neg = jax.lax.stop_gradient(x_neg), jax.lax.stop_gradient(y_neg)
    neg = fe(params, x_neg, y_neg)
    neg = jnp.mean(neg) if neg_weights is None else jnp.sum(neg_weights * neg)
    return jnp.mean(fe(params, x, y)) - neg


def cd_negatives(
    key: PRNGKeyArray, params: ClassRBMParams, x: Float[Array, "B V"], y: Int[Array, " B"], k: int
) -> tuple[Float[Array, "B V"], Int[Array, " B"]]:
    """CD-k negatives of the joint: ``k`` block Gibbs sweeps (:func:`gibbs_step`, written for
    the whole batch as matrix products: one draw of each kind per sweep) started at each data
    pair ``(x, y)`` (Hinton 2002)."""

    def body(carry, key):
        xs, ys = carry
        k_h, k_x, k_y = jax.random.split(key, 3)
        h = bernoulli_logits(k_h, params.c + params.U[ys] + xs @ params.W)
        xs = bernoulli_logits(k_x, params.b + h @ params.W.T)
        ys = _categorical(k_y, params.d + h @ params.U.T)
        return (xs, ys), None

    (xs, ys), _ = jax.lax.scan(body, (x, y.astype(jnp.int32)), jax.random.split(key, k))
    return xs, ys


def hybrid_loss(
    key: PRNGKeyArray,
    params: ClassRBMParams,
    x: Float[Array, "B V"],
    y: Int[Array, " B"],
    alpha: Float[Array, ""] | float,
    *,
    k: int = 1,
    discriminative: bool = True,
    generative: bool = True,
) -> tuple[Float[Array, ""], dict]:
    """A surrogate whose gradient is the (hybrid) training direction of Larochelle & Bengio:
    ``[-mean log p(y|x)] + α · [CD-k surrogate of -mean log p(x, y)]`` (either term switched off
    by ``discriminative`` / ``generative``, static).  Metrics: ``nll`` (the exact mean
    ``-log p(y|x)``, before the update) and ``train_error``."""
    logp = jax.vmap(class_log_probs, (None, 0))(params, x)
    logp_y = jnp.take_along_axis(logp, y[:, None], axis=1)[:, 0]
    nll = -jnp.mean(logp_y)
    loss = nll if discriminative else 0.0
    if generative:
        x_neg, y_neg = cd_negatives(key, jax.lax.stop_gradient(params), x, y, k)
        loss = loss + alpha * generative_surrogate(params, x, y, x_neg, y_neg)
    err = jnp.mean((logp_y < jnp.max(logp, axis=-1)).astype(jnp.float32))  # ties: correct
    return loss, {"nll": nll, "train_error": err}


def log_partition(params: ClassRBMParams) -> Float[Array, ""]:
    """Exact ``log Z = log Σ_{x, y} e^{-F(x, y)}`` by enumerating ``2^V K`` visible states
    (tiny models only; differentiable)."""
    from egm.estimators.exact import all_binary_states

    xs = all_binary_states(params.W.shape[0])
    per_class = jax.vmap(lambda x: _class_scores(params, x) + params.b @ x)(xs)  # (2^V, K)
    return jax.nn.logsumexp(per_class.reshape(-1))


def check_labels(y, n_classes: int, name: str = "labels") -> np.ndarray:
    """``y`` as an int32 array of class indices, or :class:`DataError` when it is not 1-D
    integer with every value in ``0 .. n_classes-1`` (host-side)."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{name} must be a 1-D integer array of class indices, got shape {y.shape} dtype "
            f"{y.dtype}; pass integer classes, not one-hot vectors"
        )
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)][0]
        raise DataError(
            f"{name} hold {int(bad)}, out of range for a model of {n_classes} classes (labels "
            f"must lie in 0..{n_classes - 1}); build the model with n_classes={int(y.max()) + 1} "
            f"or fix the labels"
        )
    return y.astype(np.int32)


def check_data(xy, n_visible: int, n_classes: int, name: str = "training") -> None:
    """Host-side check of a labelled set ``(x, y)``: ``x`` is ``(N, n_visible)`` with values in
    [0, 1] (grey levels or binary pixels) and ``y`` passes :func:`check_labels`; else
    :class:`DataError`."""
    from egm.data.validate import check_shape, check_unit_interval

    check_shape(xy[0], n_visible, f"{name} images")
    check_unit_interval(xy[0], f"{name} images")
    check_labels(xy[1], n_classes, f"{name} labels")


@jax.jit
def _error_and_nll_sums(params: ClassRBMParams, x: Array, y: Array) -> Array:
    return error_and_nll(params, x, y) * y.shape[0]


def scores(
    params: ClassRBMParams,
    x: Float[ArrayLike, "N V"],
    y: Int[ArrayLike, " N"],
    batch_size: int = 1000,
) -> tuple[float, float]:
    """``(error rate, mean -log p(y|x))`` of a whole labelled set (:func:`error_and_nll`,
    exact), host-side in batches of ``batch_size`` (the last may be smaller)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    x, y = np.asarray(x), check_labels(y, params.U.shape[0])
    if len(x) != len(y) or not len(y):
        raise DataError(f"need as many labels as images (>= 1), got {len(y)} and {len(x)}")
    total = sum(
        np.asarray(
            _error_and_nll_sums(params, x[i : i + batch_size], y[i : i + batch_size]), np.float64
        )
        for i in range(0, len(y), batch_size)
    )
    return float(total[0]) / len(y), float(total[1]) / len(y)
