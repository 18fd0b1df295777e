"""Classification RBM (Larochelle & Bengio 2008): p(y|x), free energy, log Z and the
generative gradient against brute-force enumeration of a tiny model (V=3, H=3, K=3: 72
joint states), the discriminative gradient against the paper's closed form, the joint Gibbs
kernel against the exact distribution, and bad labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import histogram, tv, tv_tolerance

from egm.energies import class_rbm
from egm.errors import DataError
from egm.estimators.exact import all_binary_states, state_index

V, H, K = 3, 3, 3


def _params(seed=0, scale=1.0):
    k = jax.random.split(jax.random.key(seed), 5)
    return class_rbm.ClassRBMParams(
        W=scale * jax.random.normal(k[0], (V, H)),
        U=scale * jax.random.normal(k[1], (K, H)),
        b=0.5 * jax.random.normal(k[2], (V,)),
        c=0.5 * jax.random.normal(k[3], (H,)),
        d=0.5 * jax.random.normal(k[4], (K,)),
    )


def _neg_energies(p, x, y):
    """-E(x, y, h) for all 2^H hidden states."""
    return jax.vmap(lambda h: -class_rbm.energy(p, x, y, h))(all_binary_states(H))


@jax.jit
def _joint_table(p):
    """log Σ_h exp(-E(x, y, h)) for every (x, y), shape (2^V, K), by brute force."""
    one = lambda x, y: jax.nn.logsumexp(_neg_energies(p, x, y))  # noqa: E731
    return jax.vmap(lambda x: jax.vmap(lambda y: one(x, y))(jnp.arange(K)))(all_binary_states(V))


def test_class_posterior_and_free_energy_equal_enumeration_over_h():
    """log p(y|x) = log Σ_h e^{-E(x,y,h)} - log Σ_{y',h} e^{-E(x,y',h)} and F(x, y) =
    -log Σ_h e^{-E(x,y,h)}, for all 8 inputs and 3 classes; float32 sums of ≤ 24 terms of
    size O(5): agreement to 1e-5 absolute."""
    p = _params(0)
    table = _joint_table(p)
    xs = all_binary_states(V)
    want = table - jax.nn.logsumexp(table, axis=1, keepdims=True)
    got = jax.vmap(class_rbm.class_log_probs, (None, 0))(p, xs)
    np.testing.assert_allclose(got, want, atol=1e-5)
    fe = jax.vmap(lambda x: jax.vmap(lambda y: class_rbm.free_energy(p, x, y))(jnp.arange(K)))(xs)
    np.testing.assert_allclose(fe, -table, atol=1e-5)
    np.testing.assert_array_equal(class_rbm.predict(p, xs), jnp.argmax(want, axis=1))
    np.testing.assert_allclose(
        class_rbm.log_partition(p), jax.nn.logsumexp(table.reshape(-1)), atol=1e-5
    )


def test_discriminative_gradient_matches_closed_form():
    """Larochelle & Bengio (2008, eq. 4): with o_{y'j}(x) = c_j + U_{y'j} + Σ_i W_ij x_i,
    ∂ log p(y|x)/∂U_{y'j} = σ(o_{y'j}) (1[y'=y] − p(y'|x)) and ∂/∂d_{y'} = 1[y'=y] − p(y'|x).
    The autodiff gradient of the exact loss must equal them (float32, 1e-5)."""
    p = _params(1)
    x, y = jnp.array([[1.0, 0.0, 1.0]]), jnp.array([2])
    g = jax.jit(jax.grad(class_rbm.discriminative_loss))(p, x, y)
    o = p.c + p.U + x[0] @ p.W  # (K, H)
    post = jnp.exp(class_rbm.class_log_probs(p, x[0]))
    delta = jax.nn.one_hot(y[0], K) - post
    np.testing.assert_allclose(-g.U, jax.nn.sigmoid(o) * delta[:, None], atol=1e-5)
    np.testing.assert_allclose(-g.d, delta, atol=1e-5)
    np.testing.assert_allclose(g.b, 0.0, atol=1e-7)  # p(y|x) does not depend on b


def test_generative_gradient_phase_formula_equals_exact_gradient():
    """The positive/negative phase formula ∇F(data) − E_{p(x,y)}∇F(x,y) (from
    :func:`generative_surrogate` with all 24 visible states weighted by their exact p(x,y))
    equals jax.grad of the exact mean −log p(x, y) = F(x, y) + log Z (log Z by enumeration);
    identical quantities in float32: 1e-5 absolute."""
    p = _params(2)
    x = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    y = jnp.array([0, 2, 1])

    def exact_nll(p):
        fe = jax.vmap(class_rbm.free_energy, (None, 0, 0))(p, x, y)
        return jnp.mean(fe) + class_rbm.log_partition(p)

    want = jax.jit(jax.grad(exact_nll))(p)
    xs = jnp.repeat(all_binary_states(V), K, axis=0)
    ys = jnp.tile(jnp.arange(K), 2**V)
    w = jax.nn.softmax(-jax.vmap(class_rbm.free_energy, (None, 0, 0))(p, xs, ys))
    got = jax.jit(jax.grad(class_rbm.generative_surrogate))(p, x, y, xs, ys, w)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _transition(p):
    """Exact K[(x,y), (x',y')] = Σ_h p(h|x,y) p(x'|h) p(y'|h), states indexed x·K + y."""
    xs, hs = all_binary_states(V), all_binary_states(H)

    def bern(logits, states):  # P(states | logits) for every row of logits -> [rows, states]
        ls, lm = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
        return jnp.exp(ls @ states.T + lm @ (1 - states).T)

    pre = (p.c + p.U[None, :, :] + (xs @ p.W)[:, None, :]).reshape(-1, H)  # (24, H), x·K + y
    ph = bern(pre, hs)  # (24, 8)
    px = bern(p.b + hs @ p.W.T, xs)  # (8, 8)
    py = jax.nn.softmax(p.d + hs @ p.U.T, axis=1)  # (8, K)
    pxy = (px[:, :, None] * py[:, None, :]).reshape(2**H, -1)
    return np.asarray(ph @ pxy, np.float64)


@pytest.mark.slow
def test_joint_gibbs_kernel_matches_exact_distribution():
    """M = 20,000 chains from (x = 0, y = 0), T = 8 joint sweeps (:func:`cd_negatives` with
    k = 8); the histogram over the 24 visible states against p(x, y).  Tolerance
    (tests/_stats.py): E[TV] bound + McDiarmid deviation at δ = 1e-6, plus the exact TV of
    the chains' distribution after T sweeps from the start (from the transition matrix)."""
    p = _params(3, scale=0.8)
    xs = jnp.repeat(all_binary_states(V), K, axis=0)
    ys = jnp.tile(jnp.arange(K), 2**V)
    exact = np.asarray(jax.nn.softmax(-jax.vmap(class_rbm.free_energy, (None, 0, 0))(p, xs, ys)))
    start = np.zeros(len(exact))
    start[0] = 1.0
    bias = tv(start @ np.linalg.matrix_power(_transition(p), 8), exact)
    M = 20_000
    x0, y0 = jnp.zeros((M, V)), jnp.zeros((M,), jnp.int32)
    xn, yn = jax.jit(class_rbm.cd_negatives, static_argnums=4)(jax.random.key(4), p, x0, y0, 8)
    hist = histogram(np.asarray(state_index(xn) * K + yn), len(exact))
    assert tv(hist, exact) < tv_tolerance(exact, M) + bias


@pytest.mark.slow  # 2 s of compilation; the smoke test runs the hybrid objective
def test_hybrid_loss_is_discriminative_plus_alpha_generative():
    """The hybrid surrogate's gradient = ∇(−mean log p(y|x)) + α ∇(CD surrogate) with the same
    key (so the same negatives): linearity of the two exact pieces, to float32 rounding."""
    p = _params(4)
    x = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    y = jnp.array([1, 2])
    key, alpha = jax.random.key(5), 0.3

    @jax.jit
    def pieces(p):
        g, m = jax.grad(lambda p: class_rbm.hybrid_loss(key, p, x, y, alpha, k=2), has_aux=True)(p)
        xn, yn = class_rbm.cd_negatives(key, p, x, y, 2)
        g_d = jax.grad(class_rbm.discriminative_loss)(p, x, y)
        g_g = jax.grad(class_rbm.generative_surrogate)(p, x, y, xn, yn)
        return g, g_d, g_g, m

    g, g_d, g_g, m = pieces(p)
    for a, b, c in zip(g, g_d, g_g, strict=True):
        np.testing.assert_allclose(a, b + alpha * c, atol=1e-5)
    np.testing.assert_allclose(m["nll"], class_rbm.discriminative_loss(p, x, y), rtol=1e-6)


def test_labels_out_of_range_or_one_hot_are_refused():
    """A label ≥ K, a negative one, or one-hot rows: DataError naming the problem."""
    with pytest.raises(DataError, match="out of range for a model of 10 classes"):
        class_rbm.check_labels(np.array([0, 3, 10]), 10)
    with pytest.raises(DataError, match="out of range"):
        class_rbm.check_labels(np.array([-1, 3]), 10)
    with pytest.raises(DataError, match="not one-hot"):
        class_rbm.check_labels(np.eye(10, dtype=np.int32), 10)
    assert class_rbm.check_labels(np.array([0, 9], np.int64), 10).dtype == np.int32


def test_scores_in_batches_equal_the_exact_table():
    """``scores`` over 13 examples in batches of 5 (5 + 5 + 3, so the ragged last batch is
    weighted by its size) against the error and mean -log p(y|x) read off the brute-force
    table of log Σ_h e^{-E}: float32 terms O(5) summed in float64, agreement to 1e-5."""
    p = _params(2)
    table = np.asarray(_joint_table(p), np.float64)
    logp = table - np.logaddexp.reduce(table, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    idx, y = rng.integers(0, 2**V, 13), rng.integers(0, K, 13)
    x = np.asarray(all_binary_states(V))[idx]
    err, nll = class_rbm.scores(p, x, y, batch_size=5)
    want_err = np.mean(logp[idx, y] < logp[idx].max(axis=1))
    assert err == pytest.approx(want_err, abs=1e-6)
    assert nll == pytest.approx(-np.mean(logp[idx, y]), abs=1e-5)
    with pytest.raises(DataError, match="as many labels"):
        class_rbm.scores(p, x[:4], y)


def test_check_data_refuses_bad_images_and_labels():
    """The host-side check accepts (N, V) values in [0, 1] with labels in 0..K-1 and refuses
    each kind of bad input with a DataError that names it."""
    x, y = np.full((4, V), 0.5, np.float32), np.arange(4) % K
    class_rbm.check_data((x, y), V, K)
    with pytest.raises(DataError, match="out of range"):
        class_rbm.check_data((x, np.where(y == 0, K, y)), V, K)
    with pytest.raises(DataError, match="training images"):
        class_rbm.check_data((x + 1, y), V, K)
    with pytest.raises(DataError, match="training images"):
        class_rbm.check_data((x[:, :2], y), V, K)
