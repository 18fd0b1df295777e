"""Deep Boltzmann machine 784-500-1000 on binarized MNIST (Salakhutdinov & Hinton 2009, §20.4).

Two variants:

- ``pretrained``: greedy layer-wise pretraining with doubled inputs (bottom RBM with two tied
  copies of v, top RBM with two tied copies of h²; :func:`egm.train.greedy.pretrain_stack`),
  composed into a DBM (:func:`egm.energies.dbm.from_pretrained_rbms`), then joint PCD with a
  mean-field positive phase started from the doubled bottom-up pass.
- ``centered``: the centered DBM of Montavon & Müller (2012), trained jointly from random
  initialisation, no pretraining.

Evaluation: AIS for log Z (odd layer annealed, v and h² summed out), the variational lower
bound on the test log-likelihood with converged mean field (iterations and residual
reported), and the test error of an MLP initialised from the DBM with the mean-field
augmented input of Salakhutdinov & Hinton (input ``[v, q(h²|v)]``, first layer ``[W₁; W₂ᵀ]``)
and fine-tuned with cross-entropy.

    python experiments/dbm_mnist.py --config tiny                 # smoke test, seconds
    python experiments/dbm_mnist.py --config full                 # pretrained, the paper's setting
    python experiments/dbm_mnist.py --config full_centered        # centered, random init

Published (Salakhutdinov & Hinton 2009): test log-likelihood bound -84.62 nats, test error
0.95 %.  What the full config reached on the 2-core CPU machine, and in how long, is in
BUILD_NOTES.md ("DBM").
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
    check_same_run,
    describe_binarization,
    load_binarized_mnist,
    log,
    parse_overrides,
    rng_label,
    rng_mode,
)

from egm import data, train  # noqa: E402
from egm.energies import dbm  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.estimators import ais  # noqa: E402
from egm.eval import tile_images  # noqa: E402
from egm.models.mlp import mlp_params_from_rbms  # noqa: E402
from egm.samplers import block_gibbs, run  # noqa: E402
from egm.train import classifier, dbm_step, greedy  # noqa: E402

VARIANTS = ("pretrained", "centered")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    source: str = "embedded"  # embedded | idx | tfds | auto
    data_dir: str | None = None
    binarization: str = "fixed"
    binarization_seed: int = 0
    variant: str = "pretrained"  # pretrained | centered
    n_h1: int = 500
    n_h2: int = 1000
    # greedy pretraining (variant "pretrained"): centered PCD-1 RBMs with tied copies
    pretrain_epochs: int = 20
    pretrain_lr: float = 0.005
    # joint training
    epochs: int = 20
    batch_size: int = 100
    n_chains: int = 100
    k: int = 1  # Gibbs sweeps of the persistent chains per update
    mean_field_iters: int = 10
    learning_rate: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 2e-4
    offset_rate: float = 0.01
    # evaluation
    ais_chains: int = 100
    ais_temps: int = 20000
    mf_tol: float = 1e-5
    mf_max_iter: int = 100
    finetune_epochs: int = 10
    finetune_lr: float = 1e-3
    n_samples: int = 100
    sample_sweeps: int = 1000
    checkpoint_every: int = 1
    workdir: str = "runs/dbm_mnist"
    progress: bool = True
    fast_cpu_rng: bool = True

    def validate(self) -> Config:
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.binarization not in data.BINARIZATIONS:
            raise ConfigError(
                f"binarization must be one of {data.BINARIZATIONS}, got {self.binarization!r}"
            )
        if self.source not in data.MNIST_SOURCES:
            raise ConfigError(f"source must be one of {data.MNIST_SOURCES}, got {self.source!r}")
        for name in ("n_h1", "n_h2", "pretrain_epochs", "batch_size", "n_chains", "k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name, low in (
            ("epochs", 0),
            ("finetune_epochs", 0),
            ("ais_chains", 2),
            ("ais_temps", 3),
        ):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")
        for name in ("learning_rate", "pretrain_lr", "finetune_lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        dbm_step.DBMStepConfig(
            k=self.k, mean_field_iters=self.mean_field_iters, offset_rate=self.offset_rate
        ).validate()
        return self


PRESETS = {
    "default": Config(),
    "tiny": Config(
        n_h1=16,
        n_h2=12,
        pretrain_epochs=1,
        epochs=2,
        n_chains=20,
        ais_chains=8,
        ais_temps=100,
        mf_max_iter=20,
        finetune_epochs=1,
        n_samples=16,
        sample_sweeps=10,
        progress=False,
        workdir="runs/dbm_mnist_tiny",
    ),
    # Salakhutdinov & Hinton (2009): 100 pretraining epochs per RBM, 500 epochs of joint
    # training with 100 persistent chains updated by 5 Gibbs sweeps, AIS with 100 chains and
    # 20,000 temperatures, 100 epochs of discriminative fine-tuning.  Joint lr 0.001 with
    # momentum 0.5: at the RBM's lr 0.005 / momentum 0.9 joint training wrecked the pretrained
    # model (BUILD_NOTES.md, "DBM").
    "full": Config(
        source="auto",
        pretrain_epochs=100,
        epochs=500,
        k=5,
        learning_rate=0.001,
        momentum=0.5,
        finetune_epochs=100,
        checkpoint_every=5,
        workdir="runs/dbm_mnist_full",
    ),
    # Montavon & Müller (2012): centered, random init, no pretraining; stable at lr 0.005.
    "full_centered": Config(
        source="auto",
        variant="centered",
        epochs=500,
        finetune_epochs=100,
        checkpoint_every=5,
        workdir="runs/dbm_mnist_full_centered",
    ),
}


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return _run(cfg)


def _pretrain(cfg: Config, key, x_train, wd: Workdir) -> dbm.DBMParams:
    common = dict(
        epochs=cfg.pretrain_epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.pretrain_lr,
        momentum=0.9,
        weight_decay=cfg.weight_decay,
        n_chains=cfg.n_chains,
    )
    specs = [
        greedy.LayerSpec(cfg.n_h1, visible_copies=2, **common),
        greedy.LayerSpec(cfg.n_h2, hidden_copies=2, **common),
    ]

    def on_epoch_end(layer, epoch, st, m):
        wd.log_metrics({"phase": f"pretrain_layer{layer}", "epoch": epoch, **m})

    rbms = greedy.pretrain_stack(
        key,
        x_train,
        specs,
        checkpoint_dir=Path(cfg.workdir) / "pretrain",
        on_epoch_end=on_epoch_end,
        progress=cfg.progress,
    )
    return dbm.from_pretrained_rbms(rbms)


def _run(cfg: Config) -> dict:
    wd = Workdir(cfg.workdir)
    t0 = time.perf_counter()
    arrays, evals, source, labels = load_binarized_mnist(cfg)
    x_train = jnp.asarray(arrays["train"])
    protocol = describe_binarization(cfg)
    log(f"data: {source}, train {x_train.shape}, protocol: {protocol}")
    has_ckpt = any((Path(cfg.workdir) / d).exists() for d in ("checkpoints", "pretrain"))
    check_same_run(wd, dataclasses.asdict(cfg), _EVAL_ONLY, has_checkpoints=has_ckpt)

    root = jax.random.key(cfg.seed)
    k_pre, k_init, k_state, k_train, k_ais, k_samp, k_ft = jax.random.split(root, 7)
    data_mean = jnp.mean(jnp.asarray(evals["train"]), axis=0)
    sizes = (784, cfg.n_h1, cfg.n_h2)
    offsets = None
    if cfg.variant == "pretrained":
        t_pre = time.perf_counter()
        params = _pretrain(cfg, k_pre, x_train, wd)
        pretrain_s = time.perf_counter() - t_pre
        log(f"pretraining done in {pretrain_s:.0f} s")
        mf_init = "bottom_up"
    else:
        params, offsets = dbm_step.init_centered_params(k_init, sizes, data_mean)
        pretrain_s = 0.0
        mf_init = "half"
    steps = cfg.epochs * (x_train.shape[0] // cfg.batch_size)
    opt = train.sgd(
        cfg.learning_rate,
        cfg.momentum,
        cfg.weight_decay,
        lr_multiplier=train.linear_decay(max(steps, 1)),
    )
    step_cfg = dbm_step.DBMStepConfig(
        k=cfg.k,
        mean_field_iters=cfg.mean_field_iters,
        mean_field_init=mf_init,
        centering=cfg.variant == "centered",
        offset_rate=cfg.offset_rate,
        binarization="dynamic" if cfg.binarization == "dynamic" else "none",
    )
    state = dbm_step.init_dbm_state(k_state, params, opt, data_mean, cfg.n_chains, offsets)
    epoch_fn = jax.jit(
        train.make_epoch(train.make_step(dbm_step.dbm_objective(step_cfg), opt), cfg.batch_size),
        donate_argnums=0,
    )
    ckpt = train.Checkpointer(Path(cfg.workdir) / "checkpoints", every=cfg.checkpoint_every)
    start = 0
    if ckpt.latest_epoch() is not None:
        last, state = ckpt.restore(state)
        start = last + 1
        log(f"resuming joint training after epoch {last}")
    t_joint = time.perf_counter()

    def on_epoch_end(epoch, st, m):
        rec = {"phase": "joint", "epoch": epoch, **m, "wall_s": time.perf_counter() - t0}
        wd.log_metrics(rec)
        return rec

    if cfg.epochs > 0:
        state = train.fit(
            state,
            x_train,
            epoch_fn=epoch_fn,
            key=k_train,
            n_epochs=cfg.epochs,
            start_epoch=start,
            on_epoch_end=on_epoch_end,
            checkpointer=ckpt,
            progress=cfg.progress,
            divergence_hint=f"(learning_rate={cfg.learning_rate}, momentum={cfg.momentum})",
            data_check=dbm_step.dbm_data_check(784, step_cfg),
        )
    ckpt.close()
    joint_s = time.perf_counter() - t_joint
    params = state.params

    # --- log Z by AIS, and the variational bound on the test log-likelihood
    t_eval = time.perf_counter()
    base_b = ais.base_rate_biases(evals["train"])
    res = ais.dbm_ais(
        k_ais,
        params,
        base_b,
        n_chains=cfg.ais_chains,
        betas=ais.betas_salakhutdinov_murray(cfg.ais_temps),
    )
    log_z, log_z_se = float(res.log_z), float(res.log_z_se)
    mf = jax.jit(
        jax.vmap(
            lambda v: dbm.mean_field(
                params, v, tol=cfg.mf_tol, max_iter=cfg.mf_max_iter, init=mf_init
            )
        )
    )
    bound_fn = jax.jit(jax.vmap(lambda v, *m: dbm.variational_bound(params, v, m)))

    def bound_and_features(x):
        vals, feats, iters, resid = [], [], [], []
        for i in range(0, x.shape[0], 1000):
            v = jnp.asarray(x[i : i + 1000])
            mu, info = mf(v)
            vals.append(np.asarray(bound_fn(v, *mu)))
            feats.append(np.asarray(mu[-1]))
            iters.append(np.asarray(info.n_iter))
            resid.append(np.asarray(info.residual))
        return (
            np.concatenate(vals),
            np.concatenate(feats),
            np.concatenate(iters),
            np.concatenate(resid),
        )

    b_test, f_test, it_test, r_test = bound_and_features(evals["test"])
    b_train, f_train, _, _ = bound_and_features(evals["train"])
    test_bound = float(np.mean(b_test)) - log_z
    train_bound = float(np.mean(b_train)) - log_z
    eval_s = time.perf_counter() - t_eval
    log(
        f"log Z = {log_z:.2f} ± {log_z_se:.2f}; test bound {test_bound:.2f} nats "
        f"(mean field: {np.mean(it_test):.1f} iterations, max residual {np.max(r_test):.1e})"
    )

    # --- discriminative fine-tuning with the mean-field augmented input
    t_ft = time.perf_counter()
    W1, W2 = params.weights
    first = (jnp.concatenate([W1, W2.T], axis=0), params.biases[1])
    module, mlp_params = mlp_params_from_rbms([first, (W2, params.biases[2])], 10, k_ft)
    apply_fn = lambda p, x: module.apply({"params": p}, x)
    ft_opt = optax.adam(cfg.finetune_lr)
    cstate = train.init_state(mlp_params, ft_opt)
    aug = lambda x, f: jnp.concatenate([jnp.asarray(x), jnp.asarray(f)], axis=1)
    xy_train = (aug(evals["train"], f_train), jnp.asarray(labels["train"]))
    ft_epoch = jax.jit(
        train.make_epoch(
            train.make_step(classifier.classifier_objective(apply_fn), ft_opt), cfg.batch_size
        )
    )
    for e in range(cfg.finetune_epochs):
        cstate, m = ft_epoch(cstate, xy_train, jax.random.fold_in(k_ft, e))
        wd.log_metrics({"phase": "finetune", "epoch": e, **train.metrics_to_floats(m)})
    test_error = float(
        classifier.classification_error(
            apply_fn, cstate.params, aug(evals["test"], f_test), jnp.asarray(labels["test"])
        )
    )
    finetune_s = time.perf_counter() - t_ft
    log(f"fine-tuned MLP test error {100 * test_error:.2f} %")

    # --- samples: independent chains after many odd/even sweeps
    v0 = jax.random.bernoulli(k_samp, data_mean, (cfg.n_samples, 784)).astype(jnp.float32)
    hs = tuple(jnp.full((cfg.n_samples, n), 0.5) for n in sizes[1:])
    chains = (
        v0,
        *(
            jax.random.bernoulli(jax.random.fold_in(k_samp, i), h).astype(jnp.float32)
            for i, h in enumerate(hs)
        ),
    )
    final, _ = jax.jit(run, static_argnums=(0, 4))(
        block_gibbs(dbm.BLOCKS), jax.random.fold_in(k_samp, 99), chains, params, cfg.sample_sweeps
    )
    v_prob = jax.nn.sigmoid(jax.vmap(lambda *s: dbm.layer_logits(params, s, 0))(*final))
    wd.save_png(
        "samples.png",
        tile_images(np.asarray(v_prob), (28, 28)),
        f"P(v|h1) after {cfg.sample_sweeps} Gibbs sweeps",
    )
    n_f = min(100, cfg.n_h1)
    wd.save_png(
        "filters.png",
        tile_images(np.asarray(W1[:, :n_f].T), (28, 28), normalize=True),
        f"first {n_f} first-layer filters",
    )

    results = {
        "model": f"DBM 784-{cfg.n_h1}-{cfg.n_h2} ({cfg.variant})",
        "training": (
            f"{'greedy pretraining with doubled inputs, ' + str(cfg.pretrain_epochs) + ' epochs per RBM; ' if cfg.variant == 'pretrained' else 'centered, random init; '}"
            f"joint PCD-{cfg.k} with {cfg.mean_field_iters} mean-field sweeps, {cfg.epochs} epochs, "
            f"batch {cfg.batch_size}, {cfg.n_chains} persistent chains, lr {cfg.learning_rate} "
            f"(linear decay), momentum {cfg.momentum}, weight decay {cfg.weight_decay}"
        ),
        "data": source,
        "n_train": int(x_train.shape[0]),
        "protocol": protocol,
        "test_loglik_bound_nats": test_bound,
        "train_loglik_bound_nats": train_bound,
        "log_z": log_z,
        "log_z_se": log_z_se,
        "ais_ess": float(res.ess),
        "ais": f"{cfg.ais_chains} chains, {cfg.ais_temps} temperatures, base-rate model; odd "
        f"layer annealed, v and h2 summed out",
        "mean_field": f"while_loop to tol {cfg.mf_tol} (max {cfg.mf_max_iter}), init {mf_init}",
        "mean_field_iters_mean": float(np.mean(it_test)),
        "mean_field_residual_max": float(np.max(r_test)),
        "test_error": test_error,
        "finetune": f"MLP [v, q(h2|v)] -> {cfg.n_h1} -> {cfg.n_h2} -> 10 initialised from the "
        f"DBM, Adam lr {cfg.finetune_lr}, {cfg.finetune_epochs} epochs",
        "pretrain_seconds": pretrain_s,
        "joint_seconds": joint_s,
        "eval_seconds": eval_s,
        "finetune_seconds": finetune_s,
        "total_seconds": time.perf_counter() - t0,
        "device": str(jax.devices()[0]),
        "rng": rng_label(),
    }
    wd.write_json("results.json", results)
    log(f"results in {cfg.workdir}/results.json")
    return results


_EVAL_ONLY = (
    "progress",
    "workdir",
    "checkpoint_every",
    "ais_chains",
    "ais_temps",
    "mf_tol",
    "mf_max_iter",
    "finetune_epochs",
    "finetune_lr",
    "n_samples",
    "sample_sweeps",
)


if __name__ == "__main__":
    main(sys.argv[1:])
