"""Tests of experiments/benchmarks/budget.py: budget-matched comparisons with peers.

Peer-free (run everywhere): the interleaved race on a fake clock (epoch counts and order
computed by hand), the winner rule, and the argument checks.  With the peers of the
``bench`` extra (skipped without them): the weight converters against the peers' own
computations, the sklearn contender against ``BernoulliRBM.fit``, and a ``--quick`` run of
each pair.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.energies import rbm
from egm.errors import ConfigError
from egm.eval.record import LogLikelihood


@pytest.fixture(scope="module")
def budget(load_bench):
    return load_bench("budget")


# --------------------------------------------------------------------------- peer-free


class _FakeClock:
    """``perf_counter``/``sleep`` stand-ins: epochs advance the clock by fixed amounts."""

    def __init__(self):
        self.t = 0.0
        self.calls: list[str] = []

    def perf_counter(self):
        return self.t

    def sleep(self, s):
        self.t += s  # settling time passes on the clock but is not charged to anyone

    def contender(self, budget, name, durations):
        it = iter(durations)

        def epoch():
            self.calls.append(name)
            self.t += next(it)

        return budget.Contender(epoch, lambda: None)


def test_race_schedule_on_a_fake_clock(budget):
    """Budget 10 s in 2 slices (targets 5 and 10 s).  ``a``: first epoch 4 s (compilation),
    then 1 s each.  Slice 1: a runs its 4 s epoch (4 + 4 > 5: stop), b runs 3 s (3 + 3 > 5).
    Slice 2 (order rotated: b first): b runs while spent + 3 <= 10: 6, 9, then stop; a runs
    while spent + expected <= 10 (expected: the first epoch's 4 s while it is the only one,
    then the median of the later ones, 1 s): 4 + 4 = 8 -> 5, then 1 s epochs to exactly 10.  So a: 7 epochs,
    10 s; b: 3 epochs, 9 s; and the settle pauses (1 s each, 4 of them) are not counted."""
    clock = _FakeClock()
    cont = {
        "a": clock.contender(budget, "a", [4.0] + [1.0] * 20),
        "b": clock.contender(budget, "b", [3.0] * 20),
    }
    res = budget.race(
        cont, 10.0, slices=2, settle_s=1.0, clock=clock.perf_counter, sleep=clock.sleep
    )
    assert res["a"] == budget.RaceResult(7, 10.0, 4.0)
    assert res["b"] == budget.RaceResult(3, 9.0, 3.0)
    assert clock.calls == ["a", "b", "b", "b"] + ["a"] * 6
    assert clock.t == 10.0 + 9.0 + 4 * 1.0


def test_race_is_not_stopped_by_one_slow_epoch(budget):
    """Budget 10 s, one slice; epochs 1, 1, 5, 1, 1, ... s.  The expected epoch time is the
    median after the first: after the 5 s epoch (spent 7) it is median(1, 5) = 3, 7 + 3 <= 10,
    so it goes on (spent 8, then median(1, 5, 1) = 1: 9, 10) and stops at exactly 10 s after
    6 epochs; judging by the last epoch alone (7 + 5 > 10) would have stopped at 7 s."""
    clock = _FakeClock()
    a = {"a": clock.contender(budget, "a", [1.0, 1.0, 5.0] + [1.0] * 10)}
    res = budget.race(a, 10.0, slices=1, clock=clock.perf_counter, sleep=clock.sleep)
    assert res["a"] == budget.RaceResult(6, 10.0, 1.0)


def test_race_runs_at_least_one_epoch(budget):
    """An epoch longer than the whole budget still runs once (the only way to score a model);
    nothing more is planned after it."""
    clock = _FakeClock()
    a = {"a": clock.contender(budget, "a", [50.0] * 3)}
    res = budget.race(a, 10.0, slices=3, clock=clock.perf_counter, sleep=clock.sleep)
    assert res["a"] == budget.RaceResult(1, 50.0, 50.0)


def test_race_rejects_a_bad_budget(budget):
    with pytest.raises(ConfigError, match="budget"):
        budget.race({}, 0.0)
    with pytest.raises(ConfigError, match="slices"):
        budget.race({}, 1.0, slices=0)
    with pytest.raises(ConfigError, match="pairs"):
        budget.main(["--quick", "--pairs", "gan"])
    with pytest.raises(ConfigError, match="budget"):
        budget.main(["--quick", "--budget", "-1"])


def _score(budget, per, stderr=None):
    rec = LogLikelihood.from_per_example(per, "importance", stderr=stderr)
    return budget.Score(rec, np.asarray(per))


def test_winner_rule(budget):
    """Per-example values x + 1 vs x (paired differences all 1: paired se 0): diff = 1 and its
    se is the Monte-Carlo part alone, hypot(0.3, 0.4) = 0.5; 1 > 2 x 0.5 is false at the
    boundary (tie), and with se 0.3 (hypot(0.18, 0.24)) egm wins; swapped, the peer wins.
    Differences that vary (1 +- 1 over 4 examples, sd 1.155) add sd/sqrt(4) = 0.577."""
    x = np.array([-90.0, -100.0, -80.0, -95.0])
    c = budget.compare(_score(budget, x + 1, 0.3), _score(budget, x, 0.4))
    assert c["diff"] == 1.0 and c["diff_se"] == pytest.approx(0.5) and c["winner"] == "tie"
    c = budget.compare(_score(budget, x + 1, 0.18), _score(budget, x, 0.24))
    assert c["diff_se"] == pytest.approx(0.3) and c["winner"] == "egm"
    assert budget.compare(_score(budget, x, 0.18), _score(budget, x + 1, 0.24))["winner"] == "peer"
    d = np.array([0.0, 2.0, 0.0, 2.0])
    c = budget.compare(_score(budget, x + d), _score(budget, x))  # exact: no MC part
    assert c["diff_se_mc"] == 0.0
    assert c["diff_se"] == pytest.approx(np.std(d, ddof=1) / 2, rel=1e-3)
    assert c["winner"] == "tie"  # 1 <= 2 x 0.577


# --------------------------------------------------------------------------- converters


def test_sklearn_rbm_conversion_matches_sklearn(budget):
    """sklearn's ``transform`` is P(h=1|v) and its ``score_samples`` is the stochastic
    pseudo-likelihood ``-D softplus(F(v) - F(ṽ))`` with one bit flipped per example at
    ``RandomState(random_state).randint(0, D, N)``; egm computes both from the converted
    parameters with the same flipped bits.  Tolerance: egm works in float32, sklearn in
    float64; a free energy here is a sum of <= 12 + 5 terms of size <= ~10, so its float32
    error is <= ~17 x 10 x 2^-24 ≈ 1e-5, and the score multiplies a difference of two by
    D = 12 through softplus (slope <= 1): <= 3e-4; hidden probabilities err by <= 1e-6."""
    pytest.importorskip("sklearn")
    from sklearn.neural_network import BernoulliRBM

    rng = np.random.default_rng(0)
    X = (rng.random((40, 12)) < 0.4).astype(np.float64)
    m = BernoulliRBM(n_components=5, learning_rate=0.1, batch_size=10, n_iter=20, random_state=3)
    m.fit(X)
    p = budget.sklearn_rbm_params(m)
    assert p.W.shape == (12, 5) and p.b.shape == (12,) and p.c.shape == (5,)
    v = jnp.asarray(X, jnp.float32)
    h = jax.vmap(rbm.hidden_probs, in_axes=(None, 0))(p, v)
    np.testing.assert_allclose(np.asarray(h), m.transform(X), atol=1e-6)
    idx = np.random.RandomState(3).randint(0, 12, 40)
    flipped = v.at[jnp.arange(40), idx].set(1.0 - v[jnp.arange(40), idx])
    fe = jax.vmap(rbm.free_energy, in_axes=(None, 0))
    ours = -12 * jax.nn.softplus(fe(p, v) - fe(p, flipped))
    np.testing.assert_allclose(np.asarray(ours), m.score_samples(X), atol=3e-4)


def test_sklearn_contender_is_fit(budget):
    """Started from fit's own initial draw (``components_ ~ N(0, 0.01)`` from
    ``RandomState(seed)``, zero biases) and sampling from the same stream, two epochs of the
    contender are ``BernoulliRBM(n_iter=2).fit`` on the same float32 data: the same float32
    operations in the same order, so equal up to float32 rounding differences of BLAS paths
    (Fortran vs C order of ``components_``): 1e-6 on weights of size ~0.1."""
    pytest.importorskip("sklearn")
    from sklearn.neural_network import BernoulliRBM

    X = (np.random.default_rng(1).random((60, 10)) < 0.3).astype(np.float32)
    ref = BernoulliRBM(n_components=4, learning_rate=0.05, batch_size=20, n_iter=2, random_state=7)
    ref.fit(X)
    rs = np.random.RandomState(7)
    W0 = rs.normal(0, 0.01, (4, 10)).T
    p0 = rbm.RBMParams(W=W0, b=np.zeros(10), c=np.zeros(4))
    cont = budget.sklearn_rbm_contender(p0, X, 20, 0.05, seed=7, rng=rs)
    cont.epoch()
    cont.epoch()
    got = cont.params()
    np.testing.assert_allclose(np.asarray(got.W), ref.components_.T, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got.b), ref.intercept_visible_, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got.c), ref.intercept_hidden_, atol=1e-6)
    assert not np.allclose(np.asarray(got.W), W0)  # it trained


def test_torch_nade_conversion_same_log_likelihood(budget, load_bench):
    """A PyTorch NADE with random parameters and egm's NADE on the converted ones give the
    same exact log p(x) on five digits.  Tolerance 1e-3 nats: 784 conditionals, each a
    float32 log-sigmoid of a logit of size <= ~5 rounded to ~5 x 2^-24 x sqrt(H) relative
    error in the H-term dot product: summed, << 1e-3 (nade.py's check: 1.2e-4 measured)."""
    pytest.importorskip("torch")
    import _torch_nade
    import torch

    from egm.data import binarize_fixed, load_mnist
    from egm.eval import autoregressive

    rng = np.random.default_rng(2)
    D, H = 784, 16
    p = {"W": rng.normal(0, 0.1, (D, H)), "c": rng.normal(0, 0.5, H)}
    p |= {"V": rng.normal(0, 0.5, (D, H)), "b": rng.normal(0, 1.0, D)}
    tm = _torch_nade.make({"params": p}, "loop")
    params = budget.torch_nade_params(tm)
    x = binarize_fixed(load_mnist("test", source="embedded").x[:5], 0)
    net = autoregressive.binary_autoregressive("nade", D, (H,))
    ours = autoregressive.member_log_probs(net, params, None, x)[0]
    with torch.no_grad():
        theirs = tm.log_prob(torch.tensor(np.asarray(x), dtype=torch.float32)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert np.ptp(theirs) > 1.0  # five digits, five different values: not a constant


def test_pythae_vae_conversion(budget):
    """pythae's encoder (mu, log σ²) and decoder (sigmoid means) on the converted egm
    parameters: egm's ``encode`` gives (mu, log σ = log σ² / 2), ``decode`` the logits, and the
    log importance weight at fixed z, ``log p(x|z) + log p(z) - log q(z|x)``, equals the one
    of pythae's ``get_nll`` (whose dropped log 2π terms cancel).  The round trip egm -> pythae
    -> egm is exact.  Tolerances: float32 both sides, same operations up to order: 1e-5 on
    O(1) network outputs; the weight sums 784 + 2 x 4 terms of size <= ~1: 1e-3."""
    pytest.importorskip("pythae")
    import torch
    import torch.nn.functional as F

    from egm.data import binarize_fixed, load_mnist
    from egm.models import vae

    m = budget.make_pythae_vae(784, (16,), 4, seed=0)
    params = budget.pythae_vae_params(m)
    model = vae.VAE(x_dim=784, latent_dim=4, hidden=(16,), activation="tanh")
    ref = vae.init_params(jax.random.key(0), model)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ref)
    x = np.asarray(binarize_fixed(load_mnist("test", source="embedded").x[:6], 0), np.float32)
    xt = torch.as_tensor(x)
    with torch.no_grad():
        enc = m.encoder(xt)
        mu_t, logvar_t = enc.embedding.numpy(), enc.log_covariance.numpy()
        z = torch.as_tensor(np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
        recon = m.decoder(z)["reconstruction"]
        lq = -0.5 * (enc.log_covariance + (z - enc.embedding) ** 2 / enc.log_covariance.exp())
        lw_t = (-F.binary_cross_entropy(recon, xt, reduction="none").sum(-1)
                - 0.5 * (z**2).sum(-1) - lq.sum(-1)).numpy()  # fmt: skip
    mu, log_sigma = model.apply(params, jnp.asarray(x), method=vae.VAE.encode)
    np.testing.assert_allclose(np.asarray(mu), mu_t, atol=1e-5)
    np.testing.assert_allclose(np.asarray(log_sigma), 0.5 * logvar_t, atol=1e-5)
    logits = model.apply(params, jnp.asarray(z.numpy()), method=vae.VAE.decode)
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(logits)), recon.numpy(), atol=1e-5)
    zj = jnp.asarray(z.numpy())
    lw = (vae.output_log_prob("bernoulli", logits, jnp.asarray(x)) + vae.log_prior(model, zj)
          - vae.gaussian_log_prob(mu, log_sigma, zj))  # fmt: skip
    np.testing.assert_allclose(np.asarray(lw), lw_t, atol=1e-3)
    m2 = budget.make_pythae_vae(784, (16,), 4, seed=1)
    budget.load_egm_vae_into_pythae(params, m2)
    back = budget.pythae_vae_params(m2)
    for a, b in zip(
        jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- --quick runs


@pytest.mark.parametrize(
    ("pair", "peer"),
    # rbm-sklearn (12 s, the one pair CI's install can run) in the slow suite: the default
    # suite's budget; the budget helpers' unit tests above stay in the default suite
    [("vae", "pythae"), ("nade", "torch"), pytest.param("rbm", "sklearn", marks=pytest.mark.slow)],
)
def test_budget_quick(budget, capsys, pair, peer):
    """A ``--quick`` run of one pair: one JSON line (the only stdout), the protocol's keys,
    both contenders trained (>= 1 epoch, own clock), both scored by the same estimator (the
    records' method), and a winner consistent with diff and diff_se."""
    pytest.importorskip(peer)
    returned = budget.main(["--quick", "--pairs", pair])
    out, err = capsys.readouterr()
    lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    assert lines == returned and len(lines) == 1
    (rec,) = lines
    assert rec["bench"] == f"budget_{pair}" and rec["unit"] == "nats" and rec["quick"] is True
    assert rec["budget_s"] == 1.0 and "skipped" not in rec
    assert rec["egm_epochs"] >= 1 and rec["peer_epochs"] >= 1
    assert rec["egm_train_s"] >= rec["egm_first_epoch_s"] > 0
    assert rec["peer_train_s"] >= rec["peer_first_epoch_s"] > 0
    assert rec["egm"] < 0 and rec["peer_value"] < 0 and rec["load_avg_1m"] is not None
    er, pr = (LogLikelihood.from_dict(rec[k]) for k in ("egm_record", "peer_record"))
    assert er.method == pr.method == {"vae": "importance", "nade": "exact", "rbm": "ais_bracket"}[pair]  # fmt: skip
    assert er.counts["examples"] == pr.counts["examples"] == 20 == rec["n_test"]
    # egm, peer_value and diff are rounded to 4 significant figures (<= 0.05 each at 100-999)
    assert rec["diff"] == pytest.approx(rec["egm"] - rec["peer_value"], abs=0.2)
    big = abs(rec["diff"]) > 2 * rec["diff_se"]
    expected = ("egm" if rec["diff"] > 0 else rec["peer"]) if big else "tie"
    assert rec["winner"] == expected
    assert f"| {pair} | 1 |" in err  # the Markdown table on stderr


@pytest.mark.slow
def test_pythae_get_nll_agrees_with_egm_importance_sampling(budget):
    """pythae's own importance-sampling estimate (``VAE.get_nll``, k proposals from its q)
    and egm's (:func:`importance_log_likelihood` on the converted parameters) estimate the
    same ``E log (1/k) Σ w`` per digit, independently.  The decoder is sharpened (output
    weights x 4, so ``p(x|z)`` depends on z) and q narrowed (log σ² bias -1), so the weights
    vary.  Tolerance (CLT): the difference of the two means over N digits has variance
    ~2 mc_se², with mc_se egm's delta-method Monte-Carlo error of its mean; |diff| < 4
    sqrt(2) mc_se fails with probability < 1e-4 if both estimate the same thing.  (A wrong
    proposal would NOT show here: importance sampling is consistent for any q, only less
    efficient; the conventions of q are pinned by test_pythae_vae_conversion.)"""
    pytest.importorskip("pythae")
    import torch
    from jax.tree_util import Partial

    from egm.data import binarize_fixed, load_mnist
    from egm.estimators.importance import importance_log_likelihood
    from egm.models import vae

    m = budget.make_pythae_vae(784, (16,), 4, seed=0)
    with torch.no_grad():
        m.decoder.out.weight.mul_(4.0)
        m.encoder.logvar.bias.fill_(-1.0)
    m.eval()
    x = np.asarray(binarize_fixed(load_mnist("test", source="embedded").x[:8], 0), np.float32)
    k = 2000
    torch.manual_seed(0)
    theirs = m.get_nll(torch.as_tensor(x), n_samples=k, batch_size=200)
    model = vae.VAE(x_dim=784, latent_dim=4, hidden=(16,), activation="tanh")

    fn = Partial(vae.log_weights_fn(model), budget.pythae_vae_params(m))
    est = importance_log_likelihood(jax.random.key(1), fn, x, k)
    mc = float(est.mc_stderr_mean)
    assert 0 < mc < 0.5  # the weights vary, and k makes the estimate precise
    assert abs(float(est.log_likelihood) - theirs) < 4 * np.sqrt(2) * mc
