"""Tolerances for stochastic tests, each derived here once (DESIGN.md §5).

Histogram vs exact distribution.  For M independent draws from p over S states,
E[TV(p̂, p)] ≤ ½ Σ_s sqrt(p_s (1 - p_s) / M) (Jensen on each |p̂_s - p_s|), and TV is a
function of the M draws with bounded differences 1/M, so McDiarmid gives
P(TV ≥ E[TV] + t) ≤ exp(-2 M t²).  With t = sqrt(log(1/δ) / (2M)) the test fails by
chance with probability at most δ.  MCMC chains run for T sweeps from a start
distribution q add at most the exact TV(q Kᵀ, p), computed from the transition
matrix K of the tiny model (:func:`rbm_gibbs_tv_after`), so the total bound is rigorous.

Monte-Carlo means.  For an average of M independent terms with sample standard
deviation sd, |mean - truth| / (sd / sqrt(M)) is ~N(0,1) by the CLT; with z = 5 and
q coordinates a chance failure has probability ≈ q · 5.7e-7.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from egm.energies import rbm
from egm.estimators import exact

DELTA = 1e-6
Z = 5.0


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def tv_tolerance(p: np.ndarray, m: int, delta: float = DELTA) -> float:
    """E[TV] bound plus the McDiarmid deviation (see module docstring)."""
    p = np.asarray(p, np.float64)
    mean_bound = 0.5 * np.sum(np.sqrt(p * (1 - p) / m))
    return float(mean_bound + np.sqrt(np.log(1 / delta) / (2 * m)))


def histogram(indices: np.ndarray, n_states: int) -> np.ndarray:
    return np.bincount(np.asarray(indices), minlength=n_states) / len(indices)


def rbm_visible_transition(params) -> np.ndarray:
    """Exact transition matrix K[v, v'] = Σ_h P(h|v) P(v'|h) of one block Gibbs sweep."""
    V, H = params.W.shape
    vs, hs = exact.all_binary_states(V), exact.all_binary_states(H)

    def cond(logits, states):  # P(states | logits) for every row of logits
        return jnp.exp(
            states @ jax.nn.log_sigmoid(logits).T + (1 - states) @ jax.nn.log_sigmoid(-logits).T
        )

    ph_v = cond(jax.vmap(rbm.hidden_preactivation, (None, 0))(params, vs), hs).T  # [v, h]
    pv_h = cond(jax.vmap(rbm.visible_preactivation, (None, 0))(params, hs), vs).T  # [h, v']
    return np.asarray(ph_v @ pv_h, np.float64)


def rbm_gibbs_tv_after(params, start: np.ndarray, n_sweeps: int) -> float:
    """Exact TV between the visible marginal after ``n_sweeps`` sweeps from ``start`` and p(v)."""
    K = rbm_visible_transition(params)
    q = np.asarray(start, np.float64) @ np.linalg.matrix_power(K, n_sweeps)
    return tv(q, np.asarray(exact.rbm_visible_distribution(params), np.float64))


def clt_z(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|mean - truth| / (sd / sqrt(M)) per coordinate, samples along axis 0."""
    samples = np.asarray(samples, np.float64)
    m = samples.shape[0]
    sd = samples.std(axis=0, ddof=1)
    return np.abs(samples.mean(0) - np.asarray(truth)) / np.maximum(sd / np.sqrt(m), 1e-12)


def random_rbm(seed: int, n_visible: int, n_hidden: int, scale: float):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return rbm.RBMParams(
        W=scale * jax.random.normal(k1, (n_visible, n_hidden)),
        b=0.5 * scale * jax.random.normal(k2, (n_visible,)),
        c=0.5 * scale * jax.random.normal(k3, (n_hidden,)),
    )


def bm_sweep_matrix(params, update_units, clamp: np.ndarray | None = None) -> np.ndarray:
    """Exact transition matrix of one systematic-scan Gibbs sweep of a general BM.

    Over the states of the units in ``update_units`` (in all_binary_states order of those
    units), the remaining units fixed to ``clamp`` (values for the units not updated, in
    order).  Used to bound the mixing bias of BM samplers exactly.  The conditionals are
    the definition, ``P(x_i = 1 | x_{-i}) = σ(a_i + Σ_j U_ij x_j)``, in float64 numpy (not
    the library's ``unit_logit``: an independent reference, and no per-entry dispatch of
    eager JAX ops, which took 7 s for a 7-unit BM).
    """
    U, a = np.asarray(params.U, np.float64), np.asarray(params.a, np.float64)
    n = a.shape[0]
    upd = list(update_units)
    fixed = [i for i in range(n) if i not in upd]
    sub = np.asarray(exact.all_binary_states(len(upd)))
    S = len(sub)

    def full(s):
        x = np.zeros(n, np.float64)
        x[upd] = s
        if fixed:
            x[fixed] = clamp
        return x

    def index(x):
        return int(sum(int(b) << (len(upd) - 1 - k) for k, b in enumerate(x[upd])))

    K = np.zeros((S, S))
    for s in range(S):
        dist = {index(full(sub[s])): 1.0}
        for i in upd:
            new: dict[int, float] = {}
            for t, pr_t in dist.items():
                x = full(sub[t])
                p1 = 1.0 / (1.0 + math.exp(-(a[i] + U[i] @ x)))
                for val, pr in ((1.0, p1), (0.0, 1.0 - p1)):
                    x[i] = val
                    j = index(x)
                    new[j] = new.get(j, 0.0) + pr_t * pr
            dist = new
        for j, pr in dist.items():
            K[s, j] = pr
    return K


def random_dbm(seed: int, sizes: tuple[int, ...], scale: float, bias_scale: float = 0.5):
    """A DBM with N(0, scale²) weights and N(0, bias_scale²) biases."""
    from egm.energies import dbm

    k = jax.random.split(jax.random.key(seed), 2 * len(sizes))
    weights = tuple(
        scale * jax.random.normal(k[i], (a, b))
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
    )
    biases = tuple(
        bias_scale * jax.random.normal(k[len(sizes) + i], (n,)) for i, n in enumerate(sizes)
    )
    return dbm.DBMParams(weights, biases)


def random_grbm(seed: int, V: int, H: int, scale: float = 0.8):
    """A random Gaussian–Bernoulli RBM with unit-scale means and log-precisions ~ N(0, 0.25)."""
    from egm.energies import grbm

    k = jax.random.split(jax.random.key(seed), 4)
    return grbm.GRBMParams(
        W=scale * jax.random.normal(k[0], (V, H)),
        b=jax.random.normal(k[1], (V,)),
        c=0.5 * jax.random.normal(k[2], (H,)),
        log_beta=0.5 * jax.random.normal(k[3], (V,)),
    )


def grbm_exact_draws(key, p, n: int):
    """Exact samples of a small GRBM: h ~ p(h) by enumeration, then v ~ p(v | h)."""
    from egm.energies import grbm

    k1, k2 = jax.random.split(key)
    hs = exact.all_binary_states(p.W.shape[1])
    h = hs[jax.random.categorical(k1, jnp.log(exact.grbm_hidden_distribution(p)), shape=(n,))]
    v = jax.vmap(grbm.sample_visible, in_axes=(0, None, 0))(jax.random.split(k2, n), p, h)
    return v, h
