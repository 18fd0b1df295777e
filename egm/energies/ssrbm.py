r"""Spike-and-slab RBM (µ-ssRBM of Courville, Bergstra & Bengio 2011; §20.5.2).

Each hidden unit ``i`` has a binary spike ``h_i ∈ {0,1}`` and a real slab ``s_i ∈ ℝ``; the
visible vector is ``v ∈ ℝ^D``.  With filters ``W`` (D, N) (column ``W_i``), diagonal
visible precision ``Λ`` (D,), per-unit diagonal precisions ``Φ_i`` (rows of ``Φ``, (N, D)),
slab precisions ``α`` (N,), slab means ``μ`` (N,) and spike biases ``b`` (N,):

.. math::

    E(v, s, h) = -\sum_i v^\top W_i s_i h_i + \tfrac12 v^\top\Big(Λ + \sum_i Φ_i h_i\Big) v
                 + \tfrac12 \sum_i α_i s_i^2 - \sum_i α_i μ_i s_i h_i - \sum_i b_i h_i
                 + \sum_i \tfrac12 α_i μ_i^2 h_i .

**The ½ in the last term.**  The book (§20.5.2) prints ``α_i μ_i² h_i``; we use
``½ α_i μ_i² h_i`` (Courville et al.'s form, as far as we can tell from their published
spike conditional, which has no ``μ²`` term).  With the ½ (and ``h_i² = h_i``) the slab
terms are the perfect square ``½ α_i (s_i - μ_i h_i)²``: the slab prior given the spike is
``N(μ_i h_i, 1/α_i)``, the ``μ²`` terms cancel from ``P(h | v)`` and from ``F(v)``.
Without the ½ the model is the same family with ``b_i`` replaced by ``b_i - ½ α_i μ_i²``
(tested: running the sampler with that shift is rejected by the exact moments).

**Positivity.**  ``α = exp(log_alpha)``, ``Λ = exp(log_lambda)``, ``Φ = exp(log_phi)``: a
log parameterisation for all three (multiplicative updates, positive under any gradient
step; ``Φ`` reaches 0 only in the limit, which costs nothing in practice).

**Conditionals** (with ``u_i = vᵀW_i``):

- ``P(h_i = 1 | v) = σ(b_i + u_i² / (2α_i) + μ_i u_i - ½ vᵀΦ_i v)`` (``s`` integrated out);
- ``p(s_i | v, h) = N(h_i (μ_i + u_i / α_i), 1/α_i)``;
- ``p(v | s, h) = N(C Σ_i W_i s_i h_i, C)`` with ``C = (Λ + Σ_i Φ_i h_i)^{-1}`` (diagonal).

**Free energy** (``s`` integrated, ``h`` summed; every ``h_i`` contributes a factor
``sqrt(2π/α_i)`` from its slab, whatever its value):

.. math:: F(v) = \tfrac12 v^\top Λ v - \sum_i \zeta\big(\mathrm{pre}_i(v)\big)
                 - \tfrac12 \sum_i \log(2π/α_i).

**Properness.**  For a fixed ``h`` the energy is a quadratic form in ``x = (v, s)`` with
precision ``A_h = [[Λ + Σ_i Φ_i h_i, -W diag(h)], [-diag(h) Wᵀ, diag(α)]]``
(:func:`joint_precision`); the model is normalisable iff ``A_h ≻ 0`` for every ``h``, i.e.
(Schur complement, ``α > 0``) iff ``Q_h = Λ + Σ_{i: h_i=1} M_i ≻ 0`` with
``M_i = Φ_i - W_i W_iᵀ / α_i`` (:func:`visible_marginal_precision`).  Each ``M_i`` is a
diagonal matrix minus a rank-one term, so it is bounded below by a multiple of that term:
``M_i + t W_i W_iᵀ = Φ_i - (1/α_i - t) W_i W_iᵀ ⪰ 0`` iff ``(1/α_i - t) ρ_i ≤ 1`` where
``ρ_i = Σ_d W_di² / Φ_id`` (matrix determinant lemma), so with the **excess**

.. math:: t_i = \max\big(0,\; 1/α_i - 1/ρ_i\big), \qquad M_i \succeq -t_i W_i W_i^\top,

and for every ``h``: ``Q_h ⪰ Λ - Σ_{i: h_i=1} t_i W_i W_iᵀ ⪰ Λ - Σ_i t_i W_i W_iᵀ``.  Hence
the **sufficient condition**

.. math:: β := λ_{\max}\Big(Λ^{-1/2} \big(\textstyle\sum_i t_i W_i W_i^\top\big) Λ^{-1/2}\Big) < 1

(one D × D eigenvalue; :func:`properness_bound` in float32 inside a jitted step,
:func:`check_proper` in float64 on the host).  It is exact when ``Φ = 0`` (then
``t_i = 1/α_i`` and it reads ``Q_{h=1} ≻ 0``, which is also necessary) and never asks a
unit whose ``Φ_i`` pays for its filter (``ρ_i ≤ α_i``) for anything.  :func:`check_proper`
raises when ``β ≥ 1``; :func:`project` restores ``β ≤ 1/(1 + margin)`` after every update
(for :func:`egm.train.make_fe_step`'s ``project=``).  A per-unit condition such as
``Σ_d W_di²/(Φ_id + Λ_d/N) < α_i`` (give every unit ``1/N`` of ``Λ``) is also sufficient
but far stronger: it lets no single active unit raise the variance along its filter by
more than a factor ``≈ 1 + 1/N``, and in PCD training on 8×8 patches (N = 256) it drove
all filters onto one direction.

Chain state :class:`SSRBMState` ``(v, s, h)``; :data:`BLOCKS` = ``(h | v, s | v, h, v | s, h)``.
The first two together draw ``(h, s)`` jointly from ``p(h, s | v)`` (``h`` from its
``s``-marginal, then ``s`` given ``h``), so one sweep is a valid two-block Gibbs sweep over
``(h, s)`` and ``v``; the ``h | v`` block alone (ignoring the current ``s``) must always be
followed by the ``s`` block.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from egm.energies.rbm import bernoulli_logits
from egm.errors import ConfigError

#: Default safety margin of :func:`project`: it makes :func:`properness_bound` ``≤ 1/(1 + margin)``.
DEFAULT_MARGIN = 0.05


class SSRBMParams(NamedTuple):
    """``W`` (D, N), spike biases ``b`` (N,), slab means ``mu`` (N,), ``log_alpha`` (N,),
    ``log_lambda`` (D,), ``log_phi`` (N, D) (row ``i`` is the diagonal of ``Φ_i``)."""

    W: Float[Array, "D N"]
    b: Float[Array, " N"]
    mu: Float[Array, " N"]
    log_alpha: Float[Array, " N"]
    log_lambda: Float[Array, " D"]
    log_phi: Float[Array, "N D"]


class SSRBMState(NamedTuple):
    """One chain of the block Gibbs sampler: visible ``v`` (D,), slabs ``s`` (N,), spikes ``h`` (N,)."""

    v: Float[Array, " D"]
    s: Float[Array, " N"]
    h: Float[Array, " N"]


def init(
    key: PRNGKeyArray,
    n_visible: int,
    n_hidden: int,
    *,
    w_scale: float = 0.01,
    b: float = 0.0,
    mu: float = 0.0,
    alpha: float = 1.0,
    phi: float = 1e-2,
    data_var: Float[Array, " D"] | None = None,
    margin: float = DEFAULT_MARGIN,
) -> SSRBMParams:
    """Initial parameters: ``W ~ N(0, w_scale²)``, ``b``, ``μ``, ``α``, ``Φ`` constant, and
    ``Λ = 1 / data_var`` (the visible precision of ``p(v | h = 0)`` matches the data; 1 if
    not given).  The result is made proper by :func:`project` (``α`` raised if needed), so
    :func:`check_proper` holds from the first step."""
    if n_visible <= 0 or n_hidden <= 0:
        raise ConfigError(f"need n_visible, n_hidden >= 1, got {n_visible}, {n_hidden}")
    for name, val in (("w_scale", w_scale), ("alpha", alpha), ("phi", phi)):
        if not val > 0:
            raise ConfigError(f"{name} must be > 0, got {val}")
    if data_var is None:
        data_var = jnp.ones(n_visible)
    data_var = jnp.asarray(data_var, jnp.float32)
    if data_var.shape != (n_visible,):
        raise ConfigError(f"data_var must have shape ({n_visible},), got {data_var.shape}")
    params = _init_arrays(key, n_hidden, w_scale, b, mu, alpha, phi, data_var)
    return project(params, margin=margin)


@functools.partial(jax.jit, static_argnums=1)
def _init_arrays(key, n_hidden, w_scale, b, mu, alpha, phi, data_var) -> SSRBMParams:
    n_visible = data_var.shape[0]
    full = functools.partial(jnp.full, dtype=jnp.float32)
    return SSRBMParams(
        W=w_scale * jax.random.normal(key, (n_visible, n_hidden), jnp.float32),
        b=full((n_hidden,), b),
        mu=full((n_hidden,), mu),
        log_alpha=full((n_hidden,), jnp.log(alpha)),
        log_lambda=-jnp.log(jnp.maximum(data_var, 1e-6)),
        log_phi=full((n_hidden, n_visible), jnp.log(phi)),
    )


def energy(
    params: SSRBMParams, v: Float[Array, " D"], s: Float[Array, " N"], h: Float[Array, " N"]
) -> Float[Array, ""]:
    """``E(v, s, h)`` of the module docstring (with ``½ α_i μ_i² h_i``)."""
    alpha = jnp.exp(params.log_alpha)
    prec = jnp.exp(params.log_lambda) + h @ jnp.exp(params.log_phi)
    return (
        -(v @ params.W) @ (s * h)
        + 0.5 * jnp.sum(prec * v**2)
        + 0.5 * jnp.sum(alpha * s**2)
        - jnp.sum(alpha * params.mu * s * h)
        - params.b @ h
        + 0.5 * jnp.sum(alpha * params.mu**2 * h)
    )


def hidden_preactivation(params: SSRBMParams, v: Float[Array, " D"]) -> Float[Array, " N"]:
    """``pre_i(v) = b_i + u_i²/(2α_i) + μ_i u_i - ½ vᵀΦ_i v`` with ``u = Wᵀv``: the logit of
    ``P(h_i = 1 | v)``."""
    u = v @ params.W
    alpha = jnp.exp(params.log_alpha)
    return params.b + 0.5 * u**2 / alpha + params.mu * u - 0.5 * jnp.exp(params.log_phi) @ v**2


def hidden_probs(params: SSRBMParams, v: Float[Array, " D"]) -> Float[Array, " N"]:
    """``P(h_i = 1 | v)``."""
    return jax.nn.sigmoid(hidden_preactivation(params, v))


def free_energy(params: SSRBMParams, v: Float[Array, " D"]) -> Float[Array, ""]:
    """``F(v) = ½ vᵀΛv - Σ_i softplus(pre_i(v)) - ½ Σ_i log(2π/α_i)`` (``p(v) = e^{-F}/Z``)."""
    lam = jnp.exp(params.log_lambda)
    const = 0.5 * jnp.sum(jnp.log(2 * jnp.pi) - params.log_alpha)
    return (
        0.5 * jnp.sum(lam * v**2)
        - jnp.sum(jax.nn.softplus(hidden_preactivation(params, v)))
        - const
    )


def log_density(params: SSRBMParams, v: Float[Array, " D"]) -> Float[Array, ""]:
    """Unnormalised ``log p(v) = -F(v)`` (for gradient samplers and denoising)."""
    return -free_energy(params, v)


def free_energy_vh(
    params: SSRBMParams, v: Float[Array, " D"], h: Float[Array, " N"]
) -> Float[Array, ""]:
    """``-log ∫ exp(-E(v, s, h)) ds = ½ vᵀ(Λ + Σ_i Φ_i h_i)v - Σ_i h_i (u_i²/(2α_i) + μ_i u_i)
    - bᵀh - ½ Σ_i log(2π/α_i)``: the energy of ``(v, h)`` with the slabs integrated out."""
    u = v @ params.W
    alpha = jnp.exp(params.log_alpha)
    prec = jnp.exp(params.log_lambda) + h @ jnp.exp(params.log_phi)
    const = 0.5 * jnp.sum(jnp.log(2 * jnp.pi) - params.log_alpha)
    return (
        0.5 * jnp.sum(prec * v**2) - h @ (0.5 * u**2 / alpha + params.mu * u) - params.b @ h - const
    )


def visible_marginal_precision(params: SSRBMParams, h: Float[Array, " N"]) -> Float[Array, "D D"]:
    """``Q_h = Λ + Σ_i h_i (Φ_i - W_i W_iᵀ / α_i)``: the precision of ``p(v | h)`` (slabs
    integrated out); ``p(v | h) = N(Q_h⁻¹ W (h ⊙ μ), Q_h⁻¹)`` when it is positive definite."""
    alpha = jnp.exp(params.log_alpha)
    diag = jnp.exp(params.log_lambda) + h @ jnp.exp(params.log_phi)
    return jnp.diag(diag) - (params.W * (h / alpha)) @ params.W.T


def free_energy_hidden(params: SSRBMParams, h: Float[Array, " N"]) -> Float[Array, ""]:
    """``F_h(h) = -log ∫∫ exp(-E(v, s, h)) dv ds``: a Gaussian integral over ``v`` of
    :func:`free_energy_vh`, ``-bᵀh - ½ Σ_i log(2π/α_i) - ½ mᵀQ_h⁻¹m - (D/2) log 2π +
    ½ log det Q_h`` with ``m = W (h ⊙ μ)``.  Summing ``exp(-F_h)`` over ``h`` gives ``Z``
    (exact log partition function for small hidden layers).  Needs ``Q_h ≻ 0``."""
    Q = visible_marginal_precision(params, h)
    m = params.W @ (h * params.mu)
    chol = jnp.linalg.cholesky(Q)
    y = jax.scipy.linalg.solve_triangular(chol, m, lower=True)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
    D = params.W.shape[0]
    const = 0.5 * jnp.sum(jnp.log(2 * jnp.pi) - params.log_alpha)
    return -(params.b @ h) - const - 0.5 * (y @ y) - 0.5 * D * jnp.log(2 * jnp.pi) + 0.5 * logdet


def joint_precision(params: SSRBMParams, h: Float[Array, " N"]) -> Float[Array, "M M"]:
    """The precision ``A_h`` ((D+N) × (D+N)) of ``p(v, s | h)``: the Hessian of ``E`` in
    ``(v, s)`` (see the module docstring; the model is proper iff ``A_h ≻ 0`` for all ``h``)."""
    alpha = jnp.exp(params.log_alpha)
    prec = jnp.exp(params.log_lambda) + h @ jnp.exp(params.log_phi)
    off = -params.W * h
    top = jnp.concatenate([jnp.diag(prec), off], axis=1)
    bottom = jnp.concatenate([off.T, jnp.diag(alpha)], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


def slab_mean(
    params: SSRBMParams, v: Float[Array, " D"], h: Float[Array, " N"]
) -> Float[Array, " N"]:
    """``E[s_i | v, h] = h_i (μ_i + vᵀW_i / α_i)``."""
    return h * (params.mu + (v @ params.W) * jnp.exp(-params.log_alpha))


def visible_precision(params: SSRBMParams, h: Float[Array, " N"]) -> Float[Array, " D"]:
    """``C⁻¹ = Λ + Σ_i Φ_i h_i`` (the diagonal precision of ``p(v | s, h)``)."""
    return jnp.exp(params.log_lambda) + h @ jnp.exp(params.log_phi)


def visible_mean(
    params: SSRBMParams, s: Float[Array, " N"], h: Float[Array, " N"]
) -> Float[Array, " D"]:
    """``E[v | s, h] = C Σ_i W_i s_i h_i``."""
    return (params.W @ (s * h)) / visible_precision(params, h)


def sample_hidden(
    key: PRNGKeyArray, params: SSRBMParams, v: Float[Array, " D"]
) -> Float[Array, " N"]:
    """Draw ``h ~ P(h | v)`` (slabs integrated out)."""
    return bernoulli_logits(key, hidden_preactivation(params, v))


def sample_slab(
    key: PRNGKeyArray, params: SSRBMParams, v: Float[Array, " D"], h: Float[Array, " N"]
) -> Float[Array, " N"]:
    """Draw ``s ~ N(h ⊙ (μ + Wᵀv/α), diag(1/α))``."""
    noise = jax.random.normal(key, params.mu.shape, params.mu.dtype)
    return slab_mean(params, v, h) + jnp.exp(-0.5 * params.log_alpha) * noise


def sample_visible(
    key: PRNGKeyArray, params: SSRBMParams, s: Float[Array, " N"], h: Float[Array, " N"]
) -> Float[Array, " D"]:
    """Draw ``v ~ N(C W (s ⊙ h), C)``."""
    prec = visible_precision(params, h)
    noise = jax.random.normal(key, prec.shape, prec.dtype)
    return (params.W @ (s * h)) / prec + noise * jax.lax.rsqrt(prec)


def _update_hidden(key, params: SSRBMParams, state: SSRBMState) -> SSRBMState:
    return state._replace(h=sample_hidden(key, params, state.v))


def _update_slab(key, params: SSRBMParams, state: SSRBMState) -> SSRBMState:
    return state._replace(s=sample_slab(key, params, state.v, state.h))


def _update_visible(key, params: SSRBMParams, state: SSRBMState) -> SSRBMState:
    return state._replace(v=sample_visible(key, params, state.s, state.h))


#: Block updates in sweep order ``h | v``, ``s | v, h``, ``v | s, h`` for
#: :func:`egm.samplers.block_gibbs` / :func:`egm.samplers.gibbs_chain`.
BLOCKS = (_update_hidden, _update_slab, _update_visible)


@jax.jit
def sample_state(key: PRNGKeyArray, params: SSRBMParams, v: Float[Array, " D"]) -> SSRBMState:
    """A chain state at ``v`` with ``(h, s) ~ p(h, s | v)`` (``from_visible`` of a
    :class:`egm.samplers.chains.ChainSpec`)."""
    v = jnp.asarray(v, jnp.float32)
    k_h, k_s = jax.random.split(key)
    h = sample_hidden(k_h, params, v)
    return SSRBMState(v=v, s=sample_slab(k_s, params, v, h), h=h)


# ----------------------------------------------------------------------------- properness


def excess(params: SSRBMParams) -> Float[Array, " N"]:
    """``t_i = max(0, 1/α_i - 1/ρ_i)``, ``ρ_i = Σ_d W_di²/Φ_id``: the smallest ``t ≥ 0`` with
    ``Φ_i - W_i W_iᵀ/α_i ⪰ -t W_i W_iᵀ`` (0 when ``Φ_i`` alone keeps unit ``i`` proper)."""
    rho = jnp.sum(params.W.T**2 * jnp.exp(-params.log_phi), axis=1)
    return jnp.maximum(0.0, jnp.exp(-params.log_alpha) - 1.0 / jnp.maximum(rho, 1e-30))


def _bound_and_direction(params: SSRBMParams):
    B = params.W * jnp.sqrt(excess(params)) * jnp.exp(-0.5 * params.log_lambda)[:, None]
    vals, vecs = jnp.linalg.eigh(B @ B.T)
    return vals[-1], vecs[:, -1], B


@jax.jit
def properness_bound(params: SSRBMParams) -> Float[Array, ""]:
    """``β = λ_max(Λ^{-1/2} (Σ_i t_i W_i W_iᵀ) Λ^{-1/2})`` with ``t`` = :func:`excess`:
    ``β < 1`` is a sufficient condition for a proper (normalisable) model (module doc)."""
    return _bound_and_direction(params)[0]


def check_proper(params: SSRBMParams) -> None:
    """Raise :class:`ConfigError` unless :func:`properness_bound` ``< 1``; the message names
    the units that contribute most along the offending direction and how to fix them.
    Host-side (not jittable); inside a train step use :func:`project`."""
    leaves = [np.asarray(x) for x in params]
    bad = [n for n, x in zip(SSRBMParams._fields, leaves, strict=True) if not np.isfinite(x).all()]
    if bad:
        raise ConfigError(f"ssRBM parameters {bad} contain NaN/inf; lower the learning rate")
    # float64 on the host: t_i = 1/α_i - 1/ρ_i cancels when ρ_i ≈ α_i, and float32 noise
    # in t times a large |W_i|² can move β by O(1) (see project)
    W, log_alpha, log_lambda, log_phi = (
        np.asarray(x, np.float64)
        for x in (params.W, params.log_alpha, params.log_lambda, params.log_phi)
    )
    rho = np.sum(W.T**2 * np.exp(-log_phi), axis=1)
    with np.errstate(divide="ignore"):
        t = np.maximum(0.0, np.exp(-log_alpha) - 1.0 / rho)
    B = W * np.sqrt(t) * np.exp(-0.5 * log_lambda)[:, None]
    vals, vecs = np.linalg.eigh(B @ B.T)
    beta, u = vals[-1], vecs[:, -1]
    if beta < 1.0:
        return
    share = (u @ B) ** 2  # unit i's part of uᵀ(B Bᵀ)u = β
    top = np.argsort(-share)[:10]
    shown = ", ".join(f"{i} ({share[i] / beta:.0%})" for i in top if share[i] > 0)
    raise ConfigError(
        f"spike-and-slab RBM may be improper (Z = ∞): the sufficient condition "
        f"λ_max(Λ^(-1/2) Σ_i t_i W_i W_iᵀ Λ^(-1/2)) < 1 fails (it is {beta:.4g}); hidden units "
        f"contributing most: {shown}. Raise their α with egm.energies.ssrbm.project(params), "
        "shrink those filters W_i or raise Λ, or pass project=ssrbm.project to "
        "egm.train.make_fe_step"
    )


def project(params: SSRBMParams, *, margin: float = DEFAULT_MARGIN) -> SSRBMParams:
    """Parameters with :func:`properness_bound` ``β ≤ 1/(1 + margin)``, changed only if needed.

    When ``β > 1/(1 + margin)`` every unit's excess ``t_i`` is scaled by the same factor
    ``κ = 1 / ((1 + margin) β)``, so the bound lands exactly on ``1/(1 + margin)``, by
    raising its slab precision: ``1/α_i ← 1/ρ_i + κ t_i`` (units with ``t_i = 0`` are
    untouched; nothing else changes).  Raising ``Φ_i`` instead (``Φ_i ← γ_i Φ_i``) restores
    the bound as well, but in PCD training it let ``Φ`` and ``W`` grow together until ``ρ_i ≈
    α_i`` to float32 precision, where ``t_i`` is rounding noise times a huge ``|W_i|²`` and
    the projected model was improper (β = 1.05 in float64, BUILD_NOTES.md); so α it is.

    Pure and jittable: pass ``project=functools.partial(ssrbm.project, margin=...)`` (or
    ``ssrbm.project``) to :func:`egm.train.make_fe_step`.
    """
    if not margin > 0:
        raise ConfigError(
            f"margin must be > 0 (with 0 the bound may sit on 1, where the model may be "
            f"improper), got {margin}"
        )
    return _project(params, float(margin))


@functools.partial(jax.jit, static_argnums=1)
def _project(params: SSRBMParams, margin: float) -> SSRBMParams:
    t = excess(params)
    beta = _bound_and_direction(params)[0]
    target = 1.0 / (1.0 + margin)
    # β of a projected model lands on the target only to float32 rounding (a few ulps above
    # on some CPUs): a relative slack of 1e-5 keeps the projection idempotent while β stays
    # far below 1 (margin > 0).
    kappa = jnp.where(beta > target * (1 + 1e-5), target / jnp.maximum(beta, 1e-30), 1.0)
    change = (t > 0) & (kappa < 1.0)
    rho = jnp.sum(params.W.T**2 * jnp.exp(-params.log_phi), axis=1)
    new = -jnp.log(1.0 / jnp.maximum(rho, 1e-30) + kappa * t)
    return params._replace(log_alpha=jnp.where(change, new, params.log_alpha))
