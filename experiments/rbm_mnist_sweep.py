"""A vmapped sweep of binary RBMs on MNIST: ONE jitted call per epoch trains every member.

Members differ in seed and in the numeric hyper-parameters learning rate, momentum and
weight decay (the product of the lists given).  Shape-changing choices (hidden size, k,
chain count) are fixed per sweep: run the script once per value.  Each member is scored
with forward AIS (vmapped over members) on the validation set, so the sweep selects a
configuration without touching the test set.

    python experiments/rbm_mnist_sweep.py --config tiny
    python experiments/rbm_mnist_sweep.py --source idx --data_dir ../shared/data/mnist \
        --learning_rates 0.002,0.005,0.01 --momenta 0.9 --seeds 0 --epochs 100

Writes ``config.json``, ``metrics.jsonl`` (per epoch, one list entry per member) and
``results.json`` (one row per member, sorted by validation log-likelihood).
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import Workdir, log, parse_overrides, rng_label, rng_mode  # noqa: E402
from rbm_mnist import Config, load, optimizer_and_step  # noqa: E402

from egm import data, train  # noqa: E402
from egm.energies import rbm  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.estimators import ais  # noqa: E402
from egm.eval import likelihood  # noqa: E402
from egm.eval import metrics as eval_metrics  # noqa: E402


@dataclasses.dataclass(frozen=True)
class SweepConfig(Config):
    learning_rates: str = "0.005,0.01,0.02"
    momenta: str = "0.9"
    weight_decays: str = "0.0"
    seeds: str = "0"
    workdir: str = "runs/rbm_mnist_sweep"


PRESETS = {
    "default": SweepConfig(epochs=20),
    "tiny": SweepConfig(
        n_hidden=16,
        epochs=2,
        eval_size=200,
        ais_chains=16,
        ais_temps=100,
        learning_rates="0.01,0.05",
        seeds="0,1",
        progress=False,
        workdir="runs/rbm_mnist_sweep_tiny",
    ),
}


def _floats(s: str, name: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--{name} must be a comma-separated list of numbers, got {s!r}"
        ) from None


def _ints(s: str, name: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--{name} must be a comma-separated list of integers, got {s!r}"
        ) from None


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return _run(cfg)


def _run(cfg) -> dict:
    wd = Workdir(cfg.workdir)
    wd.write_json("config.json", dataclasses.asdict(cfg))
    wd.truncate_metrics(None)
    grid = list(
        itertools.product(
            _ints(cfg.seeds, "seeds"),
            _floats(cfg.learning_rates, "learning_rates"),
            _floats(cfg.momenta, "momenta"),
            _floats(cfg.weight_decays, "weight_decays"),
        )
    )
    t0 = time.perf_counter()
    arrays, evals, source = load(cfg)
    x_train = jnp.asarray(arrays["train"])
    data_mean = jnp.mean(jnp.asarray(evals["train"]), axis=0)
    opt, step_cfg = optimizer_and_step(
        cfg,
        x_train.shape[0],
        learning_rate=grid[0][1],
        momentum=grid[0][2],
        weight_decay=grid[0][3],
    )
    train.rbm_data_check(784, step_cfg)(arrays["train"])
    states, roots = [], []
    for seed, lr, mom, wdecay in grid:
        k_init, k_state, k_train = jax.random.split(jax.random.key(seed), 3)
        params = rbm.init(k_init, 784, cfg.n_hidden, data_mean=data_mean)
        s = train.init_rbm_state(k_state, params, opt, data_mean, cfg.n_chains)
        s = s._replace(
            opt_state=train.set_hyperparams(
                s.opt_state, learning_rate=lr, momentum=mom, weight_decay=wdecay
            )
        )
        states.append(s)
        roots.append(k_train)
    swept, roots = train.stack(states), jnp.stack(roots)
    sweep_epoch = jax.jit(
        train.sweep_epoch(
            train.make_epoch(train.make_step(train.rbm_objective(step_cfg), opt), cfg.batch_size)
        ),
        donate_argnums=0,
    )
    v_va = jnp.asarray(evals["valid"][: cfg.eval_size])
    pl = jax.jit(jax.vmap(lambda p: eval_metrics.pseudo_log_likelihood(rbm.free_energy, p, v_va)))
    log(f"sweep of {len(grid)} RBMs on {source}: one jitted call per epoch")
    for epoch in range(cfg.epochs):
        swept, m = sweep_epoch(swept, x_train, train.sweep_keys(roots, epoch))
        rec = {
            "epoch": epoch,
            **train.metrics_to_floats(m),
            "wall_s": time.perf_counter() - t0,
        }
        if (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
            rec["pseudo_loglik_valid"] = np.asarray(pl(swept.params)).tolist()
        train.check_divergence(epoch, swept.params, {}, "(in at least one sweep member)")
        wd.log_metrics(rec)
    train_s = time.perf_counter() - t0

    betas = jnp.asarray(ais.betas_salakhutdinov_murray(cfg.ais_temps))
    base_b = ais.base_rate_biases(evals["train"])
    keys = jax.random.split(jax.random.key(cfg.seed + 1000), len(grid))
    res = jax.jit(
        jax.vmap(lambda k, p: ais.rbm_ais_unchecked(k, p, base_b, betas, cfg.ais_chains))
    )(keys, swept.params)
    rows = []
    for i, (seed, lr, mom, wdecay) in enumerate(grid):
        p_i = jax.tree_util.tree_map(lambda x, i=i: x[i], swept.params)
        nfe = likelihood.mean_negative_free_energy(rbm.free_energy, p_i, evals["valid"])
        rows.append(
            {
                "seed": seed,
                "learning_rate": lr,
                "momentum": mom,
                "weight_decay": wdecay,
                "valid_loglik_nats": nfe - float(res.log_z[i]),
                "log_z": float(res.log_z[i]),
                "log_z_se": float(res.log_z_se[i]),
                "ais_ess": float(res.ess[i]),
            }
        )
    rows.sort(key=lambda r: -r["valid_loglik_nats"])
    results = {
        "members": rows,
        "data": source,
        "protocol": data.describe_protocol(cfg.binarization, seed=cfg.binarization_seed),
        "ais": f"forward AIS, {cfg.ais_chains} chains, {cfg.ais_temps} temperatures",
        "train_seconds": train_s,
        "total_seconds": time.perf_counter() - t0,
        "n_members": len(grid),
        "rng": rng_label(),
    }
    wd.write_json("results.json", results)
    for r in rows:
        log(
            f"lr {r['learning_rate']} mom {r['momentum']} wd {r['weight_decay']} seed {r['seed']}: "
            f"valid log-lik {r['valid_loglik_nats']:.2f}"
        )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
