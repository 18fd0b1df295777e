"""NADE: the neural autoregressive density estimator (§20.10.10; Larochelle & Murray 2011).

For an ordering ``o`` of the ``D`` units, with weights TIED across the conditionals,

    a_1 = c,    a_{d+1} = a_d + W_{o_d} x_{o_d}          (the running sum, [H])
    h_d = σ(a_d),    p(x_{o_d} = 1 | x_{o_<d}) = σ(b_{o_d} + V_{o_d} · h_d),

so all ``D`` conditionals cost O(DH) instead of O(D²H): each hidden pre-activation reuses
the previous one (the reuse principle of §20.10.9 with the parameter sharing of
§20.10.10).  ``W`` and ``V`` are ``[D, H]``, row ``i`` belonging to unit ``i`` (pixel
order), so the ordering is only an index permutation.

Real-valued data: ``output="mog"`` gives RNADE (Uria, Murray & Larochelle 2013): each
conditional is a mixture of ``K`` Gaussians whose log-weights, means and log-scales are
linear in ``h_d = σ(ρ_d a_d)``.

Implementation.  The Bernoulli logits of a batch are a ``lax.scan`` over the ``D``
positions with the running sum ``a`` ([B, H]) as carry, with a hand-written reverse pass
(``jax.custom_vjp``) that rebuilds ``a_d = a_{d+1} - W_{o_d} x_{o_d}`` backwards and
accumulates ``∂/∂a_d`` as a second running sum: the O(DH) backward pass of Larochelle &
Murray (2011), 3-4x faster on CPU than differentiating the scan (measured in
BUILD_NOTES.md) and it never materialises a [B, D, H] tensor.  The batch axis is explicit
here (not ``vmap``) because the reverse pass sums weight gradients over the batch at each
step; vmapping a custom VJP would store per-example [D, H] gradients.

Use as a pure ``(apply_fn, params)`` pair::

    model = NADE(784, 500)
    params = model.init(key, x[:1])
    logits = model.apply(params, x)                   # [B, D] (or [D] for one example)
    ll = model.apply(params, x, method=NADE.log_prob)  # exact log p(x), nats
    v = sample(key, model, params)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.models._autoregressive import bernoulli_log_prob, check_ordering

__all__ = ["NADE", "conditional_sample", "nade_logits", "sample"]

OUTPUTS = ("bernoulli", "mog")


# --------------------------------------------------------------------------------------
# Bernoulli NADE: logits of all conditionals, in ordering space, with a custom VJP.
# --------------------------------------------------------------------------------------


_BLOCK = 16  # positions per scan step of the forward pass


def _forward_scan(W, c, V, b, x):
    """Logits [B, D] for inputs ``x`` [B, D], all arrays already in ordering space.

    A ``lax.scan`` over blocks of ``_BLOCK`` positions: inside a block the pre-activations
    of every position, ``a_j = a + Σ_{i<j} x_i W_i`` ([k, B, H], a strictly lower-triangular
    contraction), go through one sigmoid and one batched product with ``V``, so each step is
    k times larger and the scan k times shorter (the same O(DH) sums per position up to a
    factor k inside a block; measured ~1.3x faster on a 2-core CPU for 784-500 at B = 200,
    BUILD_NOTES.md).  ``D`` is padded to a multiple of k with zero-weight units whose logits
    are dropped."""
    B, (D, H), k = x.shape[0], W.shape, _BLOCK
    pad = -D % k
    if pad:
        W, V = (jnp.pad(t, ((0, pad), (0, 0))) for t in (W, V))
        b, x = jnp.pad(b, (0, pad)), jnp.pad(x, ((0, 0), (0, pad)))
    n = (D + pad) // k
    tri = jnp.tril(jnp.ones((k, k), W.dtype), -1)  # tri[j, i] = 1 for i < j

    def body(a, inp):
        w, v, bb, xb = inp  # [k, H], [k, H], [k], [k, B]
        A = a[None] + jnp.einsum("ji,ib,ih->jbh", tri, xb, w)
        logit = jnp.einsum("jbh,jh->jb", jax.nn.sigmoid(A), v) + bb[:, None]
        return a + xb.T @ w, logit

    xs = (W.reshape(n, k, H), V.reshape(n, k, H), b.reshape(n, k), x.T.reshape(n, k, B))
    a_end, logits = jax.lax.scan(body, jnp.broadcast_to(c, (B, H)), xs)
    return logits.reshape(n * k, B)[:D].T, a_end


@jax.custom_vjp
def nade_logits(
    W: Float[Array, "D H"],
    c: Float[Array, "*b H"],
    V: Float[Array, "D H"],
    b: Float[Array, "*b D"],
    x: Float[Array, "B D"],
) -> Float[Array, "B D"]:
    """``l[:, d] = b_d + V_d · σ(c + Σ_{k<d} W_k x_{:, k})`` for every ``d`` (identity
    ordering; permute the inputs for another).  O(BDH) time, O(BH) memory.

    The biases are shared (``c [H]``, ``b [D]``) or one per example (``c [B, H]``, ``b [B, D]``:
    a *conditional* NADE whose biases another network computes, e.g. the RNN-NADE's
    ``b_h^t, b_v^t`` or a DAE's ``P(x | x̃)``); the custom VJP returns gradients of the same
    shapes."""
    return _nade_fwd(W, c, V, b, x)[0]


def _nade_fwd(W, c, V, b, x):
    per_example_b = b.ndim == 2
    logits, a_end = _forward_scan(
        W, c, V, jnp.zeros(W.shape[0], W.dtype) if per_example_b else b, x
    )
    if per_example_b:
        logits = logits + b
    return logits, (W, V, x, a_end, c, b)  # c, b: only their ranks are read back


def _nade_bwd(res, g):
    W, V, x, a_end, c, b = res
    B, H = a_end.shape
    per_example_c, per_example_b = c.ndim == 2, b.ndim == 2

    def body(carry, inp):
        a_next, delta_next = carry  # a_{d+1} and ∂L/∂a_{d+1}
        w_d, v_d, x_d, g_d = inp
        dW_d = x_d @ delta_next  # [H]: a_{d+1} = a_d + x_d w_d
        dx_d = delta_next @ w_d  # [B]
        a_d = a_next - x_d[:, None] * w_d
        h = jax.nn.sigmoid(a_d)
        dV_d = g_d @ h  # [H]
        delta = delta_next + (g_d[:, None] * v_d) * h * (1.0 - h)
        return (a_d, delta), (dW_d, dV_d, dx_d)

    init = (a_end, jnp.zeros((B, H), a_end.dtype))
    (_, delta0), (dW, dV, dx) = jax.lax.scan(body, init, (W, V, x.T, g.T), reverse=True)
    dc = delta0 if per_example_c else jnp.sum(delta0, axis=0)
    return dW, dc, dV, g if per_example_b else jnp.sum(g, axis=0), dx.T


nade_logits.defvjp(_nade_fwd, _nade_bwd)


def conditional_sample(
    key: PRNGKeyArray,
    W: Float[Array, "D H"],
    c: Float[Array, " H"],
    V: Float[Array, "D H"],
    b: Float[Array, " D"],
    x_clamp: Float[ArrayLike, " D"] | None = None,
    clamp_mask: Bool[ArrayLike, " D"] | None = None,
    *,
    return_probs: bool = False,
) -> Float[Array, " D"] | tuple[Float[Array, " D"], Float[Array, " D"]]:
    """One ancestral sample of the Bernoulli NADE ``(W, c, V, b)`` in its own (identity)
    ordering, O(DH): a ``lax.scan`` over the units carrying the running sum ``a``.  Units with
    ``clamp_mask`` keep their ``x_clamp`` value (and still enter the running sum).  Vmap over
    keys (and biases) for many samples; :func:`sample` permutes into its ordering first.

    ``return_probs``: also the conditionals ``p_d = P(x_d = 1 | x_{<d})`` met along the draw;
    ``E[p_d] = P(x_d = 1)``, so they are an unbiased (Rao–Blackwellised) one-draw estimate of
    the marginals."""
    D = W.shape[0]
    cm = jnp.zeros((D,), bool) if clamp_mask is None else jnp.asarray(clamp_mask, bool)
    xc = jnp.zeros((D,), jnp.float32) if x_clamp is None else jnp.asarray(x_clamp, jnp.float32)
    u = jax.random.uniform(key, (D,))

    def body(a, inp):
        w_d, v_d, b_d, u_d, m_d, c_d = inp
        p1 = jax.nn.sigmoid(jax.nn.sigmoid(a) @ v_d + b_d)
        x_d = jnp.where(m_d, c_d, (u_d < p1).astype(jnp.float32))
        return a + x_d * w_d, (x_d, p1)

    x, probs = jax.lax.scan(body, c, (W, V, b, u, cm, xc))[1]
    return (x, probs) if return_probs else x


# --------------------------------------------------------------------------------------
# RNADE (mixture of Gaussians) conditionals.
# --------------------------------------------------------------------------------------


def _mog_params(p: dict, x: Float[Array, "B D"]):
    """Per-conditional (log-weights, means, log-scales), each [B, D, K], ordering space."""
    B = x.shape[0]

    def body(a, inp):
        w_d, rho_d, Va, ba, Vm, bm, Vs, bs, x_d = inp
        h = jax.nn.sigmoid(rho_d * a)
        out = (
            jax.nn.log_softmax(h @ Va + ba, axis=-1),
            h @ Vm + bm,
            h @ Vs + bs,
        )
        return a + x_d[:, None] * w_d, out

    a0 = jnp.broadcast_to(p["c"], (B, p["c"].shape[0]))
    xs = (p["W"], p["rho"], p["V_alpha"], p["b_alpha"], p["V_mu"], p["b_mu"])
    xs = xs + (p["V_sigma"], p["b_sigma"], x.T)
    _, (log_w, mu, log_s) = jax.lax.scan(body, a0, xs)
    return tuple(jnp.swapaxes(t, 0, 1) for t in (log_w, mu, log_s))


def _mog_log_prob_terms(log_w, mu, log_s, x):
    """``log Σ_k w_k N(x; μ_k, s_k²)`` per unit, [B, D]."""
    z = (x[..., None] - mu) * jnp.exp(-log_s)
    comp = log_w - log_s - 0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    return jax.nn.logsumexp(comp, axis=-1)


# --------------------------------------------------------------------------------------
# The module.
# --------------------------------------------------------------------------------------


def _trunc_normal(scale: float):
    return nn.initializers.truncated_normal(stddev=scale)


class NADE(nn.Module):
    """NADE with a fixed ``ordering`` (default identity), ``n_hidden`` sigmoid units.

    ``output="bernoulli"`` (binary data): params ``W, V`` [D, H], ``c`` [H], ``b`` [D];
    ``__call__`` returns the logits of all conditionals (pixel order).
    ``output="mog"`` (real data, RNADE): ``n_components`` Gaussians per conditional;
    ``__call__`` returns ``(log_weights, means, log_scales)``, each [..., D, K].
    ``log_prob`` is the exact ``log p(x)`` for either.
    """

    n_visible: int
    n_hidden: int
    ordering: Sequence[int] | None = None
    output: str = "bernoulli"
    n_components: int = 2
    init_scale: float = 0.01

    def setup(self):
        if self.output not in OUTPUTS:
            raise ConfigError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.n_hidden < 1:
            raise ConfigError(f"n_hidden must be >= 1, got {self.n_hidden}")
        if self.output == "mog" and self.n_components < 1:
            raise ConfigError(f"n_components must be >= 1, got {self.n_components}")
        self._order = check_ordering(self.ordering, self.n_visible)
        self._identity = self._order == tuple(range(self.n_visible))
        D, H, K = self.n_visible, self.n_hidden, self.n_components
        init = _trunc_normal(self.init_scale)
        self.W = self.param("W", init, (D, H))
        self.c = self.param("c", nn.initializers.zeros, (H,))
        if self.output == "bernoulli":
            self.V = self.param("V", init, (D, H))
            self.b = self.param("b", nn.initializers.zeros, (D,))
        else:
            self.rho = self.param("rho", nn.initializers.ones, (D,))
            self.V_alpha = self.param("V_alpha", init, (D, H, K))
            self.b_alpha = self.param("b_alpha", nn.initializers.zeros, (D, K))
            self.V_mu = self.param("V_mu", init, (D, H, K))
            spread = jnp.linspace(-1.0, 1.0, K) if K > 1 else jnp.zeros((1,))
            self.b_mu = self.param("b_mu", lambda k, s: jnp.broadcast_to(spread, s), (D, K))
            self.V_sigma = self.param("V_sigma", init, (D, H, K))
            self.b_sigma = self.param("b_sigma", nn.initializers.zeros, (D, K))

    # ordering helpers (static index arrays; no-ops for the identity ordering)
    def _to_order(self, t: Array, axis: int) -> Array:
        return t if self._identity else jnp.take(t, np.asarray(self._order), axis=axis)

    def _to_pixels(self, t: Array, axis: int) -> Array:
        if self._identity:
            return t
        pos = np.empty(self.n_visible, np.int64)
        pos[list(self._order)] = np.arange(self.n_visible)
        return jnp.take(t, pos, axis=axis)

    def __call__(self, x: Float[Array, "*batch D"]):
        single = x.ndim == 1
        xb = x[None] if single else x
        xo = self._to_order(xb, 1)
        if self.output == "bernoulli":
            o = self._to_order
            out = nade_logits(o(self.W, 0), self.c, o(self.V, 0), o(self.b, 0), xo)
            out = self._to_pixels(out, 1)
            return out[0] if single else out
        p = {
            "W": self.W,
            "c": self.c,
            "rho": self.rho,
            "V_alpha": self.V_alpha,
            "b_alpha": self.b_alpha,
            "V_mu": self.V_mu,
            "b_mu": self.b_mu,
            "V_sigma": self.V_sigma,
            "b_sigma": self.b_sigma,
        }
        p = {k: (v if k == "c" else self._to_order(v, 0)) for k, v in p.items()}
        outs = tuple(self._to_pixels(t, 1) for t in _mog_params(p, xo))
        return tuple(t[0] for t in outs) if single else outs

    def log_prob(self, x: Float[Array, "*batch D"]) -> Float[Array, "*batch"]:
        """Exact ``log p(x)`` in nats (a density for ``output="mog"``)."""
        out = self(x)
        if self.output == "bernoulli":
            return bernoulli_log_prob(out, x)
        return jnp.sum(_mog_log_prob_terms(*out, x), axis=-1)


def sample(
    key: PRNGKeyArray,
    model: NADE,
    params: dict,
    x_clamp: Float[ArrayLike, " D"] | None = None,
    clamp_mask: Bool[ArrayLike, " D"] | None = None,
) -> Float[Array, " D"]:
    """One ancestral sample in O(DH): a ``lax.scan`` along the ordering carrying the
    running sum ``a``.  Units with ``clamp_mask`` keep their ``x_clamp`` value (they still
    enter the running sum), which is exact conditional sampling when the clamped units
    precede the free ones in the ordering.  Vmap over keys for many samples."""
    order = np.asarray(check_ordering(model.ordering, model.n_visible))
    p = params["params"]
    D = model.n_visible
    if clamp_mask is None:
        clamp_mask = jnp.zeros((D,), bool)
        x_clamp = jnp.zeros((D,), jnp.float32)
    cm = jnp.asarray(clamp_mask, bool)[order]
    xc = jnp.asarray(x_clamp, jnp.float32)[order]
    k_u, k_c, k_n = jax.random.split(key, 3)
    if model.output == "bernoulli":
        x_o = conditional_sample(k_u, p["W"][order], p["c"], p["V"][order], p["b"][order], xc, cm)
    else:
        gumbel = jax.random.gumbel(k_c, (D, model.n_components))
        eps = jax.random.normal(k_n, (D,))

        def body(a, inp):
            w_d, rho_d, Va, ba, Vm, bm, Vs, bs, g_d, e_d, m_d, c_d = inp
            h = jax.nn.sigmoid(rho_d * a)
            k = jnp.argmax(jax.nn.log_softmax(h @ Va + ba) + g_d)
            x_new = (h @ Vm + bm)[k] + jnp.exp((h @ Vs + bs)[k]) * e_d
            x_d = jnp.where(m_d, c_d, x_new)
            return a + x_d * w_d, x_d

        names = ("W", "rho", "V_alpha", "b_alpha", "V_mu", "b_mu", "V_sigma", "b_sigma")
        xs = tuple(p[n][order] for n in names) + (gumbel, eps, cm, xc)
        _, x_o = jax.lax.scan(body, p["c"], xs)
    return jnp.zeros((D,), jnp.float32).at[order].set(x_o)
