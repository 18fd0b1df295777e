"""VAE and IWAE on dynamically binarized MNIST, importance-sampled test log-likelihood.

Setting of Burda et al. (2016), one stochastic layer: encoder 784-200-200-(50 + 50) and
decoder 50-200-200-784, tanh, Bernoulli output; Adam (β1 0.9, β2 0.999, ε 1e-4), batch 20,
and the schedule of 8 stages, stage ``i`` lasting ``3^i`` epochs at learning rate
``1e-3 · 10^(-i/7)`` (3280 epochs in all).  Dynamic binarization: every minibatch is a
fresh Bernoulli(grey) draw.  Published test log-likelihoods (k = 5000 importance samples):
VAE -86.76 (k=1), IWAE -84.78 (k=50); IWAE k=5 about -85.5 (recalled, check the paper).

    python experiments/vae_mnist.py                     # default: embedded subset, ~1-2 min
    python experiments/vae_mnist.py --config tiny       # smoke test, seconds
    python experiments/vae_mnist.py --config full --source idx --data_dir ../shared/data/mnist

``--models vae1,iwae5,iwae50`` chooses the runs: ``vae<k>`` maximises the ELBO estimated
with ``k`` draws (analytic KL), ``iwae<k>`` the bound ``L_k``.  Each model trains in
``<workdir>/<name>/`` (its own checkpoints and metrics; a killed run resumes), then
``<workdir>/results.json`` collects the table.  ``--max_epochs N`` truncates the schedule
(the full 3280 epochs take days on a CPU); results say how far each model got.

Full config on the shared 2-core CPU (BUILD_NOTES.md; load average 14-18 from other jobs):
the schedule truncated to its first 3 epochs (60k digits, batch 20), IS with k = 5000 on the
first 1000 test digits: VAE -108.30 ± 0.96, IWAE k=5 -104.08 ± 0.92, IWAE k=50 -101.93 ± 0.89
nats (ordering as published); 8 / 29 / 320 s per epoch, ~5 min of IS per model, 37 min in
all.  Reproducing the paper needs the whole 3280-epoch schedule (an accelerator: at 320 s per
epoch IWAE k=50 would take ~12 days on this CPU).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _common import (  # noqa: E402
    Workdir,
    log,
    parse_overrides,
    resume,
    rng_label,
    rng_mode,
)
from jax.tree_util import Partial  # noqa: E402

from egm import data, train  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.estimators.importance import importance_log_likelihood  # noqa: E402
from egm.eval import tile_images  # noqa: E402
from egm.models import vae  # noqa: E402
from egm.train import init_state, loss_objective, make_step  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    source: str = "embedded"  # embedded | idx | tfds | auto (see egm.data.load_mnist)
    data_dir: str | None = None
    train_split: str = "train"  # train (50k) | train_full (60k, as Burda et al.)
    models: str = "vae1,iwae5,iwae50"
    hidden: str = "200,200"
    latent_dim: int = 50
    activation: str = "tanh"
    architecture: str = "mlp"  # mlp | conv
    batch_size: int = 20
    learning_rate: float = 1e-3
    adam_eps: float = 1e-4
    stages: int = 8  # Burda et al.: stage i lasts 3**i epochs at lr * 10**(-i/7)
    max_epochs: int = 10  # 0: the whole schedule; else truncate it
    eval_every: int = 5
    eval_size: int = 1000  # validation digits for the monitoring bound
    is_samples: int = 5000  # importance samples per test digit
    is_test_size: int = 1000  # test digits for the IS estimate (0: all)
    is_chunk: int = 500
    checkpoint_every: int = 1
    n_samples: int = 64
    workdir: str = "runs/vae_mnist"
    progress: bool = True
    fast_cpu_rng: bool = True

    def validate(self) -> Config:
        if self.source not in data.MNIST_SOURCES:
            raise ConfigError(f"source must be one of {data.MNIST_SOURCES}, got {self.source!r}")
        if self.data_dir is not None and self.source == "embedded":
            raise ConfigError(
                "--data_dir is set but --source is 'embedded' (the subset shipped in the package), "
                "which ignores it; add --source idx (or --source auto)"
            )
        if self.train_split not in ("train", "train_full"):
            raise ConfigError(f"train_split must be train or train_full, got {self.train_split!r}")
        parse_models(self.models)
        parse_hidden(self.hidden)
        for name in ("latent_dim", "batch_size", "stages", "eval_every", "eval_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("is_samples", "is_chunk", "checkpoint_every", "n_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_epochs < 0 or self.is_test_size < 0:
            raise ConfigError("max_epochs and is_test_size must be >= 0 (0: no truncation)")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        return self


PRESETS = {
    "default": Config(max_epochs=10, is_samples=1000, batch_size=100),
    "tiny": Config(
        models="vae1,iwae3",
        hidden="32",
        latent_dim=4,
        batch_size=100,
        stages=2,
        max_epochs=2,
        eval_every=1,
        eval_size=100,
        is_samples=64,
        is_test_size=50,
        is_chunk=32,
        n_samples=16,
        progress=False,
        workdir="runs/vae_mnist_tiny",
    ),
    # the paper's architecture, optimiser and schedule; truncated (max_epochs) to fit a CPU
    "full": Config(
        source="auto",
        train_split="train_full",
        max_epochs=3,
        eval_every=1,
        workdir="runs/vae_mnist_full",
    ),
}


def parse_models(spec: str) -> list[tuple[str, str, int]]:
    """``"vae1,iwae50"`` -> ``[("vae1", "elbo", 1), ("iwae50", "iwae", 50)]``."""
    out = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        m = re.fullmatch(r"(vae|iwae)(\d+)", name)
        if m is None or int(m.group(2)) < 1:
            raise ConfigError(
                f"bad model {name!r} in --models; use vae<k> or iwae<k> with k >= 1, "
                f"e.g. vae1,iwae5,iwae50"
            )
        out.append((name, "elbo" if m.group(1) == "vae" else "iwae", int(m.group(2))))
    if not out:
        raise ConfigError("--models is empty; e.g. --models vae1,iwae50")
    return out


def parse_hidden(spec: str) -> tuple[int, ...]:
    try:
        h = tuple(int(s) for s in spec.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--hidden must be comma-separated ints, got {spec!r}") from None
    if any(v < 1 for v in h):
        raise ConfigError(f"--hidden widths must be >= 1, got {spec!r}")
    return h


def burda_schedule(stages: int, steps_per_epoch: int, lr: float) -> tuple[Callable, int]:
    """Learning rate ``lr · 10^(-i/7)`` in stage ``i`` (``3^i`` epochs); returns the schedule
    of the step count and the schedule's total number of epochs."""
    ends = np.cumsum([3**i for i in range(stages)]) * steps_per_epoch
    bounds = jnp.asarray(ends[:-1], jnp.int32)

    def schedule(count):
        stage = jnp.searchsorted(bounds, count, side="right")
        return lr * 10.0 ** (-stage / 7.0)

    return schedule, int(sum(3**i for i in range(stages)))


# ----------------------------------------------------------------------------------------
# A training run of any loss-trained model (shared with draw_mnist.py, gumbel_vae_mnist.py)
# ----------------------------------------------------------------------------------------


def train_loss_model(
    *,
    subdir: Path,
    fingerprint: dict,
    loss_fn: Callable,
    params: Any,
    optimizer: optax.GradientTransformation,
    x_train: Any,
    batch_size: int,
    epochs: int,
    key: Any,
    eval_fn: Callable[[int, Any], dict] | None,
    eval_every: int,
    checkpoint_every: int,
    progress: bool,
    extra_fn: Callable[[int], Any] | None = None,
    hint: str = "",
) -> tuple[Any, dict]:
    """Train with :func:`egm.train.loss_objective` + :func:`egm.train.fit` in ``subdir``.

    ``loss_fn(params, batch, key[, extra]) -> (loss, aux)``; with ``extra_fn`` the epoch
    starting at update ``s`` passes ``extra = extra_fn(s)`` (a temperature, say) as a
    traced argument, so changing it does not recompile.  Resumes from ``subdir``'s
    checkpoints (refusing ones of a different ``fingerprint``).  Returns the final state
    and timing information.
    """
    wd = Workdir(subdir)
    t0 = time.perf_counter()
    state = init_state(params, optimizer)

    def epoch(state, x, k, extra):
        lf = loss_fn if extra_fn is None else (lambda p, b, kk: loss_fn(p, b, kk, extra))
        step = make_step(loss_objective(lf, has_aux=True), optimizer)
        return train.make_epoch(step, batch_size)(state, x, k)

    jitted = jax.jit(epoch, donate_argnums=0)

    def epoch_fn(state, x, k):
        extra = None if extra_fn is None else extra_fn(int(state.step))
        return jitted(state, x, k, extra)

    ckpt = train.Checkpointer(subdir / "checkpoints", every=checkpoint_every)
    state, start = resume(wd, ckpt, state, fingerprint, record_name="fingerprint.json")
    epoch_times: list[float] = []
    last_t = [time.perf_counter()]

    def on_epoch_end(ep, st, m):
        now = time.perf_counter()
        epoch_times.append(now - last_t[0])
        rec = {"epoch": ep, **m, "epoch_s": now - last_t[0], "wall_s": now - t0}
        if eval_fn is not None and ((ep + 1) % eval_every == 0 or ep == epochs - 1):
            rec.update(eval_fn(ep, st.params))
        wd.log_metrics(rec)
        last_t[0] = time.perf_counter()
        return rec

    state = train.fit(
        state,
        x_train,
        epoch_fn=epoch_fn,
        key=key,
        n_epochs=epochs,
        start_epoch=start,
        on_epoch_end=on_epoch_end,
        checkpointer=ckpt,
        progress=progress,
        divergence_hint=hint,
    )
    ckpt.close()
    timing = {
        "epochs_trained": epochs,
        "epochs_this_invocation": epochs - start,
        "train_seconds_this_invocation": time.perf_counter() - t0,
        # the first epoch includes compilation; report the median of the others
        "seconds_per_epoch": float(np.median(epoch_times[1:] or epoch_times))
        if epoch_times
        else None,
    }
    return state, timing


def load_splits(cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Grey training digits (binarized dynamically in the step) and fixed binary draws of the
    validation and test digits (seeds ``seed + 11`` and ``seed + 12``)."""
    x_tr = data.load_mnist(cfg.train_split, source=cfg.source, data_dir=cfg.data_dir)
    x_va = data.load_mnist("valid", source=cfg.source, data_dir=cfg.data_dir)
    x_te = data.load_mnist("test", source=cfg.source, data_dir=cfg.data_dir)
    data.check_unit_interval(x_tr.x, "training data")
    va = data.binarize_fixed(x_va.x, seed=cfg.seed + 11)
    te = data.binarize_fixed(x_te.x, seed=cfg.seed + 12)
    return np.asarray(x_tr.x, np.float32), va, te, x_tr.source


def protocol_text(cfg) -> str:
    return (
        data.describe_protocol("dynamic", seed=cfg.seed)
        + f" (training digits: {cfg.train_split}); validation/test digits: one fixed Bernoulli "
        f"draw each (numpy PCG64 seeds {cfg.seed + 11}/{cfg.seed + 12})"
    )


# ----------------------------------------------------------------------------------------


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return _run(cfg)


def _run(cfg: Config) -> dict:
    wd = Workdir(cfg.workdir)
    t0 = time.perf_counter()
    x_train, x_valid, x_test, source = load_splits(cfg)
    protocol = protocol_text(cfg)
    log(f"data: {source}, train {x_train.shape}, protocol: {protocol}")
    wd.write_json("config.json", dataclasses.asdict(cfg))
    model = vae.VAE(
        x_dim=784,
        latent_dim=cfg.latent_dim,
        hidden=parse_hidden(cfg.hidden),
        activation=cfg.activation,
        architecture=cfg.architecture,
    ).check()
    steps_per_epoch = x_train.shape[0] // cfg.batch_size
    schedule, schedule_epochs = burda_schedule(cfg.stages, steps_per_epoch, cfg.learning_rate)
    epochs = schedule_epochs if cfg.max_epochs == 0 else min(cfg.max_epochs, schedule_epochs)
    n_is = x_test.shape[0] if cfg.is_test_size == 0 else min(cfg.is_test_size, x_test.shape[0])
    lw_fn = vae.log_weights_fn(model)
    v_eval = jnp.asarray(x_valid[: cfg.eval_size])
    root = jax.random.key(cfg.seed)

    rows = []
    for i, (name, objective, k) in enumerate(parse_models(cfg.models)):
        k_init, k_train, k_eval, k_is, k_samp = jax.random.split(jax.random.fold_in(root, i), 5)
        params = vae.init_params(k_init, model)
        opt = optax.adam(schedule, b1=0.9, b2=0.999, eps=cfg.adam_eps)
        loss_fn = vae.make_loss(model, objective, k, dynamic_binarization=True)
        eval_bound = jax.jit(
            lambda p, key, k=k: jnp.mean(
                jax.vmap(lambda kk, x: vae.iwae_bound(kk, model, p, x, k))(
                    jax.random.split(key, v_eval.shape[0]), v_eval
                )
            )
        )

        def eval_fn(ep, params, eval_bound=eval_bound, k=k, k_eval=k_eval):
            return {f"valid_L{k}": float(eval_bound(params, jax.random.fold_in(k_eval, ep)))}

        fingerprint = _fingerprint(cfg) | {"model": name}
        log(f"{name}: {objective} with k={k}, {epochs} of {schedule_epochs} schedule epochs")
        state, timing = train_loss_model(
            subdir=Path(cfg.workdir) / name,
            fingerprint=fingerprint,
            loss_fn=loss_fn,
            params=params,
            optimizer=opt,
            x_train=x_train,
            batch_size=cfg.batch_size,
            epochs=epochs,
            key=k_train,
            eval_fn=eval_fn,
            eval_every=cfg.eval_every,
            checkpoint_every=cfg.checkpoint_every,
            progress=cfg.progress,
            hint=f"(model {name}, learning_rate={cfg.learning_rate})",
        )
        p = state.params
        t_eval = time.perf_counter()
        k1, k2 = jax.random.split(k_eval)
        test_elbo = jax.jit(
            jax.vmap(lambda kk, x, p=p: vae.elbo(kk, model, p, x, 1, analytic_kl=True))
        )(jax.random.split(k1, x_test.shape[0]), jnp.asarray(x_test))
        test_l50 = vae.bound_on_data(k2, model, p, x_test, 50)
        is_res = importance_log_likelihood(
            k_is, Partial(lw_fn, p), x_test[:n_is], cfg.is_samples, chunk_size=cfg.is_chunk
        )
        mu = np.asarray(model.apply(p, jnp.asarray(x_test), method=vae.VAE.encode)[0])
        active = int(np.sum(np.var(mu, axis=0) > 1e-2))  # Burda et al.'s active units
        eval_s = time.perf_counter() - t_eval
        sub = Workdir(Path(cfg.workdir) / name)
        sub.save_png(
            "samples.png",
            tile_images(np.asarray(vae.generate(k_samp, model, p, cfg.n_samples)), (28, 28)),
            f"{name}: E[x|z], z ~ N(0, I)",
        )
        recon = vae.reconstruct(model, p, jnp.asarray(x_test[:32]))
        pairs = np.stack([x_test[:32], np.asarray(recon)], 1).reshape(64, 784)
        sub.save_png("reconstructions.png", tile_images(pairs, (28, 28), n_cols=8), name)
        row = {
            "model": name,
            "objective": f"{'ELBO (analytic KL)' if objective == 'elbo' else 'IWAE L_k'}, k={k}",
            "test_loglik_is": float(is_res.log_likelihood),
            "test_loglik_is_stderr": float(is_res.stderr),
            "test_loglik_is_mc_stderr": float(is_res.mc_stderr_mean),
            "is_samples": cfg.is_samples,
            "is_test_digits": n_is,
            "test_elbo": float(jnp.mean(test_elbo)),
            "test_L50": float(jnp.mean(test_l50)),
            "active_units": active,
            "eval_seconds": eval_s,
            **timing,
        }
        sub.write_json("results.json", row)
        rows.append(row)
        log(
            f"{name}: IS test log-likelihood {row['test_loglik_is']:.2f} ± "
            f"{row['test_loglik_is_stderr']:.2f} (k={cfg.is_samples}, {n_is} digits), "
            f"test ELBO {row['test_elbo']:.2f}, {active} active units"
        )

    results = {
        "experiment": "VAE / IWAE, one stochastic layer (Burda et al. 2016)",
        "architecture": f"784-{cfg.hidden}-{cfg.latent_dim} {cfg.activation} ({cfg.architecture}), "
        f"Bernoulli output",
        "training": f"Adam (b1 0.9, b2 0.999, eps {cfg.adam_eps}), batch {cfg.batch_size}, "
        f"schedule of {cfg.stages} stages (3^i epochs, lr {cfg.learning_rate}·10^(-i/7)) = "
        f"{schedule_epochs} epochs, truncated to {epochs}",
        "schedule_epochs": schedule_epochs,
        "epochs_trained": epochs,
        "data": source,
        "n_train": int(x_train.shape[0]),
        "protocol": protocol,
        "evaluation": f"IS log-likelihood: log (1/k) Σ p(x, z_i)/q(z_i|x), k={cfg.is_samples} "
        f"draws of q per digit, first {n_is} test digits, stderr over digits; test_elbo: "
        f"analytic-KL ELBO, one draw per digit, all test digits; test_L50: IWAE bound k=50",
        "published": {"vae1": -86.76, "iwae50": -84.78},
        "models": rows,
        "total_seconds": time.perf_counter() - t0,
        "load_avg_1m": round(__import__("os").getloadavg()[0], 2),
        "device": str(jax.devices()[0]),
        "rng": rng_label(),
    }
    wd.write_json("results.json", results)
    return results


#: Fields that do not change trained parameters (a resumed run may change them).
_EVAL_ONLY = (
    "progress",
    "workdir",
    "checkpoint_every",
    "eval_every",
    "eval_size",
    "is_samples",
    "is_test_size",
    "is_chunk",
    "n_samples",
    "models",
    "max_epochs",  # truncation only: a longer run resumes and extends a shorter one
)


def _fingerprint(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    for k in _EVAL_ONLY:
        d.pop(k, None)
    return d


if __name__ == "__main__":
    main(sys.argv[1:])
