"""NADE (Larochelle & Murray 2011), RNADE outputs, and order-agnostic deep NADE (Uria et al.
2014): normalisation for every ordering, fast path == naive conditionals, the hand-written
O(DH) backward pass == autodiff, the autoregressive property by Jacobian, the unbiased
order-agnostic loss (exact by enumeration), ensembles as log-mean-probability, and samples
(plain and clamped) against enumeration."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from egm.estimators.exact import all_binary_states
from egm.eval.autoregressive import ensemble_log_likelihood, enumerate_log_probs, top_half_mask
from egm.models import deep_nade, nade
from egm.models._autoregressive import bernoulli_log_prob, observed_first_ordering
from egm.models.deep_nade import DeepNADE
from egm.models.nade import NADE

ORDERINGS = [None, (3, 7, 0, 5, 1, 6, 2, 4), (7, 6, 5, 4, 3, 2, 1, 0)]


def random_params(params, seed, scale=1.0):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )


def chi_square_ok(counts, probs, alpha=1e-6):
    """Pearson's X² over cells with expected count >= 5 (the rest pooled, dropped if the pool
    expects < 5); X² ~ χ²(cells - 1) under H0, so the 1 - alpha quantile fails by chance
    with probability ≈ alpha = 1e-6."""
    counts, probs = np.asarray(counts, float), np.asarray(probs, float)
    exp = counts.sum() * probs
    big = exp >= 5
    obs_c, exp_c = list(counts[big]), list(exp[big])
    if exp[~big].sum() >= 5:
        obs_c.append(counts[~big].sum())
        exp_c.append(exp[~big].sum())
    obs_c, exp_c = np.array(obs_c), np.array(exp_c)
    x2 = np.sum((obs_c - exp_c) ** 2 / exp_c)
    return x2 < stats.chi2.ppf(1 - alpha, len(obs_c) - 1)


def state_index(x):
    x = np.asarray(x).astype(np.int64)
    return (x * (1 << np.arange(x.shape[1] - 1, -1, -1))).sum(1)


def naive_nade_logits(P, x, order):
    """Each conditional by its own pass: h = σ(c + Σ_{k<d} W_{o_k} x_{o_k}) (float64 numpy:
    an independent reference, and no per-shape compilation of eager JAX ops)."""
    P = {k: np.asarray(v, np.float64) for k, v in P.items()}
    x = np.asarray(x, np.float64)
    out = np.zeros(x.shape, np.float64)
    for d, i in enumerate(order):
        prev = list(order[:d])
        h = 1.0 / (1.0 + np.exp(-(P["c"] + x[..., prev] @ P["W"][prev])))
        out[..., i] = h @ P["V"][i] + P["b"][i]
    return out


def nade_model(ordering, D=8, H=5, seed=0, **kw):
    model = NADE(D, H, ordering=ordering, **kw)
    params = random_params(model.init(jax.random.key(0), jnp.zeros((1, D))), seed)
    return model, params


# ------------------------------------------------------------------------------ NADE


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_nade_sums_to_one_and_fast_path_equals_naive(ordering):
    model, params = nade_model(ordering)
    x = all_binary_states(8)
    lp = enumerate_log_probs(lambda v: model.apply(params, v, method=NADE.log_prob), 8)
    assert abs(float(jax.nn.logsumexp(lp))) < 1e-5
    order = list(range(8)) if ordering is None else list(ordering)
    fast = np.asarray(model.apply(params, x[:40]))
    np.testing.assert_allclose(fast, naive_nade_logits(params["params"], x[:40], order), atol=2e-5)
    # a single example (no batch axis) gives the same row
    np.testing.assert_allclose(model.apply(params, x[7]), fast[7], atol=1e-6)


def test_nade_handwritten_backward_equals_autodiff():
    """The custom VJP (reverse running sum) against jax.grad of the naive per-conditional
    formula, for all parameters and the input, with an arbitrary cotangent (sin of logits)."""
    order = (3, 0, 5, 1, 4, 2)
    model, params = nade_model(order, D=6, H=4)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 2, (4, 6)), jnp.float32)

    def naive(P, v):
        cols = []
        for d, i in enumerate(order):
            prev = jnp.asarray(order[:d], int)
            h = jax.nn.sigmoid(P["c"] + v[:, prev] @ P["W"][prev])
            cols.append((i, h @ P["V"][i] + P["b"][i]))
        return jnp.stack([c for _, c in sorted(cols)], axis=1)

    f_fast = lambda P, v: jnp.sum(jnp.sin(model.apply({"params": P}, v)))  # noqa: E731
    f_ref = lambda P, v: jnp.sum(jnp.sin(naive(P, v)))  # noqa: E731
    g_fast = jax.jit(jax.grad(f_fast, (0, 1)))(params["params"], x)
    g_ref = jax.jit(jax.grad(f_ref, (0, 1)))(params["params"], x)
    for a, b in zip(
        jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_ref), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("output", ["bernoulli", pytest.param("mog", marks=pytest.mark.slow)])
def test_nade_autoregressive_jacobian(output):
    """d out_{o_d} / d x_{o_k} is exactly 0 for k >= d and not identically 0 for k < d."""
    order = ORDERINGS[1]
    model, params = nade_model(order, output=output, n_components=3)
    x = jnp.asarray(np.random.default_rng(1).normal(size=8), jnp.float32)

    def f(v):
        out = model.apply(params, v)
        return out if output == "bernoulli" else out[1][:, 0] + out[2][:, 1] + out[0][:, 2]

    # reverse mode for Bernoulli exercises the custom VJP; the RNADE scan is cheaper forward
    J = np.asarray((jax.jacrev if output == "bernoulli" else jax.jacfwd)(f)(x))
    pos = np.argsort(order)
    allowed = pos[None, :] < pos[:, None]
    assert np.all(J[~allowed] == 0)
    assert np.all(np.abs(J[allowed]) > 0)


def test_nade_samples_plain_and_clamped_match_exact():
    """20,000 O(DH) ancestral samples of a D = 6 NADE pass chi-square against enumeration
    (power: rejected for perturbed weights); clamping the first two units of the ordering
    gives samples of the exact conditional."""
    D, order = 6, (4, 1, 5, 0, 3, 2)
    model, params = nade_model(order, D=D, H=4, seed=3)
    states = all_binary_states(D)
    p = np.exp(np.asarray(model.apply(params, states, method=NADE.log_prob), np.float64))
    draw_c = jax.jit(
        jax.vmap(lambda k, xc, cm: nade.sample(k, model, params, xc, cm), (0, None, None))
    )
    none = np.zeros(D, bool)
    xs0 = draw_c(jax.random.split(jax.random.key(0), 20000), none.astype(np.float32), none)
    counts = np.bincount(state_index(xs0), minlength=64)
    assert chi_square_ok(counts, p / p.sum())
    bad = jax.tree_util.tree_map(lambda a: a + 0.4, params)
    pb = np.exp(np.asarray(model.apply(bad, states, method=NADE.log_prob), np.float64))
    assert not chi_square_ok(counts, pb / pb.sum())

    clamp = np.zeros(D, bool)
    clamp[[4, 1]] = True
    xc = np.where(clamp, 1.0, 0.0).astype(np.float32)
    xs = np.asarray(draw_c(jax.random.split(jax.random.key(1), 20000), xc, clamp))
    assert np.all(xs[:, clamp] == 1.0)
    keep = np.all(np.asarray(states)[:, clamp] == 1.0, axis=1)
    counts_c = np.bincount(state_index(xs), minlength=64)[keep]
    assert chi_square_ok(counts_c, p[keep] / p[keep].sum())


@pytest.mark.slow
def test_rnade_density_integrates_to_one_and_samples_have_its_mean():
    """D = 2 RNADE with 3 components: ∫∫ p = 1 by a 600² midpoint grid on [-12, 12]² (error
    far below 1e-3 for these smooth, light-tailed densities); 20,000 samples have the
    quadrature mean within 5 CLT standard errors per coordinate."""
    model = NADE(2, 3, ordering=(1, 0), output="mog", n_components=3)
    params = random_params(model.init(jax.random.key(0), jnp.zeros((1, 2))), 4, 0.5)
    g = np.linspace(-12, 12, 601)
    mid = (g[1:] + g[:-1]) / 2
    X = jnp.asarray(np.stack(np.meshgrid(mid, mid, indexing="ij"), -1).reshape(-1, 2), jnp.float32)
    dens = np.exp(np.asarray(model.apply(params, X, method=NADE.log_prob), np.float64))
    cell = (g[1] - g[0]) ** 2
    assert abs(dens.sum() * cell - 1.0) < 1e-3
    mean = (dens[:, None] * np.asarray(X)).sum(0) * cell
    xs = np.asarray(
        jax.jit(jax.vmap(lambda k: nade.sample(k, model, params)))(
            jax.random.split(jax.random.key(5), 20000)
        ),
        np.float64,
    )
    z = np.abs(xs.mean(0) - mean) / (xs.std(0, ddof=1) / math.sqrt(len(xs)))
    assert np.all(z < 5), z


def test_nade_determinism_and_jit():
    model, params = nade_model(ORDERINGS[2])
    x = all_binary_states(8)[:20]
    f = lambda p: model.apply(p, x, method=NADE.log_prob)  # noqa: E731
    np.testing.assert_allclose(f(params), jax.jit(f)(params), rtol=1e-6)
    draw = jax.jit(lambda k: nade.sample(k, model, params))
    s = [draw(jax.random.key(3)) for _ in range(2)]
    assert np.array_equal(s[0], s[1])


# ------------------------------------------------------------------ order-agnostic NADE


def deep_model(D=6, hidden=(5, 4), seed=0):
    model = DeepNADE(D, hidden, activation="tanh")
    z = jnp.zeros((1, D))
    params = random_params(model.init(jax.random.key(0), z, z), seed)
    return model, params


def test_deep_nade_every_ordering_normalised_and_fast_path_equals_masked_passes():
    D = 6
    model, params = deep_model(D)
    states = all_binary_states(D)
    rng = np.random.default_rng(0)
    fast_fn = jax.jit(lambda o: deep_nade.ordered_logits(model, params, states, o))
    masked_fn = jax.jit(lambda m: model.apply(params, states, m))
    for o in [np.arange(D), rng.permutation(D), rng.permutation(D)]:
        fast = np.asarray(fast_fn(o))
        lp = bernoulli_log_prob(jnp.asarray(fast), states)
        assert abs(float(jax.nn.logsumexp(lp))) < 1e-5
        pos = np.argsort(o)
        for d in range(D):
            mask = jnp.broadcast_to((pos < d).astype(np.float32), states.shape)
            naive = np.asarray(masked_fn(mask))[:, o[d]]
            np.testing.assert_allclose(fast[:, o[d]], naive, atol=2e-5)


@pytest.mark.slow
def test_deep_nade_conditionals_ignore_unobserved_inputs():
    """Jacobian of __call__(x, mask) in x: columns of unobserved units are exactly zero."""
    model, params = deep_model(8, (6,))
    x = jnp.asarray(np.random.default_rng(2).normal(size=8), jnp.float32)
    mask = jnp.asarray([1, 0, 0, 1, 1, 0, 1, 0], jnp.float32)
    J = np.asarray(jax.jacfwd(lambda v: model.apply(params, v, mask))(x))
    assert np.all(J[:, np.asarray(mask) == 0] == 0)
    assert np.all(np.abs(J[:, np.asarray(mask) == 1]).max(0) > 0)


def test_order_agnostic_loss_is_unbiased_exactly():
    """E over d ~ U{0..D-1} and a uniform subset S of size d of -D/(D-d) Σ_{i∉S} log p(x_i|x_S),
    computed EXACTLY by enumerating all subsets (D = 4), equals the mean over all 24
    orderings of -log p(x | o); and the Monte-Carlo loss averages to it within 5 CLT se."""
    D = 4
    model, params = deep_model(D, (5,), seed=1)
    x = jnp.asarray([[1.0, 0.0, 1.0, 1.0]])
    orders = jnp.asarray(list(itertools.permutations(range(D))))
    per_order = jax.jit(jax.vmap(lambda o: deep_nade.ordered_log_prob(model, params, x, o)[0]))
    target = -float(jnp.mean(per_order(orders)))
    subsets = [(d, S) for d in range(D) for S in itertools.combinations(range(D), d)]
    masks = np.zeros((len(subsets), D), np.float32)
    weights = np.zeros(len(subsets))
    for r, (d, S) in enumerate(subsets):
        masks[r, list(S)] = 1
        weights[r] = 1.0 / (D * math.comb(D, d)) * D / (D - d)  # P(d, S) x the loss factor
    logits = model.apply(params, jnp.broadcast_to(x, masks.shape), jnp.asarray(masks))
    ll = x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits)
    expect = -float(np.sum(weights * np.asarray(jnp.sum(ll * (1 - masks), axis=1))))
    assert expect == pytest.approx(target, rel=1e-5)
    # the Monte-Carlo loss: 4000 copies of x, one (d, S) draw each -> mean within 5 CLT se
    mc = jax.jit(jax.vmap(lambda k: deep_nade.order_agnostic_loss(model, params, x, k)))(
        jax.random.split(jax.random.key(0), 4000)
    )
    losses = np.asarray(mc, np.float64)
    assert abs(losses.mean() - target) < 5 * losses.std(ddof=1) / math.sqrt(len(losses))


def test_ensemble_is_log_mean_probability_not_mean_logits():
    """Ensemble over K = 4 orderings: equals log((1/K) Σ_k p(x|o_k)) from enumerated
    probabilities and sums to one; averaging the logits instead is a different model that
    gives different values."""
    D, K = 6, 4
    model, params = deep_model(D, seed=2)
    states = all_binary_states(D)
    orders = [np.random.default_rng(k).permutation(D) for k in range(K)]
    per = jnp.stack([deep_nade.ordered_log_prob(model, params, states, o) for o in orders])
    ens = np.asarray(ensemble_log_likelihood(per), np.float64)
    direct = np.log(np.mean(np.exp(np.asarray(per, np.float64)), axis=0))
    np.testing.assert_allclose(ens, direct, atol=1e-5)
    assert abs(float(jax.nn.logsumexp(jnp.asarray(ens)))) < 1e-5
    mean_logits = jnp.mean(
        jnp.stack([deep_nade.ordered_logits(model, params, states, o) for o in orders]), 0
    )
    avg = np.asarray(bernoulli_log_prob(mean_logits, states))
    assert np.max(np.abs(avg - ens)) > 0.05


def test_deep_nade_inpainting_any_subset_is_exact_conditional():
    """Clamp an arbitrary subset, order it first (observed_first_ordering), sample the rest:
    20,000 samples pass chi-square against p(x_free | x_clamped) under that ordering,
    enumerated from ordered_log_prob."""
    D = 6
    model, params = deep_model(D, seed=4)
    clamp = np.array([False, True, False, False, True, True])
    xc = np.array([0, 1, 0, 0, 0, 1], np.float32)
    o = np.asarray(observed_first_ordering(jax.random.key(0), clamp))
    assert set(o[:3]) == {1, 4, 5}
    states = all_binary_states(D)
    p = np.exp(np.asarray(deep_nade.ordered_log_prob(model, params, states, o), np.float64))
    keep = np.all(np.asarray(states)[:, clamp] == xc[clamp], axis=1)
    draw = jax.jit(jax.vmap(lambda k: deep_nade.sample(k, model, params, o, xc, clamp)))
    xs = np.asarray(draw(jax.random.split(jax.random.key(1), 20000)))
    assert np.all(xs[:, clamp] == xc[clamp])
    counts = np.bincount(state_index(xs), minlength=2**D)[keep]
    assert chi_square_ok(counts, p[keep] / p[keep].sum())


def test_top_half_mask():
    m = top_half_mask(4, 3)
    assert m.tolist() == [True] * 6 + [False] * 6
