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


@pytest.mark.parametrize("pool", [2, 1])
def test_gibbs_matches_exact_joint(pool):
    """Block Gibbs (`gibbs`) on a 3x3 binary image, 2x2 filter, K = 1 (a 2x2 detection map):
    pooling 2x2 (one block, 5 states; the GEMM path) and no pooling (16 states; the fused
    one-channel path of `gibbs`, `_correlate_taps` with its own uniforms); 512 x 5 or 512 x 16
    joint states.  M = 2^15 independent chains, T = 12 sweeps from v ~ uniform, one joint
    draw per chain.

    Tolerance (tests/_stats.py): TV(histogram, q_T) <= E-bound + McDiarmid deviation at
    δ = 1e-6, where q_T is the exact law after T sweeps; TV(q_T, p) is computed exactly from
    the transition matrix of the h-chain, K_h[h, h'] = Σ_v P(v|h) P(h'|v), and added
    (q_T(v', h') = Σ_h q_{T-1}(h) P(v'|h) P(h'|v')).  Every draw must also be feasible."""
    spec = cr.ConvRBM(pool=pool)
    params = _params(7, 2, 1, 1, 1.8)
    hs, _ = _feasible_hs(2, 1, pool)
    ns = hs.shape[0]
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
    # each draw's h as the row of hs it equals (a 4-bit code -> row lookup)
    bits = 2 ** np.arange(4)
    row_of = np.full(16, -1)
    row_of[np.asarray(hs.reshape(ns, 4)).astype(int) @ bits] = np.arange(ns)
    h_idx = row_of[np.asarray(out.h.reshape(M, 4)).astype(int) @ bits]
    assert np.all(h_idx >= 0), "infeasible pooling state"
    if pool == 2:  # the pooling unit is on iff one detection unit of its block is
        p_on = np.asarray(out.h.reshape(M, 4).sum(1))
        np.testing.assert_array_equal(np.asarray(out.p[:, 0, 0, 0]), p_on)
    else:
        np.testing.assert_array_equal(np.asarray(out.p), np.asarray(out.h))
    v_idx = np.asarray(out.v.reshape(M, 9)).astype(int) @ (2 ** np.arange(8, -1, -1))
    hist = np.bincount(v_idx * ns + h_idx, minlength=512 * ns) / M
    bias = tv(q_T.reshape(-1), p.reshape(-1))
    assert bias < 0.05
    assert tv(hist, p.reshape(-1)) < tv_tolerance(p.reshape(-1), M) + bias
    # the marginals of the detection state and of v (512): far tighter bounds (the E-bound
    # grows with the number of states), with the same exact bias bound (a marginal's TV is
    # at most the joint's); three tests at δ = 1e-6 each
    for axis, n in ((0, ns), (1, 512)):
        marg = p.sum(axis)
        got = hist.reshape(512, ns).sum(axis)
        assert len(got) == n and tv(got, marg) < tv_tolerance(marg, M) + bias


def test_one_channel_gibbs_has_the_law_of_vmapped_sweeps_with_gaussian_visibles():
    """The fused one-channel path of `gibbs` (no pooling) with Gaussian visibles against
    `sweep` vmapped over the chains (per-example convolutions, `jax.random.uniform` draws):
    6x6 images, K = 2 filters 3x3 (biases ±1.5), M = 8192 chains from one start state, T = 3
    sweeps.  Every
    unit's mean (36 visibles, 32 detection units) must agree: the difference of two
    independent sample means has s.d. sqrt((s1² + s2²)/M), and |z| < 4.5 for each of the 68
    units (two-sided 6.8e-6 each, 4.6e-4 for all: Bonferroni).  Both paths share
    `visible_from_uniform`; what this checks is the taps, the layout and the two uniform
    streams, with real-valued inputs to the taps."""
    spec = cr.ConvRBM(pool=1, visible="gaussian")
    params = _params(5, 3, 1, 2, 0.8)._replace(b=jnp.array([1.5, -1.5]))  # biases that matter
    M, T = 8192, 3
    k0, k1, k2 = jax.random.split(jax.random.key(9), 3)
    v0 = jax.random.normal(k0, (6, 6, 1))
    s0 = jax.jit(cr.init_state, static_argnums=1)(k1, spec, params, v0)
    s0 = jax.tree.map(lambda x: jnp.broadcast_to(x, (M, *x.shape)), s0)

    @jax.jit
    def both(key):
        ka, kb = jax.random.split(key)
        fused = cr.gibbs(ka, spec, params, s0, T)

        def body(s, k):
            return jax.vmap(cr.sweep, (0, None, None, 0))(
                jax.random.split(k, M), spec, params, s
            ), None

        ref, _ = jax.lax.scan(body, s0, jax.random.split(kb, T))
        return fused, ref

    fused, ref = both(k2)
    for a, b in ((fused.v, ref.v), (fused.h, ref.h)):
        a, b = np.asarray(a, np.float64).reshape(M, -1), np.asarray(b, np.float64).reshape(M, -1)
        se = np.sqrt((a.var(0) + b.var(0)) / M)
        z = (a.mean(0) - b.mean(0)) / se
        assert np.all(np.isfinite(a)) and np.all(np.abs(z) < 4.5), np.abs(z).max()
    np.testing.assert_array_equal(np.asarray(fused.p), np.asarray(fused.h))
    assert 0.05 < float(fused.h.mean()) < 0.95  # the detection units are not stuck


def test_cd_gradient_is_the_tied_dense_gradient_with_sparsity():
    """PCD-1 with pool = 1: the gradient is the dense RBM's ⟨v hᵀ⟩_data - ⟨v hᵀ⟩_neg (with
    P(h|v)) pulled back through the Toeplitz map (its vjp), plus cost·(q - target) on b,
    where the negatives are the returned chains' v.  Exact up to float32 rounding."""
    spec = cr.ConvRBM(pool=1)
    params = _params(9, 2, 1, 2, 1.0)
    kd, kc, kg = jax.random.split(jax.random.key(10), 3)
    v = jax.random.bernoulli(kd, 0.5, (6, 4, 4, 1)).astype(jnp.float32)
    vc = jax.random.bernoulli(kc, 0.5, (6, 4, 4, 1)).astype(jnp.float32)

    @jax.jit  # one program: the estimator and its dense reference
    def both(v, vc):
        chains = jax.vmap(cr.init_state, (0, None, None, 0))(jax.random.split(kc, 6), spec,
                                                             params, vc)  # fmt: skip
        grads, neg, aux = cr.cd_gradient(kg, spec, params, v, 1, chains, sparsity_target=0.1,
                                         sparsity_cost=0.3)  # fmt: skip
        # PCD: the chains come back at the negatives the gradient used
        dense, pullback = jax.vjp(lambda p: cr.dense_equivalent(spec, p, 4), params)
        x, xn = v.reshape(6, -1), neg.v.reshape(6, -1)
        hx = jax.vmap(rbm.hidden_probs, (None, 0))(dense, x)
        hn = jax.vmap(rbm.hidden_probs, (None, 0))(dense, xn)
        g_dense = rbm.RBMParams(W=-(x.T @ hx - xn.T @ hn) / 6, b=-(x - xn).mean(0),
                                c=-(hx - hn).mean(0))  # fmt: skip
        (want,) = pullback(g_dense)
        q = hx.reshape(6, 3, 3, 2).mean((0, 1, 2))
        recon = jnp.mean(jnp.sum((neg.v - v) ** 2, (1, 2, 3)))
        return grads, neg, aux, want, q, recon

    grads, neg, aux, want, q, recon = both(v, vc)
    assert bool(jnp.all(jnp.isin(neg.v, jnp.array([0.0, 1.0]))))
    np.testing.assert_allclose(neg.h, jax.vmap(lambda x: cr.to_blocks(x, 1))(neg.h)[..., 0])
    np.testing.assert_allclose(aux.recon_error, recon)
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
    `cd_gradient` draw with) are deterministic maps of u; in `cd_gradient` and in `gibbs`
    with pooling or several channels u is `uniform24`: every point m·2^-24 of the 24-bit
    grid with probability 2^-24 (checked exactly below; `sweep` and the one-channel `gibbs`
    without pooling use jax.random.uniform's numbers, the 2^-23 grid).  Run over the
    grid u_g = g/G, G = 2^16 (a sub-grid of both, so the fraction of u_g in an
    interval [c, d) is (⌈dG⌉ - ⌈cG⌉)/G, within 1/G of d - c), the fraction sent to each state
    must be its probability: block states (n = 4 with logits up to ±80, and n = 1, the
    Bernoulli path of pool = 1) and binary visibles are monotone in u, so each state is one
    interval; float32 rounding of the cumulative weights (relative ~1e-6) is far below 1/G:
    tolerance 1/G + 1e-5 (a state whose probability were off by more than 3e-5 would fail).
    Gaussian visibles must be x + Φ^{-1}(u): Φ(v - x) = u up to the float32 rounding of 2u - 1
    (6e-8) and erf_inv (a few ulps): tolerance 1e-6 (u = 0, the grid's end, is clipped to the
    float32 number next to -1 and left out)."""
    from scipy.special import ndtr

    from egm import random_bits

    G = 2**16
    u = jnp.arange(G, dtype=jnp.float32) / G
    tol = 1 / G + 1e-5
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
    np.testing.assert_allclose(ndtr(np.asarray(z, np.float64))[1:], np.asarray(u)[1:], atol=1e-6)
    # the uniforms themselves: exactly the generator's words cut into 24-bit numbers (four
    # from every three words: the 96 bits of column j of the (3, M) words, high bits first)
    key = jax.random.key(3)
    words = np.asarray(random_bits.bits(key, (3, 1024))).astype(np.uint64)
    big = [int(a) << 64 | int(b) << 32 | int(c) for a, b, c in words.T]
    fields = np.array([[(x >> (72 - 24 * f)) & 0xFFFFFF for x in big] for f in range(4)])
    got = np.asarray(random_bits.uniform24(key, (4095,)), np.float64) * 2**24
    np.testing.assert_array_equal(got, fields.reshape(-1)[:4095].astype(np.float64))
    assert set(np.unique(got.astype(np.int64) >> 20)) == set(range(16))  # every high nibble


def test_random_bits_vmap_equals_loop_and_bernoulli24_is_exact():
    """`random_bits.bits` under vmap over keys gives each key the words it draws alone (the
    primitive's own batching rule would draw all from the first key), nested vmap too; same
    key, same words; different keys, different words.  `bernoulli24` fires iff the top 24
    bits m < floor(p·2^24): p = 1 always, p = 0 never, and for p = 0.3 exactly the words with
    m < 5033164 (checked word by word, no sampling tolerance)."""
    from egm import random_bits

    keys = jax.random.split(jax.random.key(0), (2, 3))
    looped = np.stack([[np.asarray(random_bits.bits(k, (5,))) for k in row] for row in keys])
    vmapped = jax.jit(jax.vmap(jax.vmap(lambda k: random_bits.bits(k, (5,)))))(keys)
    np.testing.assert_array_equal(np.asarray(vmapped), looped)
    assert len(np.unique(looped)) == looped.size
    key = jax.random.key(1)
    p = jnp.array([0.0, 1.0, 0.3] * 1000, jnp.float32)
    fired = np.asarray(random_bits.bernoulli24(key, p)).reshape(1000, 3)
    m = (np.asarray(random_bits.bits(key, (3000,))) >> 8).reshape(1000, 3)
    assert not fired[:, 0].any() and fired[:, 1].all()
    np.testing.assert_array_equal(fired[:, 2], m[:, 2] < int(np.float32(0.3) * 2**24))


@pytest.mark.slow  # default companions: test_gibbs_matches_exact_joint (gibbs's layout, pool
# 2) and test_cd_gradient_is_the_free_energy_difference_gradient_with_pooling (C = 2, K = 3)
def test_chains_minor_layout_equals_the_per_example_maps():
    """`gibbs` runs in a chains-minor layout (its own correlations -- a GEMM, and the
    one-channel path's sum of taps -- full convolution and block draw).  With C = 2 channels, K = 3 filters, 3x3 filters on 7x7 images (5x5 maps, pool 1)
    and 8x8 images (6x6 maps, pool 2), those maps equal the per-example `_correlate`,
    `_full_conv` and `blocks_from_uniform` on `to_blocks` with the same uniforms, to float32
    rounding of sums of 18 products (1e-5); the block states exactly."""
    params = _params(11, 3, 2, 3, 1.0)

    @jax.jit
    def both(v, h, u):
        pool = v.shape[1] - 6  # 7 -> 1, 8 -> 2
        logits = jax.vmap(lambda x: cr._correlate(x, params.W))(v)
        hb, pb = cr.blocks_from_uniform(u, jax.vmap(lambda x: cr.to_blocks(x, pool))(logits))
        hm, pm = cr._blocks_m(pool, cr._minor(logits), cr._minor(u))
        return (
            (cr._minor(cr._correlate_m(cr._minor(v), params.W)), logits),
            (cr._minor(cr._correlate_taps(cr._minor(v), params.W)), logits),
            (cr._minor(cr._full_conv_m(cr._minor(h), params.W)),
             jax.vmap(lambda x: cr._full_conv(x, params.W))(h)),
            (cr._minor(hm), jax.vmap(lambda x: cr.from_blocks(x, pool))(hb)),
            (cr._minor(pm), pb),
        )  # fmt: skip

    for size, pool in ((7, 1), (8, 2)):
        nh, n = size - 2, 4
        kv, kh, ku = jax.random.split(jax.random.key(size), 3)
        v = jax.random.bernoulli(kv, 0.5, (n, size, size, 2)).astype(jnp.float32)
        h = jax.random.bernoulli(kh, 0.3, (n, nh, nh, 3)).astype(jnp.float32)
        u = jax.random.uniform(ku, (n, nh // pool, nh // pool, 3))
        (c, c0), (t, t0), (f, f0), (hm, hb), (pm, pb) = both(v, h, u)
        np.testing.assert_allclose(c, c0, atol=ATOL)
        np.testing.assert_allclose(t, t0, atol=ATOL)
        np.testing.assert_allclose(f, f0, atol=ATOL)
        np.testing.assert_array_equal(hm, hb)
        np.testing.assert_array_equal(pm, pb)
        assert 0 < float(pm.mean()) < 1  # the block draws are not all on or all off


def test_cdbn_sweep_leaves_the_exact_two_layer_joint_invariant():
    """`cdbn_sweep` of a two-layer conv DBN whose joint exp(-E₁(v, h¹) - E₂(p¹, h²)) can be
    enumerated: a 3x3 binary image, K₁ = 2 filters 2x2 with 2x2 pooling (one block per filter,
    25 feasible h¹, pooling units p¹ of shape 1x1x2), layer 2 on p¹ (C = 2 channels, 1x1
    filters, K₂ = 2, no pooling: 4 states of h²), 512·25·4 = 51,200 joint states.

    M = 2^15 chains start at exact draws of the joint; one sweep must leave the law exactly
    unchanged (each of its three steps draws from an exact conditional), so the histogram of
    the swept states is M draws from p itself: no burn-in bias.  Tolerances (tests/_stats.py):
    TV(histogram, p) <= E-bound + McDiarmid deviation at δ = 1e-6 for the (h¹, h²) marginal
    (100 states, where the top-down term acts) and for the full joint.  The test can fail:
    the same sweep without the top-down input a₂ + W²∗h² (exact law computed below) moves
    the (h¹, h²) marginal by more than 3 tolerances."""
    s1, s2 = cr.ConvRBM(pool=2), cr.ConvRBM(pool=1)
    P1 = _params(12, 2, 1, 2, 1.5)
    P2 = _params(13, 1, 2, 2, 2.5)
    hs1, codes = _feasible_hs(2, 2, 2)  # (25, 2, 2, 2)
    ps1 = jnp.asarray((codes < 4).astype(np.float32).reshape(25, 1, 1, 2))
    hs2 = exact.all_binary_states(2).reshape(4, 1, 1, 2)
    vs = exact.all_binary_states(9).reshape(512, 3, 3, 1)

    @jax.jit
    def log_weights():
        e1 = jax.vmap(lambda v: jax.vmap(lambda h: cr.energy(s1, P1, v, h))(hs1))(vs)
        e2 = jax.vmap(lambda p: jax.vmap(lambda h: cr.energy(s2, P2, p, h))(hs2))(ps1)
        no_top = jax.vmap(lambda v: cr.block_log_probs(cr._pooled_logits(s1, P1, v, None)))(vs)
        return -(e1[:, :, None] + e2[None]), no_top

    lw, no_top = log_weights()
    p = np.asarray(jax.nn.softmax(lw.reshape(-1)), np.float64).reshape(512, 25, 4)
    M = 2**15
    idx = np.random.default_rng(0).choice(p.size, size=M, p=p.reshape(-1) / p.sum())
    iv, ih1, ih2 = np.unravel_index(idx, p.shape)
    st1 = cr.ConvRBMState(vs[iv], hs1[ih1], ps1[ih1])
    st2 = cr.ConvRBMState(ps1[ih1], hs2[ih2], hs2[ih2])
    keys = jax.random.split(jax.random.key(14), M)
    sweep = jax.jit(jax.vmap(cr.cdbn_sweep, (0, None, None, 0)), static_argnums=1)
    o1, o2 = sweep(keys, (s1, s2), (P1, P2), (st1, st2))
    # indices of the swept states (block code: unit 0..3 on, 4 = off, per filter; base 5)
    blocks = np.asarray(jax.vmap(lambda h: cr.to_blocks(h, 2))(o1.h)).reshape(M, 2, 4)
    assert np.all(blocks.sum(-1) <= 1), "infeasible pooling state"
    code = np.where(blocks.sum(-1) > 0, blocks.argmax(-1), 4)
    jh1 = code[:, 0] * 5 + code[:, 1]
    np.testing.assert_array_equal(codes[jh1], code)
    np.testing.assert_array_equal(np.asarray(o1.p).reshape(M, 2), (code < 4).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(o2.v), np.asarray(o1.p))  # p¹ is layer 2's v
    jv = np.asarray(o1.v.reshape(M, 9)).astype(int) @ (2 ** np.arange(8, -1, -1))
    jh2 = np.asarray(o2.h.reshape(M, 2)).astype(int) @ np.array([2, 1])
    hist = np.bincount((jv * 25 + jh1) * 4 + jh2, minlength=p.size) / M
    marg = p.sum(0).reshape(-1)
    tol = tv_tolerance(marg, M)
    assert tv(hist.reshape(512, 100).sum(0), marg) < tol
    assert tv(hist, p.reshape(-1)) < tv_tolerance(p.reshape(-1), M)
    # power: without the top-down term, h¹' ~ P₀(h¹ | v) and h²' ~ P(h² | p¹(h¹')) from the
    # exact (v, h²) marginal; the (h¹', h²') law is then Σ_v p(v) P₀(h¹'|v) P(h²'|h¹')
    b0 = np.exp(np.asarray(no_top, np.float64)).reshape(512, 2, 5)  # [v, filter, state]
    p0 = np.einsum("va,vb->vab", b0[:, 0], b0[:, 1])  # P₀(h¹ | v) over (code₀, code₁)
    p_h2 = p.sum(0) / p.sum((0, 2))[:, None]  # P(h² | h¹): depends on h¹ only through p¹
    wrong = np.einsum("v,vh,hk->hk", p.sum((1, 2)), p0.reshape(512, 25), p_h2)
    assert tv(wrong.reshape(-1), marg) > 3 * tol


@pytest.mark.parametrize(
    "visible, k",
    [("binary", 1), pytest.param("gaussian", 2, marks=pytest.mark.slow)],  # slow: the binary
)  # case (default) keeps the claim for the shared code; Gaussian visibles differ only in
# visible_from_uniform (test_samplers_are_exact_inverse_cdfs_of_their_uniforms) and F
def test_cd_gradient_is_the_free_energy_difference_gradient_with_pooling(visible, k):
    """Rao-Blackwellised PCD-k with 2x2 pooling and C = 2 channels (6x6 images, 3x3 filters,
    K = 3, 4x4 maps): the gradient equals jax.grad of mean F(v_data) - mean F(v_neg) (the
    free energy summed over feasible h by the block softmax, itself checked against
    enumeration above) at the negatives the chains return, plus cost·(q - target) on b with
    q the mean pooled-model P(h = 1 | v_data); binary (PCD-1) and Gaussian (PCD-2: the
    k - 1 Gibbs sweeps of `gibbs` inside) visibles.  Exact up to
    float32 rounding of sums of ~100 terms of order 1 taken in different orders (1e-5
    absolute plus 1e-5 relative: gradients reach ~5; a wrong term is O(0.1) off)."""
    params = _params(15, 3, 2, 3, 1.0)
    spec = cr.ConvRBM(pool=2, visible=visible)
    kd, kc, kg = jax.random.split(jax.random.key(16), 3)
    v = jax.random.bernoulli(kd, 0.5, (5, 6, 6, 2)).astype(jnp.float32)
    vc = jax.random.bernoulli(kc, 0.5, (5, 6, 6, 2)).astype(jnp.float32)

    @jax.jit
    def both(v, vc, spec=spec):
        chains = jax.vmap(cr.init_state, (0, None, None, 0))(jax.random.split(kc, 5), spec,
                                                             params, vc)  # fmt: skip
        grads, new, aux = cr.cd_gradient(kg, spec, params, v, k, chains,
                                         sparsity_target=0.1, sparsity_cost=0.3)  # fmt: skip
        fe = jax.vmap(cr.free_energy, (None, None, 0))
        want = jax.grad(lambda p: jnp.mean(fe(spec, p, v)) - jnp.mean(fe(spec, p, new.v)))(params)
        q = jax.vmap(lambda x: cr.hidden_probs(spec, params, x)[0])(v).mean((0, 1, 2))
        return grads, want, q, aux, new

    grads, want, q, aux, new = both(v, vc)
    np.testing.assert_allclose(aux.hidden_mean, q, atol=ATOL)
    np.testing.assert_allclose(grads.W, want.W, rtol=1e-5, atol=ATOL)
    np.testing.assert_allclose(grads.a, want.a, rtol=1e-5, atol=ATOL)
    np.testing.assert_allclose(grads.b, want.b + 0.3 * (q - 0.1), rtol=1e-5, atol=ATOL)
    assert bool(jax.jit(jax.vmap(lambda h: cr.feasible(spec, h)))(new.h).all())
