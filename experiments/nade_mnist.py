"""Autoregressive nets on binarized MNIST (§20.10.7–20.10.10): FVSBN, NADE, EoNADE, MADE.

Every model here has an EXACT test log-likelihood.  Published (fixed binarization of
Salakhutdinov & Murray 2008): FVSBN -97.45, NADE 500h -88.86 (Larochelle & Murray 2011),
EoNADE 2 hidden layers, ensemble of orderings -85.10 (Uria et al. 2014), MADE 1 hidden layer,
32 masks -86.64 (1 mask -88.40; Germain et al. 2015).  Splits: first 50,000 / last 10,000
training digits / t10k, each binarized once (``egm.data.binarize_fixed``).  One driver phase
per model of ``--models``, Adam on the exact negative log-likelihood (MADE: a random mask set
of its family per minibatch; EoNADE: the order-agnostic loss).  ``full_data_capped_epochs``
caps the epochs to fit ~40 min on 2 cores (the papers: hundreds).  Measured figures:
BUILD_NOTES.md (issue 6).  Pictures: samples_<model>.png, inpainting.png (top halves given).

    python experiments/nade_mnist.py --config tiny      # smoke test, ~15 s, embedded subset
    python experiments/nade_mnist.py                    # embedded subset, a few minutes
    python experiments/nade_mnist.py --config full_data_capped_epochs --data_dir ../shared/data/mnist  # ~40 min
    python experiments/nade_mnist.py --config tiny --models made --sweep seed=0:4
"""

from __future__ import annotations

import dataclasses

import numpy as np

from egm import data, eval, run, train
from egm.eval import autoregressive as ar
from egm.run import directed as rd
from egm.run.config import MNISTFields, at_least, field, greater_than

PAPER = {"fvsbn": "fvsbn", "nade": "nade_500h", "eonade": "eonade_2hl", "made": "made_32masks"}
EPOCHS = dict(check=at_least(0), eval_only=True, help="a budget (constant-rate Adam)")
MODELS = rd.choices_ok(ar.AUTOREGRESSIVE_NETS)


@dataclasses.dataclass(frozen=True)
class Config(MNISTFields):
    n_train: int = field(0, check=at_least(0), help="first training digits (0: all)")
    n_test: int = field(0, check=at_least(0), eval_only=True, help="first test digits (0: all)")
    models: str = field("fvsbn,nade,eonade,made", check=MODELS, eval_only=True)
    batch_size: int = field(100, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True)
    fvsbn_epochs: int = field(20, **EPOCHS)
    nade_epochs: int = field(20, **EPOCHS)
    nade_hidden: int = field(500, check=at_least(1))
    eonade_epochs: int = field(20, **EPOCHS)
    eonade_hidden: str = field("500,500", check=rd.sizes_ok)
    eonade_orderings: int = field(16, check=at_least(1), eval_only=True, help="test ensemble")
    eonade_eval_n: int = field(0, check=at_least(0), eval_only=True, help="0: all n_test")
    made_epochs: int = field(20, **EPOCHS)
    made_hidden: str = field("500", check=rd.sizes_ok)
    made_masks: int = field(32, check=at_least(1), help="training family and test ensemble")
    made_order_agnostic: bool = False
    made_learning_rate: float = field(0.0, check=at_least(0), sweep=True, help="0: learning_rate")
    eval_every: int = field(5, check=at_least(1), eval_only=True)
    eval_size: int = field(1000, check=at_least(1), eval_only=True)
    n_inpaint: int = field(10, check=at_least(1), eval_only=True)
    n_samples: int = field(16, check=at_least(1), eval_only=True)
    workdir: str = field("runs/nade_mnist", eval_only=True)

    def model_list(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]


PRESETS = {
    "default": Config(fvsbn_epochs=10, nade_epochs=10, eonade_epochs=10, made_epochs=10,
                      eonade_orderings=8),
    "tiny": Config(n_train=500, n_test=100, nade_hidden=16, eonade_hidden="16,16",
                   made_hidden="16", fvsbn_epochs=2, nade_epochs=2, eonade_epochs=2,
                   made_epochs=2, eonade_orderings=2, made_masks=2, eval_every=1, eval_size=50,
                   n_inpaint=4, n_samples=4, checkpoint_every=1, progress=False,
                   workdir="runs/nade_mnist_tiny"),
    # full data, each model's epochs capped to fit ~40 min on 2 cores (the papers: hundreds);
    # the EoNADE ensemble on the first 2000 test digits (~10 ms per digit per ordering)
    "full_data_capped_epochs": Config(source="auto", fvsbn_epochs=40, nade_epochs=12, eonade_epochs=20,
                   made_epochs=60, eonade_orderings=8, eonade_eval_n=2000, eval_every=5,
                   checkpoint_every=5, workdir="runs/nade_mnist_full_data_capped_epochs"),
}  # fmt: skip


def published(c: Config) -> dict[str, str]:
    keys = {"fvsbn": "fvsbn", "nade": c.nade_hidden == 500 and "nade_500h",
            "eonade": c.eonade_hidden == "500,500" and "eonade_2hl",
            "made": {1: "made_1mask", 32: "made_32masks"}.get(c.made_masks)}  # fmt: skip
    return {f"{m}_test_loglik": keys[m] for m in c.model_list() if keys[m]}


def net(cfg: Config, name: str) -> ar.BinaryAutoregressive:
    hidden = {"nade": (cfg.nade_hidden,), "eonade": rd.sizes(cfg.eonade_hidden),
              "made": rd.sizes(cfg.made_hidden)}.get(name, ())  # fmt: skip
    members = {"eonade": cfg.eonade_orderings, "made": cfg.made_masks}.get(name, 1)
    return ar.binary_autoregressive(name, 784, hidden, members, cfg.made_order_agnostic)


def learning_rate(cfg: Config, name: str) -> float:
    return (name == "made" and cfg.made_learning_rate) or cfg.learning_rate


def phases(cfg: Config) -> list[run.Phase]:
    return [rd.autoregressive_phase(m, lambda c, m=m: net(c, m),
                                    lambda c, m=m: train.adam(learning_rate(c, m)),
                                    lambda c, m=m: getattr(c, f"{m}_epochs"))
            for m in cfg.model_list()]  # fmt: skip


def evaluate(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    x_test = d.binary["test"][: cfg.n_test or None]
    out: dict = {"n_train": len(d.train), "n_test": len(x_test), "models": {}}
    for m in cfg.model_list():
        s, x = done[m], x_test[: cfg.eonade_eval_n or None] if m == "eonade" else x_test
        epochs = int(s.step) // max(1, len(d.train) // cfg.batch_size)
        res, out["models"][m] = ar.exact_report(
            m, net(cfg, m), s.params, s.aux, x, paper=eval.PUBLISHED[PAPER[m]],
            figures={"learning_rate": learning_rate(cfg, m), "epochs": epochs},
            **rd.record_fields(d))  # fmt: skip
        out |= res
    return out


def draws(cfg: Config, d: data.BinarizedMNIST, done, key, n: int, n_inpaint: int) -> dict:
    """``{model: (n samples, completions of the top halves of n_inpaint test digits)}``."""
    x_in, mask = d.binary["test"][:n_inpaint], ar.top_half_mask(28, 28)
    return rd.per_model(cfg.model_list(), key, lambda m, k: ar.draw(
        net(cfg, m), done[m].params, done[m].aux, k, n, x_in, mask))  # fmt: skip


def pictures(cfg: Config, d: data.BinarizedMNIST, done, key) -> dict:
    x_in, mask = d.binary["test"][: cfg.n_inpaint], ar.top_half_mask(28, 28)
    got = draws(cfg, d, done, key, cfg.n_samples, cfg.n_inpaint)
    out = {f"samples_{m}.png": (rd.digit_grid(s), f"{m}: samples") for m, (s, _) in got.items()}
    rows = [x_in, np.where(mask, x_in, 0.5), *(c for _, c in got.values())]
    title = "rows: test digit, top half given, then " + ", ".join(got)
    return {**out, "inpainting.png": (rd.digit_grid(np.concatenate(rows), len(x_in)), title)}


EXPERIMENT = run.Experiment(
    name="nade_mnist",
    published=published, presets=PRESETS, phases=phases, evaluate=evaluate, pictures=pictures,
    load=lambda c: rd.load_mnist(c, n_train=c.n_train),
    sample=lambda c, d, done, key, n: {  # exact ancestral samples of each model
        m: s for m, (s, _) in draws(c, d, done, key, n, 1).items()},
    describe=lambda c: {"model": f"autoregressive nets {c.models} (NADE {c.nade_hidden}h, EoNADE "
                        f"{c.eonade_hidden}, MADE {c.made_hidden} with {c.made_masks} masks)"},
    divergence_hint=lambda c: f"(learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
