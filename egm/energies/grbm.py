r"""Gaussian–Bernoulli RBM for real-valued data (§20.5.1).

With per-visible precision ``β_i = exp(log_beta_i) > 0`` (so it stays positive under any
gradient step), real ``v ∈ ℝ^V`` and binary ``h ∈ {0,1}^H``:

.. math:: E(v, h) = \tfrac12 \sum_i β_i (v_i - b_i)^2 - c^\top h - (β \odot v)^\top W h.

Conditionals: ``P(h_j = 1 | v) = σ(c_j + Σ_i β_i v_i W_ij)`` and
``p(v | h) = N(b + W h, diag(1/β))``.  Summing out ``h``:
``F(v) = ½ Σ β (v - b)² - Σ_j softplus(c_j + (β ⊙ v)ᵀ W_{:,j})``.  Integrating out ``v``
(Gaussian integral) gives, per hidden configuration,
``-F_h(h) = cᵀh + ½ Σ_i β_i (m_i² - b_i²) + ½ Σ_i log(2π/β_i)`` with ``m = b + W h``, so
``log Z`` is exact by enumerating ``h`` for small hidden layers
(:func:`egm.estimators.exact.grbm_log_partition`).

Two blocks, as for the binary RBM: :data:`BLOCKS` = ``(h | v, v | h)``.

Learned variances.  ``β = exp(log_beta)`` is positive for any ``log_beta``, but positive is
not enough: on real data a too large learning rate (or a pixel that is nearly constant)
drives a variance towards 0 — the density there grows without bound and the gradient
explodes — or towards infinity.  :func:`clip_precision` clips ``log_beta`` to the
variance range ``[min_var, max_var]`` after every update (pass it as ``project`` to
:func:`egm.train.make_fe_step`); a non-finite parameter still raises
:class:`egm.errors.DivergenceError` in :func:`egm.train.fit`.  The recipe that trains
stably here (``experiments/grbm_mnist.py``): data standardised per pixel after uniform
dequantisation, so no pixel has zero variance; ``log_beta`` initialised from the data;
Adam with a global-norm gradient clip; the clip of the variances as the last guard.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies.rbm import RBMState, bernoulli_logits, bipartite_blocks
from egm.errors import ConfigError


class GRBMParams(NamedTuple):
    """``W`` (V, H), visible means ``b`` (V,), hidden biases ``c`` (H,), ``log_beta`` (V,)."""

    W: Float[Array, "V H"]
    b: Float[Array, " V"]
    c: Float[Array, " H"]
    log_beta: Float[Array, " V"]


#: The chain state of a GRBM: the same ``(v, h)`` pair as the binary RBM's.
GRBMState = RBMState


def init(
    key: PRNGKeyArray,
    n_visible: int,
    n_hidden: int,
    *,
    scale: float = 0.01,
    data_mean: Float[Array, " V"] | None = None,
    data_std: Float[Array, " V"] | None = None,
) -> GRBMParams:
    """``W ~ N(0, scale²)``, ``b`` = data mean, ``β = 1/std²`` of the data (else 0 and 1)."""
    if n_visible <= 0 or n_hidden <= 0:
        raise ConfigError(f"need n_visible, n_hidden >= 1, got {n_visible}, {n_hidden}")
    W = scale * jax.random.normal(key, (n_visible, n_hidden), jnp.float32)
    b = jnp.zeros(n_visible) if data_mean is None else jnp.asarray(data_mean, jnp.float32)
    log_beta = (
        jnp.zeros(n_visible)
        if data_std is None
        else -2.0 * jnp.log(jnp.maximum(jnp.asarray(data_std, jnp.float32), 1e-3))
    )
    return GRBMParams(W=W, b=b, c=jnp.zeros(n_hidden), log_beta=log_beta)


def energy(params: GRBMParams, v: Float[Array, " V"], h: Float[Array, " H"]) -> Float[Array, ""]:
    """``E(v, h) = ½ Σ β (v - b)² - cᵀh - (β ⊙ v)ᵀ W h``."""
    beta = jnp.exp(params.log_beta)
    return 0.5 * jnp.sum(beta * (v - params.b) ** 2) - params.c @ h - (beta * v) @ params.W @ h


def hidden_preactivation(params: GRBMParams, v: Float[Array, " V"]) -> Float[Array, " H"]:
    """``c + Wᵀ(β ⊙ v)``."""
    return params.c + (jnp.exp(params.log_beta) * v) @ params.W


def free_energy(params: GRBMParams, v: Float[Array, " V"]) -> Float[Array, ""]:
    """``F(v) = ½ Σ β (v - b)² - Σ_j softplus(c_j + (β ⊙ v)ᵀ W_{:,j})``."""
    beta = jnp.exp(params.log_beta)
    quad = 0.5 * jnp.sum(beta * (v - params.b) ** 2)
    return quad - jnp.sum(jax.nn.softplus(hidden_preactivation(params, v)))


def log_density(params: GRBMParams, v: Float[Array, " V"]) -> Float[Array, ""]:
    """Unnormalised ``log p(v) = -F(v)``: a function of one state for HMC/Langevin/blackjax."""
    return -free_energy(params, v)


def free_energy_hidden(params: GRBMParams, h: Float[Array, " H"]) -> Float[Array, ""]:
    """``F_h(h) = -log ∫ exp(-E(v, h)) dv`` (Gaussian integral over ``v``)."""
    beta = jnp.exp(params.log_beta)
    m = params.b + params.W @ h
    gauss = 0.5 * jnp.sum(beta * (m**2 - params.b**2)) + 0.5 * jnp.sum(
        jnp.log(2 * jnp.pi) - params.log_beta
    )
    return -(params.c @ h) - gauss


def visible_mean(params: GRBMParams, h: Float[Array, " H"]) -> Float[Array, " V"]:
    """``E[v | h] = b + W h``."""
    return params.b + params.W @ h


def sample_hidden(
    key: PRNGKeyArray, params: GRBMParams, v: Float[Array, " V"]
) -> Float[Array, " H"]:
    return bernoulli_logits(key, hidden_preactivation(params, v))


def sample_visible(
    key: PRNGKeyArray, params: GRBMParams, h: Float[Array, " H"]
) -> Float[Array, " V"]:
    """``v ~ N(b + W h, diag(1/β))``."""
    std = jnp.exp(-0.5 * params.log_beta)
    return visible_mean(params, h) + std * jax.random.normal(key, params.b.shape, params.b.dtype)


#: Conditional block samplers (h | v, then v | h) for :func:`egm.samplers.block_gibbs`.
BLOCKS = bipartite_blocks(sample_hidden, sample_visible)


def sample_state(key: PRNGKeyArray, params: GRBMParams, v: Float[Array, " V"]) -> GRBMState:
    """A chain state at ``v`` with ``h ~ P(h | v)``."""
    v = jnp.asarray(v, jnp.float32)
    return GRBMState(v=v, h=sample_hidden(key, params, v))


def clip_precision(params: GRBMParams, min_var: float = 1e-4, max_var: float = 1e4) -> GRBMParams:
    """Clip every visible variance ``1/β_i`` into ``[min_var, max_var]`` (see the module
    docstring); use ``functools.partial(clip_precision, min_var=..., max_var=...)`` as a
    train step's ``project``.  Bounds are in the units of the (standardised) data."""
    if not 0.0 < min_var < max_var:
        raise ConfigError(f"need 0 < min_var < max_var, got {min_var}, {max_var}")
    lo, hi = -jnp.log(max_var), -jnp.log(min_var)
    return params._replace(log_beta=jnp.clip(params.log_beta, lo, hi))


def check_shapes(params: GRBMParams) -> None:
    """Raise :class:`ConfigError` if the parameter shapes are inconsistent."""
    V, H = params.W.shape
    if params.b.shape != (V,) or params.c.shape != (H,) or params.log_beta.shape != (V,):
        raise ConfigError(
            f"inconsistent GRBM parameters: W {params.W.shape}, b {params.b.shape}, "
            f"c {params.c.shape}, log_beta {params.log_beta.shape}; expected b and log_beta "
            f"({V},), c ({H},)"
        )
