"""MADE (Germain et al. 2015): masks give the autoregressive property for every draw
(Jacobian), every mask set is a normalised model, the mask ensemble is the log of the mean
probability, samples match enumeration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from egm.errors import ConfigError
from egm.estimators.exact import all_binary_states
from egm.models import made
from egm.models.made import MADE, made_masks, mask_set


def random_params(params, seed, scale=1.0):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )


def setup(D=8, hidden=(12, 10), seed=0):
    model = MADE(D, hidden, activation="tanh")
    masks = made_masks(jax.random.key(0), D, hidden)
    params = random_params(model.init(jax.random.key(0), jnp.zeros((1, D)), masks), seed)
    return model, params


@pytest.mark.parametrize("order_agnostic", [False, True])
def test_every_mask_set_is_autoregressive_and_normalised(order_agnostic):
    """For 2 mask draws: d logit_i / d x_j == 0 unless j precedes i in the mask set's
    ordering (exact zeros), and Σ_x p(x) = 1 over all 2^8 vectors."""
    D, hidden = 8, (12, 10)
    model, params = setup(D, hidden)
    x = jnp.asarray(np.random.default_rng(0).normal(size=D), jnp.float32)
    states = all_binary_states(D)
    lp_fn = jax.jit(lambda m: model.apply(params, states, m, method=MADE.log_prob))
    jac = jax.jit(lambda m: jax.jacfwd(lambda v: model.apply(params, v, m))(x))
    for k in range(2):
        masks = mask_set(jax.random.key(1), k, D, hidden, order_agnostic)
        o = np.asarray(masks.ordering)
        assert sorted(o.tolist()) == list(range(D))
        assert (o.tolist() == list(range(D))) == (not order_agnostic)
        pos = np.argsort(o)
        J = np.asarray(jac(masks))
        assert np.all(J[~(pos[None, :] < pos[:, None])] == 0)
        assert abs(float(jax.nn.logsumexp(lp_fn(masks)))) < 1e-5


def test_mask_degrees():
    """Hidden degrees lie in [min previous degree, D-1]; the first unit of the ordering gets
    no input (its output column is all zero) and output d has at most pos(d) inputs."""
    D, hidden = 10, (30, 20)
    m = made_masks(jax.random.key(3), D, hidden, order_agnostic=True)
    M1, M2, Mo = (np.asarray(a) for a in (*m.hidden, m.output))
    assert M1.shape == (D, 30) and M2.shape == (30, 20) and Mo.shape == (20, D)
    o = np.asarray(m.ordering)
    assert np.all(Mo[:, o[0]] == 0)
    pos = np.argsort(o)
    reach = (M1 @ M2 @ Mo) > 0  # input j reaches output d through some path
    assert np.all(~reach[pos[:, None] >= pos[None, :]])
    with pytest.raises(ConfigError, match="hidden"):
        made_masks(jax.random.key(0), D, ())
    with pytest.raises(ConfigError, match="n_visible"):
        made_masks(jax.random.key(0), 1, (4,))


def test_mask_ensemble_is_log_mean_probability():
    D, K = 6, 5
    model, params = setup(D, (9,), seed=1)
    states = all_binary_states(D)
    key = jax.random.key(7)
    ens = np.asarray(made.ensemble_log_prob(model, params, states, key, K, True), np.float64)
    one = jax.jit(
        lambda k: model.apply(params, states, mask_set(key, k, D, (9,), True), method=MADE.log_prob)
    )
    per = np.stack([np.asarray(one(k), np.float64) for k in range(K)])
    np.testing.assert_allclose(ens, np.log(np.exp(per).mean(0)), atol=1e-5)
    assert abs(np.log(np.exp(ens).sum())) < 1e-5


def test_samples_match_exact_distribution():
    """20,000 samples under an order-agnostic mask set: Pearson chi-square against the
    enumerated p(x) at the 1 - 1e-6 quantile of χ²(cells - 1) (cells with expected count < 5
    pooled), a chance failure of ≈ 1e-6; power: rejected against another mask set's p(x)."""
    D = 6
    model, params = setup(D, (9,), seed=2)
    masks = mask_set(jax.random.key(2), 0, D, (9,), True)
    states = all_binary_states(D)
    p = np.exp(np.asarray(model.apply(params, states, masks, method=MADE.log_prob), np.float64))
    xs = jax.jit(jax.vmap(lambda k: made.sample(k, model, params, masks)))(
        jax.random.split(jax.random.key(3), 20000)
    )
    idx = (np.asarray(xs).astype(int) * (1 << np.arange(D - 1, -1, -1))).sum(1)
    counts = np.bincount(idx, minlength=2**D)

    def ok(probs):
        exp = 20000 * probs
        big = exp >= 5
        o_, e_ = np.append(counts[big], counts[~big].sum()), np.append(exp[big], exp[~big].sum())
        x2 = np.sum((o_ - e_) ** 2 / np.maximum(e_, 1e-12))
        return x2 < stats.chi2.ppf(1 - 1e-6, len(o_) - 1)

    assert ok(p / p.sum())
    other = mask_set(jax.random.key(2), 1, D, (9,), True)
    q = np.exp(np.asarray(model.apply(params, states, other, method=MADE.log_prob), np.float64))
    assert not ok(q / q.sum())


def test_wrong_masks_raise():
    model, params = setup(8, (12, 10))
    with pytest.raises(ConfigError, match="hidden layers"):
        model.apply(params, jnp.zeros((1, 8)), made_masks(jax.random.key(0), 8, (12,)))
