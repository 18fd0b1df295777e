"""What the 2-D density experiments share (flow_2d, gmmn_2d, gan_2d, dae_2d, diffusion_2d).

The densities of :data:`egm.data.toy.DENSITIES` (exact log densities), drawn once per run
from ``data_seed`` so that every sweep member sees the same points; the true density's own
figure -H(p) = E_p log p as a log-likelihood record; the paired estimate of KL(p ‖ q) (or its
upper bound, for a model scored by a lower bound on log q); pictures in
:mod:`egm.eval.visualize` (``grid_2d``, ``histogram_2d``, ``density_image``, ``panels``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import numpy as np

from egm.data import toy
from egm.errors import ConfigError
from egm.estimators import mmd
from egm.eval import visualize as vis
from egm.eval.record import LogLikelihood
from egm.run.config import RunFields, at_least, field

__all__ = [
    "Toy2DFields",
    "implicit_hooks",
    "implicit_pictures",
    "implicit_scores",
    "kl_fields",
    "load",
    "names",
    "names_ok",
    "record",
]


def names(s: str, known=toy.DENSITIES, what: str = "datasets") -> list[str]:
    """The comma-separated names of ``s``; :class:`ConfigError` unless they are distinct
    names from ``known``."""
    out = [x for x in s.split(",") if x]
    if not out or set(out) - set(known) or len(set(out)) != len(out):
        raise ConfigError(f"--{what} must be distinct names from {list(known)}, got {s!r}")
    return out


def names_ok(known=toy.DENSITIES, what: str = "datasets"):
    """A config check for :func:`names`."""
    return lambda v: names(v, known, what) and None


@dataclasses.dataclass(frozen=True)
class Toy2DFields(RunFields):
    """The densities, how many draws of each, from which seed, and the plots' resolution."""

    datasets: str = field("gaussian_mixture,rings,checkerboard", check=names_ok())
    n_train: int = field(20000, check=at_least(2))
    n_test: int = field(10000, check=at_least(2), eval_only=True)
    data_seed: int = field(0, check=at_least(0), help="the draws of the training/test points")
    grid: int = field(120, check=at_least(4), eval_only=True, help="pixels per side of a plot")


def load(cfg: Toy2DFields, extra: Sequence[int] = ()) -> dict[str, tuple[np.ndarray, ...]]:
    """``{density: (train, test, *extra draws)}``: ``n_train`` and ``n_test`` draws (and one
    set per size in ``extra``) from independent keys of ``data_seed``."""
    out = {}
    for i, name in enumerate(names(cfg.datasets)):
        sizes = (cfg.n_train, cfg.n_test, *extra)
        ks = jax.random.split(jax.random.fold_in(jax.random.key(cfg.data_seed), i), len(sizes))
        draw = toy.DENSITIES[name][0]
        out[name] = tuple(np.asarray(draw(k, n)) for k, n in zip(ks, sizes, strict=True))
    return out


def record(lp, ds: str, cfg: Toy2DFields, protocol: str, method: str = "exact", **kw):
    """A test-split log-likelihood record (nats) of per-example figures ``lp`` on ``ds``."""
    return LogLikelihood.from_per_example(
        np.asarray(lp, np.float64), method, split="test", unit="nats", protocol=protocol,
        dataset=f"toy:{ds} (egm.data.toy; {cfg.n_test} test draws, seed {cfg.data_seed})", **kw,
    )  # fmt: skip


def kl_fields(prefix: str, log_p, log_q, name: str = "kl") -> dict[str, float]:
    """``<prefix>_<name>_nats`` = mean of log p − log q over the same test points and its
    paired standard error (``_stderr``): KL(p ‖ q), or an upper bound on it when ``log_q`` is
    a lower bound."""
    gap = np.asarray(log_p, np.float64) - np.asarray(log_q, np.float64)
    return {f"{prefix}_{name}_nats": float(gap.mean()),
            f"{prefix}_{name}_stderr": float(gap.std(ddof=1) / np.sqrt(len(gap)))}  # fmt: skip


Draw = Callable[[str, jax.Array, int], np.ndarray]  # (density, key, n) -> (n, 2) samples


def implicit_scores(d: dict, draw: Draw, key, n: int, bandwidths: Sequence[float]) -> dict:
    """The figures of an implicit model (no density to evaluate: a GAN, a GMMN) on each
    density of ``d`` (:func:`load`): ``<ds>_test_mmd2``, the unbiased MMD² of ``n`` samples
    ``draw(ds, key, n)`` vs as many fresh test draws, beside ``<ds>_test_mmd2_floor`` (the same
    statistic for training draws: what a perfect model would reach); on the ring of Gaussians
    also ``<ds>_modes_covered``, ``_high_quality_fraction`` and ``_mode_weight_tv``
    (:func:`egm.data.toy.ring_mode_coverage`)."""
    out = {}
    for i, (ds, (tr, test)) in enumerate(d.items()):
        x = draw(ds, jax.random.fold_in(key, i), n)
        f = mmd.mmd2_with_floor(x, test, tr, tuple(bandwidths))
        out[f"{ds}_test_mmd2"], out[f"{ds}_test_mmd2_floor"] = f["test_mmd2"], f["test_mmd2_floor"]
        if ds == "gaussian_mixture":
            out |= {f"{ds}_{k}": v for k, v in toy.ring_mode_coverage(x).items()}
    return out


def implicit_pictures(d: dict, draw: Draw, key, n: int, grid: int, label: str) -> dict:
    """``densities.png``: a row per density of ``d``; columns: the true density, a histogram
    of ``max(n, 10000)`` samples of the model (``label``)."""
    xy, rows = vis.grid_2d(grid), []
    for i, ds in enumerate(d):
        x = draw(ds, jax.random.fold_in(key, i), max(n, 10000))
        rows.append([vis.density_image(toy.DENSITIES[ds][1](xy), grid), vis.histogram_2d(x, grid)])
    return {"densities.png": (vis.panels(rows), f"rows: {', '.join(d)}; columns: true density, "
                              f"{label} samples")}  # fmt: skip


def implicit_hooks(sample: Callable, label: str) -> tuple[Callable, Callable]:
    """``(evaluate, pictures)`` for :class:`egm.run.Experiment` of an implicit model whose
    ``sample(cfg, done, key, density, n)`` draws ``n`` points: :func:`implicit_scores` with
    ``cfg.n_test`` samples and the kernels ``cfg.bandwidths``, :func:`implicit_pictures` on
    ``cfg.grid`` pixels."""

    def evaluate(cfg, d, done, key):
        draw = lambda ds, k, n: sample(cfg, done, k, ds, n)  # noqa: E731
        return implicit_scores(d, draw, key, cfg.n_test, mmd.positive_numbers(cfg.bandwidths))

    def pictures(cfg, d, done, key):
        draw = lambda ds, k, n: sample(cfg, done, k, ds, n)  # noqa: E731
        return implicit_pictures(d, draw, key, cfg.n_test, cfg.grid, label)

    return evaluate, pictures
