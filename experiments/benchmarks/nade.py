"""NADE 784-500 on MNIST: exact test log-likelihood throughput and training epoch time,
egm vs a straightforward PyTorch NADE (``_torch_nade.py``, loop and cumsum forms).

    python experiments/benchmarks/nade.py            # 10k test digits; 5k-digit training epoch
    python experiments/benchmarks/nade.py --quick    # tiny smoke run

No NADE package on PyPI is maintained for current torch, so the peer is written here, in
the two forms a user would write: the textbook loop over units (autograd through it) and the
vectorised exclusive cumsum.  Both start from egm's parameters (their log-likelihoods are
checked equal in the JSON line).  egm: ``NADE.log_prob`` (a ``lax.scan`` with the running
sum, hand-written O(DH) backward pass) jitted; training is egm's epoch (one jitted
``lax.scan`` over minibatches, Adam).  Same batch sizes, float32, all CPU threads for both.
Lines: examples/s for evaluation (higher is better, ratio = egm / peer) and seconds per
training epoch (lower is better, ratio = peer / egm).
"""

from __future__ import annotations

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from egm import data, train  # noqa: E402
from egm.models.nade import NADE  # noqa: E402
from egm.train import init_state, loss_objective, make_step  # noqa: E402

FULL = dict(n_hidden=500, batch_size=100, eval_chunk=200, repeats=3, n_train=5000, n_test=10000)
QUICK = dict(n_hidden=16, batch_size=50, eval_chunk=100, repeats=1, n_train=200, n_test=200)


def load(data_dir: str, quick: bool):
    """Fixed-binarized MNIST (seeds 0 train / 2 test); embedded subset if the IDX folder is absent."""
    from egm.errors import DatasetNotFoundError

    source = "embedded" if quick else "idx"
    try:
        tr = data.load_mnist("train", source=source, data_dir=None if quick else data_dir)
        te = data.load_mnist("test", source=source, data_dir=None if quick else data_dir)
        note = tr.source
    except (DatasetNotFoundError, FileNotFoundError) as err:
        tr, te = (
            data.load_mnist("train", source="embedded"),
            data.load_mnist("test", source="embedded"),
        )
        note = f"{tr.source} (FALLBACK: {type(err).__name__})"
    return data.binarize_fixed(tr.x, 0), data.binarize_fixed(te.x, 2), note + ", fixed binarization"


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--data_dir", default=_bench.DEFAULT_DATA_DIR)
    p.add_argument("--forms", default="loop,cumsum", help="torch forms: loop, cumsum")
    p.add_argument("--n_train", type=int, default=None)
    p.add_argument("--no_peer", action="store_true")
    a = p.parse_args(argv)
    env = _bench.environment()
    cfg = {**(QUICK if a.quick else FULL)}
    if a.repeats:
        cfg["repeats"] = a.repeats
    if a.n_train:
        cfg["n_train"] = a.n_train
    H, B = cfg["n_hidden"], cfg["batch_size"]
    x_tr, x_te, source = load(a.data_dir, a.quick)
    x_tr, x_te = x_tr[: cfg["n_train"]], x_te[: cfg["n_test"]]
    D = x_tr.shape[1]

    model = NADE(D, H)
    params = model.init(jax.random.key(a.seed), jnp.zeros((1, D)))
    lp = jax.jit(lambda p_, v: model.apply(p_, v, method=NADE.log_prob))
    X_te = jnp.asarray(x_te)
    chunks = [X_te[i : i + cfg["eval_chunk"]] for i in range(0, len(x_te), cfg["eval_chunk"])]

    def egm_eval():
        return jax.block_until_ready([lp(params, c) for c in chunks])

    opt = optax.adam(1e-3)
    step = make_step(
        loss_objective(lambda p_, b, k: -jnp.mean(model.apply(p_, b, method=NADE.log_prob))), opt
    )
    epoch = jax.jit(train.make_epoch(step, B), donate_argnums=0)
    X_tr = jnp.asarray(x_tr)
    box = {"state": init_state(params, opt), "i": 0}

    def egm_epoch():
        s, m = epoch(box["state"], X_tr, jax.random.key(box["i"]))
        box["state"], box["i"] = s, box["i"] + 1
        return jax.block_until_ready(s)

    evals, epochs, ll_diff = {"egm": egm_eval}, {"egm": egm_epoch}, {}
    skipped = "--no_peer" if a.no_peer else _bench.peer_available("torch")
    forms = [f for f in a.forms.split(",") if f]
    if not skipped:
        import _torch_nade

        host_params = jax.tree_util.tree_map(np.asarray, params)
        ref = np.concatenate([np.asarray(x) for x in egm_eval()])
        for form in forms:
            tm = _torch_nade.make(host_params, form)
            evals[f"torch_{form}"] = _torch_nade.eval_fn(tm, x_te, cfg["eval_chunk"])
            ll_diff[form] = float(np.max(np.abs(evals[f"torch_{form}"]().numpy() - ref)))
            tm_train = _torch_nade.make(host_params, form)
            epochs[f"torch_{form}"] = _torch_nade.epoch_fn(tm_train, x_tr, B, 1e-3, a.seed)

    t_eval = _bench.interleaved(evals, cfg["repeats"])
    t_epoch = _bench.interleaved(epochs, cfg["repeats"])
    n_te, n_tr = len(x_te), (len(x_tr) // B) * B
    common = {
        "n_hidden": H,
        "data": source,
        "quick": a.quick,
        "torch_loglik_max_abs_diff": ll_diff or None,
        **env,
    }
    if skipped:
        common["skipped"] = skipped
    lines = []
    peers = [f"torch_{f}" for f in forms] if not skipped else [None]
    for peer in peers:
        eg = n_te / _bench.median(t_eval["egm"])
        pv = None if peer is None else n_te / _bench.median(t_eval[peer])
        rec = _bench.rate_line(
            f"nade_test_loglik_784x{H}",
            egm=eg,
            peer=peer or "none",
            peer_value=pv,
            unit="examples/s",
            stat=f"median of {cfg['repeats']} interleaved timed passes over {n_te} test digits "
            f"(chunks of {cfg['eval_chunk']}), after 1 untimed warm-up",
            target="informational",
            min_ratio=1.0,
            egm_runs_s=_bench.runs(t_eval["egm"]),
            peer_runs_s=None if peer is None else _bench.runs(t_eval[peer]),
            **common,
        )
        rec["target_met"] = None
        lines.append(_bench.emit(rec))
    for peer in peers:
        eg = _bench.median(t_epoch["egm"])
        pv = None if peer is None else _bench.median(t_epoch[peer])
        rec = _bench.seconds_line(
            f"nade_train_epoch_784x{H}",
            egm=eg,
            peer=peer,
            peer_value=pv,
            stat=f"median of {cfg['repeats']} interleaved timed epochs of {n_tr} digits, batch "
            f"{B}, Adam, after 1 untimed warm-up epoch",
            target="informational",
            target_met=None,
            egm_runs_s=_bench.runs(t_epoch["egm"]),
            peer_runs_s=None if peer is None else _bench.runs(t_epoch[peer]),
            egm_examples_per_s=_bench.sig(n_tr / eg),
            **common,
        )
        lines.append(_bench.emit(rec))
    return lines


if __name__ == "__main__":
    with _bench.rng_mode():
        main()
