r"""Log-likelihood of decoder-based models by AIS over the latent space, and BDMC.

A decoder-based model (a VAE's generator network, a GAN's generator with a Gaussian
observation model, §20.10.2-§20.10.4) defines ``p(x) = ∫ p(z) p(x | z) dz`` with
``p(z) = N(0, I)``.  Annealed importance sampling (§18.7; Neal 2001) over ``z`` along the
geometric path

.. math:: f_β(z) = p(z)\, p(x | z)^β, \qquad β_0 = 0 < β_1 < \dots < β_K = 1,

starts from an exact prior draw (``Z_0 = 1``) and ends at the unnormalised posterior
(``Z_K = p(x)``).  Forward AIS: ``z ~ p(z)``; for ``k = 1..K``:
``log w += (β_k - β_{k-1}) log p(x | z)``, then an HMC transition that leaves ``p_{β_k}``
invariant.  ``E[w] = p(x)``, so ``log p̂(x) = log mean_c w_c`` is a stochastic *lower* bound
on ``log p(x)`` (Jensen); this is the estimator of Wu et al. (2017), "On the quantitative
analysis of decoder-based generative models".

Reverse AIS (Grosse et al. 2015, 2016, bidirectional Monte Carlo): on data simulated from
the model (``z* ~ p(z)``, ``x ~ p(x | z*)``), ``z*`` is an exact posterior sample of
``p(z | x)``; annealing ``β`` from 1 to 0 from it gives ``E[w] = 1 / p(x)``, so
``-log mean_c w_c`` is a stochastic *upper* bound.  The two sides bracket ``log p(x)``
on simulated data, and their gap says how far AIS is from converged for that schedule.

Transitions: HMC (Neal 2011) with identity mass, ``n_leapfrog`` leapfrog steps and
``hmc_steps`` moves per temperature.  :func:`egm.samplers.hmc` stores only the tempered
log density; here a chain keeps ``log p(x | z)`` and its gradient, so changing the
temperature and computing the weight increment cost nothing: a temperature costs exactly
``hmc_steps · n_leapfrog`` gradient evaluations of the decoder.

Step size.  Wu et al. (2017) adapt it along the run toward an acceptance rate of 0.65 from
the acceptance of the estimating chains themselves; a chain's kernel then depends on its
own past, which breaks the extended-space argument behind ``E[w] = p(x)`` (the bias
vanishes only as the number of chains grows).  Here ``adapt_chains`` separate *pilot*
chains per example, started from their own prior draws and annealed alongside, drive the
rule ``log ε ← log ε + adapt_rate · (ā - target_accept)`` after each temperature (``ā``:
the pilots' mean acceptance probability there).  The step used at ``β_k`` is therefore a
function of the pilots alone, independent of the estimating chains, and every estimating
chain is an exact AIS run given that schedule: the estimate stays unbiased (in ``p``).  The
reverse run uses the forward run's schedule (a function of ``x`` and of independent
randomness only, so ``z*`` is still an exact posterior draw given it); adapting from
``z*`` itself would bias the upper bound.

Everything is one ``lax.scan`` over temperatures, with chains and examples vmapped;
examples are processed ``batch_size`` at a time (the last batch padded), example ``n``
using ``fold_in(key, n)`` so results do not depend on ``batch_size``.  Pass the
log-likelihood as ``jax.tree_util.Partial(fn, params)`` so that new parameters reuse the
compiled program.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from egm.data.validate import check_finite, check_shape
from egm.errors import ConfigError, DataError

__all__ = [
    "AISSettings",
    "AnnealInfo",
    "BDMCResult",
    "DecoderAISResult",
    "anneal_latent",
    "bdmc",
    "betas_sigmoid",
    "decoder_ais",
    "gaussian_observation",
    "reverse_decoder_ais",
]

#: ``log_likelihood(z, x) -> log p(x | z)`` for ONE latent vector ``(L,)`` and example ``(D,)``.
LogLikelihoodFn = Callable[[Float[Array, " L"], Float[Array, " D"]], Float[Array, ""]]
#: ``sample_model(key, n) -> (z (n, L), x (n, D))``: ``z ~ p(z)``, ``x ~ p(x | z)``.
SampleModelFn = Callable[[PRNGKeyArray, int], tuple[Array, Array]]

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_STEP_MIN, _LOG_STEP_MAX = math.log(1e-5), 0.0  # step sizes kept in [1e-5, 1]


class AnnealInfo(NamedTuple):
    """Per-temperature diagnostics of one example's run (:func:`anneal_latent`).

    ``acceptance``: mean Metropolis acceptance probability of the estimating chains at each
    temperature; ``adapt_acceptance``: the same for the pilot chains (zeros when none);
    ``step_size``: the leapfrog step used at each temperature.
    """

    acceptance: Float[Array, " K"]
    adapt_acceptance: Float[Array, " K"]
    step_size: Float[Array, " K"]


class DecoderAISResult(NamedTuple):
    """Outcome of :func:`decoder_ais` (forward) or :func:`reverse_decoder_ais` (reverse).

    ``log_px``: per-example estimate of ``log p(x)``: ``log mean_c w_c`` (forward, a
    stochastic lower bound) or ``-log mean_c w_c`` (reverse, a stochastic upper bound);
    ``log_px_se``: its delta-method standard error ``sd(w) / (√C mean(w))`` (NaN for one
    chain); ``ess``: ``(Σw)² / Σw²`` per example; ``log_weights``: ``(N, C)``;
    ``acceptance``: per-example mean acceptance probability over temperatures and chains;
    ``acceptance_by_temperature``: its mean over examples at each temperature, in the order
    the run visited them (a reverse run: ``β_{K-1}, ..., β_0``); ``step_sizes``: ``(N, K)``
    steps at ``β_1..β_K`` in forward order (for a reverse run, the schedule it was given); ``final_z``: the chains' last states ``(N, C, L)``; ``n_leapfrog``,
    ``hmc_steps``, ``adapt_chains``: the settings; ``direction``: "forward" or "reverse".
    """

    log_px: Float[Array, " N"]
    log_px_se: Float[Array, " N"]
    ess: Float[Array, " N"]
    log_weights: Float[Array, "N C"]
    acceptance: Float[Array, " N"]
    acceptance_by_temperature: Float[Array, " K"]
    step_sizes: Float[Array, "N K"]
    final_z: Float[Array, "N C L"]
    n_leapfrog: int
    hmc_steps: int
    adapt_chains: int
    direction: str


class BDMCResult(NamedTuple):
    """Outcome of :func:`bdmc`: the simulated data ``x`` and their exact posterior samples
    ``z`` (the latents that generated them), both AIS runs, and the means over examples:
    ``lower`` (forward), ``upper`` (reverse) and ``gap = upper - lower``."""

    x: Float[Array, "N D"]
    z: Float[Array, "N L"]
    forward: DecoderAISResult
    reverse: DecoderAISResult
    lower: Float[Array, ""]
    upper: Float[Array, ""]
    gap: Float[Array, ""]


# ----------------------------------------------------------------------------------------
# Schedules and observation models
# ----------------------------------------------------------------------------------------


def betas_sigmoid(n_temps: int = 1000, delta: float = 4.0) -> np.ndarray:
    r"""The sigmoidal schedule of Grosse et al. (2016) and Wu et al. (2017): ``K + 1`` values
    ``β_i = (σ(t_i) - σ(t_0)) / (σ(t_K) - σ(t_0))`` with ``t_i = δ (2i/K - 1)``, from 0 to 1
    inclusive (``K = n_temps``): denser at both ends, where the path changes fastest."""
    if not isinstance(n_temps, int | np.integer) or n_temps < 1:
        raise ConfigError(f"n_temps must be an integer >= 1, got {n_temps!r}")
    if not (math.isfinite(delta) and delta > 0):
        raise ConfigError(f"delta must be a finite number > 0, got {delta!r}")
    t = delta * (2.0 * np.arange(n_temps + 1) / n_temps - 1.0)
    s = 1.0 / (1.0 + np.exp(-t))
    b = (s - s[0]) / (s[-1] - s[0])
    b[0], b[-1] = 0.0, 1.0
    return b.astype(np.float32)


def _gaussian_observation(generator_fn, sigma, z, x):
    r = (x - generator_fn(z)) / sigma
    return -0.5 * jnp.sum(r * r) - x.shape[-1] * (jnp.log(sigma) + 0.5 * _LOG_2PI)


def gaussian_observation(
    generator_fn: Callable[[Float[Array, " L"]], Float[Array, " D"]], sigma: float
) -> LogLikelihoodFn:
    """``log p(x | z) = log N(x; g(z), σ² I)``: the observation model that turns a generator
    network ``g`` (a GAN's, §20.10.4) into a likelihood (Wu et al. 2017).  Returns a
    ``Partial`` (a pytree): give ``g`` as ``Partial(apply, params)`` so that new parameters
    and new ``σ`` reuse the compiled AIS program."""
    s = float(sigma)
    if not (math.isfinite(s) and s > 0):
        raise ConfigError(f"sigma must be a finite number > 0, got {sigma!r}")
    g = generator_fn if isinstance(generator_fn, Partial) else Partial(generator_fn)
    return Partial(_gaussian_observation, g, jnp.asarray(s, jnp.float32))


# ----------------------------------------------------------------------------------------
# One example: the annealing loop
# ----------------------------------------------------------------------------------------


def _tempered(beta, ll):
    """``β · log p(x|z)`` with ``0 · (-inf) = 0`` (the prior end of the path)."""
    return jnp.where(beta == 0, 0.0, beta * ll)


def _hmc_move(vg, key, z, ll, g, beta, eps, n_leapfrog):
    """One HMC move of a batch of chains ``z (M, L)`` on ``log p(z) + β log p(x|z)``; ``ll``,
    ``g``: ``log p(x|z)`` and its gradient at ``z``.  Returns the new ``(z, ll, g)`` and the
    acceptance probabilities ``(M,)``."""
    k_p, k_u = jax.random.split(key)
    p0 = jax.random.normal(k_p, z.shape, z.dtype)
    log_u = jnp.log(jax.random.uniform(k_u, ll.shape, ll.dtype))

    def leapfrog(carry, _):
        z, p, ll, g = carry
        p = p + 0.5 * eps * (beta * g - z)
        z = z + eps * p
        ll, g = vg(z)
        p = p + 0.5 * eps * (beta * g - z)
        return (z, p, ll, g), None

    (z1, p1, ll1, g1), _ = jax.lax.scan(leapfrog, (z, p0, ll, g), None, length=n_leapfrog)
    energy = lambda z, p, ll: 0.5 * jnp.sum(z * z + p * p, axis=-1) - _tempered(beta, ll)
    log_alpha = energy(z, p0, ll) - energy(z1, p1, ll1)
    log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
    accept = log_u < log_alpha
    pick = lambda a, b: jnp.where(accept.reshape(accept.shape + (1,) * (a.ndim - 1)), a, b)
    return (pick(z1, z), pick(ll1, ll), pick(g1, g)), jnp.minimum(1.0, jnp.exp(log_alpha))


def _anneal(key, log_likelihood, x, z0, betas, eps_schedule, n_adapt, cfg):
    """The scan over temperature pairs ``(β_{k-1}, β_k)`` for one example; ``z0`` holds the
    estimating chains then the ``n_adapt`` pilot chains; ``eps_schedule[k-1]``: the step at
    ``β_k`` (only its first entry is used, as the initial step, when ``n_adapt > 0``)."""
    n_leapfrog, hmc_steps, target, rate = cfg
    n_main = z0.shape[0] - n_adapt
    vg = jax.vmap(jax.value_and_grad(lambda z: log_likelihood(z, x)))
    ll0, g0 = vg(z0)

    def body(carry, inp):
        z, ll, g, logw, log_eps = carry
        ks, b_from, b_to, eps_fixed = inp
        dw = jnp.where(b_to == b_from, 0.0, (b_to - b_from) * ll[:n_main])
        logw = logw + dw
        eps = jnp.exp(log_eps) if n_adapt > 0 else eps_fixed

        def move(c, kk):
            return _hmc_move(vg, kk, *c, b_to, eps, n_leapfrog)

        (z, ll, g), acc = jax.lax.scan(move, (z, ll, g), ks)
        acc_main = jnp.mean(acc[:, :n_main])
        if n_adapt > 0:
            acc_pilot = jnp.mean(acc[:, n_main:])
            log_eps = jnp.clip(log_eps + rate * (acc_pilot - target), _LOG_STEP_MIN, _LOG_STEP_MAX)
        else:
            acc_pilot = jnp.zeros(())
        return (z, ll, g, logw, log_eps), (acc_main, acc_pilot, eps)

    n_t = betas.shape[0] - 1
    keys = jax.random.split(key, n_t * hmc_steps).reshape(n_t, hmc_steps)
    init = (z0, ll0, g0, jnp.zeros((n_main,), jnp.float32), jnp.log(eps_schedule[0]))
    (z, _, _, logw, _), (acc, acc_p, eps) = jax.lax.scan(
        body, init, (keys, betas[:-1], betas[1:], eps_schedule)
    )
    return logw, z[:n_main], AnnealInfo(acc, acc_p, eps)


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _check_betas(betas: Any) -> np.ndarray:
    b = np.asarray(betas, np.float32)
    if b.ndim != 1 or b.shape[0] < 2 or not np.all(np.isfinite(b)):
        raise ConfigError(
            f"betas must be a 1-D array of at least 2 finite values, got shape {b.shape}; "
            f"use e.g. egm.estimators.decoder_ais.betas_sigmoid(1000)"
        )
    if b[0] != 0.0 or b[-1] != 1.0 or np.any(np.diff(b) < 0):
        raise ConfigError(
            f"betas must increase (non-strictly) from 0.0 to 1.0 inclusive, got "
            f"{b[0]:g} ... {b[-1]:g}{' (not monotone)' if np.any(np.diff(b) < 0) else ''}; "
            f"a reverse run takes the same increasing schedule and reverses it itself"
        )
    return b


def _check_hmc(n_leapfrog, hmc_steps, target_accept, adapt_rate):
    _check_int("n_leapfrog", n_leapfrog, 1)
    _check_int("hmc_steps", hmc_steps, 1)
    if not 0.0 < float(target_accept) < 1.0:
        raise ConfigError(f"target_accept must be in (0, 1), got {target_accept!r}")
    if not (math.isfinite(float(adapt_rate)) and float(adapt_rate) >= 0):
        raise ConfigError(f"adapt_rate must be a finite number >= 0, got {adapt_rate!r}")


def _step_schedule(step_size: Any, n_t: int, lead: tuple[int, ...] = ()) -> np.ndarray:
    """A positive finite step schedule broadcast to ``lead + (n_t,)``."""
    s = np.asarray(step_size, np.float32)
    if not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ConfigError(f"step sizes must be finite and > 0, got {step_size!r}")
    try:
        return np.broadcast_to(s if s.ndim else s[None], lead + (n_t,)).copy()
    except ValueError:
        raise ConfigError(
            f"step_size must be a number or have shape {(n_t,)} (one per temperature"
            f"{'' if not lead else ', or ' + str(lead + (n_t,)) + ' per example'}), got "
            f"shape {s.shape}"
        ) from None


def anneal_latent(
    key: PRNGKeyArray,
    log_likelihood: LogLikelihoodFn,
    x: Float[Array, " D"],
    z0: Float[Array, "M L"],
    betas: Float[ArrayLike, " K1"],
    *,
    n_adapt: int = 0,
    step_size: float | Float[ArrayLike, " K"] = 0.1,
    n_leapfrog: int = 10,
    hmc_steps: int = 1,
    target_accept: float = 0.65,
    adapt_rate: float = 0.5,
) -> tuple[Float[Array, " C"], Float[Array, "C L"], AnnealInfo]:
    """AIS along ``f_β(z) = p(z) p(x|z)^β`` for ONE example from given start states.

    For each pair ``(β_{k-1}, β_k)`` of ``betas`` (in the order given: increasing for a
    forward run, decreasing for a reverse one): ``log w += (β_k - β_{k-1}) log p(x|z)`` at
    the current ``z``, then ``hmc_steps`` HMC moves leaving ``p_{β_k}`` invariant.  The
    last ``n_adapt`` rows of ``z0`` are pilot chains: they carry no weight and their mean
    acceptance drives the step size (module docstring); with ``n_adapt = 0`` the steps are
    ``step_size`` (a number or one per temperature).  Returns the log weights and final
    states of the ``C = M - n_adapt`` estimating chains and the per-temperature
    diagnostics.  No host-side checks: jittable and vmappable (the public front-ends
    :func:`decoder_ais` and :func:`reverse_decoder_ais` check their arguments).
    """
    betas = jnp.asarray(betas, jnp.float32)
    n_t = betas.shape[0] - 1
    eps = jnp.broadcast_to(jnp.asarray(step_size, jnp.float32), (n_t,))
    cfg = (int(n_leapfrog), int(hmc_steps), float(target_accept), float(adapt_rate))
    z0 = jnp.asarray(z0, jnp.float32)
    return _anneal(key, log_likelihood, jnp.asarray(x, jnp.float32), z0, betas, eps, n_adapt, cfg)


# ----------------------------------------------------------------------------------------
# Batches of examples
# ----------------------------------------------------------------------------------------


def _summarise(log_w):
    """``(log mean w, delta-method se, ESS)`` of one example's log weights ``(C,)``."""
    c = log_w.shape[0]
    lse = jax.nn.logsumexp(log_w)
    log_mean = lse - math.log(c)
    r = jnp.exp(log_w - log_mean)
    se = jnp.std(r, ddof=1) / math.sqrt(c) if c > 1 else jnp.full((), jnp.nan)
    ess = jnp.exp(2.0 * lse - jax.nn.logsumexp(2.0 * log_w))
    return log_mean, se, ess


@functools.partial(jax.jit, static_argnames=("n_chains", "n_adapt", "latent_dim", "cfg"))
def _forward_batch(ll_fn, key, idx, xb, betas, eps, *, n_chains, n_adapt, latent_dim, cfg):
    def one(i, x):
        k_z, k_run = jax.random.split(jax.random.fold_in(key, i))
        z0 = jax.random.normal(k_z, (n_chains + n_adapt, latent_dim), jnp.float32)
        logw, z, info = _anneal(k_run, ll_fn, x, z0, betas, eps, n_adapt, cfg)
        return (*_summarise(logw), logw, z, info)

    return jax.vmap(one)(idx, xb)


@functools.partial(jax.jit, static_argnames=("n_chains", "cfg"))
def _reverse_batch(ll_fn, key, idx, xb, zb, betas_rev, eps_rev, *, n_chains, cfg):
    def one(i, x, z_star, eps):
        z0 = jnp.broadcast_to(z_star, (n_chains, z_star.shape[0]))
        logw, z, info = _anneal(jax.random.fold_in(key, i), ll_fn, x, z0, betas_rev, eps, 0, cfg)
        log_mean, se, ess = _summarise(logw)
        return (-log_mean, se, ess, logw, z, info)

    return jax.vmap(one)(idx, xb, zb, eps_rev)


def _check_data(x: Any) -> Array:
    check_shape(x, None, "x")
    check_finite(x, "x")
    return jnp.asarray(x, jnp.float32)


def _check_log_likelihood(fn: Any, latent_dim: int, x: Array) -> Partial:
    if not callable(fn):
        raise ConfigError(f"log_likelihood must be a function (z, x) -> scalar, got {fn!r}")
    fn = fn if isinstance(fn, Partial) else Partial(fn)
    z = jax.ShapeDtypeStruct((latent_dim,), jnp.float32)
    xs = jax.ShapeDtypeStruct(x.shape[1:], jnp.float32)
    try:
        out = jax.eval_shape(fn, z, xs)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"log_likelihood(z, x) failed for z of shape ({latent_dim},) and one example of "
            f"shape {tuple(x.shape[1:])}: {e}. Check latent_dim against the decoder"
        ) from e
    if getattr(out, "shape", None) != ():
        raise ConfigError(
            f"log_likelihood(z, x) must return a scalar log p(x | z) for ONE z and ONE x, "
            f"got shape {getattr(out, 'shape', out)}; vmapping over chains and examples is "
            f"done by decoder_ais"
        )
    return fn


def _collect(parts, n, n_leapfrog, hmc_steps, adapt_chains, direction, steps=None):
    cat = lambda i: jnp.concatenate([p[i] for p in parts])[:n]
    log_px, se, ess, logw, z = (cat(i) for i in range(5))
    info = AnnealInfo(*(jnp.concatenate([p[5][j] for p in parts])[:n] for j in range(3)))
    steps = info.step_size if steps is None else jnp.asarray(steps)
    return DecoderAISResult(
        log_px=log_px,
        log_px_se=se,
        ess=ess,
        log_weights=logw,
        acceptance=jnp.mean(info.acceptance, axis=1),
        acceptance_by_temperature=jnp.mean(info.acceptance, axis=0),
        step_sizes=steps,
        final_z=z,
        n_leapfrog=int(n_leapfrog),
        hmc_steps=int(hmc_steps),
        adapt_chains=int(adapt_chains),
        direction=direction,
    )


def _reverse_steps(eps: np.ndarray) -> np.ndarray:
    """Forward steps at ``β_1..β_K`` → the reverse run's steps at ``β_{K-1}..β_0`` (the move
    at ``β_0`` comes after the last weight increment, so its step is immaterial: ``β_1``'s)."""
    return np.concatenate([eps[..., :-1][..., ::-1], eps[..., :1]], axis=-1)


class AISSettings(NamedTuple):
    """The settings of a forward run (:func:`decoder_ais`'s keyword arguments, same
    defaults); :meth:`checked` validates them once (:func:`decoder_ais` and :func:`bdmc`
    share it)."""

    n_chains: int = 16
    betas: Float[ArrayLike, " K1"] | None = None
    n_leapfrog: int = 10
    hmc_steps: int = 1
    step_size: float = 0.1
    target_accept: float = 0.65
    adapt_chains: int = 4
    adapt_rate: float = 0.5
    batch_size: int = 100

    @classmethod
    def of(cls, **settings: Any) -> AISSettings:
        """The settings named in ``settings`` (the others at their defaults), checked; an
        unknown name is a :class:`ConfigError` that lists the known ones."""
        unknown = sorted(set(settings) - set(cls._fields))
        if unknown:
            raise ConfigError(
                f"unknown decoder-AIS setting(s) {unknown}; the settings are {cls._fields}"
            )
        return cls(**settings).checked()

    def checked(self) -> AISSettings:
        """These settings with integers as ints and ``betas`` as a checked float32 array
        (default :func:`betas_sigmoid` ``(1000)``); raises :class:`ConfigError` otherwise."""
        _check_hmc(self.n_leapfrog, self.hmc_steps, self.target_accept, self.adapt_rate)
        if not (math.isfinite(float(self.step_size)) and float(self.step_size) > 0):
            raise ConfigError(f"step_size must be a finite number > 0, got {self.step_size!r}")
        return self._replace(
            n_chains=_check_int("n_chains", self.n_chains, 1),
            betas=_check_betas(betas_sigmoid(1000) if self.betas is None else self.betas),
            n_leapfrog=int(self.n_leapfrog),
            hmc_steps=int(self.hmc_steps),
            adapt_chains=_check_int("adapt_chains", self.adapt_chains, 0),
            batch_size=_check_int("batch_size", self.batch_size, 1),
        )


def decoder_ais(
    key: PRNGKeyArray,
    log_likelihood: LogLikelihoodFn,
    x: Float[ArrayLike, "N D"],
    latent_dim: int,
    *,
    n_chains: int = 16,
    betas: Float[ArrayLike, " K1"] | None = None,
    n_leapfrog: int = 10,
    hmc_steps: int = 1,
    step_size: float = 0.1,
    target_accept: float = 0.65,
    adapt_chains: int = 4,
    adapt_rate: float = 0.5,
    batch_size: int = 100,
) -> DecoderAISResult:
    """Forward AIS estimate of ``log p(x_n)`` for every example (Wu et al. 2017).

    ``log_likelihood(z, x) -> log p(x | z)`` for one ``z`` of ``latent_dim`` and one example
    (the prior ``N(0, I)`` is added here); ``n_chains`` estimating chains per example;
    ``betas``: increasing from 0 to 1 (default :func:`betas_sigmoid` ``(1000)``);
    ``hmc_steps`` HMC moves of ``n_leapfrog`` leapfrog steps per temperature, the step
    starting at ``step_size`` and adapted toward ``target_accept`` by ``adapt_chains``
    pilot chains per example (0: fixed ``step_size``; module docstring).  Cost per example:
    ``(n_chains + adapt_chains) · K · hmc_steps · n_leapfrog`` decoder gradients.
    ``log p̂`` is unbiased in ``p`` and a stochastic lower bound on ``log p(x)``.
    """
    latent_dim = _check_int("latent_dim", latent_dim, 1)
    s = AISSettings(n_chains, betas, n_leapfrog, hmc_steps, step_size, target_accept,
                    adapt_chains, adapt_rate, batch_size).checked()  # fmt: skip
    x = _check_data(x)
    fn = _check_log_likelihood(log_likelihood, latent_dim, x)
    cfg = (s.n_leapfrog, s.hmc_steps, float(s.target_accept), float(s.adapt_rate))
    eps = jnp.asarray(_step_schedule(s.step_size, s.betas.shape[0] - 1))
    n = x.shape[0]
    bs = min(s.batch_size, n)
    parts = []
    for start in range(0, n, bs):
        idx = np.arange(start, start + bs)
        parts.append(
            _forward_batch(
                fn,
                key,
                jnp.asarray(idx),
                x[np.minimum(idx, n - 1)],
                jnp.asarray(s.betas),
                eps,
                n_chains=s.n_chains,
                n_adapt=s.adapt_chains,
                latent_dim=latent_dim,
                cfg=cfg,
            )
        )
    return _collect(parts, n, s.n_leapfrog, s.hmc_steps, s.adapt_chains, "forward")


def reverse_decoder_ais(
    key: PRNGKeyArray,
    log_likelihood: LogLikelihoodFn,
    x: Float[ArrayLike, "N D"],
    z_posterior: Float[ArrayLike, "N L"],
    *,
    n_chains: int = 16,
    betas: Float[ArrayLike, " K1"] | None = None,
    step_sizes: float | Float[ArrayLike, " K"] | Float[ArrayLike, "N K"] = 0.1,
    n_leapfrog: int = 10,
    hmc_steps: int = 1,
    batch_size: int = 100,
) -> DecoderAISResult:
    """Reverse AIS from exact posterior samples: a stochastic upper bound on ``log p(x_n)``.

    ``z_posterior[n]`` must be an exact draw of ``p(z | x_n)`` — on simulated data, the
    latent that generated ``x_n`` (:func:`bdmc`).  All ``n_chains`` chains of example ``n``
    start there and anneal ``β`` from 1 to 0 along the reversed ``betas`` (give the same
    increasing schedule as the forward run); ``E[w] = 1 / p(x)``, so ``-log mean w`` is an
    upper bound in expectation.  The chains share their start, so their standard error
    understates the noise.  ``step_sizes``: the step at each ``β_1..β_K`` in forward order
    (a number, ``(K,)``, or ``(N, K)`` as :attr:`DecoderAISResult.step_sizes` of the
    forward run); no adaptation (adapting from ``z*`` would bias the bound).
    """
    n_chains = _check_int("n_chains", n_chains, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    _check_hmc(n_leapfrog, hmc_steps, 0.5, 0.0)
    b = _check_betas(betas_sigmoid(1000) if betas is None else betas)
    x = _check_data(x)
    n = x.shape[0]
    check_shape(z_posterior, None, "z_posterior")
    check_finite(z_posterior, "z_posterior")
    zp = jnp.asarray(z_posterior, jnp.float32)
    if zp.shape[0] != n:
        raise DataError(
            f"z_posterior has {zp.shape[0]} rows for {n} examples: give one exact posterior "
            f"sample (the generating latent) per example"
        )
    fn = _check_log_likelihood(log_likelihood, zp.shape[1], x)
    n_t = b.shape[0] - 1
    eps = _step_schedule(step_sizes, n_t, (n,))
    eps_rev = jnp.asarray(_reverse_steps(eps))
    cfg = (int(n_leapfrog), int(hmc_steps), 0.5, 0.0)
    bs = min(batch_size, n)
    parts = []
    for start in range(0, n, bs):
        idx = np.arange(start, start + bs)
        sel = np.minimum(idx, n - 1)
        parts.append(
            _reverse_batch(
                fn,
                key,
                jnp.asarray(idx),
                x[sel],
                zp[sel],
                jnp.asarray(b[::-1].copy()),
                eps_rev[sel],
                n_chains=n_chains,
                cfg=cfg,
            )
        )
    return _collect(parts, n, n_leapfrog, hmc_steps, 0, "reverse", steps=eps)


def bdmc(
    key: PRNGKeyArray,
    log_likelihood: LogLikelihoodFn,
    sample_model: SampleModelFn,
    n_examples: int,
    **settings: Any,
) -> BDMCResult:
    """Bidirectional Monte Carlo (Grosse et al. 2015, 2016) on data simulated from the model.

    ``sample_model(key, n) -> (z, x)`` draws ``z ~ p(z)``, ``x ~ p(x | z)`` (``n`` rows
    each).  Forward AIS (:func:`decoder_ais`, with the :class:`AISSettings` named in
    ``settings``, checked before anything is simulated) on ``x`` gives a stochastic lower
    bound on each ``log p(x_n)``; reverse AIS (:func:`reverse_decoder_ais`) from the
    generating ``z_n`` — exact posterior samples — with the forward run's step schedule,
    chains, temperatures, leapfrog and HMC steps gives a stochastic upper bound.
    ``E[lower] <= log p(x) <= E[upper]``; the gap shrinks to 0 as the schedule lengthens
    and measures how far AIS is from converged on data like these.
    """
    n_examples = _check_int("n_examples", n_examples, 1)
    s = AISSettings.of(**settings)
    k_sim, k_f, k_r = jax.random.split(key, 3)
    z, x = sample_model(k_sim, n_examples)
    z, x = jnp.asarray(z, jnp.float32), jnp.asarray(x, jnp.float32)
    if z.ndim != 2 or x.ndim != 2 or z.shape[0] != n_examples or x.shape[0] != n_examples:
        raise DataError(
            f"sample_model(key, {n_examples}) must return (z, x) of shapes ({n_examples}, L) "
            f"and ({n_examples}, D), got {tuple(z.shape)} and {tuple(x.shape)}"
        )
    fwd = decoder_ais(k_f, log_likelihood, x, z.shape[1], **s._asdict())
    shared = {k: getattr(s, k) for k in ("n_chains", "betas", "n_leapfrog", "hmc_steps",
                                         "batch_size")}  # fmt: skip
    rev = reverse_decoder_ais(k_r, log_likelihood, x, z, step_sizes=fwd.step_sizes, **shared)
    lo, hi = jnp.mean(fwd.log_px), jnp.mean(rev.log_px)
    return BDMCResult(x, z, fwd, rev, lo, hi, hi - lo)
