"""One epoch of PCD-1 training of a binary RBM on MNIST: egm vs scikit-learn's BernoulliRBM.

    python experiments/benchmarks/pcd_epoch.py            # 60k binarized digits, 500 hidden
    python experiments/benchmarks/pcd_epoch.py --quick    # tiny smoke run

Like for like: sklearn's ``BernoulliRBM`` is uncentered PCD-1 with ``batch_size``
persistent chains, plain SGD (no momentum, no weight decay), float32 when given float32.
egm runs ``estimator="pcd", k=1, centering=False`` with ``sgd`` and ``batch_size``
chains, its whole epoch one jitted ``lax.scan`` over the device-resident data (donated
state).  A second line times egm's centered variant against the same sklearn runs.
Seconds per epoch, lower is better; ratio = sklearn / egm (egm's speed-up).
``gemm_bound_fraction``: the seconds of the epoch's matrix products alone (the products of
the compiled epoch, in a jitted scan of the same number of updates, no random draws; timed
interleaved with the rest) over egm's seconds, so 1 would mean nothing but GEMM time.
"""

from __future__ import annotations

import _bench  # noqa: E402
import _peers  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from egm import train  # noqa: E402
from egm.energies import rbm  # noqa: E402

FULL = dict(n_hidden=500, batch_size=100, repeats=5, n_examples=None)
QUICK = dict(n_hidden=16, batch_size=50, repeats=2, n_examples=200)
TARGET = 2.0


def make_egm_epoch(x, n_hidden: int, batch_size: int, lr: float, centering: bool, seed: int):
    """egm's public training path; returns ``(go, compiled)`` (``go`` runs one epoch)."""
    key = jax.random.key(seed)
    k_init, k_state, k_epochs = jax.random.split(key, 3)
    X = jnp.asarray(x)  # device-resident for the whole run (DESIGN.md §4)
    data_mean = jnp.mean(X, axis=0)
    params = rbm.init(k_init, X.shape[1], n_hidden, data_mean=data_mean)
    opt = train.sgd(lr)
    config = train.RBMStepConfig(estimator="pcd", k=1, centering=centering)
    step = train.make_step(train.rbm_objective(config), opt)
    epoch = jax.jit(train.make_epoch(step, batch_size=batch_size), donate_argnums=0)
    box = {"state": train.init_rbm_state(k_state, params, opt, data_mean, n_chains=batch_size)}
    box["i"] = 0
    compiled = epoch.lower(box["state"], X, k_epochs).compile()

    def go():
        state, metrics = epoch(box["state"], X, train.epoch_key(k_epochs, box["i"]))
        box["state"], box["i"] = state, box["i"] + 1
        return jax.block_until_ready((state, metrics))

    return go, compiled


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n_hidden", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--n_examples", type=int, default=None, help="use the first N examples")
    p.add_argument("--learning_rate", type=float, default=0.01)
    p.add_argument("--data_dir", default=_bench.DEFAULT_DATA_DIR)
    p.add_argument("--no_peer", action="store_true", help="time egm only (no sklearn)")
    p.add_argument(
        "--variants", default="uncentered,centered", help="egm variants: uncentered, centered"
    )
    a = p.parse_args(argv)
    env = _bench.environment()  # before any work: load_avg_1m is the background load
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    H, B = cfg["n_hidden"], cfg["batch_size"]

    x, source = _bench.load_binary_mnist(a.data_dir, cfg["n_examples"] if a.quick else None)
    if cfg["n_examples"] is not None:
        x = x[: cfg["n_examples"]]
    N = x.shape[0]

    variants = {"uncentered": ("egm", False), "centered": ("egm_centered", True)}
    chosen = [x for x in a.variants.split(",") if x]
    if not chosen or set(chosen) - set(variants):
        p.error(f"--variants must be a subset of {list(variants)}, got {a.variants!r}")
    contenders, warmups, compiled = {}, {}, {}
    for name, centering in (variants[v] for v in chosen):
        contenders[name], compiled[name] = make_egm_epoch(
            x, H, B, a.learning_rate, centering, a.seed
        )
    # the GEMM bound of each variant's epoch; variants with the same products share one
    bounds: dict[str, tuple[str, _bench.GemmBound]] = {}  # variant -> (contender, bound)
    for name in list(contenders):
        products = _bench.hlo_products(compiled[name])
        shared = next((kb for kb in bounds.values() if kb[1].products == products), None)
        if shared is None:
            shared = (f"gemm_bound_{name}", _bench.make_gemm_bound(products, N // B, a.seed))
            contenders[shared[0]] = shared[1].go
        bounds[name] = shared
    skipped = "--no_peer" if a.no_peer else _bench.peer_available("sklearn")
    if not skipped:
        contenders["sklearn"], sk_info = _peers.make_sklearn_rbm_epoch(
            x, H, B, a.learning_rate, a.seed
        )
        warm_x = x[: 2 * B]
        warmups["sklearn"] = _peers.make_sklearn_rbm_epoch(warm_x, H, B, a.learning_rate)[0]

    times = _bench.interleaved(contenders, cfg["repeats"], warmups=warmups)
    med = {k: _bench.median(t) for k, t in times.items()}
    sk = med.get("sklearn")
    stat = f"median of {cfg['repeats']} interleaved timed epochs (after 1 untimed warm-up)"
    common = {
        "n_examples": N,
        "updates_per_epoch": N // B,
        "batch_size": B,
        "persistent_chains": B,
        "data": f"{source}, threshold-binarized at 0.5",
        "quick": a.quick,
        **env,
    }
    if not skipped:
        common["peer_runs_s"] = _bench.runs(times["sklearn"])
        common.update({f"sklearn_{k}": v for k, v in sk_info().items()})
    else:
        common["skipped"] = skipped
    bench = f"pcd1_epoch_mnist_784x{H}"
    lines = []
    for name, suffix, target in (
        ("egm", "", f">= {TARGET:g}x sklearn"),
        ("egm_centered", "_centered", "none (informational: egm's centered PCD-1)"),
    ):
        if name not in contenders:
            continue
        ratio = None if sk is None else sk / med[name]
        met = None if ratio is None or name != "egm" else bool(ratio >= TARGET)
        rec = _bench.seconds_line(
            bench + suffix,
            egm=med[name],
            peer="sklearn.BernoulliRBM",
            peer_value=sk,
            stat=stat,
            target=target,
            target_met=met,
            egm_runs_s=_bench.runs(times[name]),
            egm_examples_per_s=_bench.sig(N / med[name]),
            egm_matmuls_in_hlo=_bench.count_matmuls(compiled[name]),
            **bounds[name][1].record(med[bounds[name][0]], med[name]),
            **common,
        )
        lines.append(_bench.emit(rec))
    return lines


if __name__ == "__main__":
    with _bench.rng_mode():
        main()
