"""Normalising flows on 2-D densities with known log densities (§20.10.2).

RealNVP (affine couplings, alternating halves, tanh-bounded log-scales; Dinh et al. 2017) and
MAF (MADE affine layers, order reversed between layers; Papamakarios et al. 2017) fitted by
maximum likelihood (Adam) to a ring of 8 Gaussians, concentric rings and a checkerboard
(egm.data.toy), a phase per (model, density).  Exact test log-likelihood (change of variables)
on fresh draws from the true p, beside E_p log p = -H(p) on the same points (-log 8 for the
checkerboard) and KL(p || q) = E_p[log p - log q] with its paired standard error.
``densities.png``: a row per density; columns: true density, each model's density, its samples.

    python experiments/flow_2d.py                    # default: 3 densities x 2 models
    python experiments/flow_2d.py --config tiny      # smoke test, seconds
    python experiments/flow_2d.py --datasets rings --sweep seed=0:4
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import eval, run, train
from egm.data import toy
from egm.errors import ConfigError
from egm.models import flows
from egm.run.config import RunFields, at_least, field, greater_than

DENSITIES = {
    "gaussian_mixture": (toy.sample_gaussian_mixture, toy.log_density_gaussian_mixture),
    "rings": (toy.sample_rings, toy.log_density_rings),
    "checkerboard": (toy.sample_checkerboard, toy.log_density_checkerboard),
}
MODELS = ("realnvp", "maf")
ints = lambda cfg: tuple(int(h) for h in cfg.hidden.split(","))


def _names(s: str, known, what: str) -> list[str]:
    names = [x for x in s.split(",") if x]
    if not names or set(names) - set(known) or len(set(names)) != len(names):
        raise ConfigError(f"--{what} must be distinct names from {list(known)}, got {s!r}")
    return names


@dataclasses.dataclass(frozen=True)
class Config(RunFields):
    datasets: str = field("gaussian_mixture,rings,checkerboard",
                          check=lambda v: _names(v, DENSITIES, "datasets") and None)  # fmt: skip
    models: str = field("realnvp,maf", check=lambda v: _names(v, MODELS, "models") and None)
    realnvp_layers: int = field(8, check=at_least(1))
    maf_layers: int = field(5, check=at_least(1))
    hidden: str = field("64,64", check=lambda v: None if all(h.isdigit() and int(h) for h in
                        v.split(",")) else "must be ints >= 1")  # fmt: skip
    n_train: int = field(20000, check=at_least(1))
    n_test: int = field(10000, check=at_least(2), eval_only=True)
    data_seed: int = field(0, check=at_least(0), help="the draws of the training/test points")
    epochs: int = field(60, check=at_least(1))
    batch_size: int = field(250, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    grid: int = field(120, check=at_least(4), eval_only=True, help="pixels per side of a plot")
    workdir: str = field("runs/flow_2d", eval_only=True)


PRESETS = {"default": Config(),
    "tiny": Config(datasets="checkerboard", realnvp_layers=2, maf_layers=2, hidden="16",
                   n_train=2000, n_test=500, epochs=2, batch_size=200, grid=24,
                   progress=False, workdir="runs/flow_2d_tiny"),
}  # fmt: skip


def load(cfg: Config) -> dict:  # {density: (train, test)}, the same for every sweep member
    out = {}
    for i, name in enumerate(_names(cfg.datasets, DENSITIES, "datasets")):
        k_train, k_test = jax.random.split(jax.random.fold_in(jax.random.key(cfg.data_seed), i))
        draw = DENSITIES[name][0]
        out[name] = (np.asarray(draw(k_train, cfg.n_train)), np.asarray(draw(k_test, cfg.n_test)))
    return out


def model(cfg: Config, name: str) -> flows.Flow:
    if name == "realnvp":
        return flows.realnvp(2, cfg.realnvp_layers, ints(cfg))
    return flows.maf(2, cfg.maf_layers, ints(cfg))


def phase(name: str, ds: str) -> run.Phase:
    def init(cfg, d, key, done):
        p = model(cfg, name).init(key, d[ds][0][: cfg.batch_size])
        return train.init_state(p, train.adam(cfg.learning_rate))

    def step(cfg, d, done):
        loss = lambda p, x, key, f=model(cfg, name): -jnp.mean(f.log_prob(p, x))  # noqa: B008
        return train.make_step(train.loss_objective(loss), train.adam(cfg.learning_rate))

    return run.Phase(f"{name}_{ds}", init, step, train_data=lambda cfg, d, done: d[ds][0])


def _record(lp, ds: str, cfg: Config, what: str) -> eval.LogLikelihood:
    return eval.LogLikelihood.from_per_example(lp, "exact", split="test", unit="nats",
        dataset=f"toy:{ds} (egm.data.toy; {cfg.n_test} test draws, seed {cfg.data_seed})",
        protocol=f"exact log density ({what}) of fresh draws from the true density")  # fmt: skip


def evaluate(cfg: Config, d: dict, done, key) -> dict:
    out = {}
    for ds, (_, test) in d.items():
        lp = np.asarray(DENSITIES[ds][1](test), np.float64)  # the true density's figure, -H(p)
        out[f"{ds}_true_test_loglik"] = _record(lp, ds, cfg, "the true density: -H(p)")
        for m in _names(cfg.models, MODELS, "models"):
            lq = np.asarray(jax.jit(model(cfg, m).log_prob)(done[f"{m}_{ds}"].params, test), float)
            out[f"{m}_{ds}_test_loglik"] = _record(lq, ds, cfg, "change of variables")
            gap = lp - lq  # paired: the KL estimate has a smaller error than either figure
            out[f"{m}_{ds}_kl_nats"] = float(gap.mean())
            out[f"{m}_{ds}_kl_stderr"] = float(gap.std(ddof=1) / np.sqrt(len(gap)))
    return out


def pictures(cfg: Config, d: dict, done, key) -> dict:
    """Rows: densities; columns: the true p, each q (exp(log q - max)), q's samples."""
    xy, ms, rows = flows.grid_2d(cfg.grid), _names(cfg.models, MODELS, "models"), []
    for i, ds in enumerate(d):
        fl = [(model(cfg, m), done[f"{m}_{ds}"].params) for m in ms]
        lq = map(np.asarray, [DENSITIES[ds][1](xy), *(jax.jit(f.log_prob)(p, xy) for f, p in fl)])
        keys = jax.random.split(jax.random.fold_in(key, i), len(ms))
        s = [jax.jit(f.sample, static_argnums=2)(k, p, cfg.n_test)
             for k, (f, p) in zip(keys, fl, strict=True)]  # fmt: skip
        rows.append([np.exp(v - v.max()).reshape(cfg.grid, cfg.grid) for v in lq]
                    + [flows.histogram_2d(x, cfg.grid) for x in s])  # fmt: skip
    title = f"rows: {', '.join(d)}; columns: true, {', '.join(ms)} densities, then samples"
    return {"densities.png": (flows.panels(rows), title)}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="flow_2d", presets=PRESETS, load=load, evaluate=evaluate, pictures=pictures,
    phases=lambda cfg: [phase(m, ds) for ds in _names(cfg.datasets, DENSITIES, "datasets")
                        for m in _names(cfg.models, MODELS, "models")],
    describe=lambda cfg: {
        "model": f"RealNVP: {cfg.realnvp_layers} affine couplings (alternating halves, s = "
        f"scale·tanh), MLP {cfg.hidden}; MAF: {cfg.maf_layers} MADE affine layers (hidden "
        f"{cfg.hidden}, order reversed between layers); standard-normal base",
        "training": f"maximum likelihood, Adam lr {cfg.learning_rate}, batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs of {cfg.n_train} fixed draws",
        "evaluation": "exact test log-likelihood; KL(p||q) = E_p[log p - log q] on the same "
        "test draws (paired standard error)"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
