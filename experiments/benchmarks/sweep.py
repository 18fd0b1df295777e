"""Vmapped sweeps: N models trained by one jitted call per epoch vs the same N one after another.

    python experiments/benchmarks/sweep.py                # 16 RBMs 784x64, 8 VAEs 784-200-200-50
    python experiments/benchmarks/sweep.py --quick        # tiny smoke run
    python experiments/benchmarks/sweep.py --models rbm --epochs 3
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python experiments/benchmarks/sweep.py --sharded

A sweep (DESIGN.md §2) gives every member its own seed and learning rate; the learning
rate is an injected hyper-parameter of ``egm.train.sgd`` / ``egm.train.adam``
(``egm.train.set_hyperparams`` on each member's optimiser state), so all members share one
step function and the vmapped epoch ``egm.train.sweep_epoch(egm.train.make_epoch(step, B))``
trains all of them in one jitted call (donated state).  The peer is the same members
trained one after another by the single-model jitted epoch (donated state too), i.e. what
a Python loop over the sweep would do.

* ``rbm``: 16 binary RBMs 784x64, PCD-1, centered (``egm.train.rbm_objective``), ``sgd``,
  learning rates log-spaced in [0.01, 0.1].
* ``vae``: 8 VAEs 784-200-200-50 (tanh, Bernoulli output, ELBO with one draw, analytic KL;
  ``egm.models.vae.make_loss`` with ``egm.train.loss_objective``), ``adam``, learning rates
  log-spaced in [3e-4, 3e-3].

Data: the embedded MNIST subset (4000 training digits) with fixed binarization
(``egm.data.load_binarized_mnist("fixed", 0, source="embedded")``), batch 100.  Both
contenders are compiled and run once untimed, then each timed call runs ``--epochs`` epochs
of every member, interleaved (``_bench.interleaved``).  Rate in model-epochs/s (members x
epochs / seconds, higher is better); ratio = vmapped / sequential.  Target: >= 3x.

Same computation: both contenders start from the same states and draw the same keys
(member i's epoch e uses ``fold_in(root_i, e)``).  After the untimed warm-up call (``--epochs``
epochs of every member from its initial state) the line compares member i of the vmapped
sweep with the i-th sequential run (:func:`compare_members`): ``members_match`` (exit
status 1 if not) and the stricter elementwise ``members_allclose``.  vmap reorders float
operations (XLA:CPU runs a batched product with other kernels than a single one), so the
two runs differ by round-off, which PCD's Bernoulli draws can turn into an occasional
flipped chain unit; hence the comparison after the first epochs, and its tolerance.
``--sharded``: the vmapped sweep's members split over every device (``sweep_devices``; the
sequential peer stays on device 0).  On a CPU, host devices come from ``XLA_FLAGS``; on a
2-core machine more than 2 of them slow the peer itself (measured: 13.8 model-epochs/s at 4,
10.1 at 8, against 17.3-17.5 at 1 or 2; BUILD_NOTES.md), so only 2 give a like-for-like ratio.
``gemm_bound_fraction``: seconds of the vmapped epoch's (batched) matrix products alone,
in a jitted scan of as many updates with no random draws, over the vmapped seconds.
"""

from __future__ import annotations

import sys

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm import data, train  # noqa: E402
from egm.energies import rbm  # noqa: E402
from egm.models import vae  # noqa: E402

FULL = dict(
    rbm_members=16, n_hidden=64, vae_members=8, vae_hidden=(200, 200), latent=50,
    epochs=2, repeats=3, batch_size=100, n_examples=None,
)  # fmt: skip
QUICK = dict(
    rbm_members=3, n_hidden=8, vae_members=2, vae_hidden=(8,), latent=2,
    epochs=1, repeats=1, batch_size=50, n_examples=200,
)  # fmt: skip
TARGET = 3.0
LR_RANGE = {"rbm": (0.01, 0.1), "vae": (3e-4, 3e-3)}
# member i of the sweep vs sequential run i (compare_members): relative L2 distance, and
# elementwise |vmapped - sequential| <= ATOL + RTOL |sequential|
REL_TOL, RTOL, ATOL = 1e-2, 1e-3, 1e-4


def rbm_members(X, n: int, n_hidden: int, batch_size: int, seed: int):
    """``(step, states, roots, lrs)`` of ``n`` centered PCD-1 RBMs, member i seeded ``seed + i``."""
    lrs = np.geomspace(*LR_RANGE["rbm"], n)
    opt = train.sgd(float(lrs[0]))  # member i's own rate goes into its optimiser state
    step = train.make_step(
        train.rbm_objective(train.RBMStepConfig("pcd", k=1, centering=True)), opt
    )
    data_mean = jnp.mean(X, axis=0)
    states, roots = [], []
    for i, lr in enumerate(lrs):
        k_init, k_state, root = jax.random.split(jax.random.key(seed + i), 3)
        params = rbm.init(k_init, X.shape[1], n_hidden, data_mean=data_mean)
        state = train.init_rbm_state(k_state, params, opt, data_mean, n_chains=batch_size)
        states.append(
            state._replace(opt_state=train.set_hyperparams(state.opt_state, learning_rate=lr))
        )
        roots.append(root)
    return step, states, jnp.stack(roots), lrs


def vae_members(X, n: int, hidden: tuple[int, ...], latent: int, seed: int):
    """``(step, states, roots, lrs)`` of ``n`` VAEs (ELBO, Adam), member i seeded ``seed + i``."""
    lrs = np.geomspace(*LR_RANGE["vae"], n)
    model = vae.VAE(x_dim=X.shape[1], latent_dim=latent, hidden=hidden, activation="tanh")
    opt = train.adam(float(lrs[0]))
    step = train.make_step(train.loss_objective(vae.make_loss(model, "elbo", 1), has_aux=True), opt)
    states, roots = [], []
    for i, lr in enumerate(lrs):
        k_init, root = jax.random.split(jax.random.key(seed + i))
        state = train.init_state(vae.init_params(k_init, model), opt)
        states.append(
            state._replace(opt_state=train.set_hyperparams(state.opt_state, learning_rate=lr))
        )
        roots.append(root)
    return step, states, jnp.stack(roots), lrs


def make_contenders(step, states, roots, X, batch_size: int, epochs: int, mesh=None):
    """``(go_vmapped, go_sequential, compiled_vmapped, finals)``: each ``go`` trains every
    member for ``epochs`` more epochs; ``finals()`` gives both contenders' current params.
    ``mesh`` (:func:`egm.train.sweep_mesh`): the vmapped sweep's members split over its
    devices (:func:`egm.train.sharded_sweep_epoch`); ``compiled_vmapped`` is then still the
    one-device program (whose products the GEMM bound replays)."""
    epoch = train.make_epoch(step, batch_size)
    vmapped = jax.jit(train.sweep_epoch(epoch), donate_argnums=0)
    single = jax.jit(epoch, donate_argnums=0)
    box = {"vm": train.stack(states), "seq": list(states), "e_vm": 0, "e_seq": 0}
    compiled = vmapped.lower(box["vm"], X, train.sweep_keys(roots, 0)).compile()
    run, X_vm, keys_of = compiled, X, lambda e: train.sweep_keys(roots, e)
    if mesh is not None:
        box["vm"], X_vm = train.shard_sweep(box["vm"], mesh), train.replicate(X, mesh)
        keys_of = lambda e: train.shard_sweep(train.sweep_keys(roots, e), mesh)  # noqa: E731
        run = train.sharded_sweep_epoch(epoch, mesh)

    def go_vmapped():
        for _ in range(epochs):
            box["vm"], _ = run(box["vm"], X_vm, keys_of(box["e_vm"]))
            box["e_vm"] += 1
        return jax.block_until_ready(box["vm"])

    def go_sequential():
        for i in range(len(box["seq"])):
            for e in range(box["e_seq"], box["e_seq"] + epochs):
                box["seq"][i], _ = single(box["seq"][i], X, train.epoch_key(roots[i], e))
        box["e_seq"] += epochs
        return jax.block_until_ready(box["seq"])

    def finals():
        assert box["e_vm"] == box["e_seq"], "contenders trained different numbers of epochs"
        host = lambda tree: jax.tree_util.tree_map(np.array, tree)  # copies: states get donated
        return (
            host(train.unstack(box["vm"].params)),
            [host(s.params) for s in box["seq"]],
            box["e_vm"],
        )

    return go_vmapped, go_sequential, compiled, finals


def compare_members(vmapped: list, sequential: list, initial: list) -> dict:
    """Member i of the vmapped sweep vs the i-th sequential run (both from ``initial[i]``).

    ``members_match`` (the check): for every member, the L2 distance between the two runs'
    parameters is at most ``REL_TOL`` of the distance training moved them from their
    initial values.  A different computation (another member's seed or learning rate, a
    shared rate) is off by O(1) there; float reordering under vmap is off by ~1e-5, and a
    Bernoulli draw flipped by it (a persistent chain's unit) moves a few weights by ~lr/B.
    ``members_allclose`` is the strict elementwise test (``RTOL``, ``ATOL``), which such a
    flip fails.
    """
    ok, worst, worst_rel = True, 0.0, 0.0
    for pv, ps, p0 in zip(vmapped, sequential, initial, strict=True):
        leaves = [jax.tree_util.tree_leaves(t) for t in (pv, ps, p0)]
        gap2 = moved2 = 0.0
        for a, b, c in zip(*leaves, strict=True):
            a, b, c = (np.asarray(x, np.float64) for x in (a, b, c))
            ok &= bool(np.allclose(a, b, rtol=RTOL, atol=ATOL))
            worst = max(worst, float(np.max(np.abs(a - b))))
            gap2, moved2 = gap2 + np.sum((a - b) ** 2), moved2 + np.sum((b - c) ** 2)
        worst_rel = max(worst_rel, float(np.sqrt(gap2 / moved2)) if moved2 else float(gap2 > 0))
    return {
        "members_match": bool(worst_rel <= REL_TOL),
        "members_max_rel_diff": _bench.sig(worst_rel, 3),
        "members_allclose": ok,
        "members_max_abs_diff": _bench.sig(worst, 3),
        "members_tolerance": f"match: |vmapped - sequential| <= {REL_TOL:g} |sequential - initial| "
        f"(L2 over each member's parameters); allclose: rtol={RTOL:g}, atol={ATOL:g}",
    }


def bench_one(kind: str, X, cfg: dict, a, env: dict, source: str) -> dict:
    B, E = cfg["batch_size"], cfg["epochs"]
    if kind == "rbm":
        n, H = cfg["rbm_members"], cfg["n_hidden"]
        step, states, roots, lrs = rbm_members(X, n, H, B, a.seed)
        name = f"sweep_rbm_{n}x{X.shape[1]}x{H}"
        what = "binary RBM, PCD-1 (batch-size persistent chains), centered, sgd"
    else:
        n, H, Lz = cfg["vae_members"], cfg["vae_hidden"], cfg["latent"]
        step, states, roots, lrs = vae_members(X, n, H, Lz, a.seed)
        name = f"sweep_vae_{n}x{X.shape[1]}-{'-'.join(map(str, H))}-{Lz}"
        what = "VAE tanh, Bernoulli output, ELBO (1 draw, analytic KL), adam"
    initial = [jax.tree_util.tree_map(np.array, s.params) for s in states]
    mesh = train.sweep_mesh(n) if a.sharded else None
    go_vm, go_seq, compiled, finals = make_contenders(step, states, roots, X, B, E, mesh)
    go_vm(), go_seq()  # the untimed warm-up: E epochs of every member from its initial state
    vm_params, seq_params, epochs_done = finals()
    check = compare_members(vm_params, seq_params, initial)
    updates = X.shape[0] // B
    bound = _bench.make_gemm_bound(_bench.hlo_products(compiled), E * updates, a.seed)
    contenders = {"vmapped": go_vm, "sequential": go_seq, "gemm_bound": bound.go}
    warmed = {"vmapped": None, "sequential": None}
    settle = 0.0 if a.quick else 1.0  # (the --quick sizes: no thread pools to wait out)
    times = _bench.interleaved(contenders, cfg["repeats"], warmups=warmed, settle_s=settle)
    med = {k: _bench.median(t) for k, t in times.items()}
    return _bench.rate_line(
        name,
        egm=n * E / med["vmapped"],
        peer="sequential",
        peer_value=n * E / med["sequential"],
        unit="model-epochs/s",
        stat=f"median of {cfg['repeats']} interleaved timed calls of {E} epochs x {n} members "
        f"(after 1 untimed warm-up call; compilation excluded)",
        target=f">= {TARGET:g}x sequential",
        min_ratio=TARGET,
        peer_is="the same members one after another, single-model jitted epoch (donated)",
        model=what,
        members=n,
        seeds=[a.seed + i for i in range(n)],
        learning_rates=[_bench.sig(float(x), 3) for x in lrs],
        epochs_per_call=E,
        updates_per_epoch=updates,
        batch_size=B,
        egm_runs_s=_bench.runs(times["vmapped"]),
        peer_runs_s=_bench.runs(times["sequential"]),
        egm_products_in_hlo=len(_bench.hlo_products(compiled)),
        **bound.record(med["gemm_bound"], med["vmapped"]),
        **check,
        members_epochs_compared=epochs_done,
        sweep_devices=1 if mesh is None else int(mesh.devices.size),
        data=source,
        quick=a.quick,
        **env,
    )


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="rbm,vae", help="comma-separated subset of: rbm, vae")
    p.add_argument("--sharded", action="store_true", help="split the vmapped sweep's members "
                   "over every device (egm.train.sharded_sweep_epoch); on a CPU, give it host "
                   "devices with XLA_FLAGS=--xla_force_host_platform_device_count=N")  # fmt: skip
    for k in ("rbm_members", "vae_members", "n_hidden", "epochs", "batch_size", "n_examples"):
        p.add_argument(f"--{k}", type=int, default=None)
    a = p.parse_args(argv)
    models = [m for m in a.models.split(",") if m]
    if not models or set(models) - set(LR_RANGE):
        p.error(f"--models must be a subset of {sorted(LR_RANGE)}, got {a.models!r}")
    env = _bench.environment()  # before any work: load_avg_1m is the background load
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    ds = data.load_binarized_mnist("fixed", 0, source="embedded")
    X = np.asarray(ds.train, np.float32)
    if cfg["n_examples"] is not None:
        X = X[: cfg["n_examples"]]
    source = f"{ds.source}, {X.shape[0]} training digits, {ds.protocol}"
    return [_bench.emit(bench_one(m, jnp.asarray(X), cfg, a, env, source)) for m in models]


if __name__ == "__main__":
    with _bench.rng_mode():
        lines = main()
    sys.exit(0 if all(rec["members_match"] for rec in lines) else 1)
