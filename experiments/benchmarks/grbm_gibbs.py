"""Real-valued BM throughput: GRBM block Gibbs and mcRBM HMC, egm vs hand-written dense JAX.

    python experiments/benchmarks/grbm_gibbs.py            # GRBM 784x500; mcRBM on 8x8 patches
    python experiments/benchmarks/grbm_gibbs.py --quick    # tiny smoke run

Two JSON lines (higher is better, ratio = egm / dense):

* ``gibbs_grbm_784x500``: chain-sweeps/s of ``block_gibbs(grbm.BLOCKS)`` run by
  ``samplers.run`` (vmapped over 1000 chains) vs a hand-written batched sweep
  ``h ~ σ(c + (β ⊙ v) W)``, ``v = b + h Wᵀ + β^{-1/2} ξ``: two matrix products, one Bernoulli
  and one Gaussian draw per sweep (one key per chain, see :func:`_per_chain`).  Target >= 0.9x.
* ``hmc_mcrbm_64x256``: HMC chain-steps/s (20 leapfrog steps each) on the mcRBM free
  energy of 8x8 patches (D = 64, 256 factors, 64 covariance hiddens on a topographic
  pooling, 100 mean hiddens, the paper's normalised covariance input) for
  ``egm.samplers.hmc(mcrbm.log_density)`` vmapped over chains vs a hand-written batched
  HMC whose free energy is written on the (chains, D) matrix and differentiated as one
  sum.  Target >= 0.9x.

Synthetic parameters (no data needed): a throughput benchmark, not a sampling one; the
HMC line reports both samplers' mean acceptance for context.  Compilation is not timed.
"""

from __future__ import annotations

import functools

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm.energies import grbm, mcrbm  # noqa: E402
from egm.energies._factored import NORMALIZE_EPS  # noqa: E402
from egm.samplers import block_gibbs, hmc, run, step_chains  # noqa: E402

FULL = dict(
    n_visible=784,
    n_hidden=500,
    n_chains=1000,
    n_sweeps=200,
    patch=8,
    n_factors=256,
    n_cov=64,
    n_mean=100,
    hmc_chains=1000,
    hmc_steps=10,
    n_leapfrog=20,
    repeats=5,
)
QUICK = dict(
    n_visible=24,
    n_hidden=16,
    n_chains=32,
    n_sweeps=10,
    patch=4,
    n_factors=16,
    n_cov=16,
    n_mean=8,
    hmc_chains=8,
    hmc_steps=2,
    n_leapfrog=5,
    repeats=1,
)
TARGET = 0.9
PARTS = ("grbm", "hmc")


# --------------------------------------------------------------------------- GRBM Gibbs


def synthetic_grbm(n_visible: int, n_hidden: int, weight_scale: float, seed: int):
    """W ~ N(0, weight_scale²) (0.05: hidden inputs of sd ≈ 1.4 on standardised 784-pixel
    data), b, c ~ N(0, 0.1²), unit variances (β = 1, standardised data)."""
    rng = np.random.default_rng(seed)
    return grbm.GRBMParams(
        W=jnp.asarray(rng.normal(0, weight_scale, (n_visible, n_hidden)), jnp.float32),
        b=jnp.asarray(rng.normal(0, 0.1, n_visible), jnp.float32),
        c=jnp.asarray(rng.normal(0, 0.1, n_hidden), jnp.float32),
        log_beta=jnp.zeros(n_visible, jnp.float32),
    )


def _per_chain(draw, key, n_chains: int, shape):
    """``(n_chains, *shape)`` draws, one key per chain (the layout egm's vmapped kernels use).

    Under the legacy Threefry lowering the benchmarks run with on CPU
    (:func:`_bench.rng_mode`), ONE ``jax.random.normal(key, (1000, 784))`` inside a
    ``lax.scan`` body measured about 5x slower than 1000 per-chain draws of 784 (12 ms vs
    2 ms per sweep here), which alone made a single-key reference sweep 2x slower than
    egm's.  The references therefore draw per chain too, so the ratio measures the sweep
    itself, not a choice of random-number layout.
    """
    return jax.vmap(lambda k: draw(k, shape))(jax.random.split(key, n_chains))


def dense_grbm_gibbs(params: grbm.GRBMParams, v0, keys):
    """The reference: a batched GRBM sweep on (chains, V) written out by hand, in a scan."""
    W, b, c, log_beta = params
    beta, std = jnp.exp(log_beta), jnp.exp(-0.5 * log_beta)
    n_chains, n_visible = v0.shape

    def sweep(v, k):
        kh, kv = jax.random.split(k)
        p_h = jax.nn.sigmoid((v * beta) @ W + c)
        u = _per_chain(jax.random.uniform, kh, n_chains, (W.shape[1],))
        h = (u < p_h).astype(jnp.float32)
        xi = _per_chain(jax.random.normal, kv, n_chains, (n_visible,))
        return b + h @ W.T + std * xi, None

    return jax.lax.scan(sweep, v0, keys)[0]


def grbm_line(cfg: dict, a, env: dict) -> dict:
    V, H, C, n_sweeps = cfg["n_visible"], cfg["n_hidden"], cfg["n_chains"], cfg["n_sweeps"]
    params = synthetic_grbm(V, H, a.weight_scale, a.seed)
    k_init, k_run = jax.random.split(jax.random.key(a.seed))
    v0 = jax.random.normal(k_init, (C, V))
    states = grbm.GRBMState(v=v0, h=jnp.zeros((C, H)))  # h is resampled first
    kernel = block_gibbs(grbm.BLOCKS)
    run_jit = jax.jit(run, static_argnums=(0, 4))
    compiled = run_jit.lower(kernel, k_run, states, params, n_sweeps).compile()
    dense_jit = jax.jit(dense_grbm_gibbs)
    keys = jax.random.split(k_run, n_sweeps)
    contenders = {
        "egm": lambda: jax.block_until_ready(run_jit(kernel, k_run, states, params, n_sweeps)[0]),
        "dense": lambda: jax.block_until_ready(dense_jit(params, v0, keys)),
    }
    times = _bench.interleaved(contenders, cfg["repeats"])
    rate = {k: C * n_sweeps / _bench.median(t) for k, t in times.items()}
    return _bench.emit(
        _bench.rate_line(
            f"gibbs_grbm_{V}x{H}",
            egm=rate["egm"],
            peer="dense",
            peer_value=rate["dense"],
            unit="chain-sweeps/s",
            stat=f"median of {cfg['repeats']} interleaved timed calls (after 1 untimed warm-up)",
            target=f">= {TARGET:g}x dense",
            min_ratio=TARGET,
            n_chains=C,
            sweeps_per_call=n_sweeps,
            weights=f"W~N(0,{a.weight_scale}^2), b,c~N(0,0.1^2), beta=1, synthetic",
            egm_runs_s=_bench.runs(times["egm"]),
            peer_runs_s=_bench.runs(times["dense"]),
            egm_matmuls_in_hlo=_bench.count_matmuls(compiled),
            quick=a.quick,
            **env,
        )
    )


# --------------------------------------------------------------------------- mcRBM HMC


def dense_mcrbm_free_energy(params: mcrbm.MCRBMParams, X, eps: float = NORMALIZE_EPS):
    """The mcRBM free energy with normalised covariance input of every row of X (chains, D),
    written on the matrix: the formula of :func:`egm.energies.mcrbm.free_energy` with
    ``normalize_input=True``.  Returns (chains,)."""
    Xt = X * jax.lax.rsqrt(jnp.mean(X**2, axis=1, keepdims=True) + eps)
    cov = jax.nn.softplus(params.b_c - 0.5 * ((Xt @ params.C) ** 2) @ params.P)
    mean = jax.nn.softplus(params.b_m + X @ params.W)
    return 0.5 * jnp.sum(X * X, 1) - X @ params.b_v - jnp.sum(cov, 1) - jnp.sum(mean, 1)


def dense_hmc(params, X0, keys, step_size: float, n_leapfrog: int):
    """The reference: batched HMC on (chains, D), identity mass, per-chain accept.  One
    ``value_and_grad`` of the summed log density per leapfrog step (the per-chain values
    ride along as an auxiliary output), cached for the next step as egm's state does."""

    def logp_sum(X):
        rows = -dense_mcrbm_free_energy(params, X)
        return jnp.sum(rows), rows

    value_and_grad = jax.value_and_grad(logp_sum, has_aux=True)

    def hmc_step(carry, k):
        X, logp, g = carry
        kp, ku = jax.random.split(k)
        p0 = _per_chain(jax.random.normal, kp, X.shape[0], X.shape[1:])

        def leapfrog(c, _):
            x, p, g, _ = c
            p = p + 0.5 * step_size * g
            x = x + step_size * p
            (_, rows), g = value_and_grad(x)
            return (x, p + 0.5 * step_size * g, g, rows), None

        (x, p, gx, logp_x), _ = jax.lax.scan(leapfrog, (X, p0, g, logp), None, length=n_leapfrog)
        log_alpha = (logp_x - 0.5 * jnp.sum(p * p, 1)) - (logp - 0.5 * jnp.sum(p0 * p0, 1))
        accept = jnp.log(_per_chain(jax.random.uniform, ku, X.shape[0], ())) < log_alpha
        pick = lambda new, old: jnp.where(accept[:, None], new, old)
        return (pick(x, X), jnp.where(accept, logp_x, logp), pick(gx, g)), jnp.mean(accept)

    (_, logp0), g0 = value_and_grad(X0)
    (X, _, _), acc = jax.lax.scan(hmc_step, (X0, logp0, g0), keys)
    return X, acc


def hmc_line(cfg: dict, a, env: dict) -> dict:
    D = cfg["patch"] ** 2
    F, N, M = cfg["n_factors"], cfg["n_cov"], cfg["n_mean"]
    C, n_steps, L = cfg["hmc_chains"], cfg["hmc_steps"], cfg["n_leapfrog"]
    k_p, k_x, k_run = jax.random.split(jax.random.key(a.seed + 1), 3)
    params = mcrbm.init(k_p, D, F, N, M, pooling="topographic")
    log_density = functools.partial(mcrbm.log_density, normalize_input=True)
    kernel = hmc(log_density, n_leapfrog=L, step_size=a.hmc_step_size)
    X0 = jax.random.normal(k_x, (C, D))  # whitened patches have unit scale
    states = jax.vmap(kernel.init, in_axes=(0, None))(X0, params)

    @functools.partial(jax.jit, static_argnums=3)
    def egm_run(key, states, params, n_steps):
        def body(s, k):
            s, info = step_chains(kernel, k, s, params)
            return s, jnp.mean(info.is_accepted)

        return jax.lax.scan(body, states, jax.random.split(key, n_steps))

    dense_jit = jax.jit(dense_hmc, static_argnums=(3, 4))
    keys = jax.random.split(k_run, n_steps)
    accept = {}

    def go_egm():
        s, acc = egm_run(k_run, states, params, n_steps)
        accept["egm"] = acc
        return jax.block_until_ready(s.position)

    def go_dense():
        X, acc = dense_jit(params, X0, keys, a.hmc_step_size, L)
        accept["dense"] = acc
        return jax.block_until_ready(X)

    times = _bench.interleaved({"egm": go_egm, "dense": go_dense}, cfg["repeats"])
    rate = {k: C * n_steps / _bench.median(t) for k, t in times.items()}
    return _bench.emit(
        _bench.rate_line(
            f"hmc_mcrbm_{D}x{F}",
            egm=rate["egm"],
            peer="dense",
            peer_value=rate["dense"],
            unit=f"chain-steps/s (HMC, {L} leapfrog steps each)",
            stat=f"median of {cfg['repeats']} interleaved timed calls (after 1 untimed warm-up)",
            target=f">= {TARGET:g}x dense",
            min_ratio=TARGET,
            model=(
                f"mcRBM D={D} ({cfg['patch']}x{cfg['patch']} patches), {F} factors, {N} "
                f"covariance hiddens (topographic pooling), {M} mean hiddens, normalised "
                f"covariance input; mcrbm.init parameters"
            ),
            n_chains=C,
            steps_per_call=n_steps,
            step_size=a.hmc_step_size,
            egm_acceptance=_bench.sig(float(jnp.mean(accept["egm"])), 3),
            peer_acceptance=_bench.sig(float(jnp.mean(accept["dense"])), 3),
            egm_runs_s=_bench.runs(times["egm"]),
            peer_runs_s=_bench.runs(times["dense"]),
            quick=a.quick,
            **env,
        )
    )


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    for k in FULL:
        if k != "repeats":
            p.add_argument(f"--{k}", type=int, default=None)
    p.add_argument("--weight_scale", type=float, default=0.05)
    p.add_argument("--hmc_step_size", type=float, default=0.2)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    a = p.parse_args(argv)
    parts = [x for x in a.parts.split(",") if x]
    if set(parts) - set(PARTS):
        p.error(f"unknown parts {sorted(set(parts) - set(PARTS))}; choose from {list(PARTS)}")
    env = _bench.environment()  # before any work: load_avg_1m is the background load
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    lines = []
    if "grbm" in parts:
        lines.append(grbm_line(cfg, a, env))
    if "hmc" in parts:
        lines.append(hmc_line(cfg, a, env))
    return lines


if __name__ == "__main__":
    with _bench.rng_mode():
        main()
