"""Bias and variance of gradient estimators through discrete samples (§20.9) on a tiny model.

A fixed latent-variable "decoder" with ``G`` categorical latents of ``K`` classes each
(``K^G`` states) and a Bernoulli likelihood ``J(y) = log p(x | y)`` of one fixed binary
``x``; ``y ~ q(y; φ) = Π_g Categorical(softmax(φ_g))``.  The target is the exact
``∇_φ E_q[J(y)]`` by enumeration (:mod:`egm.estimators.gradient_study`).  Each estimator runs
``repeats`` times with ``n_samples`` draws per estimate; the table gives the squared bias
(beside the part expected from noise alone), the total variance ``tr Var`` of one estimate
and the MSE.  Estimators: REINFORCE with each baseline of :func:`egm.estimators.gradients.
reinforce` (none, an oracle constant, a moving average and a learned scalar warmed up for
``warmup`` steps, the book's optimal per-coordinate baseline, leave-one-out);
Gumbel-Softmax at each temperature τ (biased); straight-through Gumbel-Softmax and the plain
straight-through categorical.  No training phase: the run driver calls ``evaluate``, which
measures (the problem and every estimator's keys come from ``--seed``).  Measured figures:
BUILD_NOTES.md (issue 5).  Outputs: results.json (the table), variance_bias.png (grey).

    python experiments/estimator_variance.py --config tiny     # seconds
    python experiments/estimator_variance.py --config full     # 20,000 repeats, 15 estimators
    python experiments/estimator_variance.py --config tiny --sweep seed=0:4   # 4 problems
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from egm import run
from egm.errors import ConfigError
from egm.estimators import gradient_study as gs
from egm.eval import visualize
from egm.run.config import RunFields, at_least, field


def _taus_ok(text: str) -> str | None:
    try:
        taus = [float(t) for t in text.split(",")]
    except ValueError:
        return "must be comma-separated numbers"
    return None if taus and min(taus) > 0 else "must be positive"


@dataclasses.dataclass(frozen=True)
class Config(RunFields):
    n_groups: int = field(3, check=at_least(1), help="G categorical latents")
    n_classes: int = field(4, check=at_least(1), help="K classes each")
    n_visible: int = field(10, check=at_least(1), help="dimension of the fixed x")
    weight_scale: float = 2.0
    logit_scale: float = 1.0
    n_samples: int = field(4, check=at_least(2), help="draws per estimate (>= 2: leave-one-out)")
    repeats: int = field(2000, check=at_least(2), help="independent estimates per estimator")
    warmup: int = field(200, check=at_least(1), help="steps warming up the adaptive baselines")
    taus: str = field("0.1,0.3,1.0,3.0", check=_taus_ok, help="Gumbel-Softmax temperatures")
    workdir: str = field("runs/estimator_variance", eval_only=True)

    def check(self) -> None:
        if self.n_classes**self.n_groups > 2**16:
            raise ConfigError(f"n_classes^n_groups = {self.n_classes**self.n_groups} states is "
                              f"too many to enumerate the exact gradient; keep it <= 65536")  # fmt: skip


PRESETS = {
    "default": Config(),
    "tiny": Config(repeats=100, warmup=20, taus="0.5,2.0", workdir="runs/estimator_variance_tiny"),
    "full": Config(repeats=20000, warmup=500, taus="0.05,0.1,0.3,0.5,1.0,2.0,5.0",
                   workdir="runs/estimator_variance_full"),
}  # fmt: skip


@functools.lru_cache(maxsize=8)  # evaluate and pictures share one measurement per config
def measure(cfg: Config) -> tuple[float, list[dict]]:
    """The exact gradient norm and one row per estimator (bias², variance, MSE...)."""
    problem = gs.categorical_decoder_problem(jax.random.key(cfg.seed), cfg.n_groups,
                                             cfg.n_classes, cfg.n_visible, cfg.weight_scale,
                                             cfg.logit_scale)  # fmt: skip
    warm = (jax.random.key(cfg.seed + 1), jax.random.key(cfg.seed + 2))
    taus = [float(t) for t in cfg.taus.split(",")]
    ests = gs.gradient_estimators(problem, cfg.n_samples, taus, cfg.warmup, warm)
    exact = jax.grad(problem.expected_J)(problem.phi)
    keys = jax.random.split(jax.random.key(cfg.seed + 3), cfg.repeats)
    return float(np.linalg.norm(np.asarray(exact, np.float64))), gs.bias_variance_rows(
        ests, exact, keys
    )


def evaluate(cfg: Config, data, done, key) -> dict:
    norm, rows = measure(cfg)
    run.log(f"{'estimator':34s} {'bias^2':>10s} {'(noise)':>10s} {'tr Var':>10s} {'MSE':>10s}")
    for r in rows:
        nums = (r["bias_sq"], r["bias_sq_expected_from_noise"], r["total_variance"], r["mse"])
        run.log(f"{r['estimator']:34s} " + " ".join(f"{v:10.4g}" for v in nums))
    return {
        "problem": f"{cfg.n_groups} categorical latents x {cfg.n_classes} classes "
        f"({cfg.n_classes**cfg.n_groups} states), Bernoulli decoder on {cfg.n_visible} pixels",
        "exact_gradient_norm": norm,
        "n_samples_per_estimate": cfg.n_samples,
        "repeats": cfg.repeats,
        "rows": rows,
        **{f"variance/{r['estimator']}": r["total_variance"] for r in rows},
    }


def pictures(cfg: Config, data, done, key) -> dict:
    plt = visualize.pyplot()
    rows = measure(cfg)[1]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5), dpi=80)
    ax.barh(y - 0.2, [r["total_variance"] for r in rows], 0.4, color="0.2",
            label="total variance (tr Var)")  # fmt: skip
    ax.barh(y + 0.2, [max(r["bias_sq"], 1e-12) for r in rows], 0.4, color="0.65",
            label="squared bias (incl. noise ≈ tr Var / repeats)")  # fmt: skip
    ax.set_yticks(y, [r["estimator"] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    fig.tight_layout()
    image = visualize.figure_image(fig)
    title = f"gradient estimators, {cfg.n_samples} samples/estimate, {cfg.repeats} repeats"
    return {"variance_bias.png": (image, title)}


EXPERIMENT = run.Experiment(
    name="estimator_variance",
    presets=PRESETS,
    load=lambda cfg: None,
    phases=lambda cfg: [],  # no training: evaluate measures
    evaluate=evaluate,
    pictures=pictures,
    describe=lambda cfg: {"model": "categorical latents, fixed Bernoulli decoder (no training)"},
)

if __name__ == "__main__":
    run.main(EXPERIMENT)
