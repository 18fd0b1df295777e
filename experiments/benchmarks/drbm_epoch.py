"""Discriminative RBM training epoch on MNIST: egm vs learnergy's DiscriminativeRBM (PyTorch).

    python experiments/benchmarks/drbm_epoch.py            # 60k digits, one epoch per timed call
    python experiments/benchmarks/drbm_epoch.py --quick    # tiny smoke run

Like for like: the classification RBM of Larochelle & Bengio (2008), 784 inputs, ``--hidden``
hidden units, 10 classes, trained on the exact discriminative objective -log p(y | x) (a
log-sum-exp over classes of softplus sums) by plain SGD on minibatches of ``--batch_size``,
float32, shuffled each epoch.

* egm: :func:`egm.energies.class_rbm.hybrid_loss` (``generative=False``) under
  :func:`egm.train.make_step` with :func:`egm.train.sgd`; one epoch = one jitted ``lax.scan``
  (donated state); its train error comes from the same forward pass.
* learnergy (``learnergy.models.bernoulli.DiscriminativeRBM``): its own ``fit(dataset,
  batch_size, epochs=1)``, a torch DataLoader loop that also re-runs the forward pass after
  each update for its accuracy metric (its code, unchanged: what a user of it runs).

Seconds per epoch (lower is better); ratio = learnergy / egm (egm's speed-up).  Target:
>= 2x.  The GEMM bound: egm's matrix products alone in a scan of the same length.
"""

from __future__ import annotations

import sys

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm import train  # noqa: E402
from egm.energies import class_rbm  # noqa: E402

FULL = dict(batch_size=100, repeats=3, n_examples=None, hidden=500)
QUICK = dict(batch_size=50, repeats=1, n_examples=200, hidden=16)
TARGET = 2.0


def load_mnist(data_dir: str | None, quick_n: int | None):
    from egm import data
    from egm.errors import DatasetNotFoundError

    if quick_n is not None:
        ds = data.load_mnist("train", source="embedded")
        return ds.x[:quick_n], ds.y[:quick_n], f"{ds.source} (first {quick_n}, --quick)"
    try:
        ds = data.load_mnist("train_full", source="idx", data_dir=data_dir)
        return ds.x, ds.y, ds.source
    except (DatasetNotFoundError, FileNotFoundError) as err:
        ds = data.load_mnist("train", source="embedded")
        return ds.x, ds.y, f"{ds.source} (FALLBACK: idx folder {data_dir!r}: {type(err).__name__})"


def make_egm_epoch(x, y, hidden, batch_size, lr, seed):
    k_init, k_epochs = jax.random.split(jax.random.key(seed))
    params = class_rbm.init(k_init, x.shape[1], hidden, 10)
    opt = train.sgd(lr)

    def objective(p, batch, key, chains, aux):
        loss = lambda p: class_rbm.hybrid_loss(key, p, *batch, 0.0, generative=False)  # noqa: E731
        grads, m = jax.grad(loss, has_aux=True)(p)
        return train.ObjectiveOut(grads, chains, aux, m)

    epoch = jax.jit(train.make_epoch(train.make_step(objective, opt), batch_size), donate_argnums=0)
    data = (jnp.asarray(x), jnp.asarray(y, jnp.int32))
    box = {"state": train.init_state(params, opt), "i": 0}
    compiled = epoch.lower(box["state"], data, k_epochs).compile()

    def go():
        state, metrics = compiled(box["state"], data, train.epoch_key(k_epochs, box["i"]))
        box["state"], box["i"] = state, box["i"] + 1
        return jax.block_until_ready((state, metrics))

    return go, compiled


def make_learnergy_epoch(x, y, hidden, batch_size, lr, seed):
    import torch
    from learnergy.models.bernoulli import DiscriminativeRBM

    torch.manual_seed(seed)
    model = DiscriminativeRBM(n_visible=x.shape[1], n_hidden=hidden, n_classes=10,
                              learning_rate=lr)  # fmt: skip
    ds = torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long))

    def go():
        return model.fit(ds, batch_size=batch_size, epochs=1)

    return go


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--n_examples", type=int, default=None, help="use the first N examples")
    p.add_argument("--learning_rate", type=float, default=0.1)
    p.add_argument("--data_dir", default=_bench.DEFAULT_DATA_DIR)
    a = p.parse_args(argv)
    env = _bench.environment()
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    B, H = cfg["batch_size"], cfg["hidden"]
    x, y, source = load_mnist(a.data_dir, cfg["n_examples"] if a.quick else None)
    if cfg["n_examples"] is not None:
        x, y = x[: cfg["n_examples"]], y[: cfg["n_examples"]]
    N = (x.shape[0] // B) * B
    x, y = np.asarray(x[:N], np.float32).reshape(N, -1), np.asarray(y[:N], np.int32)

    with _bench.rng_mode():
        egm_go, compiled = make_egm_epoch(x, y, H, B, a.learning_rate, a.seed)
        bound = _bench.make_gemm_bound(_bench.hlo_products(compiled), N // B, a.seed)
        contenders = {"egm": egm_go, "gemm_bound": bound.go}
        skipped = _bench.peer_available("learnergy")
        if not skipped:
            contenders["peer"] = make_learnergy_epoch(x, y, H, B, a.learning_rate, a.seed)
        times = _bench.interleaved(contenders, cfg["repeats"])
        rng = f"threefry2x32, partitionable={bool(jax.config.jax_threefry_partitionable)}"
    med = {k: _bench.median(t) for k, t in times.items()}
    extra = {
        "n_examples": N, "batch_size": B, "model": f"classification RBM 784+10-{H}",
        "objective": "exact -log p(y|x), plain SGD", "data": source,
        "egm_runs_s": _bench.runs(times["egm"]),
        "peer_runs_s": _bench.runs(times["peer"]) if "peer" in times else None,
        **bound.record(med["gemm_bound"], med["egm"]), "quick": a.quick, **env, "rng": rng,
    }  # fmt: skip
    peer = "none"
    if "peer" in times:
        import learnergy
        import torch

        peer = f"learnergy {getattr(learnergy, '__version__', '?')} DiscriminativeRBM.fit"
        extra.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    if skipped:
        extra["skipped"] = skipped
    ratio = med["peer"] / med["egm"] if "peer" in med else None
    rec = _bench.seconds_line(
        f"drbm_epoch_mnist_784-{H}_b{B}", egm=med["egm"], peer=peer,
        peer_value=med.get("peer"),
        stat=f"seconds per epoch, median of {cfg['repeats']} interleaved timed calls "
        f"(after 1 untimed warm-up)",
        target=f">= {TARGET:g}x learnergy", target_met=None if ratio is None else ratio >= TARGET,
        **extra,
    )  # fmt: skip
    return [_bench.emit(rec)]


if __name__ == "__main__":
    main(sys.argv[1:])
