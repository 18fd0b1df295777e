"""RNN-RBM and conditional RBM (egm.models.rnn_rbm) against exact answers on tiny models.

Ground truth: ``log Z_t`` of each frame's RBM by enumeration (egm.estimators.exact), and the
sequence probability ``p(v_1..v_T) = Π_t p(v_t | v_<t)`` summed over every sequence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError
from egm.estimators.exact import all_binary_states
from egm.models import rnn_rbm as seq


def _rnn(key, V=3, H=2, U=2, scale=0.7):
    p = seq.rnn_rbm_init(key, V, H, U, scale=scale)
    k = jax.random.split(jax.random.fold_in(key, 1), 4)
    return p._replace(b_v=jax.random.normal(k[0], (V,)) * 0.5, b_h=jax.random.normal(k[1], (H,)),
                      b_u=jax.random.normal(k[2], (U,)), u0=jax.random.normal(k[3], (U,)))  # fmt: skip


def _crbm(key, V=3, H=2, order=2):
    p = seq.crbm_init(key, V, H, order, scale=0.7)
    return p._replace(b_v=jnp.linspace(-0.5, 0.5, V), b_h=jnp.linspace(0.3, -0.3, H))


@pytest.mark.parametrize("make", [_rnn, _crbm], ids=["rnn_rbm", "crbm"])
def test_sequence_probabilities_sum_to_one(make):
    """Σ over all 2^(V·T) sequences of exp(Σ_t [-F_t(v_t) - log Z_t]) = 1 holds only if every
    frame's biases depend on the past alone and log Z_t is the frame's exact partition
    function; float32 sums of 512 terms are good to ~1e-6 (tolerance 1e-5).  Scored by the
    evaluation's one-program path (split_log_likelihood_exact, every frame real)."""
    p = make(jax.random.key(0))
    V, T = 3, 3
    seqs = all_binary_states(V * T).reshape(-1, T, V)
    ll, v, _, _ = seq.split_log_likelihood_exact(p, seqs, jnp.ones(seqs.shape[:2]))
    np.testing.assert_array_equal(v, np.asarray(seqs).reshape(-1, V))  # frames in order
    per_seq = jax.nn.logsumexp(jnp.asarray(ll).reshape(-1, T).sum(1))
    assert float(jnp.exp(per_seq)) == pytest.approx(1.0, abs=1e-5)


def test_crbm_past_window_and_biases():
    roll = jnp.arange(12.0).reshape(4, 3)
    past = seq.past_window(roll, 2)
    np.testing.assert_array_equal(past[0], np.zeros(6))
    np.testing.assert_array_equal(past[1], np.r_[roll[0], np.zeros(3)])
    np.testing.assert_array_equal(past[3], np.r_[roll[2], roll[1]])
    p = _crbm(jax.random.key(1))
    b_v, b_h = seq.frame_biases(p, roll)
    np.testing.assert_allclose(b_v[2], p.b_v + np.r_[roll[1], roll[0]] @ p.A, rtol=1e-6)
    np.testing.assert_allclose(b_h[0], p.b_h, rtol=1e-6)


def test_rnn_states_follow_the_recursion():
    p = _rnn(jax.random.key(2))
    roll = jax.random.bernoulli(jax.random.key(3), 0.5, (5, 3)).astype(jnp.float32)
    u = seq.rnn_states(p, roll)
    want, prev = [], p.u0
    for t in range(5):
        want.append(prev)
        prev = jnp.tanh(p.b_u + prev @ p.W_uu + roll[t] @ p.W_vu)
    np.testing.assert_allclose(u, np.stack(want), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_cd_surrogate_gradient_is_the_exact_gradient_in_expectation():
    """E over the negatives of ∇C equals -∇ log p(v_1..v_T) when v* ~ p_t exactly (module
    docstring of egm.models.rnn_rbm).  With k = 30 sweeps on a 3x2 RBM whose couplings are
    ~0.7 the chain's distance to p_t is below 1e-6 (its second eigenvalue is < 0.6, and
    0.6^30 ≈ 2e-7), so the Monte-Carlo mean over M = 4000 independent keys differs from the
    exact gradient (jax.grad of the enumerated log-likelihood) by noise only: each component
    within z = 4.5 standard errors of the mean (sd over keys / √M; over the ~40 components the
    chance of a false alarm is ~3e-4), plus 1e-5 for float32 rounding."""
    p = _rnn(jax.random.key(4))
    roll = jax.random.bernoulli(jax.random.key(5), 0.5, (4, 3)).astype(jnp.float32)
    mask = jnp.ones((4,))
    exact = jax.grad(lambda q: -seq.sequence_log_likelihood_exact(q, roll))(p)
    g = jax.jit(jax.vmap(jax.grad(seq.cd_surrogate, argnums=1), in_axes=(0, None, None, None, None)),
                static_argnums=4)  # fmt: skip
    M = 4000
    mc = g(jax.random.split(jax.random.key(6), M), p, roll, mask, 30)
    for name, e, s in zip(p._fields, exact, mc, strict=True):
        mean, se = np.asarray(s.mean(0)), np.asarray(s.std(0, ddof=1)) / np.sqrt(M)
        assert np.all(np.abs(mean - np.asarray(e)) <= 4.5 * se + 1e-5), name


def test_padding_does_not_change_the_gradient():
    """Frames after a sequence's end are masked: whatever they hold, the gradient is the same
    bit for bit (same key, same shapes; the RNN at t sees only frames before t)."""
    p = _rnn(jax.random.key(7), V=4, H=3, U=2)
    roll = jax.random.bernoulli(jax.random.key(8), 0.5, (2, 6, 4)).astype(jnp.float32)
    mask = jnp.asarray([[1.0] * 6, [1.0] * 3 + [0.0] * 3])
    other = roll.at[1, 3:].set(1.0 - roll[1, 3:])
    obj = jax.jit(seq.sequence_objective(2))
    a = obj(p, {"rolls": roll, "mask": mask}, jax.random.key(9), (), ())
    b = obj(p, {"rolls": other, "mask": mask}, jax.random.key(9), (), ())
    for x, y in zip(jax.tree.leaves(a.grads), jax.tree.leaves(b.grads), strict=True):
        np.testing.assert_array_equal(x, y)
    assert float(a.metrics["free_energy_gap"]) == float(b.metrics["free_energy_gap"])
    # the evaluation scores only the real frames: the padded piece's frame log-likelihoods sum
    # to the unpadded piece's exact log-likelihood (float32 sums of 3 terms: rtol 1e-5)
    ll, v, _, _ = seq.split_log_likelihood_exact(p, other, mask)
    assert v.shape == (9, 4)
    want = jax.jit(seq.sequence_log_likelihood_exact)(p, roll[1, :3])
    assert float(ll[6:].sum()) == pytest.approx(float(want), rel=1e-5)


@pytest.mark.slow
def test_frame_cd_gradient_is_exact_when_the_couplings_are_zero():
    """Pretraining's CD-1 (frame_cd_objective): with W = 0 one Gibbs sweep draws v* exactly
    from the RBM (v independent of h, v ~ σ(b)), so E[∇] is the exact gradient of the mean
    negative log-likelihood of the batch (jax.grad of -F(v) - log Z, log Z enumerated).  Each
    component of the mean over M = 4000 keys within z = 4.5 standard errors (over ~20
    components a false alarm has chance ~1e-4), plus 1e-5 for float32 rounding."""
    from egm.energies import rbm
    from egm.estimators.exact import rbm_log_partition

    p = rbm.RBMParams(W=jnp.zeros((4, 3)), b=jnp.asarray([0.5, -1.0, 0.2, 0.0]),
                  c=jnp.asarray([0.3, -0.4, 1.0]))  # fmt: skip
    v = jax.random.bernoulli(jax.random.key(20), 0.5, (5, 4)).astype(jnp.float32)
    nll = lambda q: jnp.mean(jax.vmap(rbm.free_energy, in_axes=(None, 0))(q, v)) + \
        rbm_log_partition(q)  # fmt: skip
    exact = jax.grad(nll)(p)
    obj = seq.frame_cd_objective(1)
    M = 4000
    keys = jax.random.split(jax.random.key(21), M)
    g = jax.jit(jax.vmap(lambda k: obj(p, v, k, (), ()).grads))(keys)
    for name, e, s in zip(p._fields, exact, g, strict=True):
        mean, se = np.asarray(s.mean(0)), np.asarray(s.std(0, ddof=1)) / np.sqrt(M)
        assert np.all(np.abs(mean - np.asarray(e)) <= 4.5 * se + 1e-5), name


@pytest.mark.slow
def test_frame_ais_matches_exact_log_partition():
    """AIS log Ẑ_t of 20 frames' RBMs (10 visible, 4 hidden, couplings ~N(0, 1)) against
    enumeration: each within z = 4.5 of its delta-method standard error (over 20 frames a
    false alarm has chance ~1e-4) plus the bias of log mean w, ≈ -Var(w/E w)/(2n) = -se²/2,
    below 0.005 for the se < 0.1 asserted first (measured 0.02-0.05 with 64 chains)."""
    W = jax.random.normal(jax.random.key(10), (10, 4))
    b_v = jax.random.normal(jax.random.key(11), (20, 10)) - 1.0
    b_h = jax.random.normal(jax.random.key(12), (20, 4))
    want = np.asarray(seq.log_partition_exact(W, b_v, b_h))
    got, se = map(np.asarray, seq.log_partition_ais(jax.random.key(13), W, b_v, b_h,
                                                    n_chains=64, n_temps=300, batch=8))  # fmt: skip
    assert np.all(se < 0.1)
    assert np.all(np.abs(got - want) <= 4.5 * se + 0.005), (got - want, se)


@pytest.mark.slow
def test_gibbs_marginals_and_accuracy():
    """Rao-Blackwellised P(v_i = 1 | h) averaged over n = 4000 independent chains after 20
    sweeps (mixed: couplings ~0.7 on a 5x3 RBM) has standard error ≤ sqrt(1/(4n)) = 0.0079;
    tolerance 5 of those, 0.04."""
    W = 0.7 * jax.random.normal(jax.random.key(14), (5, 3))
    b_v, b_h = jnp.linspace(-1, 1, 15).reshape(3, 5), jnp.zeros((3, 3))
    want = seq.marginals_exact(W, b_v, b_h)
    got = seq.marginals_gibbs(jax.random.key(15), W, b_v, b_h, n_chains=4000, sweeps=20)
    np.testing.assert_allclose(got, want, atol=0.04)
    acc, counts = seq.frame_accuracy(
        np.array([[1, 1, 0], [0, 0, 1]]), np.array([[1, 0, 0], [0, 1, 1]])
    )
    assert counts == {"tp": 2, "fp": 1, "fn": 1} and acc == 0.5


@pytest.mark.slow
def test_generate_is_reproducible_and_binary():
    p = _rnn(jax.random.key(16), V=4, H=3)
    a = seq.generate(jax.random.key(17), p, 7, sweeps=3)
    assert a.shape == (7, 4) and set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, seq.generate(jax.random.key(17), p, 7, sweeps=3))
    c = seq.generate(jax.random.key(17), _crbm(jax.random.key(1), V=4), 5, sweeps=2)
    assert c.shape == (5, 4)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="n_recurrent"):
        seq.rnn_rbm_init(jax.random.key(0), 4, 3, 0)
    with pytest.raises(ConfigError, match="k \\(Gibbs"):
        seq.sequence_objective(0)
    with pytest.raises(ConfigError, match="limit"):
        seq.log_partition_exact(jnp.zeros((30, 30)), jnp.zeros((1, 30)), jnp.zeros((1, 30)))
    with pytest.raises(ConfigError, match="pretrained RBM"):
        seq.rnn_rbm_init(
            jax.random.key(0),
            4,
            3,
            2,
            rbm_params=seq.frame_rbm(*[jnp.zeros(s) for s in ((3, 3), (3,), (3,))]),
        )
