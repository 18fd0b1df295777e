"""DBM throughput: block-Gibbs sweeps and mean-field iterations, egm vs a dense reference.

    python experiments/benchmarks/gibbs_dbm.py            # 784-500-1000, 1000 chains, 10k batch
    python experiments/benchmarks/gibbs_dbm.py --quick    # tiny smoke run

Two JSON lines (higher is better, ratio = egm / dense):

* ``gibbs_dbm``: chain-sweeps/s of odd/even block Gibbs (``block_gibbs(dbm.BLOCKS)`` run by
  ``samplers.run``, vmapped over chains) vs a hand-written batched sweep
  (``h1 ~ σ(v W1 + h2 W2ᵀ + b1)``, then ``v ~ σ(h1 W1ᵀ + b0)``, ``h2 ~ σ(h1 W2 + b2)``):
  three matrix products and three Bernoulli draws per sweep.  Target >= 0.9x.
* ``mean_field_dbm``: mean-field iterations/s of ``dbm.mean_field_unrolled`` vmapped over a
  batch vs a hand-written batched iteration (same update order: h1 then h2).
"""

from __future__ import annotations

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm.energies import dbm  # noqa: E402
from egm.samplers import block_gibbs, run  # noqa: E402

FULL = dict(
    sizes=(784, 500, 1000), n_chains=1000, n_sweeps=100, mf_batch=10000, mf_iters=10, repeats=5
)
QUICK = dict(sizes=(24, 16, 12), n_chains=32, n_sweeps=10, mf_batch=64, mf_iters=3, repeats=1)
TARGET = 0.9


def synthetic_dbm(sizes, weight_scale: float, seed: int) -> dbm.DBMParams:
    """W_l ~ N(0, weight_scale²) (0.05: hidden inputs of sd ≈ 1 for MNIST-sized layers),
    biases ~ N(0, 0.1²)."""
    rng = np.random.default_rng(seed)
    weights = tuple(
        jnp.asarray(rng.normal(0, weight_scale, (a, b)), jnp.float32)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    )
    biases = tuple(jnp.asarray(rng.normal(0, 0.1, n), jnp.float32) for n in sizes)
    return dbm.DBMParams(weights, biases)


def _bern(key, logits):
    return (jax.random.uniform(key, logits.shape) < jax.nn.sigmoid(logits)).astype(jnp.float32)


def dense_gibbs(params, state, key, n_sweeps):
    """The reference: a batched 3-layer sweep written out by hand, in a ``fori_loop``."""
    (W1, W2), (b0, b1, b2) = params

    def body(i, s):
        v, h1, h2 = s
        k1, k2, k3 = jax.random.split(jax.random.fold_in(key, i), 3)
        h1 = _bern(k1, v @ W1 + h2 @ W2.T + b1)
        return _bern(k2, h1 @ W1.T + b0), h1, _bern(k3, h1 @ W2 + b2)

    return jax.lax.fori_loop(0, n_sweeps, body, state)


def dense_mean_field(params, v, n_iter):
    (W1, W2), (b0, b1, b2) = params
    mu1 = jnp.full((v.shape[0], W1.shape[1]), 0.5)
    mu2 = jnp.full((v.shape[0], W2.shape[1]), 0.5)
    vW1 = v @ W1 + b1

    def body(i, s):
        mu1, mu2 = s
        mu1 = jax.nn.sigmoid(vW1 + mu2 @ W2.T)
        return mu1, jax.nn.sigmoid(mu1 @ W2 + b2)

    return jax.lax.fori_loop(0, n_iter, body, (mu1, mu2))


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--weight_scale", type=float, default=0.05)
    a = p.parse_args(argv)
    env = _bench.environment()
    cfg = {**(QUICK if a.quick else FULL)}
    if a.repeats:
        cfg["repeats"] = a.repeats
    sizes, C = cfg["sizes"], cfg["n_chains"]
    params = synthetic_dbm(sizes, a.weight_scale, a.seed)
    k0, k1, k2 = jax.random.split(jax.random.key(a.seed), 3)
    state = tuple(
        jax.random.bernoulli(jax.random.fold_in(k0, i), 0.5, (C, n)).astype(jnp.float32)
        for i, n in enumerate(sizes)
    )

    run_jit = jax.jit(run, static_argnums=(0, 4))
    kernel = block_gibbs(dbm.BLOCKS)
    dense_jit = jax.jit(dense_gibbs, static_argnums=3)
    n_sweeps = cfg["n_sweeps"]
    contenders = {
        "egm": lambda: jax.block_until_ready(run_jit(kernel, k1, state, params, n_sweeps)[0]),
        "dense": lambda: jax.block_until_ready(dense_jit(params, state, k1, n_sweeps)),
    }
    times = _bench.interleaved(contenders, cfg["repeats"])
    rate = {k: C * n_sweeps / _bench.median(t) for k, t in times.items()}
    stat = f"median of {cfg['repeats']} interleaved timed calls (after 1 untimed warm-up)"
    name = "-".join(map(str, sizes))
    lines = [
        _bench.emit(
            _bench.rate_line(
                f"gibbs_dbm_{name}",
                egm=rate["egm"],
                peer="dense",
                peer_value=rate["dense"],
                unit="chain-sweeps/s",
                stat=stat,
                target=f">= {TARGET:g}x dense",
                min_ratio=TARGET,
                n_chains=C,
                sweeps_per_call=n_sweeps,
                egm_runs_s=_bench.runs(times["egm"]),
                peer_runs_s=_bench.runs(times["dense"]),
                quick=a.quick,
                **env,
            )
        )
    ]

    B, n_iter = cfg["mf_batch"], cfg["mf_iters"]
    v = jax.random.bernoulli(k2, 0.3, (B, sizes[0])).astype(jnp.float32)
    egm_mf = jax.jit(lambda p, v: jax.vmap(lambda x: dbm.mean_field_unrolled(p, x, n_iter))(v))
    ref_mf = jax.jit(dense_mean_field, static_argnums=2)
    mf = {
        "egm": lambda: jax.block_until_ready(egm_mf(params, v)),
        "dense": lambda: jax.block_until_ready(ref_mf(params, v, n_iter)),
    }
    t = _bench.interleaved(mf, cfg["repeats"])
    mrate = {k: n_iter / _bench.median(x) for k, x in t.items()}
    lines.append(
        _bench.emit(
            _bench.rate_line(
                f"mean_field_dbm_{name}",
                egm=mrate["egm"],
                peer="dense",
                peer_value=mrate["dense"],
                unit=f"mean-field iterations/s on a batch of {B}",
                stat=stat,
                target=f">= {TARGET:g}x dense",
                min_ratio=TARGET,
                batch=B,
                iters_per_call=n_iter,
                egm_runs_s=_bench.runs(t["egm"]),
                peer_runs_s=_bench.runs(t["dense"]),
                quick=a.quick,
                **env,
            )
        )
    )
    return lines


if __name__ == "__main__":
    with _bench.rng_mode():
        main()
