"""Logistic FVSBN (§20.10.8): normalisation, autoregressive property, convexity, training
to the exact optimum, and sampling against enumeration."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from egm.errors import ConfigError
from egm.estimators.exact import all_binary_states
from egm.models import fvsbn
from egm.models.fvsbn import FVSBN
from egm.train import init_state, loss_objective, make_step

ORDERINGS = [None, (3, 7, 0, 5, 1, 6, 2, 4), (7, 6, 5, 4, 3, 2, 1, 0)]


def random_params(model, seed, scale=1.0):
    key = jax.random.key(seed)
    params = model.init(key, jnp.zeros((model.n_visible,)))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )


def chi_square_ok(counts, probs, alpha=1e-6):
    """Pearson's X² over cells with expected count >= 5 (the rest pooled into one cell, dropped
    if its expectation is < 5); under H0 X² ~ χ²(cells - 1) asymptotically (Cochran's rule
    keeps the approximation valid), so comparing with the 1 - alpha quantile fails by chance
    with probability ≈ alpha = 1e-6."""
    counts, probs = np.asarray(counts, float), np.asarray(probs, float)
    n = counts.sum()
    exp = n * probs
    big = exp >= 5
    obs_c, exp_c = list(counts[big]), list(exp[big])
    if exp[~big].sum() >= 5:
        obs_c.append(counts[~big].sum())
        exp_c.append(exp[~big].sum())
    obs_c, exp_c = np.array(obs_c), np.array(exp_c)
    x2 = np.sum((obs_c - exp_c) ** 2 / exp_c)
    return x2 < stats.chi2.ppf(1 - alpha, len(obs_c) - 1), x2


def state_index(x):
    x = np.asarray(x).astype(np.int64)
    return (x * (1 << np.arange(x.shape[1] - 1, -1, -1))).sum(1)


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_probabilities_sum_to_one(ordering):
    model = FVSBN(8, ordering)
    params = random_params(model, 0)
    lp = model.apply(params, all_binary_states(8), method=FVSBN.log_prob)
    assert abs(float(jax.nn.logsumexp(lp))) < 1e-5


@pytest.mark.parametrize("ordering", ORDERINGS[:2])
def test_conditionals_and_autoregressive_jacobian(ordering):
    """Logit of unit o_d equals its own logistic regression on x_{o_<d}; the Jacobian
    d logit_i / d x_j is W_ij where j precedes i and exactly 0 elsewhere."""
    model = FVSBN(8, ordering)
    params = random_params(model, 1)
    W, b = params["params"]["W"], params["params"]["b"]
    o = list(range(8)) if ordering is None else list(ordering)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 2, 8), jnp.float32)
    logits = model.apply(params, x)
    for d, i in enumerate(o):
        prev = o[:d]
        naive = b[i] + sum(W[i, j] * x[j] for j in prev)
        assert float(logits[i]) == pytest.approx(float(naive), abs=1e-5)
    J = np.asarray(jax.jacfwd(lambda v: model.apply(params, v))(x))
    pos = np.argsort(o)
    allowed = pos[None, :] < pos[:, None]
    assert np.all(J[~allowed] == 0)
    np.testing.assert_allclose(J[allowed], np.asarray(W)[allowed], rtol=1e-6)


def test_negative_log_likelihood_is_convex():
    """The NLL of a dataset is a sum of logistic losses: its Hessian in all parameters is
    positive semi-definite (smallest eigenvalue >= -1e-5, float32 round-off)."""
    D = 4
    model = FVSBN(D, (2, 0, 3, 1))
    params = random_params(model, 2)
    x = jnp.asarray(np.random.default_rng(1).integers(0, 2, (50, D)), jnp.float32)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def nll(f):
        return -jnp.mean(model.apply(unravel(f), x, method=FVSBN.log_prob))

    H = np.asarray(jax.jit(jax.hessian(nll))(flat), np.float64)
    assert np.linalg.eigvalsh((H + H.T) / 2).min() > -1e-5


def test_gradient_training_reaches_the_exact_optimum():
    """D = 2 logistic FVSBN is fully expressive (p(x1) and p(x2|x1) each have a free logit),
    and the loss is convex, so full-batch Adam through make_loss_step must reach the
    empirical distribution: 2000 steps, |p_model - p_empirical| < 2e-3 per state."""
    model = FVSBN(2)
    x = jnp.asarray([[0, 0]] * 5 + [[0, 1]] * 1 + [[1, 0]] * 3 + [[1, 1]] * 11, jnp.float32)
    emp = np.array([5, 1, 3, 11]) / 20
    params = model.init(jax.random.key(0), x[0])
    opt = optax.adam(0.05)

    def loss(p, batch, key):
        return -jnp.mean(model.apply(p, batch, method=FVSBN.log_prob))

    step = jax.jit(make_step(loss_objective(loss), opt))
    state = init_state(params, opt)
    for i in range(2000):
        state, m = step(state, x, jax.random.key(i))
    probs = np.exp(model.apply(state.params, all_binary_states(2), method=FVSBN.log_prob))
    np.testing.assert_allclose(probs, emp, atol=2e-3)
    assert float(m["loss"]) == pytest.approx(-np.sum(emp * np.log(emp)), abs=1e-4)


def test_samples_and_clamped_samples_match_exact_distribution():
    """20,000 ancestral samples of a D = 6 FVSBN pass a chi-square test against the
    enumerated p(x) (see chi_square_ok); so do 20,000 samples with the first two units of
    the ordering clamped, against the exact conditional p(x_rest | x_clamped).  Power: the
    same samples fail against a model with perturbed weights."""
    D, order = 6, (2, 5, 0, 1, 4, 3)
    model = FVSBN(D, order)
    params = random_params(model, 3, 1.5)
    states = all_binary_states(D)
    p = np.exp(np.asarray(model.apply(params, states, method=FVSBN.log_prob), np.float64))
    keys = jax.random.split(jax.random.key(4), 20000)
    draw = jax.jit(jax.vmap(lambda k: fvsbn.sample(k, model, params)))
    counts = np.bincount(state_index(draw(keys)), minlength=2**D)
    ok, _ = chi_square_ok(counts, p / p.sum())
    assert ok
    bad = jax.tree_util.tree_map(lambda a: a + 0.3, params)
    pb = np.exp(np.asarray(model.apply(bad, states, method=FVSBN.log_prob), np.float64))
    assert not chi_square_ok(counts, pb / pb.sum())[0]

    clamp = np.zeros(D, bool)
    clamp[[2, 5]] = True
    xc = np.zeros(D, np.float32)
    xc[[2, 5]] = [1.0, 0.0]
    draw_c = jax.jit(jax.vmap(lambda k: fvsbn.sample(k, model, params, xc, clamp)))
    xs = np.asarray(draw_c(jax.random.split(jax.random.key(5), 20000)))
    assert np.all(xs[:, clamp] == xc[clamp])
    consistent = np.all(np.asarray(states)[:, clamp] == xc[clamp], axis=1)
    cond = np.where(consistent, p, 0.0)
    counts_c = np.bincount(state_index(xs), minlength=2**D)
    assert chi_square_ok(counts_c[consistent], cond[consistent] / cond.sum())[0]


def test_determinism_jit_and_bad_ordering():
    model = FVSBN(5, (4, 3, 2, 1, 0))
    params = random_params(model, 5)
    x = all_binary_states(5)
    f = lambda p, v: model.apply(p, v, method=FVSBN.log_prob)  # noqa: E731
    np.testing.assert_allclose(f(params, x), jax.jit(f)(params, x), rtol=1e-6)
    draw = jax.jit(lambda k: fvsbn.sample(k, model, params))
    a, b = draw(jax.random.key(0)), draw(jax.random.key(0))
    assert np.array_equal(a, b)
    for bad in [(0, 1, 2, 3), (0, 0, 1, 2, 3), (0, 1, 2, 3, 5)]:
        with pytest.raises(ConfigError, match="permutation"):
            FVSBN(5, bad).init(jax.random.key(0), jnp.zeros(5))
