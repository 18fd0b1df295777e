"""Factored gated (third-order) RBM on pairs of shifted random-dot images (Memisevic & Hinton
2010, §20.8): the mapping units learn to encode the transformation.

Each pair is a random-dot image x (``size`` x ``size``, each pixel on with probability
``density``) and y, the same image shifted cyclically by (dr, dc) with |dr|, |dc| <=
``max_shift``.  The model (egm.energies.gated_rbm) is p(y, h | x) with factored three-way
interactions, trained by CD-k with x clamped.  Figures: the accuracy of a linear probe
(ridge regression, trained on the training pairs) that reads the shift from the mapping
units P(h | x, y), against the same probe on the raw pixels (x, y); the pixel error of y
reconstructed from x and P(h | x, y); and the analogy error: h inferred from one pair and
applied to a new image with the same shift (the paper's analogy figure), against copying x.

    python experiments/gated_rbm_shifts.py                 # default: 60 epochs, ~2.5 min on 2 cores
    python experiments/gated_rbm_shifts.py --config tiny   # smoke test, seconds

Pictures: filters.png (each factor's input filter beside its output filter) and analogies.png.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from egm import data, eval, run, train
from egm.energies import gated_rbm
from egm.errors import ConfigError
from egm.run import boltzmann_extra as bx
from egm.run.config import RunFields, at_least, field, greater_than, in_range


@dataclasses.dataclass(frozen=True)
class Config(RunFields):
    size: int = field(10, check=at_least(3), help="images are size x size")
    max_shift: int = field(1, check=at_least(1), help="shifts in -max_shift..max_shift per axis")
    density: float = field(0.1, check=in_range(0, 1, closed_low=False))
    n_train: int = field(20000, check=at_least(10))
    n_test: int = field(2000, check=at_least(10))
    data_seed: int = field(0, check=at_least(0))
    n_factors: int = field(100, check=at_least(1))
    n_hidden: int = field(50, check=at_least(1))
    init_scale: float = field(0.1, check=greater_than(0), help="sd of the initial loadings")
    k: int = field(1, check=at_least(1), help="CD-k")
    epochs: int = field(60, check=at_least(1))
    batch_size: int = field(100, check=at_least(1))
    learning_rate: float = field(0.01, check=greater_than(0), sweep=True)
    momentum: float = field(0.9, check=in_range(0, 1, closed_high=False), sweep=True)
    weight_decay: float = field(1e-4, check=at_least(0), sweep=True)
    workdir: str = field("runs/gated_rbm_shifts", eval_only=True)

    def check(self) -> None:
        if 2 * self.max_shift >= self.size:
            raise ConfigError(f"max_shift={self.max_shift} needs size > {2 * self.max_shift}, "
                              f"got size={self.size}: larger cyclic shifts alias smaller ones")  # fmt: skip


# fmt: off
PRESETS = {
    "default": Config(),
    "tiny": Config(size=6, n_train=500, n_test=200, n_factors=16, n_hidden=8, epochs=2,
                   batch_size=50, progress=False, checkpoint_every=1,
                   workdir="runs/gated_rbm_shifts_tiny"),
}
# fmt: on


def load(cfg: Config) -> bx.ShiftPairs:
    return bx.shift_pairs(cfg.n_train, cfg.n_test, cfg.size, cfg.max_shift, cfg.density,
                          cfg.data_seed)  # fmt: skip


def init(cfg: Config, d: bx.ShiftPairs, key, done):
    D = cfg.size**2
    params = gated_rbm.init(key, D, D, cfg.n_hidden, cfg.n_factors, scale=cfg.init_scale)
    return train.init_state(params, train.sgd(cfg.learning_rate, cfg.momentum, cfg.weight_decay))


def step(cfg: Config, d: bx.ShiftPairs, done):
    def objective(params, batch, key, chains, aux):
        loss = lambda p: gated_rbm.cd_surrogate(key, p, *batch, cfg.k)  # noqa: E731
        grads, metrics = jax.grad(loss, has_aux=True)(params)
        return train.ObjectiveOut(grads, chains, aux, metrics)

    return train.make_step(objective, train.sgd(cfg.learning_rate, cfg.momentum, cfg.weight_decay))


def data_check(cfg: Config, xy) -> None:
    for a, name in zip(xy, ("input images x", "output images y"), strict=True):
        data.check_shape(a, cfg.size**2, name)
        data.check_binary(a, name)


def evaluate(cfg: Config, d: bx.ShiftPairs, done, key) -> dict:
    p, n_cls = done["train"].params, (2 * cfg.max_shift + 1) ** 2
    feats = jax.jit(jax.vmap(gated_rbm.hidden_probs, (None, 0, 0)))
    h_tr, h_te = (np.asarray(feats(p, *xy)) for xy in (d.train, d.test))
    c_tr, c_te = d.shifts["train"], d.shifts["test"]
    (x, y), raw = d.test, lambda xy: np.concatenate(xy, axis=1)
    recon = np.asarray(jax.vmap(gated_rbm.reconstruct, (None, 0, 0))(p, x, y))
    # analogy: h from the test pair i applied to the next test image with the same shift
    partner = bx.analogy_partners(c_te)
    analogy = np.asarray(jax.vmap(gated_rbm.output_probs, (None, 0, 0))(p, x[partner], h_te))
    return {"shift_probe_accuracy": bx.probe_accuracy(h_tr, c_tr, h_te, c_te, n_cls),
            "pixel_probe_accuracy": bx.probe_accuracy(raw(d.train), c_tr, raw(d.test), c_te, n_cls),
            "chance_accuracy": 1.0 / n_cls, "n_shifts": n_cls,
            "recon_pixel_error": float(np.mean((recon > 0.5) != (y > 0.5))),
            "analogy_pixel_error": float(np.mean((analogy > 0.5) != (y[partner] > 0.5))),
            "copy_pixel_error": float(np.mean(x[partner] != y[partner])),
            "n_train": cfg.n_train, "n_test": cfg.n_test}  # fmt: skip


def pictures(cfg: Config, d: bx.ShiftPairs, done, key) -> dict:
    p, n = done["train"].params, min(cfg.n_factors, 32)
    pairs = np.stack([np.asarray(p.Wx).T[:n], np.asarray(p.Wy).T[:n]], axis=1).reshape(2 * n, -1)
    x, y = d.test[0][:8], d.test[1][:8]
    rec = np.asarray(jax.vmap(gated_rbm.reconstruct, (None, 0, 0))(p, x, y))
    rows = np.stack([x, y, rec], axis=1).reshape(-1, cfg.size**2)
    shape = (cfg.size, cfg.size)
    return {"filters.png": (eval.tile_images(pairs, shape, n_cols=8, normalize=True),
                            "factor filters: input W^x beside output W^y"),
            "analogies.png": (eval.tile_images(rows, shape, n_cols=6),
                              "x, y and y reconstructed from x and P(h | x, y)")}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="gated_rbm_shifts", presets=PRESETS, load=load,
    phases=lambda cfg: [run.Phase("train", init, step, data_check=data_check)],
    evaluate=evaluate, pictures=pictures,
    describe=lambda c: {"model": f"factored gated RBM {c.size**2}x{c.size**2}, {c.n_factors} "
                        f"factors, {c.n_hidden} mapping units",
                        "training": f"CD-{c.k}, SGD lr {c.learning_rate} momentum {c.momentum}, "
                        f"{c.epochs} epochs, batch {c.batch_size}"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
