"""The convolutional RBM with probabilistic max pooling against exact answers (§20.6).

Every check but the Gibbs histogram is exact up to float32 rounding (tolerance 1e-5 on
probabilities and free energies of order 10: a few ulps of the sums involved).  The
enumerations run over the feasible detection configurations only (at most one unit on per
pooling block), which is the state space of the model.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import tv, tv_tolerance

from egm.energies import conv_rbm as cr
from egm.energies import grbm, rbm
from egm.errors import ConfigError, DataError
from egm.estimators import exact

ATOL = 1e-5


def _params(seed, nw, c, k, scale):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return cr.ConvRBMParams(
        W=scale * jax.random.normal(k1, (nw, nw, c, k)),
        b=0.5 * scale * jax.random.normal(k2, (k,)),
        a=0.5 * scale * jax.random.normal(k3, (c,)),
    )


def _feasible_hs(nh, k, pool):
    """Every detection configuration with at most one unit on per block, as (Nh, Nh, K)
    arrays, and the index of each configuration's block states (unit j or n = off)."""
    n = pool * pool
    n_blocks = (nh // pool) ** 2 * k
    hs, codes = [], []
    for states in itertools.product(range(n + 1), repeat=n_blocks):
        blocks = np.zeros((n_blocks, n), np.float32)
        for i, s in enumerate(states):
            if s < n:
                blocks[i, s] = 1.0
        b = blocks.reshape(nh // pool, nh // pool, k, pool, pool).transpose(0, 3, 1, 4, 2)
        hs.append(b.reshape(nh, nh, k))  # the layout of cr.from_blocks, written in numpy
        codes.append(states)
    return jnp.asarray(np.stack(hs)), np.asarray(codes)


def test_block_softmax_equals_enumerated_states():
    """P(unit j on) = e^{x_j} / (1 + Σ e^x), P(off) = 1 / (1 + Σ e^x): the (n+1)-state
    distribution with energies -x_j and 0, enumerated; also with logits near float32's
    range (log space: no overflow)."""
    x = jax.random.normal(jax.random.key(0), (3, 4)) * 3.0
    x = x.at[0].set(jnp.array([80.0, 79.0, -5.0, 0.0]))
    lp = np.asarray(cr.block_log_probs(x), np.float64)
    for row, xs in zip(lp, np.asarray(x, np.float64), strict=True):
        e = np.concatenate([xs, [0.0]])
        want = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        np.testing.assert_allclose(np.exp(row), want, atol=ATOL)
    assert np.all(np.isfinite(lp))


@pytest.mark.parametrize("top_down", [False, True])
def test_pooled_conditionals_equal_enumeration(top_down):
    """P(h | v) and P(p | v) (with a top-down input T to the pooling units: energy term
    -Σ p·T) equal the marginals of exp(-E(v, h)) over the 25 feasible h of a 3x3 image,
    2x2 filters, K = 2, pooling 2x2 (one block per filter)."""
    spec = cr.ConvRBM(pool=2)
    params = _params(1, 2, 1, 2, 1.5)
    hs, codes = _feasible_hs(2, 2, 2)
    T = jnp.array([[[0.7, -1.3]]]) if top_down else None
    ps = jnp.asarray((codes < 4).astype(np.float32).reshape(-1, 1, 1, 2))

    @jax.jit
    def both(v):
        logw = -jax.vmap(lambda h: cr.energy(spec, params, v, h))(hs)
        if T is not None:
            logw = logw + jnp.sum(ps * T, axis=(1, 2, 3))
        w = jax.nn.softmax(logw)
        want = (jnp.tensordot(w, hs, 1), jnp.tensordot(w, ps, 1))
        return cr.hidden_probs(spec, params, v, T), want

    vs = jax.random.bernoulli(jax.random.key(10), 0.5, (4, 3, 3, 1)).astype(jnp.float32)
    (h_mean, p_mean), (h_want, p_want) = jax.vmap(both)(vs)
    np.testing.assert_allclose(h_mean, h_want, atol=ATOL)
    np.testing.assert_allclose(p_mean, p_want, atol=ATOL)


def test_free_energy_by_enumeration():
    """F(v) = -log Σ_{h feasible} exp(-E(v, h)), pooling 2 (25 states) and pooling 1 (all
    2^8 detection configurations of 3x3 images under 2x2 filters, K = 2), binary and
    Gaussian visibles."""
    params = _params(2, 2, 1, 2, 1.2)
    for pool, visible in [(2, "binary"), (1, "binary"), (2, "gaussian")]:
        spec = cr.ConvRBM(pool=pool, visible=visible)
        if pool == 2:
            hs = _feasible_hs(2, 2, 2)[0]
        else:
            hs = exact.all_binary_states(8).reshape(-1, 2, 2, 2)
        vs = jax.random.normal(jax.random.key(pool), (3, 3, 3, 1))
        if visible == "binary":
            vs = (vs > 0).astype(jnp.float32)

        @jax.jit
        def both(v, spec=spec, hs=hs):
            e = jax.vmap(lambda h: cr.energy(spec, params, v, h))(hs)
            return cr.free_energy(spec, params, v), -jax.nn.logsumexp(-e)

        got, direct = jax.vmap(both)(vs)
        np.testing.assert_allclose(got, direct, atol=ATOL)


def test_no_pooling_equals_dense_toeplitz_rbm():
    """With pool = 1 the conv RBM is the RBM with the tied weight matrix: conditionals,
    energy and free energy of a 4x4 image (C channels), 2x2 filters, K = 2 agree with
    egm.energies.rbm on dense_equivalent (and, Gaussian, with the GRBM with β = 1 up to the
    constant ½ Σ a² of its energy).  Two channels: the layout of every index is exercised."""
    channels = 2
    spec = cr.ConvRBM(pool=1)
    params = _params(3, 2, channels, 2, 1.0)
    dense = cr.dense_equivalent(spec, params, 4)
    assert dense.W.shape == (16 * channels, 9 * 2)
    kv, kh = jax.random.split(jax.random.key(4))
    vs = jax.random.bernoulli(kv, 0.5, (3, 4, 4, channels)).astype(jnp.float32)
    hs = jax.random.bernoulli(kh, 0.5, (3, 3, 3, 2)).astype(jnp.float32)

    @jax.jit
    def pairs(v, h):
        x, y = v.reshape(-1), h.reshape(-1)
        h_probs, p_probs = cr.hidden_probs(spec, params, v)
        return (
            (h_probs.reshape(-1), rbm.hidden_probs(dense, x)),
            (p_probs, h_probs),
            (cr.visible_mean(spec, params, h).reshape(-1), rbm.visible_probs(dense, y)),
            (cr.energy(spec, params, v, h), rbm.energy(dense, x, y)),
            (cr.free_energy(spec, params, v), rbm.free_energy(dense, x)),
        )

    for got, want in jax.vmap(pairs)(vs, hs):
        np.testing.assert_allclose(got, want, atol=ATOL)
    gspec = cr.ConvRBM(pool=1, visible="gaussian")
    g = grbm.GRBMParams(dense.W, dense.b, dense.c, jnp.zeros_like(dense.b))
    const = 0.5 * float(jnp.sum(dense.b**2))
    x = jax.random.normal(jax.random.key(5), (4, 4, channels))

    @jax.jit
    def gauss(x, h):
        return (
            (cr.visible_mean(gspec, params, h).reshape(-1), grbm.visible_mean(g, h.reshape(-1))),
            (cr.hidden_probs(gspec, params, x)[0].reshape(-1),
             jax.nn.sigmoid(grbm.hidden_preactivation(g, x.reshape(-1)))),
            (cr.free_energy(gspec, params, x) + const, grbm.free_energy(g, x.reshape(-1))),
        )  # fmt: skip

    for got, want in gauss(x, hs[0]):
        np.testing.assert_allclose(got, want, atol=1e-4)


def _exact_joint(spec, params, hs):
    """p(v, h) over all 2^9 binary 3x3 images and the feasible hs: shape (512, len(hs))."""
    vs = exact.all_binary_states(9).reshape(-1, 3, 3, 1)
    e = jax.jit(jax.vmap(lambda v: jax.vmap(lambda h: cr.energy(spec, params, v, h))(hs)))(vs)
    return np.asarray(jax.nn.softmax(-e.reshape(-1)), np.float64).reshape(e.shape), vs


def test_gibbs_matches_exact_joint():
    """Block Gibbs (`gibbs`) on a 3x3 binary image, 2x2 filter, K = 1, pooling 2x2 (one
    block, 5 states; 512 x 5 joint states): M = 2^15 independent chains, T = 12 sweeps from
    v ~ uniform, one joint draw per chain.

    Tolerance (tests/_stats.py): TV(histogram, q_T) <= E-bound + McDiarmid deviation at
    δ = 1e-6, where q_T is the exact law after T sweeps; TV(q_T, p) is computed exactly from
    the 5x5 transition matrix of the h-chain, K_h[h, h'] = Σ_v P(v|h) P(h'|v), and added
    (q_T(v', h') = Σ_h q_{T-1}(h) P(v'|h) P(h'|v')).  Every draw must also be feasible."""
    spec = cr.ConvRBM(pool=2)
    params = _params(7, 2, 1, 1, 1.8)
    hs, _ = _feasible_hs(2, 1, 2)
    p, vs = _exact_joint(spec, params, hs)
    # exact conditionals P(h | v) [v, h] and P(v | h) [h, v]
    p_h_v = p / p.sum(1, keepdims=True)
    logits = jax.jit(jax.vmap(lambda h: cr.visible_preactivation(spec, params, h).reshape(-1)))(hs)
    flat = np.asarray(vs.reshape(512, 9), np.float64)
    lg = np.asarray(logits, np.float64)
    p_v_h = np.exp(flat @ (-np.logaddexp(0, -lg)).T + (1 - flat) @ (-np.logaddexp(0, lg)).T).T
    K = p_v_h @ p_h_v
    M, T = 2**15, 12
    q = (np.ones(512) / 512) @ p_h_v @ np.linalg.matrix_power(K, T - 1)
    q_T = (q[:, None] * p_v_h).T[:, :, None] * p_h_v[:, None, :]  # [v', h, h']
    q_T = q_T.sum(1)
    k0, k1, k2 = jax.random.split(jax.random.key(8), 3)
    v0 = jax.random.bernoulli(k0, 0.5, (M, 3, 3, 1)).astype(jnp.float32)
    init = jax.jit(jax.vmap(cr.init_state, (0, None, None, 0)), static_argnums=1)
    s0 = init(jax.random.split(k1, M), spec, params, v0)
    out = jax.jit(cr.gibbs, static_argnums=(1, 4))(k2, spec, params, s0, T)
    h_idx = np.asarray(jnp.sum(out.h.reshape(M, 4) * jnp.arange(1, 5), axis=1)) - 1
    h_idx = np.where(h_idx < 0, 4, h_idx).astype(
        int
    )  # hs[4] is "off" (codes: unit 0..3 on, then off)
    assert np.all(np.asarray(out.h.reshape(M, 4).sum(1)) <= 1), "infeasible pooling state"
    np.testing.assert_array_equal(np.asarray(out.p[:, 0, 0, 0]), (h_idx < 4).astype(np.float32))
    v_idx = np.asarray(out.v.reshape(M, 9)).astype(int) @ (2 ** np.arange(8, -1, -1))
    hist = np.bincount(v_idx * 5 + h_idx, minlength=512 * 5) / M
    bias = tv(q_T.reshape(-1), p.reshape(-1))
    assert bias < 0.05
    assert tv(hist, p.reshape(-1)) < tv_tolerance(p.reshape(-1), M) + bias
    # the marginals of the block state (5 states) and of v (512): far tighter bounds (the
    # E-bound grows with the number of states), with the same exact bias bound (a marginal's
    # TV is at most the joint's); three tests at δ = 1e-6 each
    for axis, n in ((0, 5), (1, 512)):
        marg = p.sum(axis)
        got = hist.reshape(512, 5).sum(axis)
        assert len(got) == n and tv(got, marg) < tv_tolerance(marg, M) + bias


def test_cd_gradient_is_the_tied_dense_gradient_with_sparsity():
    """PCD-1 with pool = 1: the gradient is the dense RBM's ⟨v hᵀ⟩_data - ⟨v hᵀ⟩_neg (with
    P(h|v)) pulled back through the Toeplitz map (its vjp), plus cost·(q - target) on b,
    where the negatives are the returned chains' v.  Exact up to float32 rounding."""
    spec = cr.ConvRBM(pool=1)
    params = _params(9, 2, 1, 2, 1.0)
    kd, kc, kg = jax.random.split(jax.random.key(10), 3)
    v = jax.random.bernoulli(kd, 0.5, (6, 4, 4, 1)).astype(jnp.float32)
    vc = jax.random.bernoulli(kc, 0.5, (6, 4, 4, 1)).astype(jnp.float32)
    init = jax.jit(jax.vmap(cr.init_state, (0, None, None, 0)), static_argnums=1)
    chains = init(jax.random.split(kc, 6), spec, params, vc)
    cd = jax.jit(cr.cd_gradient, static_argnums=(1, 4),
                 static_argnames=("sparsity_target", "sparsity_cost"))  # fmt: skip
    grads, new, aux = cd(kg, spec, params, v, 1, chains, sparsity_target=0.1, sparsity_cost=0.3)
    neg = new  # PCD: the chains come back at the negatives the gradient used
    assert bool(jnp.all(jnp.isin(neg.v, jnp.array([0.0, 1.0]))))
    np.testing.assert_allclose(neg.h, jax.vmap(lambda x: cr.to_blocks(x, 1))(neg.h)[..., 0])
    np.testing.assert_allclose(aux.recon_error, jnp.mean(jnp.sum((neg.v - v) ** 2, (1, 2, 3))))
    dense, pullback = jax.vjp(lambda p: cr.dense_equivalent(spec, p, 4), params)
    x, xn = v.reshape(6, -1), neg.v.reshape(6, -1)
    hx = jax.vmap(rbm.hidden_probs, (None, 0))(dense, x)
    hn = jax.vmap(rbm.hidden_probs, (None, 0))(dense, xn)
    g_dense = rbm.RBMParams(W=-(x.T @ hx - xn.T @ hn) / 6, b=-(x - xn).mean(0), c=-(hx - hn).mean(0))  # fmt: skip
    (want,) = pullback(g_dense)
    q = hx.reshape(6, 3, 3, 2).mean((0, 1, 2))
    np.testing.assert_allclose(aux.hidden_mean, q, atol=ATOL)
    np.testing.assert_allclose(grads.W, want.W, atol=ATOL)
    np.testing.assert_allclose(grads.a, want.a, atol=ATOL)
    np.testing.assert_allclose(grads.b, want.b + 0.3 * (q - 0.1), atol=ATOL)


def test_bad_input_is_refused():
    spec = cr.ConvRBM(pool=2)
    with pytest.raises(ConfigError, match="do not divide"):
        cr.init(jax.random.key(0), spec, 28, 1, 4, 6)  # 23x23 detection maps
    with pytest.raises(ConfigError, match="pool"):
        cr.ConvRBM(pool=0)
    with pytest.raises(ConfigError, match="visible"):
        cr.ConvRBM(visible="poisson")
    params = cr.init(jax.random.key(0), spec, 28, 1, 4, 5)
    x = np.zeros((3, 28, 28, 1), np.float32)
    cr.check_data(spec, params, x)
    with pytest.raises(DataError, match="do not divide"):
        cr.check_data(spec, params, np.zeros((3, 27, 27, 1), np.float32))
    with pytest.raises(DataError, match="shape"):
        cr.check_data(spec, params, np.zeros((3, 784), np.float32))
    with pytest.raises(DataError, match="other than 0 and 1"):
        cr.check_data(spec, params, x + 0.5)
    cr.check_data(cr.ConvRBM(2, "gaussian"), params, x + 0.5)


def test_samplers_are_exact_inverse_cdfs_of_their_uniforms():
    """`blocks_from_uniform` and `visible_from_uniform` (what `gibbs`, `sweep` and
    `cd_gradient` draw with) are deterministic maps of u ~ U[0, 1): run over the grid
    u_g = (g + 1/2)/G, G = 2^16, the fraction of the grid sent to each state must be its
    probability.  Block states (n = 4 with logits up to ±80, and n = 1, the Bernoulli path
    of pool = 1) and binary visibles are monotone in u, so each state is one interval and
    the grid fraction is within 2/G of its length; float32 rounding of the cumulative
    weights (relative ~1e-6) is far below that: tolerance 2/G + 1e-5.  Gaussian visibles
    must be x + Φ^{-1}(u): Φ(v - x) = u up to the float32 rounding of 2u - 1 (6e-8) and
    erf_inv (a few ulps): tolerance 1e-6."""
    from scipy.special import ndtr

    G = 2**16
    u = (jnp.arange(G, dtype=jnp.float32) + 0.5) / G
    tol = 2 / G + 1e-5
    rows = [[80.0, 79.0, -5.0, 0.0], [0.3, -1.2, 2.0, -0.4], [-80.0, -80.0, -80.0, -80.0],
            [2.5], [-3.0], [80.0]]  # fmt: skip

    @jax.jit
    def everything(u, logits):  # one program; arguments, not constants (no constant folding)
        out = []
        for lg in logits:
            one_hot, p = cr.blocks_from_uniform(u, jnp.broadcast_to(lg, (G, lg.shape[0])))
            freq = jnp.concatenate([one_hot.mean(0), 1 - p.mean(keepdims=True)])
            ok = jnp.all(one_hot.sum(-1) <= 1) & jnp.all(p == one_hot.sum(-1))
            out.append((freq, jnp.exp(cr.block_log_probs(lg)), ok))
        x = jnp.full(G, 0.7, jnp.float32) + 0 * u  # 0.7, not a constant
        v = cr.visible_from_uniform(cr.ConvRBM(visible="binary"), x, u)
        g = cr.visible_from_uniform(cr.ConvRBM(visible="gaussian"), x, u)
        return out, v.mean(), jax.nn.sigmoid(x[0]), g - x

    out, mean, want_mean, z = everything(u, [jnp.asarray(r, jnp.float32) for r in rows])
    for freq, want, ok in out:
        assert bool(ok)
        np.testing.assert_allclose(freq, want, atol=tol)
    assert abs(float(mean) - float(want_mean)) < tol
    np.testing.assert_allclose(ndtr(np.asarray(z, np.float64)), np.asarray(u), atol=1e-6)
