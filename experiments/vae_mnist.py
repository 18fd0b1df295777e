"""VAE and IWAE on dynamically binarized MNIST, importance-sampled test log-likelihood (§20.10.3).

Setting of Burda et al. (2016), one stochastic layer: encoder 784-200-200-(50 + 50), decoder
mirrored, tanh, Bernoulli output; Adam (β1 0.9, β2 0.999, ε 1e-4), batch 20, 8 stages of
``3^i`` epochs at ``1e-3 · 10^(-i/7)`` (3280 epochs); each minibatch a fresh Bernoulli(grey)
draw.  Published (k = 5000): VAE -86.76, IWAE k=50 -84.78.  ``--models``: ``vae<k>`` (ELBO
from k draws) / ``iwae<k>`` (L_k), a driver phase each; ``--max_epochs`` truncates the
schedule (a longer run resumes).  ``--decoder_ais_temps K``: decoder AIS (Wu et al. 2017)
and IS on the same ``--decoder_ais_size`` digits; ``--bdmc_examples M``: the BDMC gap on M
simulated digits.  Measured figures: BUILD_NOTES.md (issues 5 and 12).

    python experiments/vae_mnist.py                     # default: embedded subset, ~1-2 min
    python experiments/vae_mnist.py --config tiny       # smoke test, seconds
    python experiments/vae_mnist.py --config paper_first_3_epochs --source idx --data_dir ../shared/data/mnist
    python experiments/vae_mnist.py --models vae1 --sweep seed=0:4
    python experiments/vae_mnist.py --models vae1 --max_epochs 100 --is_samples 5000 \
        --decoder_ais_temps 1000 --bdmc_examples 50 --workdir runs/vae_ais_vs_is
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from egm import data, run, train
from egm.errors import ConfigError
from egm.eval import directed as ev
from egm.models import vae
from egm.run import directed as rd
from egm.run.config import MNISTFields, at_least, field, greater_than, one_of


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields, rd.ImportanceFields, rd.DecoderAISFields):
    binarization: str = field("dynamic", check=one_of("dynamic", "fixed", "threshold"))
    train_split: str = field("train", check=one_of("train", "train_full"), help="train_full: 60k")
    models: str = field("vae1,iwae5,iwae50", eval_only=True, help="vae<k>/iwae<k>, a phase each")
    hidden: str = field("200,200", help="comma-separated widths of the deterministic layers")
    latent_dim: int = field(50, check=at_least(1))
    activation: str = field("tanh", check=one_of("tanh", "relu", "softplus", "elu"))
    architecture: str = field("mlp", check=one_of(*vae.ARCHITECTURES))
    batch_size: int = field(20, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    adam_eps: float = field(1e-4, check=greater_than(0), sweep=True)
    stages: int = field(8, check=at_least(1), help="stage i: 3**i epochs at lr * 10**(-i/7)")
    max_epochs: int = field(10, check=at_least(0), eval_only=True, help="0: the whole schedule")
    eval_every: int = field(5, check=at_least(1), eval_only=True)
    eval_size: int = field(1000, check=at_least(1), eval_only=True, help="valid digits monitored")
    is_samples: int = field(5000, check=at_least(1), eval_only=True, help="IS draws per digit")
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    checkpoint_every: int = field(1, check=at_least(1), eval_only=True)
    workdir: str = field("runs/vae_mnist", eval_only=True)

    def check(self) -> None:
        super().check()
        rd.DecoderAISFields.check(self)
        vae.parse_models(self.models)
        vae.parse_hidden(self.hidden)
        if self.train_split == "train_full" and self.binarization != "dynamic":
            raise ConfigError("--train_split train_full needs --binarization dynamic")


PAPER = dict(source="auto", train_split="train_full")
PRESETS = {
    "default": Config(max_epochs=10, is_samples=1000, batch_size=100),
    "tiny": Config(models="vae1,iwae3", hidden="32", latent_dim=4, batch_size=100, stages=2,
                   max_epochs=2, eval_every=1, eval_size=100, is_samples=64, is_test_size=50,
                   is_chunk=32, n_samples=16, progress=False, workdir="runs/vae_mnist_tiny"),
    # the paper's architecture, optimiser and whole schedule (3280 epochs: an accelerator's job)
    "paper": Config(**PAPER, max_epochs=3280, eval_every=20, workdir="runs/vae_mnist_paper"),
    # the same, truncated to the schedule's first 3 of 3280 epochs (fits a 2-core CPU)
    "paper_first_3_epochs": Config(**PAPER, max_epochs=3, eval_every=1,
                                   workdir="runs/vae_mnist_paper_first_3_epochs"),
}  # fmt: skip


def model(cfg: Config) -> vae.VAE:
    return vae.VAE(x_dim=784, latent_dim=cfg.latent_dim, hidden=vae.parse_hidden(cfg.hidden),
                   activation=cfg.activation, architecture=cfg.architecture).check()  # fmt: skip


def optimizer(cfg: Config, d: data.BinarizedMNIST):
    mult, _ = vae.burda_lr_multiplier(cfg.stages, len(d.train) // cfg.batch_size)
    return train.adam(cfg.learning_rate, 0.9, 0.999, cfg.adam_eps, lr_multiplier=mult)


def epochs(cfg: Config) -> int:
    total = vae.burda_lr_multiplier(cfg.stages, 1)[1]
    return total if cfg.max_epochs == 0 else min(cfg.max_epochs, total)


def phase(name: str, objective: str, k: int) -> run.Phase:
    def monitor(cfg, d, params, key):
        v = d.binary["valid"][: cfg.eval_size]
        return {f"valid_L{k}": float(jnp.mean(vae.bound_on_data(key, model(cfg), params, v, k)))}

    loss = lambda cfg, d: vae.make_loss(model(cfg), objective, k,
                                        dynamic_binarization=cfg.binarization == "dynamic")  # fmt: skip
    return rd.loss_phase(name, lambda cfg, d, key: vae.init_params(key, model(cfg)), loss,
                         optimizer, epochs=epochs, monitor=monitor)  # fmt: skip


def names(cfg: Config) -> list[str]:
    return [n for n, _, _ in vae.parse_models(cfg.models)]


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    out = {}
    for i, name in enumerate(names(cfg)):
        out |= ev.vae_report(jax.random.fold_in(key, i), model(cfg), done[name].params,
                             d.binary["test"], name, is_samples=cfg.is_samples,
                             is_test_size=cfg.is_test_size, is_chunk=cfg.is_chunk,
                             decoder_ais=cfg.decoder_ais(), **rd.record_fields(d))  # fmt: skip
    return {**out, "epochs_trained": epochs(cfg), "n_train": len(d.train),
            "schedule_epochs": vae.burda_lr_multiplier(cfg.stages, 1)[1]}  # fmt: skip


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    draw = lambda n, k: rd.vae_pictures(k, model(cfg), done[n].params, n, cfg.n_samples,
                                        d.binary["test"][:32])  # fmt: skip
    return {k: v for pics in rd.per_model(names(cfg), key, draw).values() for k, v in pics.items()}


def sample(cfg: Config, d: data.BinarizedMNIST, done, key, n: int) -> dict:
    """``n`` binary digits of each model: ``z ~ N(0, I)``, ``x ~ Bernoulli(E[x|z])``."""
    draw = lambda name, k: vae.generate(k, model(cfg), done[name].params, n, mean=False)
    return rd.per_model(names(cfg), key, draw)


EXPERIMENT = run.Experiment(
    name="vae_mnist",
    published=lambda c: {f"{m}_test_loglik": {"vae1": "vae_1layer", "iwae50": "iwae_k50_1layer"}[m]
                         for m in names(c) if m in ("vae1", "iwae50")},
    presets=PRESETS,
    load=lambda c: rd.load_mnist(c, c.train_split),
    phases=lambda cfg: [phase(*m) for m in vae.parse_models(cfg.models)],
    evaluate=evaluate,
    pictures=pictures,
    sample=sample,
    describe=lambda c: {"model": f"VAE 784-{c.hidden}-{c.latent_dim} {c.activation}, {c.models}",
                        "evaluation": f"IS k={c.is_samples}; test_elbo: analytic KL, one draw; "
                        "test_L50: IWAE bound k=50"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
