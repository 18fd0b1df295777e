"""Approximate Bayesian computation (§20.13) on simulators whose posterior is known exactly.

Rejection ABC and ABC population Monte Carlo (Beaumont et al. 2009; egm.estimators.abc) on
the mean of Gaussian data under a Gaussian prior (summary: the sample mean, sufficient, or
the median, not) or a coin's bias under a Beta prior (summary: the count, matched exactly at
ε = 0).  For each tolerance ε the table gives the 1-Wasserstein distance of the ABC sample
to the exact posterior p(θ | x) (``w1_to_posterior``), to the exact ABC posterior p_ε at that
ε (``w1_to_abc_posterior``: the sampler's own error), and the exact W1(p_ε, p(θ | x)) by
quadrature (``w1_exact_bias``: what ε itself costs), plus the simulations per accepted draw.
No training phase: ``evaluate`` measures.  Figures: BUILD_NOTES.md (issue 15).

    python experiments/abc_conjugate.py                        # Gaussian mean, ~1 min
    python experiments/abc_conjugate.py --summary median       # an insufficient summary
    python experiments/abc_conjugate.py --model beta_binomial --tolerances 4,2,1,0
    python experiments/abc_conjugate.py --config tiny          # smoke test, seconds
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from egm import run
from egm.errors import ConfigError
from egm.estimators import abc
from egm.eval import visualize
from egm.run.config import RunFields, at_least, field, greater_than, one_of


def _tolerances(text: str) -> list[float]:
    return [float(t) for t in text.split(",")]


def _tol_ok(text: str) -> str | None:
    try:
        tol = _tolerances(text)
    except ValueError:
        return "must be comma-separated numbers"
    if not tol or min(tol) < 0 or any(b > a for a, b in zip(tol, tol[1:], strict=False)):
        return "must be non-negative and non-increasing, e.g. 1,0.5,0.1"
    return None


@dataclasses.dataclass(frozen=True)
class Config(RunFields):
    model: str = field("gaussian_mean", check=one_of("gaussian_mean", "beta_binomial"))
    summary: str = field("mean", check=one_of("mean", "median"), help="gaussian_mean's summary")
    n_obs: int = field(11, check=at_least(1), help="observations (trials for beta_binomial)")
    sigma: float = field(1.0, check=greater_than(0), sweep=True)
    prior_sd: float = field(2.0, check=greater_than(0), sweep=True)
    tolerances: str = field("2,1,0.5,0.2,0.1,0.05,0.02", check=_tol_ok)
    n_proposals: int = field(1_000_000, check=at_least(1), help="rejection ABC's prior draws")
    n_particles: int = field(2000, check=at_least(2), help="ABC-SMC population")
    workdir: str = field("runs/abc_conjugate", eval_only=True)

    def check(self) -> None:
        if min(_tolerances(self.tolerances)) == 0 and self.model != "beta_binomial":
            raise ConfigError("tolerance 0 (exact matching) needs a discrete summary: "
                              "use --model beta_binomial or a tolerance > 0")  # fmt: skip


PRESETS = {
    "default": Config(),
    "tiny": Config(tolerances="1,0.3", n_proposals=20_000, n_particles=200,
                   workdir="runs/abc_conjugate_tiny"),
}  # fmt: skip


def problem(cfg: Config) -> abc.ConjugateProblem:
    key = jax.random.key(cfg.seed)
    if cfg.model == "beta_binomial":
        return abc.beta_binomial_problem(key, cfg.n_obs)
    return abc.gaussian_mean_problem(key, cfg.n_obs, cfg.sigma, 0.0, cfg.prior_sd, cfg.summary)


@functools.lru_cache(maxsize=8)  # evaluate and pictures share one measurement per config
def measure(cfg: Config) -> tuple[abc.ConjugateProblem, list[dict], dict]:
    cp = problem(cfg)
    rows, kept = abc.tolerance_study(jax.random.key(cfg.seed + 1), cp,
                                     _tolerances(cfg.tolerances), cfg.n_proposals, cfg.n_particles)  # fmt: skip
    return cp, rows, kept


def evaluate(cfg: Config, data, done, key) -> dict:
    cp, rows, _ = measure(cfg)
    run.log(f"{cp.name}: eps, accepted of {cfg.n_proposals}, W1 to p(θ|x), to p_eps, exact "
            f"W1(p_eps, p(θ|x)); ABC-SMC ({cfg.n_particles}) simulations, W1 to p(θ|x)")  # fmt: skip
    keys = ("tolerance", "accepted", "w1_to_posterior", "w1_to_abc_posterior", "w1_exact_bias",
            "smc_simulations", "smc_w1_to_posterior")  # fmt: skip
    for r in rows:
        run.log("  ".join(f"{r.get(k, np.nan):.4g}" for k in keys))
    last = rows[-1]
    post = abc.grid_moments(cp.grid, cp.posterior)
    return {
        "problem": cp.name, "rows": rows, "posterior_mean": post[0], "posterior_sd": post[1],
        "w1_to_posterior_smallest_tol": last.get("w1_to_posterior", float("nan")),
        "smc_w1_to_posterior_smallest_tol": last["smc_w1_to_posterior"],
        "smc_simulations_total": int(sum(r["smc_simulations"] for r in rows)),
        "rejection_simulations_per_tolerance": cfg.n_proposals,
    }  # fmt: skip


def pictures(cfg: Config, data, done, key) -> dict:
    cp, rows, kept = measure(cfg)
    plt = visualize.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    a.plot(cp.grid, cp.posterior, "k", lw=2, label="exact p(θ | x)")
    for eps, s in list(kept.items())[:: max(1, len(kept) // 3)]:
        a.hist(s, bins=60, density=True, histtype="step", label=f"ABC ε={eps:g}")
    lo, hi = np.quantile(np.concatenate(list(kept.values()) or [cp.grid]), [0.001, 0.999])
    a.set_xlim(lo, hi)
    a.legend(fontsize=7)
    eps = [r["tolerance"] for r in rows]
    b.plot(eps, [r.get("w1_to_posterior", np.nan) for r in rows], "o-k", label="rejection")
    b.plot(eps, [r["smc_w1_to_posterior"] for r in rows], "s--", color="0.5", label="ABC-SMC")
    b.plot(eps, [r["w1_exact_bias"] for r in rows], ":", color="0.3", label="exact W1(p_ε, p)")
    b.set(xscale="symlog", yscale="log", xlabel="tolerance ε", ylabel="W1 to p(θ | x)")
    b.invert_xaxis()
    b.legend(fontsize=7)
    fig.tight_layout()
    return {"abc_posteriors.png": (visualize.figure_image(fig), cp.name)}


EXPERIMENT = run.Experiment(
    name="abc_conjugate", presets=PRESETS, load=lambda cfg: None,
    phases=lambda cfg: [],  # no training: evaluate measures
    evaluate=evaluate, pictures=pictures,
    describe=lambda cfg: {"model": f"{cfg.model} simulator, exact posterior by quadrature"},
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
