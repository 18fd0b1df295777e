"""DRAW with and without attention on binarized MNIST: bound on the test NLL, canvas sequences.

Setting of Gregor et al. (2015), MNIST: T = 64 glimpses, LSTMs of 256 units, 100 latents
per step, read 2x2 and write 5x5 attention.  Published bounds on the test negative
log-likelihood: <= 87.40 nats without attention, <= 80.97 with attention.  Optimiser (not
given in the paper; the choice of the authors' public reimplementations): Adam, lr 1e-3,
β1 = 0.5, global gradient-norm clipping at 5, batch 100.  ``--variants`` picks the runs, one
driver phase each; ``results.json`` holds ``<variant>_test_loglik`` (minus the bound) and
``<variant>_test_nll_bound``; ``<variant>_canvas.png``: test digits' canvases σ(c_t) at
evenly spaced t, then the digit; ``<variant>_samples.png``: generated canvas sequences.
``--epochs`` truncates (the paper gives no run length; a longer run resumes a shorter one).
Measured figures: BUILD_NOTES.md (issue 5); the paper's network costs about an hour per
epoch on a 2-core CPU.

    python experiments/draw_mnist.py                  # default: embedded subset, small net
    python experiments/draw_mnist.py --config tiny    # smoke test, seconds
    python experiments/draw_mnist.py --config paper_net_2_epochs --source idx --data_dir ../shared/data/mnist
    python experiments/draw_mnist.py --variants no_attention --sweep learning_rate=1e-3,3e-4
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, run, train
from egm.eval import directed as ev
from egm.models import draw
from egm.run import directed as rd
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range

VARIANTS = ("attention", "no_attention")


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    variants: str = field("attention,no_attention", eval_only=True, help="one phase each")
    n_steps: int = field(64, check=at_least(1), help="glimpses T")
    enc_size: int = field(256, check=at_least(1))
    dec_size: int = field(256, check=at_least(1))
    latent_dim: int = field(100, check=at_least(1), help="latents per step")
    read_n: int = field(2, check=at_least(1), help="read glimpse N x N (>= 2 with attention)")
    write_n: int = field(5, check=at_least(1), help="write patch N x N (>= 2 with attention)")
    batch_size: int = field(100, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    beta1: float = field(0.5, check=in_range(0, 1, closed_high=False), sweep=True)
    clip_norm: float = field(5.0, check=greater_than(0), help="global gradient-norm clip")
    epochs: int = field(20, check=at_least(1), eval_only=True, help="a longer run resumes")
    eval_every: int = field(5, check=at_least(1), eval_only=True)
    eval_size: int = field(1000, check=at_least(1), eval_only=True, help="valid digits monitored")
    test_size: int = field(0, check=at_least(0), eval_only=True, help="0: all test digits")
    n_show: int = field(8, check=at_least(1), eval_only=True)
    checkpoint_every: int = field(1, check=at_least(1), eval_only=True)
    workdir: str = field("runs/draw_mnist", eval_only=True)

    def check(self) -> None:
        super().check()
        for v in variants(self):
            model(self, v)  # DRAW's own checks (glimpse sizes)


PRESETS = {
    "default": Config(n_steps=16, enc_size=128, dec_size=128, latent_dim=20, epochs=10),
    "tiny": Config(n_steps=3, enc_size=16, dec_size=16, latent_dim=4, epochs=2, eval_every=1,
                   eval_size=100, test_size=100, n_show=4, progress=False,
                   workdir="runs/draw_mnist_tiny"),
    # the paper's network, 2 epochs (the paper does not give its run length; far more than 2)
    "paper_net_2_epochs": Config(source="auto", epochs=2, eval_every=1,
                                 workdir="runs/draw_mnist_paper_net_2_epochs"),
}  # fmt: skip


def variants(cfg: Config) -> list[str]:
    return rd.choices(cfg.variants, VARIANTS, "variants")


def model(cfg: Config, variant: str) -> draw.DRAW:
    return draw.DRAW(n_steps=cfg.n_steps, enc_size=cfg.enc_size, dec_size=cfg.dec_size,
                     latent_dim=cfg.latent_dim, attention=variant == "attention",
                     read_n=cfg.read_n, write_n=cfg.write_n).check()  # fmt: skip


def phase(variant: str) -> run.Phase:
    def monitor(cfg, d, params, key):
        x = d.binary["valid"][: cfg.eval_size]
        return {"valid_nll_bound": float(jnp.mean(draw.nll_bound(key, model(cfg, variant),
                                                                 params, x)))}  # fmt: skip

    loss = lambda cfg, d: draw.make_loss(model(cfg, variant),
                                         dynamic_binarization=cfg.binarization == "dynamic")  # fmt: skip
    return rd.loss_phase(variant, lambda cfg, d, key: draw.init_params(key, model(cfg, variant)),
                         loss, lambda cfg, d: train.adam(cfg.learning_rate, cfg.beta1,
                                                         grad_clip=cfg.clip_norm),
                         monitor=monitor)  # fmt: skip


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    x, out = d.binary["test"][: cfg.test_size or None], {}
    for i, v in enumerate(variants(cfg)):
        per = draw.nll_bound(jax.random.fold_in(key, i), model(cfg, v), done[v].params, x)
        rec = ev.bound_record(-np.asarray(per), "minus the negative ELBO L^x + Σ_t KL_t, one "
                              "draw of z_{1:T} per digit", **rd.record_fields(d))  # fmt: skip
        out[f"{v}_test_loglik"], out[f"{v}_test_nll_bound"] = rec, -rec.value
    return {**out, "epochs_trained": cfg.epochs, "n_train": len(d.train)}


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    x = jnp.asarray(d.binary["test"][: cfg.n_show])
    cols = np.unique(np.linspace(0, cfg.n_steps - 1, min(10, cfg.n_steps)).astype(int))
    title, out = f"canvases at t={[int(c) + 1 for c in cols]}", {}
    for v in variants(cfg):
        m, p = model(cfg, v), done[v].params
        canv = np.asarray(draw.canvases(key, m, p, x))[:, cols]
        seq = np.concatenate([canv, np.asarray(x)[:, None]], 1)
        gen = np.asarray(draw.generate(key, m, p, cfg.n_show))[:, cols]
        out[f"{v}_canvas.png"] = (rd.digit_grid(seq, len(cols) + 1), f"DRAW {v}: {title}, digit")
        out[f"{v}_samples.png"] = (rd.digit_grid(gen, len(cols)), f"DRAW {v}: {title} (generated)")
    return out


def sample(cfg: Config, d: data.BinarizedMNIST, done, key, n: int) -> dict:
    """``n`` binary digits of each variant: ``z_{1:T} ~ N(0, I)``, ``x ~ Bernoulli(σ(c_T))``."""
    return rd.per_model(variants(cfg), key,
                        lambda v, k: draw.sample(k, model(cfg, v), done[v].params, n))  # fmt: skip


EXPERIMENT = run.Experiment(
    name="draw_mnist",
    published=lambda c: {f"{v}_test_loglik": f"draw_{v}" for v in variants(c)},
    presets=PRESETS,
    load=rd.load_mnist,
    phases=lambda cfg: [phase(v) for v in variants(cfg)],
    evaluate=evaluate,
    pictures=pictures,
    sample=sample,
    describe=lambda c: {
        "model": f"DRAW ({c.variants}): T={c.n_steps}, LSTM {c.enc_size}/{c.dec_size}, "
        f"{c.latent_dim} latents per step, read {c.read_n}x{c.read_n}, write {c.write_n}x{c.write_n}",
        "evaluation": "test_nll_bound: the negative ELBO, one draw of z_{1:T} per test digit",
    },
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate}, beta1={c.beta1})",
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
