"""Neural autoregressive network (§20.10.9): one hidden group per prefix, reused by every
later conditional; normalised for every ordering, autoregressive, and equal to the naive
per-conditional computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from egm.errors import ConfigError
from egm.estimators.exact import all_binary_states
from egm.models import neural_ar
from egm.models.neural_ar import NeuralAutoregressive, group_masks


def make(ordering, D=7, G=2, seed=0):
    model = NeuralAutoregressive(D, G, ordering)
    params = model.init(jax.random.key(0), jnp.zeros((1, D)))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    params = jax.tree_util.tree_unflatten(
        tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )
    return model, params


@pytest.mark.parametrize("ordering", [None, (4, 0, 6, 2, 1, 5, 3)])
def test_normalised_autoregressive_and_equal_to_naive(ordering):
    """Σ_x p(x) = 1 over 2^7 vectors; d logit_i / d x_j = 0 unless j precedes i; and logit
    o_d equals b + Σ_{k<d} V_k · σ(c_k + W_k x_{o_≤k}) computed group by group."""
    D, G = 7, 2
    model, params = make(ordering, D, G)
    states = all_binary_states(D)
    lp = model.apply(params, states, method=NeuralAutoregressive.log_prob)
    assert abs(float(jax.nn.logsumexp(lp))) < 1e-5
    o = list(range(D)) if ordering is None else list(ordering)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 2, D), jnp.float32)
    J = np.asarray(jax.jacfwd(lambda v: model.apply(params, v))(x))
    pos = np.argsort(o)
    assert np.all(J[~(pos[None, :] < pos[:, None])] == 0)
    # the naive reference in float64 numpy (no per-shape compilation of eager JAX ops)
    P = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
    logits, xn = np.asarray(model.apply(params, x)), np.asarray(x, np.float64)
    for d, i in enumerate(o):
        total = float(P["b"][i])
        for k in range(1, d + 1):  # groups of degree k < d + 1 see o_1..o_k
            cols = slice((k - 1) * G, k * G)
            seen = o[:k]
            h = 1.0 / (1.0 + np.exp(-(P["c"][cols] + xn[seen] @ P["W"][seen, cols])))
            total += float(h @ P["V"][cols, i])
        assert logits[i] == pytest.approx(total, abs=1e-4)


def test_masks_and_sampling_and_errors():
    m_in, m_out, deg = group_masks((0, 1, 2), 2)
    assert deg.tolist() == [1, 1, 2, 2]
    assert m_in.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert m_out.tolist() == [[0, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 1]]
    model, params = make(None, 5, 1)
    xc = jnp.asarray([1, 0, 0, 0, 0], jnp.float32)
    cm = jnp.asarray([True, False, False, False, False])
    s = neural_ar.sample(jax.random.key(0), model, params, xc, cm)
    assert float(s[0]) == 1.0 and set(np.asarray(s).tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="group_size"):
        NeuralAutoregressive(5, 0).init(jax.random.key(0), jnp.zeros(5))
