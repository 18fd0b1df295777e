"""Denoising autoencoders as generative models on binarized MNIST (§20.11; Bengio et al. 2013).

Salt-and-pepper corruption ``C(x̃|x)``, an MLP reconstruction distribution ``P(x|x̃)`` (a
factorial Bernoulli, ``--output bernoulli_mixture``: K factorial Bernoullis, or ``--output
nade``: a NADE whose biases the MLP computes, bottom row first), trained with
``--walkback k`` extra walk-back steps (§20.11.3; 0: the plain DAE criterion), Adam.  The DAE
chain (corrupt, reconstruct, sample, repeat) draws the samples (``--score_samples N``: the
driver's Fréchet distance, classifier score, Parzen).  Inpainting (§20.11.2): the top half of
``inpaint_size`` test digits clamped, the bottom half started as noise and resampled
``inpaint_steps`` times; ``inpaint_loglik_missing``: log P(true bottom half | x̃) under the
final reconstruction (beside the same figure at the start), ``inpaint_accuracy``: egm's
classifier (egm.eval.features) on the completed digits, beside the full and the half-noise ones.

    python experiments/dae_mnist.py                     # default: embedded subset, 30-50 s CPU
    python experiments/dae_mnist.py --config tiny       # smoke test, seconds
    python experiments/dae_mnist.py --walkback 4 --score_samples 1000 --workdir runs/dae_wb4
    python experiments/dae_mnist.py --config paper --source idx --data_dir ../shared/data/mnist
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from egm import run, train
from egm.eval import features as fnet
from egm.models import dae
from egm.run import directed as rd
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    hidden: str = field("500", check=rd.sizes_ok, help="tanh widths of x̃ -> P(x|x̃)")
    output: str = field("bernoulli", check=one_of("bernoulli", "bernoulli_mixture", "nade"))
    n_components: int = field(10, check=at_least(1), help="K of the mixture output")
    nade_hidden: int = field(100, check=at_least(1), help="hidden units of the NADE output")
    level: float = field(0.4, check=in_range(0, 1), help="salt-and-pepper probability per pixel")
    walkback: int = field(0, check=at_least(0), help="extra walk-back steps (0: plain DAE)")
    n_train: int = field(0, check=at_least(0), help="first n training digits (0: all)")
    epochs: int = field(10, check=at_least(1))
    batch_size: int = field(100, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    chain_steps: int = field(30, check=at_least(1), eval_only=True, help="steps per sample")
    eval_size: int = field(1000, check=at_least(2), eval_only=True)
    inpaint_size: int = field(500, check=at_least(2), eval_only=True)
    inpaint_steps: int = field(30, check=at_least(1), eval_only=True)
    workdir: str = field("runs/dae_mnist", eval_only=True)


PRESETS = {
    "default": Config(),
    "tiny": Config(hidden="32", n_train=500, epochs=2, walkback=1, chain_steps=5, eval_size=100,
                   inpaint_size=50, inpaint_steps=5, progress=False, workdir="runs/dae_mnist_tiny"),
    # 2000 tanh units, salt-and-pepper 0.5, walk-back (Bengio et al. 2013, recalled: check)
    "paper": Config(source="auto", hidden="2000", level=0.5, walkback=4, epochs=200,
                    chain_steps=100, workdir="runs/dae_mnist_paper"),
}  # fmt: skip


def model(cfg: Config) -> dae.DAE:
    return dae.DAE(784, rd.sizes(cfg.hidden), cfg.output, cfg.n_components if cfg.output ==
                   "bernoulli_mixture" else 1, "salt_pepper", cfg.level,
                   nade_hidden=cfg.nade_hidden).check()  # fmt: skip


optimizer = lambda cfg, d: train.adam(cfg.learning_rate)
loss = lambda cfg, d: lambda p, x, key: dae.walkback_loss(key, model(cfg), p, x, cfg.walkback)
init = lambda cfg, d, key: dae.init_params(key, model(cfg), np.mean(d.binary["train"], 0))


@functools.partial(jax.jit, static_argnums=(1, 4, 5))
def _chain(key, m, p, x0, steps, keep, clamp):  # one compilation per (model, shape, steps)
    return dae.sample_chain(key, m, p, x0, steps, clamp=clamp, keep_every=keep)


def _inpaint(cfg, m, p, x, key):
    """(start, completed digits, E[x|x̃] of the last step) with the top half of ``x`` clamped."""
    k0, k1 = jax.random.split(key)
    top = np.broadcast_to(np.arange(784) < 392, x.shape)  # concrete: the NADE output checks it
    x0 = jnp.where(top, x, jax.random.bernoulli(k0, 0.5, x.shape).astype(jnp.float32))
    out = _chain(k1, m, p, x0, cfg.inpaint_steps, cfg.inpaint_steps, top)
    return x0, out.x[-1], out.mean[-1], top


def evaluate(cfg: Config, d, done, key) -> dict:
    m, p = model(cfg), done["train"].params
    k_rec, k_inp, k_end = jax.random.split(key, 3)
    x = jnp.asarray(d.binary["test"][: cfg.eval_size])
    nll = -np.asarray(jax.jit(lambda k: dae.recon_log_prob(m, p, x, dae.corrupt(k, m, x)))(k_rec))
    xi = jnp.asarray(d.binary["test"][: cfg.inpaint_size])
    x0, filled, _, top = _inpaint(cfg, m, p, xi, k_inp)
    miss = jax.jit(lambda z, k: dae.recon_log_prob(m, p, xi, dae.corrupt(k, m, z), ~top))
    n, labels = len(xi), d.labels["test"][: cfg.inpaint_size]
    probs = np.asarray(fnet.class_probs(np.asarray(jnp.concatenate([filled, xi, x0]))))
    acc = [float(np.mean(np.argmax(probs[i * n : (i + 1) * n], 1) == labels)) for i in range(3)]
    return {"test_recon_nll": float(nll.mean()),
            "test_recon_nll_stderr": float(nll.std(ddof=1) / np.sqrt(nll.size)),
            "inpaint_loglik_missing": float(jnp.mean(miss(filled, k_end))),
            "inpaint_loglik_missing_start": float(jnp.mean(miss(x0, k_end))),
            "inpaint_accuracy": acc[0], "inpaint_accuracy_full": acc[1],
            "inpaint_accuracy_start": acc[2], "n_train": len(d.train),
            "inpaint_protocol": f"top 14 rows of {cfg.inpaint_size} test digits clamped, bottom "
            f"half from coin flips, {cfg.inpaint_steps} chain steps; log-likelihood of the true "
            f"bottom half (392 pixels, nats) under P(x|x̃) of one more corruption"}  # fmt: skip


def sample(cfg: Config, d, done, key, n: int):
    """``n`` binary digits: DAE chains from coin flips after ``chain_steps`` steps."""
    k0, k1 = jax.random.split(key)
    x0 = jax.random.bernoulli(k0, 0.5, (n, 784)).astype(jnp.float32)
    out = _chain(k1, model(cfg), done["train"].params, x0, cfg.chain_steps, cfg.chain_steps,
                 jnp.zeros(x0.shape, bool))  # fmt: skip
    return np.asarray(out.x[-1])


def pictures(cfg: Config, d, done, key) -> dict:
    m, p = model(cfg), done["train"].params
    k0, k1, k2 = jax.random.split(key, 3)
    x0 = jax.random.bernoulli(k0, 0.5, (8, 784)).astype(jnp.float32)
    every = max(1, cfg.chain_steps // 10)
    chain = _chain(k1, m, p, x0, 10 * every, every, jnp.zeros(x0.shape, bool)).mean  # (10, 8, D)
    xi = jnp.asarray(d.binary["test"][: cfg.inpaint_size])  # the evaluation's compiled chain
    start, _, filled, _ = _inpaint(cfg, m, p, xi, k2)
    rows = np.stack([start, filled, xi], 1)[:8]
    return {"samples.png": (rd.digit_grid(np.swapaxes(np.asarray(chain), 0, 1), 10),
                            f"DAE chains (rows) every {every} steps: E[x|x̃]"),
            "inpainting.png": (rd.digit_grid(rows, 3),
                               "top half clamped: start, E[x|x̃] after the chain, the test digit")}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="dae_mnist", presets=PRESETS, evaluate=evaluate, pictures=pictures, sample=sample,
    load=lambda c: rd.load_mnist(c, n_train=c.n_train),
    phases=lambda c: [rd.loss_phase("train", init, loss, optimizer)],
    describe=lambda c: {
        "model": f"DAE 784-{c.hidden}-784 tanh, {c.output} P(x|x̃), salt-and-pepper {c.level}",
        "training": f"walk-back {c.walkback} extra steps; Adam lr {c.learning_rate}, batch "
        f"{c.batch_size}, {c.epochs} epochs",
        "evaluation": "one corruption per test digit; inpainting of the bottom half"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
