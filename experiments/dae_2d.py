"""Spurious modes of the DAE chain on 2-D densities, with and without walk-back (§20.11.3).

A DAE with Gaussian corruption ``x̃ = x + level · ε`` and a K-component Gaussian-mixture
reconstruction ``P(x|x̃)`` (egm.models.dae) is fitted to a ring of 8 Gaussians and to
concentric rings (egm.data.toy, exact log densities), once per ``--walkbacks`` value (extra
walk-back steps, 0: the plain DAE), a phase per (walk-back, density).  ``n_chains`` DAE chains
from uniform starts on [-3, 3]² run ``chain_steps`` steps; ``<wb>_<density>_far_mass``: the
fraction of their final states outside the true density's 99 % highest-density region
(log p below the 1 % quantile of log p over ``n_ref`` true draws: the true density scores
0.01 by construction), with its binomial standard error; walk-back is expected to lower it.

    python experiments/dae_2d.py                  # default: 2 densities x walk-back 0 / 4, ~1 min CPU
    python experiments/dae_2d.py --config tiny    # smoke test, seconds
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from egm import run, train
from egm.data import toy
from egm.eval import visualize as vis
from egm.models import dae
from egm.run import directed as rd
from egm.run.config import RunFields, at_least, field, greater_than

DENSITIES = toy.DENSITIES


def _walkbacks_ok(v: str) -> str | None:
    ks = v.split(",")
    return None if all(k.isdigit() for k in ks) and len(set(ks)) == len(ks) else "must be " \
        "distinct integers >= 0, e.g. 0,4"  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Config(RunFields):
    datasets: str = field("gaussian_mixture,rings", check=rd.choices_ok(tuple(DENSITIES)))
    walkbacks: str = field("0,4", check=_walkbacks_ok, help="extra walk-back steps, a phase each")
    hidden: str = field("64,64", check=rd.sizes_ok)
    n_components: int = field(4, check=at_least(1), help="K of the Gaussian-mixture P(x|x̃)")
    level: float = field(0.3, check=greater_than(0), help="sd of the Gaussian corruption")
    n_train: int = field(20000, check=at_least(1))
    data_seed: int = field(0, check=at_least(0))
    epochs: int = field(40, check=at_least(1))
    batch_size: int = field(250, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    n_chains: int = field(5000, check=at_least(2), eval_only=True)
    chain_steps: int = field(200, check=at_least(1), eval_only=True)
    n_ref: int = field(100000, check=at_least(100), eval_only=True, help="true draws for the HDR")
    grid: int = field(100, check=at_least(4), eval_only=True)
    workdir: str = field("runs/dae_2d", eval_only=True)


PRESETS = {"default": Config(),
    "tiny": Config(datasets="gaussian_mixture", walkbacks="0,2", hidden="16", n_train=2000,
                   epochs=2, batch_size=200, n_chains=500, chain_steps=10, n_ref=2000, grid=24,
                   progress=False, workdir="runs/dae_2d_tiny"),
}  # fmt: skip
names = lambda s: [x for x in s.split(",") if x]


def model(cfg: Config) -> dae.DAE:
    return dae.DAE(2, rd.sizes(cfg.hidden), "gaussian_mixture", cfg.n_components, "gaussian",
                   cfg.level).check()  # fmt: skip


def load(cfg: Config) -> dict:  # {density: training draws}, the same for every sweep member
    key = jax.random.key(cfg.data_seed)
    return {name: np.asarray(DENSITIES[name][0](jax.random.fold_in(key, i), cfg.n_train))
            for i, name in enumerate(names(cfg.datasets))}  # fmt: skip


def phase(wb: int, ds: str) -> run.Phase:
    def init(cfg, d, key, done):
        return train.init_state(dae.init_params(key, model(cfg)), train.adam(cfg.learning_rate))

    def step(cfg, d, done):
        m = model(cfg)
        loss = lambda p, x, key: dae.walkback_loss(key, m, p, x, wb)
        return train.make_step(train.loss_objective(loss, has_aux=True),
                               train.adam(cfg.learning_rate))  # fmt: skip

    return run.Phase(f"wb{wb}_{ds}", init, step, train_data=lambda cfg, d, done: d[ds])


@functools.partial(jax.jit, static_argnums=(1, 4))
def _final(key, m, p, x0, steps):  # one compilation per (model, chains, steps)
    return dae.sample_chain(key, m, p, x0, steps, keep_every=steps).x[-1]


def _chains(cfg: Config, params, key):  # final states from uniform starts on [-3, 3]^2
    x0 = jax.random.uniform(jax.random.fold_in(key, 1), (cfg.n_chains, 2), jnp.float32, -3, 3)
    return np.asarray(_final(key, model(cfg), params, x0, cfg.chain_steps))


def evaluate(cfg: Config, d: dict, done, key) -> dict:
    out = {}
    for i, ds in enumerate(d):
        log_p = DENSITIES[ds][1]
        ref = DENSITIES[ds][0](jax.random.fold_in(jax.random.key(cfg.data_seed + 1), i), cfg.n_ref)
        thr = float(np.quantile(np.asarray(log_p(ref)), 0.01))  # the 99 % HDR: log p >= thr
        out[f"{ds}_hdr99_log_density"] = thr
        for j, wb in enumerate(names(cfg.walkbacks)):
            x = _chains(cfg, done[f"wb{wb}_{ds}"].params, jax.random.fold_in(key, 100 * i + j))
            far = float(np.mean(np.asarray(log_p(x)) < thr))
            out[f"wb{wb}_{ds}_far_mass"] = far
            out[f"wb{wb}_{ds}_far_mass_stderr"] = float(np.sqrt(max(far * (1 - far), 1e-12)
                                                                / len(x)))  # fmt: skip
    out["far_protocol"] = (f"{cfg.n_chains} chains x {cfg.chain_steps} steps from U[-3,3]^2: "
                           f"log p < the 1% quantile over {cfg.n_ref} true draws")  # fmt: skip
    return out


def pictures(cfg: Config, d: dict, done, key) -> dict:
    xy, rows = vis.grid_2d(cfg.grid, 3.0), []
    for i, ds in enumerate(d):
        panels = [vis.density_image(DENSITIES[ds][1](xy), cfg.grid)]
        for j, wb in enumerate(names(cfg.walkbacks)):
            x = _chains(cfg, done[f"wb{wb}_{ds}"].params, jax.random.fold_in(key, 100 * i + j))
            panels.append(np.sqrt(vis.histogram_2d(x, cfg.grid, 3.0)))
        rows.append(panels)
    title = f"rows: {', '.join(d)}; columns: true density, chains for walk-back {cfg.walkbacks}"
    return {"chains.png": (vis.panels(rows), title)}


EXPERIMENT = run.Experiment(
    name="dae_2d", presets=PRESETS, load=load, evaluate=evaluate, pictures=pictures,
    phases=lambda c: [phase(int(wb), ds) for ds in names(c.datasets) for wb in names(c.walkbacks)],
    describe=lambda c: {"model": f"DAE 2-{c.hidden}-2 tanh, Gaussian corruption sd {c.level}, "
                        f"{c.n_components}-component Gaussian-mixture P(x|x̃) centred at x̃; "
                        f"walk-back {c.walkbacks}; Adam lr {c.learning_rate}"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
