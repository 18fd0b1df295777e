"""One evaluation record for a log-likelihood (DESIGN.md §2).

Every log-likelihood front-end of :mod:`egm.eval` returns a :class:`LogLikelihood`: the
figure, its standard errors, its bracket or bound direction, the method and the counts
behind it (samples, chains, temperatures, ESS), and what it was measured on (dataset,
split, binarization / dequantisation protocol, unit).  ``to_dict`` gives plain JSON
(what every ``results.json`` stores), ``from_dict`` reads it back, ``describe`` prints it.

Brackets (issues 11 and 12): a bracket must contain its own point estimate.  When forward
and reverse AIS cross, :func:`bracket_from_log_z` says so (``consistent=False`` and a note)
and reports the interval covering both sides and the estimate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from egm.errors import ConfigError, DataError
from egm.eval.units import bits_per_dim

#: Estimation methods.  "ais": forward AIS for log Z (a stochastic upper bound on the
#: log-likelihood in expectation); "reverse_ais": reverse AIS from (approximate) model
#: samples; "ais_bracket": both; "importance": importance sampling with a proposal q(z|x);
#: "variational_bound": an ELBO-type bound (its log Z may itself come from AIS, see counts);
#: "parzen": a Parzen-window density of model samples (not a likelihood of the model).
METHODS = (
    "exact",
    "ais",
    "reverse_ais",
    "ais_bracket",
    "importance",
    "variational_bound",
    "parzen",
)
UNITS = ("nats", "bits/dim")
SPLITS = ("train", "valid", "test")
BOUNDS = ("lower", "upper")

_LABELS = {
    "exact": "exact",
    "ais": "AIS",
    "reverse_ais": "reverse AIS",
    "ais_bracket": "AIS bracket",
    "importance": "importance sampling",
    "variational_bound": "variational bound",
    "parzen": "Parzen window",
}


def _finite(name: str, x: Any, *, optional: bool) -> float | None:
    if x is None:
        if optional:
            return None
        raise DataError(f"{name} is required (a finite number), got None")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise DataError(
            f"{name} must be finite, got {v}; a NaN or inf log-likelihood means the estimate "
            f"failed (diverged model, too few samples): fix it before recording it"
        )
    return v


def _plain(name: str, key: Any, x: Any) -> int | float | str | bool | None:
    """A JSON scalar from a Python, NumPy or JAX scalar (finite floats only)."""
    if not isinstance(key, str):
        raise ConfigError(f"{name} keys must be strings, got {key!r}")
    if x is None or isinstance(x, str | bool):
        return x
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    arr = np.asarray(x)
    if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
        raise ConfigError(f"{name}[{key!r}] must be a scalar (number, str, bool), got {x!r}")
    if np.issubdtype(arr.dtype, np.integer):
        return int(arr)
    return _finite(f"{name}[{key!r}]", arr, optional=False)


def _fmt(x: float, unit: str) -> str:
    return f"{x:.3f}" if unit == "bits/dim" else f"{x:.2f}"


@dataclasses.dataclass(frozen=True)
class LogLikelihood:
    """A log-likelihood figure with everything needed to read and compare it.

    Attributes:
      value: mean over examples of ``log p(x)`` in ``unit`` (nats per example, or bits per
        dimension: there lower is better and bound directions flip).
      stderr: Monte-Carlo standard error of ``value`` for these examples (the estimator's
        noise: AIS ``log Ẑ``, samples of q or Q); None for deterministic methods.
      stderr_examples: standard error of the mean over examples, ``sd / √N`` (how much the
        figure would move on another test set of the same size); None when not computed.
        :attr:`stderr_total` combines the two in quadrature.
      lower, upper: a bracket around the true value (None for none); it always contains
        ``value``.
      bound: ``"lower"`` / ``"upper"`` when ``value`` is a bound on the true log-likelihood
        (in expectation for stochastic ones: an ELBO, an importance-sampled estimate, the
        DBN AIS bound are ``"lower"``); None otherwise.
      method: one of :data:`METHODS`.
      counts: numbers behind the figure (``examples``, ``samples``, ``chains``,
        ``temperatures``, ``ess_forward``, ``ess_reverse``, ...).
      dataset: what was evaluated, e.g. ``"embedded:mnist_subset(4000/1000/1000)"``.
      split: one of :data:`SPLITS`.
      protocol: the binarization / dequantisation / preprocessing, in a sentence.
      unit: one of :data:`UNITS`.
      notes: free text (caveats; why a bracket is inconsistent).
      consistent: False when the two sides of a bracket disagree beyond their noise (the
        reported interval is then the widened one, see :func:`bracket_from_log_z`).
      extras: method-specific numbers (``log_z_forward``, ``log_z_forward_se``, ...).
    """

    value: float
    method: str
    stderr: float | None = None
    stderr_examples: float | None = None
    lower: float | None = None
    upper: float | None = None
    bound: str | None = None
    counts: Mapping[str, int | float] = dataclasses.field(default_factory=dict)
    dataset: str = "unknown"
    split: str = "test"
    protocol: str = "unknown"
    unit: str = "nats"
    notes: str = ""
    consistent: bool = True
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = lambda name, v: object.__setattr__(self, name, v)  # frozen: normalise once
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.unit not in UNITS:
            raise ConfigError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.bound is not None and self.bound not in BOUNDS:
            raise ConfigError(f"bound must be one of {BOUNDS} or None, got {self.bound!r}")
        for name in ("dataset", "protocol", "notes"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not self.dataset:
            raise ConfigError('dataset must name what was evaluated (or be "unknown")')
        if not isinstance(self.consistent, bool | np.bool_):
            raise ConfigError(f"consistent must be a bool, got {self.consistent!r}")
        set_("consistent", bool(self.consistent))
        set_("value", _finite("value", self.value, optional=False))
        for name in ("stderr", "stderr_examples"):
            v = _finite(name, getattr(self, name), optional=True)
            if v is not None and v < 0:
                raise DataError(f"{name} must be >= 0, got {v}")
            set_(name, v)
        lo = _finite("lower", self.lower, optional=True)
        hi = _finite("upper", self.upper, optional=True)
        set_("lower", lo)
        set_("upper", hi)
        if lo is not None and hi is not None and lo > hi:
            claim = " while consistent=True is claimed" if self.consistent else ""
            raise DataError(
                f"bracket lower {lo} > upper {hi}{claim}: report the interval covering both "
                f"sides and the estimate with consistent=False (see bracket_from_log_z)"
            )
        if (lo is not None and self.value < lo) or (hi is not None and self.value > hi):
            raise DataError(
                f"the bracket [{lo}, {hi}] does not contain its own estimate {self.value}; "
                f"widen it to cover the estimate (see bracket_from_log_z)"
            )
        for name in ("counts", "extras"):
            d = getattr(self, name)
            if not isinstance(d, Mapping):
                raise ConfigError(f"{name} must be a dict, got {type(d).__name__}")
            set_(name, {k: _plain(name, k, v) for k, v in d.items()})
        for k, v in self.counts.items():
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise ConfigError(f"counts[{k!r}] must be a number, got {v!r}")

    # ------------------------------------------------------------------ derived views

    @property
    def stderr_total(self) -> float | None:
        """``sqrt(stderr² + stderr_examples²)`` over the parts that are known (None if none)."""
        parts = [s for s in (self.stderr, self.stderr_examples) if s is not None]
        return float(math.hypot(*parts)) if parts else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (floats, ints, strings, bools, None) of every field."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["counts"] = dict(self.counts)
        out["extras"] = dict(self.extras)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LogLikelihood:
        """Inverse of :meth:`to_dict` (validates like the constructor)."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"from_dict needs a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown LogLikelihood fields {unknown}; known: {sorted(names)}")
        missing = sorted({"value", "method"} - set(d))
        if missing:
            raise ConfigError(f"a LogLikelihood record needs {missing}")
        return cls(**dict(d))

    @classmethod
    def from_per_example(
        cls,
        per_example: Any,
        method: str,
        *,
        counts: Mapping[str, int | float] | None = None,
        **fields: Any,
    ) -> LogLikelihood:
        """A record from per-example log-likelihoods ``(N,)``: ``value`` their mean,
        ``stderr_examples`` their ``sd / √N`` (None for N = 1), ``counts["examples"] = N``;
        ``fields`` are the other attributes (``stderr`` for a Monte-Carlo error, ``bound``,
        ``dataset``, ...)."""
        x = np.asarray(per_example, np.float64).reshape(-1)
        if x.size == 0:
            raise DataError("from_per_example needs at least one example")
        if not np.all(np.isfinite(x)):
            bad = int(np.sum(~np.isfinite(x)))
            raise DataError(f"{bad} of {x.size} per-example log-likelihoods are NaN or inf")
        se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else None
        return cls(
            value=float(x.mean()),
            method=method,
            stderr_examples=se,
            counts={"examples": int(x.size), **dict(counts or {})},
            **fields,
        )

    def in_bits_per_dim(
        self, n_dims: int, log_det_jacobian: float = 0.0, *, n_levels: int | None = None
    ) -> LogLikelihood:
        """The same record in bits per dimension (:func:`egm.eval.units.bits_per_dim`):
        the map is affine with negative slope, so the bracket's ends swap, bound directions
        flip (a lower bound on nats is an upper bound on bits/dim) and standard errors scale
        by ``1 / (D log 2)``.  The conversion's inputs are kept in ``extras``."""
        if self.unit != "nats":
            raise ConfigError(f"in_bits_per_dim converts a record in nats, this one is {self.unit}")
        conv = lambda x: bits_per_dim(x, n_dims, log_det_jacobian, n_levels=n_levels)
        scale = 1.0 / (int(n_dims) * math.log(2.0))
        se = lambda s: None if s is None else s * scale
        flip = {"lower": "upper", "upper": "lower", None: None}
        extras = {**self.extras, "bpd_n_dims": int(n_dims)}
        extras["bpd_log_det_jacobian"] = float(log_det_jacobian)
        extras["bpd_n_levels"] = n_levels
        return dataclasses.replace(
            self,
            value=conv(self.value),
            stderr=se(self.stderr),
            stderr_examples=se(self.stderr_examples),
            lower=None if self.upper is None else conv(self.upper),
            upper=None if self.lower is None else conv(self.lower),
            bound=flip[self.bound],
            unit="bits/dim",
            extras=extras,
        )

    def describe(self) -> str:
        """One line, e.g. ``-107.32 nats [-107.69, -107.06] (AIS bracket, 100 chains x 14500
        temps, test, fixed binarization)``."""
        u = self.unit
        s = _fmt(self.value, u)
        if self.stderr is not None:
            s += f" ± {_fmt(self.stderr, u)}"
        s += f" {u}"
        if self.lower is not None or self.upper is not None:
            lo = "-inf" if self.lower is None else _fmt(self.lower, u)
            hi = "inf" if self.upper is None else _fmt(self.upper, u)
            s += f" [{lo}, {hi}]"
        parts = [_LABELS[self.method]]
        if self.bound is not None:
            parts[0] += f", {self.bound} bound"
        c = self.counts
        if "chains" in c and "temperatures" in c:
            parts.append(f"{c['chains']} chains x {c['temperatures']} temps")
        elif "chains" in c:
            parts.append(f"{c['chains']} chains")
        if "samples" in c:
            parts.append(f"{c['samples']} samples")
        parts.append(self.split if self.dataset == "unknown" else f"{self.dataset} {self.split}")
        if self.protocol != "unknown":
            parts.append(self.protocol)
        if self.stderr_examples is not None:
            parts.append(f"s.e. over examples {_fmt(self.stderr_examples, u)}")
        s += f" ({', '.join(parts)})"
        if not self.consistent:
            s += " INCONSISTENT"
        if self.notes:
            s += f"; {self.notes}"
        return s

    def __str__(self) -> str:
        return self.describe()


def bracket_from_log_z(
    nfe: float,
    log_z_forward: float,
    se_f: float,
    log_z_reverse: float,
    se_r: float,
    z: float = 3.0,
    *,
    ess_forward: float | None = None,
    ess_reverse: float | None = None,
    counts: Mapping[str, int | float] | None = None,
    stderr_examples: float | None = None,
    dataset: str = "unknown",
    split: str = "test",
    protocol: str = "unknown",
    notes: str = "",
) -> LogLikelihood:
    """The AIS bracket on ``mean log p(v) = mean -F(v) - log Z`` (``nfe = mean -F(v)``).

    The estimate uses the forward ``log Ẑ`` (the number papers report; optimistic in
    expectation); the upper side is ``nfe - (log Ẑ_fwd - z·se_f)``, the lower side
    ``nfe - (log Ẑ_rev + z·se_r)`` (reverse AIS over-estimates ``log Z`` in expectation when
    its start samples are exact).  The bracket is *consistent* when the lower side does
    not exceed the estimate, i.e. ``log Ẑ_rev + z·se_r >= log Ẑ_fwd`` (the upper side
    never does).  Otherwise forward and reverse AIS cross beyond the reverse run's noise
    (neither has converged: use more temperatures or a longer reverse burn-in); the record
    says so (``consistent=False`` and a note) and reports the interval covering both sides
    and the estimate (min / max of the three), so that the bracket always contains its own
    estimate.  A crossing within the noise (``log Ẑ_rev < log Ẑ_fwd <= log Ẑ_rev + z·se_r``)
    is expected by chance when both runs are close to ``log Z``; it gets a note only.
    ``stderr`` is ``se_f`` (``nfe`` is exact for the examples); both ``log Ẑ``, their
    standard errors and the raw sides are in ``extras``.
    """
    nfe, lz_f, lz_r = (
        _finite(n, x, optional=False)
        for n, x in (
            ("nfe", nfe),
            ("log_z_forward", log_z_forward),
            ("log_z_reverse", log_z_reverse),
        )
    )
    se_f, se_r, z = (
        _finite(n, x, optional=False) for n, x in (("se_f", se_f), ("se_r", se_r), ("z", z))
    )
    if se_f < 0 or se_r < 0 or z < 0:
        raise DataError(f"se_f, se_r and z must be >= 0, got {se_f}, {se_r}, {z}")
    estimate = nfe - lz_f
    lower_side = nfe - (lz_r + z * se_r)
    upper_side = nfe - (lz_f - z * se_f)
    consistent = lower_side <= estimate
    text = [notes] if notes else []
    if not consistent:
        text.append(
            f"forward and reverse AIS cross: reverse log Z {lz_r:.4f} ± {se_r:.4f} is below "
            f"forward log Z {lz_f:.4f} ± {se_f:.4f} beyond {z:g} reverse standard errors; the "
            f"interval is widened to cover both sides [{lower_side:.4f}, {upper_side:.4f}] "
            f"nats and the estimate. Neither direction has converged: use more temperatures "
            f"or a longer reverse burn-in"
        )
    elif lz_r < lz_f:
        text.append(
            f"reverse log Z {lz_r:.4f} is below forward log Z {lz_f:.4f}, within {z:g} "
            f"reverse standard errors ({se_r:.4f})"
        )
    all_counts = dict(counts or {})
    if ess_forward is not None:
        all_counts["ess_forward"] = ess_forward
    if ess_reverse is not None:
        all_counts["ess_reverse"] = ess_reverse
    return LogLikelihood(
        value=estimate,
        method="ais_bracket",
        stderr=se_f,
        stderr_examples=stderr_examples,
        lower=min(lower_side, upper_side, estimate),
        upper=max(lower_side, upper_side, estimate),
        bound=None,
        counts=all_counts,
        dataset=dataset,
        split=split,
        protocol=protocol,
        notes="; ".join(text),
        consistent=consistent,
        extras={
            "mean_negative_free_energy": nfe,
            "log_z_forward": lz_f,
            "log_z_forward_se": se_f,
            "log_z_reverse": lz_r,
            "log_z_reverse_se": se_r,
            "bracket_z": z,
            "lower_side": lower_side,
            "upper_side": upper_side,
        },
    )
