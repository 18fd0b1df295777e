"""DRAW with and without attention on binarized MNIST: bound on the test NLL, canvas sequences.

Setting of Gregor et al. (2015), MNIST: T = 64 glimpses, LSTMs of 256 units, 100 latents
per step, read 2x2 and write 5x5 attention.  Published bounds on the test negative
log-likelihood: <= 87.40 nats without attention, <= 80.97 with attention.  Optimiser (not
given in the paper; the choice of the authors' public reimplementations): Adam, lr 1e-3,
β1 = 0.5, global gradient-norm clipping at 5, batch 100.

    python experiments/draw_mnist.py                  # default: embedded subset, small net
    python experiments/draw_mnist.py --config tiny    # smoke test, seconds
    python experiments/draw_mnist.py --config paper_net_2_epochs --source idx --data_dir ../shared/data/mnist
    python experiments/draw_mnist.py --variants no_attention --sweep learning_rate=1e-3,3e-4

``--variants attention,no_attention`` picks the runs; each is one training phase of the run
driver (``checkpoints/<variant>/``, metrics lines tagged with the phase), and
``results.json`` holds each variant's record ``<variant>_test_loglik`` (the negative of the
bound) and ``<variant>_test_nll_bound``; ``<variant>_canvas.png``: rows are test digits,
columns canvases σ(c_t) at evenly spaced t, then the digit; ``<variant>_samples.png``:
generated canvas sequences.  The paper's runs are far beyond a 2-core CPU: ``--epochs``
truncates them (a longer run resumes a shorter one) and results say how far they got.

Measured (BUILD_NOTES.md): the *default* network (T = 16, 128-unit LSTMs, 20 latents) for 7
epochs on the 50k training digits, fixed binarization, on the shared 2-core CPU: test NLL bound
139.84 ± 0.41 (attention) and 102.77 ± 0.29 (no attention) nats, 40 / 61 s per epoch.  The
paper's network (``--config paper_net_2_epochs``, 2 epochs) costs ~16x more per epoch (T = 64,
256 units): about an hour per epoch on this CPU, so it needs an accelerator.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import data, eval, run, train
from egm.errors import ConfigError
from egm.models import draw
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
        for v in parse_variants(self.variants):
            model(self, v)  # DRAW's own checks (glimpse sizes)


PRESETS = {
    "default": Config(n_steps=16, enc_size=128, dec_size=128, latent_dim=20, epochs=10),
    "tiny": Config(
        n_steps=3,
        enc_size=16,
        dec_size=16,
        latent_dim=4,
        epochs=2,
        eval_every=1,
        eval_size=100,
        test_size=100,
        n_show=4,
        progress=False,
        workdir="runs/draw_mnist_tiny",
    ),
    # the paper's network, 2 epochs (the paper does not give its run length; far more than 2)
    "paper_net_2_epochs": Config(
        source="auto", epochs=2, eval_every=1, workdir="runs/draw_mnist_paper_net_2_epochs"
    ),
}


def parse_variants(spec: str) -> list[str]:
    out = [s.strip() for s in spec.split(",") if s.strip()]
    if not out or any(v not in VARIANTS for v in out) or len(set(out)) < len(out):
        raise ConfigError(f"--variants must be a comma list of distinct {VARIANTS}, got {spec!r}")
    return out


def load(cfg: Config) -> data.BinarizedMNIST:
    return data.load_binarized_mnist(
        cfg.binarization, cfg.binarization_seed, source=cfg.source, data_dir=cfg.data_dir
    )


def model(cfg: Config, variant: str) -> draw.DRAW:
    return draw.DRAW(n_steps=cfg.n_steps, enc_size=cfg.enc_size, dec_size=cfg.dec_size,
                     latent_dim=cfg.latent_dim, attention=variant == "attention",
                     read_n=cfg.read_n, write_n=cfg.write_n).check()  # fmt: skip


def optimizer(cfg: Config):
    return train.adam(cfg.learning_rate, cfg.beta1, grad_clip=cfg.clip_norm)


def data_check(cfg: Config, x) -> None:
    data.check_unit_interval(x, "training data")  # binary, or grey under dynamic binarization


def phase(variant: str) -> run.Phase:
    def init(cfg, d, key, done):
        return train.init_state(draw.init_params(key, model(cfg, variant)), optimizer(cfg))

    def step(cfg, d, done):
        dyn = cfg.binarization == "dynamic"
        loss = draw.make_loss(model(cfg, variant), dynamic_binarization=dyn)
        return train.make_step(train.loss_objective(loss, has_aux=True), optimizer(cfg))

    def monitor(cfg, d, state, key, epoch):
        if (epoch + 1) % cfg.eval_every and epoch != cfg.epochs - 1:
            return {}
        per = draw.nll_bound(
            key, model(cfg, variant), state.params, d.binary["valid"][: cfg.eval_size]
        )
        return {"valid_nll_bound": float(jnp.mean(per))}

    return run.Phase(variant, init, step, data_check=data_check, monitor=monitor)


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    x = d.binary["test"][: cfg.test_size or None]
    out = {}
    for i, v in enumerate(parse_variants(cfg.variants)):
        per = draw.nll_bound(jax.random.fold_in(key, i), model(cfg, v), done[v].params, x)
        rec = eval.LogLikelihood.from_per_example(
            -np.asarray(per), "variational_bound", bound="lower", counts={"samples": 1},
            dataset=d.source, split="test", protocol=d.protocol,
            notes="minus the negative ELBO L^x + Σ_t KL_t, one draw of z_{1:T} per digit",
        )  # fmt: skip
        out[f"{v}_test_loglik"], out[f"{v}_test_nll_bound"] = rec, -rec.value
    return {**out, "epochs_trained": cfg.epochs, "n_train": len(d.train)}


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    x = jnp.asarray(d.binary["test"][: cfg.n_show])
    cols = np.unique(np.linspace(0, cfg.n_steps - 1, min(10, cfg.n_steps)).astype(int))
    ts = [int(c) + 1 for c in cols]
    tile = lambda a, n: eval.tile_images(a, (28, 28), n_cols=n)
    out = {}
    for v in parse_variants(cfg.variants):
        m, p = model(cfg, v), done[v].params
        canv = np.asarray(draw.canvases(key, m, p, x))[:, cols]
        seq = np.concatenate([canv, np.asarray(x)[:, None]], 1).reshape(-1, 784)
        gen = np.asarray(draw.generate(key, m, p, cfg.n_show))[:, cols].reshape(-1, 784)
        title = f"DRAW {v}: canvases at t={ts}"
        out[f"{v}_canvas.png"] = (tile(seq, len(cols) + 1), f"{title}, then the digit")
        out[f"{v}_samples.png"] = (tile(gen, len(cols)), f"{title} (generated)")
    return out


def describe(cfg: Config) -> dict:
    return {
        "model": f"DRAW ({cfg.variants}): T={cfg.n_steps}, LSTM {cfg.enc_size}/{cfg.dec_size}, "
        f"{cfg.latent_dim} latents per step, read {cfg.read_n}x{cfg.read_n}, write "
        f"{cfg.write_n}x{cfg.write_n}",
        "training": f"Adam lr {cfg.learning_rate}, b1 {cfg.beta1}, clip {cfg.clip_norm}, batch "
        f"{cfg.batch_size}, {cfg.epochs} epochs",
        "evaluation": "test_nll_bound: negative ELBO L^x + Σ_t KL_t with one draw of z_{1:T} per "
        "test digit (the paper's 'bound on the test NLL'); test_loglik: its negative as a record",
    }


EXPERIMENT = run.Experiment(
    name="draw_mnist",
    published=lambda c: {f"{v}_test_loglik": f"draw_{v}" for v in parse_variants(c.variants)},
    presets=PRESETS,
    load=load,
    phases=lambda cfg: [phase(v) for v in parse_variants(cfg.variants)],
    evaluate=evaluate,
    pictures=pictures,
    describe=describe,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate}, beta1={c.beta1})",
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
