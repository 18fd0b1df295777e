"""RNN-NADE (egm.models.rnn_nade) against exact answers on tiny models.

Ground truth: a float64 numpy transcription of the model's definition (the RNN recursion and
each frame's NADE conditionals, one unit at a time), and the sequence probability summed
over every sequence; sampling against the enumerated laws (tolerances from tests/_stats.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import histogram, tv, tv_tolerance

from egm.errors import ConfigError
from egm.estimators.exact import all_binary_states
from egm.models import rnn_nade as rn


def _model(key, V=3, H=2, U=2, scale=0.8) -> rn.RNNNADEParams:
    p = rn.rnn_nade_init(key, V, H, U, scale=scale)
    k = jax.random.split(jax.random.fold_in(key, 1), 4)
    return p._replace(b_v=jax.random.normal(k[0], (V,)) * 0.5, b_h=jax.random.normal(k[1], (H,)),
                      b_u=jax.random.normal(k[2], (U,)), u0=jax.random.normal(k[3], (U,)))  # fmt: skip


def _reference(p: rn.RNNNADEParams, roll: np.ndarray) -> np.ndarray:
    """log p(v_t | v_<t) per frame in float64, straight from the definitions."""
    q = {k: np.asarray(v, np.float64) for k, v in p._asdict().items()}
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))
    u, out = q["u0"], []
    for v in np.asarray(roll, np.float64):
        b_v, b_h = q["b_v"] + u @ q["W_uv"], q["b_h"] + u @ q["W_uh"]
        ll, a = 0.0, b_h.copy()
        for i, x in enumerate(v):
            p1 = sig(b_v[i] + q["V"][i] @ sig(a))
            ll += np.log(p1 if x else 1.0 - p1)
            a = a + x * q["W"][i]
        out.append(ll)
        u = np.tanh(q["b_u"] + u @ q["W_uu"] + v @ q["W_vu"])
    return np.array(out)


@pytest.mark.slow  # test_gradient_through_time_equals_autodiff_of_the_definition keeps the claim
def test_frame_log_probs_match_the_definition():
    """The per-frame conditionals through nade_logits with one bias row per frame equal the
    float64 unit-by-unit definition; float32 sums of a few terms are good to ~1e-6 relative
    (tolerance 1e-5)."""
    p = _model(jax.random.key(0), V=5, H=4, U=3)
    roll = np.asarray(jax.random.bernoulli(jax.random.key(1), 0.4, (6, 5)), np.float32)
    np.testing.assert_allclose(rn.frame_log_probs(p, jnp.asarray(roll)), _reference(p, roll),
                               rtol=1e-5)  # fmt: skip


def test_sequence_probabilities_sum_to_one():
    """Σ over all 2^(V·T) sequences of Π_t p(v_t | v_<t) = 1 holds only if every frame's
    biases depend on the past alone and each conditional is normalised; float32 sums of 512
    terms are good to ~1e-6 (tolerance 1e-5).  Through the evaluation path
    (split_log_likelihood, every frame real)."""
    p = _model(jax.random.key(2))
    V, T = 3, 3
    seqs = all_binary_states(V * T).reshape(-1, T, V)
    ll, v, b_v, b_h = rn.split_log_likelihood(p, seqs, jnp.ones(seqs.shape[:2]))
    np.testing.assert_array_equal(v, np.asarray(seqs).reshape(-1, V))
    assert b_v.shape == (512 * T, V) and b_h.shape == (512 * T, 2)
    assert float(jnp.exp(jax.nn.logsumexp(jnp.asarray(ll).reshape(-1, T).sum(1)))) == (
        pytest.approx(1.0, abs=1e-5)
    )


def test_gradient_through_time_equals_autodiff_of_the_definition():
    """The training objective's gradient (nade_logits' hand-written VJP with per-frame biases,
    back-propagated through the RNN) equals autodiff of a plain jnp version of the same masked
    mean (the running sums as an exclusive cumsum); both float32, so agreement to float32 rounding of ~50-term sums
    (rtol 1e-4, atol 1e-6).  The padding frame (mask 0) must not contribute."""
    p = _model(jax.random.key(3), V=4, H=3, U=2)
    rolls = jax.random.bernoulli(jax.random.key(4), 0.5, (2, 4, 4)).astype(jnp.float32)
    mask = jnp.array([[1.0, 1, 1, 1], [1, 1, 1, 0]])

    def naive(q):
        def one(roll):
            def body(u, v):
                b_v, b_h = q.b_v + u @ q.W_uv, q.b_h + u @ q.W_uh
                xw = v[:, None] * q.W
                a = b_h + jnp.cumsum(xw, 0) - xw  # a_i = b_h + Σ_{j<i} v_j W_j
                lg = b_v + jnp.sum(q.V * jax.nn.sigmoid(a), 1)
                ll = jnp.sum(v * jax.nn.log_sigmoid(lg) + (1 - v) * jax.nn.log_sigmoid(-lg))
                return jnp.tanh(q.b_u + u @ q.W_uu + v @ q.W_vu), ll

            return jax.lax.scan(body, q.u0, roll)[1]

        return -jnp.sum(mask * jax.vmap(one)(rolls)) / jnp.sum(mask)

    obj = jax.jit(lambda q: rn.sequence_objective()(q, {"rolls": rolls, "mask": mask},
                                                    jax.random.key(0), (), ()))  # fmt: skip
    out = obj(p)
    assert float(out.metrics["loss"]) == pytest.approx(float(jax.jit(naive)(p)), rel=1e-5)
    for name, g, r in zip(p._fields, out.grads, jax.jit(jax.grad(naive))(p), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6, err_msg=name)


def test_generated_sequences_follow_the_exact_joint():
    """generate() draws (v_1, v_2) exactly: the histogram of M = 2^15 two-frame samples over
    the 2^8 sequences against Π_t p(v_t | v_<t) enumerated, within the TV bound of
    tests/_stats.py (chance failure ≤ 1e-6)."""
    p = _model(jax.random.key(5), V=4, H=3, U=2)
    seqs = all_binary_states(8).reshape(-1, 2, 4)
    truth = np.exp(np.asarray(rn.frame_log_probs(p, seqs)).sum(1))
    m = 2**15
    draws = jax.vmap(lambda k: rn.generate(k, p, 2))(jax.random.split(jax.random.key(6), m))
    idx = np.asarray(draws).reshape(m, 8).astype(int) @ (2 ** np.arange(7, -1, -1))
    assert tv(histogram(idx, 256), truth) <= tv_tolerance(truth, m)


@pytest.mark.slow  # test_generated_sequences_follow_the_exact_joint keeps the sampler's claim
def test_sampled_marginals_are_unbiased():
    """marginals_sampled against the exact P(v_i = 1 | past) of each frame's NADE, summed
    over the 2^4 frames: each Monte-Carlo mean of n = 4000 exact draws is within 5 standard
    errors sqrt(P(1-P)/n) (a chance failure ≈ 12 · 5.7e-7)."""
    p = _model(jax.random.key(7), V=4, H=3, U=2)
    roll = jnp.array([[1.0, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]])
    b_v, b_h = rn.frame_biases(p, roll)
    states = all_binary_states(4)
    n = 4000
    got = rn.marginals_sampled(jax.random.key(8), p, b_v, b_h, n_samples=n)
    # sequences [roll_<t, s, ...]: frame t's conditional reads only the frames before it
    past = jnp.tril(jnp.ones((3, 3)), -1)[:, :, None] * roll[None]  # past[t, f] = roll[f], f < t
    seqs = jnp.broadcast_to(past[:, None], (3, 16, 3, 4))
    seqs = seqs.at[jnp.arange(3), :, jnp.arange(3)].set(states)
    ll = np.asarray(rn.frame_log_probs(p, seqs))  # (t, state, frame)
    for t in range(3):
        exact = np.exp(ll[t, :, t]) @ np.asarray(states)
        se = np.sqrt(exact * (1 - exact) / n)
        assert np.all(np.abs(np.asarray(got[t]) - exact) <= 5 * se + 1e-6), t


def test_bad_arguments_are_refused():
    key = jax.random.key(0)
    z = lambda *s: np.zeros(s, np.float32)
    pre = rn.NADEFrameParams(z(5, 3), z(5, 3), z(5), z(3))
    with pytest.raises(ConfigError, match="pretrained NADE is 5x3"):
        rn.rnn_nade_init(key, 5, 4, 2, nade_params=pre)
    p = rn.RNNNADEParams(*pre, z(2, 5), z(2, 3), z(5, 2), z(2, 2), z(2), z(2))
    for call, match in ((lambda: rn.generate(key, p, 0), "n_steps"),
                        (lambda: rn.marginals_sampled(key, p, p.b_v[None], p.b_h[None],
                                                      n_samples=0), "n_samples"),
                        (lambda: rn.rnn_nade_init(key, 0, 3, 2), "n_visible")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            call()
