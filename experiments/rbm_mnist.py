"""Binary RBM on MNIST: CD-k or PCD-k (optionally centered), AIS test log-likelihood with a bracket.

Setting of Salakhutdinov & Murray (2008) / Melchior et al. (2016): 784 visible units,
binarized MNIST, 500 hidden units, AIS with 100 chains and 14,500 temperatures.

    python experiments/rbm_mnist.py                       # default: embedded subset, offline, ~40 s
    python experiments/rbm_mnist.py --config tiny         # smoke test, seconds
    python experiments/rbm_mnist.py --config full --data_dir ../shared/data/mnist

Any config field can be overridden: ``--n_hidden 200 --estimator cd --k 25``.
Outputs in ``--workdir``: config.json, metrics.jsonl, checkpoints/, samples.png,
filters.png, results.json.  A killed run started again with the same command resumes
from its last checkpoint and ends with the same parameters.

Full config (500 hidden, centered PCD-1, weight decay 3e-4, 400 epochs on the 50k training
digits, fixed binarization; AIS 500 chains x 14,500 temperatures): test log-likelihood
-85.96 nats, bracket [-86.09, -85.85] (published: -86.34 for CD-25, Salakhutdinov & Murray
2008); 367 s of training + 103 s of AIS on the 2-core CPU machine (BUILD_NOTES.md).
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
from egm.energies import rbm  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.estimators import ais  # noqa: E402
from egm.eval import likelihood, tile_images  # noqa: E402
from egm.eval import metrics as eval_metrics  # noqa: E402
from egm.samplers import block_gibbs, run  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    source: str = "embedded"  # embedded | idx | tfds | auto (see egm.data.load_mnist)
    data_dir: str | None = None
    binarization: str = "fixed"  # fixed | dynamic | threshold
    binarization_seed: int = 0
    n_hidden: int = 500
    estimator: str = "pcd"  # pcd | cd
    k: int = 1
    centering: bool = True
    n_chains: int = 100  # persistent chains (PCD)
    batch_size: int = 100
    epochs: int = 60
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay: bool = True  # linear decay to 0 over the run
    eval_every: int = 5  # epochs between PL / free-energy-gap / reconstruction evaluations
    eval_size: int = 1000
    ais_every: int = 0  # epochs between quick AIS estimates during training (0: only at the end)
    ais_every_temps: int = 1000
    ais_chains: int = 100
    ais_temps: int = 14500
    reverse_burn_in: int = 1000
    n_samples: int = 100  # chains shown in samples.png
    sample_sweeps: int = 1000
    checkpoint_every: int = 5
    workdir: str = "runs/rbm_mnist"
    progress: bool = True
    fast_cpu_rng: bool = True  # see experiments/_common.configure_rng

    def validate(self) -> Config:
        if self.binarization not in data.BINARIZATIONS:
            raise ConfigError(
                f"binarization must be one of {data.BINARIZATIONS}, got {self.binarization!r}"
            )
        for name in (
            "n_hidden",
            "k",
            "n_chains",
            "batch_size",
            "epochs",
            "ais_chains",
            "ais_temps",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name, low in (
            ("ais_temps", 3),
            ("ais_chains", 2),
            ("eval_every", 1),
            ("n_samples", 1),
            ("eval_size", 1),
            ("checkpoint_every", 1),
            ("ais_every_temps", 3),
        ):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.ais_every < 0:
            raise ConfigError(f"ais_every must be >= 0 (0 = only at the end), got {self.ais_every}")
        if self.source not in data.MNIST_SOURCES:
            raise ConfigError(f"source must be one of {data.MNIST_SOURCES}, got {self.source!r}")
        if self.data_dir is not None and self.source == "embedded":
            raise ConfigError(
                "--data_dir is set but --source is 'embedded' (the subset shipped in the package), "
                "which ignores it; add --source idx (or --source auto)"
            )
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        return self


PRESETS = {
    "default": Config(),
    "tiny": Config(
        n_hidden=16,
        epochs=3,
        eval_every=1,
        ais_every=2,
        ais_every_temps=50,
        eval_size=200,
        ais_chains=16,
        ais_temps=200,
        reverse_burn_in=20,
        n_samples=16,
        sample_sweeps=20,
        checkpoint_every=1,
        progress=False,
        workdir="runs/rbm_mnist_tiny",
    ),
    # weight decay and learning rate chosen by validation AIS in a vmapped sweep
    # (BUILD_NOTES.md, "Full config"); 500 AIS chains to shrink the estimator's noise.
    "full": Config(
        source="auto",
        epochs=400,
        learning_rate=0.005,
        momentum=0.9,
        weight_decay=3e-4,
        eval_every=20,
        checkpoint_every=10,
        ais_chains=500,
        workdir="runs/rbm_mnist_full",
    ),
}


def load(cfg: Config):
    """Train/valid/test splits, binarized by the configured protocol (dynamic: grey kept)."""
    out, evals, source, _ = load_binarized_mnist(cfg)
    return out, evals, source


def optimizer_and_step(cfg: Config, n_train: int, **hyper) -> tuple:
    """The optimiser (linear lr decay over the run if configured) and the step config.
    ``hyper`` overrides the numeric hyper-parameters (a sweep's first member)."""
    steps_per_epoch = n_train // cfg.batch_size
    opt = train.sgd(
        hyper.get("learning_rate", cfg.learning_rate),
        hyper.get("momentum", cfg.momentum),
        hyper.get("weight_decay", cfg.weight_decay),
        lr_multiplier=train.linear_decay(cfg.epochs * steps_per_epoch) if cfg.lr_decay else None,
    )
    step_cfg = train.RBMStepConfig(
        estimator=cfg.estimator,
        k=cfg.k,
        centering=cfg.centering,
        binarization="dynamic" if cfg.binarization == "dynamic" else "none",
        track_free_energy_gap=True,
    )
    return opt, step_cfg


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return _run(cfg)


def _run(cfg) -> dict:
    wd = Workdir(cfg.workdir)
    t0 = time.perf_counter()
    arrays, evals, source = load(cfg)
    x_train = jnp.asarray(arrays["train"])
    protocol = describe_binarization(cfg)
    log(f"data: {source}, train {x_train.shape}, protocol: {protocol}")

    root = jax.random.key(cfg.seed)
    k_init, k_state, k_train, k_eval, k_ais, k_samp = jax.random.split(root, 6)
    k_eval, k_eval_ais = jax.random.split(k_eval)
    data_mean = jnp.mean(jnp.asarray(evals["train"]), axis=0)
    params = rbm.init(k_init, 784, cfg.n_hidden, data_mean=data_mean)
    opt, step_cfg = optimizer_and_step(cfg, x_train.shape[0])
    state = train.init_train_state(k_state, params, opt, data_mean, cfg.n_chains)
    epoch_fn = jax.jit(
        train.make_epoch(train.make_train_step(opt, step_cfg), cfg.batch_size), donate_argnums=0
    )

    ckpt = train.Checkpointer(Path(cfg.workdir) / "checkpoints", every=cfg.checkpoint_every)
    state, start = resume(wd, ckpt, state, dataclasses.asdict(cfg), _EVAL_ONLY)

    base_b = ais.base_rate_biases(evals["train"])
    v_tr = jnp.asarray(evals["train"][: cfg.eval_size])
    v_va = jnp.asarray(evals["valid"][: cfg.eval_size])
    eval_fn = jax.jit(
        lambda p, key: {
            "recon_error_valid": eval_metrics.reconstruction_error(p, v_va),
            "free_energy_gap_valid_minus_train": eval_metrics.free_energy_gap(
                rbm.free_energy, p, v_tr, v_va
            ),
            "pseudo_loglik_valid": eval_metrics.stochastic_pseudo_log_likelihood(
                key, rbm.free_energy, p, v_va
            ),
        }
    )

    def on_epoch_end(epoch, st, m):
        rec = {"epoch": epoch, **m, "wall_s": time.perf_counter() - t0}
        if (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
            rec.update(
                {
                    k: float(v)
                    for k, v in eval_fn(st.params, jax.random.fold_in(k_eval, epoch)).items()
                }
            )
        if cfg.ais_every and (epoch + 1) % cfg.ais_every == 0:
            res = ais.rbm_ais(
                jax.random.fold_in(k_eval_ais, epoch),
                st.params,
                base_b,
                n_chains=cfg.ais_chains,
                betas=ais.betas_salakhutdinov_murray(cfg.ais_every_temps),
            )
            nfe = likelihood.mean_negative_free_energy(rbm.free_energy, st.params, v_va)
            rec["ais_valid_loglik"] = nfe - float(res.log_z)
            rec["ais_valid_loglik_se"] = float(res.log_z_se)
        wd.log_metrics(rec)
        return rec

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
        data_check=train.rbm_data_check(784, step_cfg),
    )
    ckpt.close()
    train_s = time.perf_counter() - t0
    params = state.params

    log(f"AIS: {cfg.ais_chains} chains x {cfg.ais_temps} temperatures, forward and reverse")
    t_ais = time.perf_counter()
    betas = ais.betas_salakhutdinov_murray(cfg.ais_temps)
    bracket = likelihood.rbm_log_likelihood_bracket(
        k_ais,
        params,
        base_b,
        evals["test"],
        n_chains=cfg.ais_chains,
        betas=betas,
        reverse_burn_in=cfg.reverse_burn_in,
    )
    ais_s = time.perf_counter() - t_ais
    train_ll = (
        likelihood.mean_negative_free_energy(rbm.free_energy, params, evals["train"])
        - bracket.log_z_forward
    )

    # Samples: independent chains from the base-rate model after many Gibbs sweeps.
    v0 = jax.random.bernoulli(k_samp, data_mean, (cfg.n_samples, 784)).astype(jnp.float32)
    st0 = jax.vmap(rbm.init_state, in_axes=(None, 0))(params, v0)
    final, _ = jax.jit(run, static_argnums=(0, 4))(
        block_gibbs(rbm.BLOCKS), jax.random.fold_in(k_samp, 1), st0, params, cfg.sample_sweeps
    )
    means = jax.vmap(rbm.visible_probs, in_axes=(None, 0))(params, final.h)
    wd.save_png(
        "samples.png",
        tile_images(np.asarray(means), (28, 28)),
        f"P(v|h) after {cfg.sample_sweeps} Gibbs sweeps",
    )
    n_f = min(100, cfg.n_hidden)
    wd.save_png(
        "filters.png",
        tile_images(np.asarray(params.W[:, :n_f].T), (28, 28), normalize=True),
        f"first {n_f} filters W[:, j]",
    )

    results = {
        "model": f"RBM 784-{cfg.n_hidden}",
        "training": f"{'centered ' if cfg.centering else ''}{cfg.estimator.upper()}-{cfg.k}, "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.n_chains} persistent chains, "
        f"lr {cfg.learning_rate}{' (linear decay to 0)' if cfg.lr_decay else ''}, "
        f"momentum {cfg.momentum}, weight decay {cfg.weight_decay}",
        "data": source,
        "n_train": int(x_train.shape[0]),
        "n_test": int(evals["test"].shape[0]),
        "protocol": protocol,
        "test_loglik_nats": bracket.estimate,
        "test_loglik_bracket": [bracket.lower, bracket.upper],
        "bracket_consistent": bracket.consistent,
        "train_loglik_nats": train_ll,
        "log_z_forward": bracket.log_z_forward,
        "log_z_forward_se": bracket.log_z_forward_se,
        "log_z_reverse": bracket.log_z_reverse,
        "log_z_reverse_se": bracket.log_z_reverse_se,
        "ais": f"{cfg.ais_chains} chains, {cfg.ais_temps} temperatures (Salakhutdinov & Murray "
        f"schedule), base-rate model of the training data. Bracket: lower side from reverse AIS "
        f"started at the forward chains after {cfg.reverse_burn_in} extra sweeps (a bound only "
        f"in expectation and only if those start samples were exact), upper side from forward "
        f"AIS; each widened by 3 standard errors",
        "test_set": "test split, one fixed Bernoulli draw (seed binarization_seed + 12)"
        if cfg.binarization == "dynamic"
        else "test split under the same protocol",
        "ais_ess_forward": bracket.ess_forward,
        "ais_ess_reverse": bracket.ess_reverse,
        "train_seconds": train_s,
        "ais_seconds": ais_s,
        "total_seconds": time.perf_counter() - t0,
        "device": str(jax.devices()[0]),
        "rng": rng_label(),
    }
    wd.write_json("results.json", results)
    if not bracket.consistent:
        log(
            "WARNING: forward and reverse AIS disagree beyond 3 standard errors (lower side > "
            "upper side): AIS has not converged; raise --ais_temps or --reverse_burn_in"
        )
    log(
        f"test log-likelihood {bracket.estimate:.2f} nats, bracket [{bracket.lower:.2f}, "
        f"{bracket.upper:.2f}] ({protocol}); results in {cfg.workdir}/results.json"
    )
    return results


#: Fields that do not change the trained parameters: a resumed run may change them
#: (e.g. re-evaluate a finished run with more AIS chains).
_EVAL_ONLY = (
    "progress",
    "workdir",
    "checkpoint_every",
    "eval_every",
    "eval_size",
    "ais_every",
    "ais_every_temps",
    "ais_chains",
    "ais_temps",
    "reverse_burn_in",
    "n_samples",
    "sample_sweeps",
)


if __name__ == "__main__":
    main(sys.argv[1:])
