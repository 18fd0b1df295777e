"""VAE and IWAE on dynamically binarized MNIST, importance-sampled test log-likelihood.

Setting of Burda et al. (2016), one stochastic layer: encoder 784-200-200-(50 + 50) and
decoder 50-200-200-784, tanh, Bernoulli output; Adam (β1 0.9, β2 0.999, ε 1e-4), batch 20,
and the schedule of 8 stages, stage ``i`` lasting ``3^i`` epochs at learning rate
``1e-3 · 10^(-i/7)`` (3280 epochs in all).  Dynamic binarization: every minibatch is a
fresh Bernoulli(grey) draw.  Published test log-likelihoods (k = 5000 importance samples):
VAE -86.76 (k=1), IWAE -84.78 (k=50); IWAE k=5 about -85.5 (recalled, check the paper).

    python experiments/vae_mnist.py                     # default: embedded subset, ~1-2 min
    python experiments/vae_mnist.py --config tiny       # smoke test, seconds
    python experiments/vae_mnist.py --config paper_first_3_epochs --source idx --data_dir ../shared/data/mnist
    python experiments/vae_mnist.py --models vae1 --sweep seed=0:4

``--models vae1,iwae5,iwae50`` chooses the runs: ``vae<k>`` maximises the ELBO estimated
with ``k`` draws (analytic KL), ``iwae<k>`` the bound ``L_k``.  Each model is one training
phase of the run driver (``checkpoints/<name>/``, metrics lines tagged with the phase; a
killed run resumes), and ``results.json`` holds every model's records (``<name>_test_loglik``)
and figures; ``<name>_samples.png`` and ``<name>_reconstructions.png`` show them.
``--max_epochs N`` truncates the schedule (the full 3280 epochs take days on a CPU; a longer
run resumes a shorter one); results say how far each model got (``epochs_trained``).

Full config on the shared 2-core CPU (BUILD_NOTES.md; load average 14-18 from other jobs):
the schedule truncated to its first 3 epochs (60k digits, batch 20), IS with k = 5000 on the
first 1000 test digits: VAE -108.30 ± 0.96, IWAE k=5 -104.08 ± 0.92, IWAE k=50 -101.93 ± 0.89
nats (ordering as published); 8 / 29 / 320 s per epoch, ~5 min of IS per model, 37 min in
all.  Reproducing the paper needs the whole 3280-epoch schedule (an accelerator: at 320 s per
epoch IWAE k=50 would take ~12 days on this CPU).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from egm import data, estimators, eval, run, train
from egm.errors import ConfigError
from egm.models import vae
from egm.run.config import MNISTFields, at_least, field, greater_than, one_of


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    binarization: str = field("dynamic", check=one_of("dynamic", "fixed", "threshold"))
    train_split: str = field(
        "train", check=one_of("train", "train_full"), help="train_full: 60k, as Burda et al."
    )
    models: str = field("vae1,iwae5,iwae50", eval_only=True, help="vae<k>/iwae<k>, a phase each")
    hidden: str = field("200,200", help="comma-separated widths of the deterministic layers")
    latent_dim: int = field(50, check=at_least(1))
    activation: str = field("tanh", check=one_of("tanh", "relu", "softplus", "elu"))
    architecture: str = field("mlp", check=one_of(*vae.ARCHITECTURES))
    batch_size: int = field(20, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    adam_eps: float = field(1e-4, check=greater_than(0), sweep=True)
    stages: int = field(8, check=at_least(1), help="stage i: 3**i epochs at lr * 10**(-i/7)")
    max_epochs: int = field(10, check=at_least(0), eval_only=True,
                            help="0: the whole schedule; else truncate it")  # fmt: skip
    eval_every: int = field(5, check=at_least(1), eval_only=True)
    eval_size: int = field(1000, check=at_least(1), eval_only=True, help="valid digits monitored")
    is_samples: int = field(5000, check=at_least(1), eval_only=True, help="IS draws per digit")
    is_test_size: int = field(1000, check=at_least(0), eval_only=True, help="0: all test digits")
    is_chunk: int = field(500, check=at_least(1), eval_only=True)
    decoder_ais_temps: int = field(
        0,
        check=at_least(0),
        eval_only=True,
        help="AIS through the decoder (Wu et al. 2017); 0: off",
    )
    decoder_ais_chains: int = field(8, check=at_least(1), eval_only=True)
    decoder_ais_size: int = field(100, check=at_least(1), eval_only=True, help="test digits")
    n_samples: int = field(64, check=at_least(1), eval_only=True)
    checkpoint_every: int = field(1, check=at_least(1), eval_only=True)
    workdir: str = field("runs/vae_mnist", eval_only=True)

    def check(self) -> None:
        super().check()
        vae.parse_models(self.models)
        vae.parse_hidden(self.hidden)
        if self.train_split == "train_full" and self.binarization != "dynamic":
            raise ConfigError("--train_split train_full needs --binarization dynamic")


PRESETS = {
    "default": Config(max_epochs=10, is_samples=1000, batch_size=100),
    "tiny": Config(
        models="vae1,iwae3",
        hidden="32",
        latent_dim=4,
        batch_size=100,
        stages=2,
        max_epochs=2,
        eval_every=1,
        eval_size=100,
        is_samples=64,
        is_test_size=50,
        is_chunk=32,
        n_samples=16,
        progress=False,
        workdir="runs/vae_mnist_tiny",
    ),  # fmt: skip
    # the paper's architecture, optimiser and whole schedule (3280 epochs: an accelerator's job)
    "paper": Config(
        source="auto",
        train_split="train_full",
        max_epochs=3280,
        eval_every=20,
        workdir="runs/vae_mnist_paper",
    ),  # fmt: skip
    # the same, truncated to the schedule's first 3 of 3280 epochs (fits a 2-core CPU)
    "paper_first_3_epochs": Config(
        source="auto",
        train_split="train_full",
        max_epochs=3,
        eval_every=1,
        workdir="runs/vae_mnist_paper_first_3_epochs",
    ),  # fmt: skip
}


def load(cfg: Config) -> data.BinarizedMNIST:
    d = data.load_binarized_mnist(cfg.binarization, cfg.binarization_seed, source=cfg.source,
                                  data_dir=cfg.data_dir)  # fmt: skip
    if cfg.train_split == "train_full":  # grey, re-drawn in every step
        full = data.load_mnist("train_full", source=cfg.source, data_dir=cfg.data_dir)
        d = d._replace(train=np.asarray(full.x, np.float32))
    return d._replace(protocol=f"{d.protocol} (training digits: {cfg.train_split})")


def model(cfg: Config) -> vae.VAE:
    return vae.VAE(x_dim=784, latent_dim=cfg.latent_dim, hidden=vae.parse_hidden(cfg.hidden),
                   activation=cfg.activation, architecture=cfg.architecture).check()  # fmt: skip


def optimizer(cfg: Config, n_train: int):
    mult, _ = vae.burda_lr_multiplier(cfg.stages, n_train // cfg.batch_size)
    return train.adam(cfg.learning_rate, 0.9, 0.999, cfg.adam_eps, lr_multiplier=mult)


def epochs(cfg: Config) -> int:
    total = vae.burda_lr_multiplier(cfg.stages, 1)[1]
    return total if cfg.max_epochs == 0 else min(cfg.max_epochs, total)


def data_check(cfg: Config, x) -> None:
    data.check_unit_interval(x, "training data")  # grey levels or binary


def phase(name: str, objective: str, k: int) -> run.Phase:
    def init(cfg, d, key, done):
        return train.init_state(vae.init_params(key, model(cfg)), optimizer(cfg, len(d.train)))

    def step(cfg, d, done):
        loss = vae.make_loss(model(cfg), objective, k,
                             dynamic_binarization=cfg.binarization == "dynamic")  # fmt: skip
        return train.make_step(train.loss_objective(loss, has_aux=True),
                               optimizer(cfg, len(d.train)))  # fmt: skip

    def monitor(cfg, d, state, key, epoch):
        if (epoch + 1) % cfg.eval_every and epoch != epochs(cfg) - 1:
            return {}
        v = d.binary["valid"][: cfg.eval_size]
        return {
            f"valid_L{k}": float(jnp.mean(vae.bound_on_data(key, model(cfg), state.params, v, k)))
        }

    return run.Phase(name, init, step, epochs=epochs, data_check=data_check, monitor=monitor)


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    m, x = model(cfg), d.binary["test"]
    out = {}
    for i, (name, _, _) in enumerate(vae.parse_models(cfg.models)):
        p, (k1, k2, k3) = done[name].params, jax.random.split(jax.random.fold_in(key, i), 3)
        out[f"{name}_test_loglik"] = eval.importance_sampled_log_likelihood(
            k3, Partial(vae.log_weights_fn(m), p), x[: cfg.is_test_size or None], cfg.is_samples,
            chunk_size=min(cfg.is_chunk, cfg.is_samples), dataset=d.source, split="test",
            protocol=d.protocol,
        )  # fmt: skip
        out[f"{name}_test_elbo"] = float(jnp.mean(vae.elbo_on_data(k1, m, p, x)))
        out[f"{name}_test_L50"] = float(jnp.mean(vae.bound_on_data(k2, m, p, x, 50)))
        out[f"{name}_active_units"] = vae.active_units(m, p, x)  # Burda et al.'s criterion
        if cfg.decoder_ais_temps:  # AIS through the decoder alone (Wu et al. 2017)
            out[f"{name}_test_loglik_decoder_ais"] = eval.vae_decoder_log_likelihood(
                jax.random.fold_in(k3, 1), m, p, x[: cfg.decoder_ais_size],
                n_chains=cfg.decoder_ais_chains,
                betas=estimators.betas_sigmoid(cfg.decoder_ais_temps),
                dataset=d.source, split="test", protocol=d.protocol,
            )  # fmt: skip
    return {**out, "epochs_trained": epochs(cfg), "n_train": len(d.train),
            "schedule_epochs": vae.burda_lr_multiplier(cfg.stages, 1)[1]}  # fmt: skip


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    m, x = model(cfg), d.binary["test"][:32]
    tile = lambda a, **kw: eval.tile_images(np.asarray(a).reshape(-1, 784), (28, 28), **kw)
    out = {}
    for name, _, _ in vae.parse_models(cfg.models):
        p = done[name].params
        gen = vae.generate(jax.random.fold_in(key, len(out)), m, p, cfg.n_samples)
        pairs = np.stack([x, np.asarray(vae.reconstruct(m, p, jnp.asarray(x)))], 1)
        out[f"{name}_samples.png"] = (tile(gen), f"{name}: E[x|z], z ~ N(0, I)")
        out[f"{name}_reconstructions.png"] = (tile(pairs, n_cols=8), f"{name}: digit, recon.")
    return out


def sample(cfg: Config, d: data.BinarizedMNIST, done, key, n: int) -> dict:
    """``n`` binary digits of each model: x ~ Bernoulli(E[x|z]), z ~ N(0, I)."""
    out = {}
    for i, (name, _, _) in enumerate(vae.parse_models(cfg.models)):
        k_z, k_x = jax.random.split(jax.random.fold_in(key, i))
        mean = vae.generate(k_z, model(cfg), done[name].params, n).reshape(n, 784)
        out[name] = jax.random.bernoulli(k_x, mean).astype(jnp.float32)
    return out


def describe(cfg: Config) -> dict:
    kinds = {"elbo": "ELBO (analytic KL)", "iwae": "IWAE L_k"}
    runs = ", ".join(f"{n}: {kinds[o]}, k={k}" for n, o, k in vae.parse_models(cfg.models))
    return {
        "model": f"VAE 784-{cfg.hidden}-{cfg.latent_dim} {cfg.activation} ({cfg.architecture}), "
        f"Bernoulli output; {runs}",
        "training": f"Adam (b1 0.9, b2 0.999, eps {cfg.adam_eps}), batch {cfg.batch_size}, "
        f"schedule of {cfg.stages} stages (3^i epochs, lr {cfg.learning_rate}·10^(-i/7)) = "
        f"{vae.burda_lr_multiplier(cfg.stages, 1)[1]} epochs, truncated to {epochs(cfg)}",
        "evaluation": f"IS log-likelihood: log (1/k) Σ p(x, z_i)/q(z_i|x), k={cfg.is_samples} "
        f"draws of q per digit, first {cfg.is_test_size or 'all'} test digits; <name>_test_elbo: "
        f"analytic-KL ELBO, one draw per digit, all test digits; <name>_test_L50: IWAE bound k=50",
    }  # fmt: skip


EXPERIMENT = run.Experiment(
    name="vae_mnist",
    published=lambda c: {
        f"{m}_test_loglik": {"vae1": "vae_1layer", "iwae50": "iwae_k50_1layer"}[m]
        for m in c.models.split(",")
        if m in ("vae1", "iwae50")
    },
    presets=PRESETS,
    load=load,
    phases=lambda cfg: [phase(*m) for m in vae.parse_models(cfg.models)],
    evaluate=evaluate,
    pictures=pictures,
    sample=sample,
    describe=describe,
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
