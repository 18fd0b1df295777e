"""Block Gibbs throughput of a binary RBM: egm vs thrml and vs a plain dense JAX sweep.

    python experiments/benchmarks/gibbs_rbm.py            # 784x500, 1000 chains
    python experiments/benchmarks/gibbs_rbm.py --quick    # tiny smoke run

Prints one JSON line per peer (chain-sweeps/s, higher is better, ratio = egm / peer).
Every contender runs the same RBM from the same kind of start (uniform random visibles)
for a fixed number of sweeps; compilation and thrml's program build are not timed.
thrml is far slower per sweep, so it runs fewer sweeps per timed call (the rate is per
chain-sweep, and each call lasts seconds, so per-call overhead is negligible).
``gemm_bound_fraction``: seconds of the sweep's two matrix products alone (those of the
compiled egm run, in a jitted scan of as many sweeps, no random draws; timed interleaved
with the rest) over egm's seconds.
"""

from __future__ import annotations

import _bench  # noqa: E402
import _peers  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm.energies import rbm  # noqa: E402
from egm.samplers import block_gibbs, run  # noqa: E402

FULL = dict(n_visible=784, n_hidden=500, n_chains=1000, n_sweeps=200, thrml_sweeps=10, repeats=5)
QUICK = dict(n_visible=24, n_hidden=16, n_chains=32, n_sweeps=20, thrml_sweeps=4, repeats=2)
TARGETS = {"thrml": 20.0, "dense": 0.9}


def synthetic_rbm(
    n_visible: int, n_hidden: int, weight_scale: float, seed: int
) -> tuple[np.ndarray, ...]:
    """W ~ N(0, weight_scale²) (0.05: the scale a trained MNIST RBM's weights have early
    on; hidden inputs then have sd ≈ 0.05·√(V/2) ≈ 1), biases ~ N(0, 0.1²)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, weight_scale, (n_visible, n_hidden)).astype(np.float32)
    b = rng.normal(0.0, 0.1, n_visible).astype(np.float32)
    c = rng.normal(0.0, 0.1, n_hidden).astype(np.float32)
    return W, b, c


def make_egm_gibbs(W, b, c, n_chains: int, n_sweeps: int, seed: int):
    """egm's public path: ``block_gibbs(rbm.BLOCKS)`` run by ``samplers.run`` under jit.

    Returns ``(go, compiled)``; ``compiled`` is the ahead-of-time compiled run (the
    same executable ``go`` calls), for counting its matrix products.
    """
    params = rbm.RBMParams(*(jnp.asarray(x) for x in (W, b, c)))
    kernel = block_gibbs(rbm.BLOCKS)
    k_init, k_run = jax.random.split(jax.random.key(seed))
    v0 = jax.random.bernoulli(k_init, 0.5, (n_chains, W.shape[0])).astype(jnp.float32)
    states = jax.vmap(rbm.init_state, in_axes=(None, 0))(params, v0)
    run_jit = jax.jit(run, static_argnums=(0, 4))
    compiled = run_jit.lower(kernel, k_run, states, params, n_sweeps).compile()

    def go():
        final, _ = run_jit(kernel, k_run, states, params, n_sweeps)
        return jax.block_until_ready(final.v)

    return go, compiled


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    for k in FULL:
        if k != "repeats":
            p.add_argument(f"--{k}", type=int, default=None)
    p.add_argument("--weight_scale", type=float, default=0.05)
    p.add_argument("--peers", default="thrml,dense", help="comma-separated subset of: thrml, dense")
    a = p.parse_args(argv)
    env = _bench.environment()  # before any work: load_avg_1m is the background load
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    V, H, C = cfg["n_visible"], cfg["n_hidden"], cfg["n_chains"]
    peers = [x for x in a.peers.split(",") if x]
    unknown = set(peers) - set(TARGETS)
    if unknown:
        p.error(f"unknown peers {sorted(unknown)}; choose from {sorted(TARGETS)}")

    W, b, c = synthetic_rbm(V, H, a.weight_scale, a.seed)
    go_egm, compiled = make_egm_gibbs(W, b, c, C, cfg["n_sweeps"], a.seed)
    bound = _bench.make_gemm_bound(_bench.hlo_products(compiled), cfg["n_sweeps"], a.seed)
    contenders = {"egm": go_egm, "gemm_bound": bound.go}
    sweeps = {"egm": cfg["n_sweeps"]}
    skipped: dict[str, str] = {}
    if "thrml" in peers:
        reason = _bench.peer_available("thrml")
        if reason:
            skipped["thrml"] = reason
        else:
            contenders["thrml"] = _peers.make_thrml_rbm_gibbs(
                W, b, c, C, cfg["thrml_sweeps"], a.seed
            )
            sweeps["thrml"] = cfg["thrml_sweeps"]
    if "dense" in peers:
        contenders["dense"] = _peers.make_dense_rbm_gibbs(W, b, c, C, cfg["n_sweeps"], a.seed)
        sweeps["dense"] = cfg["n_sweeps"]

    times = _bench.interleaved(contenders, cfg["repeats"])
    rate = {k: C * sweeps[k] / _bench.median(t) for k, t in times.items() if k in sweeps}
    stat = f"median of {cfg['repeats']} interleaved timed calls (after 1 untimed warm-up)"
    common = {
        "n_chains": C,
        "weights": f"W~N(0,{a.weight_scale}^2), b,c~N(0,0.1^2), synthetic",
        "egm_sweeps_per_call": sweeps["egm"],
        "egm_runs_s": _bench.runs(times["egm"]),
        "egm_matmuls_in_hlo": _bench.count_matmuls(compiled),
        **bound.record(_bench.median(times["gemm_bound"]), _bench.median(times["egm"])),
        "quick": a.quick,
        **env,
    }
    bench = f"gibbs_rbm_{V}x{H}"
    lines = []
    for peer in peers:
        target = f">= {TARGETS[peer]:g}x {peer}"
        if peer in skipped:
            extra = {"skipped": skipped[peer]}
        else:
            extra = {
                "peer_sweeps_per_call": sweeps[peer],
                "peer_runs_s": _bench.runs(times[peer]),
            }
        rec = _bench.rate_line(
            bench,
            egm=rate["egm"],
            peer=peer,
            peer_value=rate.get(peer),
            unit="chain-sweeps/s",
            stat=stat,
            target=target,
            min_ratio=TARGETS[peer],
            **extra,
            **common,
        )
        lines.append(_bench.emit(rec))
    return lines


if __name__ == "__main__":
    with _bench.rng_mode():
        main()
