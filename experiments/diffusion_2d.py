"""Diffusion models on 2-D densities with known log densities (§20.13).

A DDPM (Ho et al. 2020: ε-prediction, L_simple, reverse variances σ_t² = β_t) with an MLP
ε_θ(x_t, t) on the densities of flow_2d (egm.data.toy), one phase per density; EMA weights
for evaluation and sampling.  Test figures on fresh draws from the true p: the variational
bound on -log p_θ(x) (nats, a Gaussian decoder at t = 1; the sum of its per-step terms
L_0 + Σ L_{t-1} + L_T, one draw of x_t per step), beside -H(p) = E_p log p; an upper bound on
KL(p || p_θ) = E_p[log p + L] (paired standard error); the unbiased MMD² between model samples
and test draws, beside the same statistic between two sets of true draws (its noise floor).
``densities.png``: a row per density: the true density, exp(-L) on a grid (the bound's
density), a histogram of model samples.

    python experiments/diffusion_2d.py                    # default: 3 densities
    python experiments/diffusion_2d.py --config tiny      # smoke test, seconds
    python experiments/diffusion_2d.py --datasets rings --schedule cosine --sweep seed=0:4
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from egm import run, train
from egm.data import toy
from egm.estimators.mmd import mmd2
from egm.eval import visualize as vis
from egm.models import diffusion as dm
from egm.run import toy2d
from egm.run.config import at_least, field, greater_than, in_range, one_of

BANDWIDTHS = (0.05, 0.2, 1.0)


@dataclasses.dataclass(frozen=True)
class Config(toy2d.Toy2DFields):
    n_steps: int = field(100, check=at_least(1), help="diffusion steps T")
    schedule: str = field("linear", check=one_of(*dm.SCHEDULES))
    hidden: str = field("128,128,128", check=lambda v: None if all(h.isdigit() and int(h) for h in
                        v.split(",")) else "must be ints >= 1")  # fmt: skip
    n_test: int = field(5000, check=at_least(2), eval_only=True)
    n_samples: int = field(2000, check=at_least(2), eval_only=True, help="for the MMD and plot")
    epochs: int = field(100, check=at_least(1))
    batch_size: int = field(250, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    ema_decay: float = field(0.995, check=in_range(0, 1, closed_high=False))
    grid: int = field(60, check=at_least(4), eval_only=True, help="pixels per side of a plot")
    workdir: str = field("runs/diffusion_2d", eval_only=True)


PRESETS = {"default": Config(),
    "tiny": Config(datasets="checkerboard", n_steps=10, hidden="16", n_train=1000, n_test=200,
                   n_samples=200, epochs=2, batch_size=200, grid=12, progress=False,
                   workdir="runs/diffusion_2d_tiny"),
}  # fmt: skip


net = lambda cfg: dm.EpsMLP(tuple(int(h) for h in cfg.hidden.split(",")))  # noqa: E731
schedule = lambda cfg: dm.named_schedule(cfg.schedule, cfg.n_steps)  # noqa: E731


def phase(ds: str) -> run.Phase:
    def init(cfg, d, key, done):
        x = jnp.asarray(d[ds][0][: cfg.batch_size])
        p = net(cfg).init(key, x, jnp.zeros(len(x), jnp.int32))["params"]
        return dm.init_ema_state(p, train.adam(cfg.learning_rate))

    def step(cfg, d, done):
        loss = dm.make_loss(dm.eps_fn_of(net(cfg)), schedule(cfg))
        opt = train.adam(cfg.learning_rate)
        return dm.with_ema(train.make_step(train.loss_objective(loss, has_aux=True), opt),
                           cfg.ema_decay)  # fmt: skip

    return run.Phase(ds, init, step, train_data=lambda cfg, d, done: d[ds][0])


@functools.cache
def _programs(cfg: Config):
    """The jitted bound terms and sampler, compiled once per config."""
    sched, f = schedule(cfg), dm.eps_fn_of(net(cfg))
    terms = lambda p, x, k: dm.bound_terms(k, f, p, sched, x, decoder="gaussian")  # noqa: E731
    draw = lambda p, k: dm.sample(k, f, p, sched, (cfg.n_samples, 2))  # noqa: E731
    return jax.jit(terms), jax.jit(draw)


def _bound(cfg: Config, params, x, key) -> np.ndarray:
    """Per-example bound L = Σ_t L_t on -log p_θ(x) (nats), in chunks of 2000."""
    terms, prior = dm.bound_terms_in_chunks(_programs(cfg)[0], params, x, key, chunk=2000)
    return terms.sum(-1) + prior


def evaluate(cfg: Config, d: dict, done, key) -> dict:
    out = {}
    for j, (ds, (_, test, other)) in enumerate(d.items()):
        k_b, k_s = jax.random.split(jax.random.fold_in(key, j))
        ema = done[ds].aux["ema"]
        lp = np.asarray(toy.DENSITIES[ds][1](test), np.float64)
        out[f"{ds}_true_test_loglik"] = toy2d.record(
            lp, ds, cfg, "exact log density of the true p: -H(p)"
        )
        L = _bound(cfg, ema, test, k_b)
        out[f"{ds}_test_loglik_bound"] = toy2d.record(
            -L, ds, cfg, f"DDPM bound L_0 + sum L_t-1 + L_T (Gaussian decoder, {cfg.schedule} "
            f"schedule, T = {cfg.n_steps}, EMA weights)", "variational_bound", bound="lower",
            counts={"steps": cfg.n_steps, "draws_per_step": 1})  # fmt: skip
        out |= toy2d.kl_fields(ds, lp, -L, "kl_upper")  # E_p[log p + L] >= KL(p || p_theta)
        xs = np.asarray(_programs(cfg)[1](ema, k_s))
        ref = test[: cfg.n_samples]
        out[f"{ds}_mmd2"] = float(mmd2(xs, ref, BANDWIDTHS))
        out[f"{ds}_mmd2_floor"] = float(mmd2(other, ref, BANDWIDTHS))
    out["mmd_bandwidths"] = ",".join(map(str, BANDWIDTHS))
    return out


def pictures(cfg: Config, d: dict, done, key) -> dict:
    xy, rows = vis.grid_2d(cfg.grid), []
    for j, ds in enumerate(d):
        ema = done[ds].aux["ema"]
        lb = -_bound(cfg, ema, xy, jax.random.fold_in(key, j))
        xs = np.asarray(_programs(cfg)[1](ema, jax.random.fold_in(key, 100 + j)))
        rows.append([vis.density_image(toy.DENSITIES[ds][1](xy), cfg.grid),
                     vis.density_image(lb, cfg.grid), vis.histogram_2d(xs, cfg.grid)])  # fmt: skip
    image = vis.panels(rows)
    title = f"rows: {', '.join(d)}; columns: true density, exp(-bound), sample histogram"
    return {"densities.png": (image, title)}


EXPERIMENT = run.Experiment(
    name="diffusion_2d", presets=PRESETS, load=lambda cfg: toy2d.load(cfg, (cfg.n_samples,)),
    evaluate=evaluate, pictures=pictures, phases=lambda cfg: [phase(ds) for ds in toy2d.names(cfg.datasets)],
    describe=lambda cfg: {"model": f"DDPM, ε-MLP {cfg.hidden} (SiLU, sinusoidal step embedding), "
                          f"T = {cfg.n_steps}, {cfg.schedule} schedule, σ_t² = β_t; L_simple, "
                          f"Adam lr {cfg.learning_rate}, EMA decay {cfg.ema_decay}"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
