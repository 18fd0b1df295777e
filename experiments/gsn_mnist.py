"""A generative stochastic network with latent state on binarized MNIST (§20.12).

The GSN of egm.models.gsn (Bengio et al. 2014): salt-and-pepper x, tanh layers with Gaussian
pre- / post-activation noise ``sigma`` / ``post_sigma`` (none on h¹: ``noiseless_h1``) updated
in the ``update`` order, tied Bernoulli ``p(x | h¹)``, walk-back over ``walkback`` transitions
(0: 2L), Adam.  Results: the consistent lower bound ``test_csl_loglik`` (Bengio, Yao & Cho
2013); ``--score_samples N``: Parzen and Fréchet distance of the chain's p(x|h) on the grey
digits, the published 214 ± 1.1's protocol (``--score_on binary``: draws on binarized digits);
``--discriminative true``: the discriminative GSN (§20.12.1) and a same-size MLP's test errors.

    python experiments/gsn_mnist.py                     # default: embedded subset, ~1 min CPU
    python experiments/gsn_mnist.py --config tiny       # smoke test, seconds
    python experiments/gsn_mnist.py --score_samples 1000 --discriminative true   # ~3 min CPU
    python experiments/gsn_mnist.py --config paper --source idx --data_dir ../shared/data/mnist
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from egm import eval, run, train
from egm.models import gsn, mlp
from egm.run import directed as rd
from egm.run.config import MNISTFields, at_least, field, greater_than, in_range, one_of


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    hidden: str = field("500,500", check=rd.sizes_ok, help="tanh widths, bottom first")
    level: float = field(0.4, check=in_range(0, 1), help="salt-and-pepper probability on x")
    sigma: float = field(2.0, check=at_least(0), help="sd of the hidden pre-activation noise")
    walkback: int = field(0, check=at_least(0), help="unrolled transitions (0: 2 x layers)")
    update: str = field("gauss_seidel", check=one_of(*gsn.UPDATES), help="layer order (gsn)")
    post_sigma: float = field(0.0, check=at_least(0), help="sd of the post-activation noise")
    noiseless_h1: bool = field(False, help="no noise on h1 (the authors' recipe)")
    discriminative: bool = field(False, help="also train the p(y|x) GSN and report test error")
    disc_level: float = field(0.1, check=in_range(0, 1), help="its salt-and-pepper level on x")
    disc_sigma: float = field(0.5, check=at_least(0), help="its hidden noise sd")
    disc_epochs: int = field(20, check=at_least(1), help="its epochs (and the MLP baseline's)")
    disc_learning_rate: float = field(1e-3, check=greater_than(0))
    n_train: int = field(0, check=at_least(0), help="first n training digits (0: all)")
    epochs: int = field(10, check=at_least(1))
    batch_size: int = field(100, check=at_least(1))
    learning_rate: float = field(3e-4, check=greater_than(0), sweep=True)
    chain_steps: int = field(30, check=at_least(1), eval_only=True, help="burn-in of samples")
    score_on: str = field("grey", check=one_of("grey", "binary"), eval_only=True)
    csl_chains: int = field(10, check=at_least(1), eval_only=True)
    csl_steps: int = field(1000, check=at_least(1), eval_only=True, help="states per CSL chain")
    csl_test_size: int = field(1000, check=at_least(2), eval_only=True)
    classify_steps: int = field(10, check=at_least(1), eval_only=True)
    workdir: str = field("runs/gsn_mnist", eval_only=True)


PRESETS = {
    "default": Config(),
    "tiny": Config(hidden="32", n_train=500, epochs=2, walkback=2, chain_steps=5, csl_chains=2,
                   csl_steps=20, csl_test_size=50, classify_steps=2, disc_epochs=2, workdir="runs/gsn_mnist_tiny"),
    # the authors' MNIST script (yaoli/GSN run_dsn.py, checked; Adam here, not their SGD)
    "paper": Config(source="auto", hidden="1500,1500", post_sigma=2.0, noiseless_h1=True, walkback=4,
                    epochs=1000, chain_steps=100, csl_steps=10000, csl_test_size=10000, workdir="runs/gsn_mnist_paper"),
}  # fmt: skip


def model(cfg: Config, k: int = 0) -> gsn.GSN:
    noise = (cfg.disc_level, cfg.disc_sigma, 0.0, False) if k else (cfg.level, cfg.sigma, cfg.post_sigma, cfg.noiseless_h1)  # fmt: skip
    return gsn.GSN(784, rd.sizes(cfg.hidden), *noise[:2], k, cfg.update, *noise[2:]).check()


steps = lambda cfg: cfg.walkback or 2 * len(rd.sizes(cfg.hidden))  # noqa: E731  (walk-back)
baseline = lambda cfg: mlp.MLP(rd.sizes(cfg.hidden), 10)  # noqa: E731


def phase(name: str, k: int) -> run.Phase:
    """The GSN (k = 0), the discriminative GSN (k = 10) or the MLP baseline (k = -1)."""
    lr = lambda cfg: cfg.disc_learning_rate if k else cfg.learning_rate  # noqa: E731

    def init(cfg, d, key, done):
        p = baseline(cfg).init(key, d.train[:1])["params"] if k < 0 else gsn.init_params(
            key, model(cfg, k), np.mean(d.binary["train"], 0))  # fmt: skip
        return train.init_state(p, train.adam(lr(cfg)))

    def step(cfg, d, done):
        m, n, f = model(cfg, max(k, 0)), steps(cfg), baseline(cfg).apply
        wb = lambda p, b, key: gsn.walkback_loss(key, m, p, *((b[0], n, b[1]) if k else (b, n)))  # noqa: E731
        obj = train.classifier_objective(lambda p, x: f({"params": p}, x)) if k < 0 else \
            train.loss_objective(wb, has_aux=True)  # fmt: skip
        return train.make_step(obj, train.adam(lr(cfg)))

    data = (lambda cfg, d, done: (d.train, d.labels["train"][: len(d.train)])) if k else \
        (lambda cfg, d, done: d.train)  # fmt: skip
    return run.Phase(name, init, step, train_data=data, epochs=lambda c: c.disc_epochs if k
                     else c.epochs, data_check=None if k else rd.unit_interval_data)  # fmt: skip


def evaluate(cfg: Config, d, done, key) -> dict:
    m, p, x = model(cfg), done["gsn"].params, d.binary["test"][: cfg.csl_test_size]
    k_csl, k_cls = jax.random.split(key)
    csl = jax.jit(lambda k: gsn.csl_log_likelihood(k, m, p, x, n_chains=cfg.csl_chains,
                  n_steps=cfg.csl_steps, burn_in=cfg.chain_steps, chunk=min(100, len(x))))(k_csl)  # fmt: skip
    rec = eval.LogLikelihood.from_per_example(
        np.asarray(csl), "importance", bound="lower", **rd.record_fields(d),
        counts={"samples": cfg.csl_chains * cfg.csl_steps, "chains": cfg.csl_chains},
        notes="CSL (Bengio, Yao & Cho 2013): log-mean of p(x|h) over the chain's hidden states; "
        "a lower bound in expectation, consistent as the states -> infinity")  # fmt: skip
    out = {"test_csl_loglik": rec, "walkback_steps": steps(cfg), "n_train": len(d.train)}
    if cfg.discriminative:
        md, pd, xt, yt = model(cfg, 10), done["discriminative"].params, d.binary["test"], \
            d.labels["test"]  # fmt: skip
        probs = jax.jit(lambda k: gsn.classify(k, md, pd, xt, cfg.classify_steps))(k_cls)
        out["test_error"] = float(np.mean(np.argmax(np.asarray(probs), 1) != yt))
        out["baseline_test_error"] = train.classification_error(lambda p, x: baseline(cfg).apply(
            {"params": p}, x), done["baseline"].params, xt, yt)  # fmt: skip
    return out


def sample(cfg: Config, d, done, key, n: int):  # n states after chain_steps: p(x|h) or draws
    return np.asarray(jax.jit(gsn.sample_states, static_argnums=(1, 3, 4, 5, 6))(
        key, model(cfg), done["gsn"].params, n, cfg.chain_steps, 100, cfg.score_on == "grey"))  # fmt: skip


def pictures(cfg: Config, d, done, key) -> dict:
    m, p, every = model(cfg), done["gsn"].params, max(1, cfg.chain_steps // 10)
    x0 = jax.random.bernoulli(jax.random.fold_in(key, 0), 0.5, (8, 784)).astype(jnp.float32)
    chain = gsn.sample_chain(jax.random.fold_in(key, 1), m, p, x0, 10 * every, keep_every=every)
    return {"samples.png": (rd.digit_grid(np.swapaxes(np.asarray(chain.mean), 0, 1), 10),
                            f"GSN chains (rows) every {every} transitions: p(x|h)")}  # fmt: skip


EXPERIMENT = run.Experiment(
    name="gsn_mnist", presets=PRESETS, evaluate=evaluate, pictures=pictures, sample=sample,
    load=lambda c: rd.load_mnist(c, n_train=c.n_train, keep_grey=c.score_on == "grey"),
    score_splits=lambda c, d: d.grey or d.binary,  # d.grey: loaded for --score_on grey only
    score_protocol=lambda c, d: f"trained on {d.protocol}; scored: the chain's " + (
        "p(x|h) against the grey digits" if c.score_on == "grey" else "binary draws"),
    phases=lambda c: [phase("gsn", 0)] + ([phase("discriminative", 10), phase("baseline", -1)]
                                          if c.discriminative else []),  # fmt: skip
    published=lambda c: {"parzen_test": "gsn_parzen"},
    describe=lambda c: {"model": f"GSN 784-{c.hidden} tanh ({c.update}), salt-and-pepper {c.level}"
                        f", noise sd {c.sigma} / {c.post_sigma} pre / post"
                        f"{' (none on h1)' if c.noiseless_h1 else ''}, tied Bernoulli p(x|h1)"
                        f"; walk-back {steps(c)} transitions, Adam lr {c.learning_rate}"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
