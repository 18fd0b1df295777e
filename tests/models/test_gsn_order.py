"""The GSN's layer update orders (egm.models.gsn: ``update="gauss_seidel"`` / ``"odd_even"``).

Exact checks against hand-written float64 schedules on tiny nets (σ = 0, no corruption, so a
transition is deterministic).  Where a chain has to sample ``x`` or ``y`` the tests make the
draw certain rather than likely: a visible bias ``c = +30`` gives ``σ(logit) = 1.0`` exactly
in float32 (``1 - e^{-z}`` rounds to 1 for ``z > 17.4``; the tests assert every visible logit
``> 18``) and ``bernoulli`` draws ``u < 1.0`` for every ``u ∈ [0, 1)``, so every sampled ``x``
is all ones; a label bias of 80 on label 0 keeps its logit more than 50 above the others
(asserted), beyond any float32 Gumbel difference ``categorical`` can draw (at most
``16.7 + 4.5`` in jax's default mode, ``44.4 + 4.5`` in its "highest"), so it always picks
label 0.  The chains are then deterministic and every quantity has a closed form.

Tolerances: the float64 reference carries a forward-error bound for the float32 run.  An
affine map ``Σ v W + b`` of ``n`` products computed in float32 from inputs known to ``±e``
errs by at most ``Σ e |W| + γ_n Σ (|v| + e) |W| + γ_n |b|`` (``γ_n = n u / (1 - n u)``,
``u = 2^{-24}``; Higham, *Accuracy and Stability*, §3.1); an input error ``δ`` of tanh
leaves at most ``|δ| (tanh'(a) + 0.77 |δ|)`` (mean-value theorem, ``|tanh''| < 0.77``);
log-sigmoid, log-softmax and logsumexp are 1-, 2- and 1-Lipschitz in the max-norm; XLA's
float32 tanh / log-sigmoid / exp / log are taken within ``8 u`` relative (a few ulps) each.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError
from egm.models import gsn

U = 2.0**-24
ULPS = 8 * U  # relative error allowed to each float32 elementwise function
D = 3


def _net(hidden, *, update="odd_even", sigma=0.0, post=0.0, level=0.0, k=0, c=None, seed=0):
    """A tiny GSN and float32 numpy parameters (no eager jax ops: each would be a compile):
    weights uniform on ``±2 sqrt(6 / (fan_in + fan_out))``, spread biases."""
    m = gsn.GSN(D, hidden, level, sigma, k, update, post).check()
    rng, sizes = np.random.default_rng(seed), (D, *hidden)
    u = lambda a, b: rng.uniform(-2, 2, (a, b)) * np.sqrt(6 / (a + b))  # noqa: E731
    p = {"W": [u(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)],
         "b": [np.linspace(-0.5, 0.5, n) * (i + 1) for i, n in enumerate(hidden)],
         "c": np.array([0.5, -1.0, 0.2]) if c is None else np.asarray(c)}  # fmt: skip
    if k:
        p["V"], p["d"] = u(k, hidden[0]), np.array([80.0] + [0.0] * (k - 1))
    return m, jax.tree.map(lambda a: np.asarray(a, np.float32), p)


class _R:
    """A float64 value and a bound on its float32 counterpart's error."""

    def __init__(self, v, e=0.0):
        self.v, self.e = np.asarray(v, np.float64), np.broadcast_to(e, np.shape(v)) + 0.0


def _f64(a):
    return np.asarray(a, np.float64)


def _aff(terms, bias):
    """``Σ v W + b`` with its float32 error bound (module docstring)."""
    n = sum(_f64(W).shape[0] for _, W in terms) + len(terms)
    g = n * U / (1 - n * U)
    v = sum(r.v @ _f64(W) for r, W in terms) + _f64(bias)
    e = sum(r.e @ np.abs(_f64(W)) + g * (np.abs(r.v) + r.e) @ np.abs(_f64(W)) for r, W in terms)
    return _R(v, e + g * np.abs(_f64(bias)))


def _tanh(a):
    """tanh with its bound: ``|tanh(a + δ) - tanh(a)| ≤ |δ| (tanh'(a) + 0.77 |δ|)``
    (``|tanh''| ≤ 4 / 3^{3/2} < 0.77``), plus the function's own ``8 u``."""
    v = np.tanh(a.v)
    return _R(v, a.e * (1 - v**2) + 0.77 * a.e**2 + ULPS)


def _step(update, p, xt, h, y=None):
    """One hand-written transition of a 2- or 3-layer GSN (σ = 0, x̃ = xt given): the new
    layers and the visible (and label) logits."""
    W, b = p["W"], p["b"]
    below = [(xt, W[0])] + ([(y, p["V"])] if y is not None else [])
    if len(W) == 2:  # both orders: h1 from (x̃, old h2), then h2 from the new h1
        h1 = _tanh(_aff([*below, (h[1], W[1].T)], b[0]))
        new = (h1, _tanh(_aff([(h1, W[1])], b[1])))
    elif update == "odd_even":  # odd half: h1, h3 from the old h2; even half: h2, x from them
        h1 = _tanh(_aff([*below, (h[1], W[1].T)], b[0]))
        h3 = _tanh(_aff([(h[1], W[2])], b[2]))
        new = (h1, _tanh(_aff([(h1, W[1]), (h3, W[2].T)], b[1])), h3)
    else:  # Gauss-Seidel: h1, h2, h3 in turn, each from the new layer below, old above
        h1 = _tanh(_aff([*below, (h[1], W[1].T)], b[0]))
        h2 = _tanh(_aff([(h1, W[1]), (h[2], W[2].T)], b[1]))
        new = (h1, h2, _tanh(_aff([(h2, W[2])], b[2])))
    lab = _aff([(new[0], p["V"].T)], p["d"]) if y is not None else None
    return new, _aff([(new[0], W[0].T)], p["c"]), lab


def _log_sig(z):  # log σ(z), 1-Lipschitz
    v = -np.logaddexp(0, -z.v)
    return _R(v, z.e + ULPS * (np.abs(v) + 1))


def _recon_nll(x, z):
    """-log p(x | h) = -Σ_i [x log σ(z) + (1 - x) log σ(-z)], with its bound."""
    pos, neg = _log_sig(z), _log_sig(_R(-z.v, z.e))
    v = -np.sum(x * pos.v + (1 - x) * neg.v, -1)
    return _R(v, np.sum(pos.e + neg.e, -1) + D * U * np.abs(v))


def _log_softmax(lab: _R) -> _R:
    """log softmax with its bound: 2-Lipschitz, and the subtraction of ~|l| sized terms."""
    v = lab.v - np.logaddexp.reduce(lab.v, -1, keepdims=True)
    return _R(v, 2 * lab.e.max(-1, keepdims=True) + ULPS * 2 * np.abs(lab.v).max(-1, keepdims=True))


def _close(got, ref: _R):
    """|float32 - float64| within the carried bound (plus ``8 u`` for the last rounding)."""
    got = np.asarray(got, np.float64)
    bound = ref.e + ULPS * np.abs(ref.v) + 1e-30
    assert np.all(np.abs(got - ref.v) <= bound), (np.max(np.abs(got - ref.v) / bound), ref.v)


def _state(m, seed=1):
    u = np.random.default_rng(seed).uniform(-0.9, 0.9, (4, sum(m.hidden))).astype(np.float32)
    return tuple(jnp.asarray(a) for a in np.split(u, np.cumsum(m.hidden)[:-1], 1))


X = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1]], np.float32)


def test_bad_update_and_post_sigma_are_refused():
    with pytest.raises(ConfigError, match=r"update must be one of \['gauss_seidel', 'odd_even'\]"):
        gsn.GSN(D, (4,), update="jacobi").check()
    with pytest.raises(ConfigError, match="post_sigma"):
        gsn.GSN(D, (4,), post_sigma=-0.1).check()
    with pytest.raises(ConfigError, match="update must be one of"):  # also where it is used
        gsn.transition(jax.random.key(0), gsn.GSN(D, (4,), update="odd"), {}, X, ())


def test_one_transition_is_the_hand_written_schedule():
    """From a non-zero state ``(x, h_{k-1})`` (σ = 0, no corruption: x̃ = x) one transition
    equals the float64 hand-written schedule (``_step``) within the carried float32 bound:
    odd/even with L = 2 (where it is also Gauss-Seidel's schedule: next test), and both
    orders with L = 3 for a discriminative net (label state ``y`` fed to h1 through ``V``,
    label logits compared too), whose two schedules give h2 and h3 more than 10 times the
    bounds apart, so each order is told from the other.  (L = 1 is the DAE reduction of
    tests/models/test_gsn.py, the same transition in both orders: next test.)"""
    y = np.array([[0.2, 0.5, 0.3], [1, 0, 0], [0, 0, 1], [0.6, 0.1, 0.3]], np.float32)
    for hidden, k, updates in (((4, 5), 0, ("odd_even",)), ((4, 5, 3), 3, gsn.UPDATES)):
        refs = []
        for update in updates:
            m, p = _net(hidden, update=update, k=k)
            hs, yk = _state(m), (jnp.asarray(y) if k else None)
            new, x_logits, y_logits = gsn.transition(
                jax.random.key(0), m, p, jnp.asarray(X), hs, yk
            )
            ref_h, ref_x, ref_y = _step(update, p, _R(X), [_R(h) for h in hs],
                                        _R(y, U) if k else None)  # fmt: skip
            for got, ref in zip(new, ref_h, strict=True):
                _close(got, ref)
            _close(x_logits, ref_x)
            if k:
                _close(y_logits, ref_y)
            refs.append(ref_h)
    for u, v in zip(refs[0][1:], refs[1][1:], strict=True):  # L = 3: h2 and h3
        assert np.max(np.abs(u.v - v.v)) > 10 * np.max(u.e + v.e)


@pytest.mark.parametrize("hidden", [(4,), (4, 5)])
def test_orders_agree_bit_for_bit_up_to_two_layers(hidden):
    """With noise on (σ = 2 before, 0.7 after the activation, salt-and-pepper 0.4) and a
    random state, one transition (new layers and logits) is identical bit for bit in both
    orders for L = 1 and 2: the same schedule (L = 1: h1 from x̃; L = 2: h1 from x̃ and the
    old h2, then h2 and x from the new h1), and layer l draws its noise from the same key in
    both (module docstring of gsn).  That they differ for L = 3 is the previous test."""
    outs = []
    for update in gsn.UPDATES:
        m, p = _net(hidden, update=update, sigma=2.0, post=0.7, level=0.4)
        t = gsn.transition(jax.random.key(3), m, p, jnp.asarray(X), _state(m))
        outs.append(jax.tree.leaves(t))
    assert len(outs[0]) == len(hidden) + 1
    assert all(np.array_equal(a, b) for a, b in zip(*outs, strict=True))


def _chain(update, p, hidden, x0: _R, n, lab=None, later=None):
    """``n`` hand-written transitions from ``x0`` with h = 0, each later one from ``later``
    (default x = 1, the certain draw) or, when ``lab`` is given (the clamped label chain),
    from ``x0`` again with the label state ``lab(k)``: a list of (h, visible logits, label
    logits)."""
    h, out = [_R(np.zeros((len(x0.v), w))) for w in hidden], []
    later = _R(np.ones_like(x0.v)) if later is None else later
    for k in range(n):
        xk = x0 if k == 0 or lab is not None else later
        h, z, ly = _step(update, p, xk, h, None if lab is None else lab(k))
        out.append((h, z, ly))
    return out


def _mean(rs: list[_R]) -> _R:
    """Mean of float32 values over all entries: the terms' bounds plus ``γ_n`` of the sum."""
    v = np.concatenate([np.ravel(r.v) for r in rs])
    e = np.concatenate([np.ravel(r.e) for r in rs])
    return _R(v.mean(), e.mean() + len(v) * U * np.abs(v).mean())


def test_odd_even_chain_and_walkback_follow_the_schedule():
    """L = 3, odd/even, σ = 0, no corruption, visible bias +30 (every sampled x is all ones,
    module docstring).  ``sample_chain`` from X for 3 steps with unit 1 clamped keeps that
    unit at X bit for bit (``x`` and ``mean``), the others at 1, and ``h1_k`` of the
    hand-written chain (``x_0 = X``, ``h_0 = 0``, then ``x_k = (1, X_1, 1)``);
    ``walkback_loss`` over 3 steps is the mean of ``-log p(X | h_k)`` of the free chain
    (``x_k = 1``); each within the carried float32 bound.  The Gauss-Seidel chain's ``h1_2``
    differs by more than 10 times the bounds."""
    hidden = (4, 5, 3)
    m, p = _net(hidden, c=[30.0, 30.0, 30.0], seed=5)
    held = X.copy()
    held[:, [0, 2]] = 1
    clamped = _chain("odd_even", p, hidden, _R(X), 3, later=_R(held))
    assert min(float(z.v.min()) for _, z, _ in clamped) > 18
    clamp = np.zeros(X.shape, bool)
    clamp[:, 1] = True
    got = jax.jit(lambda k: gsn.sample_chain(k, m, p, jnp.asarray(X), 3, clamp=clamp))(
        jax.random.key(0))  # fmt: skip
    assert np.array_equal(np.asarray(got.x), np.broadcast_to(held, (3, *X.shape)))
    assert np.array_equal(np.asarray(got.mean)[:, :, 1], np.broadcast_to(X[:, 1], (3, 4)))
    for k, (h, _, _) in enumerate(clamped):
        _close(got.h1[k], h[0])
    ref = _chain("odd_even", p, hidden, _R(X), 3)
    assert min(float(z.v.min()) for _, z, _ in ref) > 18
    costs = [_recon_nll(X, z) for _, z, _ in ref]
    loss, metrics = jax.jit(lambda k: gsn.walkback_loss(k, m, p, jnp.asarray(X), 3))(
        jax.random.key(1))  # fmt: skip
    _close(loss, _mean(costs))
    _close(metrics["recon_nll"], _mean(costs[:1]))
    gs = _chain("gauss_seidel", p, hidden, _R(X), 3)[1][0][0]  # h1 of step 2
    assert np.max(np.abs(gs.v - ref[1][0][0].v)) > 10 * np.max(gs.e + ref[1][0][0].e)


@pytest.mark.slow  # the default test_odd_even_chain_and_walkback_follow_the_schedule keeps the
# claim for the chain whose h1 states CSL reads (and test_gsn.py checks CSL's formula)
def test_odd_even_csl_follows_the_schedule():
    """The net of the previous test: ``csl_log_likelihood`` (burn-in 1: its chain restarts
    from x = 1 with h = 0) over 2 kept states is ``log ½ Σ_s p(x | h1_s)`` of the
    hand-written odd/even chain from x = 1, within the carried float32 bound.  The burn-in
    step starts from random x, so the certain draw needs every logit > 18 for every state:
    ``30 - max_i Σ_j |W_1[i, j]| > 18`` (|h| ≤ 1)."""
    hidden = (4, 5, 3)
    m, p = _net(hidden, c=[30.0, 30.0, 30.0], seed=5)
    assert 30 - np.abs(p["W"][0]).sum(1).max() > 18
    lp = [_recon_nll(X, z) for _, z, _ in _chain("odd_even", p, hidden, _R(np.ones((1, D))), 2)]
    v = np.stack([-r.v for r in lp], 1)  # (4 test rows, 2 states): log p(x | h_s)
    e = np.stack([r.e for r in lp], 1).max(1)  # logsumexp is 1-Lipschitz in the max-norm
    csl = jax.jit(lambda k: gsn.csl_log_likelihood(k, m, p, jnp.asarray(X), n_chains=1,
                  n_steps=2, burn_in=1, chunk=4))(jax.random.key(2))  # fmt: skip
    _close(csl, _R(np.logaddexp.reduce(v, 1) - np.log(2), e + 4 * ULPS * np.abs(v).max(1)))


@pytest.mark.slow  # the default test_one_transition_is_the_hand_written_schedule keeps the
# claim for the discriminative transition (y through V); this adds the chains built on it
def test_odd_even_discriminative_chain_follows_the_schedule():
    """The discriminative GSN (K = 3, label bias 80: every drawn label is 0, module
    docstring), L = 3, odd/even, σ = 0, no corruption.  ``walkback_loss`` over 2 steps with
    ``recon_weight`` ½ and :func:`classify` over 2 steps equal the hand-written clamped chain:
    step 1 from the uniform label state and h = 0, step 2 from label 0 and step 1's h, x
    held at the data.  Labels 1 and 2 sit ~80 nats down, so their NLLs and probabilities move
    with h1 one for one; the Gauss-Seidel chain's loss differs by > 10 times the bounds."""
    hidden = (4, 5, 3)
    m, p = _net(hidden, k=3, seed=6)
    y = np.array([1, 2, 1, 0])
    lab = lambda k: _R(np.full((4, 3), 1 / 3), U) if k == 0 else _R(np.eye(3)[[0] * 4])  # noqa: E731

    def terms(update):
        out = []
        for _, z, ly in _chain(update, p, hidden, _R(X), 2, lab):
            assert float(np.min(ly.v[:, 0] - ly.v[:, 1:].max(1))) > 50
            logp = _log_softmax(ly)
            nll = _R(-logp.v[np.arange(4), y], logp.e[:, 0])
            total = _R(0.5 * _recon_nll(X, z).v + nll.v, 0.5 * _recon_nll(X, z).e + nll.e)
            out.append((total, nll, _R(np.exp(logp.v), np.exp(logp.v) * (logp.e + ULPS))))
        return out

    ref = terms("odd_even")
    loss, metrics = jax.jit(lambda k: gsn.walkback_loss(k, m, p, jnp.asarray(X), 2, y,
                            recon_weight=0.5))(jax.random.key(0))  # fmt: skip
    _close(loss, _mean([t for t, _, _ in ref]))
    _close(metrics["label_nll"], _mean([n for _, n, _ in ref]))
    gs = _mean([t for t, _, _ in terms("gauss_seidel")])
    assert abs(gs.v - _mean([t for t, _, _ in ref]).v) > 10 * (
        gs.e + _mean([t for t, _, _ in ref]).e
    )
    probs = jax.jit(lambda k: gsn.classify(k, m, p, jnp.asarray(X), 2))(jax.random.key(1))
    (_, _, q1), (_, _, q2) = ref
    _close(probs, _R((q1.v + q2.v) / 2, (q1.e + q2.e) / 2 + U * (q1.v + q2.v)))


def test_noiseless_h1_leaves_the_first_layer_and_the_visible_logits_noise_free():
    """``noiseless_h1``: with σ = σ_post = 2 on a 2-layer net (no corruption), one transition
    gives ``h¹`` and the visible logits bit for bit as the noise-free net does (``h¹`` reads
    only the given state), whatever the key, while ``h²`` still gets its noise."""
    quiet, p = _net((4, 5), sigma=2.0, post=2.0)
    quiet = quiet._replace(noiseless_h1=True)
    plain = quiet._replace(sigma=0.0, post_sigma=0.0, noiseless_h1=False)
    h = _state(quiet)
    ref, ref_logits, _ = gsn.transition(jax.random.key(0), plain, p, X, h)
    for seed in (1, 2):
        new, logits, _ = gsn.transition(jax.random.key(seed), quiet, p, X, h)
        np.testing.assert_array_equal(new[0], ref[0])
        np.testing.assert_array_equal(logits, ref_logits)
        assert np.max(np.abs(np.asarray(new[1]) - np.asarray(ref[1]))) > 0.1
