"""HMC and Langevin kernels leave known targets invariant (CLT tolerances derived below)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _stats import Z, clt_z

from egm.errors import ConfigError
from egm.samplers import adapt_step_size, hmc, mala, run

MU = jnp.array([1.0, -2.0])
COV = jnp.array([[1.0, 0.8], [0.8, 2.0]])
PREC = jnp.linalg.inv(COV)


def gaussian_logdensity(params, x):
    mu, prec = params
    d = x - mu
    return -0.5 * d @ prec @ d


def mixture_logdensity(params, x):
    """1-D two-component Gaussian mixture 0.3 N(-2, 0.5²) + 0.7 N(1.5, 1)."""
    comps = jnp.stack(
        [
            jnp.log(0.3) - 0.5 * ((x[0] + 2) / 0.5) ** 2 - jnp.log(0.5),
            jnp.log(0.7) - 0.5 * (x[0] - 1.5) ** 2,
        ]
    )
    return jax.nn.logsumexp(comps)


def _mixture_exact_samples(key, n):
    k1, k2 = jax.random.split(key)
    comp = jax.random.bernoulli(k1, 0.7, (n,))
    z = jax.random.normal(k2, (n,))
    return jnp.where(comp, 1.5 + z, -2.0 + 0.5 * z)[:, None]


@pytest.mark.parametrize("name", ["hmc", "mala"])
def test_gaussian_moments_after_adaptation(name):
    """4000 independent chains, adapted then run; the final states are (nearly) exact draws.

    Means: z = |mean - μ| / (σ/√n) < 5.  Variances: for Gaussian x, Var[(x-μ)²] = 2σ⁴, so the
    sample second central moment about the true mean has sd σ²·sqrt(2/n): z < 5 again."""
    kernel = (
        hmc(gaussian_logdensity, n_leapfrog=5, step_size=0.3)
        if name == "hmc"
        else mala(gaussian_logdensity, step_size=0.5)
    )
    params = (MU, PREC)
    n = 4000
    x0 = jax.random.normal(jax.random.key(0), (n, 2)) * 3.0
    states = jax.vmap(kernel.init, in_axes=(0, None))(x0, params)
    adapt = jax.jit(
        jax.vmap(lambda k, s: adapt_step_size(kernel, k, s, params, 300)), donate_argnums=()
    )
    states, acc = adapt(jax.random.split(jax.random.key(1), n), states)
    assert 0.6 < float(jnp.mean(acc[:, -100:])) < 0.95  # dual averaging targets 0.8
    states, _ = jax.jit(run, static_argnums=(0, 4))(kernel, jax.random.key(2), states, params, 200)
    x = np.asarray(states.position)
    assert np.max(clt_z(x, MU)) < Z
    var = np.diag(np.asarray(COV))
    sq = (x - np.asarray(MU)) ** 2
    assert np.all(np.abs(sq.mean(0) - var) / (var * np.sqrt(2 / n)) < Z)
    cross = (x[:, 0] - 1.0) * (x[:, 1] + 2.0)  # covariance: CLT with the sample sd
    assert clt_z(cross[:, None], np.array([0.8]))[0] < Z


@pytest.mark.parametrize(("name", "exact"), [("hmc", True), ("mala", True), ("ula", False)])
def test_detailed_balance_on_1d_mixture(name, exact):
    """Start at exact draws x ~ p, take one step to y.  Detailed balance makes (x, y)
    exchangeable, so E[x·y³ - x³·y] = 0 and E[y] = E[x]: each a mean of n i.i.d. terms, z < 5.
    The unadjusted Langevin kernel (no MH correction) is not reversible w.r.t. p and is
    caught by the same statistics (power check)."""
    if name == "hmc":
        kernel = hmc(mixture_logdensity, n_leapfrog=3, step_size=0.6)
    else:
        kernel = mala(mixture_logdensity, step_size=1.2, adjusted=(name == "mala"))
    n = 200_000
    x = _mixture_exact_samples(jax.random.key(3), n)
    states = jax.vmap(kernel.init, in_axes=(0, None))(x, None)
    keys = jax.random.split(jax.random.key(4), n)
    y = jax.jit(jax.vmap(kernel.step, in_axes=(0, 0, None)))(keys, states, None)[0].position
    x, y = np.asarray(x[:, 0], np.float64), np.asarray(y[:, 0], np.float64)
    antisym = x * y**3 - x**3 * y
    shift = y - x
    z = max(clt_z(antisym[:, None], np.zeros(1))[0], clt_z(shift[:, None], np.zeros(1))[0])
    assert (z < Z) == exact, z


def test_adaptation_stops_after_burn_in_and_kernels_are_deterministic():
    kernel = hmc(gaussian_logdensity, n_leapfrog=4, step_size=0.2)
    params = (MU, PREC)
    s = kernel.init(jnp.zeros(2), params)
    s, _ = adapt_step_size(kernel, jax.random.key(0), s, params, 100)
    eps = float(s.step_size)
    s2, _ = run(kernel, jax.random.key(1), jax.tree_util.tree_map(lambda a: a[None], s), params, 50)
    assert float(s2.step_size[0]) == eps
    a, _ = kernel.step(jax.random.key(5), s, params)
    b, _ = jax.jit(kernel.step)(jax.random.key(5), s, params)
    np.testing.assert_allclose(a.position, b.position, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="n_leapfrog"):
        hmc(gaussian_logdensity, n_leapfrog=0)
    with pytest.raises(ConfigError, match="target_accept"):
        kernel = mala(gaussian_logdensity)
        adapt_step_size(
            kernel,
            jax.random.key(0),
            kernel.init(jnp.zeros(2), (MU, PREC)),
            (MU, PREC),
            5,
            target_accept=1.5,
        )
