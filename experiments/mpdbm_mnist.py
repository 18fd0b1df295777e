"""Multi-prediction DBM on MNIST (Goodfellow, Mirza, Courville & Bengio 2013; §20.4.5).

A 784-500-1000 DBM with 10 softmax label units on the top layer, trained from random
initialisation (no greedy pretraining) by back-propagating through ``mean_field_iters``
unrolled mean-field sweeps: each example hides a random subset of its pixels and its label
(each with probability ``hide_prob``) and the loss is the cross-entropy of the hidden ones
(:func:`egm.estimators.mpdbm.mp_loss`).  The same network then classifies (label hidden,
pixels clamped) and fills in missing pixels.

    python experiments/mpdbm_mnist.py --config tiny        # smoke test, seconds
    python experiments/mpdbm_mnist.py --config full        # the paper's architecture

Published: 0.88 % test error (Goodfellow et al. 2013, with the multi-inference trick after
long training on a GPU).  What the full config reached here, and in how long, is in
BUILD_NOTES.md ("MP-DBM").
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _common import (  # noqa: E402
    Workdir,
    describe_binarization,
    load_binarized_mnist,
    log,
    parse_overrides,
    resume,
    rng_label,
    rng_mode,
)

from egm import data, train  # noqa: E402
from egm.data.validate import check_binary, check_shape  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.estimators import mpdbm  # noqa: E402
from egm.eval import tile_images  # noqa: E402
from egm.train import init_state, loss_objective, make_step  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    source: str = "embedded"
    data_dir: str | None = None
    binarization: str = "fixed"
    binarization_seed: int = 0
    n_h1: int = 500
    n_h2: int = 1000
    mean_field_iters: int = 10
    hide_prob: float = 0.5
    label_weight: float = 1.0
    centering: bool = True  # train centered parameters (uncentered collapses, BUILD_NOTES)
    init_scale: float = 0.01
    epochs: int = 20
    batch_size: int = 100
    learning_rate: float = 3e-4  # Adam
    checkpoint_every: int = 1
    workdir: str = "runs/mpdbm_mnist"
    progress: bool = True
    fast_cpu_rng: bool = True

    def validate(self) -> Config:
        if self.binarization not in ("fixed", "threshold"):
            raise ConfigError(
                f"binarization must be 'fixed' or 'threshold' for the MP-DBM, got "
                f"{self.binarization!r}"
            )
        if self.source not in data.MNIST_SOURCES:
            raise ConfigError(f"source must be one of {data.MNIST_SOURCES}, got {self.source!r}")
        for name in ("n_h1", "n_h2", "mean_field_iters", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.hide_prob < 1.0:
            raise ConfigError(f"hide_prob must be in (0, 1), got {self.hide_prob}")
        if self.learning_rate <= 0 or self.label_weight < 0:
            raise ConfigError("learning_rate must be > 0 and label_weight >= 0")
        return self


PRESETS = {
    "default": Config(),
    "tiny": Config(
        n_h1=16,
        n_h2=12,
        mean_field_iters=3,
        epochs=2,
        progress=False,
        workdir="runs/mpdbm_mnist_tiny",
    ),
    "full": Config(source="auto", epochs=100, workdir="runs/mpdbm_mnist_full"),
}


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return _run(cfg)


def _run(cfg: Config) -> dict:
    wd = Workdir(cfg.workdir)
    t0 = time.perf_counter()
    arrays, _, source, labels = load_binarized_mnist(cfg)
    x_train, y_train = jnp.asarray(arrays["train"]), jnp.asarray(labels["train"])
    protocol = describe_binarization(cfg)
    log(f"data: {source}, train {x_train.shape}, protocol: {protocol}")

    root = jax.random.key(cfg.seed)
    k_init, k_train, k_fill = jax.random.split(root, 3)
    sizes = (784, cfg.n_h1, cfg.n_h2)
    if cfg.centering:
        params, offsets = mpdbm.init_centered(
            k_init, sizes, 10, jnp.mean(x_train, 0), scale=cfg.init_scale
        )
        ordinary = lambda p: mpdbm.from_centered(p, offsets)
    else:
        params = mpdbm.init(k_init, sizes, 10, scale=cfg.init_scale)
        ordinary = lambda p: p
    opt = optax.adam(cfg.learning_rate)

    def loss_fn(p, batch, key):
        x, y = batch
        return mpdbm.mp_loss(
            key,
            ordinary(p),
            x,
            y,
            n_iter=cfg.mean_field_iters,
            hide_prob=cfg.hide_prob,
            label_weight=cfg.label_weight,
        )

    state = init_state(params, opt)
    epoch_fn = jax.jit(
        train.make_epoch(make_step(loss_objective(loss_fn, has_aux=True), opt), cfg.batch_size),
        donate_argnums=0,
    )
    ckpt = train.Checkpointer(Path(cfg.workdir) / "checkpoints", every=cfg.checkpoint_every)
    state, start = resume(wd, ckpt, state, dataclasses.asdict(cfg), _EVAL_ONLY)

    predict = jax.jit(lambda p, x: mpdbm.predict_proba(ordinary(p), x, cfg.mean_field_iters))

    def error(p, split):
        x, y = arrays[split], labels[split]
        pred = np.concatenate(
            [
                np.argmax(np.asarray(predict(p, jnp.asarray(x[i : i + 1000]))), 1)
                for i in range(0, x.shape[0], 1000)
            ]
        )
        return float(np.mean(pred != y))

    def on_epoch_end(epoch, st, m):
        rec = {"epoch": epoch, **m, "valid_error": error(st.params, "valid")}
        rec["wall_s"] = time.perf_counter() - t0
        wd.log_metrics(rec)
        return rec

    def data_check(batch):
        x, y = batch
        check_shape(x, 784, "training images")
        check_binary(x, "training images")
        if np.any((y < 0) | (y > 9)):
            raise ConfigError("labels must be integers in 0..9")

    state = train.fit(
        state,
        (x_train, y_train),
        epoch_fn=epoch_fn,
        key=k_train,
        n_epochs=cfg.epochs,
        start_epoch=start,
        on_epoch_end=on_epoch_end,
        checkpointer=ckpt,
        progress=cfg.progress,
        divergence_hint=f"(Adam learning_rate={cfg.learning_rate})",
        data_check=data_check,
    )
    ckpt.close()
    train_s = time.perf_counter() - t0
    test_error = error(state.params, "test")
    valid_error = error(state.params, "valid")
    params = ordinary(state.params)

    # fill-in: the bottom half of test digits hidden, inferred by the same mean field
    x = jnp.asarray(arrays["test"][:16])
    observed = jnp.broadcast_to(jnp.arange(784) < 392, x.shape)
    fill = jax.vmap(
        lambda v, o: mpdbm.mean_field(
            params, v, o, jnp.zeros(10), False, cfg.mean_field_iters
        ).layers[0]
    )(x, observed)
    rows = np.concatenate([np.asarray(x), np.asarray(jnp.where(observed, x, fill))])
    wd.save_png(
        "fill_in.png", tile_images(rows, (28, 28), n_cols=16), "test digits / bottom half filled in"
    )

    results = {
        "model": f"MP-DBM 784-{cfg.n_h1}-{cfg.n_h2} + 10 labels",
        "training": f"{'centered ' if cfg.centering else ''}multi-prediction, {cfg.mean_field_iters} unrolled mean-field sweeps, hide "
        f"prob {cfg.hide_prob}, label weight {cfg.label_weight}, Adam lr {cfg.learning_rate}, "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, random init (no pretraining)",
        "data": source,
        "protocol": protocol,
        "test_error": test_error,
        "valid_error": valid_error,
        "classification": f"argmax of Q(y|v) after {cfg.mean_field_iters} mean-field sweeps "
        "(no multi-inference trick)",
        "train_seconds": train_s,
        "total_seconds": time.perf_counter() - t0,
        "device": str(jax.devices()[0]),
        "rng": rng_label(),
    }
    wd.write_json("results.json", results)
    log(f"test error {100 * test_error:.2f} %; results in {cfg.workdir}/results.json")
    return results


_EVAL_ONLY = ("progress", "workdir", "checkpoint_every")


if __name__ == "__main__":
    main(sys.argv[1:])
