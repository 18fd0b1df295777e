"""Normalising flows on uniformly dequantised MNIST, exact test bits/dim (§20.10.2).

Protocol: 8-bit levels k = round(255 grey), x = (k + u)/256, u ~ U[0, 1) (fresh u per training
minibatch, one fixed test draw); the flows model z = logit(λ + (1-2λ)x), MAF's λ = 1e-6
(Papamakarios et al. 2017), whose Jacobian maps the density back to x.  Bits/dim are those of
y = 256x = k + u, an upper bound on the discrete digits' (Theis et al. 2016).  ``--models``:
``realnvp`` (checkerboard couplings, MLP conditioners), ``maf<k>`` (k MADE layers, order
reversed between them), ``glow`` (multi-scale Glow: ``glow_levels`` scales of a squeeze and
``glow_steps`` steps, split with a learned prior between scales; slow XLA:CPU convolutions).
``--patience p``: early stopping on validation nats (one fixed dequantisation; ``paper``: 30).

    python experiments/flow_mnist.py                  # default: embedded subset, ~2 min
    python experiments/flow_mnist.py --config paper --data_dir ../shared/data/mnist
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace as FlowMNIST

import jax
import numpy as np

from egm import data, eval, run, train
from egm.errors import ConfigError
from egm.models import flows
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, patience_field

D = 784
PUBLISHED = ("realnvp", "maf5", "glow")  # egm.eval.published keys <name>_mnist
ints = lambda s: tuple(int(h) for h in s.split(","))
WIDTHS = lambda v: None if all(h.isdigit() and int(h) for h in v.split(",")) else "must be n,n >= 1"


def parse_models(s: str) -> list[tuple[str, int]]:
    """``[(name, MAF layers)]`` of ``realnvp``, ``glow`` and ``maf<k>`` names."""
    out = [(m, int(m[3:]) if m[:3] == "maf" and m[3:].isdigit() else 0) for m in s.split(",")]
    if any(m not in ("realnvp", "glow") and not k for m, k in out) or len(set(out)) < len(out):
        raise ConfigError(f"--models must be distinct realnvp, glow, maf<k> (k >= 1), got {s!r}")
    return out


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    models: str = field("realnvp,maf5", check=lambda v: parse_models(v) and None, eval_only=True,
                        help="realnvp, maf<k>, glow: a phase each")  # fmt: skip
    realnvp_layers: int = field(6, check=at_least(1))
    realnvp_hidden: str = field("256", check=WIDTHS, help="widths, e.g. 256,256")
    maf_hidden: str = field("256", check=WIDTHS, help="hidden widths of each MADE")
    glow_steps: int = field(4, check=at_least(1), help="steps per scale")
    glow_levels: int = field(2, check=in_range(1, 2), help="scales (28 = 4 x 7: at most 2)")
    glow_hidden: int = field(32, check=at_least(1))
    logit_lambda: float = field(1e-6, check=in_range(0, 0.5, closed_low=False, closed_high=False))
    n_train: int = field(0, check=at_least(0), help="0: the whole split")
    n_test: int = field(0, check=at_least(0), eval_only=True, help="0: every test digit")
    test_dequant_seed: int = field(0, check=at_least(0), eval_only=True)
    epochs: int = field(10, check=at_least(1))
    batch_size: int = field(100, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    weight_decay: float = field(0.0, check=at_least(0), sweep=True)
    patience: int | None = patience_field("validation nats")
    n_samples: int = field(36, check=at_least(1), eval_only=True)
    workdir: str = field("runs/flow_mnist", eval_only=True)


PRESETS = {"default": Config(),
    "tiny": Config(models="realnvp,maf2", realnvp_layers=2, realnvp_hidden="16", maf_hidden="16",
                   n_train=500, n_test=100, epochs=2, n_samples=4, progress=False, workdir="runs/flow_mnist_tiny"),
    # MAF(5)'s setting (MADEs of 1024, Adam 1e-4, L2 1e-6, early stopping with patience 30; recalled)
    "paper": Config(source="auto", realnvp_layers=10, realnvp_hidden="1024", maf_hidden="1024",
                    learning_rate=1e-4, weight_decay=1e-6, epochs=500, patience=30, workdir="runs/flow_mnist_paper"),
}  # fmt: skip


def load(cfg: Config) -> FlowMNIST:
    grey = data.load_grey_mnist(source=cfg.source, data_dir=cfg.data_dir)
    tr, va, te = (np.round(255 * grey.splits[s]).astype(np.float32) for s in ("train", "valid", "test"))  # fmt: skip
    protocol = (f"8-bit levels k = round(255 grey), uniformly dequantised x = (k + u)/256 (fresh u per training "
                f"minibatch, one test draw with seed {cfg.test_dequant_seed}); flow on z = logit({cfg.logit_lambda:g}"
                f" + (1 - {2 * cfg.logit_lambda:g}) x); bits/dim of y = 256 x = k + u")  # fmt: skip
    return FlowMNIST(train=tr[: cfg.n_train or None], test=te[: cfg.n_test or None], valid=va,
                     splits=grey.splits, source=grey.source, protocol=protocol)  # fmt: skip


def model(cfg: Config, name: str, layers: int) -> flows.Flow:
    if name == "realnvp":
        return flows.realnvp(D, cfg.realnvp_layers, ints(cfg.realnvp_hidden), image_shape=(28, 28))
    if name == "glow":  # on the flattened digit: reshape to 28 x 28 x 1 first
        g = flows.glow((28, 28, 1), cfg.glow_steps, cfg.glow_hidden, n_levels=cfg.glow_levels)
        return flows.Flow((flows.Reshape((D,), (28, 28, 1)), *g.layers), (D,))
    return flows.maf(D, layers, ints(cfg.maf_hidden))


def phase(name: str, layers: int, patience: int | None = None) -> run.Phase:
    opt = lambda cfg: train.adam(cfg.learning_rate, weight_decay=cfg.weight_decay)

    def init(cfg, d, key, done):
        k_init, k_u = jax.random.split(key)
        x = flows.logit_transform(flows.dequantise(k_u, d.train[:100]), cfg.logit_lambda)[0]
        return train.init_state(model(cfg, name, layers).init(k_init, x), opt(cfg))

    def step(cfg, d, done):  # loss: nats of x in [0, 1)^D per digit; bits/dim of y
        loss = flows.make_loss(model(cfg, name, layers), cfg.logit_lambda)
        return train.make_step(train.loss_objective(loss, has_aux=True), opt(cfg))

    def monitor(cfg, d, state, key, e):  # validation nats of x per digit (one program)
        f = jitted.setdefault("f", flows.pixel_log_prob_program(model(cfg, name, layers), cfg.logit_lambda))  # fmt: skip
        return {"valid_nats": -float(np.mean(f(state.params, flows.dequantise(jax.random.key(cfg.test_dequant_seed + 1), d.valid))[0]))}  # fmt: skip

    jitted, on = {}, patience is not None
    return run.Phase(name, init, step, data_check=lambda cfg, x: flows.check_levels(x, 256), monitor=monitor if on else None, select="valid_nats" if on else None)  # fmt: skip


def evaluate(cfg: Config, d: FlowMNIST, done, key) -> dict:
    x, out = flows.dequantise(jax.random.key(cfg.test_dequant_seed), d.test), {}
    kw = dict(dataset=d.source, split="test", unit="nats", counts={"dequantisation_draws": 1})
    for name, layers in parse_models(cfg.models):
        lp, lz = flows.pixel_log_prob_batched(model(cfg, name, layers), done[name].params, x, cfg.logit_lambda)  # fmt: skip
        rec = eval.LogLikelihood.from_per_example(lp, "exact", protocol=d.protocol, **kw)
        out[f"{name}_test_bits_per_dim"] = rec.in_bits_per_dim(D, n_levels=256)
        out[f"{name}_test_loglik_logit"] = eval.LogLikelihood.from_per_example(
            lz, "exact", protocol=f"{d.protocol}; nats of z (logit space)", **kw)  # fmt: skip
    return {**out, "n_train": len(d.train), "n_test": len(d.test)}


def sample(cfg: Config, d: FlowMNIST, done, key, n: int) -> dict:
    """``n`` grey digits in [0, 1] per model: x = logit⁻¹(f⁻¹(z)), z ~ N(0, I), clipped."""
    return {m: flows.sample_pixels(jax.random.fold_in(key, i), model(cfg, m, k), done[m].params, n,
                                   cfg.logit_lambda) for i, (m, k) in enumerate(parse_models(cfg.models))}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="flow_mnist", presets=PRESETS, load=load, evaluate=evaluate,
    pictures=lambda cfg, d, done, key: {f"{m}_samples.png": (eval.tile_images(s, (28, 28)),
        f"{m}: samples") for m, s in sample(cfg, d, done, key, cfg.n_samples).items()},
    describe=lambda cfg: {"model": f"RealNVP {cfg.realnvp_layers} checkerboard couplings, MLP "
        f"{cfg.realnvp_hidden}; MAF<k>: MADEs {cfg.maf_hidden}; Glow {cfg.glow_levels} x {cfg.glow_steps} steps",
        "training": f"max. likelihood, Adam lr {cfg.learning_rate}, weight decay {cfg.weight_decay}, batch "
        f"{cfg.batch_size}, {cfg.epochs} epochs" + ("" if cfg.patience is None else f", early stopping "
        f"(patience {cfg.patience})"), "evaluation": "exact test log-likelihood (change of variables): "
        "bits/dim of the 8-bit scale and nats of the logit space"},
    phases=lambda cfg: [phase(*m, cfg.patience) for m in parse_models(cfg.models)], sample=sample,
    score_splits=lambda c, d: d.splits,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
    published=lambda c: {f"{m}_test_{'loglik_logit' if m == 'maf5' else 'bits_per_dim'}":
                         f"{m}_mnist" for m, _ in parse_models(c.models) if m in PUBLISHED},
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
