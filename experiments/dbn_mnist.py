"""Deep belief network on MNIST (§20.3): greedy pretraining, AIS lower bound, fine-tuned MLP.

Setting of Salakhutdinov & Murray (2008, DBN 784-500-2000, test lower bound about -86.22
nats on binarized MNIST) and Hinton & Salakhutdinov (2006, DBN-initialised classifier):

1. greedy layer-wise training of the RBM stack (:func:`egm.train.greedy.pretrain_stack`),
   each layer on the previous layer's hidden means;
2. the variational lower bound on the test log-likelihood (:func:`egm.models.dbn.ais_lower_bound`:
   forward AIS for the top RBM's log Z from a base-rate model of the propagated training
   data, S samples of Q(h|v) per test digit) and, for comparison, the AIS log-likelihood
   of the bottom RBM alone;
3. samples (Gibbs in the top RBM, ancestral pass down), samples.png;
4. an MLP (sigmoid hidden layers = the DBN's up-pass, softmax output) initialised from the
   DBN and fine-tuned with cross-entropy; test error.

    python experiments/dbn_mnist.py                       # default: embedded subset, offline
    python experiments/dbn_mnist.py --config tiny         # smoke test, seconds
    python experiments/dbn_mnist.py --config full --data_dir ../shared/data/mnist

Any config field can be overridden: ``--hidden 500,2000 --layer_epochs 100,100``.
Outputs in ``--workdir``: config.json, metrics.jsonl (records carry ``phase``
"pretrain"/"finetune"; a resumed run may repeat the line of the epoch it was killed in, the
later line wins), checkpoints/ (per pretraining layer and for fine-tuning), samples.png,
filters.png, results.json.  A killed run started again with the same command resumes from
its last checkpoint (layer by layer, then fine-tuning) and ends with the same parameters.

Full config (784-500-2000, centered PCD-1 for both layers instead of the CD schedules of
Salakhutdinov & Murray 2008: the same recipe gave a better single RBM here, -85.96 vs their
-86.34 for CD-25; AIS 100 chains x 14,500 temperatures; 10 samples of Q per test digit).
Figures and wall times of the (truncated) CPU run: BUILD_NOTES.md, "DBN".
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    Workdir,
    check_same_run,
    describe_binarization,
    log,
    parse_overrides,
    rng_label,
    rng_mode,
)

from egm import data, train  # noqa: E402
from egm.energies import rbm  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.estimators import ais  # noqa: E402
from egm.eval import likelihood, tile_images  # noqa: E402
from egm.models import dbn as dbn_lib  # noqa: E402
from egm.models.mlp import mlp_params_from_rbms  # noqa: E402
from egm.train import classifier  # noqa: E402
from egm.train.greedy import LayerSpec, pretrain_stack  # noqa: E402

LIKELIHOOD_BINARIZATIONS = ("fixed", "threshold")
FT_INPUTS = ("binary", "grey")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    source: str = "embedded"  # embedded | idx | tfds | auto (see egm.data.load_mnist)
    data_dir: str | None = None
    binarization: str = "fixed"  # fixed | threshold (the bound needs binary test data)
    binarization_seed: int = 0
    hidden: str = "500,1000"  # hidden layer sizes, bottom to top
    layer_epochs: str = "30,30"  # pretraining epochs per layer
    estimator: str = "pcd"  # pcd | cd
    k: int = 1
    centering: bool = True
    propagate: str = "mean"  # mean | sample: what each layer hands to the next
    # none | dynamic: layers above the first re-draw Bernoulli(input means) every minibatch,
    # i.e. fit h ~ Q(h|v) of the aggregated posterior, which the lower bound evaluates
    upper_binarization: str = "dynamic"
    n_chains: int = 100
    batch_size: int = 100
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    ais_chains: int = 100
    ais_temps: int = 14500
    q_samples: int = 10  # samples of Q(h|v) per test digit in the lower bound
    bottom_rbm_ais: bool = True  # also report the bottom RBM's own AIS log-likelihood
    ft_epochs: int = 30
    ft_batch_size: int = 100
    ft_learning_rate: float = 0.1
    ft_momentum: float = 0.9
    ft_weight_decay: float = 0.0
    ft_inputs: str = "binary"  # binary (the same fixed binarization) | grey
    n_samples: int = 100  # samples shown in samples.png
    sample_gibbs: int = 1000
    checkpoint_every: int = 1
    workdir: str = "runs/dbn_mnist"
    progress: bool = True
    fast_cpu_rng: bool = True  # see experiments/_common.configure_rng

    def sizes(self) -> list[int]:
        return _int_list(self.hidden, "hidden")

    def epochs(self) -> list[int]:
        return _int_list(self.layer_epochs, "layer_epochs")

    def validate(self) -> Config:
        if self.binarization not in LIKELIHOOD_BINARIZATIONS:
            raise ConfigError(
                f"binarization must be one of {LIKELIHOOD_BINARIZATIONS} (the lower bound is on "
                f"binary test data), got {self.binarization!r}"
            )
        if self.ft_inputs not in FT_INPUTS:
            raise ConfigError(f"ft_inputs must be one of {FT_INPUTS}, got {self.ft_inputs!r}")
        sizes, epochs = self.sizes(), self.epochs()
        if len(sizes) < 1 or len(epochs) != len(sizes):
            raise ConfigError(
                f"--hidden and --layer_epochs need one entry per layer, got {self.hidden!r} and "
                f"{self.layer_epochs!r}"
            )
        for name, low in (
            ("ais_chains", 2),
            ("ais_temps", 3),
            ("q_samples", 2),
            ("ft_batch_size", 1),
            ("n_samples", 1),
            ("checkpoint_every", 1),
            ("ft_epochs", 0),
            ("sample_gibbs", 0),
        ):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.source not in data.MNIST_SOURCES:
            raise ConfigError(f"source must be one of {data.MNIST_SOURCES}, got {self.source!r}")
        if self.data_dir is not None and self.source == "embedded":
            raise ConfigError(
                "--data_dir is set but --source is 'embedded' (the subset shipped in the package), "
                "which ignores it; add --source idx (or --source auto)"
            )
        for spec in self.layer_specs():
            spec.validate()
        return self

    def layer_specs(self) -> list[LayerSpec]:
        return [
            LayerSpec(
                n_hidden=n,
                epochs=e,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                estimator=self.estimator,
                k=self.k,
                centering=self.centering,
                n_chains=self.n_chains,
                propagate=self.propagate,
                binarization="none" if i == 0 else self.upper_binarization,
            )
            for i, (n, e) in enumerate(zip(self.sizes(), self.epochs(), strict=True))
        ]


def _int_list(s: str, name: str) -> list[int]:
    try:
        out = [int(x) for x in str(s).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{name} must be comma-separated integers, got {s!r}") from None
    if any(v < 1 for v in out):
        raise ConfigError(f"--{name} entries must be >= 1, got {s!r}")
    return out


PRESETS = {
    "default": Config(),
    "tiny": Config(
        hidden="16,32",
        layer_epochs="2,2",
        ais_chains=8,
        ais_temps=100,
        q_samples=2,
        bottom_rbm_ais=False,
        ft_epochs=2,
        n_samples=16,
        sample_gibbs=10,
        progress=False,
        workdir="runs/dbn_mnist_tiny",
    ),
    "full": Config(
        source="auto",
        hidden="500,2000",
        layer_epochs="200,200",
        learning_rate=0.005,
        weight_decay=3e-4,
        ft_epochs=100,
        ft_learning_rate=0.1,
        workdir="runs/dbn_mnist_full",
    ),
}


def load(cfg: Config) -> tuple[dict, dict, dict, str]:
    """Binary splits (for pretraining and the bound), grey splits and labels."""
    splits = {
        s: data.load_mnist(s, source=cfg.source, data_dir=cfg.data_dir)
        for s in ("train", "valid", "test")
    }
    binary = {}
    for i, (name, ds) in enumerate(splits.items()):
        if cfg.binarization == "fixed":
            binary[name] = data.binarize_fixed(ds.x, seed=cfg.binarization_seed + i)
        else:
            binary[name] = data.binarize_threshold(ds.x)
    grey = {name: np.asarray(ds.x, np.float32) for name, ds in splits.items()}
    labels = {name: np.asarray(ds.y, np.int32) for name, ds in splits.items()}
    return binary, grey, labels, splits["train"].source


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return _run(cfg)


def _run(cfg: Config) -> dict:
    wd = Workdir(cfg.workdir)
    t0 = time.perf_counter()
    binary, grey, labels, source = load(cfg)
    protocol = describe_binarization(cfg)
    log(f"data: {source}, train {binary['train'].shape}, protocol: {protocol}")

    has_ckpt = (Path(cfg.workdir) / "checkpoints").exists()
    check_same_run(wd, dataclasses.asdict(cfg), _EVAL_ONLY, has_checkpoints=has_ckpt)

    root = jax.random.key(cfg.seed)
    k_pre, k_bound, k_rbm_ais, k_samp, k_ft = jax.random.split(root, 5)

    # 1. greedy pretraining --------------------------------------------------------------
    timings: dict[str, float] = {}
    t_layer = [time.perf_counter()]

    def on_epoch_end(layer, epoch, state, m):
        rec = {"phase": "pretrain", "layer": layer, "epoch": epoch, **m,
               "wall_s": time.perf_counter() - t0}  # fmt: skip
        wd.log_metrics(rec)
        return None

    def on_layer_end(layer, params, nxt):
        timings[f"layer_{layer}_seconds"] = time.perf_counter() - t_layer[0]
        t_layer[0] = time.perf_counter()
        log(f"layer {layer} ({params.W.shape[0]}-{params.W.shape[1]}) done")

    stack = pretrain_stack(
        k_pre,
        binary["train"],
        cfg.layer_specs(),
        checkpoint_dir=Path(cfg.workdir) / "checkpoints" / "pretrain",
        checkpoint_every=cfg.checkpoint_every,
        on_epoch_end=on_epoch_end,
        on_layer_end=on_layer_end,
        progress=cfg.progress,
    )
    model = tuple(stack)
    pretrain_s = time.perf_counter() - t0

    # 2. lower bound on the test log-likelihood -----------------------------------------
    t_b = time.perf_counter()
    top_data = jnp.asarray(binary["train"])
    for p in model[:-1]:
        top_data = jax.nn.sigmoid(p.c + top_data @ p.W)
    base_b = ais.base_rate_biases(top_data)
    betas = ais.betas_salakhutdinov_murray(cfg.ais_temps)
    log(f"lower bound: AIS {cfg.ais_chains} chains x {cfg.ais_temps} temperatures, "
        f"{cfg.q_samples} samples of Q per test digit")  # fmt: skip
    bound = dbn_lib.ais_lower_bound(
        k_bound,
        model,
        binary["test"],
        base_b,
        n_chains=cfg.ais_chains,
        betas=betas,
        n_samples=cfg.q_samples,
    )
    bound_s = time.perf_counter() - t_b
    rbm_result = None
    if cfg.bottom_rbm_ais:
        res = ais.rbm_ais(
            k_rbm_ais,
            model[0],
            ais.base_rate_biases(binary["train"]),
            n_chains=cfg.ais_chains,
            betas=betas,
        )
        nfe = likelihood.mean_negative_free_energy(rbm.free_energy, model[0], binary["test"])
        rbm_result = {
            "test_loglik_nats": nfe - float(res.log_z),
            "log_z": float(res.log_z),
            "log_z_se": float(res.log_z_se),
        }

    # 3. samples ------------------------------------------------------------------------
    samples = dbn_lib.sample(k_samp, model, cfg.n_samples, cfg.sample_gibbs)
    wd.save_png(
        "samples.png",
        tile_images(np.asarray(samples.v_probs), (28, 28)),
        f"P(v|h1) after {cfg.sample_gibbs} Gibbs sweeps in the top RBM",
    )
    n_f = min(100, model[0].W.shape[1])
    wd.save_png(
        "filters.png",
        tile_images(np.asarray(model[0].W[:, :n_f].T), (28, 28), normalize=True),
        f"first {n_f} bottom-layer filters",
    )

    # 4. fine-tuning ----------------------------------------------------------------------
    t_ft = time.perf_counter()
    inputs = binary if cfg.ft_inputs == "binary" else grey
    module, params = mlp_params_from_rbms(model, 10, k_ft)

    def apply_fn(p, x):
        return module.apply({"params": p}, x)

    x_va, y_va = inputs["valid"], labels["valid"]
    init_test_error = classifier.classification_error(
        apply_fn, params, inputs["test"], labels["test"]
    )
    steps = cfg.ft_epochs * (inputs["train"].shape[0] // cfg.ft_batch_size)
    opt = train.sgd(
        cfg.ft_learning_rate,
        cfg.ft_momentum,
        cfg.ft_weight_decay,
        lr_multiplier=train.linear_decay(max(steps, 1)),
    )
    state = train.init_state(params, opt)
    epoch_fn = jax.jit(
        train.make_epoch(
            train.make_step(classifier.classifier_objective(apply_fn), opt), cfg.ft_batch_size
        ),
        donate_argnums=0,
    )
    ckpt = train.Checkpointer(
        Path(cfg.workdir) / "checkpoints" / "finetune", every=cfg.checkpoint_every
    )
    start = 0
    if ckpt.latest_epoch() is not None:
        last, state = ckpt.restore(state)
        start = last + 1
        log(f"fine-tuning: resuming after epoch {last}")

    def ft_end(epoch, st, m):
        rec = {
            "phase": "finetune",
            "epoch": epoch,
            **m,
            "valid_error": classifier.classification_error(apply_fn, st.params, x_va, y_va),
            "wall_s": time.perf_counter() - t0,
        }
        wd.log_metrics(rec)
        return {"valid_error": rec["valid_error"]}

    if cfg.ft_epochs > 0:
        state = train.fit(
            state,
            (jnp.asarray(inputs["train"]), jnp.asarray(labels["train"])),
            epoch_fn=epoch_fn,
            key=jax.random.fold_in(k_ft, 1),
            n_epochs=cfg.ft_epochs,
            start_epoch=start,
            on_epoch_end=ft_end,
            checkpointer=ckpt,
            progress=cfg.progress,
            divergence_hint=f"(ft_learning_rate={cfg.ft_learning_rate})",
            data_check=classifier.classifier_data_check(784, 10),
        )
    ckpt.close()
    ft_s = time.perf_counter() - t_ft
    test_error = classifier.classification_error(
        apply_fn, state.params, inputs["test"], labels["test"]
    )
    valid_error = classifier.classification_error(apply_fn, state.params, x_va, y_va)

    sizes = [784, *cfg.sizes()]
    results = {
        "model": "DBN " + "-".join(map(str, sizes)),
        "pretraining": f"greedy, {'centered ' if cfg.centering else ''}{cfg.estimator.upper()}-"
        f"{cfg.k}, epochs per layer {cfg.epochs()}, batch {cfg.batch_size}, {cfg.n_chains} "
        f"persistent chains, lr {cfg.learning_rate} (linear decay to 0), momentum "
        f"{cfg.momentum}, weight decay {cfg.weight_decay}; each layer trained on the hidden "
        f"{'means' if cfg.propagate == 'mean' else 'samples'} of the layer below"
        + (
            ", re-drawn as Bernoulli samples every minibatch"
            if cfg.upper_binarization == "dynamic" and cfg.propagate == "mean"
            else ""
        ),
        "data": source,
        "n_train": int(binary["train"].shape[0]),
        "n_test": int(binary["test"].shape[0]),
        "protocol": protocol,
        "test_loglik_lower_bound_nats": bound.bound,
        "test_loglik_lower_bound_se": bound.se,
        "test_loglik_lower_bound_se_q": bound.se_q,
        "log_z_top": bound.log_z_top,
        "log_z_top_se": bound.log_z_top_se,
        "ais_ess": bound.ais_ess,
        "lower_bound": f"variational bound E_Q[log p(v|h1) + log p_top(h1)] + H(Q) "
        f"(recursive for deeper DBNs), Q = up-pass of the RBM posteriors, {cfg.q_samples} "
        f"samples of Q per test digit; log Z_top by forward AIS with {cfg.ais_chains} chains x "
        f"{cfg.ais_temps} temperatures (Salakhutdinov & Murray schedule) from a base-rate model "
        f"of the propagated training data. Stochastic: forward AIS under-estimates log Z in "
        f"expectation, so the number can be optimistic by the AIS error",
        "bottom_rbm": rbm_result,
        "finetune": f"MLP {'-'.join(map(str, sizes))}-10 (sigmoid hidden, softmax output) "
        f"initialised from the DBN, {cfg.ft_epochs} epochs of SGD, lr {cfg.ft_learning_rate} "
        f"(linear decay), momentum {cfg.ft_momentum}, batch {cfg.ft_batch_size}, inputs "
        f"{cfg.ft_inputs} ({'same fixed binarization' if cfg.ft_inputs == 'binary' else 'grey values in [0, 1]'}"
        f"), trained on the {binary['train'].shape[0]} training digits",
        "test_error": test_error,
        "valid_error": valid_error,
        "test_error_before_finetuning": init_test_error,
        "pretrain_seconds": pretrain_s,
        **timings,
        "bound_seconds": bound_s,
        "finetune_seconds": ft_s,
        "total_seconds": time.perf_counter() - t0,
        "device": str(jax.devices()[0]),
        "rng": rng_label(),
    }
    wd.write_json("results.json", results)
    log(
        f"test log-likelihood lower bound {bound.bound:.2f} ± {bound.se:.2f} nats "
        f"({protocol}); test error {100 * test_error:.2f}%; results in "
        f"{cfg.workdir}/results.json"
    )
    return results


#: Fields that do not change the trained parameters: a resumed run may change them.
_EVAL_ONLY = (
    "progress",
    "workdir",
    "checkpoint_every",
    "ais_chains",
    "ais_temps",
    "q_samples",
    "bottom_rbm_ais",
    "n_samples",
    "sample_gibbs",
)


if __name__ == "__main__":
    main(sys.argv[1:])
