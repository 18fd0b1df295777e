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

from egm import run, train
from egm.data import toy
from egm.eval import visualize as vis
from egm.models import flows
from egm.run import toy2d
from egm.run.config import at_least, field, greater_than

DENSITIES = toy.DENSITIES
_names = toy2d.names
MODELS = ("realnvp", "maf")
ints = lambda cfg: tuple(int(h) for h in cfg.hidden.split(","))


@dataclasses.dataclass(frozen=True)
class Config(toy2d.Toy2DFields):
    models: str = field("realnvp,maf", check=toy2d.names_ok(MODELS, "models"))
    realnvp_layers: int = field(8, check=at_least(1))
    maf_layers: int = field(5, check=at_least(1))
    hidden: str = field("64,64", check=lambda v: None if all(h.isdigit() and int(h) for h in
                        v.split(",")) else "must be ints >= 1")  # fmt: skip
    epochs: int = field(60, check=at_least(1))
    batch_size: int = field(250, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    workdir: str = field("runs/flow_2d", eval_only=True)


PRESETS = {"default": Config(),
    "tiny": Config(datasets="checkerboard", realnvp_layers=2, maf_layers=2, hidden="16",
                   n_train=2000, n_test=500, epochs=2, batch_size=200, grid=24,
                   progress=False, workdir="runs/flow_2d_tiny"),
}  # fmt: skip


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


def _record(lp, ds: str, cfg: Config, what: str):
    return toy2d.record(
        lp, ds, cfg, f"exact log density ({what}) of fresh draws from the true density"
    )


def evaluate(cfg: Config, d: dict, done, key) -> dict:
    out = {}
    for ds, (_, test) in d.items():
        lp = np.asarray(DENSITIES[ds][1](test), np.float64)  # the true density's figure, -H(p)
        out[f"{ds}_true_test_loglik"] = _record(lp, ds, cfg, "the true density: -H(p)")
        for m in _names(cfg.models, MODELS, "models"):
            lq = np.asarray(jax.jit(model(cfg, m).log_prob)(done[f"{m}_{ds}"].params, test), float)
            out[f"{m}_{ds}_test_loglik"] = _record(lq, ds, cfg, "change of variables")
            out |= toy2d.kl_fields(f"{m}_{ds}", lp, lq)  # paired: smaller error than either
    return out


def pictures(cfg: Config, d: dict, done, key) -> dict:
    """Rows: densities; columns: the true p, each q (exp(log q - max)), q's samples."""
    xy, ms, rows = vis.grid_2d(cfg.grid), _names(cfg.models, MODELS, "models"), []
    for i, ds in enumerate(d):
        fl = [(model(cfg, m), done[f"{m}_{ds}"].params) for m in ms]
        lq = map(np.asarray, [DENSITIES[ds][1](xy), *(jax.jit(f.log_prob)(p, xy) for f, p in fl)])
        keys = jax.random.split(jax.random.fold_in(key, i), len(ms))
        s = [jax.jit(f.sample, static_argnums=2)(k, p, cfg.n_test)
             for k, (f, p) in zip(keys, fl, strict=True)]  # fmt: skip
        rows.append([vis.density_image(v, cfg.grid) for v in lq]
                    + [vis.histogram_2d(x, cfg.grid) for x in s])  # fmt: skip
    title = f"rows: {', '.join(d)}; columns: true, {', '.join(ms)} densities, then samples"
    return {"densities.png": (vis.panels(rows), title)}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="flow_2d", presets=PRESETS, load=toy2d.load, evaluate=evaluate, pictures=pictures,
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
