"""Convolutional RBM block Gibbs throughput: egm vs learnergy's ConvRBM (PyTorch) and vs the
dense-equivalent RBM (egm's own, the tied Toeplitz matrix), same run.

    python experiments/benchmarks/conv_rbm_gibbs.py            # 28x28, 16 filters 7x7, 100 chains
    python experiments/benchmarks/conv_rbm_gibbs.py --quick    # tiny smoke run
    cd experiments/benchmarks && python conv_rbm_gibbs.py --torch_threads 1,2 --repeats 3

Like for like: learnergy's ``ConvRBM`` (``learnergy.models.bernoulli.ConvRBM``, binary
visibles, sigmoid detection units, no pooling constraint: its ``maxpooling`` option is a
deterministic MaxPool2d of the features, not probabilistic max pooling) at its defaults for
MNIST (28x28 images, 7x7 filters; here ``--filters`` of them), one chain-sweep being its own
``visible_sampling`` then ``hidden_sampling`` (``F.conv_transpose2d`` / ``F.conv2d`` and
``torch.bernoulli``, under ``torch.no_grad``), and egm's :func:`egm.energies.conv_rbm.gibbs`
with ``pool = 1`` (the same model, in a chains-minor layout, one ``lax.scan``: on one
channel without pooling, the visibles' full convolution as one GEMM over all chains, the
detection units' 49 taps summed in one fused kernel with their Threefry uniforms and
Bernoulli draws; :func:`egm.energies.conv_rbm.gibbs`).  ``--torch_threads 1,2`` times
learnergy at each thread count as its own interleaved contender and credits egm's ratio
against the faster one (named in the line).  The dense reference runs the same sweeps with the
(784 x 22·22·K) Toeplitz matrix of the filters (:func:`dense_equivalent`, two GEMMs per
sweep).  A fourth line times egm with 2x2 probabilistic max pooling (``pool = 2``: both
convolutions as GEMMs, 24-bit uniforms of XLA's Threefry bit generator; no peer has it).

Throughput in chain-sweeps per second (higher is better); ratio = egm / peer.  Targets:
>= 3x learnergy; the dense line is context (>= 1x: convolution should beat the Toeplitz GEMM).
"""

from __future__ import annotations

import functools

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm.energies import conv_rbm as cr  # noqa: E402
from egm.energies import rbm  # noqa: E402

FULL = dict(image=28, filter=7, filters=16, n_chains=100, n_sweeps=100, repeats=5)
QUICK = dict(image=12, filter=3, filters=4, n_chains=8, n_sweeps=5, repeats=1)
TARGET = 3.0


def make_egm(params, spec, v0, n_sweeps, seed):
    n = v0.shape[0]
    init = jax.jit(jax.vmap(cr.init_state, (0, None, None, 0)), static_argnums=1)
    s0 = init(jax.random.split(jax.random.key(seed), n), spec, params, v0)
    run = jax.jit(functools.partial(cr.gibbs, spec=spec, n_sweeps=n_sweeps))
    key = jax.random.key(seed + 1)
    return lambda: jax.block_until_ready(run(key, params=params, state=s0))


def make_dense(dense: rbm.RBMParams, v0, n_sweeps, seed):
    n = v0.shape[0]
    x = v0.reshape(n, -1)

    @jax.jit
    def run(key, W, b, c, x):
        p = rbm.RBMParams(W, b, c)
        k0, k1 = jax.random.split(key)
        h = jax.vmap(rbm.sample_hidden, (0, None, 0))(jax.random.split(k0, n), p, x)

        def body(h, k):
            kv, kh = jax.random.split(k)
            v = jax.vmap(rbm.sample_visible, (0, None, 0))(jax.random.split(kv, n), p, h)
            return jax.vmap(rbm.sample_hidden, (0, None, 0))(jax.random.split(kh, n), p, v), None

        return jax.lax.scan(body, h, jax.random.split(k1, n_sweeps))[0]

    key = jax.random.key(seed + 2)
    return lambda: jax.block_until_ready(run(key, dense.W, dense.b, dense.c, x))


def make_learnergy(params, v0, n_sweeps, seed):
    import torch
    from learnergy.models.bernoulli import ConvRBM

    torch.manual_seed(seed)
    Nw, _, C, K = params.W.shape
    m = ConvRBM(visible_shape=tuple(v0.shape[1:3]), filter_shape=(Nw, Nw), n_filters=K,
                n_channels=C, steps=1)  # fmt: skip
    with torch.no_grad():  # the same filters (torch: (K, C, Nw, Nw), conv2d = correlation)
        m.W.copy_(torch.from_numpy(np.asarray(params.W).transpose(3, 2, 0, 1).copy()))
        m.b.copy_(torch.from_numpy(np.array(params.b)))
        m.a.copy_(torch.from_numpy(np.array(params.a)))
    v = torch.from_numpy(np.asarray(v0).transpose(0, 3, 1, 2).copy())

    def go():
        with torch.no_grad():
            _, h = m.hidden_sampling(v)
            for _ in range(n_sweeps):
                _, x = m.visible_sampling(h)
                _, h = m.hidden_sampling(x)
        return h

    return go, getattr(__import__("learnergy"), "__version__", "?")


def _peer_name(threads: int | None) -> str:
    return "learnergy" if threads is None else f"learnergy_t{threads}"


def _threads_of(name: str) -> int:
    import torch

    return int(name.removeprefix("learnergy_t")) if "_t" in name else torch.get_num_threads()


def _with_threads(go, threads: int | None):
    """``go`` run with ``threads`` torch intra-op threads (``None``: torch's own setting)."""
    if threads is None:
        return go

    def call():
        import torch

        torch.set_num_threads(threads)
        return go()

    return call


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--filters", type=int, default=None)
    p.add_argument("--n_chains", type=int, default=None)
    p.add_argument("--n_sweeps", type=int, default=None)
    p.add_argument("--torch_threads", type=str, default=None,
                   help="torch intra-op threads, or a comma list (each its own contender; the "
                   "ratio is against the fastest); default: torch's own.  1 avoids the collapse "
                   "of torch's thread pool on an oversubscribed machine")  # fmt: skip
    a = p.parse_args(argv)
    threads = [int(t) for t in a.torch_threads.split(",")] if a.torch_threads else [None]
    env = _bench.environment()
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    S, Nw, K, n, T = cfg["image"], cfg["filter"], cfg["filters"], cfg["n_chains"], cfg["n_sweeps"]
    with _bench.rng_mode():
        spec1, spec2 = cr.ConvRBM(pool=1), cr.ConvRBM(pool=2)
        params = cr.init(jax.random.key(a.seed), spec1, S, 1, K, Nw, scale=0.5, hidden_bias=-2.0)
        v0 = jax.random.bernoulli(jax.random.key(a.seed + 3), 0.3, (n, S, S, 1)).astype(jnp.float32)
        contenders = {"egm": make_egm(params, spec1, v0, T, a.seed),
                      "dense": make_dense(cr.dense_equivalent(spec1, params, S), v0, T, a.seed)}  # fmt: skip
        if (S - Nw + 1) % 2 == 0:
            contenders["egm_pool2"] = make_egm(params, spec2, v0, T, a.seed)
        skipped = _bench.peer_available("learnergy")
        version = None
        if not skipped:
            go, version = make_learnergy(params, v0, T, a.seed)
            for t in threads:
                contenders[_peer_name(t)] = _with_threads(go, t)
        times = _bench.interleaved(contenders, cfg["repeats"])
        rng = f"threefry2x32, partitionable={bool(jax.config.jax_threefry_partitionable)}"
    rate = {k: n * T / _bench.median(t) for k, t in times.items()}
    peers = {k: v for k, v in rate.items() if k.startswith("learnergy")}
    if peers:  # credit the faster peer setting
        best = max(peers, key=peers.get)
        rate["learnergy"] = peers[best]
    setting = f"{S}x{S} binary images, {K} filters {Nw}x{Nw}, {n} chains, {T} sweeps per call"
    common = {"setting": setting, "quick": a.quick, **env, "rng": rng,
              "runs_s": {k: _bench.runs(t) for k, t in times.items()}}  # fmt: skip
    stat = f"median of {cfg['repeats']} interleaved timed calls (after 1 untimed warm-up)"
    if peers:
        import torch

        common["torch"] = torch.__version__
        common["torch_threads"] = _threads_of(best)
        common["peer_by_threads"] = {str(_threads_of(k)): _bench.sig(v) for k, v in peers.items()}
    lines = [
        _bench.rate_line(
            f"gibbs_conv_rbm_{S}x{S}_k{K}_w{Nw}", egm=rate["egm"],
            peer=f"learnergy {version} ConvRBM" if version else "none",
            peer_value=rate.get("learnergy"), unit="chain-sweeps/s", stat=stat,
            target=f">= {TARGET:g}x learnergy", min_ratio=TARGET,
            **common, **({"skipped": skipped} if skipped else {}),
        ),
        _bench.rate_line(
            f"gibbs_conv_rbm_{S}x{S}_k{K}_w{Nw}_vs_dense", egm=rate["egm"],
            peer="egm dense RBM with the Toeplitz matrix", peer_value=rate["dense"],
            unit="chain-sweeps/s", stat=stat, target=">= 1x dense", min_ratio=1.0, **common,
        ),
    ]  # fmt: skip
    if "egm_pool2" in rate:
        lines.append(_bench.rate_line(
            f"gibbs_conv_rbm_{S}x{S}_k{K}_w{Nw}_pool2", egm=rate["egm_pool2"],
            peer=f"learnergy {version} ConvRBM (no pooling)" if version else "none",
            peer_value=rate.get("learnergy"), unit="chain-sweeps/s", stat=stat,
            target="context (probabilistic max pooling has no peer)", min_ratio=0.0, **common,
        ))  # fmt: skip
    return [_bench.emit(r) for r in lines]


if __name__ == "__main__":
    main()
