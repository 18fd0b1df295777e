"""Multi-prediction DBM: the clamped mean field is a stationary point of the variational free
energy, clamped variables stay clamped, and MP training learns a classifier."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from egm.energies import dbm
from egm.errors import ConfigError
from egm.estimators import mpdbm

SIZES, K = (6, 5, 4), 3


def _params(seed, scale=1.0):
    k = jax.random.split(jax.random.key(seed), 3)
    p = mpdbm.init(k[0], SIZES, K, scale=scale)
    biases = tuple(
        0.3 * jax.random.normal(kk, b.shape)
        for kk, b in zip(jax.random.split(k[1], 3), p.dbm.biases, strict=True)
    )
    return p._replace(
        dbm=p.dbm._replace(biases=biases), label_b=0.3 * jax.random.normal(k[2], (K,))
    )


def _free_energy(p, v_obs, layers, y):
    """Variational free energy E_Q[E] - H(Q) of a factorial Q (Bernoulli units, categorical y).
    The energy is multilinear, so E_Q[E] is the energy at the means."""
    eps = 1e-12
    ent = 0.0
    for i, m in enumerate(layers):
        h = -(m * jnp.log(m + eps) + (1 - m) * jnp.log(1 - m + eps))
        ent = ent + (jnp.sum(jnp.where(v_obs, 0.0, h)) if i == 0 else jnp.sum(h))
    ent = ent - jnp.sum(y * jnp.log(y + eps))
    return mpdbm.energy(p, layers, y) - ent


def test_clamped_mean_field_is_a_stationary_point_of_the_free_energy():
    """Exact check: at the converged fixed point the gradient of the variational free energy
    with respect to the logits of every FREE marginal vanishes (the mean-field equations are
    exactly these stationarity conditions).  Weak couplings (scale 0.3) make the iteration a
    contraction, so 300 sweeps converge to float32 round-off; tolerance 1e-4."""
    p = _params(0, scale=0.3)
    v = jnp.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    v_obs = jnp.array([1, 1, 0, 1, 0, 1], bool)
    mf = mpdbm.mean_field(p, v, v_obs, jnp.zeros(K), False, 300)
    logit = lambda m: jnp.log(m) - jnp.log1p(-m)
    z = tuple(logit(m) for m in mf.layers)
    zy = jnp.log(mf.y)

    def F(z, zy):
        layers = tuple(jax.nn.sigmoid(a) for a in z)
        layers = (jnp.where(v_obs, v, layers[0]), *layers[1:])
        return _free_energy(p, v_obs, layers, jax.nn.softmax(zy))

    gz, gy = jax.grad(F, argnums=(0, 1))(z, zy)
    assert float(jnp.max(jnp.abs(jnp.where(v_obs, 0.0, gz[0])))) < 1e-4
    for g in (*gz[1:], gy):
        assert float(jnp.max(jnp.abs(g))) < 1e-4
    # observed pixels stay clamped; a clamped label stays clamped
    np.testing.assert_array_equal(
        np.asarray(mf.layers[0])[np.asarray(v_obs)], np.asarray(v)[np.asarray(v_obs)]
    )
    y = jax.nn.one_hot(2, K)
    np.testing.assert_array_equal(mpdbm.mean_field(p, v, v_obs, y, True, 5).y, y)


def test_unconnected_label_gets_its_prior():
    p = _params(1)
    p = p._replace(label_W=jnp.zeros_like(p.label_W))
    v = jnp.ones(SIZES[0])
    np.testing.assert_allclose(
        mpdbm.predict_proba(p, v[None])[0], jax.nn.softmax(p.label_b), rtol=1e-6
    )


def test_energy_is_dbm_energy_plus_label_terms():
    p = _params(2)
    state = tuple(jnp.ones(n) for n in SIZES)
    y = jax.nn.one_hot(1, K)
    want = dbm.energy(p.dbm, state) - jnp.sum(p.label_W[:, 1]) - p.label_b[1]
    np.testing.assert_allclose(mpdbm.energy(p, state, y), want, rtol=1e-6)


@pytest.mark.slow  # a training run (6 s cold); the exact checks of its pieces stay in the default suite
def test_mp_training_learns_to_classify_and_to_fill_in():
    """Three noisy prototypes (10% flips), label = prototype; 200 Adam steps on the MP loss
    from random init.  The Bayes error here is far below 5% (a 6-bit code with 2-bit
    separation and 10% noise), so test accuracy above 90% on fresh data means the label
    path was learned; deterministic given the keys."""
    protos = jnp.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]], jnp.float32)

    def data(key, n):
        k1, k2 = jax.random.split(key)
        lab = jax.random.randint(k1, (n,), 0, K)
        x = protos[lab]
        return jnp.where(jax.random.bernoulli(k2, 0.1, x.shape), 1 - x, x), lab

    x, lab = data(jax.random.key(0), 256)
    p = mpdbm.init(jax.random.key(1), SIZES, K, scale=0.1)
    opt = optax.adam(0.05)
    st = opt.init(p)

    @jax.jit
    def step(p, st, key):
        (loss, aux), g = jax.value_and_grad(
            lambda q: mpdbm.mp_loss(key, q, x, lab, n_iter=5), has_aux=True
        )(p)
        upd, st = opt.update(g, st, p)
        return optax.apply_updates(p, upd), st, loss

    first = None
    for t in range(200):
        p, st, loss = step(p, st, jax.random.key(100 + t))
        first = float(loss) if first is None else first
    xt, lt = data(jax.random.key(9), 500)
    acc = float(jnp.mean(jnp.argmax(mpdbm.predict_proba(p, xt, 5), 1) == lt))
    assert acc > 0.9, acc
    assert float(loss) < first


def test_centered_mpdbm_defines_the_same_distribution():
    """Energies of the centered and the mapped ordinary parameters differ by one constant
    over every (v, h, y) of a tiny model (float32 round-off: 1e-4)."""
    from egm.estimators import exact

    pc = _params(4)
    k = jax.random.split(jax.random.key(5), 4)
    offsets = (
        *(
            jax.random.uniform(kk, (n,), minval=0.1, maxval=0.9)
            for kk, n in zip(k[:3], SIZES, strict=True)
        ),
        jax.nn.softmax(jax.random.normal(k[3], (K,))),
    )
    p = mpdbm.from_centered(pc, offsets)

    def centered_energy(x, y):
        layers = tuple(jnp.split(x, np.cumsum(SIZES)[:-1]))
        e = dbm.centered_energy(pc.dbm, offsets[:-1], layers)
        yc = y - offsets[-1]
        return e - (layers[-1] - offsets[-2]) @ pc.label_W @ yc - pc.label_b @ yc

    def ordinary(x, y):
        return mpdbm.energy(p, tuple(jnp.split(x, np.cumsum(SIZES)[:-1])), y)

    xs = exact.all_binary_states(sum(SIZES))
    diffs = [jax.vmap(lambda x: centered_energy(x, y) - ordinary(x, y))(xs) for y in jnp.eye(K)]
    d = jnp.concatenate(diffs)
    assert float(jnp.max(d) - jnp.min(d)) < 1e-4


def test_centered_init_predicts_the_pixel_marginals():
    m = jnp.linspace(0.1, 0.9, SIZES[0])
    pc, off = mpdbm.init_centered(jax.random.key(0), SIZES, K, m, scale=0.0)
    p = mpdbm.from_centered(pc, off)
    mf = mpdbm.mean_field(p, jnp.zeros(SIZES[0]), jnp.zeros(SIZES[0], bool), jnp.zeros(K), False, 3)
    np.testing.assert_allclose(mf.layers[0], m, rtol=1e-5)
    np.testing.assert_allclose(mf.y, jnp.full(K, 1 / K), rtol=1e-5)


def test_check_params():
    p = _params(3)
    mpdbm.check_params(p)
    with pytest.raises(ConfigError, match="label_W"):
        mpdbm.check_params(p._replace(label_W=p.label_W.T))
    with pytest.raises(ConfigError, match="n_classes"):
        mpdbm.init(jax.random.key(0), SIZES, 1)
